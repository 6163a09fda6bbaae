//! `nomad agent [options]`: parses Nomad's agent flags and runs the agent until a signal.

use std::path::PathBuf;

use crate::config::AgentConfig;

const HELP: &str = "Usage: nomad agent [options]

  Starts the Nomad agent and runs until an interrupt is received.
  The agent may be a client and/or server.

General Options:

  -dev                 Start a server and a client in one process on loopback, with
                       raw_exec enabled and state kept in a temporary directory.
  -config=<path>       A config file or a directory of .hcl/.json files. Repeatable.
  -data-dir=<path>     Where the agent keeps its state.
  -bind=<addr>         The address to bind every listener to.
  -region=<region>     The region of the agent (default global).
  -dc=<datacenter>     The datacenter of the agent (default dc1).
  -node=<name>         The node name (default: the hostname).
  -log-level=<level>   TRACE, DEBUG, INFO, WARN or ERROR.

Server Options:

  -server              Enable server mode.
  -bootstrap-expect=<n>
                       How many servers to wait for before bootstrapping.

Client Options:

  -client              Enable client mode.
  -servers=<addrs>     Comma-separated server addresses to join.
  -node-class=<class>  The node class.
  -node-pool=<pool>    The node pool.
  -meta=<key=value>    Node metadata. Repeatable.
  -alloc-dir=<path>    Where allocation directories are created.
  -state-dir=<path>    Where the client keeps its state.
";

/// Entry point of `nomad agent`; returns the process exit code.
/// `nomad exit-recorder <pid> <status file>` (hidden): the helper the drivers start as each
/// task's parent, so its exit status is known even if it ends while the agent is down.
pub fn run_exit_recorder(args: &[String]) -> i32 {
    nomad_drivers::exit_record::run(args)
}

pub fn run(args: Vec<String>) -> i32 {
    // This binary answers `nomad exit-recorder`, so the drivers may start tasks under it.
    nomad_drivers::exit_record::declare_available();
    let cfg = match parse(&args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{HELP}");
            return 0;
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{HELP}");
            return 1;
        }
    };
    init_tracing(&cfg.log_level);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("==> Error starting agent: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let agent = match crate::agent::start(cfg.clone()).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("==> {e:#}");
                return 1;
            }
        };
        print_banner(&cfg, agent.http_addr);
        wait_for_signal().await;
        println!("==> Caught signal: interrupt");
        println!("    Gracefully shutting down agent...");
        agent.shutdown().await;
        0
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

fn print_banner(cfg: &AgentConfig, http: std::net::SocketAddr) {
    let adv = cfg.advertise_ip();
    println!("==> Starting Nomad agent...");
    println!("==> Nomad agent configuration:");
    println!();
    println!(
        "       Advertise Addrs: HTTP: {adv}:{}; RPC: {adv}:{}; Serf: {adv}:{}",
        http.port(),
        cfg.ports.rpc,
        cfg.ports.serf
    );
    println!(
        "            Bind Addrs: HTTP: [{http}]; RPC: {}:{}; Serf: {}:{}",
        cfg.bind_addr, cfg.ports.rpc, cfg.bind_addr, cfg.ports.serf
    );
    let scheme = if cfg.tls.http { "https" } else { "http" };
    println!("                   API: {scheme}://{adv}:{}", http.port());
    println!("                   ACL: {}", cfg.acl_enabled);
    println!("                Client: {}", cfg.client.enabled);
    println!("             Log Level: {}", cfg.log_level);
    println!(
        "                Region: {} (DC: {})",
        cfg.region, cfg.datacenter
    );
    println!("                Server: {}", cfg.server.enabled);
    println!("               Version: {}", nomad_structs::NOMAD_VERSION);
    println!();
    println!("==> Nomad agent started! Log data will stream in below:");
    println!();
}

fn init_tracing(level: &str) {
    let filter = match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "warn" => "warn",
        "error" => "error",
        _ => "info",
    };
    let filter =
        std::env::var("NOMAD_LOG").unwrap_or_else(|_| format!("{filter},hyper=info,h2=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .try_init();
}

/// Parses agent flags with Go `flag` rules (`-x=v`, `-x v`, `--x`); `Ok(None)` means help.
pub fn parse(args: &[String]) -> Result<Option<AgentConfig>, String> {
    let mut dev = false;
    let mut configs: Vec<PathBuf> = Vec::new();
    let mut sets: Vec<(String, String)> = Vec::new();
    let mut bools: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!(
                "unexpected argument {arg:?}: nomad agent takes no positional arguments"
            ));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        match name.as_str() {
            "h" | "help" => return Ok(None),
            "dev" | "server" | "client" | "acl-enabled" => {
                let v = match inline.as_deref() {
                    None => true,
                    Some(s) => parse_bool(s)
                        .ok_or_else(|| format!("invalid boolean value {s:?} for -{name}"))?,
                };
                if name == "dev" {
                    dev = v;
                } else {
                    bools.push((name, v));
                }
            }
            "config" | "data-dir" | "bind" | "region" | "dc" | "node" | "log-level"
            | "bootstrap-expect" | "servers" | "node-class" | "node-pool" | "meta"
            | "alloc-dir" | "state-dir" | "plugin-dir" | "network-interface" => {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                        i += 1;
                        v
                    }
                };
                if name == "config" {
                    configs.push(PathBuf::from(v));
                } else {
                    sets.push((name, v));
                }
            }
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
    }
    let mut cfg = if dev {
        AgentConfig::dev()
    } else {
        AgentConfig::default()
    };
    for c in &configs {
        cfg.merge_path(c).map_err(|e| format!("{e:#}"))?;
    }
    for (name, v) in bools {
        match name.as_str() {
            "server" => cfg.server.enabled = v,
            "client" => cfg.client.enabled = v,
            "acl-enabled" => cfg.acl_enabled = v,
            _ => {}
        }
    }
    for (name, v) in sets {
        match name.as_str() {
            "data-dir" => cfg.data_dir = Some(PathBuf::from(v)),
            "bind" => cfg.bind_addr = v,
            "region" => cfg.region = v,
            "dc" => cfg.datacenter = v,
            "node" => cfg.name = v,
            "log-level" => cfg.log_level = v.to_uppercase(),
            "bootstrap-expect" => {
                cfg.server.bootstrap_expect = v
                    .parse()
                    .map_err(|_| format!("invalid value {v:?} for flag -bootstrap-expect"))?
            }
            "servers" => {
                cfg.client.servers = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "node-class" => cfg.client.node_class = v,
            "node-pool" => cfg.client.node_pool = v,
            "meta" => {
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("Error parsing Client.Meta value: {v}"))?;
                cfg.client.meta.insert(k.to_string(), val.to_string());
            }
            "alloc-dir" => cfg.client.alloc_dir = Some(PathBuf::from(v)),
            "state-dir" => cfg.client.state_dir = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    if !cfg.server.enabled && !cfg.client.enabled {
        return Err("Must specify either server, client or dev mode for the agent.".into());
    }
    Ok(Some(cfg))
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dev_with_overrides() {
        let c = parse(&args(&["-dev", "--dc=dc2", "-node", "n1", "-meta", "a=b"]))
            .unwrap()
            .unwrap();
        assert!(c.dev_mode);
        assert_eq!(c.datacenter, "dc2");
        assert_eq!(c.name, "n1");
        assert_eq!(c.client.meta.get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn errors() {
        assert!(parse(&args(&["-bogus"]))
            .unwrap_err()
            .contains("flag provided but not defined: -bogus"));
        assert!(parse(&args(&[])).unwrap_err().contains("Must specify"));
        assert!(parse(&args(&["-dev=maybe"])).is_err());
        assert!(parse(&args(&["-help"])).unwrap().is_none());
    }
}
