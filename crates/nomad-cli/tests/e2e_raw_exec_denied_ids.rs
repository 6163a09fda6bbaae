//! raw_exec's `denied_host_uids` / `denied_host_gids` plugin options through the real agent:
//! a task that would run as a denied uid fails with Nomad's message in a task event.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nomad_testkit::cluster::{allocs_with_status, raw_exec_job};
use nomad_testkit::DevAgent;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn driver_failure(a: &DevAgent, job: &str) -> String {
    let allocs = allocs_with_status(a, job, "failed");
    allocs[0]["TaskStates"]["t"]["Events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .find(|e| e["Type"] == "Driver Failure")
        .map(|e| e["DisplayMessage"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn a_task_running_as_a_denied_uid_fails_with_nomads_message() {
    // The agent runs raw_exec tasks as itself, i.e. as this test's uid.
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let gid = std::fs::metadata("/proc/self").unwrap().gid();
    for (key, id, needle) in [
        (
            "denied_host_uids",
            uid,
            format!("running as uid {uid} is disallowed"),
        ),
        (
            "denied_host_gids",
            gid,
            format!("running as gid {gid} is disallowed"),
        ),
    ] {
        let agent = DevAgent::start(
            bin(),
            &format!("plugin \"raw_exec\" {{\n  config {{\n    enabled = true\n    {key} = \"{id}\"\n  }}\n}}\n"),
        );
        let dir = tempfile::tempdir().unwrap();
        let spec = raw_exec_job(dir.path(), "denied", "batch", "/bin/true", &[]);
        let (code, out, err) = agent.cli(bin(), &["job", "run", "-detach", spec.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        agent.wait_until("the alloc to fail", Duration::from_secs(60), |a| {
            !allocs_with_status(a, "denied", "failed").is_empty()
        });
        let msg = driver_failure(&agent, "denied");
        assert!(msg.contains(&needle), "{key}: {msg:?}");
    }
}

/// The client's `user.denylist` for `user.checked_drivers`: by default an exec task may not
/// run as root (a prestart hook failure, not retried); raw_exec is not checked.
#[test]
fn exec_tasks_may_not_run_as_root_by_default() {
    nomad_testkit::require_root!();
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("asroot.nomad.hcl");
    std::fs::write(
        &spec,
        "job \"asroot\" {\n  type = \"batch\"\n  group \"g\" {\n    restart {\n      attempts = 0\n    }\n    reschedule {\n      attempts = 0\n      unlimited = false\n    }\n    task \"t\" {\n      driver = \"exec\"\n      user = \"root\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (code, out, err) = agent.cli(bin(), &["job", "run", "-detach", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    agent.wait_until("the alloc to fail", Duration::from_secs(60), |a| {
        !allocs_with_status(a, "asroot", "failed").is_empty()
    });
    let allocs = allocs_with_status(&agent, "asroot", "failed");
    let events = allocs[0]["TaskStates"]["t"]["Events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let hook = events
        .iter()
        .find(|e| e["Type"] == "Task hook failed")
        .unwrap_or_else(|| panic!("no hook failure: {events:?}"));
    assert_eq!(
        hook["DisplayMessage"],
        "prestart hook \"validate\" failed: running as user \"root\" is disallowed"
    );
    assert!(!events.iter().any(|e| e["Type"] == "Started"), "{events:?}");
}
