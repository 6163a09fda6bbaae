//! End to end: `nomad alloc exec` and `nomad job action` into an `exec`-driver task through
//! the real `nomad` binary (`agent -dev`) and CLI (issue 6): the command runs inside the task's
//! chroot, PID namespace and cgroup, as the task's user. Needs root; prints SKIP otherwise.

use std::path::Path;
use std::time::Duration;

use nomad_testkit::{require_root, wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

const JOB: &str = r#"
job "intoexec" {
  datacenters = ["*"]

  group "g" {
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo ready > ${NOMAD_TASK_DIR}/ready; cat /proc/self/cgroup > ${NOMAD_TASK_DIR}/cgroup.txt; sleep 1000"]
      }
      env {
        GREETING = "hello-inside"
      }
      action "whoami" {
        command = "/bin/sh"
        args    = ["-c", "echo uid=$(id -u) pid=$$ greeting=$GREETING; cat /local/ready; ls /"]
      }
      action "fail" {
        command = "/bin/sh"
        args    = ["-c", "echo failing >&2; exit 7"]
      }
    }
  }
}
"#;

fn running_alloc(agent: &DevAgent) -> String {
    let mut id = String::new();
    let ok = wait_for(Duration::from_secs(60), || {
        let Ok(v) = agent.get_json("/v1/job/intoexec/allocations") else {
            return false;
        };
        for a in v.as_array().cloned().unwrap_or_default() {
            if a["ClientStatus"] == "running" && a["TaskStates"]["t"]["State"] == "running" {
                id = a["ID"].as_str().unwrap_or_default().to_string();
                return true;
            }
        }
        false
    });
    assert!(ok, "no running alloc; agent log:\n{}", agent.log());
    id
}

#[test]
fn alloc_exec_and_job_action_run_inside_the_exec_task() {
    require_root!();
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("intoexec.nomad.hcl");
    std::fs::write(&spec, JOB).expect("write job");
    let (code, out, err) = agent.cli(bin(), &["job", "run", spec.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "job run:\n{out}\n{err}\n{}", agent.log());
    let alloc = running_alloc(&agent);
    // The task has written its marker (it runs as nobody, inside its chroot).
    let ready = wait_for(Duration::from_secs(15), || {
        let (code, out, _) = agent.cli(bin(), &["alloc", "fs", &alloc, "t/local/ready"]);
        code == 0 && out == "ready\n"
    });
    assert!(ready, "task never wrote local/ready:\n{}", agent.log());

    // The chroot and the task user.
    let (code, out, err) = agent.cli(
        bin(),
        &["alloc", "exec", &alloc, "/bin/sh", "-c", "ls /; id -u"],
    );
    assert_eq!(
        code,
        0,
        "stdout:\n{out}\nstderr:\n{err}\nagent:\n{}",
        agent.log()
    );
    let lines: Vec<&str> = out.lines().collect();
    for entry in ["alloc", "local", "secrets", "tmp", "usr", "proc", "dev"] {
        assert!(lines.contains(&entry), "no /{entry} in:\n{out}");
    }
    // Host-only top-level directories are not there.
    for host_only in ["root", "home", "work", "var"] {
        if Path::new("/").join(host_only).exists() {
            assert!(
                !lines.contains(&host_only),
                "host /{host_only} visible:\n{out}"
            );
        }
    }
    assert_eq!(lines.last().copied(), Some("65534"), "{out}");

    // The task's PID namespace (pid 1 is the task), its cgroup, its environment, and exit
    // codes.
    let (code, out, err) = agent.cli(
        bin(),
        &[
            "alloc",
            "exec",
            &alloc,
            "/bin/sh",
            "-c",
            "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/self/cgroup; echo $GREETING; exit 5",
        ],
    );
    assert_eq!(code, 5, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.starts_with("/bin/sh -c echo ready"), "{out}");
    assert!(out.contains("hello-inside"), "{out}");
    let (c, task_cgroup, e) = agent.cli(bin(), &["alloc", "fs", &alloc, "t/local/cgroup.txt"]);
    assert_eq!(c, 0, "{e}");
    assert!(!task_cgroup.is_empty());
    assert!(
        out.contains(&task_cgroup),
        "task:\n{task_cgroup}\ncommand:\n{out}"
    );

    // A command that only exists on the host is not found inside the chroot.
    let host_only = bin().display().to_string();
    let (code, _, err) = agent.cli(bin(), &["alloc", "exec", &alloc, &host_only]);
    assert_ne!(code, 0);
    assert!(err.contains("inside the task's root"), "{err}");

    // nomad job action runs inside the task too.
    let (code, out, err) = agent.cli(
        bin(),
        &[
            "job", "action", "-job", "intoexec", "-group", "g", "-task", "t", "whoami",
        ],
    );
    assert_eq!(
        code,
        0,
        "stdout:\n{out}\nstderr:\n{err}\nagent:\n{}",
        agent.log()
    );
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("uid=65534 pid="), "{out}");
    assert!(first.ends_with("greeting=hello-inside"), "{out}");
    let pid: u32 = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("pid");
    assert!(
        pid > 1 && pid < 1000,
        "not in the task's PID namespace: {out}"
    );
    assert!(out.contains("\nready\n"), "{out}");
    assert!(out.lines().any(|l| l == "local"), "{out}");
    let (code, _, err) = agent.cli(
        bin(),
        &[
            "job", "action", "-job", "intoexec", "-group", "g", "-task", "t", "fail",
        ],
    );
    assert_eq!(code, 7);
    assert!(err.contains("failing"), "{err}");

    let (code, _, err) = agent.cli(bin(), &["job", "stop", "intoexec"]);
    assert_eq!(code, 0, "{err}");
}
