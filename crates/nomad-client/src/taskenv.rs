//! The task's runtime environment (`NOMAD_*` variables, host passthrough, the task `env`
//! block) and client-side interpolation (facts §1).
//!
//! Two interpolation engines are implemented:
//! - [`replace_env`]: Nomad's simple `${name}` replacer (task env values, meta, host env values);
//!   unknown names stay verbatim.
//! - [`try_interpolate_config`]: the driver `config` block. Nomad evaluates it as HCL2 and fails
//!   on unknown variables; we resolve `${NAME}`, `${a.b.c}` (env keys with dots), `${env["NAME"]}`,
//!   `${env.NAME}`, `${attr.x}`, `${meta.x}`, `${node.*}` (incl. `node.attr.x`/`node.meta.x`),
//!   fail like HCL on an unknown variable or attribute, and leave expressions we cannot evaluate
//!   (arithmetic, functions) verbatim. Hyphenated names (`${attr.unique.network.ip-address}`),
//!   which HCL would parse as a subtraction, are resolved when they name a value and otherwise
//!   left verbatim. [`interpolate_config`] is the lenient form (unknown names stay verbatim).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nomad_drivers::FsIsolation;
use nomad_structs::{Allocation, Node, Task};

/// Nomad's default `env.denylist` (`command/agent/host/host.go` `DefaultEnvDenyList`).
pub const DEFAULT_ENV_DENYLIST: &[&str] = &[
    "CONSUL_TOKEN",
    "CONSUL_HTTP_TOKEN",
    "CONSUL_HTTP_TOKEN_FILE",
    "NOMAD_TOKEN",
    "VAULT_TOKEN",
    "CONSUL_LICENSE",
    "NOMAD_LICENSE",
    "VAULT_LICENSE",
    "CONSUL_LICENSE_PATH",
    "NOMAD_LICENSE_PATH",
    "VAULT_LICENSE_PATH",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_METADATA_URL",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
];

/// Key prefixes whose keys are cleaned with [`clean_env_var`] (facts §1.3, "#2405").
const CLEANED_PREFIXES: &[&str] = &[
    "NOMAD_ADDR_",
    "NOMAD_IP_",
    "NOMAD_PORT_",
    "NOMAD_HOST_PORT_",
    "NOMAD_META_",
];

/// Everything the environment is built from.
#[derive(Debug, Clone)]
pub struct EnvInputs<'a> {
    /// The allocation (with its job).
    pub alloc: &'a Allocation,
    /// The task.
    pub task: &'a Task,
    /// The node this client registered.
    pub node: &'a Node,
    /// The agent's region.
    pub region: &'a str,
    /// `<alloc_dir>/<alloc_id>` on the host.
    pub alloc_root: &'a Path,
    /// The driver's FS isolation (decides the dir variables and host env passthrough).
    pub fs_isolation: FsIsolation,
    /// The agent's environment (usually `std::env::vars()`).
    pub host_env: &'a BTreeMap<String, String>,
    /// `env.denylist`; `None` = [`DEFAULT_ENV_DENYLIST`].
    pub denylist: Option<&'a [String]>,
}

/// Nomad's `CleanEnvVar(s, '_')`: bytes other than `_`, `.`, ASCII letters and (past index 0)
/// digits become `_`, byte-wise.
pub fn clean_env_var(s: &str, r: u8) -> String {
    let mut out = Vec::with_capacity(s.len());
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let ok = b == b'_' || b == b'.' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit());
        out.push(if ok { b } else { r });
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Formats core ids as an id-set string with ranges (`0,5-7`).
pub fn format_cores(cores: &[u32]) -> String {
    let mut c = cores.to_vec();
    c.sort_unstable();
    c.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let start = c[i];
        let mut end = start;
        while i + 1 < c.len() && c[i + 1] == end + 1 {
            i += 1;
            end = c[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Node values for interpolation: `node.unique.id`, `node.unique.name`, `node.class`,
/// `node.datacenter`, `node.pool`, `node.region`, `attr.<k>`, `meta.<k>`.
pub fn node_values(node: &Node, region: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("node.unique.id".to_string(), node.id.clone());
    m.insert("node.unique.name".to_string(), node.name.clone());
    m.insert("node.class".to_string(), node.node_class.clone());
    m.insert("node.datacenter".to_string(), node.datacenter.clone());
    m.insert("node.pool".to_string(), node.node_pool.clone());
    m.insert("node.region".to_string(), region.to_string());
    for (k, v) in &node.attributes {
        m.insert(format!("attr.{k}"), v.clone());
    }
    for (k, v) in node.meta.iter().flatten() {
        m.insert(format!("meta.{k}"), v.clone());
    }
    m
}

fn simple_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Nomad's `args.ReplaceEnv`: replaces `${name}` (name of letters, digits, `_`, `-`, `.`) with
/// the first hit among `maps`; unknown names stay verbatim.
pub fn replace_env(s: &str, maps: &[&BTreeMap<String, String>]) -> String {
    replace_refs(s, |inner| {
        if inner.is_empty() || !inner.chars().all(simple_name_char) {
            return None;
        }
        maps.iter().find_map(|m| m.get(inner).cloned())
    })
}

/// Replaces each `${...}` (no nesting) whose inside `lookup` resolves; others stay verbatim.
fn replace_refs(s: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    match try_replace_refs::<std::convert::Infallible>(s, |i| Ok(lookup(i))) {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// [`replace_refs`] with a lookup that may fail.
fn try_replace_refs<E>(
    s: &str,
    lookup: impl Fn(&str) -> Result<Option<String>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let inner = &after[..end];
                match lookup(inner)? {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("${");
                        out.push_str(inner);
                        out.push('}');
                    }
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a driver `config` block could not be interpolated: HCL2's diagnostics (summary; detail),
/// without source positions. The task runner reports them as `failed to parse config: …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigInterpolationError {
    /// `${foo}` where nothing named `foo` exists.
    #[error("Unknown variable; There is no variable named {0:?}.")]
    UnknownVariable(String),
    /// `${attr.nope}`: the object exists, the attribute does not.
    #[error("Unsupported attribute; This object does not have an attribute named {0:?}.")]
    UnsupportedAttribute(String),
    /// `${env["NOPE"]}`.
    #[error("Invalid index; The given key does not identify an element in this collection value.")]
    InvalidIndex(String),
}

/// Strict resolution of one reference: `Ok(None)` = an expression we leave verbatim.
fn strict_config_lookup(
    inner: &str,
    env: &BTreeMap<String, String>,
    node: &BTreeMap<String, String>,
) -> Result<Option<String>, ConfigInterpolationError> {
    let t = inner.trim();
    if let Some(rest) = t.strip_prefix("env[") {
        let Some(key) = rest.strip_suffix(']').map(str::trim).and_then(|r| {
            r.strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .or_else(|| r.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        }) else {
            return Ok(None);
        };
        return env
            .get(key)
            .cloned()
            .map(Some)
            .ok_or_else(|| ConfigInterpolationError::InvalidIndex(key.to_string()));
    }
    if t.is_empty() || !t.chars().all(simple_name_char) {
        return Ok(None);
    }
    if let Some(v) = config_lookup(t, env, node) {
        return Ok(Some(v));
    }
    let segs: Vec<&str> = t.split('.').collect();
    if t.contains('-')
        || segs
            .iter()
            .any(|s| s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()))
    {
        return Ok(None);
    }
    if segs[0] == "env" {
        // `env` is a flat map of every variable.
        if segs.len() == 1 {
            return Ok(None);
        }
        let key = segs[1..].join(".");
        return match env.get(&key) {
            Some(v) => Ok(Some(v.clone())),
            None => Err(ConfigInterpolationError::UnsupportedAttribute(key)),
        };
    }
    // `node.attr.x` / `node.meta.x` are copies of `attr.x` / `meta.x`.
    let canon = |p: &str| -> String {
        for (alias, real) in [("node.attr", "attr"), ("node.meta", "meta")] {
            if p == alias {
                return real.to_string();
            }
            if let Some(r) = p.strip_prefix(alias).and_then(|r| r.strip_prefix('.')) {
                return format!("{real}.{r}");
            }
        }
        p.to_string()
    };
    let has_key = |p: &str| {
        let c = canon(p);
        env.contains_key(&c) || node.contains_key(&c)
    };
    let is_obj = |p: &str| {
        let c = format!("{}.", canon(p));
        env.keys().chain(node.keys()).any(|k| k.starts_with(&c))
            || (p == "node" && !node.is_empty())
            || (p == "node.attr" || p == "node.meta")
    };
    if !has_key(segs[0]) && !is_obj(segs[0]) {
        return Err(ConfigInterpolationError::UnknownVariable(
            segs[0].to_string(),
        ));
    }
    for k in 1..segs.len() {
        let path = segs[..=k].join(".");
        if !has_key(&path) && !is_obj(&path) {
            return Err(ConfigInterpolationError::UnsupportedAttribute(
                segs[k].to_string(),
            ));
        }
    }
    // The path names an object (not a string): leave it for HCL-aware consumers.
    Ok(None)
}

/// Interpolates every string (and object key) of the driver `config` block, failing like
/// HCL2 on unknown variables and attributes (see the module docs for what is evaluated).
pub fn try_interpolate_config(
    v: &serde_json::Value,
    env: &BTreeMap<String, String>,
    node: &BTreeMap<String, String>,
) -> Result<serde_json::Value, ConfigInterpolationError> {
    use serde_json::Value;
    let sub = |s: &str| try_replace_refs(s, |i| strict_config_lookup(i, env, node));
    Ok(match v {
        Value::String(s) => Value::String(sub(s)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| try_interpolate_config(x, env, node))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut m = serde_json::Map::new();
            for (k, x) in o {
                m.insert(sub(k)?, try_interpolate_config(x, env, node)?);
            }
            Value::Object(m)
        }
        other => other.clone(),
    })
}

/// Resolves one driver-config reference (the text inside `${...}`).
fn config_lookup(
    inner: &str,
    env: &BTreeMap<String, String>,
    node: &BTreeMap<String, String>,
) -> Option<String> {
    let t = inner.trim();
    // env["X"] / env['X']
    if let Some(rest) = t.strip_prefix("env[") {
        let rest = rest.strip_suffix(']')?.trim();
        let key = rest
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))?;
        return env.get(key).cloned();
    }
    if let Some(rest) = t.strip_prefix("node.attr.") {
        return node.get(&format!("attr.{rest}")).cloned();
    }
    if let Some(rest) = t.strip_prefix("node.meta.") {
        return node.get(&format!("meta.{rest}")).cloned();
    }
    if !t.chars().all(simple_name_char) {
        return None;
    }
    env.get(t).or_else(|| node.get(t)).cloned()
}

/// Interpolates every string (and object key) of the driver `config` block.
pub fn interpolate_config(
    v: &serde_json::Value,
    env: &BTreeMap<String, String>,
    node: &BTreeMap<String, String>,
) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(replace_refs(s, |i| config_lookup(i, env, node))),
        Value::Array(a) => {
            Value::Array(a.iter().map(|x| interpolate_config(x, env, node)).collect())
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    (
                        replace_refs(k, |i| config_lookup(i, env, node)),
                        interpolate_config(x, env, node),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Host-side and task-side dirs of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDirs {
    /// `NOMAD_ALLOC_DIR`.
    pub alloc_dir: String,
    /// `NOMAD_TASK_DIR` (the task's `local/`).
    pub task_dir: String,
    /// `NOMAD_SECRETS_DIR`.
    pub secrets_dir: String,
}

/// The dir variables as the task sees them (facts §1.6).
pub fn task_dirs(alloc_root: &Path, task: &str, iso: FsIsolation) -> TaskDirs {
    match iso {
        FsIsolation::Chroot | FsIsolation::Image => TaskDirs {
            alloc_dir: "/alloc".into(),
            task_dir: "/local".into(),
            secrets_dir: "/secrets".into(),
        },
        FsIsolation::None | FsIsolation::Unveil => {
            let t: PathBuf = alloc_root.join(task);
            TaskDirs {
                alloc_dir: alloc_root.join("alloc").display().to_string(),
                task_dir: t.join("local").display().to_string(),
                secrets_dir: t.join("secrets").display().to_string(),
            }
        }
    }
}

fn join_host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Builds the task's environment in Nomad's order (facts §1.4).
pub fn build_env(inp: &EnvInputs<'_>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let alloc = inp.alloc;
    let task = inp.task;
    let job = alloc.job.as_deref();
    let set = |env: &mut BTreeMap<String, String>, k: &str, v: String| {
        if !v.is_empty() {
            env.insert(k.to_string(), v);
        }
    };

    // 1. dirs
    let dirs = task_dirs(inp.alloc_root, &task.name, inp.fs_isolation);
    set(&mut env, "NOMAD_ALLOC_DIR", dirs.alloc_dir);
    set(&mut env, "NOMAD_TASK_DIR", dirs.task_dir);
    set(&mut env, "NOMAD_SECRETS_DIR", dirs.secrets_dir);

    // 2. resources
    let res = task_resources(alloc, task);
    if res.memory_mb != 0 {
        set(&mut env, "NOMAD_MEMORY_LIMIT", res.memory_mb.to_string());
    }
    if res.memory_max_mb != 0 {
        set(
            &mut env,
            "NOMAD_MEMORY_MAX_LIMIT",
            res.memory_max_mb.to_string(),
        );
    }
    if res.cpu_mhz != 0 {
        set(&mut env, "NOMAD_CPU_LIMIT", res.cpu_mhz.to_string());
    }
    if !res.cores.is_empty() {
        set(&mut env, "NOMAD_CPU_CORES", format_cores(&res.cores));
    }

    // 3. identity
    set(&mut env, "NOMAD_ALLOC_ID", alloc.id.clone());
    set(
        &mut env,
        "NOMAD_SHORT_ALLOC_ID",
        alloc.id.chars().take(8).collect(),
    );
    set(&mut env, "NOMAD_ALLOC_NAME", alloc.name.clone());
    set(&mut env, "NOMAD_GROUP_NAME", alloc.task_group.clone());
    env.insert("NOMAD_ALLOC_INDEX".into(), alloc.index().to_string());
    set(&mut env, "NOMAD_TASK_NAME", task.name.clone());
    let job_id = job
        .map(|j| j.id.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| alloc.job_id.clone());
    set(&mut env, "NOMAD_JOB_ID", job_id);
    set(
        &mut env,
        "NOMAD_JOB_NAME",
        job.map(|j| j.name.clone()).unwrap_or_default(),
    );
    set(
        &mut env,
        "NOMAD_JOB_PARENT_ID",
        job.map(|j| j.parent_id.clone()).unwrap_or_default(),
    );
    set(&mut env, "NOMAD_DC", inp.node.datacenter.clone());
    set(
        &mut env,
        "NOMAD_PARENT_CGROUP",
        inp.node.cgroup_parent.clone(),
    );
    set(&mut env, "NOMAD_NAMESPACE", alloc.namespace.clone());
    set(&mut env, "NOMAD_REGION", inp.region.to_string());

    // 4/5. ports
    if let Some(ar) = &alloc.allocated_resources {
        // Task-level (legacy) networks.
        if let Some(tr) = ar.tasks.get(&task.name) {
            for n in tr.networks.iter().flatten() {
                for p in n.reserved_ports.iter().chain(n.dynamic_ports.iter()) {
                    if p.label.is_empty() {
                        continue;
                    }
                    let l = &p.label;
                    env.insert(format!("NOMAD_IP_{l}"), n.ip.clone());
                    let fam = if n.ip.contains(':') { "IPv6" } else { "IPv4" };
                    env.insert(format!("NOMAD_{fam}_{l}"), n.ip.clone());
                    env.insert(format!("NOMAD_HOST_PORT_{l}"), p.value.to_string());
                    env.insert(format!("NOMAD_ADDR_{l}"), join_host_port(&n.ip, p.value));
                    env.insert(format!("NOMAD_PORT_{l}"), p.value.to_string());
                }
            }
        }
        // Other tasks' task-level ports.
        for (tname, tr) in &ar.tasks {
            if tname == &task.name {
                continue;
            }
            for n in tr.networks.iter().flatten() {
                for p in n.reserved_ports.iter().chain(n.dynamic_ports.iter()) {
                    if p.label.is_empty() {
                        continue;
                    }
                    let l = &p.label;
                    env.insert(
                        format!("NOMAD_ADDR_{tname}_{l}"),
                        join_host_port(&n.ip, p.value),
                    );
                    env.insert(format!("NOMAD_IP_{tname}_{l}"), n.ip.clone());
                    env.insert(format!("NOMAD_PORT_{tname}_{l}"), p.value.to_string());
                }
            }
        }
        // Group networks.
        for n in ar.shared.networks.iter().flatten() {
            for p in n.reserved_ports.iter().chain(n.dynamic_ports.iter()) {
                if p.label.is_empty() {
                    continue;
                }
                let l = &p.label;
                let port = if p.to > 0 { p.to } else { p.value };
                env.insert(format!("NOMAD_PORT_{l}"), port.to_string());
                env.insert(format!("NOMAD_HOST_PORT_{l}"), p.value.to_string());
            }
        }
        // Allocated ports.
        for p in ar.shared.ports.iter().flatten() {
            let l = &p.label;
            let addr = join_host_port(&p.host_ip, p.value);
            env.insert(format!("NOMAD_ADDR_{l}"), addr.clone());
            env.insert(format!("NOMAD_HOST_ADDR_{l}"), addr);
            env.insert(format!("NOMAD_IP_{l}"), p.host_ip.clone());
            env.insert(format!("NOMAD_HOST_IP_{l}"), p.host_ip.clone());
            let port = if p.to > 0 { p.to } else { p.value };
            env.insert(format!("NOMAD_PORT_{l}"), port.to_string());
            env.insert(format!("NOMAD_ALLOC_PORT_{l}"), port.to_string());
            env.insert(format!("NOMAD_HOST_PORT_{l}"), p.value.to_string());
        }
    }

    // 10. meta (interpolated against node values + env so far)
    let node_vals = node_values(inp.node, inp.region);
    let meta = job
        .map(|j| j.combined_task_meta(&alloc.task_group, &task.name))
        .unwrap_or_default();
    let snapshot = env.clone();
    for (k, v) in &meta {
        let k2 = replace_env(k, &[&node_vals, &snapshot]);
        let v2 = replace_env(v, &[&node_vals, &snapshot]);
        env.insert(format!("NOMAD_META_{k2}"), v2.clone());
        env.insert(format!("NOMAD_META_{}", k2.to_uppercase()), v2);
    }

    // 11. host env, only for keys not yet present
    if inp.fs_isolation != FsIsolation::Image {
        let default: Vec<String>;
        let deny: &[String] = match inp.denylist {
            Some(d) => d,
            None => {
                default = DEFAULT_ENV_DENYLIST.iter().map(|s| s.to_string()).collect();
                &default
            }
        };
        let snapshot = env.clone();
        for (k, v) in inp.host_env {
            if deny.iter().any(|d| d == k) || env.contains_key(k) {
                continue;
            }
            env.insert(k.clone(), replace_env(v, &[&node_vals, &snapshot]));
        }
    }

    // 12. task env overrides everything; values see node values then the env so far.
    let snapshot = env.clone();
    for (k, v) in task.env.iter().flatten() {
        env.insert(k.clone(), replace_env(v, &[&node_vals, &snapshot]));
    }

    // 15. key cleaning
    let mut out = BTreeMap::new();
    for (k, v) in env {
        if CLEANED_PREFIXES.iter().any(|p| k.starts_with(p)) {
            out.insert(clean_env_var(&k, b'_'), v);
        } else {
            out.insert(k, v);
        }
    }
    out
}

/// The task's allocated resources (from `AllocatedResources`, else the task's ask).
pub fn task_resources(alloc: &Allocation, task: &Task) -> nomad_drivers::TaskResources {
    let pos = |v: i64| v.max(0) as u64;
    if let Some(tr) = alloc
        .allocated_resources
        .as_ref()
        .and_then(|ar| ar.tasks.get(&task.name))
    {
        return nomad_drivers::TaskResources {
            cpu_mhz: pos(tr.cpu.cpu_shares),
            memory_mb: pos(tr.memory.memory_mb),
            memory_max_mb: pos(tr.memory.memory_max_mb),
            cores: tr
                .cpu
                .reserved_cores
                .iter()
                .flatten()
                .map(|c| u32::from(*c))
                .collect(),
        };
    }
    let r = task.resources.clone().unwrap_or_default();
    nomad_drivers::TaskResources {
        cpu_mhz: pos(r.cpu.unwrap_or(0)),
        memory_mb: pos(r.memory_mb.unwrap_or(0)),
        memory_max_mb: pos(r.memory_max_mb.unwrap_or(0)),
        cores: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nomad_structs::{
        AllocatedCpuResources, AllocatedMemoryResources, AllocatedPortMapping, AllocatedResources,
        AllocatedSharedResources, AllocatedTaskResources, Job, NetworkResource, Port, TaskGroup,
    };
    use serde_json::json;

    fn fixture() -> (Allocation, Node) {
        let task = Task {
            name: "web".into(),
            driver: "raw_exec".into(),
            meta: Some(BTreeMap::from([("task-key".into(), "tv".into())])),
            ..Default::default()
        };
        let job = Job {
            id: "example".into(),
            name: "example-name".into(),
            parent_id: "parent".into(),
            meta: Some(BTreeMap::from([
                ("owner".into(), "ops".into()),
                ("node_ref".into(), "${node.unique.name}".into()),
            ])),
            task_groups: vec![TaskGroup {
                name: "cache".into(),
                tasks: vec![task],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut tasks = BTreeMap::new();
        tasks.insert(
            "web".to_string(),
            AllocatedTaskResources {
                cpu: AllocatedCpuResources {
                    cpu_shares: 500,
                    reserved_cores: Some(vec![0, 5, 6, 7]),
                },
                memory: AllocatedMemoryResources {
                    memory_mb: 256,
                    memory_max_mb: 512,
                },
                networks: None,
                devices: None,
            },
        );
        tasks.insert(
            "other".to_string(),
            AllocatedTaskResources {
                networks: Some(vec![NetworkResource {
                    ip: "10.0.0.2".into(),
                    dynamic_ports: vec![Port {
                        label: "db".into(),
                        value: 9000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }]),
                ..Default::default()
            },
        );
        let alloc = Allocation {
            id: "0123456789abcdef-0000".into(),
            name: "example.cache[3]".into(),
            namespace: "default".into(),
            job_id: "example".into(),
            task_group: "cache".into(),
            job: Some(Box::new(job)),
            allocated_resources: Some(AllocatedResources {
                tasks,
                task_lifecycles: None,
                shared: AllocatedSharedResources {
                    networks: None,
                    disk_mb: 300,
                    ports: Some(vec![
                        AllocatedPortMapping {
                            label: "http".into(),
                            value: 23456,
                            to: 8080,
                            host_ip: "127.0.0.1".into(),
                            ignore_collision: false,
                        },
                        AllocatedPortMapping {
                            label: "my-port".into(),
                            value: 23457,
                            to: 0,
                            host_ip: "127.0.0.1".into(),
                            ignore_collision: false,
                        },
                    ]),
                },
            }),
            ..Default::default()
        };
        let node = Node {
            id: "node-1".into(),
            name: "n1".into(),
            datacenter: "dc1".into(),
            node_class: "cls".into(),
            node_pool: "default".into(),
            cgroup_parent: "nomad.slice".into(),
            attributes: BTreeMap::from([("kernel.name".into(), "linux".into())]),
            meta: Some(BTreeMap::from([("rack".into(), "r1".into())])),
            ..Default::default()
        };
        (alloc, node)
    }

    fn build(
        alloc: &Allocation,
        node: &Node,
        host: &BTreeMap<String, String>,
        deny: Option<&[String]>,
    ) -> BTreeMap<String, String> {
        let job = alloc.job.as_deref().expect("job");
        let task = job.task_groups[0].tasks[0].clone();
        build_env(&EnvInputs {
            alloc,
            task: &task,
            node,
            region: "global",
            alloc_root: Path::new("/data/alloc/a1"),
            fs_isolation: FsIsolation::None,
            host_env: host,
            denylist: deny,
        })
    }

    #[test]
    fn all_base_vars() {
        let (alloc, node) = fixture();
        let env = build(&alloc, &node, &BTreeMap::new(), None);
        let want = [
            ("NOMAD_ALLOC_DIR", "/data/alloc/a1/alloc"),
            ("NOMAD_TASK_DIR", "/data/alloc/a1/web/local"),
            ("NOMAD_SECRETS_DIR", "/data/alloc/a1/web/secrets"),
            ("NOMAD_MEMORY_LIMIT", "256"),
            ("NOMAD_MEMORY_MAX_LIMIT", "512"),
            ("NOMAD_CPU_LIMIT", "500"),
            ("NOMAD_CPU_CORES", "0,5-7"),
            ("NOMAD_ALLOC_ID", "0123456789abcdef-0000"),
            ("NOMAD_SHORT_ALLOC_ID", "01234567"),
            ("NOMAD_ALLOC_NAME", "example.cache[3]"),
            ("NOMAD_ALLOC_INDEX", "3"),
            ("NOMAD_TASK_NAME", "web"),
            ("NOMAD_GROUP_NAME", "cache"),
            ("NOMAD_JOB_ID", "example"),
            ("NOMAD_JOB_NAME", "example-name"),
            ("NOMAD_JOB_PARENT_ID", "parent"),
            ("NOMAD_DC", "dc1"),
            ("NOMAD_PARENT_CGROUP", "nomad.slice"),
            ("NOMAD_NAMESPACE", "default"),
            ("NOMAD_REGION", "global"),
            ("NOMAD_META_owner", "ops"),
            ("NOMAD_META_OWNER", "ops"),
            ("NOMAD_META_node_ref", "n1"),
            ("NOMAD_META_task_key", "tv"),
            ("NOMAD_META_TASK_KEY", "tv"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(!env.contains_key("NOMAD_META_task-key"));
    }

    #[test]
    fn optional_vars_absent() {
        let (mut alloc, node) = fixture();
        let ar = alloc.allocated_resources.as_mut().expect("ar");
        let t = ar.tasks.get_mut("web").expect("web");
        t.memory.memory_max_mb = 0;
        t.cpu.reserved_cores = None;
        alloc.job.as_mut().expect("job").parent_id.clear();
        let env = build(&alloc, &node, &BTreeMap::new(), None);
        assert!(!env.contains_key("NOMAD_MEMORY_MAX_LIMIT"));
        assert!(!env.contains_key("NOMAD_CPU_CORES"));
        assert!(!env.contains_key("NOMAD_JOB_PARENT_ID"));
    }

    #[test]
    fn port_vars_and_cleaning() {
        let (alloc, node) = fixture();
        let env = build(&alloc, &node, &BTreeMap::new(), None);
        assert_eq!(env["NOMAD_ADDR_http"], "127.0.0.1:23456");
        assert_eq!(env["NOMAD_HOST_ADDR_http"], "127.0.0.1:23456");
        assert_eq!(env["NOMAD_IP_http"], "127.0.0.1");
        assert_eq!(env["NOMAD_HOST_IP_http"], "127.0.0.1");
        assert_eq!(env["NOMAD_PORT_http"], "8080");
        assert_eq!(env["NOMAD_ALLOC_PORT_http"], "8080");
        assert_eq!(env["NOMAD_HOST_PORT_http"], "23456");
        // Cleaned prefixes turn '-' into '_'; the others keep it (quirk).
        assert_eq!(env["NOMAD_PORT_my_port"], "23457");
        assert_eq!(env["NOMAD_ADDR_my_port"], "127.0.0.1:23457");
        assert_eq!(env["NOMAD_HOST_PORT_my_port"], "23457");
        assert_eq!(env["NOMAD_HOST_ADDR_my-port"], "127.0.0.1:23457");
        assert_eq!(env["NOMAD_ALLOC_PORT_my-port"], "23457");
        // Other tasks' ports.
        assert_eq!(env["NOMAD_ADDR_other_db"], "10.0.0.2:9000");
        assert_eq!(env["NOMAD_PORT_other_db"], "9000");
    }

    #[test]
    fn clean_rules() {
        assert_eq!(clean_env_var("NOMAD_META_a-b.c", b'_'), "NOMAD_META_a_b.c");
        assert_eq!(clean_env_var("1abc", b'_'), "_abc");
        assert_eq!(clean_env_var("a1é", b'_'), "a1__");
    }

    #[test]
    fn denylist_and_override() {
        let (mut alloc, node) = fixture();
        let host = BTreeMap::from([
            ("PATH".to_string(), "/usr/bin".to_string()),
            ("VAULT_TOKEN".to_string(), "secret".to_string()),
            ("NOMAD_ALLOC_ID".to_string(), "host-value".to_string()),
            ("HOSTREF".to_string(), "${node.datacenter}".to_string()),
        ]);
        let env = build(&alloc, &node, &host, None);
        assert_eq!(env["PATH"], "/usr/bin");
        assert!(!env.contains_key("VAULT_TOKEN"));
        assert_eq!(env["NOMAD_ALLOC_ID"], "0123456789abcdef-0000");
        assert_eq!(env["HOSTREF"], "dc1");
        let deny = vec!["PATH".to_string()];
        let env = build(&alloc, &node, &host, Some(&deny));
        assert!(!env.contains_key("PATH"));
        assert_eq!(env["VAULT_TOKEN"], "secret");

        // Task env overrides, with interpolation; unknown refs stay.
        let task = &mut alloc.job.as_mut().expect("job").task_groups[0].tasks[0];
        task.env = Some(BTreeMap::from([
            ("NOMAD_ALLOC_ID".to_string(), "override".to_string()),
            (
                "GREETING".to_string(),
                "hi ${NOMAD_TASK_NAME} on ${attr.kernel.name} ${meta.rack} ${nope}".to_string(),
            ),
            ("PATH".to_string(), "/opt/bin:${PATH}".to_string()),
        ]));
        let env = build(&alloc, &node, &host, None);
        assert_eq!(env["NOMAD_ALLOC_ID"], "override");
        assert_eq!(env["GREETING"], "hi web on linux r1 ${nope}");
        assert_eq!(env["PATH"], "/opt/bin:/usr/bin");
    }

    #[test]
    fn chroot_dirs() {
        let d = task_dirs(Path::new("/x"), "t", FsIsolation::Chroot);
        assert_eq!(d.alloc_dir, "/alloc");
        assert_eq!(d.task_dir, "/local");
        assert_eq!(d.secrets_dir, "/secrets");
    }

    #[test]
    fn replace_env_rules() {
        let m = BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("attr.x-y".to_string(), "2".to_string()),
        ]);
        assert_eq!(
            replace_env("${a}-${attr.x-y}-${b}-${env[\"a\"]}-${", &[&m]),
            "1-2-${b}-${env[\"a\"]}-${"
        );
    }

    #[test]
    fn config_interpolation() {
        let env = BTreeMap::from([
            ("NOMAD_ALLOC_ID".to_string(), "aid".to_string()),
            ("odd.key".to_string(), "odd".to_string()),
        ]);
        let (_, node) = fixture();
        let nv = node_values(&node, "global");
        let cfg = json!({
            "command": "/bin/echo",
            "args": ["${NOMAD_ALLOC_ID}", "${env[\"odd.key\"]}", "${attr.kernel.name}", "${meta.rack}",
                     "${node.unique.id}", "${node.unique.name}", "${node.datacenter}", "${node.class}",
                     "${node.region}", "${node.pool}", "${unknown.thing}", "${NOMAD_ALLOC_INDEX + 2}", 5],
            "nested": {"k": "${node.attr.kernel.name}"}
        });
        let out = interpolate_config(&cfg, &env, &nv);
        assert_eq!(
            out["args"],
            json!([
                "aid",
                "odd",
                "linux",
                "r1",
                "node-1",
                "n1",
                "dc1",
                "cls",
                "global",
                "default",
                "${unknown.thing}",
                "${NOMAD_ALLOC_INDEX + 2}",
                5
            ])
        );
        assert_eq!(out["nested"]["k"], "linux");
    }

    #[test]
    fn strict_config_interpolation() {
        let env = BTreeMap::from([
            ("NOMAD_ALLOC_ID".to_string(), "aid".to_string()),
            ("a.b".to_string(), "ab".to_string()),
        ]);
        let (_, node) = fixture();
        let nv = node_values(&node, "global");
        let ok = |v: serde_json::Value| try_interpolate_config(&v, &env, &nv);
        assert_eq!(
            ok(
                json!({"k": ["${NOMAD_ALLOC_ID}", "${a.b}", "${env.NOMAD_ALLOC_ID}",
                            "${node.meta.rack}", "${NOMAD_ALLOC_INDEX + 2}", "${attr.x-y}"]})
            )
            .expect("ok"),
            json!({"k": ["aid", "ab", "aid", "r1", "${NOMAD_ALLOC_INDEX + 2}", "${attr.x-y}"]})
        );
        let err = |v: serde_json::Value| ok(v).expect_err("must fail").to_string();
        assert_eq!(
            err(json!({"command": "${nope}"})),
            "Unknown variable; There is no variable named \"nope\"."
        );
        assert_eq!(
            err(json!(["${attr.nope}"])),
            "Unsupported attribute; This object does not have an attribute named \"nope\"."
        );
        assert_eq!(
            err(json!(["${node.unique.nope}"])),
            "Unsupported attribute; This object does not have an attribute named \"nope\"."
        );
        assert_eq!(
            err(json!({"${a.c}": 1})),
            "Unsupported attribute; This object does not have an attribute named \"c\"."
        );
        assert!(err(json!(["${env[\"NOPE\"]}"])).starts_with("Invalid index"));
    }

    #[test]
    fn cores_format() {
        assert_eq!(format_cores(&[7, 0, 5, 6]), "0,5-7");
        assert_eq!(format_cores(&[1]), "1");
        assert_eq!(format_cores(&[]), "");
    }
}
