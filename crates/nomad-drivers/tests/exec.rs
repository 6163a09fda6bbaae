//! The exec driver with real namespaces, mounts and cgroups. Every test needs root and skips
//! loudly otherwise. Tasks are /bin/sh scripts that write what they see into /local; the test
//! reads it back from the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nomad_drivers::{Driver, DriverError, ExecConfig, ExecDriver, TaskConfig, TaskHandle};
use nomad_testkit::{assert_eventually as wait_for, require_root};
use serde_json::json;

static COUNTER: AtomicU32 = AtomicU32::new(0);

struct Fixture {
    dir: tempfile::TempDir,
    alloc_id: String,
    task_dir: PathBuf,
    alloc_dir: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let alloc_id = format!("exectest{}-{}", std::process::id(), n);
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
        // The client makes the shared dirs 0777 (Nomad's dropDirPermissions).
        use std::os::unix::fs::PermissionsExt;
        for d in [alloc_dir.clone(), alloc_dir.join("data")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        Fixture {
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

    fn sh(&self, script: &str) -> TaskConfig {
        self.cfg(json!({"command": "/bin/sh", "args": ["-c", script]}))
    }

    fn read_local(&self, name: &str) -> String {
        std::fs::read_to_string(self.task_dir.join("local").join(name)).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.alloc_dir.join("logs/web.stderr.0")).unwrap_or_default()
    }
}

impl Drop for Fixture {
    /// A failed test may panic before destroy: do not leave its secrets tmpfs mounted (the
    /// temp dir could not be removed otherwise).
    fn drop(&mut self) {
        for m in host_mounts_under(self.dir.path()) {
            let _ = nomad_executor::hostmount::unmount_detach(&m);
        }
    }
}

fn driver() -> ExecDriver {
    ExecDriver::new(ExecConfig::default()).expect("driver")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn wait_exit(d: &ExecDriver, id: &str) -> nomad_drivers::ExitResult {
    let fut = d.wait_task(id).expect("wait_task");
    rt().block_on(async { tokio::time::timeout(Duration::from_secs(30), fut).await })
        .expect("task did not exit in time")
}

/// Host mount points under `path`.
fn host_mounts_under(path: &Path) -> Vec<PathBuf> {
    nomad_executor::read_mountinfo("self")
        .expect("mountinfo")
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| m.starts_with(path))
        .collect()
}

fn run(d: &ExecDriver, fx: &Fixture, cfg: &TaskConfig) -> nomad_drivers::ExitResult {
    d.start_task(cfg).expect("start");
    let res = wait_exit(d, &cfg.id);
    d.destroy_task(&cfg.id, false).expect("destroy");
    assert!(
        host_mounts_under(fx.dir.path()).is_empty(),
        "mounts left after destroy: {:?}",
        host_mounts_under(fx.dir.path())
    );
    res
}

#[test]
fn fingerprint_and_capabilities() {
    require_root!();
    let d = driver();
    let fp = d.fingerprint();
    assert!(fp.detected && fp.healthy, "{fp:?}");
    assert_eq!(fp.health_description, "Healthy");
    assert_eq!(fp.attributes["driver.exec"], "1");
}

#[test]
fn chroot_shows_only_what_it_should() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    let marker = fx.dir.path().join("host-marker");
    std::fs::write(&marker, "secret").expect("marker");
    let script = format!(
        r#"
        out=/local/out
        check() {{ if "$@" 2>/dev/null; then echo "$*: yes" >> $out; else echo "$*: no" >> $out; fi; }}
        check test -e {marker}
        check test -e /work
        check test -e /root
        check touch /alloc/a
        check touch /alloc/data/d
        check touch /local/l
        check touch /secrets/s
        check touch /tmp/t
        check touch /alloc/logs/x
        check touch /usr/x
        check touch /etc/x
        check touch /x
        check test -r /etc/passwd
        cp /bin/true /secrets/true 2>/dev/null && chmod 755 /secrets/true
        check /secrets/true
        check test -c /dev/null
        check test -c /dev/urandom
        check test -L /dev/fd
        check test -d /dev/shm
        check test -d /dev/pts
        check test -e /dev/sda
        check test -e /dev/vda
        check test -e /sys/kernel
        echo "uid=$(id -u) pid=$$ pwd=$(pwd) user=$USER home=$HOME" >> $out
        ls /dev | tr '\n' ' ' >> $out
        echo >> $out
        cat /proc/self/mountinfo | wc -l >> $out
        "#,
        marker = marker.display()
    );
    let res = run(&d, &fx, &fx.sh(&script));
    let out = fx.read_local("out");
    assert!(res.successful(), "{res:?}\n{out}\nstderr: {}", fx.stderr());
    for (line, want) in [
        (format!("test -e {}", marker.display()), "no"),
        ("test -e /work".into(), "no"),
        ("test -e /root".into(), "no"),
        ("touch /alloc/a".into(), "yes"),
        ("touch /alloc/data/d".into(), "yes"),
        ("touch /local/l".into(), "yes"),
        ("touch /secrets/s".into(), "yes"),
        ("touch /tmp/t".into(), "yes"),
        ("touch /alloc/logs/x".into(), "no"),
        ("touch /usr/x".into(), "no"),
        ("touch /etc/x".into(), "no"),
        ("touch /x".into(), "no"),
        ("test -r /etc/passwd".into(), "yes"),
        ("/secrets/true".into(), "no"),
        ("test -c /dev/null".into(), "yes"),
        ("test -c /dev/urandom".into(), "yes"),
        ("test -L /dev/fd".into(), "yes"),
        ("test -d /dev/shm".into(), "yes"),
        ("test -d /dev/pts".into(), "yes"),
        ("test -e /dev/sda".into(), "no"),
        ("test -e /dev/vda".into(), "no"),
        ("test -e /sys/kernel".into(), "no"),
    ] {
        assert!(
            out.contains(&format!("{line}: {want}\n")),
            "expected `{line}: {want}` in:\n{out}"
        );
    }
    assert!(out.contains("uid=65534 pid=1 pwd=/ user=nobody"), "{out}");
    // What the task wrote is on the host.
    assert!(fx.task_dir.join("local/l").exists());
    assert!(fx.alloc_dir.join("a").exists());
    assert!(fx.task_dir.join("tmp/t").exists());
}

#[test]
fn secrets_is_a_host_tmpfs_visible_to_the_client_until_destroy() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    std::fs::write(fx.task_dir.join("secrets/token"), "s3cr3t").expect("pre-seeded secret");
    let cfg = fx.sh("cat /secrets/token > /local/token; echo from-task > /secrets/out; sleep 30");
    d.start_task(&cfg).expect("start");
    wait_for("task output", Duration::from_secs(10), || {
        fx.read_local("token") == "s3cr3t"
    });
    let secrets = fx.task_dir.join("secrets");
    let mounts = host_mounts_under(fx.dir.path());
    assert_eq!(
        mounts,
        vec![std::fs::canonicalize(&secrets).expect("canon")]
    );
    wait_for("secret written by task", Duration::from_secs(10), || {
        std::fs::read_to_string(secrets.join("out")).is_ok_and(|s| s == "from-task\n")
    });
    d.stop_task(&cfg.id, Duration::from_millis(100), None)
        .expect("stop");
    d.destroy_task(&cfg.id, false).expect("destroy");
    assert!(host_mounts_under(fx.dir.path()).is_empty());
    assert!(!fx.task_dir.join(".root").exists());
}

#[test]
fn pid_namespace_private_and_host() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    let script = "echo $$ > /local/pid; ls /proc | grep -c '^[0-9]' > /local/nprocs";
    let res = run(&d, &fx, &fx.sh(script));
    assert!(res.successful(), "{res:?} {}", fx.stderr());
    assert_eq!(fx.read_local("pid").trim(), "1");
    let n: u32 = fx.read_local("nprocs").trim().parse().expect("count");
    assert!(n <= 3, "private pid namespace shows {n} processes");

    let cfg = fx.cfg(json!({"command": "/bin/sh", "args": ["-c", script], "pid_mode": "host"}));
    let h = d.start_task(&cfg).expect("start");
    let res = wait_exit(&d, &cfg.id);
    d.destroy_task(&cfg.id, false).expect("destroy");
    assert!(res.successful(), "{res:?} {}", fx.stderr());
    assert_eq!(fx.read_local("pid").trim(), h.pid.to_string());
    let n: u32 = fx.read_local("nprocs").trim().parse().expect("count");
    assert!(n > 3, "host pid mode shows only {n} processes");
}

fn cap_eff(fx: &Fixture, d: &ExecDriver, config: serde_json::Value, user: Option<&str>) -> String {
    let mut cfg = fx.cfg(config);
    cfg.user = user.map(str::to_string);
    let res = run(d, fx, &cfg);
    assert!(res.successful(), "{res:?} {}", fx.stderr());
    fx.read_local("caps")
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no CapEff in {:?}", fx.read_local("caps")))
}

#[test]
fn capabilities() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    let script = "grep Cap /proc/self/status > /local/caps";
    let eff = cap_eff(
        &fx,
        &d,
        json!({"command": "/bin/sh", "args": ["-c", script], "cap_drop": ["all"]}),
        None,
    );
    assert_eq!(eff, "0000000000000000");
    // Default set for nobody: Docker's default minus NET_RAW, kept as ambient caps.
    let eff = cap_eff(
        &fx,
        &d,
        json!({"command": "/bin/sh", "args": ["-c", script]}),
        None,
    );
    assert_eq!(eff, "00000000a80405fb");
    // Dropping one.
    let eff = cap_eff(
        &fx,
        &d,
        json!({"command": "/bin/sh", "args": ["-c", script], "cap_drop": ["chown"]}),
        None,
    );
    assert_eq!(eff, "00000000a80405fa");
    // Adding one outside allow_caps is refused before anything starts.
    let e = d
        .validate_config(&json!({"command": "/bin/sh", "cap_add": ["SYS_ADMIN"]}))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid driver config field \"cap_add\": driver does not allow the following capabilities: sys_admin"
    );
}

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    let mut cfg = fx.sh("head -c 200m /dev/zero | tail");
    cfg.resources.memory_mb = 32;
    let res = run(&d, &fx, &cfg);
    assert!(res.oom_killed, "{res:?} stderr: {}", fx.stderr());
    assert!(!res.successful());
}

#[test]
fn stop_kills_every_process() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    let cfg =
        fx.sh("sleep 1000 & sleep 1000 & (sleep 1000 &) ; echo started > /local/started; wait");
    let h = d.start_task(&cfg).expect("start");
    wait_for("task started", Duration::from_secs(10), || {
        fx.read_local("started") == "started\n"
    });
    let paths = d.task_cgroup_paths(&cfg.id).expect("cgroup");
    assert!(!paths.is_empty(), "exec tasks run in a cgroup");
    let procs = |p: &PathBuf| -> Vec<u32> {
        std::fs::read_to_string(p.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let before = procs(&paths[0]);
    assert!(before.len() >= 4, "{before:?}");
    // pid 1 of the namespace ignores SIGINT without a handler: the SIGKILL after the timeout
    // does it (Nomad behaves the same).
    let t0 = Instant::now();
    d.stop_task(&cfg.id, Duration::from_millis(200), None)
        .expect("stop");
    assert!(t0.elapsed() < Duration::from_secs(5));
    for pid in before {
        assert!(!nomad_executor::is_alive(pid), "pid {pid} survived stop");
    }
    assert!(!nomad_executor::is_alive(h.pid));
    // dash, waiting, exits on SIGINT (130); a shell that ignores it is SIGKILLed.
    let res = wait_exit(&d, &cfg.id);
    assert!(
        res.exit_code == 130 || res.signal == libc::SIGKILL,
        "{res:?}"
    );
    d.destroy_task(&cfg.id, false).expect("destroy");
    assert!(host_mounts_under(fx.dir.path()).is_empty());
}

#[test]
fn signals_reach_a_handler_in_pid_1() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    let cfg = fx.sh("trap 'echo got-usr1 > /local/sig; exit 0' USR1; echo ready > /local/ready; while :; do sleep 0.05; done");
    d.start_task(&cfg).expect("start");
    wait_for("ready", Duration::from_secs(10), || {
        fx.read_local("ready") == "ready\n"
    });
    d.signal_task(&cfg.id, "SIGUSR1").expect("signal");
    let res = wait_exit(&d, &cfg.id);
    assert!(res.successful(), "{res:?}");
    assert_eq!(fx.read_local("sig"), "got-usr1\n");
    d.destroy_task(&cfg.id, false).expect("destroy");
}

#[test]
fn work_dir_user_and_relative_command() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    std::fs::write(
        fx.task_dir.join("local/run.sh"),
        "#!/bin/sh\npwd > /local/pwd\nid -un > /local/user\n",
    )
    .expect("script");
    // Relative command found in local/ (and made executable).
    let mut cfg = fx.cfg(json!({"command": "run.sh", "work_dir": "/alloc"}));
    cfg.user = Some("root".into());
    let res = run(&d, &fx, &cfg);
    assert!(res.successful(), "{res:?} {}", fx.stderr());
    assert_eq!(fx.read_local("pwd"), "/alloc\n");
    assert_eq!(fx.read_local("user"), "root\n");
    // Bare name found through the chroot's PATH.
    let cfg = fx.cfg(json!({"command": "sh", "args": ["-c", "echo ok > /local/ok"]}));
    let res = run(&d, &fx, &cfg);
    assert!(res.successful(), "{res:?} {}", fx.stderr());
    assert_eq!(fx.read_local("ok"), "ok\n");
}

#[test]
fn bad_input_is_reported_with_field_and_value() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    let e = d
        .start_task(&fx.cfg(json!({"command": "no-such-binary-xyz"})))
        .unwrap_err();
    assert!(
        matches!(e, DriverError::InvalidConfig { ref field, .. } if field == "command"),
        "{e}"
    );
    assert!(e.to_string().contains("\"no-such-binary-xyz\""), "{e}");
    let e = d
        .start_task(&fx.cfg(json!({"command": "/bin/sh", "work_dir": "/nope"})))
        .unwrap_err();
    assert!(matches!(e, DriverError::Start { .. }), "{e}");
    assert!(e.to_string().contains("\"/nope\""), "{e}");
    let e = d
        .validate_config(&json!({"command": "/bin/sh", "pid_mode": "privte"}))
        .unwrap_err();
    assert!(
        e.to_string().contains("pid_mode") && e.to_string().contains("\"privte\""),
        "{e}"
    );
    let e = d
        .validate_config(&json!({"command": "/bin/sh", "cap_drop": ["CAP_FLY"]}))
        .unwrap_err();
    assert!(
        e.to_string().contains("cap_drop") && e.to_string().contains("CAP_FLY"),
        "{e}"
    );
    // Nothing leaked by the failed starts.
    assert!(host_mounts_under(fx.dir.path()).is_empty());
    let mut user = fx.sh("true");
    user.user = Some("no-such-user-xyz".into());
    let e = d.start_task(&user).unwrap_err();
    assert!(e.to_string().contains("no-such-user-xyz"), "{e}");
}

#[test]
fn recover_after_agent_restart_and_clean_up() {
    require_root!();
    let fx = Fixture::new();
    let cfg = fx.sh("echo up > /local/up; sleep 1000");
    let handle: TaskHandle = {
        let d = driver();
        let h = d.start_task(&cfg).expect("start");
        wait_for("up", Duration::from_secs(10), || {
            fx.read_local("up") == "up\n"
        });
        h
        // The driver is dropped without stopping the task, like an agent restart.
    };
    let d = driver();
    d.recover_task(&handle).expect("recover");
    d.stop_task(&cfg.id, Duration::ZERO, None).expect("stop");
    let res = wait_exit(&d, &cfg.id);
    assert!(res.err.is_some(), "{res:?}");
    d.destroy_task(&cfg.id, false).expect("destroy");
    assert!(
        host_mounts_under(fx.dir.path()).is_empty(),
        "{:?}",
        host_mounts_under(fx.dir.path())
    );
    assert!(!fx.task_dir.join(".root").exists());
}

/// Not an assertion: prints the p50 of start_task (call → return, i.e. the task's execve
/// done) over 50 starts, for the report.
#[test]
fn start_latency_report() {
    require_root!();
    let d = driver();
    let fx = Fixture::new();
    let mut samples = vec![];
    for _ in 0..50 {
        let cfg = fx.cfg(json!({"command": "/bin/true"}));
        let t0 = Instant::now();
        d.start_task(&cfg).expect("start");
        samples.push(t0.elapsed());
        let _ = wait_exit(&d, &cfg.id);
        d.destroy_task(&cfg.id, false).expect("destroy");
    }
    samples.sort();
    eprintln!(
        "exec start_task latency over {} starts: p50 {:?}, p90 {:?}, min {:?}, max {:?}",
        samples.len(),
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10],
        samples[0],
        samples[samples.len() - 1]
    );
}

#[test]
fn no_pivot_root_and_cgroup_v2_variants() {
    require_root!();
    let fx = Fixture::new();
    let script = "test -e /work || echo isolated > /local/v; echo $$ >> /local/v";
    let d = ExecDriver::new(ExecConfig {
        no_pivot_root: true,
        ..Default::default()
    })
    .expect("driver");
    let res = run(&d, &fx, &fx.sh(script));
    assert!(res.successful(), "{res:?} {}", fx.stderr());
    assert_eq!(fx.read_local("v"), "isolated\n1\n");

    let root = PathBuf::from("/sys/fs/cgroup/unified");
    if !root.join("cgroup.procs").exists() {
        eprintln!("\n!!! SKIP v2 variant: /sys/fs/cgroup/unified is not a cgroup2 mount !!!\n");
        return;
    }
    let d = ExecDriver::new(ExecConfig {
        cgroup_mode: Some(nomad_executor::CgroupMode::V2 { root }),
        ..Default::default()
    })
    .expect("driver");
    std::fs::remove_file(fx.task_dir.join("local/v")).expect("rm");
    let cfg = fx.sh(&format!("{script}; sleep 30"));
    d.start_task(&cfg).expect("start");
    wait_for("output", Duration::from_secs(10), || {
        fx.read_local("v") == "isolated\n1\n"
    });
    let paths = d.task_cgroup_paths(&cfg.id).expect("paths");
    assert_eq!(paths.len(), 1);
    assert!(
        std::fs::read_to_string(paths[0].join("cgroup.procs"))
            .expect("procs")
            .lines()
            .count()
            >= 1
    );
    d.stop_task(&cfg.id, Duration::ZERO, None).expect("stop");
    d.destroy_task(&cfg.id, false).expect("destroy");
    assert!(!paths[0].exists());
    assert!(host_mounts_under(fx.dir.path()).is_empty());
}

#[test]
fn denied_host_ids_refuse_the_task_user() {
    require_root!();
    let fx = Fixture::new();
    // The default task user is nobody.
    let nobody = nomad_executor::lookup_user("nobody").expect("nobody");
    let d = ExecDriver::new(ExecConfig {
        denied_host_uids: nomad_drivers::IdSet::parse("denied_host_uids", &nobody.uid.to_string())
            .unwrap(),
        ..Default::default()
    })
    .expect("driver");
    let err = d.start_task(&fx.sh("true")).expect_err("refused");
    assert!(
        err.to_string()
            .contains(&format!("running as uid {} is disallowed", nobody.uid)),
        "{err}"
    );
    // Other ids still run.
    let d = ExecDriver::new(ExecConfig {
        denied_host_uids: nomad_drivers::IdSet::parse("denied_host_uids", "0").unwrap(),
        ..Default::default()
    })
    .expect("driver");
    assert!(run(&d, &fx, &fx.sh("true")).successful());
}
