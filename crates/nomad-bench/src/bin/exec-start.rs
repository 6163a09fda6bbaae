//! exec driver task start, against the copy-based chroot Nomad builds, in one run:
//!
//! (a) `ExecDriver::start_task` of `/bin/true` (fresh task dir, secrets tmpfs, mount plan,
//!     namespaces, pivot_root, capabilities, cgroup): time until `start_task` returns (the
//!     task's execve succeeded), and until its exit is observed through `wait_task`;
//!     p50/p99 over N starts (default 50);
//! (b) the baseline: a hard-link farm of Nomad's default `chroot_env` (`cp -al` of /bin /etc
//!     /lib /lib32 /lib64 /run/resolvconf /sbin /usr, each followed like Nomad's embedDirs does)
//!     into a temp dir on the same filesystem, p50 over 3 runs;
//! (c) the fork/exec/wait floor of `/bin/true` from this process.
//!
//! Needs root (namespaces, mounts, cgroups).
//!
//!     cargo build --release -p nomad-bench
//!     sudo ./target/release/exec-start [starts=50]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nomad_bench::{fork_exec_floor, ms, percentile};
use nomad_drivers::{Driver, ExecConfig, ExecDriver, TaskConfig, TaskResources};

/// Nomad's default `chroot_env` sources.
const DEFAULT_CHROOT_SOURCES: &[&str] = &[
    "/bin",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/run/resolvconf",
    "/sbin",
    "/usr",
];

fn task_config(root: &Path, i: usize) -> TaskConfig {
    let alloc_id = format!("execbench{}-{i}", std::process::id());
    let base = root.join(&alloc_id);
    let task_dir = base.join("t");
    let alloc_dir = base.join("alloc");
    for d in [
        task_dir.join("local"),
        task_dir.join("tmp"),
        task_dir.join("secrets"),
        alloc_dir.join("logs"),
        alloc_dir.join("data"),
    ] {
        std::fs::create_dir_all(&d).expect("create task dirs");
    }
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        "/usr/local/bin:/usr/bin:/bin".to_string(),
    );
    TaskConfig {
        id: format!("{alloc_id}/t/{i:08x}"),
        alloc_id,
        task_name: "t".into(),
        job_id: "exec-bench".into(),
        group_name: "g".into(),
        namespace: "default".into(),
        driver_config: serde_json::json!({"command": "/bin/true"}),
        env,
        user: None,
        stdout_path: alloc_dir.join("logs/t.stdout.0"),
        stderr_path: alloc_dir.join("logs/t.stderr.0"),
        alloc_dir,
        task_dir,
        resources: TaskResources {
            cpu_mhz: 100,
            memory_mb: 64,
            memory_max_mb: 0,
            cores: vec![],
        },
        kill_signal: None,
    }
}

/// Times `starts` exec task starts: (start_task returned, exit observed) per start.
fn exec_starts(starts: usize) -> (Vec<Duration>, Vec<Duration>) {
    let driver = ExecDriver::new(ExecConfig::default()).expect("exec driver");
    let fp = driver.fingerprint();
    assert!(
        fp.healthy,
        "exec driver unhealthy: {}",
        fp.health_description
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut started, mut exited) = (Vec::new(), Vec::new());
    // One unmeasured warm-up start (page cache, cgroup parents).
    for i in 0..=starts {
        let cfg = task_config(dir.path(), i);
        let t = Instant::now();
        let handle = driver
            .start_task(&cfg)
            .unwrap_or_else(|e| panic!("start_task: {e}"));
        let s = t.elapsed();
        let wait = driver.wait_task(&handle.task_id).expect("wait_task");
        let res = rt.block_on(wait);
        let e = t.elapsed();
        assert_eq!(res.exit_code, 0, "/bin/true failed: {res:?}");
        driver
            .destroy_task(&handle.task_id, true)
            .expect("destroy_task");
        if i > 0 {
            started.push(s);
            exited.push(e);
        }
    }
    (started, exited)
}

/// One hard-link farm of the default chroot_env into a fresh dir under `parent`; returns its
/// build time and the number of entries linked.
fn link_farm(parent: &Path) -> (Duration, u64) {
    let dir = tempfile::tempdir_in(parent).expect("farm dir");
    let t = Instant::now();
    for src in DEFAULT_CHROOT_SOURCES {
        let src = Path::new(src);
        if !src.exists() {
            continue;
        }
        let dest = dir.path().join(src.strip_prefix("/").unwrap_or(src));
        std::fs::create_dir_all(&dest).expect("farm dest");
        // `<src>/.` follows a top-level symlink (/bin -> usr/bin), as Nomad's embedDirs does.
        let status = Command::new("cp")
            .arg("-al")
            .arg(src.join("."))
            .arg(&dest)
            .status()
            .expect("run cp");
        assert!(status.success(), "cp -al {} failed", src.display());
    }
    let took = t.elapsed();
    let entries = count_entries(dir.path());
    (took, entries)
}

fn count_entries(p: &Path) -> u64 {
    let mut n = 0;
    let mut stack: Vec<PathBuf> = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            n += 1;
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    n
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn main() {
    if !nomad_testkit::is_root() {
        eprintln!("exec-start needs root (the exec driver uses mount/pid namespaces, mounts and cgroups): run it with sudo");
        std::process::exit(2);
    }
    let starts: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);

    let floor = fork_exec_floor(200);
    let (mut started, mut exited) = exec_starts(starts);
    let (s50, s99) = (
        percentile(&mut started, 50.0),
        percentile(&mut started, 99.0),
    );
    let (e50, e99) = (percentile(&mut exited, 50.0), percentile(&mut exited, 99.0));

    // The farm lives on the filesystem of /usr so links (not copies) are made.
    let farm_parent = std::env::temp_dir();
    let mut farms = Vec::new();
    let mut entries = 0;
    for _ in 0..3 {
        let (d, n) = link_farm(&farm_parent);
        farms.push(d);
        entries = n;
    }
    let farm50 = percentile(&mut farms, 50.0);

    println!("exec driver task start (/bin/true, {starts} starts, fresh task dir each):");
    println!(
        "  start_task returned (execve done): p50 {} ms, p99 {} ms",
        ms(s50),
        ms(s99)
    );
    println!(
        "  start_task + exit observed:        p50 {} ms, p99 {} ms",
        ms(e50),
        ms(e99)
    );
    println!(
        "baseline: copy-based chroot (cp -al of the default chroot_env, {entries} entries): p50 {} ms over 3",
        ms(farm50)
    );
    println!(
        "floor: fork+exec+wait of /bin/true: p50 {} ms over 200",
        ms(floor)
    );
    println!(
        "ratios: link farm / exec start (p50) = {:.0}x; exec start / floor = {:.1}x; exec start+exit / floor = {:.1}x",
        ratio(farm50, s50),
        ratio(s50, floor),
        ratio(e50, floor)
    );
}
