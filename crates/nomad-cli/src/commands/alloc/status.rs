//! `nomad alloc status`: one allocation's details, task resources and events.

use std::collections::BTreeMap;

use nomad_structs::{Allocation, TaskState};

use crate::commands::alloc::{alloc_by_prefix, AllocLookup};
use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::{
    format_kv, format_list, format_list_with_spaces, format_task_time, format_unix_nanos, ibytes,
    json_pretty, limit, now_nanos, pretty_time_diff, FULL_ID, SHORT_ID,
};
use crate::meta::Meta;
use crate::monitor::format_alloc_metrics;

fn help() -> String {
    with_general(
        "Usage: nomad alloc status [options] <allocation>

  Shows an allocation's state, placement and the events of each of its tasks.
  <allocation> may be an ID prefix of at least two characters.",
        "Alloc Status Options:

  -short
    Show only basic information and task states.

  -stats
    Show detailed resource usage (when the client provides it).

  -verbose
    Full IDs, absolute times and placement metrics.

  -json
    Print the allocation as JSON.",
    )
}

/// Runs `nomad alloc status`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("short", false)
        .bool("verbose", false)
        .bool("stats", false)
        .bool("json", false)
        .string("t", "")
        .bool("ui", false);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let verbose = fs.get_bool("verbose");
    let json = fs.get_bool("json");
    if rest.is_empty() && json {
        let allocs: Vec<nomad_structs::AllocListStub> = match client.get("/v1/allocations", &[]) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("Error querying allocations: {e}");
                return 1;
            }
        };
        outln!("{}", json_pretty(&allocs));
        return 0;
    }
    if rest.len() != 1 {
        eprintln!("This command takes one of the following argument conditions:");
        eprintln!(" * A single <allocation>");
        eprintln!(" * No arguments, with output format specified");
        eprintln!("{}", error_hint("alloc status"));
        return 1;
    }
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let alloc = match alloc_by_prefix(
        &client,
        &rest[0],
        verbose,
        length,
        "Identifier must contain at least two characters.",
    ) {
        Ok(AllocLookup::Found(a)) => a,
        Ok(AllocLookup::Multiple(table)) => {
            outln!("{table}");
            return 0;
        }
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if json {
        outln!("{}", json_pretty(&alloc));
        return 0;
    }
    if fs.get_bool("short") {
        outln!("{}", format_short_info(&alloc));
        print_short_task_status(&alloc);
        return 0;
    }
    outln!("{}", format_basic_info(&alloc, length, verbose));
    if let Some(net) = format_network_info(&alloc) {
        outln!();
        outln!("{net}");
    }
    print_task_details(&alloc);
    if verbose {
        outln!("\n{}", crate::color::bold("Placement Metrics"));
        if let Some(m) = &alloc.metrics {
            outln!("{}", format_alloc_metrics(m, "  "));
        }
    }
    0
}

fn format_short_info(a: &Allocation) -> String {
    let now = now_nanos();
    format_kv(&[
        format!("ID|{}", a.id),
        format!("Name|{}", a.name),
        format!("Created|{}", pretty_time_diff(a.create_time, now)),
        format!("Modified|{}", pretty_time_diff(a.modify_time, now)),
    ])
}

/// The allocation's main `k = v` block.
pub fn format_basic_info(a: &Allocation, length: usize, verbose: bool) -> String {
    let now = now_nanos();
    let (created, modified) = if verbose {
        (
            format_unix_nanos(a.create_time),
            format_unix_nanos(a.modify_time),
        )
    } else {
        (
            pretty_time_diff(a.create_time, now),
            pretty_time_diff(a.modify_time, now),
        )
    };
    let version = a.job.as_ref().map(|j| j.version).unwrap_or_default();
    let mut basic = vec![
        format!("ID|{}", a.id),
        format!("Eval ID|{}", limit(&a.eval_id, length)),
        format!("Name|{}", a.name),
        format!("Node ID|{}", limit(&a.node_id, length)),
        format!("Node Name|{}", a.node_name),
        format!("Job ID|{}", a.job_id),
        format!("Job Version|{version}"),
        format!("Client Status|{}", a.client_status),
        format!("Client Description|{}", a.client_description),
        format!("Desired Status|{}", a.desired_status),
        format!("Desired Description|{}", a.desired_description),
        format!("Created|{created}"),
        format!("Modified|{modified}"),
    ];
    if !a.deployment_id.is_empty() {
        basic.push(format!("Deployment ID|{}", limit(&a.deployment_id, length)));
        basic.push("Deployment Health|unset".to_string());
    }
    if !a.next_allocation.is_empty() {
        basic.push(format!(
            "Replacement Alloc ID|{}",
            limit(&a.next_allocation, length)
        ));
    }
    if verbose {
        let m = a.metrics.clone().unwrap_or_default();
        basic.push(format!("Evaluated Nodes|{}", m.nodes_evaluated));
        basic.push(format!("Filtered Nodes|{}", m.nodes_filtered));
        basic.push(format!("Exhausted Nodes|{}", m.nodes_exhausted));
        basic.push(format!(
            "Allocation Time|{}",
            nomad_structs::duration::format_go_duration(m.allocation_time)
        ));
        basic.push(format!("Failures|{}", m.coalesced_failures));
    }
    format_kv(&basic)
}

fn format_network_info(a: &Allocation) -> Option<String> {
    let ar = a.allocated_resources.as_ref()?;
    let nw = ar.shared.networks.as_ref()?.first()?;
    let mut rows = vec!["Label|Dynamic|Address".to_string()];
    let port = |label: &str, value: i64, to: i64, ip: &str| {
        let mut s = format!("{label}|yes|{ip}:{value}");
        if to > 0 {
            s.push_str(&format!(" -> {to}"));
        }
        s
    };
    match ar.shared.ports.as_ref().filter(|p| !p.is_empty()) {
        Some(ports) => {
            for p in ports {
                rows.push(port(&format!("*{}", p.label), p.value, p.to, &p.host_ip));
            }
        }
        None => {
            if nw.dynamic_ports.is_empty() && nw.reserved_ports.is_empty() {
                return None;
            }
            for p in nw.dynamic_ports.iter().chain(nw.reserved_ports.iter()) {
                rows.push(port(&p.label, p.value, p.to, &nw.ip));
            }
        }
    }
    let mode = if nw.mode.is_empty() {
        String::new()
    } else {
        format!(" (mode = {:?})", nw.mode)
    };
    Some(format!(
        "Allocation Addresses{mode}:\n{}",
        format_list(&rows)
    ))
}

fn lifecycle_rank(a: &Allocation, task: &str) -> u8 {
    let lc = a
        .job
        .as_ref()
        .and_then(|j| j.lookup_task_group(&a.task_group))
        .and_then(|g| g.lookup_task(task))
        .and_then(|t| t.lifecycle.clone());
    match lc {
        Some(l) if l.hook == "prestart" && !l.sidecar => 0,
        Some(l) if l.hook == "prestart" => 1,
        Some(l) if l.hook == "poststart" => 3,
        Some(l) if l.hook == "poststop" => 4,
        _ => 2,
    }
}

fn lifecycle_label(a: &Allocation, task: &str) -> String {
    let lc = a
        .job
        .as_ref()
        .and_then(|j| j.lookup_task_group(&a.task_group))
        .and_then(|g| g.lookup_task(task))
        .and_then(|t| t.lifecycle.clone());
    match lc {
        Some(l) if !l.hook.is_empty() => {
            if l.sidecar {
                format!(" ({} sidecar)", l.hook)
            } else {
                format!(" ({})", l.hook)
            }
        }
        _ => String::new(),
    }
}

fn sorted_tasks(a: &Allocation) -> Vec<(String, TaskState)> {
    let states: BTreeMap<String, TaskState> = a.task_states.clone().unwrap_or_default();
    let mut v: Vec<(String, TaskState)> = states.into_iter().collect();
    v.sort_by(|x, y| (lifecycle_rank(a, &x.0), &x.0).cmp(&(lifecycle_rank(a, &y.0), &y.0)));
    v
}

fn print_short_task_status(a: &Allocation) {
    let tasks = sorted_tasks(a);
    let mut rows = vec!["Name|State|Last Event|Time|Lifecycle".to_string()];
    for (name, st) in &tasks {
        let (ev, t) = st
            .events
            .as_ref()
            .and_then(|e| e.last())
            .map(|e| (e.event_type.clone(), format_unix_nanos(e.time)))
            .unwrap_or_default();
        let lc = lifecycle_label(a, name);
        let lc = lc
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')')
            .to_string();
        let lc = if lc.is_empty() {
            "main".to_string()
        } else {
            lc
        };
        rows.push(format!("{name}|{}|{ev}|{t}|{lc}", st.state));
    }
    outln!("\n{}", crate::color::bold("Tasks"));
    outln!("{}", format_list(&rows));
}

fn print_task_details(a: &Allocation) {
    for (name, st) in sorted_tasks(a) {
        outln!(
            "\nTask {name:?}{} is {:?}",
            lifecycle_label(a, &name),
            st.state
        );
        if let Some(res) = format_task_resources(a, &name) {
            outln!("Task Resources:");
            outln!("{res}");
        }
        outln!();
        outln!("{}", format_task_status(&st).trim_end_matches('\n'));
    }
}

fn format_task_resources(a: &Allocation, task: &str) -> Option<String> {
    let ar = a.allocated_resources.as_ref()?;
    let tr = ar.tasks.get(task)?;
    let disk = a
        .resources
        .as_ref()
        .and_then(|r| r.disk_mb)
        .unwrap_or(ar.shared.disk_mb);
    let mut addrs: Vec<String> = Vec::new();
    for nw in tr.networks.iter().flatten() {
        for p in nw.dynamic_ports.iter().chain(nw.reserved_ports.iter()) {
            addrs.push(format!("{}: {}:{}", p.label, nw.ip, p.value));
        }
    }
    let mb = 1024 * 1024u64;
    let mut rows = vec!["CPU|Memory|Disk|Addresses".to_string()];
    rows.push(format!(
        "{} MHz|{}|{}|{}",
        tr.cpu.cpu_shares,
        ibytes(tr.memory.memory_mb.max(0) as u64 * mb),
        ibytes(disk.max(0) as u64 * mb),
        addrs.first().cloned().unwrap_or_default()
    ));
    let mem_max = if tr.memory.memory_max_mb != 0 && tr.memory.memory_max_mb != tr.memory.memory_mb
    {
        format!(
            "Max: {}",
            ibytes(tr.memory.memory_max_mb.max(0) as u64 * mb)
        )
    } else {
        String::new()
    };
    if !mem_max.is_empty() || addrs.len() > 1 {
        rows.push(format!(
            "|{mem_max}||{}",
            addrs.get(1).cloned().unwrap_or_default()
        ));
    }
    for extra in addrs.iter().skip(2) {
        rows.push(format!("|||{extra}"));
    }
    Some(format_list_with_spaces(&rows))
}

/// The `Task Events:` block and the `Recent Events:` table (newest first), with a trailing newline.
pub fn format_task_status(st: &TaskState) -> String {
    let mut out = String::new();
    out.push_str("Task Events:\n");
    out.push_str(&format_kv(&[
        format!("Started At|{}", format_task_time(st.started_at.as_deref())),
        format!(
            "Finished At|{}",
            format_task_time(st.finished_at.as_deref())
        ),
        format!("Total Restarts|{}", st.restarts),
        format!(
            "Last Restart|{}",
            format_task_time(st.last_restart.as_deref())
        ),
    ]));
    out.push_str("\n\nRecent Events:\n");
    let mut rows = vec!["Time|Type|Description".to_string()];
    for e in st.events.iter().flatten().rev() {
        let mut e = e.clone();
        let msg = if e.display_message.is_empty() {
            if e.event_type == nomad_structs::task_event::KILLING && !e.kill_reason.is_empty() {
                format!("Killing task: {}", e.kill_reason)
            } else {
                e.populate_display_message();
                e.display_message.clone()
            }
        } else {
            e.display_message.clone()
        };
        rows.push(format!(
            "{}|{}|{}",
            format_unix_nanos(e.time),
            e.event_type,
            msg
        ));
    }
    out.push_str(&format_list(&rows));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nomad_structs::TaskEvent;

    #[test]
    fn task_events_newest_first() {
        let mut started = TaskEvent::new("Started", 2_000_000_000_000_000_000);
        started.display_message = "Task started by client".into();
        let received = TaskEvent::new("Received", 1_000_000_000_000_000_000);
        let st = TaskState {
            state: "running".into(),
            events: Some(vec![received, started]),
            ..Default::default()
        };
        let out = format_task_status(&st);
        assert!(out.starts_with("Task Events:\nStarted At     = N/A\nFinished At    = N/A\nTotal Restarts = 0\nLast Restart   = N/A\n\nRecent Events:\nTime"));
        let started_line = out.find("Task started by client").unwrap();
        let received_line = out.find("Task received by client").unwrap();
        assert!(started_line < received_line);
    }
}
