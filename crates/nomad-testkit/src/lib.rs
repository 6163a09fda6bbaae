//! Test helpers: free loopback ports, waiting for conditions, and a real `nomad agent -dev`
//! process driven over HTTP.
//!
//! Only a dev-dependency: nothing in the product links it.
#![forbid(unsafe_code)]

pub mod cluster;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Skips the current test (with a loud message) when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!(
                "SKIP {}: this test needs root (run the suite as root to exercise it)",
                module_path!()
            );
            return;
        }
    };
}

/// Whether the effective user is root (read from /proc, no libc).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Where [`free_port`] hands out ports: below the kernel's ephemeral range (32768 and up on
/// Linux) and below the agents' dynamic task ports (20000 and up).
const TEST_PORTS: std::ops::Range<u16> = 10000..20000;

/// A TCP port on 127.0.0.1 that was free a moment ago and that no other caller in this process
/// has been given. Not an ephemeral port (`bind(0)`): the outgoing connections of the agents
/// under test take those too, and one did take an agent's HTTP port between the probe and the
/// agent's bind (`Address already in use` in CI).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    // Each test process starts somewhere else in the range, so two at once rarely meet.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = TEST_PORTS.start + n as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

/// The value of a `Key = value` line of CLI output (`nomad acl token create`, `... info`),
/// trimmed; empty when no line starts with `key`.
pub fn cli_field(out: &str, key: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once('='))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds; panics naming `what` after `timeout`.
pub fn assert_eventually(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    assert!(
        wait_for(timeout, cond),
        "timed out after {timeout:?} waiting for {what}"
    );
}

/// A `nomad agent -dev` child process on free loopback ports, stopped (SIGINT) on drop.
#[derive(Debug)]
pub struct DevAgent {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The agent's data dir (a temp dir removed on drop).
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    /// Where the agent's stdout and stderr go.
    pub log_path: PathBuf,
}

impl DevAgent {
    /// Starts `bin agent -dev` with `extra_config` (HCL) appended to the generated config and
    /// waits until the API answers and the node is ready.
    pub fn start(bin: &Path, extra_config: &str) -> DevAgent {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let http = free_port();
        let cfg = format!(
            "data_dir = \"{}\"\nports {{\n  http = {http}\n  rpc = {}\n  serf = {}\n}}\n{extra_config}\n",
            data_dir.display(),
            free_port(),
            free_port()
        );
        let cfg_path = dir.path().join("agent.hcl");
        std::fs::write(&cfg_path, cfg).expect("write agent config");
        let log_path = dir.path().join("agent.log");
        let log = std::fs::File::create(&log_path).expect("agent log");
        let child = Command::new(bin)
            .args(["agent", "-dev", "-config"])
            .arg(&cfg_path)
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn nomad agent");
        let address = format!("http://127.0.0.1:{http}");
        let agent = DevAgent {
            child: Some(child),
            address,
            data_dir,
            _dir: Some(dir),
            log_path,
        };
        let ready = wait_for(Duration::from_secs(30), || {
            agent
                .get_json("/v1/nodes")
                .ok()
                .and_then(|v| {
                    v.as_array()
                        .map(|a| a.iter().any(|n| n["Status"] == "ready"))
                })
                .unwrap_or(false)
        });
        assert!(ready, "agent did not become ready; log:\n{}", agent.log());
        agent
    }

    /// Like [`DevAgent::start`] for agents the default readiness probe (plain-HTTP
    /// `GET /v1/nodes` without a token) cannot reach: with `https` the address is
    /// `https://127.0.0.1:<port>` (for `tls { http = true }`), and `ready` (polled for 30 s)
    /// decides when the agent is up (e.g. run the CLI with TLS flags, or `GET /v1/agent/health`
    /// when ACLs are on).
    pub fn start_with(
        bin: &Path,
        extra_config: &str,
        https: bool,
        mut ready: impl FnMut(&DevAgent) -> bool,
    ) -> DevAgent {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let http = free_port();
        let cfg = format!(
            "data_dir = \"{}\"\nports {{\n  http = {http}\n  rpc = {}\n  serf = {}\n}}\n{extra_config}\n",
            data_dir.display(),
            free_port(),
            free_port()
        );
        let cfg_path = dir.path().join("agent.hcl");
        std::fs::write(&cfg_path, cfg).expect("write agent config");
        let log_path = dir.path().join("agent.log");
        let log = std::fs::File::create(&log_path).expect("agent log");
        let child = Command::new(bin)
            .args(["agent", "-dev", "-config"])
            .arg(&cfg_path)
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn nomad agent");
        let scheme = if https { "https" } else { "http" };
        let address = format!("{scheme}://127.0.0.1:{http}");
        let agent = DevAgent {
            child: Some(child),
            address,
            data_dir,
            _dir: Some(dir),
            log_path,
        };
        let up = wait_for(Duration::from_secs(30), || ready(&agent));
        assert!(up, "agent did not become ready; log:\n{}", agent.log());
        agent
    }

    /// Starts a non-dev agent (`nomad agent -config <dir>/agent.hcl`) whose configuration and
    /// data live in `dir`, which the caller keeps, so the same agent can be killed and started
    /// again on the same state. `config` is the whole agent configuration; `http_port` must be
    /// the one it sets. Does not wait for readiness: see [`DevAgent::wait_until`].
    pub fn start_in(bin: &Path, dir: &Path, config: &str, http_port: u16) -> DevAgent {
        std::fs::create_dir_all(dir).expect("agent dir");
        let cfg_path = dir.join("agent.hcl");
        std::fs::write(&cfg_path, config).expect("write agent config");
        let log_path = dir.join("agent.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("agent log");
        let child = Command::new(bin)
            .args(["agent", "-config"])
            .arg(&cfg_path)
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn nomad agent");
        DevAgent {
            child: Some(child),
            address: format!("http://127.0.0.1:{http_port}"),
            data_dir: dir.join("data"),
            _dir: None,
            log_path,
        }
    }

    /// Waits (up to `timeout`) until `cond` holds for this agent; panics with its log otherwise.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&DevAgent) -> bool,
    ) {
        let ok = wait_for(timeout, || cond(self));
        assert!(
            ok,
            "timed out waiting for {what}; agent log:\n{}",
            self.log()
        );
    }

    /// Kills the agent with SIGKILL (no shutdown of any kind), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The agent process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The agent's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET a path and decode JSON.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.address);
        let mut resp = ureq::get(&url).call().map_err(|e| e.to_string())?;
        resp.body_mut()
            .read_json::<serde_json::Value>()
            .map_err(|e| e.to_string())
    }

    /// PUT a JSON body; returns the status and the body as text whatever the status (0 and
    /// the error when the request could not be sent).
    pub fn put_json(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        let url = format!("{}{path}", self.address);
        let req = ureq::put(&url).config().http_status_as_error(false).build();
        match req.send_json(body) {
            Ok(mut resp) => (
                resp.status().as_u16(),
                resp.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Runs the CLI against this agent (NOMAD_ADDR set), returning (exit code, stdout, stderr).
    pub fn cli(&self, bin: &Path, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(bin)
            .args(args)
            .env("NOMAD_ADDR", &self.address)
            .stdin(Stdio::null())
            .output()
            .expect("run nomad cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// As [`DevAgent::cli`] for a command that follows something until it ends (a drain
    /// monitor): killed, and the test failed, if it runs longer than `timeout`.
    pub fn cli_within(
        &self,
        bin: &Path,
        args: &[&str],
        timeout: Duration,
    ) -> (i32, String, String) {
        let mut child = Command::new(bin)
            .args(args)
            .env("NOMAD_ADDR", &self.address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nomad cli");
        let read = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_string(&mut s);
                }
                s
            })
        };
        let out = read(child.stdout.take().map(|o| Box::new(o) as _));
        let err = read(child.stderr.take().map(|e| Box::new(e) as _));
        let exited = wait_for(timeout, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = child.kill();
        }
        let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
        let (out, err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        assert!(
            exited,
            "nomad {args:?} still running after {timeout:?}\n{out}\n{err}"
        );
        (code, out, err)
    }

    /// Stops the agent with SIGINT and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        self.stop();
        unmount_below(&self.data_dir);
    }
}

/// Lazily unmounts every mount below `dir` (a non-dev client keeps its tasks' secrets tmpfs
/// mounted until the alloc is garbage-collected; a test must not leave them on the host).
pub fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    // Deepest first.
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
        let ports: std::collections::BTreeSet<u16> = (0..50).map(|_| super::free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|p| super::TEST_PORTS.contains(p)));
    }
}
