//! A three-server cluster with `tls { rpc = true, verify_server_hostname = true }` and a
//! client, as separate processes on loopback, with certificates made by `nomad tls`: the
//! servers elect a leader over TLS, the client registers and runs a job, and an agent holding
//! only a client certificate (same CA) cannot join the servers' Raft.

use std::path::Path;
use std::time::Duration;

use nomad_testkit::cluster::{
    allocs_with_status, client_config, has_leader_and_peers, peer_count, raw_exec_job, ready_nodes,
    server_config, Ports,
};
use nomad_testkit::DevAgent;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

/// Runs `nomad tls ...` in `dir`.
fn tls(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new(bin())
        .arg("tls")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run nomad tls");
    assert!(
        out.status.success(),
        "nomad tls {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `tls` block of an agent presenting `<role>`'s certificate.
fn tls_block(pki: &Path, role: &str) -> String {
    let p = |f: &str| pki.join(f).display().to_string();
    format!(
        "tls {{\n  rpc = true\n  verify_server_hostname = true\n  ca_file = \"{}\"\n  cert_file = \"{}\"\n  key_file = \"{}\"\n}}\n",
        p("nomad-agent-ca.pem"),
        p(&format!("global-{role}-nomad.pem")),
        p(&format!("global-{role}-nomad-key.pem")),
    )
}

#[test]
fn servers_and_client_over_tls_and_a_client_certificate_cannot_join_raft() {
    let root = tempfile::tempdir().expect("tmp");
    let pki = root.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    tls(&pki, &["ca", "create"]);
    tls(&pki, &["cert", "create", "-server"]);
    tls(&pki, &["cert", "create", "-client"]);

    let ports = [Ports::free(), Ports::free(), Ports::free()];
    let mut servers = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let name = format!("s{}", i + 1);
        let dir = root.path().join(&name);
        let cfg = server_config(&dir, &name, *p, &ports, "") + &tls_block(&pki, "server");
        servers.push(DevAgent::start_in(bin(), &dir, &cfg, p.http));
    }
    servers[0].wait_until(
        "a leader and three voters over TLS",
        Duration::from_secs(90),
        |a| has_leader_and_peers(a, 3),
    );

    let cp = Ports::free();
    let cdir = root.path().join("c1");
    let ccfg = client_config(&cdir, "client1", cp, &ports) + &tls_block(&pki, "client");
    let _client = DevAgent::start_in(bin(), &cdir, &ccfg, cp.http);
    servers[0].wait_until("the client ready over TLS", Duration::from_secs(60), |a| {
        ready_nodes(a).len() == 1
    });
    let spec = raw_exec_job(root.path(), "hello", "batch", "/bin/echo", &["over tls"]);
    let (code, out, err) = servers[1].cli(bin(), &["job", "run", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    servers[0].wait_until("the job complete", Duration::from_secs(60), |a| {
        allocs_with_status(a, "hello", "complete").len() == 1
    });

    // A would-be server presenting the client certificate: it reaches the RPC port (same CA)
    // but every server refuses its Raft connections, so it never becomes a peer.
    let rp = Ports::free();
    let rdir = root.path().join("rogue");
    let mut all = ports.to_vec();
    all.push(rp);
    let rcfg = server_config(&rdir, "rogue", rp, &all, "") + &tls_block(&pki, "client");
    let _rogue = DevAgent::start_in(bin(), &rdir, &rcfg, rp.http);
    let refused = |a: &DevAgent| {
        a.log()
            .contains("certificate is not valid for server.global.nomad")
    };
    nomad_testkit::assert_eventually(
        "a server to refuse the rogue's raft connection",
        Duration::from_secs(60),
        || servers.iter().any(refused),
    );
    for s in &servers {
        assert_eq!(peer_count(s), 3, "the rogue joined: {}", s.log());
    }
}

/// With `tls { http = true }` everywhere, a server forwards a client request for an alloc on
/// another node over HTTPS, presenting its own certificate (`verify_https_client` on).
#[test]
fn servers_forward_client_requests_over_https() {
    let root = tempfile::tempdir().expect("tmp");
    let pki = root.path().join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    tls(&pki, &["ca", "create"]);
    tls(&pki, &["cert", "create", "-server"]);
    tls(&pki, &["cert", "create", "-client"]);
    tls(&pki, &["cert", "create", "-cli"]);
    let https = |role: &str| {
        tls_block(&pki, role).replace(
            "  rpc = true\n",
            "  rpc = true\n  http = true\n  verify_https_client = true\n",
        )
    };
    let sp = Ports::free();
    let sdir = root.path().join("s1");
    let scfg = server_config(&sdir, "s1", sp, &[sp], "") + &https("server");
    let _server = DevAgent::start_in(bin(), &sdir, &scfg, sp.http);
    let cp = Ports::free();
    let cdir = root.path().join("c1");
    let ccfg = client_config(&cdir, "client1", cp, &[sp]) + &https("client");
    let client = DevAgent::start_in(bin(), &cdir, &ccfg, cp.http);

    let p = |f: &str| pki.join(f).display().to_string();
    let saddr = format!("https://127.0.0.1:{}", sp.http);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .env("NOMAD_ADDR", &saddr)
            .env("NOMAD_CACERT", p("nomad-agent-ca.pem"))
            .env("NOMAD_CLIENT_CERT", p("global-cli-nomad.pem"))
            .env("NOMAD_CLIENT_KEY", p("global-cli-nomad-key.pem"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run nomad");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ready = nomad_testkit::wait_for(Duration::from_secs(60), || {
        let (c, o, _) = cli(&["node", "status"]);
        c == 0 && o.contains("ready")
    });
    assert!(ready, "client not ready: {}", client.log());
    let spec = raw_exec_job(
        root.path(),
        "web",
        "service",
        "/bin/sh",
        &["-c", "echo over-https; exec sleep 3600"],
    );
    let (code, out, err) = cli(&["job", "run", "-detach", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let mut alloc = String::new();
    let running = nomad_testkit::wait_for(Duration::from_secs(60), || {
        let (c, o, _) = cli(&["operator", "api", "/v1/job/web/allocations"]);
        alloc = nomad_testkit::cluster::first_running_alloc(&o).unwrap_or_default();
        c == 0 && !alloc.is_empty()
    });
    assert!(running, "no running alloc: {}", client.log());
    // Asked of the server, answered by the node.
    let path = format!("/v1/client/fs/logs/{alloc}?task=t&type=stdout&plain=true");
    let ok = nomad_testkit::wait_for(Duration::from_secs(20), || {
        cli(&["operator", "api", &path]).1.contains("over-https")
    });
    assert!(ok, "{:?}", cli(&["operator", "api", &path]));
}
