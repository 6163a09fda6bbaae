//! End to end: the `exec` driver through the real `nomad` binary (`agent -dev`) and CLI, as a
//! user runs it (issue 5: "The exec driver: real isolation, started in milliseconds").
//!
//! Every test needs root (namespaces, mounts, cgroups) and prints SKIP otherwise. Jobs are HCL
//! files submitted with `nomad job run`; what a task saw is read back with `nomad alloc logs`,
//! `nomad alloc fs`, `nomad alloc status` and the HTTP API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nomad_testkit::{require_root, wait_for, DevAgent};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// Writes `hcl` to `<dir>/<name>.nomad.hcl` and submits it with `nomad job run`.
fn run_job(agent: &DevAgent, dir: &Path, name: &str, hcl: &str) {
    let spec = dir.join(format!("{name}.nomad.hcl"));
    std::fs::write(&spec, hcl).expect("write job file");
    run_job_file(agent, &spec);
}

fn run_job_file(agent: &DevAgent, spec: &Path) {
    let (code, out, err) = agent.cli(bin(), &["job", "run", spec.to_str().expect("utf-8 path")]);
    assert_eq!(
        code,
        0,
        "job run {}:\nstdout:\n{out}\nstderr:\n{err}\nagent:\n{}",
        spec.display(),
        agent.log()
    );
}

/// The allocations of `job` (the list stubs).
fn allocs(agent: &DevAgent, job: &str) -> Vec<Value> {
    agent
        .get_json(&format!("/v1/job/{job}/allocations"))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Waits until `job` has `n` allocations that are all terminal (complete/failed/lost), and
/// returns them in full, keyed by task group.
fn wait_terminal(agent: &DevAgent, job: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    let done = wait_for(Duration::from_secs(60), || {
        last = allocs(agent, job);
        last.len() == n
            && last.iter().all(|a| {
                matches!(
                    a["ClientStatus"].as_str(),
                    Some("complete" | "failed" | "lost")
                )
            })
    });
    assert!(
        done,
        "allocs of {job} did not all finish: {last:#?}\nagent log:\n{}",
        agent.log()
    );
    last.iter()
        .map(|a| {
            let id = a["ID"].as_str().unwrap_or_default();
            agent
                .get_json(&format!("/v1/allocation/{id}"))
                .expect("alloc read")
        })
        .collect()
}

/// Waits for a running alloc of `job` whose task `task` has started (and is not `not`).
fn running_alloc(agent: &DevAgent, job: &str, task: &str, not: Option<&str>) -> String {
    let mut id = String::new();
    let ok = wait_for(Duration::from_secs(30), || {
        for a in allocs(agent, job) {
            let aid = a["ID"].as_str().unwrap_or_default();
            let started = a["TaskStates"][task]["State"] == "running";
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

/// `nomad alloc logs <alloc> <task>` (stdout) once it contains `last` (the task's final line).
///
/// Client bug (reported): when a task exits quickly, the tail of its stdout can be lost for
/// good — `logmon::copy_loop`'s drain on shutdown uses `try_read`, which returns WouldBlock
/// without reading while tokio has not yet seen the FIFO readable. So the tests that check a
/// batch task's output have it write a file instead ([`report`]); `logs` is used for the example
/// job and a long-running task.
fn logs(agent: &DevAgent, alloc: &str, task: &str, last: &str) -> String {
    let mut out = String::new();
    let mut err = String::new();
    let complete = wait_for(Duration::from_secs(10), || {
        let (code, o, e) = agent.cli(bin(), &["alloc", "logs", alloc, task]);
        (out, err) = (o, e);
        code == 0 && out.contains(last)
    });
    assert!(
        complete,
        "alloc logs {alloc} {task}: no {last:?} in:\n{out}\nstderr: {err}"
    );
    out
}

/// What an `sh_config` task wrote to [`REPORT`], read with `nomad alloc fs`.
fn report(agent: &DevAgent, alloc: &str, task: &str) -> String {
    let path = format!("{task}{REPORT}");
    let (code, out, err) = agent.cli(bin(), &["alloc", "fs", alloc, &path]);
    assert_eq!(
        code,
        0,
        "alloc fs {alloc} {path}: {err}\nagent:\n{}",
        agent.log()
    );
    assert!(
        out.ends_with(&format!("{END}\n")),
        "{task}: incomplete report:\n{out}"
    );
    out
}

/// The `Type: DisplayMessage` lines of a task's events.
fn events(alloc: &Value, task: &str) -> Vec<(String, String, Value)> {
    alloc["TaskStates"][task]["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["Type"].as_str().unwrap_or_default().to_string(),
                e["DisplayMessage"].as_str().unwrap_or_default().to_string(),
                e["Details"].clone(),
            )
        })
        .collect()
}

/// `key=value` lines a task printed.
fn kv(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// A group with one exec task, no restarts and no reschedules, so a failure is final.
fn group(name: &str, config: &str, extra: &str) -> String {
    format!(
        r#"
  group "{name}" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    task "{name}" {{
      driver = "exec"
{extra}
      config {{
{config}
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
"#
    )
}

fn batch_job(name: &str, groups: &[String]) -> String {
    format!(
        "job \"{name}\" {{\n  datacenters = [\"*\"]\n  type        = \"batch\"\n{}}}\n",
        groups.concat()
    )
}

/// The last line every `sh_config` script prints.
const END: &str = "END-OF-TASK";
/// Where `sh_config` scripts write their output (inside the chroot).
const REPORT: &str = "/local/report.txt";

/// An exec task running a `/bin/sh -c` script (then `echo END`), its output going to
/// [`REPORT`] (read back with [`report`]; see [`logs`] for why not stdout) (no `${` in the script: HCL would interpolate it).
fn sh_config(script: &str, extra_config: &str) -> String {
    format!(
        "        command = \"/bin/sh\"\n        args    = [\"-c\", {}]\n{extra_config}",
        serde_json::to_string(&format!("exec >{REPORT} 2>&1\n{script}\necho {END}"))
            .expect("json string")
    )
}

/// The alloc (from `allocs`) running group `g`.
fn by_group<'a>(allocs: &'a [Value], g: &str) -> &'a Value {
    allocs
        .iter()
        .find(|a| a["TaskGroup"] == g)
        .unwrap_or_else(|| panic!("no alloc for group {g}"))
}

fn assert_complete(agent: &DevAgent, alloc: &Value, task: &str) {
    assert_eq!(
        alloc["ClientStatus"],
        "complete",
        "task {task} did not complete: {:#?}\nagent log:\n{}",
        events(alloc, task),
        agent.log()
    );
}

/// The node advertises the driver, and the example job shows the isolation: `nobody`, its own
/// PID namespace, no effective capabilities, and a root holding only the chroot.
#[test]
fn example_job_shows_isolation_and_node_has_exec() {
    require_root!();
    let agent = DevAgent::start(bin(), "");

    let nodes = agent.get_json("/v1/nodes").expect("nodes");
    let node_id = nodes[0]["ID"].as_str().expect("node id").to_string();
    let node = agent
        .get_json(&format!("/v1/node/{node_id}"))
        .expect("node");
    assert_eq!(
        node["Attributes"]["driver.exec"], "1",
        "{:#?}",
        node["Attributes"]
    );
    let drv = &node["Drivers"]["exec"];
    assert_eq!(
        (drv["Detected"].as_bool(), drv["Healthy"].as_bool()),
        (Some(true), Some(true)),
        "{drv}"
    );
    let (code, out, err) = agent.cli(bin(), &["node", "status", "-self", "-verbose"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..]
                == ["exec", "true", "true", "Healthy"][..]
                || l.starts_with("exec ") && l.contains("true") && l.contains("Healthy")),
        "{out}"
    );

    run_job_file(&agent, &example("exec.nomad.hcl"));
    let all = wait_terminal(&agent, "exec-isolation", 1);
    assert_complete(&agent, &all[0], "show");
    let alloc = all[0]["ID"].as_str().expect("id").to_string();
    let out = logs(&agent, &alloc[..8], "show", "task_dir=");

    assert!(out.contains("uid=65534(nobody)"), "not nobody:\n{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("CapEff:") && l.ends_with("0000000000000000")),
        "effective capabilities not empty:\n{out}"
    );
    // /proc is the task's PID namespace's: NSpid has a single (small) value.
    let nspid = out
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .unwrap_or_else(|| panic!("no NSpid line:\n{out}"));
    let pids: Vec<u32> = nspid
        .split_whitespace()
        .skip(1)
        .filter_map(|p| p.parse().ok())
        .collect();
    assert!(
        pids.len() == 1 && pids[0] < 10,
        "not in a private PID namespace: {nspid}"
    );
    let root: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains(' ') && !l.contains('=') && !l.contains(':'))
        .collect();
    for d in ["alloc", "local", "secrets", "tmp", "bin", "etc", "usr"] {
        assert!(root.contains(&d), "/{d} missing from the chroot: {root:?}");
    }
    for d in [
        "home", "root", "var", "work", "boot", "opt", "srv", "mnt", "farm",
    ] {
        assert!(
            !root.contains(&d),
            "host /{d} leaked into the chroot: {root:?}"
        );
    }
    // The client saw FSIsolation "chroot" in the driver's capabilities: task dirs are
    // reported at their in-chroot paths.
    assert_eq!(kv(&out, "task_dir").as_deref(), Some("/local"), "{out}");
}

const FS_SCRIPT: &str = r#"
for m in @MARKERS@; do
  if test -e "$m"; then echo "marker=VISIBLE $m"; else echo "marker=invisible $m"; fi
done
echo "task_dir=$NOMAD_TASK_DIR"
echo "alloc_dir=$NOMAD_ALLOC_DIR"
echo "secrets_dir=$NOMAD_SECRETS_DIR"
for d in /alloc /alloc/data /alloc/logs /local /secrets /tmp; do
  if test -d "$d"; then echo "dir=$d"; fi
done
echo from-task > /alloc/data/shared.txt && echo "write=/alloc/data"
echo from-task > /local/out.txt && echo "write=/local"
echo from-task > /secrets/token && cat /secrets/token >/dev/null && echo "write=/secrets"
echo from-task > /tmp/scratch && echo "write=/tmp"
cp /bin/true /secrets/t 2>/dev/null && chmod 755 /secrets/t && /secrets/t 2>/dev/null && echo "secrets_exec=yes" || echo "secrets_exec=no"
touch /usr/should-fail 2>/dev/null && echo "usr=writable" || echo "usr=readonly"
echo "uid=$(id -u)"
"#;

/// Default `chroot_env`: host files outside it (a marker in /tmp, one under /work, the agent's
/// data dir) are invisible; the task dirs exist at /alloc /local /secrets /tmp and are writable
/// by `nobody`, with /secrets noexec; `pid_mode` private/host; `cap_drop = ["all"]`; `user`.
#[test]
fn default_chroot_hides_host_and_task_dirs_are_writable() {
    require_root!();
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().expect("tempdir");
    // A marker in a fresh dir under /tmp (not in the default chroot_env) and under /work.
    let tmp_marker_dir = tempfile::tempdir().expect("tmp marker dir");
    let tmp_marker = tmp_marker_dir.path().join("host-marker");
    std::fs::write(&tmp_marker, "host only").expect("marker");
    let work_marker_dir =
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("work marker dir");
    let work_marker = work_marker_dir.path().join("host-marker");
    std::fs::write(&work_marker, "host only").expect("marker");
    let markers = [
        tmp_marker.display().to_string(),
        work_marker.display().to_string(),
        agent.data_dir.display().to_string(),
    ];
    let script = FS_SCRIPT.replace(
        "@MARKERS@",
        &markers
            .iter()
            .map(|m| format!("'{m}'"))
            .collect::<Vec<_>>()
            .join(" "),
    );

    let pid_script = "echo \"pid=$$\"; if test -d /proc/@AGENT@; then echo agent=visible; else echo agent=hidden; fi; echo procs=$(ls /proc | grep -c '^[0-9]')"
        .replace("@AGENT@", &agent.pid().expect("agent pid").to_string());
    let job = batch_job(
        "exec-fs",
        &[
            group("fs", &sh_config(&script, ""), ""),
            group("pidpriv", &sh_config(&pid_script, ""), ""),
            group(
                "pidhost",
                &sh_config(&pid_script, "        pid_mode = \"host\"\n"),
                "",
            ),
            group(
                "capsnone",
                &sh_config(
                    "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status",
                    "        cap_drop = [\"all\"]\n",
                ),
                "",
            ),
            group(
                "user",
                &sh_config("echo \"uid=$(id -u) user=$USER home=$HOME\"", ""),
                "      user = \"daemon\"\n",
            ),
        ],
    );
    run_job(&agent, dir.path(), "exec-fs", &job);
    let all = wait_terminal(&agent, "exec-fs", 5);

    // Files and dirs.
    let fs = by_group(&all, "fs");
    assert_complete(&agent, fs, "fs");
    let fs_id = fs["ID"].as_str().expect("id");
    let out = report(&agent, fs_id, "fs");
    for m in &markers {
        assert!(
            out.contains(&format!("marker=invisible {m}")),
            "host path {m} is visible in the chroot:\n{out}"
        );
    }
    assert_eq!(kv(&out, "task_dir").as_deref(), Some("/local"), "{out}");
    assert_eq!(kv(&out, "alloc_dir").as_deref(), Some("/alloc"), "{out}");
    assert_eq!(
        kv(&out, "secrets_dir").as_deref(),
        Some("/secrets"),
        "{out}"
    );
    for d in [
        "/alloc",
        "/alloc/data",
        "/alloc/logs",
        "/local",
        "/secrets",
        "/tmp",
    ] {
        assert!(out.contains(&format!("dir={d}\n")), "{d} missing:\n{out}");
    }
    for d in ["/alloc/data", "/local", "/secrets", "/tmp"] {
        assert!(
            out.contains(&format!("write={d}\n")),
            "{d} not writable:\n{out}"
        );
    }
    assert_eq!(
        kv(&out, "secrets_exec").as_deref(),
        Some("no"),
        "/secrets must be noexec:\n{out}"
    );
    assert_eq!(kv(&out, "usr").as_deref(), Some("readonly"), "{out}");
    assert_eq!(kv(&out, "uid").as_deref(), Some("65534"), "{out}");
    // What the task wrote is on the host, in the alloc dir.
    for (path, want) in [
        ("alloc/data/shared.txt", "from-task\n"),
        ("fs/local/out.txt", "from-task\n"),
    ] {
        let (code, got, err) = agent.cli(bin(), &["alloc", "fs", fs_id, path]);
        assert_eq!((code, got.as_str()), (0, want), "alloc fs {path}: {err}");
    }

    // PID namespaces: private is PID 1 and sees none of the host's processes; host sees them.
    let out = report(
        &agent,
        by_group(&all, "pidpriv")["ID"].as_str().expect("id"),
        "pidpriv",
    );
    assert_eq!(kv(&out, "pid").as_deref(), Some("1"), "{out}");
    assert_eq!(kv(&out, "agent").as_deref(), Some("hidden"), "{out}");
    let procs: usize = kv(&out, "procs")
        .and_then(|p| p.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        procs < 5,
        "private PID namespace shows {procs} processes:\n{out}"
    );
    let out = report(
        &agent,
        by_group(&all, "pidhost")["ID"].as_str().expect("id"),
        "pidhost",
    );
    assert_ne!(kv(&out, "pid").as_deref(), Some("1"), "{out}");
    assert_eq!(
        kv(&out, "agent").as_deref(),
        Some("visible"),
        "pid_mode = host:\n{out}"
    );

    // cap_drop = ["all"].
    let caps = by_group(&all, "capsnone");
    assert_complete(&agent, caps, "capsnone");
    let out = report(&agent, caps["ID"].as_str().expect("id"), "capsnone");
    for c in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{c}:")) && l.ends_with("0000000000000000")),
            "{c} not empty with cap_drop = [\"all\"]:\n{out}"
        );
    }

    // task.user reaches the driver.
    let user = by_group(&all, "user");
    assert_complete(&agent, user, "user");
    let out = report(&agent, user["ID"].as_str().expect("id"), "user");
    assert!(out.contains("uid=1 user=daemon home=/usr/sbin"), "{out}");
}

/// A custom `client { chroot_env }` replaces the default: the root holds only its entries (a
/// host dir mapped at /data is readable there), and the plugin's `default_pid_mode = "host"`
/// applies unless the task asks for `pid_mode = "private"`.
#[test]
fn custom_chroot_env_and_plugin_defaults() {
    require_root!();
    let shared = tempfile::tempdir().expect("shared dir");
    std::fs::write(shared.path().join("marker"), "mapped-in\n").expect("marker");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Nomad documents the block form `chroot_env { "/bin" = "/bin" }`, which the agent's HCL
    // parser rejects today (quoted keys in a block body); the attribute form is equivalent.
    let extra = format!(
        r#"
client {{
  chroot_env = {{
    "/bin"   = "/bin"
    "/lib"   = "/lib"
    "/lib64" = "/lib64"
    "/usr"   = "/usr"
    "{}"     = "/data"
  }}
}}
plugin "exec" {{
  config {{
    default_pid_mode = "host"
  }}
}}
"#,
        shared.path().display()
    );
    let agent = DevAgent::start(bin(), &extra);
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "echo \"pid=$$\"; cat /data/marker; test -e /etc/passwd && echo etc=present || echo etc=absent; ls / | tr '\\n' ' ' | sed 's/^/root=/'; echo";
    let job = batch_job(
        "exec-custom",
        &[
            group("dflt", &sh_config(script, ""), ""),
            group(
                "priv",
                &sh_config(script, "        pid_mode = \"private\"\n"),
                "",
            ),
        ],
    );
    run_job(&agent, dir.path(), "exec-custom", &job);
    let all = wait_terminal(&agent, "exec-custom", 2);
    for g in ["dflt", "priv"] {
        let a = by_group(&all, g);
        assert_complete(&agent, a, g);
        let out = report(&agent, a["ID"].as_str().expect("id"), g);
        assert!(out.contains("mapped-in\n"), "{g}: /data not mapped:\n{out}");
        assert_eq!(
            kv(&out, "etc").as_deref(),
            Some("absent"),
            "{g}: /etc is not in this chroot_env:\n{out}"
        );
        let mut root: Vec<String> = kv(&out, "root")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        root.sort();
        let mut want: Vec<String> = [
            "alloc", "bin", "data", "dev", "lib", "lib64", "local", "proc", "secrets", "tmp", "usr",
        ]
        .map(str::to_string)
        .to_vec();
        want.sort();
        assert_eq!(root, want, "{g}: chroot root:\n{out}");
        let pid = kv(&out, "pid");
        if g == "priv" {
            assert_eq!(pid.as_deref(), Some("1"), "{out}");
        } else {
            assert_ne!(
                pid.as_deref(),
                Some("1"),
                "default_pid_mode = host ignored:\n{out}"
            );
        }
    }
}

/// A task over its memory limit is OOM-killed, and the Terminated event says so.
#[test]
fn memory_limit_oom_kills_and_is_reported() {
    require_root!();
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().expect("tempdir");
    // `tail` of an endless stream without newlines buffers everything it reads.
    let job = batch_job(
        "exec-oom",
        &[group(
            "hog",
            &sh_config("echo starting; exec tail /dev/zero", ""),
            "",
        )],
    );
    run_job(&agent, dir.path(), "exec-oom", &job);
    let all = wait_terminal(&agent, "exec-oom", 1);
    let a = &all[0];
    assert_eq!(a["ClientStatus"], "failed", "{:#?}", events(a, "hog"));
    let evs = events(a, "hog");
    let term = evs
        .iter()
        .find(|e| e.0 == "Terminated")
        .unwrap_or_else(|| panic!("no Terminated event: {evs:#?}"));
    assert_eq!(term.2["oom_killed"], "true", "OOM not reported: {evs:#?}");
    assert_eq!(term.2["signal"], "9", "{evs:#?}");
    assert_eq!(term.1, "Exit Code: 137, Signal: 9", "{evs:#?}");
    let (code, out, err) = agent.cli(
        bin(),
        &["alloc", "status", &a["ID"].as_str().expect("id")[..8]],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Terminated") && out.contains("Exit Code: 137"),
        "{out}"
    );
}

const OPS_SCRIPT: &str = "trap 'echo got-usr1 >> $NOMAD_TASK_DIR/signals' USR1; trap 'exit 0' INT TERM; echo started @TOKEN@; while true; do sleep 0.2; done";

/// Host processes whose command line contains `token`.
fn host_procs_with(token: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(token) {
                found.push(pid);
            }
        }
    }
    found
}

/// `nomad alloc signal`, `alloc restart` and `alloc stop` on an exec task (PID 1 in its
/// namespace, so only handled signals are delivered).
#[test]
fn signal_restart_stop() {
    require_root!();
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().expect("tempdir");
    let token = format!(
        "exec-ops-{}-{}",
        std::process::id(),
        nomad_testkit::free_port()
    );
    // Stdout stays stdout here: a running task's output is read with `alloc logs`.
    let config = format!(
        "        command = \"/bin/sh\"\n        args    = [\"-c\", {}]\n",
        serde_json::to_string(&OPS_SCRIPT.replace("@TOKEN@", &token)).expect("json string")
    );
    let job = format!(
        r#"
job "exec-ops" {{
  datacenters = ["*"]
  type        = "service"
  group "ops" {{
    task "ops" {{
      driver       = "exec"
      kill_timeout = "3s"
      config {{
{config}
      }}
      resources {{
        cpu    = 50
        memory = 32
      }}
    }}
  }}
}}
"#
    );
    run_job(&agent, dir.path(), "exec-ops", &job);
    let alloc = running_alloc(&agent, "exec-ops", "ops", None);
    let short = &alloc[..8];
    logs(&agent, short, "ops", "started");
    assert_eq!(
        host_procs_with(&token).len(),
        1,
        "the task's shell runs on the host pid table"
    );

    // Signal reaches the trap of the namespace's PID 1.
    let (code, out, err) = agent.cli(bin(), &["alloc", "signal", "-s", "SIGUSR1", short, "ops"]);
    assert_eq!(code, 0, "{out}\n{err}\nagent:\n{}", agent.log());
    let mut cat = String::new();
    assert!(
        wait_for(Duration::from_secs(15), || {
            let (c, out, _) = agent.cli(bin(), &["alloc", "fs", short, "ops/local/signals"]);
            cat = out;
            c == 0 && cat.contains("got-usr1")
        }),
        "trap never ran: {cat}\nagent:\n{}",
        agent.log()
    );

    // Restart: the task is started again in place.
    let (code, out, err) = agent.cli(bin(), &["alloc", "restart", short]);
    assert_eq!(code, 0, "{out}\n{err}\nagent:\n{}", agent.log());
    let mut status = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            let (_, out, _) = agent.cli(bin(), &["alloc", "status", short]);
            status = out;
            status.contains("Restart Signaled") && status.matches("Started").count() >= 2
        }),
        "{status}\nagent:\n{}",
        agent.log()
    );
    assert!(
        wait_for(Duration::from_secs(10), || host_procs_with(&token).len()
            == 1),
        "after restart: {:?}",
        host_procs_with(&token)
    );

    // Stop: the alloc ends and no process of the task is left on the host.
    let (code, out, err) = agent.cli(bin(), &["alloc", "stop", short]);
    assert_eq!(code, 0, "{out}\n{err}\nagent:\n{}", agent.log());
    assert!(
        wait_for(Duration::from_secs(20), || {
            agent
                .get_json(&format!("/v1/allocation/{alloc}"))
                .is_ok_and(|v| v["DesiredStatus"] == "stop" && v["ClientStatus"] == "complete")
        }),
        "alloc not stopped: {:?}\nagent:\n{}",
        agent
            .get_json(&format!("/v1/allocation/{alloc}"))
            .map(|v| v["ClientStatus"].clone()),
        agent.log()
    );
    // `alloc stop` reschedules a service alloc: the replacement runs a new task.
    let replacement = running_alloc(&agent, "exec-ops", "ops", Some(&alloc));
    assert_ne!(replacement, alloc);
    let (code, out, err) = agent.cli(bin(), &["job", "stop", "exec-ops"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        wait_for(Duration::from_secs(20), || host_procs_with(&token)
            .is_empty()),
        "task processes left after stop: {:?}",
        host_procs_with(&token)
    );
}

/// Bad input is refused with an event naming the field and the value.
#[test]
fn bad_input_names_field_and_value() {
    require_root!();
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str, &str, &[&str]); 6] = [
        (
            "nocmd",
            "        command = \"no-such-binary-xyz\"\n",
            "Driver Failure",
            &["\"command\"", "\"no-such-binary-xyz\"", "not found"],
        ),
        (
            "hostcmd",
            // Exists on the host, not in the chroot.
            "        command = \"@HOSTBIN@\"\n",
            "Driver Failure",
            &["\"command\"", "@HOSTBIN@", "not found"],
        ),
        (
            "workdir",
            "        command  = \"/bin/true\"\n        work_dir = \"/../etc\"\n",
            "Failed Validation",
            &["\"work_dir\"", "\"/../etc\""],
        ),
        (
            "workdirhost",
            // A host dir that is not part of the chroot.
            "        command  = \"/bin/true\"\n        work_dir = \"/work\"\n",
            "Driver Failure",
            &["work_dir", "\"/work\""],
        ),
        (
            "cap",
            "        command = \"/bin/true\"\n        cap_add = [\"CAP_FLY\"]\n",
            "Failed Validation",
            &["\"cap_add\"", "\"CAP_FLY\""],
        ),
        (
            "pidmode",
            "        command  = \"/bin/true\"\n        pid_mode = \"privte\"\n",
            "Failed Validation",
            &["\"pid_mode\"", "\"privte\""],
        ),
    ];
    let host_bin = bin().display().to_string();
    let groups: Vec<String> = cases
        .iter()
        .map(|(name, cfg, _, _)| group(name, &cfg.replace("@HOSTBIN@", &host_bin), ""))
        .collect();
    run_job(
        &agent,
        dir.path(),
        "exec-bad",
        &batch_job("exec-bad", &groups),
    );
    let all = wait_terminal(&agent, "exec-bad", cases.len());
    for (name, _, ev_type, needles) in cases {
        let a = by_group(&all, name);
        assert_eq!(
            a["ClientStatus"],
            "failed",
            "{name}: {:#?}",
            events(a, name)
        );
        let evs = events(a, name);
        let ev = evs
            .iter()
            .find(|e| e.0 == ev_type)
            .unwrap_or_else(|| panic!("{name}: no {ev_type} event: {evs:#?}"));
        for n in needles {
            let n = n.replace("@HOSTBIN@", &host_bin);
            assert!(
                ev.1.contains(&n),
                "{name}: {ev_type} event does not name {n}: {:?}",
                ev.1
            );
        }
        // The task never ran, and it is not retried.
        assert!(evs.iter().all(|e| e.0 != "Started"), "{name}: {evs:#?}");
        assert!(
            evs.iter().any(|e| e.0 == "Not Restarting"),
            "{name}: {evs:#?}"
        );
    }
    // The same message is what a user sees in `nomad alloc status`.
    let pm = by_group(&all, "pidmode")["ID"]
        .as_str()
        .expect("id")
        .to_string();
    let (code, out, err) = agent.cli(bin(), &["alloc", "status", &pm[..8]]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Failed Validation") && out.contains("privte"),
        "{out}"
    );
}
