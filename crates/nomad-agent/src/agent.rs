//! Wiring: builds the server, the client and the HTTP API from an [`AgentConfig`] and runs them
//! until SIGINT or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nomad_client::{Client, ClientConfig};
use nomad_drivers::{Driver, ExecDriver, RawExecDriver};
use nomad_http::{AgentInfo, HttpState};
use nomad_server::{Server, ServerConfig};
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::conn::LocalServerConn;

/// A started agent: its HTTP address and the handles to stop it.
#[derive(Debug)]
pub struct RunningAgent {
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Removed on drop when the agent made it (`-dev` without `-data-dir`).
    temp_data_dir: Option<PathBuf>,
    /// The server's Raft node, shut down last.
    raft: Option<Arc<nomad_raft::RaftNode>>,
}

impl RunningAgent {
    /// Signals every component to stop and waits for them (bounded).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        if let Some(raft) = self.raft {
            raft.shutdown().await;
        }
        if let Some(dir) = self.temp_data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts the agent's components on the current tokio runtime.
pub async fn start(cfg: AgentConfig) -> anyhow::Result<RunningAgent> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let (data_dir, temp_data_dir) = match &cfg.data_dir {
        Some(d) => (d.clone(), None),
        None if cfg.dev_mode => {
            let d =
                std::env::temp_dir().join(format!("NomadClient{}", uuid::Uuid::new_v4().simple()));
            (d.clone(), Some(d))
        }
        None => anyhow::bail!("Must specify \"data_dir\" config option or \"data-dir\" CLI flag"),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("failed to create data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);

    // Load the TLS material before binding, so a bad certificate fails the start cleanly.
    let tls = match cfg.tls.http_server_config()? {
        Some(t) => Some(nomad_tls::server_config(&t).map_err(|e| {
            anyhow::anyhow!("Error starting agent: failed to load TLS configuration: {e}")
        })?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind((cfg.bind_addr.as_str(), cfg.ports.http))
        .await
        .with_context(|| {
            format!(
                "Error starting agent: failed to start HTTP API: listen tcp {}:{}",
                cfg.bind_addr, cfg.ports.http
            )
        })?;
    let http_addr = listener.local_addr()?;
    let advertise_http = format!("{}:{}", cfg.advertise_ip(), http_addr.port());
    let rpc_addr = format!("{}:{}", cfg.advertise_ip(), cfg.ports.rpc);

    let mut raft: Option<Arc<nomad_raft::RaftNode>> = None;
    let mut rpc_server: Option<Arc<nomad_rpc::RpcServer>> = None;
    let server = if cfg.server.enabled {
        let sc = ServerConfig {
            region: cfg.region.clone(),
            datacenter: cfg.datacenter.clone(),
            num_schedulers: cfg.server.num_schedulers.unwrap_or(2),
            heartbeat_ttl: cfg
                .server
                .min_heartbeat_ttl
                .unwrap_or(Duration::from_secs(10)),
            acl_enabled: cfg.acl_enabled,
            data_dir: Some(data_dir.clone()),
        };
        // The RPC port: clients on other machines register, heartbeat and watch their allocs
        // here, and servers' Raft traffic arrives here too; the first byte of each connection
        // picks Nomad RPC, Raft or TLS.
        let rpc_tls = match cfg.tls.rpc_server_config()? {
            Some(t) => Some(nomad_tls::server_config(&t).map_err(|e| {
                anyhow::anyhow!("Error starting agent: failed to load RPC TLS configuration: {e}")
            })?),
            None => None,
        };
        let rpc_listener = nomad_rpc::RpcListener::bind(
            (cfg.bind_addr.as_str(), cfg.ports.rpc),
            nomad_rpc::RpcConfig {
                require_tls: rpc_tls.is_some(),
                tls: rpc_tls,
                raft_peer_name: (cfg.tls.rpc && cfg.tls.verify_server_hostname)
                    .then(|| format!("server.{}.nomad", cfg.region)),
            },
        )
        .await
        .with_context(|| {
            format!(
                "Error starting agent: failed to start RPC listener: listen tcp {}:{}",
                cfg.bind_addr, cfg.ports.rpc
            )
        })?;
        // -dev keeps its state in memory without Raft; every other server keeps it on Raft
        // under data_dir, so a restarted agent finds its jobs and reattaches to its tasks.
        let server = if cfg.dev_mode {
            Server::new(sc)
        } else {
            let state = nomad_state::StateStore::new();
            let node = crate::cluster::start_raft(&cfg, &data_dir, &rpc_addr, state, &rpc_listener)
                .await?;
            let peers = cfg
                .server
                .retry_join
                .iter()
                .map(|a| {
                    if a.contains(':') {
                        a.clone()
                    } else {
                        format!("{a}:4647")
                    }
                })
                .collect();
            tasks.push(crate::cluster::form_cluster(
                node.clone(),
                rpc_addr.clone(),
                peers,
                shutdown_rx.clone(),
            ));
            raft = Some(node.clone());
            Server::with_raft(sc, node)
        };
        if let Some(grace) = cfg.server.heartbeat_grace {
            server.set_heartbeat_grace(grace);
        }
        tasks.push(tokio::spawn(server.clone().run(shutdown_rx.clone())));
        let rpc = nomad_rpc::RpcServer::new(server.clone());
        rpc_server = Some(rpc.clone());
        tasks.push(tokio::spawn(rpc_listener.serve(rpc, shutdown_rx.clone())));
        Some(server)
    } else {
        None
    };

    let client = if cfg.client.enabled {
        let conn: Arc<dyn nomad_client::ServerConn> = match server.clone() {
            Some(server) => Arc::new(LocalServerConn::new(server)),
            None if !cfg.client.servers.is_empty() => Arc::new(
                nomad_rpc::RemoteServerConn::new(
                    // Nomad's default RPC port when an address names none.
                    cfg.client.servers.iter().map(|s| if s.contains(':') { s.clone() } else { format!("{s}:4647") }).collect(),
                    cfg.tls.rpc_client_config(&cfg.region),
                )
                .map_err(|e| anyhow::anyhow!("Error starting agent: client.servers: {e}"))?,
            ),
            None => anyhow::bail!(
                "Error starting agent: a client without a local server needs client.servers (or -servers) to join"
            ),
        };
        let mut drivers: BTreeMap<String, Arc<dyn Driver>> = BTreeMap::new();
        let raw = RawExecDriver::new(cfg.raw_exec_driver_config()?);
        drivers.insert("raw_exec".into(), Arc::new(raw));
        let alloc_dir = cfg
            .client
            .alloc_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("alloc"));
        let mut exec_cfg = cfg.exec_driver_config()?;
        exec_cfg.alloc_root = Some(alloc_dir.clone());
        let exec = ExecDriver::new(exec_cfg)
            .map_err(|e| anyhow::anyhow!("invalid exec plugin configuration: {e}"))?;
        drivers.insert("exec".into(), Arc::new(exec));
        let cc = ClientConfig {
            data_dir: data_dir.clone(),
            alloc_dir,
            state_dir: cfg
                .client
                .state_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("client")),
            node_name: cfg.name.clone(),
            node_class: cfg.client.node_class.clone(),
            node_pool: if cfg.client.node_pool.is_empty() {
                "default".into()
            } else {
                cfg.client.node_pool.clone()
            },
            datacenter: cfg.datacenter.clone(),
            region: cfg.region.clone(),
            meta: cfg.client.meta.clone(),
            options: cfg.client.options.clone(),
            http_addr: advertise_http.clone(),
            acl_enabled: cfg.acl_enabled,
            acl_cache_ttl: cfg.acl_token_ttl.min(cfg.acl_policy_ttl),
            artifact: cfg.client.artifact.clone(),
            min_dynamic_port: cfg.client.min_dynamic_port.unwrap_or(20000),
            max_dynamic_port: cfg.client.max_dynamic_port.unwrap_or(32000),
            disable_remote_exec: cfg.client.disable_remote_exec,
            // Nomad reads the denylist from `client { options { "env.denylist" = "a,b" } }`.
            env_denylist: cfg.client.options.get("env.denylist").map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            cgroup_parent: cfg
                .client
                .cgroup_parent
                .clone()
                .unwrap_or_else(|| "nomad.slice".into()),
            node_id: None,
            dev_mode: cfg.dev_mode,
        };
        let client = Client::new(cc, conn, drivers).context("failed to start the client")?;
        tasks.push(tokio::spawn(client.clone().run(shutdown_rx.clone())));
        Some(client)
    } else {
        None
    };

    let info = AgentInfo {
        region: cfg.region.clone(),
        datacenter: cfg.datacenter.clone(),
        node_name: cfg.name.clone(),
        server_enabled: cfg.server.enabled,
        client_enabled: cfg.client.enabled,
        http_addr: advertise_http.clone(),
        rpc_addr,
        config_json: cfg.to_nomad_json(&advertise_http),
        // Servers forward client requests to nodes over HTTPS with the agent's own
        // certificate when the HTTP API is TLS.
        node_tls: cfg.tls.http.then(|| nomad_tls::ClientTlsConfig {
            ca_cert: cfg.tls.ca_file.clone(),
            client_cert: cfg.tls.cert_file.clone(),
            client_key: cfg.tls.key_file.clone(),
            ..Default::default()
        }),
    };
    let state = HttpState {
        server,
        client,
        agent: Arc::new(info),
    };
    // Client-only agents relay what they cannot answer to a server's HTTP API (HTTP.Forward).
    if let Some(rpc) = &rpc_server {
        let st = state.clone();
        rpc.set_http_forwarder(Arc::new(move |req| {
            Box::pin(nomad_http::relay::answer_forwarded(st.clone(), req))
        }));
    }
    let http_shutdown = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let res = match tls {
            Some(tls) => nomad_http::serve_tls(listener, state, http_shutdown, tls).await,
            None => nomad_http::serve(listener, state, http_shutdown).await,
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));

    Ok(RunningAgent {
        http_addr,
        shutdown: shutdown_tx,
        tasks,
        temp_data_dir,
        raft,
    })
}
