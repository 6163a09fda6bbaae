//! End to end (issue: job action): who may run `nomad job action` and `nomad alloc exec` on an
//! agent with ACLs on, for a task with file system isolation (exec) and one without (raw_exec).
//!
//! The documented rule: alloc-exec (with read-job and list-jobs so the CLI can find the alloc)
//! in the alloc's namespace, plus alloc-node-exec when the driver has no isolation. Our
//! extension: run-action lets a token run the declared actions, and only those.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nomad_testkit::{cli_field, require_root, wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

const JOB: &str = r#"
job "acts" {
  datacenters = ["*"]

  group "raw" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
      resources {
        cpu    = 20
        memory = 32
      }
      action "hello" {
        command = "/bin/echo"
        args    = ["hi from raw"]
      }
      action "fail" {
        command = "/bin/sh"
        args    = ["-c", "exit 3"]
      }
    }
  }

  group "iso" {
    count = 2
    task "t" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
      resources {
        cpu    = 20
        memory = 32
      }
      action "hello" {
        command = "/bin/echo"
        args    = ["hi from exec"]
      }
      action "fail" {
        command = "/bin/sh"
        args    = ["-c", "exit 3"]
      }
    }
  }
}
"#;

/// The agent, its management token and a scratch directory for policy files.
struct Secured {
    agent: DevAgent,
    mgmt: String,
    dir: tempfile::TempDir,
}

impl Secured {
    /// Runs the CLI against the agent with `token` (none when empty) and nothing else from the
    /// test's environment.
    fn nomad(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(bin());
        cmd.args(args).stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("NOMAD_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("NOMAD_ADDR", &self.agent.address);
        if !token.is_empty() {
            cmd.env("NOMAD_TOKEN", token);
        }
        let out = cmd.output().expect("run nomad");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A client token whose one policy is `rules`.
    fn token(&self, name: &str, rules: &str) -> String {
        let file = self.dir.path().join(format!("{name}.hcl"));
        std::fs::write(&file, rules).expect("write policy");
        let (code, out, err) = self.nomad(
            &self.mgmt,
            &["acl", "policy", "apply", name, file.to_str().unwrap()],
        );
        assert_eq!(code, 0, "policy {name}: {out}{err}");
        let (code, out, err) = self.nomad(
            &self.mgmt,
            &["acl", "token", "create", "-name", name, "-policy", name],
        );
        assert_eq!(code, 0, "token {name}: {out}{err}");
        cli_field(&out, "Secret ID")
    }

    fn action(&self, token: &str, group: &str, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec![
            "job", "action", "-job", "acts", "-group", group, "-task", "t",
        ];
        args.extend_from_slice(extra);
        self.nomad(token, &args)
    }

    /// The IDs of the running allocs of `group`, once there are `n`.
    fn running(&self, group: &str, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        let ok = wait_for(Duration::from_secs(60), || {
            let url = format!("{}/v1/job/acts/allocations", self.agent.address);
            let Ok(mut resp) = ureq::get(&url).header("X-Nomad-Token", &self.mgmt).call() else {
                return false;
            };
            let v: serde_json::Value = resp.body_mut().read_json().unwrap_or_default();
            ids = v
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|a| a["TaskGroup"] == group && a["ClientStatus"] == "running")
                .map(|a| a["ID"].as_str().unwrap_or_default().to_string())
                .collect();
            ids.len() == n
        });
        assert!(
            ok,
            "{n} running allocs of {group}; log:\n{}",
            self.agent.log()
        );
        ids.sort();
        ids
    }
}

fn policy(capabilities: &[&str]) -> String {
    let caps: Vec<String> = capabilities.iter().map(|c| format!("{c:?}")).collect();
    format!(
        "namespace \"default\" {{\n  capabilities = [{}]\n}}\n",
        caps.join(", ")
    )
}

fn assert_denied(what: &str, (code, out, err): (i32, String, String)) {
    assert_eq!(code, 1, "{what} was allowed: {out}{err}");
    assert!(err.contains("Permission denied"), "{what}: {err}");
    assert!(!out.contains("hi from"), "{what} ran anyway: {out}");
}

fn assert_ran(what: &str, (code, out, err): (i32, String, String), expect: &str) {
    assert_eq!((code, out.as_str()), (0, expect), "{what}: {err}");
}

#[test]
fn action_and_exec_permissions_per_capability() {
    require_root!();
    let agent = DevAgent::start_with(bin(), "acl {\n  enabled = true\n}\n", false, |a| {
        a.get_json("/v1/agent/health").is_ok()
    });
    let mut s = Secured {
        agent,
        mgmt: String::new(),
        dir: tempfile::tempdir().expect("tmp"),
    };
    let (code, out, err) = s.nomad("", &["acl", "bootstrap"]);
    assert_eq!(code, 0, "{out}{err}");
    s.mgmt = cli_field(&out, "Secret ID");
    let spec = s.dir.path().join("acts.nomad.hcl");
    std::fs::write(&spec, JOB).expect("write job");
    let mgmt = s.mgmt.clone();
    let (code, out, err) = s.nomad(&mgmt, &["job", "run", "-detach", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let raw = s.running("raw", 1).remove(0);
    let iso = s.running("iso", 2);

    let read_only = s.token("readonly", &policy(&["read-job", "list-jobs"]));
    let exec = s.token("exec", &policy(&["read-job", "list-jobs", "alloc-exec"]));
    let node_exec = s.token(
        "nodeexec",
        &policy(&["read-job", "list-jobs", "alloc-exec", "alloc-node-exec"]),
    );
    let run_action = s.token(
        "runaction",
        &policy(&["read-job", "list-jobs", "run-action"]),
    );
    let other_ns = s.token(
        "otherns",
        "namespace \"other\" {\n  policy = \"write\"\n  capabilities = [\"alloc-exec\", \"alloc-node-exec\", \"run-action\"]\n}\n",
    );

    // No token, a read-only token, a token for another namespace: nothing runs anywhere.
    for (who, token) in [
        ("anonymous", ""),
        ("read-only", read_only.as_str()),
        ("other namespace", other_ns.as_str()),
    ] {
        for group in ["raw", "iso"] {
            assert_denied(
                &format!("{who} action on {group}"),
                s.action(token, group, &["hello"]),
            );
        }
        assert_denied(
            &format!("{who} alloc exec"),
            s.nomad(
                token,
                &[
                    "alloc",
                    "exec",
                    "-task",
                    "t",
                    &iso[0],
                    "/bin/echo",
                    "hi from exec",
                ],
            ),
        );
    }
    // The REST endpoint itself refuses before any upgrade: a plain GET gets 403, not 400.
    let url = format!(
        "{}/v1/job/acts/action?action=hello&allocID={}&task=t&group=iso",
        s.agent.address, iso[0]
    );
    match ureq::get(&url).header("X-Nomad-Token", &read_only).call() {
        Err(ureq::Error::StatusCode(code)) => assert_eq!(code, 403),
        other => panic!("expected 403, got {other:?}"),
    }

    // alloc-exec: the isolated task yes, raw_exec (no isolation) no, for actions and exec alike.
    assert_ran(
        "alloc-exec action on exec",
        s.action(&exec, "iso", &["hello"]),
        "hi from exec\n",
    );
    assert_denied(
        "alloc-exec action on raw_exec",
        s.action(&exec, "raw", &["hello"]),
    );
    assert_ran(
        "alloc-exec alloc exec on exec",
        s.nomad(
            &exec,
            &["alloc", "exec", &iso[0], "/bin/echo", "hi from exec"],
        ),
        "hi from exec\n",
    );
    assert_denied(
        "alloc-exec alloc exec on raw_exec",
        s.nomad(&exec, &["alloc", "exec", &raw, "/bin/echo", "hi from raw"]),
    );

    // alloc-exec + alloc-node-exec: both.
    assert_ran(
        "node-exec action on raw_exec",
        s.action(&node_exec, "raw", &["hello"]),
        "hi from raw\n",
    );
    assert_ran(
        "node-exec action on exec",
        s.action(&node_exec, "iso", &["hello"]),
        "hi from exec\n",
    );
    assert_ran(
        "node-exec alloc exec on raw_exec",
        s.nomad(
            &node_exec,
            &["alloc", "exec", &raw, "/bin/echo", "hi from raw"],
        ),
        "hi from raw\n",
    );

    // run-action: the declared actions on both drivers (by group and by alloc), no arbitrary exec.
    assert_ran(
        "run-action on raw_exec",
        s.action(&run_action, "raw", &["hello"]),
        "hi from raw\n",
    );
    assert_ran(
        "run-action on exec",
        s.action(&run_action, "iso", &["hello"]),
        "hi from exec\n",
    );
    assert_ran(
        "run-action by alloc",
        s.nomad(
            &run_action,
            &[
                "job",
                "action",
                "-job",
                "acts",
                "-alloc",
                &raw[..8],
                "hello",
            ],
        ),
        "hi from raw\n",
    );
    for alloc in [&raw, &iso[0]] {
        assert_denied(
            "run-action alloc exec",
            s.nomad(
                &run_action,
                &["alloc", "exec", alloc, "/bin/echo", "hi from"],
            ),
        );
    }
    // The action's exit code is the CLI's, under ACLs too.
    let (code, _, err) = s.action(&run_action, "raw", &["fail"]);
    assert_eq!(code, 3, "{err}");

    // -all over the group's two allocs: one prefixed line each; a failing action's code.
    let (code, out, err) = s.action(&run_action, "iso", &["-all", "hello"]);
    assert_eq!(code, 0, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let want: Vec<String> = iso
        .iter()
        .map(|a| format!("{}: hi from exec", &a[..8]))
        .collect();
    assert_eq!(lines, want);
    let (code, _, err) = s.action(&exec, "iso", &["-all", "fail"]);
    assert_eq!(code, 3, "{err}");
    assert_denied(
        "-all without permission",
        s.action(&exec, "raw", &["-all", "hello"]),
    );

    // The management token may do everything.
    assert_ran(
        "management action",
        s.action(&mgmt, "raw", &["hello"]),
        "hi from raw\n",
    );
    assert_ran(
        "management alloc exec",
        s.nomad(&mgmt, &["alloc", "exec", &raw, "/bin/echo", "hi from raw"]),
        "hi from raw\n",
    );
}
