//! Faults in a three-server cluster, as separate processes on loopback (issue: cluster):
//! a minority of servers accepts no writes and says "No cluster leader" (whether the survivor
//! was a follower or the leader itself), while a client's tasks keep running through the outage
//! and the client reconciles when the servers return, without running anything twice.

use std::path::Path;
use std::time::Duration;

use nomad_testkit::cluster::{
    alloc_processes, allocs_with_status, client_config, has_leader_and_peers, leader, raw_exec_job,
    ready_nodes, server_config, Ports,
};
use nomad_testkit::DevAgent;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

const NAMES: [&str; 3] = ["s1", "s2", "s3"];

struct Cluster {
    root: tempfile::TempDir,
    ports: [Ports; 3],
    servers: Vec<Option<DevAgent>>,
}

impl Cluster {
    fn start() -> Cluster {
        let mut c = Cluster {
            root: tempfile::tempdir().expect("tmp"),
            ports: [Ports::free(), Ports::free(), Ports::free()],
            servers: vec![None, None, None],
        };
        for i in 0..3 {
            c.restart(i);
        }
        c.wait_for_quorum("a leader and three voters");
        c
    }

    fn wait_for_quorum(&self, what: &str) {
        self.any().wait_until(what, Duration::from_secs(90), |a| {
            has_leader_and_peers(a, 3)
        });
    }

    fn restart(&mut self, i: usize) {
        let dir = self.root.path().join(NAMES[i]);
        let cfg = server_config(&dir, NAMES[i], self.ports[i], &self.ports, "");
        self.servers[i] = Some(DevAgent::start_in(bin(), &dir, &cfg, self.ports[i].http));
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.servers[i].take() {
            s.kill9();
        }
    }

    fn any(&self) -> &DevAgent {
        self.servers.iter().flatten().next().expect("a live server")
    }

    /// Index of the server `a` names as leader (None if it names none).
    fn leader_index(&self) -> Option<usize> {
        let l = leader(self.any());
        (0..3).find(|i| self.ports[*i].rpc_addr() == l)
    }

    fn run_job(&self, on: usize, id: &str, kind: &str, script: &str) -> (i32, String, String) {
        let spec = raw_exec_job(self.root.path(), id, kind, "/bin/sh", &["-c", script]);
        self.servers[on]
            .as_ref()
            .expect("live server")
            .cli(bin(), &["job", "run", "-detach", spec.to_str().unwrap()])
    }
}

#[test]
fn minority_refuses_writes_and_clients_ride_out_the_outage() {
    let mut c = Cluster::start();
    let cp = Ports::free();
    let cdir = c.root.path().join("c1");
    let client = DevAgent::start_in(
        bin(),
        &cdir,
        &client_config(&cdir, "client1", cp, &c.ports),
        cp.http,
    );
    c.any()
        .wait_until("the client ready", Duration::from_secs(30), |a| {
            ready_nodes(a).len() == 1
        });
    let lead = c.leader_index().expect("leader");
    let (code, out, err) = c.run_job(lead, "svc", "service", "exec sleep 3600");
    assert_eq!(code, 0, "{out}\n{err}");
    c.any()
        .wait_until("svc running", Duration::from_secs(30), |a| {
            allocs_with_status(a, "svc", "running").len() == 1
        });
    let alloc = allocs_with_status(c.any(), "svc", "running")[0]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(alloc_processes(&alloc), 1);

    // Kill the leader and one follower: the surviving follower elects nobody and refuses
    // writes with Nomad's message.
    let follower = (0..3).find(|i| *i != lead).unwrap();
    let survivor = (0..3).find(|i| *i != lead && *i != follower).unwrap();
    c.kill(lead);
    c.kill(follower);
    let (code, _, err) = c.run_job(survivor, "refused", "batch", "true");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No cluster leader"), "{err}");
    // Stale reads still answer from the survivor's copy of the state.
    let read = c.servers[survivor]
        .as_ref()
        .unwrap()
        .get_json("/v1/job/svc?stale");
    assert!(read.is_ok(), "{read:?}");

    // Bring them back, then leave the leader alone: an isolated leader must not acknowledge
    // writes it cannot replicate.
    c.restart(lead);
    c.restart(follower);
    c.wait_for_quorum("a leader again and three voters");
    let lead = c.leader_index().expect("leader");
    for i in (0..3).filter(|i| *i != lead) {
        c.kill(i);
    }
    // (Its log may keep the entry: like any Raft write that timed out, it may still commit
    // once a quorum is back, so "unacknowledged" is all that can be promised.)
    let (code, _, err) = c.run_job(lead, "unacked", "batch", "true");
    assert_eq!(code, 1, "an isolated leader acknowledged a write: {err}");
    eprintln!("isolated leader answered: {err}");
    assert!(err.contains("No cluster leader"), "{err}");

    // All servers down: the client's task keeps running.
    c.kill(lead);
    client.wait_until(
        "the client to notice the servers are gone",
        Duration::from_secs(60),
        |a| a.log().contains("heartbeat failed"),
    );
    assert_eq!(alloc_processes(&alloc), 1, "the task died with the servers");

    // Everything back: the client reconciles; the same alloc runs, once; writes are accepted
    // and the refused jobs never appear.
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_for_quorum("a leader after the outage and three voters");
    c.any()
        .wait_until("the client ready again", Duration::from_secs(60), |a| {
            ready_nodes(a).len() == 1
        });
    let running: Vec<String> = allocs_with_status(c.any(), "svc", "running")
        .iter()
        .map(|a| a["ID"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(running, vec![alloc.clone()]);
    assert_eq!(alloc_processes(&alloc), 1);
    assert!(c.any().get_json("/v1/job/refused?stale").is_err());
    let lead = c.leader_index().expect("leader");
    let (code, out, err) = c.run_job(lead, "after", "batch", "true");
    assert_eq!(code, 0, "{out}\n{err}");
}
