//! End to end: `nomad alloc exec` and `nomad job action` through the real `nomad` binary
//! (`agent -dev`) and CLI, covering the examples of Nomad's alloc exec docs page, exit codes,
//! a tty session driven through a pty, cgroup placement, `disable_remote_exec`, and actions.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nomad_testkit::{wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

const JOB: &str = r#"
job "exectest" {
  datacenters = ["*"]

  group "one" {
    task "main" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat /proc/self/cgroup > ${NOMAD_TASK_DIR}/cgroup.txt; while true; do sleep 1; done"]
      }
      env {
        GREETING = "hello-from-env"
      }
      action "echo" {
        command = "/bin/echo"
        args    = ["action says hi"]
      }
      action "vars" {
        command = "/bin/sh"
        args    = ["-c", "echo $NOMAD_ALLOC_ID $NOMAD_TASK_NAME $NOMAD_JOB_NAME"]
      }
      action "fail" {
        command = "/bin/sh"
        args    = ["-c", "echo failing >&2; exit 7"]
      }
      action "stream" {
        command = "/bin/sh"
        args    = ["-c", "while true; do echo tick; sleep 0.1; done"]
      }
    }
  }

  group "two" {
    task "a" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
    }
    task "b" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 1; done"]
      }
    }
  }
}
"#;

struct Env {
    agent: DevAgent,
    _dir: tempfile::TempDir,
}

fn start(extra_config: &str) -> Env {
    let agent = DevAgent::start(bin(), extra_config);
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("exectest.nomad.hcl");
    std::fs::write(&spec, JOB).expect("write job");
    let (code, out, err) = agent.cli(bin(), &["job", "run", spec.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "job run:\n{out}\n{err}\n{}", agent.log());
    Env { agent, _dir: dir }
}

/// The ID of the running alloc of `group`.
fn running_alloc(agent: &DevAgent, group: &str) -> String {
    let mut id = String::new();
    let ok = wait_for(Duration::from_secs(30), || {
        let Ok(v) = agent.get_json("/v1/job/exectest/allocations") else {
            return false;
        };
        for a in v.as_array().cloned().unwrap_or_default() {
            if a["TaskGroup"] == group && a["ClientStatus"] == "running" {
                id = a["ID"].as_str().unwrap_or_default().to_string();
                return true;
            }
        }
        false
    });
    assert!(
        ok,
        "no running alloc of {group}; agent log:\n{}",
        agent.log()
    );
    id
}

/// Runs the CLI with `stdin` piped in.
fn cli_stdin(agent: &DevAgent, args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(bin())
        .args(args)
        .env("NOMAD_ADDR", &agent.address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cli");
    let mut si = child.stdin.take().expect("stdin");
    si.write_all(stdin).expect("write stdin");
    drop(si);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn alloc_exec_docs_examples_exit_codes_tasks_and_cgroup() {
    let env = start("");
    let agent = &env.agent;
    let alloc = running_alloc(agent, "one");

    // nomad alloc exec <alloc> /bin/sh -c 'echo $NOMAD_ALLOC_ID'
    let (code, out, err) = agent.cli(
        bin(),
        &[
            "alloc",
            "exec",
            &alloc[..8],
            "/bin/sh",
            "-c",
            "echo $NOMAD_ALLOC_ID",
        ],
    );
    assert_eq!((code, out.trim()), (0, alloc.as_str()), "{err}");

    // A heredoc on stdin.
    let (code, out, err) = cli_stdin(
        agent,
        &["alloc", "exec", "-i=true", "-t=false", &alloc, "cat"],
        b"hello\nfrom a heredoc\n",
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "hello\nfrom a heredoc\n"),
        "{err}"
    );

    // The pipeline example.
    let (code, out, err) = agent.cli(
        bin(),
        &["alloc", "exec", &alloc, "/bin/sh", "-c", "ls / | grep bin"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "bin"), "{out}");

    // The task's environment and working directory.
    let (code, out, _) = agent.cli(
        bin(),
        &[
            "alloc",
            "exec",
            &alloc,
            "/bin/sh",
            "-c",
            "echo $GREETING; pwd",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("hello-from-env\n"), "{out}");
    assert!(out.trim_end().ends_with(&format!("{alloc}/main")), "{out}");

    // Exit codes propagate; stderr stays stderr.
    for (script, want) in [
        ("exit 0", 0),
        ("exit 1", 1),
        ("echo e >&2; exit 3", 3),
        ("kill -9 $$", 137),
    ] {
        let (code, _, err) = agent.cli(bin(), &["alloc", "exec", &alloc, "/bin/sh", "-c", script]);
        assert_eq!(code, want, "{script}: {err}");
        if want == 3 {
            assert_eq!(err, "e\n");
        }
    }

    // -job picks a running alloc of the job (of -group).
    let (code, out, err) = agent.cli(
        bin(),
        &[
            "alloc",
            "exec",
            "-job",
            "-group",
            "one",
            "exectest",
            "/bin/sh",
            "-c",
            "echo $NOMAD_GROUP_NAME",
        ],
    );
    assert_eq!((code, out.trim()), (0, "one"), "{err}");

    // A two-task alloc needs -task.
    let two = running_alloc(agent, "two");
    let (code, _, err) = agent.cli(bin(), &["alloc", "exec", &two, "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("  * a\n  * b\n") && err.contains("Please specify the task."),
        "{err}"
    );
    let (code, out, err) = agent.cli(
        bin(),
        &[
            "alloc",
            "exec",
            "-task",
            "b",
            &two,
            "/bin/sh",
            "-c",
            "echo $NOMAD_TASK_NAME",
        ],
    );
    assert_eq!((code, out.trim()), (0, "b"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["alloc", "exec", "-task", "zzz", &two, "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("Could not find task named: zzz"), "{err}");

    // The command runs inside the task's cgroup.
    let (code, exec_cg, err) = agent.cli(
        bin(),
        &["alloc", "exec", &alloc, "cat", "/proc/self/cgroup"],
    );
    assert_eq!(code, 0, "{err}");
    // The task wrote its own /proc/self/cgroup into NOMAD_TASK_DIR at start.
    let (code, task_cg, err) = agent.cli(
        bin(),
        &[
            "alloc",
            "exec",
            &alloc,
            "/bin/sh",
            "-c",
            "cat $NOMAD_TASK_DIR/cgroup.txt",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(exec_cg, task_cg);
    if nomad_testkit::is_root() {
        assert!(
            exec_cg.contains(&alloc),
            "exec not in the task cgroup: {exec_cg}"
        );
    }

    // Errors.
    let (code, _, err) = agent.cli(bin(), &["alloc", "exec", "a", "true"]);
    assert_eq!(
        (code, err.trim()),
        (1, "Alloc ID must contain at least two characters")
    );
    let (code, _, err) = agent.cli(bin(), &["alloc", "exec", &alloc]);
    assert_eq!(code, 1);
    assert!(err.starts_with("A command is required"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["alloc", "exec", "ffffffff", "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("No allocation(s) with prefix or id \"ffffffff\" found"),
        "{err}"
    );
    let (code, _, err) = agent.cli(bin(), &["alloc", "exec", &alloc, "no-such-binary-xyz"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("failed to exec into task:") && err.contains("no-such-binary-xyz"),
        "{err}"
    );
    // `nomad exec` is the alias.
    let (code, out, _) = agent.cli(bin(), &["exec", &alloc, "echo", "alias"]);
    assert_eq!((code, out.as_str()), (0, "alias\n"));
}

/// Reads everything the pty master produces into a shared buffer.
fn pty_reader(master: OwnedFd) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    let mut f = std::fs::File::from(master);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = f.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

fn set_size(fd: impl AsFd, rows: u16, cols: u16) {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .expect("set pty size");
}

#[test]
fn tty_session_through_a_pty() {
    let env = start("");
    let agent = &env.agent;
    let alloc = running_alloc(agent, "one");

    let pty = nix::pty::openpty(None, None).expect("openpty");
    set_size(&pty.master, 30, 90);
    let master_w = pty.master.try_clone().expect("dup");
    let slave = pty.slave;
    let mut child = Command::new(bin())
        .args(["alloc", "exec", &alloc, "/bin/sh"])
        .env("NOMAD_ADDR", &agent.address)
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave.try_clone().expect("dup")))
        .spawn()
        .expect("spawn cli");
    let out = pty_reader(pty.master);
    let mut w = std::fs::File::from(master_w);
    let seen = |s: &str| String::from_utf8_lossy(&out.lock().unwrap()).contains(s);

    // The remote shell answers on a terminal of our size.
    w.write_all(b"echo task=$NOMAD_TASK_NAME; tty; stty size\r")
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || seen("task=main")
            && seen("30 90")),
        "{}",
        String::from_utf8_lossy(&out.lock().unwrap())
    );
    assert!(seen("/dev/pts/"));

    // Resize: the CLI forwards the new size on SIGWINCH.
    set_size(&slave, 50, 140);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let resized = wait_for(Duration::from_secs(15), || {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH);
        let _ = w.write_all(b"stty size\r");
        std::thread::sleep(Duration::from_millis(100));
        seen("50 140")
    });
    assert!(resized, "{}", String::from_utf8_lossy(&out.lock().unwrap()));

    // `~.` at the start of a line closes the session.
    w.write_all(b"\r~.").unwrap();
    let mut status = None;
    assert!(wait_for(Duration::from_secs(15), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    }));
    assert!(wait_for(Duration::from_secs(5), || seen(
        "Connection closed"
    )));
    assert_eq!(status.and_then(|s| s.code()), Some(1));

    // A job action that runs until interrupted, on a terminal: the escape closes it too.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let master_w = pty.master.try_clone().expect("dup");
    let slave = pty.slave;
    let mut child = Command::new(bin())
        .args([
            "job", "action", "-job", "exectest", "-group", "one", "-task", "main", "-t", "stream",
        ])
        .env("NOMAD_ADDR", &agent.address)
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("spawn cli");
    let out = pty_reader(pty.master);
    let mut w = std::fs::File::from(master_w);
    let ticks = || {
        String::from_utf8_lossy(&out.lock().unwrap())
            .matches("tick")
            .count()
    };
    assert!(wait_for(Duration::from_secs(15), || ticks() >= 3));
    w.write_all(b"\r~.").unwrap();
    let mut status = None;
    assert!(wait_for(Duration::from_secs(15), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    }));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
}

#[test]
fn disable_remote_exec_is_refused() {
    let env = start("client {\n  disable_remote_exec = true\n}\n");
    let agent = &env.agent;
    let alloc = running_alloc(agent, "one");
    let (code, out, err) = agent.cli(bin(), &["alloc", "exec", &alloc, "true"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("failed to exec into task:") && err.contains("Permission denied"),
        "{err}"
    );
    let (code, _, err) = agent.cli(
        bin(),
        &[
            "job", "action", "-job", "exectest", "-group", "one", "-task", "main", "echo",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn job_actions() {
    let env = start("");
    let agent = &env.agent;
    let alloc = running_alloc(agent, "one");
    let action = |extra: &[&str]| {
        let mut a = vec!["job", "action", "-job", "exectest"];
        a.extend_from_slice(extra);
        agent.cli(bin(), &a)
    };

    // By group + task (random running alloc).
    let (code, out, err) = action(&["-group", "one", "-task", "main", "echo"]);
    assert_eq!((code, out.as_str()), (0, "action says hi\n"), "{err}");
    // NOMAD_* variables of the task.
    let (code, out, err) = action(&["-group", "one", "-task", "main", "vars"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{alloc} main exectest").as_str()),
        "{err}"
    );
    // By alloc (the task is the group's only one).
    let (code, out, err) = action(&["-alloc", &alloc[..8], "echo"]);
    assert_eq!((code, out.as_str()), (0, "action says hi\n"), "{err}");
    // Exit code and stderr of the action.
    let (code, _, err) = action(&["-alloc", &alloc, "fail"]);
    assert_eq!((code, err.as_str()), (7, "failing\n"));
    // Unknown action: the declared ones are listed.
    let (code, _, err) = action(&["-group", "one", "-task", "main", "nope"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Action \"nope\" not found in task \"main\"")
            && err.contains("  * echo\n  * vars\n  * fail\n  * stream"),
        "{err}"
    );
    // Flag rules.
    let (code, _, err) = agent.cli(bin(), &["job", "action", "echo"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("A job ID is required"), "{err}");
    let (code, _, err) = action(&["echo"]);
    assert_eq!(
        (code, err.trim()),
        (1, "A group name is required if no allocation is provided")
    );
    let (code, _, err) = action(&["-group", "one", "echo"]);
    assert_eq!(
        (code, err.trim()),
        (1, "A task name is required if no allocation is provided")
    );
    let (code, _, err) = action(&["-alloc", &alloc, "-group", "two", "echo"]);
    assert_eq!(code, 1);
    assert!(err.contains("-alloc and -group conflict"), "{err}");
    // A group with no running alloc, and a multi-task alloc without -task.
    let (code, _, err) = action(&["-group", "nosuch", "-task", "main", "echo"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("task group \"nosuch\" doesn't exist or it has no allocations"),
        "{err}"
    );
    let two = running_alloc(agent, "two");
    let (code, _, err) = action(&["-alloc", &two, "echo"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("  * a\n  * b\n") && err.contains("Please specify the task."),
        "{err}"
    );
    // -all: every running alloc of the group, prefixed lines.
    let (code, out, err) = action(&["-group", "one", "-task", "main", "-all", "echo"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{}: action says hi\n", &alloc[..8]));
    let (code, _, _) = action(&["-group", "one", "-task", "main", "-all", "fail"]);
    assert_eq!(code, 7);

    // An action that streams until interrupted.
    let dir = tempfile::tempdir().expect("tmp");
    let out_path: PathBuf = dir.path().join("out");
    let mut child = Command::new(bin())
        .args([
            "job", "action", "-job", "exectest", "-group", "one", "-task", "main", "stream",
        ])
        .env("NOMAD_ADDR", &agent.address)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("out"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .matches("tick")
            .count()
            >= 3
    }));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let mut status = None;
    assert!(wait_for(Duration::from_secs(10), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    }));
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    // The remote loop is gone with the session.
    assert!(
        wait_for(Duration::from_secs(10), || {
            let (_, out, _) = agent.cli(
                bin(),
                &[
                    "alloc",
                    "exec",
                    &alloc,
                    "/bin/sh",
                    "-c",
                    "ps -eo args | grep -c '[e]cho tick' || true",
                ],
            );
            out.trim() == "0"
        }),
        "stream action still running"
    );
}
