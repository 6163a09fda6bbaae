//! `nomad node status`: the node list, or one node's details and allocations.

use nomad_structs::{Allocation, Node, NodeListStub};

use crate::api::path_escape;
use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::{
    format_kv, format_list, format_unix_nanos, ibytes, json_pretty, limit, now_nanos,
    pretty_time_diff, sanitize_uuid_prefix, FULL_ID, SHORT_ID,
};
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad node status [options] <node>

  Without an argument, lists the client nodes. With a node ID or prefix (or
  -self), shows that node's details and allocations.",
        "Node Status Options:

  -self
    Show the node of the agent this command talks to.

  -short
    Show only basic information.

  -os
    Add the operating system column to the list.

  -quiet
    Print only node IDs.

  -allocs
    Add the running allocation count to the list.

  -verbose
    Full IDs plus addresses, versions and attributes.

  -json
    Print JSON instead of tables.",
    )
}

/// Runs `nomad node status`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("short", false)
        .bool("os", false)
        .bool("quiet", false)
        .bool("verbose", false)
        .bool("allocs", false)
        .bool("self", false)
        .bool("stats", false)
        .bool("json", false)
        .string("t", "")
        .string("filter", "")
        .int("per-page", 0)
        .string("page-token", "")
        .bool("ui", false);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.len() > 1 {
        eprintln!("This command takes either one or no arguments");
        eprintln!("{}", error_hint("node status"));
        return 1;
    }
    let verbose = fs.get_bool("verbose");
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    if rest.is_empty() && !fs.get_bool("self") {
        let quiet = fs.get_bool("quiet");
        if quiet && (verbose || fs.get_bool("json")) {
            eprintln!("-quiet cannot be used with -verbose or -json");
            return 1;
        }
        let mut q = Vec::new();
        if fs.get_bool("os") {
            q.push(("os", "true".to_string()));
        }
        if !fs.get_str("filter").is_empty() {
            q.push(("filter", fs.get_str("filter")));
        }
        if fs.get_int("per-page") > 0 {
            q.push(("per_page", fs.get_int("per-page").to_string()));
        }
        if !fs.get_str("page-token").is_empty() {
            q.push(("next_token", fs.get_str("page-token")));
        }
        let nodes: Vec<NodeListStub> = match client.get("/v1/nodes", &q) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("Error querying node status: {e}");
                return 1;
            }
        };
        if fs.get_bool("json") {
            outln!("{}", json_pretty(&nodes));
            return 0;
        }
        if nodes.is_empty() {
            outln!("No nodes registered");
            return 0;
        }
        if quiet {
            let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
            outln!("{}", format_list(&ids));
            return 0;
        }
        let os = fs.get_bool("os");
        let with_allocs = fs.get_bool("allocs");
        let mut header = "ID|Node Pool|DC|Name|Class|".to_string();
        if os {
            header.push_str("OS|");
        }
        if verbose {
            header.push_str("Address|Version|");
        }
        header.push_str("Drain|Eligibility|Status");
        if with_allocs {
            header.push_str("|Running Allocs");
        }
        let mut rows = vec![header];
        for n in &nodes {
            let mut row = format!(
                "{}|{}|{}|{}|{}",
                limit(&n.id, length),
                n.node_pool,
                n.datacenter,
                n.name,
                n.node_class
            );
            if os {
                let name = n
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("os.name"))
                    .cloned()
                    .unwrap_or_default();
                row.push_str(&format!("|{name}"));
            }
            if verbose {
                row.push_str(&format!("|{}|{}", n.address, n.version));
            }
            row.push_str(&format!(
                "|{}|{}|{}",
                n.drain, n.scheduling_eligibility, n.status
            ));
            if with_allocs {
                let allocs: Vec<Allocation> = match client
                    .get(&format!("/v1/node/{}/allocations", path_escape(&n.id)), &[])
                {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("Error querying node allocations: {e}");
                        return 1;
                    }
                };
                row.push_str(&format!(
                    "|{}",
                    allocs
                        .iter()
                        .filter(|a| a.client_status == "running")
                        .count()
                ));
            }
            rows.push(row);
        }
        outln!("{}", format_list(&rows));
        return 0;
    }

    let wanted = (!fs.get_bool("self")).then(|| rest[0].as_str());
    let found = match find_node(&client, wanted, length, "Error querying node info") {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let node: Node = match client.get(&format!("/v1/node/{}", path_escape(&found.id)), &[]) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("Error querying node info: {e}");
            return 1;
        }
    };
    if fs.get_bool("json") {
        outln!("{}", json_pretty(&node));
        return 0;
    }
    let allocs: Vec<Allocation> = match client.get(
        &format!("/v1/node/{}/allocations", path_escape(&node.id)),
        &[],
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("Error querying node allocations: {e}");
            return 1;
        }
    };
    print_node(
        &client,
        &node,
        &allocs,
        fs.get_bool("short"),
        verbose,
        length,
    );
    0
}

/// The one node `wanted` (an ID or prefix; `None`: this agent's own node) names, or the
/// message to print: `query_error` prefixes a failed lookup, as each command words it.
pub(crate) fn find_node(
    client: &crate::api::Client,
    wanted: Option<&str>,
    length: usize,
    query_error: &str,
) -> Result<NodeListStub, String> {
    let node_id = match wanted {
        Some(id) => id.to_string(),
        None => local_node_id(client)?,
    };
    if node_id.len() == 1 {
        return Err("Identifier must contain at least two characters.".into());
    }
    let node_id = sanitize_uuid_prefix(&node_id);
    let mut nodes: Vec<NodeListStub> = client
        .get("/v1/nodes", &[("prefix", node_id.clone())])
        .map_err(|e| format!("{query_error}: {e}"))?;
    if nodes.is_empty() {
        return Err(format!("No node(s) with prefix {node_id:?} found"));
    }
    if nodes.len() > 1 {
        let mut rows = vec!["ID|Node Pool|DC|Name|Class|Drain|Eligibility|Status".to_string()];
        for n in &nodes {
            rows.push(format!(
                "{}|{}|{}|{}|{}|{}|{}|{}",
                limit(&n.id, length),
                n.node_pool,
                n.datacenter,
                n.name,
                n.node_class,
                n.drain,
                n.scheduling_eligibility,
                n.status
            ));
        }
        return Err(format!(
            "Prefix matched multiple nodes\n\n{}",
            format_list(&rows)
        ));
    }
    Ok(nodes.remove(0))
}

fn local_node_id(client: &crate::api::Client) -> Result<String, String> {
    let info: serde_json::Value = client
        .get("/v1/agent/self", &[])
        .map_err(|e| format!("Error querying agent info: {e}"))?;
    let stats = info
        .get("stats")
        .and_then(|s| s.get("client"))
        .ok_or("Nomad not running in client mode")?;
    stats
        .get("node_id")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| "Failed to determine node ID".to_string())
}

fn sorted_keys<V>(m: Option<&std::collections::BTreeMap<String, V>>) -> String {
    m.map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// The `Drain` row: `false`, or `true` with how the drain ends.
fn format_drain(node: &Node) -> String {
    let Some(d) = &node.drain_strategy else {
        return "false".into();
    };
    let mut s = "true".to_string();
    if d.spec.deadline < 0 {
        s.push_str("; force drain");
    } else {
        match d.force_deadline_nanos() {
            Some(at) => s.push_str(&format!("; {} deadline", format_unix_nanos(at))),
            None => s.push_str("; no deadline"),
        }
    }
    if d.spec.ignore_system_jobs {
        s.push_str("; ignoring system jobs");
    }
    s
}

fn print_node(
    client: &crate::api::Client,
    node: &Node,
    allocs: &[Allocation],
    short: bool,
    verbose: bool,
    length: usize,
) {
    let drain = format_drain(node);
    let mut basic = vec![
        format!("ID|{}", node.id),
        format!("Name|{}", node.name),
        format!("Node Pool|{}", node.node_pool),
        format!("Class|{}", node.node_class),
        format!("DC|{}", node.datacenter),
        format!("Drain|{drain}"),
        format!("Eligibility|{}", node.scheduling_eligibility),
        format!("Status|{}", node.status),
        "CSI Controllers|".to_string(),
        "CSI Drivers|".to_string(),
    ];
    let mut drivers: Vec<String> = node
        .drivers
        .iter()
        .filter(|(_, d)| d.detected)
        .map(|(n, d)| {
            if d.healthy {
                n.clone()
            } else {
                format!("{n} (unhealthy)")
            }
        })
        .collect();
    drivers.sort();
    if short {
        basic.push(format!(
            "Host Volumes|{}",
            sorted_keys(node.host_volumes.as_ref())
        ));
        basic.push(format!(
            "Host Networks|{}",
            sorted_keys(node.host_networks.as_ref())
        ));
        basic.push("CSI Volumes|".to_string());
        let mut attr_drivers: Vec<String> = node
            .attributes
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("driver.")
                    .filter(|d| !d.contains('.') && v == "1")
                    .map(str::to_string)
            })
            .collect();
        attr_drivers.sort();
        basic.push(format!("Drivers|{}", attr_drivers.join(",")));
        outln!("{}", format_kv(&basic));
        print_allocs(node, allocs, verbose, length);
        return;
    }
    match client.get::<serde_json::Value>("/v1/client/stats", &[("node_id", node.id.clone())]) {
        Ok(stats) => {
            if let Some(up) = stats.get("Uptime").and_then(|u| u.as_u64()) {
                basic.push(format!(
                    "Uptime|{}",
                    nomad_structs::duration::format_go_duration(
                        (up as i64).saturating_mul(1_000_000_000)
                    )
                ));
            }
        }
        Err(e) => {
            outln!();
            eprintln!("error fetching node stats: {e}");
        }
    }
    if !verbose {
        basic.push(format!(
            "Host Volumes|{}",
            sorted_keys(node.host_volumes.as_ref())
        ));
        basic.push(format!(
            "Host Networks|{}",
            sorted_keys(node.host_networks.as_ref())
        ));
        basic.push("CSI Volumes|".to_string());
        basic.push(format!("Driver Status| {}", drivers.join(",")));
    }
    outln!("{}", format_kv(&basic));
    if verbose {
        outln!("\n{}", crate::color::bold("Drivers"));
        let mut rows = vec!["Driver|Detected|Healthy|Message|Time".to_string()];
        for (name, d) in &node.drivers {
            let t = d
                .update_time
                .as_deref()
                .filter(|s| !s.starts_with("0001-"))
                .and_then(nomad_structs::parse_rfc3339_nanos)
                .map(format_unix_nanos)
                .unwrap_or_default();
            rows.push(format!(
                "{name}|{}|{}|{}|{t}",
                d.detected, d.healthy, d.health_description
            ));
        }
        outln!("{}", format_list(&rows));
    }
    outln!("\n{}", crate::color::bold("Node Events"));
    let events = node.events.clone().unwrap_or_default();
    let mut rows = vec![if verbose {
        "Time|Subsystem|Message|Details"
    } else {
        "Time|Subsystem|Message"
    }
    .to_string()];
    for e in events.iter().rev() {
        let t = e
            .timestamp
            .as_deref()
            .filter(|s| !s.starts_with("0001-"))
            .and_then(nomad_structs::parse_rfc3339_nanos)
            .map(format_unix_nanos)
            .unwrap_or_default();
        let driver = e
            .details
            .as_ref()
            .and_then(|d| d.get("driver"))
            .cloned()
            .unwrap_or_default();
        let subsystem = if driver.is_empty() {
            e.subsystem.clone()
        } else {
            format!("Driver: {driver}")
        };
        if verbose {
            let details: Vec<String> = e
                .details
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            rows.push(format!(
                "{t}|{subsystem}|{}|{}",
                e.message,
                details.join(", ")
            ));
        } else {
            rows.push(format!("{t}|{subsystem}|{}", e.message));
        }
    }
    outln!("{}", format_list(&rows));

    let running: Vec<&Allocation> = allocs
        .iter()
        .filter(|a| a.client_status == "running")
        .collect();
    let (mut cpu, mut mem, mut disk) = (0i64, 0i64, 0i64);
    for a in &running {
        if let Some(ar) = &a.allocated_resources {
            for t in ar.tasks.values() {
                cpu += t.cpu.cpu_shares;
                mem += t.memory.memory_mb;
            }
            disk += ar.shared.disk_mb;
        } else if let Some(r) = &a.resources {
            cpu += r.cpu.unwrap_or(0);
            mem += r.memory_mb.unwrap_or(0);
            disk += r.disk_mb.unwrap_or(0);
        }
    }
    let res = &node.node_resources;
    let rsv = &node.reserved_resources;
    let mb = 1024 * 1024u64;
    let tot_cpu = res.cpu.cpu_shares - rsv.cpu.cpu_shares;
    let tot_mem = (res.memory.memory_mb - rsv.memory.memory_mb).max(0) as u64;
    let tot_disk = (res.disk.disk_mb - rsv.disk.disk_mb).max(0) as u64;
    outln!("\n{}", crate::color::bold("Allocated Resources"));
    outln!(
        "{}",
        format_list(&[
            "CPU|Memory|Disk|Alloc Count".to_string(),
            format!(
                "{cpu}/{tot_cpu} MHz|{}/{}|{}/{}|{}",
                ibytes(mem.max(0) as u64 * mb),
                ibytes(tot_mem * mb),
                ibytes(disk.max(0) as u64 * mb),
                ibytes(tot_disk * mb),
                running.len()
            ),
        ])
    );
    print_allocs(node, allocs, verbose, length);
}

fn print_allocs(node: &Node, allocs: &[Allocation], verbose: bool, length: usize) {
    outln!("\n{}", crate::color::bold("Allocations"));
    outln!("{}", format_alloc_list(allocs, verbose, length));
    if verbose {
        outln!("\n{}", crate::color::bold("Attributes"));
        let rows: Vec<String> = node
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}|{v}"))
            .collect();
        outln!("{}", format_kv(&rows));
        outln!("\n{}", crate::color::bold("Meta"));
        let rows: Vec<String> = node
            .meta
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}|{v}"))
            .collect();
        outln!("{}", format_kv(&rows));
    }
}

/// Allocation table for full allocations (Nomad `formatAllocList`).
pub fn format_alloc_list(allocs: &[Allocation], verbose: bool, length: usize) -> String {
    if allocs.is_empty() {
        return "No allocations placed".to_string();
    }
    let mut rows = Vec::new();
    let now = now_nanos();
    if verbose {
        rows.push(
            "ID|Eval ID|Node ID|Task Group|Version|Desired|Status|Created|Modified".to_string(),
        );
    } else {
        rows.push("ID|Node ID|Task Group|Version|Desired|Status|Created|Modified".to_string());
    }
    for a in allocs {
        let version = a.job.as_ref().map(|j| j.version).unwrap_or_default();
        if verbose {
            rows.push(format!(
                "{}|{}|{}|{}|{version}|{}|{}|{}|{}",
                limit(&a.id, length),
                limit(&a.eval_id, length),
                limit(&a.node_id, length),
                a.task_group,
                a.desired_status,
                a.client_status,
                format_unix_nanos(a.create_time),
                format_unix_nanos(a.modify_time)
            ));
        } else {
            rows.push(format!(
                "{}|{}|{}|{version}|{}|{}|{}|{}",
                limit(&a.id, length),
                limit(&a.node_id, length),
                a.task_group,
                a.desired_status,
                a.client_status,
                pretty_time_diff(a.create_time, now),
                pretty_time_diff(a.modify_time, now)
            ));
        }
    }
    format_list(&rows)
}
