//! Cluster end to end: a server agent and two client agents as separate processes on loopback,
//! clients joining over the RPC port (issue: cluster). A client killed with SIGKILL misses its
//! heartbeats; its allocation is marked lost and rescheduled on the other client; when the
//! killed client comes back it reconciles and stops the task it left running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nomad_testkit::cluster::{
    alloc_processes, allocs_with_status, client_config, ready_nodes, server_config, Ports,
};
use nomad_testkit::DevAgent;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

#[test]
fn clients_join_over_rpc_and_lost_allocs_move() {
    let root = tempfile::tempdir().unwrap();
    let dir = |n: &str| -> PathBuf { root.path().join(n) };
    let sp = Ports::free();
    let server = DevAgent::start_in(
        bin(),
        &dir("server"),
        &server_config(
            &dir("server"),
            "server1",
            sp,
            &[],
            "  min_heartbeat_ttl = \"1s\"\n  heartbeat_grace = \"2s\"\n",
        ),
        sp.http,
    );
    server.wait_until("server API", Duration::from_secs(30), |a| {
        a.get_json("/v1/status/leader").is_ok()
    });

    let (p1, p2) = (Ports::free(), Ports::free());
    let ports = [p1, p2];
    let names = ["client1", "client2"];
    let start_client = |i: usize| {
        DevAgent::start_in(
            bin(),
            &dir(names[i]),
            &client_config(&dir(names[i]), names[i], ports[i], &[sp]),
            ports[i].http,
        )
    };
    let mut clients = [Some(start_client(0)), Some(start_client(1))];
    server.wait_until("two ready nodes", Duration::from_secs(30), |a| {
        ready_nodes(a).len() == 2
    });

    let spec = root.path().join("svc.nomad.hcl");
    std::fs::write(
        &spec,
        "job \"svc\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sh\"\n        args = [\"-c\", \"echo started on ${node.unique.name}; while true; do sleep 1; done\"]\n      }\n      resources {\n        cpu = 50\n        memory = 32\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (code, out, err) = server.cli(bin(), &["job", "run", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    server.wait_until("svc running", Duration::from_secs(30), |a| {
        allocs_with_status(a, "svc", "running").len() == 1
    });
    let first = allocs_with_status(&server, "svc", "running").remove(0);
    let first_node = first["NodeName"].as_str().unwrap().to_string();
    let first_id = first["ID"].as_str().unwrap().to_string();

    // Logs through the server's address reach the client that runs the alloc.
    let mut logs = String::new();
    server.wait_until(
        "logs via the server address",
        Duration::from_secs(10),
        |a| {
            logs = a.cli(bin(), &["alloc", "logs", &first_id]).1;
            logs.contains("started on")
        },
    );
    assert!(logs.contains(&first_node), "{logs}");

    // Crash the client that runs it (its task keeps running, as Nomad's tasks do).
    let v = names
        .iter()
        .position(|n| *n == first_node)
        .expect("placed on one of the clients");
    let survivor = names[1 - v];
    clients[v].as_mut().expect("client").kill9();
    assert!(
        alloc_processes(&first_id) > 0,
        "the crashed client's task keeps running"
    );
    server.wait_until(
        "the alloc lost and replaced on the other client",
        Duration::from_secs(40),
        |a| {
            let allocs = a
                .get_json("/v1/job/svc/allocations")
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            let lost = allocs
                .iter()
                .any(|x| x["ID"] == first_id.as_str() && x["ClientStatus"] == "lost");
            let moved = allocs
                .iter()
                .any(|x| x["NodeName"] == survivor && x["ClientStatus"] == "running");
            lost && moved
        },
    );

    // The crashed client returns, reconciles, and stops the task it left behind.
    clients[v] = Some(start_client(v));
    server.wait_until(
        "the crashed client ready again",
        Duration::from_secs(30),
        |a| ready_nodes(a).len() == 2,
    );
    server.wait_until(
        "the left-behind task to be stopped",
        Duration::from_secs(30),
        |_| alloc_processes(&first_id) == 0,
    );
    let replacement = allocs_with_status(&server, "svc", "running").remove(0)["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, err) = server.cli(bin(), &["job", "stop", "-purge", "svc"]);
    assert_eq!(code, 0, "{err}");
    server.wait_until(
        "the replacement's task to be stopped",
        Duration::from_secs(30),
        |_| alloc_processes(&replacement) == 0,
    );
    drop(clients);
}
