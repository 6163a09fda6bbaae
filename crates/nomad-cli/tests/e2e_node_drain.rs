//! End to end: `nomad node drain` on a server and two client agents (separate processes on
//! loopback). Draining a node moves its service allocs to the other node at the pace of the
//! group's `migrate` block, the monitor follows it to the end, and the drained node is left
//! empty and ineligible; `-disable` opens it again; `-force -detach` moves everything at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nomad_testkit::cluster::{
    alloc_processes, allocs_with_status, client_config, raw_exec_job, ready_nodes, server_config,
    Ports,
};
use nomad_testkit::{cli_field, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn node(server: &DevAgent, id: &str) -> serde_json::Value {
    server.get_json(&format!("/v1/node/{id}")).expect("node")
}

/// Node IDs of the job's running allocs.
fn running_nodes(server: &DevAgent, job: &str) -> Vec<String> {
    allocs_with_status(server, job, "running")
        .iter()
        .map(|a| a["NodeID"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_drained_node_hands_its_allocs_to_the_other_node() {
    let root = tempfile::tempdir().unwrap();
    let dir = |n: &str| -> PathBuf { root.path().join(n) };
    let sp = Ports::free();
    let server = DevAgent::start_in(
        bin(),
        &dir("server"),
        &server_config(&dir("server"), "server1", sp, &[], ""),
        sp.http,
    );
    server.wait_until("server API", Duration::from_secs(30), |a| {
        a.get_json("/v1/status/leader").is_ok()
    });
    let (p1, p2) = (Ports::free(), Ports::free());
    let _c1 = DevAgent::start_in(
        bin(),
        &dir("client1"),
        &client_config(&dir("client1"), "client1", p1, &[sp]),
        p1.http,
    );
    let _c2 = DevAgent::start_in(
        bin(),
        &dir("client2"),
        &client_config(&dir("client2"), "client2", p2, &[sp]),
        p2.http,
    );
    server.wait_until("two ready nodes", Duration::from_secs(30), |a| {
        ready_nodes(a).len() == 2
    });

    let spec = raw_exec_job(root.path(), "svc", "service", "/bin/sleep", &["3600"]);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("group \"g\" {", "group \"g\" {\n    count = 2");
    std::fs::write(&spec, text).unwrap();
    let (code, out, err) = server.cli(bin(), &["job", "run", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    server.wait_until("svc running twice", Duration::from_secs(30), |a| {
        running_nodes(a, "svc").len() == 2
    });

    // Usage errors come first, in Nomad's words.
    let (code, _, err) = server.cli(bin(), &["node", "drain", "-enable"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Node ID must be specified if -self isn't being used"),
        "{err}"
    );
    let (code, _, err) = server.cli(
        bin(),
        &["node", "drain", "-enable", "-force", "-no-deadline", "x1"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("-force and -no-deadline are mutually exclusive"),
        "{err}"
    );

    // Drain the node running the first alloc, following it to the end.
    let drained = running_nodes(&server, "svc").remove(0);
    let other = ready_nodes(&server)
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| *id != drained)
        .unwrap();
    let before: Vec<String> = allocs_with_status(&server, "svc", "running")
        .iter()
        .filter(|a| a["NodeID"] == drained.as_str())
        .map(|a| a["ID"].as_str().unwrap().to_string())
        .collect();
    let (code, out, err) = server.cli_within(
        bin(),
        &[
            "node",
            "drain",
            "-enable",
            "-yes",
            "-deadline",
            "1m",
            &drained[..8],
        ],
        Duration::from_secs(90),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    for line in [
        "Ctrl-C to stop monitoring: will not cancel the node drain".to_string(),
        format!("Node {drained:?} drain strategy set"),
        format!("Alloc {:?} marked for migration", before[0]),
        format!("Node {drained:?} has marked all allocations for migration"),
        format!("All allocations on node {drained:?} have stopped."),
    ] {
        assert!(out.contains(&line), "missing {line:?} in\n{out}\n{err}");
    }
    server.wait_until(
        "svc running twice elsewhere",
        Duration::from_secs(30),
        |a| running_nodes(a, "svc") == [other.clone(), other.clone()],
    );
    for id in &before {
        assert_eq!(alloc_processes(id), 0, "alloc {id} left processes behind");
    }
    let n = node(&server, &drained);
    assert_eq!(n["Drain"], false, "{n}");
    assert_eq!(n["SchedulingEligibility"], "ineligible");
    assert_eq!(n["LastDrain"]["Status"], "complete", "{n}");
    let events: Vec<&str> = n["Events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["Subsystem"] == "Drain")
        .filter_map(|e| e["Message"].as_str())
        .collect();
    assert_eq!(events, ["Node drain strategy set", "Node drain complete"]);
    let (_, status, _) = server.cli(bin(), &["node", "status", &drained]);
    assert_eq!(cli_field(&status, "Drain"), "false", "{status}");

    // Nothing to follow any more.
    let (code, _, err) = server.cli(bin(), &["node", "drain", "-monitor", &drained]);
    assert_eq!(code, 0);
    assert!(err.contains("No drain strategy set"), "{err}");

    // -disable makes the node eligible again.
    let (code, out, err) = server.cli(bin(), &["node", "drain", "-disable", "-yes", &drained]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.trim(), format!("Node {drained:?} drain strategy unset"));
    assert_eq!(node(&server, &drained)["SchedulingEligibility"], "eligible");

    // -force -detach: everything on the other node leaves at once, back to the first.
    let (code, out, err) = server.cli(
        bin(),
        &[
            "node", "drain", "-enable", "-force", "-detach", "-m", "kernel", &other,
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.trim(), format!("Node {other:?} drain strategy set"));
    server.wait_until("svc back on the first node", Duration::from_secs(30), |a| {
        running_nodes(a, "svc") == [drained.clone(), drained.clone()]
    });
    server.wait_until("the forced drain complete", Duration::from_secs(30), |a| {
        a.get_json(&format!("/v1/node/{other}"))
            .is_ok_and(|n| n["LastDrain"]["Status"] == "complete")
    });
    let n = node(&server, &other);
    assert_eq!(n["LastDrain"]["Meta"]["message"], "kernel", "{n}");
}
