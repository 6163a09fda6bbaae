//! Agent configuration: Nomad's HCL/JSON config files, `-dev` defaults and command-line flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// The agent's whole configuration, merged from defaults, `-dev`, config files and flags.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// `region` (default `global`).
    pub region: String,
    /// `datacenter` (default `dc1`).
    pub datacenter: String,
    /// `name`: the node name (default: the hostname).
    pub name: String,
    /// `data_dir`; `-dev` uses a temporary directory.
    pub data_dir: Option<PathBuf>,
    /// `bind_addr` (default `0.0.0.0`, `-dev`: `127.0.0.1`).
    pub bind_addr: String,
    /// `ports { http rpc serf }`.
    pub ports: Ports,
    /// `log_level`.
    pub log_level: String,
    /// `server { }`.
    pub server: ServerBlock,
    /// `client { }`.
    pub client: ClientBlock,
    /// `plugin "<name>" { config { } }`.
    pub plugins: BTreeMap<String, serde_json::Value>,
    /// `acl { enabled }`.
    pub acl_enabled: bool,
    /// `acl { token_ttl }`: how long a client-only agent trusts a token it resolved.
    pub acl_token_ttl: Duration,
    /// `acl { policy_ttl }`: how long a client-only agent trusts the policies it resolved.
    pub acl_policy_ttl: Duration,
    /// `tls { }`.
    pub tls: TlsBlock,
    /// `ui { enabled }`.
    pub ui_enabled: bool,
    /// `-dev`.
    pub dev_mode: bool,
}

/// `tls { }`: HTTPS for the HTTP API (`http = true`) with mutual TLS when
/// `verify_https_client`; `rpc` and `verify_server_hostname` are accepted and shown (the
/// in-process client needs no RPC TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsBlock {
    /// `http`: serve the HTTP API over TLS.
    pub http: bool,
    /// `rpc`: TLS for RPC.
    pub rpc: bool,
    /// `ca_file`: the CA that signs client certificates (and other agents').
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: this agent's certificate chain.
    pub cert_file: Option<PathBuf>,
    /// `key_file`: the key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// `verify_server_hostname`.
    pub verify_server_hostname: bool,
    /// `verify_https_client`: require client certificates signed by `ca_file` on HTTPS.
    pub verify_https_client: bool,
}

impl TlsBlock {
    /// The HTTPS listener's settings, or `None` when `http` is off. Errors name what is missing.
    pub fn http_server_config(&self) -> anyhow::Result<Option<nomad_tls::ServerTlsConfig>> {
        if !self.http {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            bail!("TLS is enabled for HTTP (tls.http = true) but cert_file and key_file are not both set");
        };
        if self.verify_https_client && self.ca_file.is_none() {
            bail!("tls.verify_https_client requires tls.ca_file");
        }
        Ok(Some(nomad_tls::ServerTlsConfig {
            ca_file: self.ca_file.clone(),
            cert_file: cert.clone(),
            key_file: key.clone(),
            verify_https_client: self.verify_https_client,
        }))
    }
}

impl TlsBlock {
    /// The RPC listener's TLS (mutual: every peer presents a certificate signed by `ca_file`),
    /// or `None` when `rpc` is off.
    pub fn rpc_server_config(&self) -> anyhow::Result<Option<nomad_tls::ServerTlsConfig>> {
        if !self.rpc {
            return Ok(None);
        }
        let (Some(cert), Some(key), Some(ca)) = (&self.cert_file, &self.key_file, &self.ca_file)
        else {
            bail!("TLS is enabled for RPC (tls.rpc = true) but ca_file, cert_file and key_file are not all set");
        };
        Ok(Some(nomad_tls::ServerTlsConfig {
            ca_file: Some(ca.clone()),
            cert_file: cert.clone(),
            key_file: key.clone(),
            verify_https_client: true,
        }))
    }

    /// How this agent dials servers' RPC ports: its own certificate as the client certificate,
    /// and with `verify_server_hostname` the server must present `server.<region>.nomad`.
    pub fn rpc_client_config(&self, region: &str) -> Option<nomad_tls::ClientTlsConfig> {
        if !self.rpc {
            return None;
        }
        Some(nomad_tls::ClientTlsConfig {
            ca_cert: self.ca_file.clone(),
            client_cert: self.cert_file.clone(),
            client_key: self.key_file.clone(),
            server_name: self
                .verify_server_hostname
                .then(|| format!("server.{region}.nomad")),
            ..Default::default()
        })
    }
}

/// `ports { }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// HTTP API (4646).
    pub http: u16,
    /// RPC (4647).
    pub rpc: u16,
    /// Serf gossip (4648).
    pub serf: u16,
}

/// `server { }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerBlock {
    /// `enabled`.
    pub enabled: bool,
    /// `bootstrap_expect`.
    pub bootstrap_expect: u32,
    /// `num_schedulers`.
    pub num_schedulers: Option<usize>,
    /// `min_heartbeat_ttl` (Go duration): the TTL handed to clients.
    pub min_heartbeat_ttl: Option<std::time::Duration>,
    /// `heartbeat_grace` (Go duration): how long past its TTL a node may be silent.
    pub heartbeat_grace: Option<std::time::Duration>,
    /// `server_join { retry_join }` (and the legacy `retry_join`): other servers' RPC
    /// addresses (port 4647 when none is given; there is no gossip port).
    pub retry_join: Vec<String>,
}

/// `client { }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientBlock {
    /// `enabled`.
    pub enabled: bool,
    /// `servers`.
    pub servers: Vec<String>,
    /// `node_class`.
    pub node_class: String,
    /// `node_pool`.
    pub node_pool: String,
    /// `meta { }`.
    pub meta: BTreeMap<String, String>,
    /// `options { }`.
    pub options: BTreeMap<String, String>,
    /// `alloc_dir`.
    pub alloc_dir: Option<PathBuf>,
    /// `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// `disable_remote_exec`.
    pub disable_remote_exec: bool,
    /// `cgroup_parent`.
    pub cgroup_parent: Option<String>,
    /// `min_dynamic_port`.
    pub min_dynamic_port: Option<u16>,
    /// `max_dynamic_port`.
    pub max_dynamic_port: Option<u16>,
    /// `chroot_env { "/host/path" = "/chroot/path" }` for the exec driver; empty = Nomad's default.
    pub chroot_env: BTreeMap<String, String>,
    /// `artifact { }`: download limits.
    pub artifact: nomad_client::artifacts::ArtifactConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            region: "global".into(),
            datacenter: "dc1".into(),
            name: hostname(),
            data_dir: None,
            bind_addr: "0.0.0.0".into(),
            ports: Ports {
                http: 4646,
                rpc: 4647,
                serf: 4648,
            },
            log_level: "INFO".into(),
            server: ServerBlock::default(),
            client: ClientBlock::default(),
            plugins: BTreeMap::new(),
            acl_enabled: false,
            acl_token_ttl: Duration::from_secs(30),
            acl_policy_ttl: Duration::from_secs(30),
            tls: TlsBlock::default(),
            ui_enabled: true,
            dev_mode: false,
        }
    }
}

impl AgentConfig {
    /// Nomad's `-dev` defaults: server and client in one process on loopback, raw_exec on.
    pub fn dev() -> Self {
        let mut c = AgentConfig {
            bind_addr: "127.0.0.1".into(),
            log_level: "DEBUG".into(),
            dev_mode: true,
            ..Default::default()
        };
        c.server.enabled = true;
        c.server.bootstrap_expect = 1;
        c.client.enabled = true;
        c.plugins
            .insert("raw_exec".into(), serde_json::json!({"enabled": true}));
        c
    }

    /// Whether the raw_exec plugin is enabled, by the plugin block or the legacy client option.
    pub fn raw_exec_enabled(&self) -> bool {
        let plugin = self
            .plugins
            .get("raw_exec")
            .and_then(|c| c.get("enabled"))
            .and_then(as_bool);
        let legacy = self
            .client
            .options
            .get("driver.raw_exec.enable")
            .map(|v| matches!(v.as_str(), "1" | "true" | "t" | "T" | "TRUE" | "True"));
        plugin.or(legacy).unwrap_or(false)
    }

    /// The exec driver's configuration from `plugin "exec" { config { } }` and `client { chroot_env }`.
    pub fn exec_driver_config(&self) -> anyhow::Result<nomad_drivers::ExecConfig> {
        let mut c = nomad_drivers::ExecConfig {
            chroot_env: self.client.chroot_env.clone(),
            ..Default::default()
        };
        let Some(p) = self.plugins.get("exec") else {
            return Ok(c);
        };
        let obj = p.as_object().cloned().unwrap_or_default();
        for (k, v) in obj {
            match k.as_str() {
                "default_pid_mode" => c.default_pid_mode = json_to_string(&v),
                "default_ipc_mode" => c.default_ipc_mode = json_to_string(&v),
                "no_pivot" | "no_pivot_root" => c.no_pivot_root = as_bool(&v).unwrap_or(false),
                "allow_caps" => {
                    c.allow_caps = v
                        .as_array()
                        .ok_or_else(|| {
                            anyhow::anyhow!("plugin \"exec\": allow_caps must be a list of strings")
                        })?
                        .iter()
                        .map(json_to_string)
                        .collect()
                }
                "denied_host_uids" => {
                    c.denied_host_uids = id_set("exec", "denied_host_uids", &v)?;
                }
                "denied_host_gids" => {
                    c.denied_host_gids = id_set("exec", "denied_host_gids", &v)?;
                }
                other => bail!("plugin \"exec\": unsupported config key {other:?}"),
            }
        }
        Ok(c)
    }

    /// The raw_exec driver's configuration (`plugin "raw_exec" { config { } }`, or the legacy
    /// client option for `enabled`).
    pub fn raw_exec_driver_config(&self) -> anyhow::Result<nomad_drivers::RawExecConfig> {
        let plugin = self.plugins.get("raw_exec");
        let ids = |key: &str| -> anyhow::Result<nomad_drivers::IdSet> {
            match plugin.and_then(|p| p.get(key)) {
                Some(v) => id_set("raw_exec", key, v),
                None => Ok(Default::default()),
            }
        };
        Ok(nomad_drivers::RawExecConfig {
            enabled: self.raw_exec_enabled(),
            no_cgroups: self.raw_exec_no_cgroups(),
            denied_host_uids: ids("denied_host_uids")?,
            denied_host_gids: ids("denied_host_gids")?,
            ..Default::default()
        })
    }

    /// Whether raw_exec tasks run without cgroups (`no_cgroups = true`).
    pub fn raw_exec_no_cgroups(&self) -> bool {
        self.plugins
            .get("raw_exec")
            .and_then(|c| c.get("no_cgroups"))
            .and_then(as_bool)
            .unwrap_or(false)
    }

    /// Merges a config file (HCL or JSON, by extension) over this config.
    pub fn merge_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let src = std::fs::read_to_string(path)
            .with_context(|| format!("Error loading configuration from {}", path.display()))?;
        let is_json = path.extension().is_some_and(|e| e == "json");
        let file: FileConfig = if is_json {
            serde_json::from_str(&src)
                .with_context(|| format!("Error loading configuration from {}", path.display()))?
        } else {
            let v: serde_json::Value =
                hcl::from_str(&quoted_key_blocks_as_maps(&src)).map_err(|e| {
                    anyhow::anyhow!("Error loading configuration from {}: {e}", path.display())
                })?;
            serde_json::from_value(v).map_err(|e| {
                anyhow::anyhow!("Error loading configuration from {}: {e}", path.display())
            })?
        };
        self.apply(file)
    }

    /// Loads `-config` paths: files, or every `.hcl`/`.json` file of a directory in name order.
    pub fn merge_path(&mut self, path: &Path) -> anyhow::Result<()> {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("Error loading configuration from {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "hcl" || e == "json"))
                .collect();
            entries.sort();
            for p in entries {
                self.merge_file(&p)?;
            }
            Ok(())
        } else {
            self.merge_file(path)
        }
    }

    fn apply(&mut self, f: FileConfig) -> anyhow::Result<()> {
        if let Some(v) = f.region {
            self.region = v;
        }
        if let Some(v) = f.datacenter {
            self.datacenter = v;
        }
        if let Some(v) = f.name {
            self.name = v;
        }
        if let Some(v) = f.data_dir {
            self.data_dir = Some(v);
        }
        if let Some(v) = f.bind_addr {
            self.bind_addr = v;
        }
        if let Some(v) = f.log_level {
            self.log_level = v;
        }
        if let Some(p) = f.ports {
            if let Some(v) = p.http {
                self.ports.http = v;
            }
            if let Some(v) = p.rpc {
                self.ports.rpc = v;
            }
            if let Some(v) = p.serf {
                self.ports.serf = v;
            }
        }
        for j in f.server_join.into_iter().flatten() {
            self.server
                .retry_join
                .extend(j.retry_join.unwrap_or_default());
        }
        for s in f.server.into_iter().flatten() {
            if let Some(v) = s.enabled {
                self.server.enabled = v;
            }
            self.server
                .retry_join
                .extend(s.retry_join.unwrap_or_default());
            for j in s.server_join.into_iter().flatten() {
                self.server
                    .retry_join
                    .extend(j.retry_join.unwrap_or_default());
            }
            if let Some(v) = s.bootstrap_expect {
                self.server.bootstrap_expect = v;
            }
            if let Some(v) = s.num_schedulers {
                self.server.num_schedulers = Some(v);
            }
            if let Some(v) = s.min_heartbeat_ttl {
                self.server.min_heartbeat_ttl = Some(go_duration("server.min_heartbeat_ttl", &v)?);
            }
            if let Some(v) = s.heartbeat_grace {
                self.server.heartbeat_grace = Some(go_duration("server.heartbeat_grace", &v)?);
            }
        }
        for c in f.client.into_iter().flatten() {
            if let Some(v) = c.enabled {
                self.client.enabled = v;
            }
            if let Some(v) = c.servers {
                self.client.servers = v;
            }
            for j in c.server_join.into_iter().flatten() {
                self.client.servers.extend(j.retry_join.unwrap_or_default());
            }
            if let Some(v) = c.node_class {
                self.client.node_class = v;
            }
            if let Some(v) = c.node_pool {
                self.client.node_pool = v;
            }
            for m in c.meta.into_iter().flatten() {
                self.client
                    .meta
                    .extend(m.into_iter().map(|(k, v)| (k, json_to_string(&v))));
            }
            for m in c.options.into_iter().flatten() {
                self.client
                    .options
                    .extend(m.into_iter().map(|(k, v)| (k, json_to_string(&v))));
            }
            if let Some(v) = c.alloc_dir {
                self.client.alloc_dir = Some(v);
            }
            if let Some(v) = c.state_dir {
                self.client.state_dir = Some(v);
            }
            if let Some(v) = c.disable_remote_exec {
                self.client.disable_remote_exec = v;
            }
            if let Some(v) = c.cgroup_parent {
                self.client.cgroup_parent = Some(v);
            }
            if let Some(v) = c.min_dynamic_port {
                self.client.min_dynamic_port = Some(v);
            }
            if let Some(v) = c.max_dynamic_port {
                self.client.max_dynamic_port = Some(v);
            }
            for m in c.chroot_env.into_iter().flatten() {
                self.client
                    .chroot_env
                    .extend(m.into_iter().map(|(k, v)| (k, json_to_string(&v))));
            }
            for m in c.artifact.into_iter().flatten() {
                apply_artifact_block(&mut self.client.artifact, &m)?;
            }
        }
        for (name, blocks) in f.plugin.unwrap_or_default() {
            for b in one_or_many(blocks) {
                let cfg = b
                    .get("config")
                    .cloned()
                    .map(|c| one_or_many(c).into_iter().next().unwrap_or_default());
                let entry = self
                    .plugins
                    .entry(name.clone())
                    .or_insert_with(|| serde_json::json!({}));
                if let (Some(serde_json::Value::Object(new)), serde_json::Value::Object(old)) =
                    (cfg, entry)
                {
                    old.extend(new);
                }
            }
        }
        for a in f.acl.into_iter().flatten() {
            if let Some(v) = a.enabled {
                self.acl_enabled = v;
            }
            if let Some(v) = &a.token_ttl {
                self.acl_token_ttl = go_duration("acl.token_ttl", &json_to_string(v))?;
            }
            if let Some(v) = &a.policy_ttl {
                self.acl_policy_ttl = go_duration("acl.policy_ttl", &json_to_string(v))?;
            }
            if let Some(v) = &a.role_ttl {
                go_duration("acl.role_ttl", &json_to_string(v))?;
            }
        }
        for t in f.tls.into_iter().flatten() {
            if let Some(v) = t.http {
                self.tls.http = v;
            }
            if let Some(v) = t.rpc {
                self.tls.rpc = v;
            }
            if let Some(v) = t.ca_file.filter(|p| !p.as_os_str().is_empty()) {
                self.tls.ca_file = Some(v);
            }
            if let Some(v) = t.cert_file.filter(|p| !p.as_os_str().is_empty()) {
                self.tls.cert_file = Some(v);
            }
            if let Some(v) = t.key_file.filter(|p| !p.as_os_str().is_empty()) {
                self.tls.key_file = Some(v);
            }
            if let Some(v) = t.verify_server_hostname {
                self.tls.verify_server_hostname = v;
            }
            if let Some(v) = t.verify_https_client {
                self.tls.verify_https_client = v;
            }
        }
        for u in f.ui.into_iter().flatten() {
            if let Some(v) = u.enabled {
                self.ui_enabled = v;
            }
        }
        if let Some(unknown) = f.unknown.keys().next() {
            bail!("unexpected key {unknown:?} in agent configuration");
        }
        Ok(())
    }

    /// The agent config in Nomad's JSON shape (for `/v1/agent/self`), secrets left out.
    pub fn to_nomad_json(&self, http_addr: &str) -> serde_json::Value {
        serde_json::json!({
            "Region": self.region,
            "Datacenter": self.datacenter,
            "NodeName": self.name,
            "DataDir": self.data_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            "LogLevel": self.log_level,
            "BindAddr": self.bind_addr,
            "DevMode": self.dev_mode,
            "Ports": {"HTTP": self.ports.http, "RPC": self.ports.rpc, "Serf": self.ports.serf},
            "Addresses": {"HTTP": self.bind_addr, "RPC": self.bind_addr, "Serf": self.bind_addr},
            "AdvertiseAddrs": {"HTTP": http_addr, "RPC": format!("{}:{}", self.advertise_ip(), self.ports.rpc), "Serf": format!("{}:{}", self.advertise_ip(), self.ports.serf)},
            "Server": {"Enabled": self.server.enabled, "BootstrapExpect": self.server.bootstrap_expect},
            "Client": {
                "Enabled": self.client.enabled,
                "Servers": self.client.servers,
                "NodeClass": self.client.node_class,
                "NodePool": if self.client.node_pool.is_empty() { "default" } else { &self.client.node_pool },
                "Meta": self.client.meta,
                "Options": self.client.options,
                "DisableRemoteExec": self.client.disable_remote_exec,
            },
            "ACL": {
                "Enabled": self.acl_enabled,
                "TokenTTL": self.acl_token_ttl.as_nanos() as u64,
                "PolicyTTL": self.acl_policy_ttl.as_nanos() as u64,
            },
            "TLSConfig": {
                "EnableHTTP": self.tls.http,
                "EnableRPC": self.tls.rpc,
                "VerifyServerHostname": self.tls.verify_server_hostname,
                "VerifyHTTPSClient": self.tls.verify_https_client,
                "CAFile": self.tls.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "CertFile": self.tls.cert_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
                "KeyFile": self.tls.key_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            },
            "UI": {"Enabled": self.ui_enabled, "ShowCLIHints": false},
            "Version": {"Version": nomad_structs::NOMAD_VERSION, "VersionPrerelease": "", "VersionMetadata": "", "Revision": ""},
            "Plugins": self.plugins.iter().map(|(k, v)| serde_json::json!({"Name": k, "Config": v})).collect::<Vec<_>>(),
        })
    }

    /// The address advertised to clients: the bind address, or loopback when binding all.
    pub fn advertise_ip(&self) -> String {
        if self.bind_addr == "0.0.0.0" || self.bind_addr == "::" {
            "127.0.0.1".into()
        } else {
            self.bind_addr.clone()
        }
    }
}

/// Nomad parses agent files as HCL1, where `options { "driver.raw_exec.enable" = "1" }` and
/// `chroot_env { "/bin" = "/bin" }` are blocks with quoted keys; HCL2 only allows quoted keys in
/// a map (`options = { ... }`). The free-form blocks become maps here, so both spellings from
/// Nomad's documentation load.
fn quoted_key_blocks_as_maps(src: &str) -> String {
    const FREE_FORM: [&str; 3] = ["options", "meta", "chroot_env"];
    src.lines()
        .map(|line| {
            let t = line.trim_start();
            for name in FREE_FORM {
                if let Some(rest) = t.strip_prefix(name) {
                    if rest.trim() == "{" {
                        let indent = &line[..line.len() - t.len()];
                        return format!("{indent}{name} = {{");
                    }
                }
            }
            line.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_duration(key: &str, v: &str) -> anyhow::Result<std::time::Duration> {
    let ns =
        nomad_structs::duration::parse_go_duration(v).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
    u64::try_from(ns)
        .map(std::time::Duration::from_nanos)
        .map_err(|_| anyhow::anyhow!("{key}: must not be negative"))
}

fn as_bool(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Applies a `client { artifact { } }` block, with Nomad's validation.
fn apply_artifact_block(
    a: &mut nomad_client::artifacts::ArtifactConfig,
    block: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let duration = |k: &str, v: &serde_json::Value| -> anyhow::Result<Duration> {
        let text = json_to_string(v);
        let n = nomad_structs::duration::parse_go_duration(&text).map_err(|e| {
            anyhow::anyhow!("client.artifact.{k} not a valid duration: {text:?}: {e}")
        })?;
        if n < 0 {
            bail!("client.artifact.{k} must be >= 0");
        }
        Ok(Duration::from_nanos(n as u64))
    };
    let size = |k: &str, v: &serde_json::Value| -> anyhow::Result<u64> {
        let text = json_to_string(v);
        parse_bytes(&text)
            .map_err(|e| anyhow::anyhow!("client.artifact.{k} not a valid size: {text:?}: {e}"))
    };
    for (k, v) in block {
        match k.as_str() {
            "http_read_timeout" => a.http_read_timeout = duration(k, v)?,
            "http_max_size" => a.http_max_size = size(k, v)?,
            "decompression_size_limit" => a.decompression_size_limit = size(k, v)?,
            "decompression_file_count_limit" => {
                a.decompression_file_count_limit = v
                    .as_u64()
                    .or_else(|| json_to_string(v).parse().ok())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "client.artifact.decompression_file_count_limit must be a non-negative number"
                        )
                    })?
            }
            "disable_filesystem_isolation" => {
                a.disable_filesystem_isolation = as_bool(v).ok_or_else(|| {
                    anyhow::anyhow!("client.artifact.disable_filesystem_isolation must be a bool")
                })?
            }
            // Getters we do not implement (git, hg, s3, gcs) and the getter sandbox's env:
            // validated, accepted, no effect.
            "gcs_timeout" | "git_timeout" | "hg_timeout" | "s3_timeout" => {
                duration(k, v)?;
            }
            "set_environment_variables" => {}
            other => bail!("client.artifact: unsupported key {other:?}"),
        }
    }
    Ok(())
}

/// A size as go-humanize reads it: `"100GB"` (SI), `"1.5GiB"` (IEC), `"512"` bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0f64.powi(4),
        "pi" | "pib" => 1024.0f64.powi(5),
        other => return Err(format!("unknown unit {other:?}")),
    };
    let v = num * mult;
    if !v.is_finite() || v > u64::MAX as f64 {
        return Err("too large".into());
    }
    Ok(v as u64)
}

/// A `denied_host_uids`/`denied_host_gids` value of plugin `plugin`.
fn id_set(plugin: &str, key: &str, v: &serde_json::Value) -> anyhow::Result<nomad_drivers::IdSet> {
    let text = json_to_string(v);
    nomad_drivers::IdSet::parse(key, &text).map_err(|e| anyhow::anyhow!("plugin {plugin:?}: {e}"))
}

fn json_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// hcl-rs turns a repeated block into a list and a single one into an object.
fn one_or_many(v: serde_json::Value) -> Vec<serde_json::Value> {
    match v {
        serde_json::Value::Array(a) => a,
        other => vec![other],
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    region: Option<String>,
    datacenter: Option<String>,
    name: Option<String>,
    data_dir: Option<PathBuf>,
    bind_addr: Option<String>,
    log_level: Option<String>,
    #[serde(default, deserialize_with = "single_block")]
    ports: Option<PortsFile>,
    #[serde(default, deserialize_with = "blocks")]
    server: Option<Vec<ServerFile>>,
    #[serde(default, deserialize_with = "blocks")]
    client: Option<Vec<ClientFile>>,
    plugin: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, deserialize_with = "blocks")]
    server_join: Option<Vec<ServerJoinFile>>,
    #[serde(default, deserialize_with = "blocks")]
    acl: Option<Vec<AclFile>>,
    #[serde(default, deserialize_with = "blocks")]
    ui: Option<Vec<EnabledFile>>,
    // Accepted and ignored for now (Nomad keys we do not act on yet).
    #[serde(default)]
    #[allow(dead_code)]
    advertise: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    addresses: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "blocks")]
    tls: Option<Vec<TlsFile>>,
    #[serde(default)]
    #[allow(dead_code)]
    telemetry: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    enable_debug: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    leave_on_interrupt: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    leave_on_terminate: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    disable_update_check: Option<serde_json::Value>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

fn blocks<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    one_or_many(v)
        .into_iter()
        .map(|b| serde_json::from_value(b).map_err(serde::de::Error::custom))
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

fn single_block<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Ok(blocks::<D, T>(d)?.and_then(|v| v.into_iter().last()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortsFile {
    http: Option<u16>,
    rpc: Option<u16>,
    serf: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
struct ServerFile {
    enabled: Option<bool>,
    bootstrap_expect: Option<u32>,
    num_schedulers: Option<usize>,
    min_heartbeat_ttl: Option<String>,
    heartbeat_grace: Option<String>,
    retry_join: Option<Vec<String>>,
    #[serde(default, deserialize_with = "blocks")]
    server_join: Option<Vec<ServerJoinFile>>,
    // Accepted for compatibility; there is no gossip layer to configure.
    #[serde(default)]
    #[allow(dead_code)]
    encrypt: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    data_dir: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct ServerJoinFile {
    retry_join: Option<Vec<String>>,
    #[serde(default)]
    #[allow(dead_code)]
    retry_max: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    retry_interval: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct ClientFile {
    enabled: Option<bool>,
    servers: Option<Vec<String>>,
    #[serde(default, deserialize_with = "blocks")]
    server_join: Option<Vec<ServerJoinFile>>,
    node_class: Option<String>,
    node_pool: Option<String>,
    #[serde(default, deserialize_with = "blocks")]
    meta: Option<Vec<BTreeMap<String, serde_json::Value>>>,
    #[serde(default, deserialize_with = "blocks")]
    options: Option<Vec<BTreeMap<String, serde_json::Value>>>,
    alloc_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    disable_remote_exec: Option<bool>,
    cgroup_parent: Option<String>,
    min_dynamic_port: Option<u16>,
    max_dynamic_port: Option<u16>,
    #[serde(default, deserialize_with = "blocks")]
    chroot_env: Option<Vec<BTreeMap<String, serde_json::Value>>>,
    #[serde(default, deserialize_with = "blocks")]
    artifact: Option<Vec<BTreeMap<String, serde_json::Value>>>,
}

#[derive(Debug, Default, Deserialize)]
struct TlsFile {
    http: Option<bool>,
    rpc: Option<bool>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    verify_server_hostname: Option<bool>,
    verify_https_client: Option<bool>,
    // Nomad keys accepted and not acted on.
    #[serde(default)]
    #[allow(dead_code)]
    tls_min_version: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    tls_cipher_suites: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    tls_prefer_server_cipher_suites: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    rpc_upgrade_mode: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct EnabledFile {
    enabled: Option<bool>,
}

/// `acl { }`. Roles are not cached apart from tokens here, so `role_ttl` is only checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    enabled: Option<bool>,
    token_ttl: Option<serde_json::Value>,
    policy_ttl: Option<serde_json::Value>,
    role_ttl: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    replication_token: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(src: &str) -> anyhow::Result<AgentConfig> {
        let dir = std::env::temp_dir().join(format!("nomad-agent-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let p = dir.join(format!("c{}.hcl", src.len()));
        std::fs::write(&p, src)?;
        let mut c = AgentConfig::default();
        c.merge_file(&p)?;
        Ok(c)
    }

    #[test]
    fn client_artifact_block() {
        let c = load("client {\n  artifact {\n    http_read_timeout = \"5m\"\n    http_max_size = \"1.5GiB\"\n    decompression_size_limit = \"10MB\"\n    decompression_file_count_limit = 12\n    git_timeout = \"1m\"\n    disable_filesystem_isolation = true\n  }\n}\n").unwrap();
        let a = &c.client.artifact;
        assert_eq!(a.http_read_timeout, Duration::from_secs(300));
        assert_eq!(a.http_max_size, 1_610_612_736);
        assert_eq!(a.decompression_size_limit, 10_000_000);
        assert_eq!(a.decompression_file_count_limit, 12);
        assert!(a.disable_filesystem_isolation);
        let d = load("client {\n}\n").unwrap();
        assert_eq!(
            d.client.artifact,
            nomad_client::artifacts::ArtifactConfig::default()
        );
        let e = load("client {\n  artifact {\n    http_max_size = \"lots\"\n  }\n}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("client.artifact.http_max_size not a valid size"),
            "{e}"
        );
        let e = load("client {\n  artifact {\n    http_read_timeout = \"soon\"\n  }\n}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("client.artifact.http_read_timeout not a valid duration"),
            "{e}"
        );
        assert_eq!(parse_bytes("100GB").unwrap(), 100_000_000_000);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("2 KiB").unwrap(), 2048);
        assert!(parse_bytes("GB").is_err() && parse_bytes("1XB").is_err());
    }

    #[test]
    fn denied_host_ids_of_both_drivers() {
        let c = load("plugin \"raw_exec\" {\n  config {\n    enabled = true\n    denied_host_uids = \"0,100-200\"\n    denied_host_gids = \"5\"\n  }\n}\nplugin \"exec\" {\n  config {\n    denied_host_uids = \"1000\"\n  }\n}\n").unwrap();
        let raw = c.raw_exec_driver_config().unwrap();
        assert!(raw.enabled);
        assert!(raw.denied_host_uids.contains(0) && raw.denied_host_uids.contains(150));
        assert!(raw.denied_host_gids.contains(5) && !raw.denied_host_gids.contains(6));
        let exec = c.exec_driver_config().unwrap();
        assert!(exec.denied_host_uids.contains(1000) && exec.denied_host_gids.is_empty());
        let c =
            load("plugin \"raw_exec\" {\n  config {\n    denied_host_uids = \"root\"\n  }\n}\n")
                .unwrap();
        let e = c.raw_exec_driver_config().unwrap_err().to_string();
        assert_eq!(
            e,
            "plugin \"raw_exec\": invalid denied_host_uids value \"root\": \"root\" is not an id or a range of ids"
        );
    }

    #[test]
    fn plugin_block_enables_raw_exec() {
        let c = load("plugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n").unwrap();
        assert!(c.raw_exec_enabled());
        assert!(!AgentConfig::default().raw_exec_enabled());
    }

    #[test]
    fn legacy_option_enables_raw_exec() {
        let c = load("client {\n  enabled = true\n  options = {\n    \"driver.raw_exec.enable\" = \"1\"\n  }\n}\n").unwrap();
        assert!(c.client.enabled);
        assert!(c.raw_exec_enabled());
    }

    #[test]
    fn hcl1_style_quoted_key_blocks() {
        let c = load("client {\n  enabled = true\n  options {\n    \"driver.raw_exec.enable\" = \"1\"\n  }\n  chroot_env {\n    \"/bin\" = \"/bin\"\n  }\n  meta {\n    rack = \"r1\"\n  }\n}\n").unwrap();
        assert!(c.raw_exec_enabled());
        assert_eq!(
            c.client.chroot_env.get("/bin").map(String::as_str),
            Some("/bin")
        );
        assert_eq!(c.client.meta.get("rack").map(String::as_str), Some("r1"));
    }

    #[test]
    fn ports_and_names() {
        let c = load("name = \"n1\"\ndatacenter = \"dc9\"\nports {\n  http = 5646\n}\nserver {\n  enabled = true\n}\n").unwrap();
        assert_eq!(c.ports.http, 5646);
        assert_eq!(c.ports.rpc, 4647);
        assert_eq!(c.datacenter, "dc9");
        assert!(c.server.enabled);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = load("bogus_key = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus_key"), "{e}");
    }

    #[test]
    fn acl_cache_ttls() {
        let c = load("acl {\n  enabled = true\n  token_ttl = \"5s\"\n  policy_ttl = \"1m\"\n  role_ttl = \"10s\"\n}\n").unwrap();
        assert_eq!(c.acl_token_ttl, Duration::from_secs(5));
        assert_eq!(c.acl_policy_ttl, Duration::from_secs(60));
        let j = c.to_nomad_json("127.0.0.1:4646");
        assert_eq!(j["ACL"]["TokenTTL"], 5_000_000_000u64);
        let d = load("acl {\n  enabled = true\n}\n").unwrap();
        assert_eq!(d.acl_token_ttl, Duration::from_secs(30));
        assert_eq!(d.acl_policy_ttl, Duration::from_secs(30));
        let e = load("acl {\n  token_ttl = \"soon\"\n}\n").unwrap_err();
        assert!(format!("{e:#}").contains("acl.token_ttl"), "{e:#}");
        let e = load("acl {\n  policy_ttl = \"-1s\"\n}\n").unwrap_err();
        assert!(format!("{e:#}").contains("acl.policy_ttl"), "{e:#}");
        let e = load("acl {\n  tokn_ttl = \"5s\"\n}\n").unwrap_err();
        assert!(format!("{e:#}").contains("tokn_ttl"), "{e:#}");
    }

    #[test]
    fn acl_and_tls_blocks() {
        let c = load("acl {\n  enabled = true\n}\ntls {\n  http = true\n  rpc = true\n  ca_file = \"/c/ca.pem\"\n  cert_file = \"/c/s.pem\"\n  key_file = \"/c/s-key.pem\"\n  verify_server_hostname = true\n  verify_https_client = true\n}\n").unwrap();
        assert!(c.acl_enabled);
        assert!(
            c.tls.http && c.tls.rpc && c.tls.verify_server_hostname && c.tls.verify_https_client
        );
        assert_eq!(c.tls.ca_file.as_deref(), Some(Path::new("/c/ca.pem")));
        let s = c.tls.http_server_config().unwrap().unwrap();
        assert_eq!(s.cert_file, PathBuf::from("/c/s.pem"));
        assert!(s.verify_https_client);
        let j = c.to_nomad_json("127.0.0.1:4646");
        assert_eq!(j["TLSConfig"]["EnableHTTP"], true);
        assert_eq!(j["ACL"]["Enabled"], true);
        let c = load("tls {\n  http = true\n}\n").unwrap();
        assert!(c
            .tls
            .http_server_config()
            .unwrap_err()
            .to_string()
            .contains("cert_file"));
        assert!(AgentConfig::default()
            .tls
            .http_server_config()
            .unwrap()
            .is_none());
    }

    #[test]
    fn dev_defaults() {
        let d = AgentConfig::dev();
        assert!(d.server.enabled && d.client.enabled && d.raw_exec_enabled());
        assert_eq!(d.bind_addr, "127.0.0.1");
    }
}
