//! raw_exec with real processes. Tests needing root skip loudly when not root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nomad_drivers::{Driver, DriverError, RawExecConfig, RawExecDriver, TaskConfig, TaskHandle};
use nomad_executor::CgroupMode;
use nomad_testkit::{assert_eventually as wait_for, require_root};
use serde_json::json;

/// Alive = exists and not a zombie.
fn alive(pid: u32) -> bool {
    nomad_executor::is_alive(pid)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct Fixture {
    _dir: tempfile::TempDir,
    alloc_id: String,
    task_dir: PathBuf,
    alloc_dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let alloc_id = format!("test{}-{}", std::process::id(), n);
        let task_dir = dir.path().join("web");
        let alloc_dir = dir.path().join("alloc");
        for d in [
            task_dir.join("local"),
            task_dir.join("tmp"),
            task_dir.join("secrets"),
            alloc_dir.join("logs"),
        ] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        Fixture {
            _dir: dir,
            alloc_id,
            task_dir,
            alloc_dir,
        }
    }

    fn cfg(&self, config: serde_json::Value) -> TaskConfig {
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
        env.insert("NOMAD_TASK_NAME".into(), "web".into());
        TaskConfig {
            id: format!("{}/web/0000abcd", self.alloc_id),
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

    fn sh(&self, script: &str) -> TaskConfig {
        self.cfg(json!({"command": "/bin/sh", "args": ["-c", script]}))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.task_dir.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    fn read_pid(&self, name: &str) -> u32 {
        wait_for(name, Duration::from_secs(10), || {
            self.read(name).trim().parse::<u32>().is_ok()
        });
        self.read(name).trim().parse().expect("pid")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Detected,
    NoCgroups,
    /// v2 on the unified mount of a hybrid host.
    V2Unified,
}

fn driver(mode: Mode) -> Option<RawExecDriver> {
    let mut cfg = RawExecConfig {
        enabled: true,
        ..Default::default()
    };
    match mode {
        Mode::Detected => {}
        Mode::NoCgroups => cfg.no_cgroups = true,
        Mode::V2Unified => {
            let root = PathBuf::from("/sys/fs/cgroup/unified");
            if !root.join("cgroup.procs").exists() {
                eprintln!(
                    "\n!!! SKIP v2-on-hybrid: /sys/fs/cgroup/unified is not a cgroup2 mount !!!\n"
                );
                return None;
            }
            cfg.cgroup_mode = Some(CgroupMode::V2 { root });
        }
    }
    Some(RawExecDriver::new(cfg))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn wait_exit(d: &RawExecDriver, id: &str) -> nomad_drivers::ExitResult {
    let fut = d.wait_task(id).expect("wait_task");
    rt().block_on(async { tokio::time::timeout(Duration::from_secs(20), fut).await })
        .expect("task did not exit in time")
}

fn run_output_and_exit_code(mode: Mode) {
    let Some(d) = driver(mode) else { return };
    let fx = Fixture::new();
    let cfg = fx.sh("echo hi; echo err >&2; exit 3");
    let h = d.start_task(&cfg).expect("start");
    assert!(h.pid > 0 && h.start_time > 0);
    let res = wait_exit(&d, &cfg.id);
    assert_eq!(res.exit_code, 3);
    assert_eq!(res.signal, 0);
    assert!(res.err.is_none());
    assert!(!res.successful());
    assert_eq!(
        std::fs::read_to_string(&cfg.stdout_path).expect("stdout"),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(&cfg.stderr_path).expect("stderr"),
        "err\n"
    );
    // A second wait resolves with the same result.
    assert_eq!(wait_exit(&d, &cfg.id), res);
    d.destroy_task(&cfg.id, false).expect("destroy");
    assert!(matches!(
        d.wait_task(&cfg.id),
        Err(DriverError::TaskNotFound(_))
    ));
}

#[test]
fn output_and_exit_code_no_cgroups() {
    run_output_and_exit_code(Mode::NoCgroups);
}

#[test]
fn output_and_exit_code_cgroups() {
    require_root!();
    run_output_and_exit_code(Mode::Detected);
}

#[test]
fn env_is_exact_and_cwd_is_task_dir() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    let mut cfg = fx.cfg(json!({"command": "/usr/bin/env"}));
    cfg.env.insert("WEIRD".into(), "a b=c".into());
    d.start_task(&cfg).expect("start");
    assert_eq!(wait_exit(&d, &cfg.id).exit_code, 0);
    let out = std::fs::read_to_string(&cfg.stdout_path).expect("stdout");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let want: Vec<String> = cfg.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(got, want);

    let fx = Fixture::new();
    let cfg = fx.cfg(json!({"command": "pwd"})); // found through the agent's PATH
    d.start_task(&cfg).expect("start");
    assert_eq!(wait_exit(&d, &cfg.id).exit_code, 0);
    let out = std::fs::read_to_string(&cfg.stdout_path).expect("stdout");
    assert_eq!(
        Path::new(out.trim()),
        fx.task_dir.canonicalize().expect("canon")
    );
}

#[test]
fn binary_in_task_local_dir_is_preferred() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    std::fs::write(
        fx.task_dir.join("local/hello"),
        "#!/bin/sh\necho local-hello\n",
    )
    .expect("write");
    let cfg = fx.cfg(json!({"command": "hello"}));
    d.start_task(&cfg).expect("start");
    assert_eq!(wait_exit(&d, &cfg.id).exit_code, 0);
    assert_eq!(
        std::fs::read_to_string(&cfg.stdout_path).expect("stdout"),
        "local-hello\n"
    );
}

#[test]
fn command_not_found_is_a_clear_error() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    let err = d
        .start_task(&fx.cfg(json!({"command": "/nope"})))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to start command \"/nope\": No such file or directory (os error 2)"
    );
    assert!(!err.is_recoverable());
    let err = d
        .start_task(&fx.cfg(json!({"command": "nope-no-such-binary"})))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "binary \"nope-no-such-binary\" could not be found"
    );
    // Not executable -> EACCES.
    let data = fx.alloc_dir.join("data.txt");
    std::fs::write(&data, "x").expect("write");
    let err = d
        .start_task(&fx.cfg(json!({"command": data.to_str().expect("utf8")})))
        .unwrap_err();
    assert!(err.to_string().contains("Permission denied"), "{err}");
    // Unwritable log path: the OS cause is in the message.
    let mut cfg = fx.cfg(json!({"command": "/bin/true"}));
    cfg.stdout_path = fx.alloc_dir.join("no/such/dir/out");
    let err = d.start_task(&cfg).unwrap_err().to_string();
    assert!(err.contains("No such file or directory"), "{err}");
    // Nothing was registered.
    assert!(d.wait_task(&fx.cfg(json!({})).id).is_err());
}

#[test]
fn invalid_config_is_rejected_with_the_key() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let err = d
        .validate_config(&json!({"command": "x", "argz": []}))
        .unwrap_err();
    match err {
        DriverError::InvalidConfig { field, .. } => assert_eq!(field, "argz"),
        other => panic!("{other}"),
    }
    assert!(d.validate_config(&json!({"args": []})).is_err());
    assert!(d
        .validate_config(&json!({"command": "x", "args": ["a"], "oom_score_adj": 0}))
        .is_ok());
}

#[test]
fn duplicate_task_id_is_rejected() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    let cfg = fx.sh("sleep 30");
    d.start_task(&cfg).expect("start");
    assert!(matches!(
        d.start_task(&cfg),
        Err(DriverError::DuplicateTask(_))
    ));
    d.stop_task(&cfg.id, Duration::ZERO, None).expect("stop");
    d.destroy_task(&cfg.id, false).expect("destroy");
}

fn run_stop_ignoring_sigint(mode: Mode) {
    let Some(d) = driver(mode) else { return };
    let fx = Fixture::new();
    let cfg = fx.sh("trap '' INT; echo ready > ready; while :; do sleep 0.1; done");
    d.start_task(&cfg).expect("start");
    wait_for("ready", Duration::from_secs(10), || {
        fx.read("ready").contains("ready")
    });
    let started = Instant::now();
    d.stop_task(&cfg.id, Duration::from_millis(700), None)
        .expect("stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(650),
        "stop returned after {took:?}, before the grace period"
    );
    let res = wait_exit(&d, &cfg.id);
    assert_eq!(res.signal, libc::SIGKILL);
    assert_eq!(res.exit_code, 0);
    d.destroy_task(&cfg.id, false).expect("destroy");
}

#[test]
fn stop_kills_task_ignoring_sigint_no_cgroups() {
    run_stop_ignoring_sigint(Mode::NoCgroups);
}

#[test]
fn stop_kills_task_ignoring_sigint_cgroups() {
    require_root!();
    run_stop_ignoring_sigint(Mode::Detected);
}

#[test]
fn stop_with_default_sigint_ends_cooperative_task() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    let cfg = fx.sh("trap 'echo got-int > int.txt; exit 7' INT; echo ready > ready; while :; do sleep 0.1; done");
    d.start_task(&cfg).expect("start");
    wait_for("ready", Duration::from_secs(10), || {
        fx.read("ready").contains("ready")
    });
    d.stop_task(&cfg.id, Duration::from_secs(10), None)
        .expect("stop");
    let res = wait_exit(&d, &cfg.id);
    assert_eq!(res.exit_code, 7);
    assert_eq!(fx.read("int.txt"), "got-int\n");
}

/// The task double-forks a `sleep 1000` into its own session, plus a plain background child.
const DOUBLE_FORK: &str = "(setsid sleep 1000 & echo $! > grandchild.pid); \
     sleep 1000 & echo $! > child.pid; \
     while :; do sleep 0.1; done";

fn run_stop_double_fork(mode: Mode) {
    let Some(d) = driver(mode) else { return };
    let fx = Fixture::new();
    let cfg = fx.sh(DOUBLE_FORK);
    let h = d.start_task(&cfg).expect("start");
    let grandchild = fx.read_pid("grandchild.pid");
    let child = fx.read_pid("child.pid");
    assert!(alive(grandchild) && alive(child));
    if mode != Mode::NoCgroups {
        assert!(h.cgroup.is_some(), "expected a cgroup in {mode:?}");
        let procs = d.task_cgroup_paths(&cfg.id).expect("paths")[0].join("cgroup.procs");
        let content = std::fs::read_to_string(procs).expect("procs");
        assert!(
            content.lines().any(|l| l == grandchild.to_string()),
            "grandchild not in cgroup"
        );
    }
    d.stop_task(&cfg.id, Duration::from_millis(300), None)
        .expect("stop");
    if mode == Mode::NoCgroups {
        // Without a cgroup the setsid'ed grandchild escapes (documented); clean it up first
        // so a failing assertion below cannot leak it.
        let _ = nomad_executor::signal_process(grandchild, libc::SIGKILL);
    }
    // stop_task returns once nothing of the task is left, so no polling is needed here
    // (zombies awaiting their reaper count as dead).
    assert!(!alive(h.pid), "main process survived");
    assert!(!alive(child), "process-group child survived");
    if mode != Mode::NoCgroups {
        assert!(
            !alive(grandchild),
            "double-forked grandchild survived stop_task"
        );
    }
    let paths = d.task_cgroup_paths(&cfg.id).expect("paths");
    d.destroy_task(&cfg.id, false).expect("destroy");
    for p in paths {
        assert!(!p.exists(), "cgroup {} not removed", p.display());
    }
}

#[test]
fn stop_kills_double_forked_children_no_cgroups() {
    run_stop_double_fork(Mode::NoCgroups);
}

#[test]
fn stop_kills_double_forked_children_cgroups() {
    require_root!();
    run_stop_double_fork(Mode::Detected);
}

#[test]
fn stop_kills_double_forked_children_cgroup_v2_unified() {
    require_root!();
    run_stop_double_fork(Mode::V2Unified);
}

#[test]
fn task_is_in_its_cgroup_before_exec_and_limits_are_written() {
    require_root!();
    let d = driver(Mode::Detected).expect("driver");
    let fx = Fixture::new();
    let cfg = fx.cfg(json!({"command": "/bin/cat", "args": ["/proc/self/cgroup"]}));
    let h = d.start_task(&cfg).expect("start");
    let Some(rel) = h.cgroup.clone() else {
        eprintln!("\n!!! SKIP: no cgroup hierarchy on this host !!!\n");
        return;
    };
    let paths = d.task_cgroup_paths(&cfg.id).expect("paths");
    assert_eq!(wait_exit(&d, &cfg.id).exit_code, 0);
    let out = std::fs::read_to_string(&cfg.stdout_path).expect("stdout");
    assert!(out.contains(&format!("/{rel}")), "{out}");
    let memory = paths
        .iter()
        .map(|p| p.join("memory.limit_in_bytes"))
        .chain(paths.iter().map(|p| p.join("memory.max")))
        .find(|p| p.exists());
    if let Some(m) = memory {
        assert_eq!(
            std::fs::read_to_string(m).expect("read").trim(),
            (64u64 << 20).to_string()
        );
    }
    d.destroy_task(&cfg.id, false).expect("destroy");
    assert!(paths.iter().all(|p| !p.exists()));
}

#[test]
fn killed_by_signal_reports_signal() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    let cfg = fx.sh("kill -TERM $$; sleep 5");
    d.start_task(&cfg).expect("start");
    let res = wait_exit(&d, &cfg.id);
    assert_eq!((res.exit_code, res.signal), (0, libc::SIGTERM));
}

#[test]
fn signal_task_delivers_sigusr1() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    let cfg = fx.sh(
        "trap 'echo got-usr1 > usr1.txt' USR1; echo ready > ready; while :; do sleep 0.1; done",
    );
    d.start_task(&cfg).expect("start");
    wait_for("ready", Duration::from_secs(10), || {
        fx.read("ready").contains("ready")
    });
    d.signal_task(&cfg.id, "SIGUSR1").expect("signal");
    wait_for("usr1.txt", Duration::from_secs(10), || {
        fx.read("usr1.txt") == "got-usr1\n"
    });
    assert!(matches!(
        d.signal_task(&cfg.id, "SIGBOGUS"),
        Err(DriverError::InvalidSignal(_))
    ));
    // Task keeps running after the trap; USR1 without prefix works too.
    d.signal_task(&cfg.id, "usr1").expect("signal");
    d.stop_task(&cfg.id, Duration::from_millis(100), Some("SIGKILL"))
        .expect("stop");
    assert!(d.signal_task(&cfg.id, "SIGUSR1").is_err());
    d.destroy_task(&cfg.id, false).expect("destroy");
}

#[test]
fn destroy_running_task_requires_force() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    let cfg = fx.sh("sleep 100");
    let h = d.start_task(&cfg).expect("start");
    assert!(matches!(
        d.destroy_task(&cfg.id, false),
        Err(DriverError::StillRunning(_))
    ));
    d.destroy_task(&cfg.id, true).expect("force destroy");
    assert!(!alive(h.pid));
}

fn run_recover(mode: Mode) {
    let Some(d1) = driver(mode) else { return };
    let fx = Fixture::new();
    let mut cfg = fx.sh(DOUBLE_FORK);
    cfg.kill_signal = Some("SIGTERM".into());
    let h = d1.start_task(&cfg).expect("start");
    let grandchild = fx.read_pid("grandchild.pid");
    let persisted = serde_json::to_string(&h).expect("serialize");
    drop(d1); // agent "restart": tasks keep running

    let d2 = driver(mode).expect("driver");
    let restored: TaskHandle = serde_json::from_str(&persisted).expect("deserialize");
    assert_eq!(restored, h);
    d2.recover_task(&restored).expect("recover");
    d2.recover_task(&restored).expect("recover is idempotent");
    assert!(alive(h.pid));
    let fut = d2.wait_task(&h.task_id).expect("wait");
    d2.stop_task(&h.task_id, Duration::from_millis(500), None)
        .expect("stop");
    assert!(!alive(h.pid));
    if mode != Mode::NoCgroups && h.cgroup.is_some() {
        assert!(
            !alive(grandchild),
            "grandchild survived stop after recovery"
        );
    } else {
        let _ = nomad_executor::signal_process(grandchild, libc::SIGKILL);
    }
    let res = rt()
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), fut).await })
        .expect("exit");
    assert_eq!(res.exit_code, -1);
    assert!(
        res.err.as_deref().is_some_and(|e| e.contains("unknown")),
        "{res:?}"
    );
    d2.destroy_task(&h.task_id, false).expect("destroy");

    // Gone now: recovery fails clearly.
    let d3 = driver(mode).expect("driver");
    let err = d3.recover_task(&restored).unwrap_err();
    assert!(matches!(err, DriverError::Recover { .. }), "{err}");
}

#[test]
fn recover_after_agent_restart_no_cgroups() {
    run_recover(Mode::NoCgroups);
}

#[test]
fn recover_after_agent_restart_cgroups() {
    require_root!();
    run_recover(Mode::Detected);
}

#[test]
fn recover_rejects_reused_pid() {
    let d = driver(Mode::NoCgroups).expect("driver");
    let handle = TaskHandle {
        task_id: "x/y/z".into(),
        driver: "raw_exec".into(),
        pid: std::process::id(),
        start_time: 1, // not our start time
        cgroup: None,
        started_at_unix_nanos: 0,
        kill_signal: None,
        recorder: None,
    };
    assert!(matches!(
        d.recover_task(&handle),
        Err(DriverError::Recover { .. })
    ));
    let other = TaskHandle {
        driver: "exec".into(),
        ..handle
    };
    assert!(d.recover_task(&other).is_err());
}

#[test]
fn runs_as_user() {
    require_root!();
    if nix_user_uid("nobody").is_none() {
        eprintln!("\n!!! SKIP runs_as_user: no user nobody !!!\n");
        return;
    }
    let d = driver(Mode::NoCgroups).expect("driver");
    let fx = Fixture::new();
    // The task dir must be reachable by the user.
    let mut p = fx.task_dir.clone();
    while let Some(parent) = p.parent().map(Path::to_path_buf) {
        use std::os::unix::fs::PermissionsExt;
        if parent == Path::new("/") || parent == Path::new("/tmp") {
            break;
        }
        let _ = std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755));
        p = parent;
    }
    let mut cfg = fx.cfg(json!({"command": "/usr/bin/id", "args": ["-u"]}));
    cfg.user = Some("nobody".into());
    d.start_task(&cfg).expect("start");
    assert_eq!(wait_exit(&d, &cfg.id).exit_code, 0);
    let out = std::fs::read_to_string(&cfg.stdout_path).expect("stdout");
    assert_eq!(out.trim(), nix_user_uid("nobody").expect("uid").to_string());
}

fn nix_user_uid(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(2)?.parse().ok())?
        })
}

/// The client's log collector reads task output from a FIFO; while the agent is down nobody
/// reads it. Output written then must wait in the pipe (not kill the task with SIGPIPE) and
/// reach the next reader.
#[test]
fn fifo_output_survives_a_missing_reader() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Some(d) = driver(Mode::NoCgroups) else {
        return;
    };
    let fx = Fixture::new();
    let cfg =
        fx.sh("echo one; while [ ! -f go ]; do sleep 0.02; done; echo two; echo done > finished; while [ ! -f stop ]; do sleep 0.02; done");
    let status = std::process::Command::new("mkfifo")
        .arg(&cfg.stdout_path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let open_reader = || {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&cfg.stdout_path)
            .expect("open fifo for reading")
    };
    let read_until = |reader: &mut std::fs::File, want: &str| {
        let mut got = String::new();
        wait_for(want, Duration::from_secs(10), || {
            let mut buf = [0u8; 64];
            if let Ok(n) = reader.read(&mut buf) {
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            got.contains(want)
        });
    };
    let mut reader = open_reader();
    d.start_task(&cfg).expect("start");
    read_until(&mut reader, "one");
    // The "agent" goes away: no reader is left but the task's own descriptor.
    drop(reader);
    std::fs::write(fx.file("go"), "").expect("go");
    wait_for(
        "task to write after the reader left",
        Duration::from_secs(10),
        || fx.read("finished").contains("done"),
    );
    // The task is still running (the pipe lives on through its descriptor) when the next
    // reader arrives. Output buffered when a task exits with no reader is not kept: the kernel
    // frees a pipe when its last descriptor closes.
    let mut reader = open_reader();
    read_until(&mut reader, "two");
    std::fs::write(fx.file("stop"), "").expect("stop");
    let res = wait_exit(&d, &cfg.id);
    assert_eq!(
        (res.exit_code, res.signal),
        (0, 0),
        "the task must not die of SIGPIPE: {res:?}"
    );
    d.destroy_task(&cfg.id, false).expect("destroy");
}
