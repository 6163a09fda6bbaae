//! End to end (issue 4): ACLs, namespaces, TLS and the general options, through the real
//! `nomad` binary against `nomad agent -dev`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nomad_testkit::{wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

/// Runs the CLI with exactly `env` (NOMAD_* from the test's own environment removed).
fn nomad(args: &[&str], env: &[(&str, &str)], cwd: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("NOMAD_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("run nomad");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn field(out: &str, key: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once('='))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn acl_bootstrap_policies_tokens_and_namespaces() {
    let agent = DevAgent::start_with(bin(), "acl {\n  enabled = true\n}\n", false, |a| {
        a.get_json("/v1/agent/health").is_ok()
    });
    let addr = agent.address.clone();
    let anon = [("NOMAD_ADDR", addr.as_str())];

    let (code, out, err) = nomad(&["acl", "bootstrap"], &anon, None);
    assert_eq!(code, 0, "bootstrap: {out}{err}");
    let mgmt = field(&out, "Secret ID");
    assert_eq!(field(&out, "Type"), "management", "{out}");
    assert_eq!(mgmt.len(), 36, "{out}");
    let (code, _, err) = nomad(&["acl", "bootstrap"], &anon, None);
    assert_eq!(code, 1);
    assert!(err.contains("ACL bootstrap already done"), "{err}");

    let admin = [
        ("NOMAD_ADDR", addr.as_str()),
        ("NOMAD_TOKEN", mgmt.as_str()),
    ];
    let ready = wait_for(Duration::from_secs(30), || {
        let (c, o, _) = nomad(&["node", "status"], &admin, None);
        c == 0 && o.contains("ready")
    });
    assert!(ready, "node not ready; log:\n{}", agent.log());

    // Without a token nothing runs; with the management token it does.
    let hello = example("hello.nomad.hcl");
    let (code, out, err) = nomad(&["job", "run", "-detach", &hello], &anon, None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("Permission denied"), "{err}");
    let (code, out, err) = nomad(&["job", "run", "-detach", &hello], &admin, None);
    assert_eq!(code, 0, "{out}{err}");

    // A read-only client token: reads, cannot submit.
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("readonly.hcl");
    std::fs::write(
        &rules,
        "namespace \"default\" {\n  policy = \"read\"\n}\nnode {\n  policy = \"read\"\n}\n",
    )
    .expect("write");
    let (code, out, err) = nomad(
        &[
            "acl",
            "policy",
            "apply",
            "-description",
            "Read only",
            "readonly",
            rules.to_str().unwrap(),
        ],
        &admin,
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Successfully wrote \"readonly\" ACL policy!"),
        "{out}"
    );
    let (code, out, _) = nomad(&["acl", "policy", "list"], &admin, None);
    assert_eq!(code, 0);
    assert!(
        out.contains("readonly") && out.contains("Read only"),
        "{out}"
    );

    let bad = dir.path().join("bad.hcl");
    std::fs::write(
        &bad,
        "namespace \"default\" {\n  capabilities = [\"fly\"]\n}\n",
    )
    .expect("write");
    let (code, _, err) = nomad(
        &["acl", "policy", "apply", "bad", bad.to_str().unwrap()],
        &admin,
        None,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("Error writing ACL policy") && err.contains("fly"),
        "{err}"
    );

    let (code, out, err) = nomad(
        &[
            "acl", "token", "create", "-name", "ro", "-policy", "readonly", "-ttl", "1h",
        ],
        &admin,
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let ro = field(&out, "Secret ID");
    let ro_accessor = field(&out, "Accessor ID");
    assert!(out.contains("Policies     = [readonly]"), "{out}");
    assert_ne!(field(&out, "Expiry Time"), "<none>", "{out}");
    let reader = [("NOMAD_ADDR", addr.as_str()), ("NOMAD_TOKEN", ro.as_str())];
    let (code, out, err) = nomad(&["job", "status", "hello"], &reader, None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = nomad(&["job", "run", "-detach", &hello], &reader, None);
    assert_eq!(code, 1);
    assert!(err.contains("Permission denied"), "{err}");
    let (code, out, _) = nomad(&["acl", "token", "self"], &reader, None);
    assert_eq!(code, 0);
    assert_eq!(field(&out, "Name"), "ro");
    let (code, _, err) = nomad(&["acl", "token", "list"], &reader, None);
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = nomad(&["acl", "token", "list"], &admin, None);
    assert_eq!(code, 0);
    assert!(
        out.contains("ro") && out.contains("Bootstrap Token"),
        "{out}"
    );
    assert!(
        !out.contains(&ro) && !out.contains(&mgmt),
        "secrets listed: {out}"
    );
    // -token beats NOMAD_TOKEN.
    let (code, _, _) = nomad(&["acl", "token", "list", "-token", &ro], &admin, None);
    assert_eq!(code, 1);

    // Namespaces.
    let (code, out, err) = nomad(
        &["namespace", "apply", "-description", "team a", "team-a"],
        &admin,
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Successfully applied namespace \"team-a\"!"),
        "{out}"
    );
    let (code, out, _) = nomad(&["namespace", "list"], &admin, None);
    assert_eq!(code, 0);
    assert!(out.contains("team-a") && out.contains("default"), "{out}");
    let (code, out, _) = nomad(&["namespace", "status", "team-a"], &admin, None);
    assert_eq!(code, 0);
    assert_eq!(field(&out, "Description"), "team a", "{out}");
    let (code, out, err) = nomad(
        &["job", "run", "-detach", "-namespace", "team-a", &hello],
        &admin,
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    // The read-only token sees only default's jobs, even with -namespace=*.
    let (code, out, err) = nomad(&["job", "status", "-namespace", "*"], &reader, None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("hello") && !out.contains("team-a"), "{out}");
    let (code, _, err) = nomad(&["namespace", "delete", "team-a"], &admin, None);
    assert_eq!(code, 1);
    assert!(err.contains("non-terminal jobs"), "{err}");
    let (code, out, err) = nomad(
        &[
            "job",
            "stop",
            "-purge",
            "-detach",
            "-namespace",
            "team-a",
            "hello",
        ],
        &admin,
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    // Refused while the stopped job's allocations are still shutting down; then deleted.
    let mut last = (0, String::new(), String::new());
    let deleted = wait_for(Duration::from_secs(30), || {
        last = nomad(&["namespace", "delete", "team-a"], &admin, None);
        last.0 == 0
    });
    assert!(deleted, "namespace delete: {last:?}");
    assert!(
        last.1
            .contains("Successfully deleted namespace \"team-a\"!"),
        "{last:?}"
    );

    // A deleted token stops working.
    let (code, out, _) = nomad(&["acl", "token", "delete", &ro_accessor], &admin, None);
    assert_eq!(code, 0);
    assert!(out.contains("successfully deleted"), "{out}");
    let (code, _, err) = nomad(&["job", "status"], &reader, None);
    assert_eq!(code, 1);
    assert!(err.contains("ACL token not found"), "{err}");
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn p(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn make_pki() -> Pki {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = Some(dir.path());
    let (code, out, err) = nomad(&["tls", "ca", "create"], &[], cwd);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("nomad-agent-ca.pem"), "{out}");
    let (code, _, err) = nomad(&["tls", "ca", "create"], &[], cwd);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    for role in ["-server", "-cli"] {
        let (code, out, err) = nomad(&["tls", "cert", "create", role], &[], cwd);
        assert_eq!(code, 0, "{role}: {out}{err}");
    }
    let (code, _, err) = nomad(&["tls", "cert", "create", "-server"], &[], cwd);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = nomad(&["tls", "cert", "create"], &[], cwd);
    assert_eq!(code, 1);
    assert!(err.contains("-server, -client, or -cli"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    for key in [
        "nomad-agent-ca-key.pem",
        "global-server-nomad-key.pem",
        "global-cli-nomad-key.pem",
    ] {
        let mode = std::fs::metadata(dir.path().join(key))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    Pki { dir }
}

#[test]
fn tls_certificates_mtls_and_flag_precedence() {
    let pki = make_pki();
    let ca = pki.p("nomad-agent-ca.pem");
    let cli_cert = pki.p("global-cli-nomad.pem");
    let cli_key = pki.p("global-cli-nomad-key.pem");
    let extra = format!(
        "tls {{\n  http = true\n  rpc = true\n  ca_file = \"{ca}\"\n  cert_file = \"{}\"\n  key_file = \"{}\"\n  verify_https_client = true\n}}\n",
        pki.p("global-server-nomad.pem"),
        pki.p("global-server-nomad-key.pem"),
    );
    let flags = |addr: &str| -> Vec<String> {
        vec![
            format!("-address={addr}"),
            format!("-ca-cert={ca}"),
            format!("-client-cert={cli_cert}"),
            format!("-client-key={cli_key}"),
        ]
    };
    let agent = DevAgent::start_with(bin(), &extra, true, |a| {
        let mut args = vec!["node".to_string(), "status".to_string()];
        args.extend(flags(&a.address));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (c, o, _) = nomad(&args, &[], None);
        c == 0 && o.contains("ready")
    });
    let addr = agent.address.clone();
    assert!(addr.starts_with("https://"));
    assert!(agent.log().contains("https://"), "banner: {}", agent.log());

    // All by environment.
    let env = [
        ("NOMAD_ADDR", addr.as_str()),
        ("NOMAD_CACERT", ca.as_str()),
        ("NOMAD_CLIENT_CERT", cli_cert.as_str()),
        ("NOMAD_CLIENT_KEY", cli_key.as_str()),
    ];
    let (code, out, err) = nomad(&["node", "status"], &env, None);
    assert_eq!(code, 0, "{out}{err}");

    // Without a client certificate the handshake fails, and the CLI says which and why.
    let (code, _, err) = nomad(
        &["node", "status", "-address", &addr, "-ca-cert", &ca],
        &[],
        None,
    );
    assert_eq!(code, 1);
    eprintln!("without a client certificate: {err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Without the CA the server's certificate is not trusted.
    let (code, _, err) = nomad(
        &[
            "node",
            "status",
            "-address",
            &addr,
            "-client-cert",
            &cli_cert,
            "-client-key",
            &cli_key,
        ],
        &[],
        None,
    );
    assert_eq!(code, 1);
    eprintln!("without the CA: {err}");
    assert!(err.contains("certificate"), "{err}");

    // Flags beat the environment: a wrong NOMAD_ADDR with the right -address works ...
    let wrong = [
        ("NOMAD_ADDR", "https://127.0.0.1:1"),
        ("NOMAD_CACERT", ca.as_str()),
        ("NOMAD_CLIENT_CERT", cli_cert.as_str()),
        ("NOMAD_CLIENT_KEY", cli_key.as_str()),
    ];
    let (code, out, err) = nomad(&["node", "status", "-address", &addr], &wrong, None);
    assert_eq!(code, 0, "{out}{err}");
    // ... and a wrong -client-cert beats a right NOMAD_CLIENT_CERT.
    let missing = pki.p("nope.pem");
    let (code, _, err) = nomad(&["node", "status", "-client-cert", &missing], &env, None);
    assert_eq!(code, 1);
    assert!(err.contains("nope.pem"), "{err}");
}
