//! ACLs on a client-only agent (issue: ACLs): a server and a client as separate processes,
//! both with `acl { enabled = true }`. The client's own HTTP API (logs, files, exec) checks
//! tokens through the servers like the servers do, and the server forwards client requests
//! (plain and websocket) for allocs on the node.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nomad_testkit::cluster::{
    client_config, first_running_alloc, leader, raw_exec_job, server_config, Ports,
};
use nomad_testkit::{cli_field, wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn nomad(addr: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(Stdio::null()).env("NOMAD_ADDR", addr);
    cmd.env_remove("NOMAD_TOKEN");
    if !token.is_empty() {
        cmd.env("NOMAD_TOKEN", token);
    }
    let out = cmd.output().expect("run nomad");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GET with a token (none when empty): (status, body).
fn get(url: &str, token: &str) -> (u16, String) {
    let mut req = ureq::get(url);
    if !token.is_empty() {
        req = req.header("X-Nomad-Token", token);
    }
    match req.call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(ureq::Error::StatusCode(c)) => (c, String::new()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

/// A policy `name` with `caps` on the default namespace and a token for it: its secret.
fn make_token(dir: &Path, addr: &str, mgmt: &str, name: &str, caps: &str) -> String {
    let f = dir.join(format!("{name}.hcl"));
    std::fs::write(
        &f,
        format!("namespace \"default\" {{\n  capabilities = [{caps}]\n}}\n"),
    )
    .unwrap();
    let (code, _, err) = nomad(
        addr,
        mgmt,
        &["acl", "policy", "apply", name, f.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = nomad(
        addr,
        mgmt,
        &["acl", "token", "create", "-name", name, "-policy", name],
    );
    assert_eq!(code, 0, "{err}");
    cli_field(&out, "Secret ID")
}

/// An ACL-enabled server, bootstrapped: the agent and its management secret.
fn acl_server(root: &Path, acl: &str) -> (DevAgent, Ports, String) {
    let sp = Ports::free();
    let sdir = root.join("s1");
    let scfg = server_config(&sdir, "s1", sp, &[sp], "") + acl;
    let server = DevAgent::start_in(bin(), &sdir, &scfg, sp.http);
    server.wait_until("a leader", Duration::from_secs(30), |a| {
        !leader(a).is_empty()
    });
    let (code, out, err) = nomad(&server.address, "", &["acl", "bootstrap"]);
    assert_eq!(code, 0, "{out}{err}");
    let mgmt = cli_field(&out, "Secret ID");
    (server, sp, mgmt)
}

#[test]
fn a_client_only_agent_enforces_acls_on_its_own_api() {
    let root = tempfile::tempdir().unwrap();
    let acl = "acl {\n  enabled = true\n}\n";
    let (server, sp, mgmt) = acl_server(root.path(), acl);
    let saddr = server.address.clone();

    let cp = Ports::free();
    let cdir = root.path().join("c1");
    let ccfg = client_config(&cdir, "client1", cp, &[sp]) + acl;
    let client = DevAgent::start_in(bin(), &cdir, &ccfg, cp.http);
    let ready = wait_for(Duration::from_secs(30), || {
        let (st, body) = get(&format!("{saddr}/v1/nodes"), &mgmt);
        st == 200 && body.contains("\"ready\"")
    });
    assert!(ready, "client not ready: {}", client.log());

    let spec = raw_exec_job(
        root.path(),
        "web",
        "service",
        "/bin/sh",
        &["-c", "echo hello-from-task; exec sleep 3600"],
    );
    let (code, out, err) = nomad(
        &saddr,
        &mgmt,
        &["job", "run", "-detach", spec.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut alloc = String::new();
    let running = wait_for(Duration::from_secs(30), || {
        let (st, body) = get(&format!("{saddr}/v1/job/web/allocations"), &mgmt);
        alloc = first_running_alloc(&body).unwrap_or_default();
        st == 200 && !alloc.is_empty()
    });
    assert!(running, "no running alloc: {}", client.log());

    // Straight to the client's HTTP API.
    let logs = format!(
        "{}/v1/client/fs/logs/{alloc}?task=t&type=stdout&plain=true",
        client.address
    );
    assert_eq!(get(&logs, "").0, 403, "anonymous read the logs");
    assert_eq!(get(&logs, "not-a-token").0, 403);
    let (st, body) = get(&logs, &mgmt);
    assert_eq!(st, 200);
    assert!(body.contains("hello-from-task"), "{body}");

    // Tokens made on the server are honoured by the client.
    let token = |name: &str, caps: &str| make_token(root.path(), &saddr, &mgmt, name, caps);
    let reader = token("reader", "\"read-job\", \"list-jobs\", \"read-logs\"");
    let exec = token(
        "exec",
        "\"read-job\", \"list-jobs\", \"alloc-exec\", \"alloc-node-exec\"",
    );
    assert_eq!(get(&logs, &reader).0, 200);
    assert_eq!(get(&logs, &exec).0, 403, "logs without read-logs");

    // The same through the server, which forwards to the node (and both check the token).
    let via_server = format!("{saddr}/v1/client/fs/logs/{alloc}?task=t&type=stdout&plain=true");
    assert_eq!(get(&via_server, "").0, 403);
    let (st, body) = get(&via_server, &reader);
    assert_eq!(st, 200);
    assert!(body.contains("hello-from-task"), "{body}");

    // Exec: the CLI may not read the node (no node:read), so it goes through the server,
    // which bridges the websocket to the node; only the exec token runs anything.
    let exec_args = ["alloc", "exec", alloc.as_str(), "/bin/echo", "exec-ok"];
    let (code, out, err) = nomad(&saddr, "", &exec_args);
    assert_eq!(code, 1, "anonymous exec: {out}");
    let (code, out, err2) = nomad(&saddr, &reader, &exec_args);
    assert_eq!(code, 1, "reader exec: {out}");
    assert!(err2.contains("Permission denied"), "{err}\n{err2}");
    let (code, out, err) = nomad(&saddr, &exec, &exec_args);
    assert_eq!((code, out.as_str()), (0, "exec-ok\n"), "{err}");
    // The client agent's API answers server questions by relaying them (users point
    // NOMAD_ADDR at their node's agent); the server checks the token.
    let caddr = client.address.clone();
    let (code, out, err) = nomad(&caddr, &reader, &["job", "status", "web"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("web") && out.contains("running"), "{out}");
    let (code, _, err) = nomad(&caddr, "", &["job", "status", "web"]);
    assert_eq!(code, 1);
    assert!(err.contains("Permission denied"), "{err}");
    let (st, _) = get(&format!("{caddr}/v1/jobs"), &reader);
    assert_eq!(st, 200);
    let spec2 = raw_exec_job(root.path(), "viaclient", "batch", "/bin/true", &[]);
    let (code, out, err) = nomad(
        &caddr,
        &reader,
        &["job", "run", "-detach", spec2.to_str().unwrap()],
    );
    assert_eq!(
        code, 1,
        "a reader registered a job through the client: {out}"
    );
    assert!(err.contains("Permission denied"), "{err}");
    let (code, out, err) = nomad(&caddr, &mgmt, &["job", "run", spec2.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("finished with status \"complete\""), "{out}");

    // A declared action with a run-action token (no node:read, no alloc-exec): through the
    // server to the node, both checking it.
    let acts = root.path().join("acts.nomad.hcl");
    std::fs::write(
        &acts,
        "job \"acts\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sleep\"\n        args = [\"3600\"]\n      }\n      action \"hi\" {\n        command = \"/bin/echo\"\n        args = [\"action-ok\"]\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (code, out, err) = nomad(&saddr, &mgmt, &["job", "run", acts.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let runner = token("runner", "\"read-job\", \"list-jobs\", \"run-action\"");
    let act = [
        "job", "action", "-job", "acts", "-group", "g", "-task", "t", "hi",
    ];
    let (code, out, err) = nomad(&saddr, &runner, &act);
    assert_eq!((code, out.as_str()), (0, "action-ok\n"), "{err}");
    let (code, out, _) = nomad(&saddr, &reader, &act);
    assert_eq!(code, 1, "a reader ran an action: {out}");

    // And alloc logs for the reader, through the client.
    let (code, out, err) = nomad(&saddr, &reader, &["alloc", "logs", &alloc, "t"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("hello-from-task"), "{out}");
}

/// A client-only agent asked about an allocation on another node (users point NOMAD_ADDR at
/// their own node's agent; python-nomad and the UI do too) finds that node through the servers,
/// with the caller's token, and forwards to it: plain and streaming logs, and exec.
#[test]
fn a_client_agent_forwards_client_requests_for_allocs_on_other_nodes() {
    let root = tempfile::tempdir().unwrap();
    let acl = "acl {\n  enabled = true\n}\n";
    let (server, sp, mgmt) = acl_server(root.path(), acl);
    let saddr = server.address.clone();
    let clients: Vec<DevAgent> = ["client1", "client2"]
        .iter()
        .map(|name| {
            let cp = Ports::free();
            let cdir = root.path().join(name);
            let ccfg = client_config(&cdir, name, cp, &[sp]) + acl;
            DevAgent::start_in(bin(), &cdir, &ccfg, cp.http)
        })
        .collect();
    let ready = wait_for(Duration::from_secs(30), || {
        let (st, body) = get(&format!("{saddr}/v1/nodes"), &mgmt);
        st == 200 && body.matches("\"ready\"").count() == 2
    });
    assert!(ready, "clients not ready: {}", clients[1].log());

    // The job runs on client2; every request below goes to client1.
    let spec = raw_exec_job(
        root.path(),
        "far",
        "service",
        "/bin/sh",
        &["-c", "echo hello-from-far; exec sleep 3600"],
    );
    let hcl = std::fs::read_to_string(&spec).unwrap().replacen(
        "group \"g\" {\n",
        "group \"g\" {\n    constraint {\n      attribute = \"${node.unique.name}\"\n      value = \"client2\"\n    }\n",
        1,
    );
    std::fs::write(&spec, hcl).unwrap();
    let (code, out, err) = nomad(
        &saddr,
        &mgmt,
        &["job", "run", "-detach", spec.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut alloc = String::new();
    let running = wait_for(Duration::from_secs(30), || {
        let (_, body) = get(&format!("{saddr}/v1/job/far/allocations"), &mgmt);
        alloc = first_running_alloc(&body).unwrap_or_default();
        !alloc.is_empty()
    });
    assert!(running, "no running alloc: {}", clients[1].log());

    let token = |name: &str, caps: &str| make_token(root.path(), &saddr, &mgmt, name, caps);
    let reader = token("reader", "\"read-job\", \"list-jobs\", \"read-logs\"");
    // raw_exec does not isolate, so exec into it also takes alloc-node-exec.
    let exec = token(
        "exec",
        "\"read-job\", \"list-jobs\", \"alloc-exec\", \"alloc-node-exec\"",
    );

    let c1 = clients[0].address.clone();
    let logs = format!("{c1}/v1/client/fs/logs/{alloc}?task=t&type=stdout&plain=true");
    assert_eq!(get(&logs, "").0, 403, "anonymous read the logs");
    assert_eq!(get(&logs, &exec).0, 403, "logs without read-logs");
    let (st, body) = get(&logs, &reader);
    assert_eq!(st, 200);
    assert!(body.contains("hello-from-far"), "{body}");
    let unknown =
        format!("{c1}/v1/client/fs/logs/00000000-0000-0000-0000-000000000000?task=t&type=stdout");
    assert_eq!(get(&unknown, &reader).0, 404);

    // Following streams through: the first bytes arrive while the task still runs.
    let mut resp = ureq::get(&format!("{logs}&follow=true&origin=start"))
        .header("X-Nomad-Token", &reader)
        .call()
        .expect("follow logs");
    let mut reader_body = resp.body_mut().as_reader();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("hello-from-far") {
        let n = std::io::Read::read(&mut reader_body, &mut buf).expect("read stream");
        assert!(n > 0, "stream ended: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    drop(reader_body);

    // Exec through client1's agent (the exec token may not read nodes, so the CLI does not
    // go to client2 itself).
    let exec_args = ["alloc", "exec", alloc.as_str(), "/bin/echo", "far-exec-ok"];
    let (code, out, err) = nomad(&c1, &exec, &exec_args);
    assert_eq!((code, out.as_str()), (0, "far-exec-ok\n"), "{err}");
    let (code, out, err) = nomad(&c1, &reader, &exec_args);
    assert_eq!(code, 1, "reader exec: {out}");
    assert!(err.contains("Permission denied"), "{err}");
}
