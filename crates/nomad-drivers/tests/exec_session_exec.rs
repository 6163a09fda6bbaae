//! `Driver::exec_task` for the exec driver (issue 6): a command run inside a running task sees
//! what the task sees — its chroot, PID and IPC namespaces, cgroup, user and capabilities.
//! Every test needs root and skips loudly otherwise.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nomad_drivers::{
    Driver, ExecConfig, ExecDriver, ExecExit, ExecRequest, ExecSession, TaskConfig, TaskHandle,
};
use nomad_testkit::{assert_eventually as wait_for, require_root};
use serde_json::json;

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct Fixture {
    /// Tasks started here (pid, start time): killed on drop, so a failed assertion does not
    /// leave a `sleep 1000` task behind.
    started: std::sync::Mutex<Vec<(u32, u64)>>,
    dir: tempfile::TempDir,
    alloc_id: String,
    task_dir: PathBuf,
    alloc_dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let alloc_id = format!("execsess{}-{}", std::process::id(), n);
        let task_dir = dir.path().join("web");
        let alloc_dir = dir.path().join("alloc");
        for d in [
            task_dir.join("local"),
            task_dir.join("tmp"),
            task_dir.join("secrets"),
            alloc_dir.join("logs"),
            alloc_dir.join("data"),
        ] {
            std::fs::create_dir_all(&d).expect("mkdir");
        }
        use std::os::unix::fs::PermissionsExt;
        for d in [alloc_dir.clone(), alloc_dir.join("data")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        Fixture {
            started: Default::default(),
            dir,
            alloc_id,
            task_dir,
            alloc_dir,
        }
    }

    fn cfg(&self, config: serde_json::Value) -> TaskConfig {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        env.insert("GREETING".into(), "hello-from-task-env".into());
        TaskConfig {
            id: format!("{}/web/{n:08x}", self.alloc_id),
            alloc_id: self.alloc_id.clone(),
            task_name: "web".into(),
            job_id: "job".into(),
            group_name: "group".into(),
            namespace: "default".into(),
            driver_config: config,
            env,
            user: None,
            alloc_dir: self.alloc_dir.clone(),
            task_dir: self.task_dir.clone(),
            stdout_path: self.alloc_dir.join("logs/web.stdout.0"),
            stderr_path: self.alloc_dir.join("logs/web.stderr.0"),
            resources: nomad_drivers::TaskResources {
                cpu_mhz: 100,
                memory_mb: 64,
                memory_max_mb: 0,
                cores: vec![],
            },
            kill_signal: None,
        }
    }

    fn read_local(&self, name: &str) -> String {
        std::fs::read_to_string(self.task_dir.join("local").join(name)).unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let started = self.started.lock().map(|v| v.clone()).unwrap_or_default();
        for (pid, start_time) in started {
            if nomad_executor::is_same_live_process(pid, start_time) {
                let _ = nomad_executor::signal_process(pid, libc::SIGKILL);
            }
        }
        for m in nomad_executor::read_mountinfo("self")
            .map(|v| v.into_iter().map(|m| m.mount_point).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if m.starts_with(self.dir.path()) {
                let _ = nomad_executor::hostmount::unmount_detach(&m);
            }
        }
    }
}

fn driver() -> ExecDriver {
    ExecDriver::new(ExecConfig::default()).expect("driver")
}

/// The task script: reports readiness and what it sees, then idles.
const TASK: &str = "ls / > /local/task-ls; cat /proc/self/cgroup > /local/task-cgroup; \
                    echo ready > /local/ready; sleep 1000";

/// Starts a long-running task (with `extra` merged into its config) and waits until it is up.
fn start(d: &ExecDriver, fx: &Fixture, extra: serde_json::Value) -> (TaskConfig, TaskHandle) {
    let mut config = json!({"command": "/bin/sh", "args": ["-c", TASK]});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let cfg = fx.cfg(config);
    let h = d.start_task(&cfg).expect("start");
    if let Ok(mut v) = fx.started.lock() {
        v.push((h.pid, h.start_time));
    }
    wait_for("task ready", Duration::from_secs(10), || {
        fx.read_local("ready") == "ready\n"
    });
    (cfg, h)
}

fn stop(d: &ExecDriver, cfg: &TaskConfig) {
    d.stop_task(&cfg.id, Duration::ZERO, None).expect("stop");
    d.destroy_task(&cfg.id, true).expect("destroy");
}

fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

fn read_all(f: Option<std::fs::File>) -> String {
    let mut f = f.expect("stream");
    let mut s = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => s.extend_from_slice(&buf[..n]),
            // A pty master reads EIO once the slave side is gone.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}

/// Runs a session to the end: (stdout, stderr, exit).
fn run(d: &ExecDriver, id: &str, req: ExecRequest) -> (String, String, ExecExit) {
    let mut s: ExecSession = d.exec_task(id, req).expect("exec_task");
    drop(s.stdin.take());
    let err = s.stderr.take();
    let err = std::thread::spawn(move || err.map(|e| read_all(Some(e))).unwrap_or_default());
    let out = read_all(s.stdout.take());
    let err = err.join().expect("stderr reader");
    (out, err, s.wait())
}

fn status_line(text: &str, key: &str) -> String {
    text.lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .to_string()
}

fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).expect("task status")
}

#[test]
fn the_command_sees_what_the_task_sees() {
    require_root!();
    let fx = Fixture::new();
    let d = driver();
    let (cfg, h) = start(&d, &fx, json!({}));
    let marker =
        std::env::temp_dir().join(format!("nomad-exec-host-marker-{}", std::process::id()));
    std::fs::write(&marker, "host").expect("marker");
    let script = format!(
        "cat /local/ready; echo pid=$$; ls /; \
         test -e {m} && echo marker-visible || echo marker-hidden; \
         grep -E '^(Uid|Gid|CapEff|CapPrm|CapBnd|NSpid)' /proc/$$/status; \
         echo cgroup:; cat /proc/self/cgroup; \
         echo pid1: $(tr '\\0' ' ' < /proc/1/cmdline); \
         echo env: $GREETING; echo cwd: $(pwd)",
        m = marker.display()
    );
    let (out, err, exit) = run(&d, &cfg.id, sh(&script));
    let _ = std::fs::remove_file(&marker);
    assert_eq!(exit.exit_code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.starts_with("ready\n"), "{out}");
    assert!(out.contains("marker-hidden"), "{out}");
    // `ls /` in the chroot: exactly what the task itself listed.
    let task_ls = fx.read_local("task-ls");
    assert!(
        task_ls.contains("local\n") && task_ls.contains("secrets\n"),
        "{task_ls}"
    );
    assert!(
        out.contains(&task_ls),
        "task saw:\n{task_ls}\ncommand saw:\n{out}"
    );
    // PID namespace: the shell's $$ is the inner NSpid, pid 1 is the task.
    let pid: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.trim().parse().ok())
        .expect("pid line");
    // The task's /proc belongs to its PID namespace: only the inner pid shows.
    assert_eq!(
        status_line(&out, "NSpid"),
        format!("NSpid:\t{pid}"),
        "{out}"
    );
    assert!(pid > 1 && pid < 1000, "{out}");
    assert!(
        out.contains("pid1: /bin/sh -c ls / > /local/task-ls"),
        "{out}"
    );
    // Credentials and capabilities: the task's.
    let task = proc_status(h.pid);
    for key in ["Uid", "Gid", "CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(
            status_line(&out, key),
            status_line(&task, key),
            "{key}:\n{out}"
        );
    }
    assert!(status_line(&out, "Uid").contains("65534"), "{out}");
    // The task's cgroup (as the task itself reported it).
    let task_cg = fx.read_local("task-cgroup");
    assert!(!task_cg.is_empty());
    assert!(
        out.contains(&format!("cgroup:\n{task_cg}")),
        "task:\n{task_cg}\ncommand:\n{out}"
    );
    assert!(out.contains("env: hello-from-task-env"), "{out}");
    assert!(out.contains("cwd: /\n"), "{out}");
    stop(&d, &cfg);
}

#[test]
fn exit_codes_stdin_and_kill() {
    require_root!();
    let fx = Fixture::new();
    let d = driver();
    let (cfg, h) = start(&d, &fx, json!({}));
    for (script, code, signal) in [("true", 0, 0), ("exit 3", 3, 0), ("kill -9 $$", 137, 9)] {
        let (_, err, exit) = run(&d, &cfg.id, sh(script));
        assert_eq!(
            (exit.exit_code, exit.signal),
            (code, signal),
            "{script}: {err}"
        );
    }
    // stdout and stderr are separate pipes; stdin reaches the command and closes.
    let mut s = d.exec_task(&cfg.id, sh("cat; echo err >&2")).expect("exec");
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(b"piped\n").expect("write");
    drop(stdin);
    let err = read_all(s.stderr.take());
    let out = read_all(s.stdout.take());
    assert_eq!((out.as_str(), err.as_str()), ("piped\n", "err\n"));
    assert_eq!(s.wait().exit_code, 0);
    // kill reaches the command (and what it started) inside the task.
    let s = d
        .exec_task(&cfg.id, sh("sleep 300 & sleep 301"))
        .expect("exec");
    // Seen from the host: the task's namespaces, and a second (inner) pid.
    for ns in ["mnt", "pid", "ipc"] {
        let link = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).expect("ns");
        assert_eq!(link(s.pid()), link(h.pid), "{ns}");
    }
    let host = proc_status(s.pid());
    let nspid: Vec<u32> = status_line(&host, "NSpid")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().expect("nspid"))
        .collect();
    assert_eq!((nspid.len(), nspid[0]), (2, s.pid()), "{host}");
    assert!(nspid[1] > 1 && nspid[1] < 1000, "{host}");
    let ctl = s.control();
    ctl.kill();
    assert_eq!(s.wait().exit_code, 137);
    // The task itself is untouched.
    let (out, _, exit) = run(&d, &cfg.id, sh("cat /local/ready"));
    assert_eq!((out.as_str(), exit.exit_code), ("ready\n", 0));
    stop(&d, &cfg);
}

#[test]
fn command_lookup_happens_inside_the_chroot() {
    require_root!();
    let fx = Fixture::new();
    let d = driver();
    let (cfg, _) = start(&d, &fx, json!({}));
    // A bare name is searched in the task's PATH inside its root.
    let (out, _, exit) = run(
        &d,
        &cfg.id,
        ExecRequest {
            command: vec!["echo".into(), "found".into()],
            ..Default::default()
        },
    );
    assert_eq!((out.as_str(), exit.exit_code), ("found\n", 0));
    let err = d
        .exec_task(
            &cfg.id,
            ExecRequest {
                command: vec!["definitely-not-a-command".into()],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"definitely-not-a-command\": executable file not found in $PATH inside the task's root"),
        "{err}"
    );
    // This test binary exists on the host, not in the chroot.
    let host_only = std::env::current_exe().expect("exe");
    let err = d
        .exec_task(
            &cfg.id,
            ExecRequest {
                command: vec![host_only.display().to_string()],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such file inside the task's root"), "{err}");
    // Not executable for the task user.
    std::fs::write(fx.task_dir.join("local/noexec.sh"), "#!/bin/sh\necho hi\n").expect("write");
    let err = d
        .exec_task(
            &cfg.id,
            ExecRequest {
                command: vec!["/local/noexec.sh".into()],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("Permission denied"), "{err}");
    stop(&d, &cfg);
}

#[test]
fn tty_session_has_a_controlling_terminal() {
    require_root!();
    let fx = Fixture::new();
    let d = driver();
    let (cfg, _) = start(&d, &fx, json!({}));
    let mut s = d
        .exec_task(
            &cfg.id,
            ExecRequest {
                command: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "stty size; test -t 0 && echo is-a-tty; exec 3</dev/tty && echo has-ctty; \
                     echo name=$(tty) owner=$(stat -c %u $(tty)); \
                     read -r line; echo got:$line; exit 4"
                        .into(),
                ],
                tty: true,
                tty_size: Some((33, 101)),
                ..Default::default()
            },
        )
        .expect("exec");
    assert!(s.stderr.is_none());
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(b"typed\n").expect("write");
    let out = read_all(s.stdout.take());
    assert!(out.contains("33 101"), "{out:?}");
    assert!(out.contains("is-a-tty"), "{out:?}");
    assert!(out.contains("has-ctty"), "{out:?}");
    assert!(out.contains("got:typed"), "{out:?}");
    // The terminal comes from the task's own devpts and belongs to the task user.
    assert!(out.contains("name=/dev/pts/"), "{out:?}");
    assert!(out.contains("owner=65534"), "{out:?}");
    assert_eq!(s.wait().exit_code, 4);
    drop(stdin);
    stop(&d, &cfg);
}

#[test]
fn caps_user_and_host_pid_mode_follow_the_task() {
    require_root!();
    let fx = Fixture::new();
    let d = driver();
    // No capabilities, host PID namespace.
    let (cfg, h) = start(&d, &fx, json!({"cap_drop": ["all"], "pid_mode": "host"}));
    let (out, err, exit) = run(
        &d,
        &cfg.id,
        sh("grep -E '^(CapEff|CapBnd|NSpid)' /proc/self/status; echo pid=$$"),
    );
    assert_eq!(exit.exit_code, 0, "{err}");
    let task = proc_status(h.pid);
    assert_eq!(status_line(&out, "CapEff"), status_line(&task, "CapEff"));
    assert_eq!(status_line(&out, "CapBnd"), status_line(&task, "CapBnd"));
    assert!(
        status_line(&out, "CapEff").ends_with("0000000000000000"),
        "{out}"
    );
    // Host PID namespace: a single NSpid value.
    assert_eq!(
        status_line(&out, "NSpid").split_whitespace().count(),
        2,
        "{out}"
    );
    stop(&d, &cfg);

    // user = root gets the legacy capability list, and so does the command.
    let fx = Fixture::new();
    let mut cfg = fx.cfg(json!({"command": "/bin/sh", "args": ["-c", TASK]}));
    cfg.user = Some("root".into());
    let h = d.start_task(&cfg).expect("start");
    if let Ok(mut v) = fx.started.lock() {
        v.push((h.pid, h.start_time));
    }
    wait_for("task ready", Duration::from_secs(10), || {
        fx.read_local("ready") == "ready\n"
    });
    let (out, err, exit) = run(&d, &cfg.id, sh("grep -E '^(Uid|CapEff)' /proc/self/status"));
    assert_eq!(exit.exit_code, 0, "{err}");
    let task = proc_status(h.pid);
    assert_eq!(status_line(&out, "CapEff"), status_line(&task, "CapEff"));
    assert!(status_line(&out, "Uid").contains("\t0\t"), "{out}");
    stop(&d, &cfg);
}

#[test]
fn recovered_tasks_can_be_entered() {
    require_root!();
    let fx = Fixture::new();
    let (cfg, handle) = {
        let d = driver();
        start(&d, &fx, json!({"cap_drop": ["chown"]}))
        // Dropped without stopping the task, like an agent restart.
    };
    let d = driver();
    d.recover_task(&handle).expect("recover");
    let (out, err, exit) = run(
        &d,
        &cfg.id,
        sh("cat /local/ready; grep -E '^(Uid|CapEff)' /proc/self/status; cat /proc/self/cgroup"),
    );
    assert_eq!(exit.exit_code, 0, "{err}");
    assert!(out.starts_with("ready\n"), "{out}");
    let task = proc_status(handle.pid);
    assert_eq!(status_line(&out, "CapEff"), status_line(&task, "CapEff"));
    assert_eq!(status_line(&out, "Uid"), status_line(&task, "Uid"));
    assert!(out.contains(&fx.read_local("task-cgroup")), "{out}");
    stop(&d, &cfg);
    // A stopped task cannot be entered.
    let d = driver();
    let (cfg, _) = start(&d, &fx, json!({}));
    d.stop_task(&cfg.id, Duration::ZERO, None).expect("stop");
    let err = d.exec_task(&cfg.id, sh("true")).unwrap_err().to_string();
    assert!(err.contains("not running"), "{err}");
    d.destroy_task(&cfg.id, true).expect("destroy");
}

#[test]
fn no_pivot_root_tasks_are_entered_at_their_root() {
    require_root!();
    let fx = Fixture::new();
    let d = ExecDriver::new(ExecConfig {
        no_pivot_root: true,
        ..Default::default()
    })
    .expect("driver");
    let (cfg, _) = start(&d, &fx, json!({"work_dir": "/local", "ipc_mode": "host"}));
    let (out, err, exit) = run(&d, &cfg.id, sh("cat ready; pwd; ls /"));
    assert_eq!(exit.exit_code, 0, "{err}");
    assert!(out.starts_with("ready\n/local\n"), "{out}");
    assert!(out.contains(&fx.read_local("task-ls")), "{out}");
    stop(&d, &cfg);
}
