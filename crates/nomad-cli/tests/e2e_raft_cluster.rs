//! Three server agents on Raft and a client, as separate processes on loopback (issue:
//! cluster). They elect a leader; the leader killed with SIGKILL is replaced within seconds, no
//! acknowledged job is lost and new jobs are accepted and placed; everything restarted from its
//! data_dir comes back with its state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nomad_testkit::cluster::{client_config, has_leader_and_peers, leader, server_config, Ports};
use nomad_testkit::DevAgent;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn job_spec(root: &Path, id: &str) -> PathBuf {
    let p = root.join(format!("{id}.nomad.hcl"));
    std::fs::write(
        &p,
        format!("job \"{id}\" {{\n  type = \"batch\"\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/true\"\n      }}\n      resources {{\n        cpu = 20\n        memory = 16\n      }}\n    }}\n  }}\n}}\n"),
    )
    .unwrap();
    p
}

fn complete(a: &DevAgent, job: &str) -> bool {
    a.get_json(&format!("/v1/job/{job}/allocations?stale"))
        .ok()
        .and_then(|v| {
            v.as_array()
                .map(|x| x.iter().any(|al| al["ClientStatus"] == "complete"))
        })
        .unwrap_or(false)
}

#[test]
fn three_servers_elect_fail_over_and_restart() {
    let root = tempfile::tempdir().unwrap();
    let sp = [Ports::free(), Ports::free(), Ports::free()];
    let names = ["s1", "s2", "s3"];
    let dir = |n: &str| root.path().join(n);
    let start = |i: usize| {
        DevAgent::start_in(
            bin(),
            &dir(names[i]),
            &server_config(&dir(names[i]), names[i], sp[i], &sp, ""),
            sp[i].http,
        )
    };
    let mut servers: Vec<Option<DevAgent>> = (0..3).map(|i| Some(start(i))).collect();
    let first = servers[0].as_ref().unwrap();
    first.wait_until("a leader and three peers", Duration::from_secs(90), |a| {
        has_leader_and_peers(a, 3)
    });
    let cp = Ports::free();
    let client = DevAgent::start_in(
        bin(),
        &dir("c1"),
        &client_config(&dir("c1"), "client1", cp, &sp),
        cp.http,
    );
    first.wait_until("the client node ready", Duration::from_secs(30), |a| {
        a.get_json("/v1/nodes")
            .ok()
            .and_then(|v| {
                v.as_array()
                    .map(|n| n.iter().any(|x| x["Status"] == "ready"))
            })
            .unwrap_or(false)
    });

    // A job registered through a follower is replicated and placed.
    let lead = leader(first);
    let follower = (0..3).find(|i| sp[*i].rpc_addr() != lead).unwrap();
    let f = servers[follower].as_ref().unwrap();
    let (code, out, err) = f.cli(
        bin(),
        &[
            "job",
            "run",
            job_spec(root.path(), "before").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    for s in servers.iter().flatten() {
        s.wait_until("the job on every server", Duration::from_secs(20), |a| {
            complete(a, "before")
        });
    }

    // Kill the leader: a new one within seconds, the job still there, new jobs placed.
    let li = (0..3).find(|i| sp[*i].rpc_addr() == lead).unwrap();
    servers[li].as_mut().unwrap().kill9();
    servers[li] = None;
    let survivor = servers.iter().flatten().next().unwrap();
    survivor.wait_until("a new leader", Duration::from_secs(20), |a| {
        let l = leader(a);
        !l.is_empty() && l != lead
    });
    let (code, out, err) = survivor.cli(
        bin(),
        &[
            "job",
            "run",
            job_spec(root.path(), "after").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    survivor.wait_until("the new job placed", Duration::from_secs(30), |a| {
        complete(a, "after")
    });
    assert!(
        complete(survivor, "before"),
        "no acknowledged job may be lost"
    );

    // Restart everything from its data_dir: the state is back.
    drop(client);
    for s in servers.iter_mut() {
        *s = None;
    }
    let servers: Vec<DevAgent> = (0..3).map(start).collect();
    servers[0].wait_until("a leader after the restart", Duration::from_secs(60), |a| {
        !leader(a).is_empty()
    });
    for s in &servers {
        s.wait_until(
            "both jobs after the restart",
            Duration::from_secs(30),
            |a| {
                ["before", "after"]
                    .iter()
                    .all(|j| a.get_json(&format!("/v1/job/{j}?stale")).is_ok())
            },
        );
    }
}
