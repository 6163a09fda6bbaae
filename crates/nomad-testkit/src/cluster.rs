//! Agent configurations for multi-process cluster tests and benchmarks: servers on Raft
//! joined over their RPC ports, clients pointed at them, everything bound to loopback with
//! free ports.

use std::path::Path;

use crate::{free_port, DevAgent};

/// One agent's loopback ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// HTTP API.
    pub http: u16,
    /// Nomad RPC (and Raft, multiplexed by first byte).
    pub rpc: u16,
    /// Serf (gossip) port.
    pub serf: u16,
}

impl Ports {
    /// Three fresh free ports.
    pub fn free() -> Ports {
        Ports {
            http: free_port(),
            rpc: free_port(),
            serf: free_port(),
        }
    }

    /// `127.0.0.1:<rpc>`, as `/v1/status/leader` names a server.
    pub fn rpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.rpc)
    }

    fn block(&self) -> String {
        format!(
            "ports {{\n  http = {}\n  rpc = {}\n  serf = {}\n}}\n",
            self.http, self.rpc, self.serf
        )
    }
}

fn quoted_rpc_addrs(all: &[Ports]) -> String {
    all.iter()
        .map(|p| format!("\"{}\"", p.rpc_addr()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A server agent's config: `data_dir` is `<dir>/data`, `bootstrap_expect` is the number of
/// servers in `all` (which may include `p` itself), joined through their RPC addresses.
/// `extra_server` is appended inside the `server` block (heartbeat tuning, for example).
pub fn server_config(
    dir: &Path,
    name: &str,
    p: Ports,
    all: &[Ports],
    extra_server: &str,
) -> String {
    let join = if all.len() > 1 {
        format!(
            "  server_join {{\n    retry_join = [{}]\n  }}\n",
            quoted_rpc_addrs(all)
        )
    } else {
        String::new()
    };
    format!(
        "data_dir = \"{}\"\nbind_addr = \"127.0.0.1\"\nname = \"{name}\"\n{}server {{\n  enabled = true\n  bootstrap_expect = {}\n{join}{extra_server}}}\n",
        dir.join("data").display(),
        p.block(),
        all.len().max(1),
    )
}

/// A client agent's config with raw_exec enabled, pointed at `servers`' RPC addresses.
pub fn client_config(dir: &Path, name: &str, p: Ports, servers: &[Ports]) -> String {
    format!(
        "data_dir = \"{}\"\nbind_addr = \"127.0.0.1\"\nname = \"{name}\"\n{}client {{\n  enabled = true\n  servers = [{}]\n}}\nplugin \"raw_exec\" {{\n  config {{\n    enabled = true\n  }}\n}}\n",
        dir.join("data").display(),
        p.block(),
        quoted_rpc_addrs(servers),
    )
}

/// The leader's RPC address as `a` sees it, or "" when it knows none.
pub fn leader(a: &DevAgent) -> String {
    a.get_json("/v1/status/leader")
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// How many Raft peers `a` reports (`/v1/status/peers`), 0 when it does not answer.
pub fn peer_count(a: &DevAgent) -> usize {
    a.get_json("/v1/status/peers")
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Whether `a` knows a leader and reports `n` peers.
pub fn has_leader_and_peers(a: &DevAgent, n: usize) -> bool {
    !leader(a).is_empty() && peer_count(a) == n
}

/// The IDs and names of the nodes `a` lists as ready.
pub fn ready_nodes(a: &DevAgent) -> Vec<(String, String)> {
    a.get_json("/v1/nodes?stale")
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|n| n["Status"] == "ready")
        .map(|n| {
            (
                n["ID"].as_str().unwrap_or_default().to_string(),
                n["Name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The ID of the first running allocation in `allocs_json` (an `/v1/job/<id>/allocations`
/// answer as text), if it has one.
pub fn first_running_alloc(allocs_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(allocs_json).ok()?;
    v.as_array()?
        .iter()
        .find(|a| a["ClientStatus"] == "running")?["ID"]
        .as_str()
        .map(str::to_string)
}

/// The job's allocations whose client status is `status`, as `a` sees them (stale read).
pub fn allocs_with_status(a: &DevAgent, job: &str, status: &str) -> Vec<serde_json::Value> {
    a.get_json(&format!("/v1/job/{job}/allocations?stale"))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|al| al["ClientStatus"] == status)
        .collect()
}

/// Writes a jobspec `<root>/<id>.nomad.hcl` with one raw_exec task running `command args...`
/// (`kind` is the job type: "batch" or "service") and returns its path.
pub fn raw_exec_job(
    root: &Path,
    id: &str,
    kind: &str,
    command: &str,
    args: &[&str],
) -> std::path::PathBuf {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let p = root.join(format!("{id}.nomad.hcl"));
    std::fs::write(
        &p,
        format!(
            "job \"{id}\" {{\n  type = \"{kind}\"\n  group \"g\" {{\n    task \"t\" {{\n      driver = \"raw_exec\"\n      config {{\n        command = {command:?}\n        args = [{}]\n      }}\n      resources {{\n        cpu = 20\n        memory = 16\n      }}\n    }}\n  }}\n}}\n",
            args.join(", ")
        ),
    )
    .expect("write jobspec");
    p
}

/// How many processes on this machine carry `NOMAD_ALLOC_ID=<alloc_id>` in their environment:
/// the allocation's tasks and anything they forked.
pub fn alloc_processes(alloc_id: &str) -> usize {
    let needle = format!("NOMAD_ALLOC_ID={alloc_id}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .count()
}
