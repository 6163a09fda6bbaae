//! An agent killed with SIGKILL and started again on the same data_dir (issues: runtime env /
//! surviving an agent restart, cluster / durable state): its jobs are still there, its tasks
//! were never stopped and are reattached (same pid, not run twice), a task that ended while the
//! agent was down gets its real end, and nothing a task forked survives the job's stop.

use std::path::Path;
use std::time::Duration;

use nomad_testkit::cluster::ready_nodes;
use nomad_testkit::{free_port, wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn config(dir: &Path, http: u16, rpc: u16, serf: u16) -> String {
    format!(
        "data_dir = \"{}\"\nbind_addr = \"127.0.0.1\"\nports {{\n  http = {http}\n  rpc = {rpc}\n  serf = {serf}\n}}\nserver {{\n  enabled = true\n  bootstrap_expect = 1\n}}\nclient {{\n  enabled = true\n}}\nplugin \"raw_exec\" {{\n  config {{\n    enabled = true\n  }}\n}}\n",
        dir.join("data").display()
    )
}

fn alloc_of(agent: &DevAgent, job: &str) -> Option<serde_json::Value> {
    agent
        .get_json(&format!("/v1/job/{job}/allocations"))
        .ok()
        .and_then(|v| v.as_array().and_then(|a| a.first().cloned()))
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn kill9_restart_reattaches_and_stop_leaves_no_survivor() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("agent");
    let (http, rpc, serf) = (free_port(), free_port(), free_port());
    let cfg = config(&dir, http, rpc, serf);
    let mut agent = DevAgent::start_in(bin(), &dir, &cfg, http);
    agent.wait_until("a ready node", Duration::from_secs(30), |a| {
        !ready_nodes(a).is_empty()
    });

    // A service whose task double-forks a child that outlives the shell if anything lets it.
    let marks = root.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let spec = root.path().join("fork.nomad.hcl");
    std::fs::write(
        &spec,
        format!(
            "job \"fork\" {{\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sh\"\n        args = [\"-c\", \"echo $$ > {m}/task.pid; (setsid sh -c 'echo $$ > {m}/child.pid; exec sleep 1000' &); while true; do echo tick; sleep 0.2; done\"]\n      }}\n      resources {{\n        cpu = 50\n        memory = 32\n      }}\n    }}\n  }}\n}}\n",
            m = marks.display()
        ),
    )
    .unwrap();
    let (code, out, err) = agent.cli(bin(), &["job", "run", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        wait_for(Duration::from_secs(20), || read_pid(
            &marks.join("child.pid")
        )
        .is_some()),
        "task never started: {}",
        agent.log()
    );
    let task_pid = read_pid(&marks.join("task.pid")).unwrap();
    let child_pid = read_pid(&marks.join("child.pid")).unwrap();
    let alloc_id = alloc_of(&agent, "fork").unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();

    agent.kill9();
    assert!(
        alive(task_pid) && alive(child_pid),
        "tasks keep running while the agent is down"
    );
    // Output written while the agent is down reaches the logs once it is back.
    std::thread::sleep(Duration::from_millis(600));

    let agent = DevAgent::start_in(bin(), &dir, &cfg, http);
    agent.wait_until("the job back after restart", Duration::from_secs(30), |a| {
        alloc_of(a, "fork")
            .is_some_and(|x| x["ID"] == alloc_id.as_str() && x["ClientStatus"] == "running")
    });
    assert_eq!(
        read_pid(&marks.join("task.pid")),
        Some(task_pid),
        "the task must not run twice"
    );
    assert!(alive(task_pid), "the reattached task is the same process");
    let ticks = |a: &DevAgent| {
        a.cli(bin(), &["alloc", "logs", &alloc_id])
            .1
            .matches("tick")
            .count()
    };
    let before = ticks(&agent);
    agent.wait_until(
        "logs to keep flowing after the restart",
        Duration::from_secs(10),
        |a| ticks(a) > before,
    );

    let (code, _, err) = agent.cli(bin(), &["job", "stop", "fork"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        wait_for(Duration::from_secs(30), || !alive(task_pid) && !alive(child_pid)),
        "nothing the task forked may survive its stop (task {task_pid} alive {}, child {child_pid} alive {})",
        alive(task_pid),
        alive(child_pid)
    );
}

/// A batch job whose task waits for `go` to exist, then exits with `code`.
fn waiting_job(root: &Path, id: &str, go: &Path, code: i32) -> std::path::PathBuf {
    let spec = root.join(format!("{id}.nomad.hcl"));
    std::fs::write(
        &spec,
        format!(
            "job \"{id}\" {{\n  type = \"batch\"\n  group \"g\" {{\n    restart {{\n      attempts = 0\n    }}\n    reschedule {{\n      attempts = 0\n      unlimited = false\n    }}\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = \"/bin/sh\"\n        args = [\"-c\", \"while [ ! -f {go} ]; do sleep 0.05; done; exit {code}\"]\n      }}\n    }}\n  }}\n}}\n",
            go = go.display()
        ),
    )
    .unwrap();
    spec
}

fn terminal_event(a: &serde_json::Value) -> Option<serde_json::Value> {
    a["TaskStates"]["t"]["Events"]
        .as_array()?
        .iter()
        .find(|e| e["Type"] == "Terminated")
        .cloned()
}

/// The real exit status reaches the user whether the task ends while the agent is down, or
/// after a restarted agent reattached to it: each task runs under an exit recorder.
#[test]
fn exit_status_survives_an_agent_restart() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("agent");
    let (http, rpc, serf) = (free_port(), free_port(), free_port());
    let cfg = config(&dir, http, rpc, serf);
    let mut agent = DevAgent::start_in(bin(), &dir, &cfg, http);
    agent.wait_until("a ready node", Duration::from_secs(30), |a| {
        !ready_nodes(a).is_empty()
    });
    let go_down = root.path().join("go-down");
    let go_later = root.path().join("go-later");
    for (id, go, code) in [("ends", &go_down, 3), ("later", &go_later, 4)] {
        let spec = waiting_job(root.path(), id, go, code);
        let (code, out, err) = agent.cli(bin(), &["job", "run", "-detach", spec.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    agent.wait_until("both running", Duration::from_secs(20), |a| {
        ["ends", "later"]
            .iter()
            .all(|j| alloc_of(a, j).is_some_and(|x| x["ClientStatus"] == "running"))
    });
    agent.kill9();
    // "ends" exits 3 while nobody is watching.
    std::fs::write(&go_down, "").unwrap();
    let agent = DevAgent::start_in(bin(), &dir, &cfg, http);
    agent.wait_until("ends to fail", Duration::from_secs(30), |a| {
        alloc_of(a, "ends").is_some_and(|x| x["ClientStatus"] == "failed")
    });
    let ev = terminal_event(&alloc_of(&agent, "ends").unwrap()).expect("a Terminated event");
    assert_eq!(ev["ExitCode"], 3, "{ev}");
    assert_eq!(ev["DisplayMessage"], "Exit Code: 3", "{ev}");
    // "later" was reattached and exits 4 now.
    assert_eq!(
        alloc_of(&agent, "later").unwrap()["ClientStatus"],
        "running"
    );
    std::fs::write(&go_later, "").unwrap();
    agent.wait_until("later to fail", Duration::from_secs(30), |a| {
        alloc_of(a, "later").is_some_and(|x| x["ClientStatus"] == "failed")
    });
    let ev = terminal_event(&alloc_of(&agent, "later").unwrap()).expect("a Terminated event");
    assert_eq!(ev["ExitCode"], 4, "{ev}");
    let (code, out, _) = agent.cli(
        bin(),
        &[
            "alloc",
            "status",
            alloc_of(&agent, "later").unwrap()["ID"].as_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("Exit Code: 4"), "{out}");
}

/// A task's exit recorder killed from outside does not make the agent take the running task
/// for dead: it keeps watching the task, and reports its end (without a code) when it comes.
#[test]
fn a_killed_exit_recorder_does_not_end_its_task() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("agent");
    let (http, rpc, serf) = (free_port(), free_port(), free_port());
    let cfg = config(&dir, http, rpc, serf);
    let agent = DevAgent::start_in(bin(), &dir, &cfg, http);
    agent.wait_until("a ready node", Duration::from_secs(30), |a| {
        !ready_nodes(a).is_empty()
    });
    let go = root.path().join("go");
    let spec = waiting_job(root.path(), "rec", &go, 0);
    let (code, out, err) = agent.cli(bin(), &["job", "run", "-detach", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    agent.wait_until("running", Duration::from_secs(20), |a| {
        alloc_of(a, "rec").is_some_and(|x| x["ClientStatus"] == "running")
    });
    let alloc = alloc_of(&agent, "rec").unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    // The recorder: the agent's child whose command line names this alloc's status file.
    let recorder = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("exit-recorder") && cmd.contains(&alloc)
        })
        .expect("the task's exit recorder");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(recorder),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    agent.wait_until(
        "the agent to notice the recorder is gone",
        Duration::from_secs(20),
        |a| a.log().contains("watching the task directly"),
    );
    assert_eq!(alloc_of(&agent, "rec").unwrap()["ClientStatus"], "running");
    std::fs::write(&go, "").unwrap();
    agent.wait_until("the task to end", Duration::from_secs(30), |a| {
        alloc_of(a, "rec").is_some_and(|x| x["ClientStatus"] != "running")
    });
    let ev = terminal_event(&alloc_of(&agent, "rec").unwrap()).expect("a Terminated event");
    assert!(
        ev["DisplayMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("exit status lost"),
        "{ev}"
    );
}
