//! `nomad node drain`: starts or cancels a node's drain, and follows it until the node is empty.

use std::collections::BTreeMap;
use std::sync::mpsc;

use nomad_structs::{
    Allocation, DrainSpec, Node, NodeDrainUpdateResponse, NodeUpdateDrainRequest,
    ALLOC_CLIENT_PENDING, ALLOC_CLIENT_RUNNING, ALLOC_DESIRED_STOP, JOB_TYPE_SYSTEM,
    NODE_STATUS_DOWN,
};

use super::status::find_node;
use crate::api::{path_escape, Client};
use crate::commands::{client_flags, confirm, error_hint, parse_flags, with_general};
use crate::format::{now_formatted, SHORT_ID};
use crate::meta::Meta;

/// `-deadline` when none is given: Nomad's one hour.
const DEFAULT_DEADLINE: i64 = 3_600_000_000_000;

fn help() -> String {
    with_general(
        "Usage: nomad node drain [options] <node>

  Toggles node draining on a specified node. It is required that either
  -enable or -disable is specified, but not both. The -self flag is useful
  to drain the local node.

  A draining node gets no new allocations. Its allocations are migrated to
  other nodes, each group at the pace its migrate block allows; whatever is
  left when the deadline passes is stopped. Once the node is empty the drain
  is complete and the node stays ineligible until marked eligible again.",
        "Node Drain Options:

  -disable
    Disable draining for the specified node.

  -enable
    Enable draining for the specified node.

  -deadline <duration>
    Set the deadline by which all allocations must be moved off the node.
    Remaining allocations after the deadline are forced removed from the node.
    Defaults to 1 hour.

  -detach
    Return immediately instead of entering monitor mode.

  -monitor
    Enter monitor mode directly without modifying the drain status.

  -force
    Force remove allocations off the node immediately.

  -no-deadline
    No deadline allows the allocations to drain off the node without being
    force stopped after a certain deadline.

  -ignore-system
    Ignore system allows the drain to complete without stopping system job
    allocations. By default system jobs are stopped last.

  -keep-ineligible
    Keep ineligible will maintain the node's scheduling ineligibility even if
    the drain is being disabled.

  -m <message>
    Message for the drain update operation. Registered in drain metadata as
    \"message\" during drain enable and \"cancel_message\" during drain disable.

  -meta <key>=<value>
    Custom metadata to store on the drain operation, can be used multiple times.

  -self
    Set the drain status of the local node.

  -yes
    Automatic yes to prompts.",
    )
}

/// The drain flags, checked against each other as Nomad does.
struct Options {
    enable: bool,
    disable: bool,
    monitor: bool,
    detach: bool,
    own: bool,
    yes: bool,
    ignore_system: bool,
    keep_ineligible: bool,
    deadline: i64,
    message: String,
    meta: Vec<String>,
}

fn options(fs: &crate::goflag::FlagSet, rest: &[String]) -> Result<Options, String> {
    let hint = error_hint("node drain");
    let bad = |m: &str| Err(format!("{m}\n{hint}"));
    let (enable, disable, monitor) = (
        fs.get_bool("enable"),
        fs.get_bool("disable"),
        fs.get_bool("monitor"),
    );
    if monitor && (enable || disable) {
        return bad("The -monitor flag cannot be used with the '-enable' or '-disable' flags");
    }
    if (enable && disable) || (!monitor && !enable && !disable) {
        return bad("Either the '-enable' or '-disable' flag must be set, unless using '-monitor'");
    }
    let own = fs.get_bool("self");
    if (own && !rest.is_empty()) || (!own && rest.len() != 1) {
        return bad("Node ID must be specified if -self isn't being used");
    }
    let deadline = fs.get_str("deadline");
    let (force, no_deadline, ignore_system) = (
        fs.get_bool("force"),
        fs.get_bool("no-deadline"),
        fs.get_bool("ignore-system"),
    );
    if disable && (!deadline.is_empty() || force || no_deadline || ignore_system) {
        return bad("-disable can't be combined with flags configuring drain strategy");
    }
    if !deadline.is_empty() && (force || no_deadline) {
        return bad("-deadline can't be combined with -force or -no-deadline");
    }
    if force && no_deadline {
        return bad("-force and -no-deadline are mutually exclusive");
    }
    let deadline = if force {
        -1_000_000_000
    } else if no_deadline {
        0
    } else if deadline.is_empty() {
        DEFAULT_DEADLINE
    } else {
        match nomad_structs::duration::parse_go_duration(&deadline) {
            Ok(d) if d > 0 => d,
            Ok(_) => return Err("A positive drain duration must be given".into()),
            Err(e) => return Err(format!("Failed to parse deadline {deadline:?}: {e}")),
        }
    };
    Ok(Options {
        enable,
        disable,
        monitor,
        detach: fs.get_bool("detach"),
        own,
        yes: fs.get_bool("yes"),
        ignore_system,
        keep_ineligible: fs.get_bool("keep-ineligible"),
        deadline,
        message: fs.get_str("m"),
        meta: fs.get_list("meta"),
    })
}

/// The drain's metadata: what the last drain had (when cancelling), the message, `-meta`.
fn drain_meta(o: &Options, node: &Node) -> BTreeMap<String, String> {
    let mut meta = if o.disable {
        node.last_drain
            .as_ref()
            .and_then(|d| d.meta.clone())
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    if !o.message.is_empty() {
        let key = if o.enable {
            "message"
        } else {
            "cancel_message"
        };
        meta.insert(key.to_string(), o.message.clone());
    }
    for m in o.meta.iter().filter(|m| !m.is_empty()) {
        let (k, v) = m.split_once('=').unwrap_or((m, ""));
        meta.insert(k.to_string(), v.to_string());
    }
    meta
}

/// Runs `nomad node drain`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("enable", false)
        .bool("disable", false)
        .string("deadline", "")
        .bool("detach", false)
        .bool("force", false)
        .bool("no-deadline", false)
        .bool("ignore-system", false)
        .bool("keep-ineligible", false)
        .bool("self", false)
        .bool("yes", false)
        .bool("monitor", false)
        .string("m", "")
        .list("meta");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let o = match options(&fs, &rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let client = Meta::from_flags(&fs).client();
    let wanted = (!o.own).then(|| rest[0].as_str());
    let stub = match find_node(&client, wanted, SHORT_ID, "Error toggling drain mode") {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let path = format!("/v1/node/{}", path_escape(&stub.id));
    let (node, index) = match client.get_blocking::<Node>(&path, 0) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("Error toggling drain mode: {e}");
            return 1;
        }
    };
    if o.monitor {
        if node.drain_strategy.is_none() {
            eprintln!("No drain strategy set");
            return 0;
        }
        outln!(
            "{}: Monitoring node {:?}: Ctrl-C to detach monitoring",
            now_formatted(),
            node.id
        );
        return monitor(&client, &node.id, index, o.ignore_system, None);
    }
    if wanted.is_some_and(|w| w != node.id) && !o.yes {
        let verb = if o.disable { "disable" } else { "enable" };
        let question = format!(
            "Are you sure you want to {verb} drain mode for node {:?}? [y/N]",
            node.id
        );
        if let Err(code) = confirm(&question, "Canceling drain toggle") {
            return code;
        }
    }
    // What the node runs before the drain starts, so the monitor sees every alloc's first
    // transition even when the drainer acts within milliseconds of the request.
    let before = if o.enable && !o.detach {
        match client.get_blocking::<Vec<Allocation>>(&format!("{path}/allocations"), 0) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("Error querying node allocations: {e}");
                return 1;
            }
        }
    } else {
        None
    };
    let req = NodeUpdateDrainRequest {
        node_id: node.id.clone(),
        drain_spec: o.enable.then_some(DrainSpec {
            deadline: o.deadline,
            ignore_system_jobs: o.ignore_system,
        }),
        mark_eligible: !o.keep_ineligible,
        meta: Some(drain_meta(&o, &node)),
    };
    let resp: NodeDrainUpdateResponse = match client.put(&format!("{path}/drain"), &[], &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error updating drain specification: {e}");
            return 1;
        }
    };
    if !o.enable || o.detach {
        let what = if o.enable { "set" } else { "unset" };
        outln!("Node {:?} drain strategy {what}", node.id);
        return 0;
    }
    let now = now_formatted();
    outln!("{now}: Ctrl-C to stop monitoring: will not cancel the node drain");
    outln!("{now}: Node {:?} drain strategy set", node.id);
    monitor(
        &client,
        &node.id,
        resp.node_modify_index,
        o.ignore_system,
        before,
    )
}

/// A line of the drain monitor; errors end it.
enum Message {
    Info(String),
    Warn(String),
    Error(String),
}

/// Follows the drain (Nomad's `MonitorDrain`): the node until its drain strategy is gone,
/// its allocs until none is pending or running. Each side blocks on its own query; `allocs`
/// is where the alloc side starts (the node's allocs and their index), fetched when None.
fn monitor(
    client: &Client,
    node_id: &str,
    index: u64,
    ignore_system: bool,
    allocs: Option<(Vec<Allocation>, u64)>,
) -> i32 {
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let node_tx = tx.clone();
        scope.spawn(move || watch_node(client, node_id, index, &node_tx));
        scope.spawn(move || watch_allocs(client, node_id, ignore_system, allocs, &tx));
        for msg in rx {
            let at = now_formatted();
            match msg {
                Message::Info(m) => outln!("{at}: {m}"),
                Message::Warn(m) => eprintln!("{at}: {m}"),
                Message::Error(m) => {
                    eprintln!("{at}: {m}");
                    // The other watcher may block for minutes on its query: leave without it.
                    std::process::exit(1);
                }
            }
        }
        0
    })
}

fn watch_node(client: &Client, node_id: &str, mut index: u64, tx: &mpsc::Sender<Message>) {
    let path = format!("/v1/node/{}", path_escape(node_id));
    let mut last: Option<nomad_structs::DrainStrategy> = None;
    loop {
        let (node, next) = match client.get_blocking::<Node>(&path, index) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Message::Error(format!("Error monitoring node: {e}")));
                return;
            }
        };
        let Some(strategy) = node.drain_strategy else {
            // The monitor starts from a drain that was set, so its end is the drainer's.
            let _ = tx.send(Message::Info(format!(
                "Node {node_id:?} has marked all allocations for migration"
            )));
            return;
        };
        if node.status == NODE_STATUS_DOWN {
            let _ = tx.send(Message::Warn(format!("Node {node_id:?} down")));
        }
        if last.as_ref().is_some_and(|l| *l != strategy) {
            let how = if strategy.spec.ignore_system_jobs {
                "drain ignoring system jobs and deadline at"
            } else {
                "drain with deadline at"
            };
            let _ = tx.send(Message::Info(format!(
                "Node {node_id:?} drain updated: {how} {}",
                strategy.force_deadline
            )));
        }
        last = Some(strategy);
        index = next;
    }
}

fn watch_allocs(
    client: &Client,
    node_id: &str,
    ignore_system: bool,
    start: Option<(Vec<Allocation>, u64)>,
    tx: &mpsc::Sender<Message>,
) {
    let path = format!("/v1/node/{}/allocations", path_escape(node_id));
    let fetch = |index: u64| {
        client
            .get_blocking::<Vec<Allocation>>(&path, index)
            .map_err(|e| format!("Error monitoring allocations: {e}"))
    };
    let mut current = match start.map_or_else(|| fetch(0), Ok) {
        Ok(c) => c,
        Err(e) => {
            let _ = tx.send(Message::Error(e));
            return;
        }
    };
    let mut seen: BTreeMap<String, Allocation> = BTreeMap::new();
    loop {
        let (allocs, index) = current;
        let mut running = 0;
        for a in allocs {
            if let Some(line) = seen.get(&a.id).and_then(|orig| alloc_change(orig, &a)) {
                let _ = tx.send(Message::Info(format!("Alloc {:?} {line}", a.id)));
            }
            let system = a
                .job
                .as_ref()
                .is_some_and(|j| j.job_type == JOB_TYPE_SYSTEM);
            if !(ignore_system && system)
                && (a.client_status == ALLOC_CLIENT_PENDING
                    || a.client_status == ALLOC_CLIENT_RUNNING)
            {
                running += 1;
            }
            seen.insert(a.id.clone(), a);
        }
        if running == 0 {
            let _ = tx.send(Message::Info(format!(
                "All allocations on node {node_id:?} have stopped."
            )));
            return;
        }
        current = match fetch(index) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Message::Error(e));
                return;
            }
        };
    }
}

/// What the monitor says about an alloc that changed, as Nomad's drain monitor words it.
fn alloc_change(orig: &Allocation, a: &Allocation) -> Option<String> {
    let migrating = a.desired_transition.migrate == Some(true);
    if orig.client_status != a.client_status {
        Some(format!(
            "status {} -> {}",
            orig.client_status, a.client_status
        ))
    } else if migrating && orig.desired_transition.migrate != Some(true) {
        Some("marked for migration".into())
    } else if migrating
        && orig.desired_status != a.desired_status
        && a.desired_status == ALLOC_DESIRED_STOP
    {
        Some("draining".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        let mut fs = client_flags();
        fs.bool("enable", false)
            .bool("disable", false)
            .string("deadline", "")
            .bool("detach", false)
            .bool("force", false)
            .bool("no-deadline", false)
            .bool("ignore-system", false)
            .bool("keep-ineligible", false)
            .bool("self", false)
            .bool("yes", false)
            .bool("monitor", false)
            .string("m", "")
            .list("meta");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let rest = fs.parse(&args).map_err(|_| "flag error".to_string())?;
        options(&fs, &rest)
    }

    fn first_line(r: Result<Options, String>) -> String {
        r.err().unwrap().lines().next().unwrap().to_string()
    }

    #[test]
    fn flag_combinations_nomad_refuses() {
        for (args, want) in [
            (
                &["n1"][..],
                "Either the '-enable' or '-disable' flag must be set, unless using '-monitor'",
            ),
            (
                &["-enable", "-disable", "n1"],
                "Either the '-enable' or '-disable' flag must be set, unless using '-monitor'",
            ),
            (
                &["-monitor", "-enable", "n1"],
                "The -monitor flag cannot be used with the '-enable' or '-disable' flags",
            ),
            (
                &["-enable"],
                "Node ID must be specified if -self isn't being used",
            ),
            (
                &["-enable", "-self", "n1"],
                "Node ID must be specified if -self isn't being used",
            ),
            (
                &["-disable", "-force", "n1"],
                "-disable can't be combined with flags configuring drain strategy",
            ),
            (
                &["-enable", "-deadline", "1m", "-force", "n1"],
                "-deadline can't be combined with -force or -no-deadline",
            ),
            (
                &["-enable", "-force", "-no-deadline", "n1"],
                "-force and -no-deadline are mutually exclusive",
            ),
            (
                &["-enable", "-deadline", "-5m", "n1"],
                "A positive drain duration must be given",
            ),
        ] {
            assert_eq!(first_line(parse(args)), want, "{args:?}");
        }
        let e = first_line(parse(&["-enable", "-deadline", "soon", "n1"]));
        assert!(e.starts_with("Failed to parse deadline \"soon\""), "{e}");
    }

    #[test]
    fn deadlines() {
        let d = |args: &[&str]| parse(args).unwrap().deadline;
        assert_eq!(d(&["-enable", "n1"]), DEFAULT_DEADLINE);
        assert_eq!(d(&["-enable", "-deadline", "90s", "n1"]), 90_000_000_000);
        assert_eq!(d(&["-enable", "-force", "n1"]), -1_000_000_000);
        assert_eq!(d(&["-enable", "-no-deadline", "n1"]), 0);
        assert!(parse(&["-monitor", "-self"]).unwrap().monitor);
    }

    #[test]
    fn meta_carries_over_on_cancel() {
        let node = Node {
            last_drain: Some(nomad_structs::DrainMetadata {
                meta: Some(BTreeMap::from([("message".into(), "kernel".into())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let o = parse(&["-disable", "-m", "done", "-meta", "ticket=42", "n1"]).unwrap();
        let m = drain_meta(&o, &node);
        assert_eq!(m["message"], "kernel");
        assert_eq!(m["cancel_message"], "done");
        assert_eq!(m["ticket"], "42");
        let o = parse(&["-enable", "-m", "upgrade", "n1"]).unwrap();
        let m = drain_meta(&o, &node);
        assert_eq!(m.len(), 1);
        assert_eq!(m["message"], "upgrade");
    }

    #[test]
    fn alloc_lines() {
        let running = Allocation {
            client_status: ALLOC_CLIENT_RUNNING.into(),
            desired_status: "run".into(),
            ..Default::default()
        };
        let mut marked = running.clone();
        marked.desired_transition.migrate = Some(true);
        assert_eq!(
            alloc_change(&running, &marked).as_deref(),
            Some("marked for migration")
        );
        let mut stopping = marked.clone();
        stopping.desired_status = ALLOC_DESIRED_STOP.into();
        assert_eq!(
            alloc_change(&marked, &stopping).as_deref(),
            Some("draining")
        );
        let mut done = stopping.clone();
        done.client_status = "complete".into();
        assert_eq!(
            alloc_change(&stopping, &done).as_deref(),
            Some("status running -> complete")
        );
        assert_eq!(alloc_change(&done, &done), None);
    }
}
