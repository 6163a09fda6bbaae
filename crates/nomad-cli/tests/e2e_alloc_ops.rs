//! End to end: allocation operations through the real `nomad` binary against `agent -dev`:
//! `alloc signal`, `alloc restart`, `alloc stop`, `alloc fs` (ls/cat/stat/tail/follow, secrets
//! refused) and `alloc logs -f` ending cleanly on Ctrl-C.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nomad_testkit::{wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

/// A service whose task traps SIGUSR1 (appending to `local/signals`), writes a secret, and
/// prints to stdout and stderr.
const OPS_JOB: &str = r#"
job "ops" {
  datacenters = ["*"]
  type        = "service"

  group "ops" {
    task "ops" {
      driver = "raw_exec"

      config {
        command = "/bin/sh"
        args = ["-c", "echo s3cr3t > $NOMAD_SECRETS_DIR/token; trap 'echo got-usr1 >> $NOMAD_TASK_DIR/signals' USR1; echo started; echo err-line >&2; while true; do sleep 1; done"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
"#;

fn run_ops_job(agent: &DevAgent, dir: &Path) -> String {
    let spec = dir.join("ops.nomad.hcl");
    std::fs::write(&spec, OPS_JOB).unwrap();
    let (code, out, err) = agent.cli(bin(), &["job", "run", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "job run:\n{out}\n{err}\nagent:\n{}", agent.log());
    running_alloc(agent, "ops", None)
}

/// Waits for a running alloc of `job` (other than `not`), returning its ID.
fn running_alloc(agent: &DevAgent, job: &str, not: Option<&str>) -> String {
    let mut id = String::new();
    let ok = wait_for(Duration::from_secs(30), || {
        let Ok(v) = agent.get_json(&format!("/v1/job/{job}/allocations")) else {
            return false;
        };
        for a in v.as_array().into_iter().flatten() {
            let aid = a["ID"].as_str().unwrap_or_default();
            let started = a["TaskStates"]["ops"]["StartedAt"]
                .as_str()
                .is_some_and(|s| !s.starts_with("0001"));
            if a["ClientStatus"] == "running" && started && Some(aid) != not {
                id = aid.to_string();
                return true;
            }
        }
        false
    });
    assert!(ok, "no running alloc of {job}; agent log:\n{}", agent.log());
    id
}

/// A CLI child with its stdout collected in the background.
struct Streaming {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Streaming {
    fn start(agent: &DevAgent, args: &[&str]) -> Streaming {
        let mut child = Command::new(bin())
            .args(args)
            .env("NOMAD_ADDR", &agent.address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nomad cli");
        let out = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Streaming { child, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Sends SIGINT and returns the exit code (None if it did not exit in time).
    fn interrupt(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let mut code = None;
        wait_for(Duration::from_secs(10), || match self.child.try_wait() {
            Ok(Some(s)) => {
                code = s.code();
                true
            }
            _ => false,
        });
        if code.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        code
    }
}

#[test]
fn signal_fs_and_logs() {
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().unwrap();
    let alloc = run_ops_job(&agent, dir.path());
    let short = &alloc[..8];

    // Signal: an unknown task is refused client-side, a real one reaches the trap.
    let (code, _, err) = agent.cli(bin(), &["alloc", "signal", "-s", "SIGUSR1", short, "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("Could not find task named: nope"), "{err}");
    let (code, out, err) = agent.cli(bin(), &["alloc", "signal", "-s", "SIGUSR1", short, "ops"]);
    assert_eq!(code, 0, "{out}\n{err}\nagent:\n{}", agent.log());
    let signals = "ops/local/signals";
    let mut cat = String::new();
    assert!(
        wait_for(Duration::from_secs(15), || {
            let (c, out, _) = agent.cli(bin(), &["alloc", "fs", short, signals]);
            cat = out;
            c == 0 && cat.contains("got-usr1")
        }),
        "trap never ran: {cat}\nagent:\n{}",
        agent.log()
    );
    let (code, out, _) = agent.cli(bin(), &["alloc", "status", short]);
    assert_eq!(code, 0);
    assert!(out.contains("Signaling"), "{out}");

    // fs: listing, stat, tail, and secrets refused.
    let (code, out, err) = agent.cli(bin(), &["alloc", "fs", short]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Mode"), "{out}");
    assert!(
        out.contains("Modified Time") && out.contains("alloc/") && out.contains("ops/"),
        "{out}"
    );
    let (code, out, err) = agent.cli(bin(), &["fs", "-H", short, "ops"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("local/") && out.contains("secrets/"), "{out}");
    let (code, out, err) = agent.cli(bin(), &["alloc", "fs", "-stat", short, signals]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Content Type") && out.contains("signals"),
        "{out}"
    );
    let (code, out, err) = agent.cli(bin(), &["alloc", "fs", "-tail", "-c", "9", short, signals]);
    assert_eq!((code, out.as_str()), (0, "got-usr1\n"), "{err}");
    let (code, out, err) = agent.cli(bin(), &["alloc", "fs", short, "ops/secrets/token"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("Reading secret file prohibited"), "{err}");
    assert!(!out.contains("s3cr3t"));
    let (code, _, err) = agent.cli(bin(), &["alloc", "fs", short, "../../"]);
    assert_eq!(code, 1);
    assert!(err.contains("Path escapes the alloc directory"), "{err}");

    // fs -f follows the file as it grows and ends cleanly on Ctrl-C.
    let follow = Streaming::start(&agent, &["alloc", "fs", "-f", short, signals]);
    assert!(wait_for(Duration::from_secs(10), || follow
        .output()
        .contains("got-usr1")));
    let (code, _, _) = agent.cli(bin(), &["alloc", "signal", "-s", "SIGUSR1", short]);
    assert_eq!(code, 0);
    assert!(
        wait_for(Duration::from_secs(10), || follow
            .output()
            .matches("got-usr1")
            .count()
            >= 2),
        "{}",
        follow.output()
    );
    assert_eq!(follow.interrupt(), Some(0));

    // logs: stderr tail, and -f ending cleanly on Ctrl-C.
    let (code, out, err) = agent.cli(
        bin(),
        &["alloc", "logs", "-stderr", "-tail", "-n", "1", short],
    );
    assert_eq!((code, out.as_str()), (0, "err-line\n"), "{err}");
    let logs = Streaming::start(&agent, &["alloc", "logs", "-stdout", "-f", short]);
    assert!(
        wait_for(Duration::from_secs(10), || logs
            .output()
            .contains("started")),
        "{}",
        logs.output()
    );
    assert_eq!(logs.interrupt(), Some(0));
    let tail = Streaming::start(&agent, &["alloc", "logs", "-tail", "-n", "1", "-f", short]);
    assert!(
        wait_for(Duration::from_secs(10), || tail.output() == "started\n"),
        "{}",
        tail.output()
    );
    assert_eq!(tail.interrupt(), Some(0));
}

#[test]
fn restart_and_stop() {
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().unwrap();
    let alloc = run_ops_job(&agent, dir.path());
    let short = &alloc[..8];

    let (code, _, err) = agent.cli(bin(), &["alloc", "restart", "-all-tasks", short, "ops"]);
    assert_eq!(code, 1);
    assert!(err.contains("-all-tasks option is not allowed"), "{err}");
    let (code, out, err) = agent.cli(bin(), &["alloc", "restart", short]);
    assert_eq!(code, 0, "{out}\n{err}\nagent:\n{}", agent.log());
    let mut status = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            let (_, out, _) = agent.cli(bin(), &["alloc", "status", short]);
            status = out;
            status.contains("Restart Signaled") && status.contains("is \"running\"")
        }),
        "{status}\nagent:\n{}",
        agent.log()
    );

    let (code, out, err) = agent.cli(bin(), &["alloc", "stop", short]);
    assert_eq!(code, 0, "{out}\n{err}\nagent:\n{}", agent.log());
    assert!(out.contains("Monitoring evaluation"), "{out}");
    assert!(out.contains("finished with status \"complete\""), "{out}");
    let replacement = running_alloc(&agent, "ops", Some(&alloc));
    assert_ne!(replacement, alloc);
    assert!(wait_for(Duration::from_secs(20), || {
        agent
            .get_json(&format!("/v1/allocation/{alloc}"))
            .is_ok_and(|v| v["DesiredStatus"] == "stop")
    }));

    let (code, out, err) = agent.cli(bin(), &["alloc", "stop", "-detach", &replacement[..8]]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim().len(), 36, "an eval ID: {out}");
    let (code, _, err) = agent.cli(bin(), &["alloc", "stop", "zz"]);
    assert_eq!(code, 1);
    assert!(err.contains("No allocation(s) with prefix or id"), "{err}");
}
