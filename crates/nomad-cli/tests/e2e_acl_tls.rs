//! End to end (issue 4): ACLs, namespaces, TLS and the general options, through the real
//! `nomad` binary against `nomad agent -dev`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nomad_testkit::{cli_field, wait_for, DevAgent};

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

#[test]
fn acl_bootstrap_policies_tokens_and_namespaces() {
    let agent = DevAgent::start_with(bin(), "acl {\n  enabled = true\n}\n", false, |a| {
        a.get_json("/v1/agent/health").is_ok()
    });
    let addr = agent.address.clone();
    let anon = [("NOMAD_ADDR", addr.as_str())];

    let (code, out, err) = nomad(&["acl", "bootstrap"], &anon, None);
    assert_eq!(code, 0, "bootstrap: {out}{err}");
    let mgmt = cli_field(&out, "Secret ID");
    assert_eq!(cli_field(&out, "Type"), "management", "{out}");
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
    let ro = cli_field(&out, "Secret ID");
    let ro_accessor = cli_field(&out, "Accessor ID");
    assert!(out.contains("Policies     = [readonly]"), "{out}");
    assert_ne!(cli_field(&out, "Expiry Time"), "<none>", "{out}");
    let reader = [("NOMAD_ADDR", addr.as_str()), ("NOMAD_TOKEN", ro.as_str())];
    let (code, out, err) = nomad(&["job", "status", "hello"], &reader, None);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = nomad(&["job", "run", "-detach", &hello], &reader, None);
    assert_eq!(code, 1);
    assert!(err.contains("Permission denied"), "{err}");
    let (code, out, _) = nomad(&["acl", "token", "self"], &reader, None);
    assert_eq!(code, 0);
    assert_eq!(cli_field(&out, "Name"), "ro");
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
    // info and update by accessor; the secret and expiry stay.
    let (code, out, err) = nomad(&["acl", "token", "info", &ro_accessor], &admin, None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cli_field(&out, "Name"), "ro", "{out}");
    let (code, out, err) = nomad(
        &["acl", "token", "update", "-name", "read-only", &ro_accessor],
        &admin,
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(cli_field(&out, "Name"), "read-only", "{out}");
    assert_eq!(cli_field(&out, "Secret ID"), ro, "{out}");
    assert!(out.contains("Policies     = [readonly]"), "{out}");
    let (code, out, _) = nomad(&["acl", "token", "self"], &reader, None);
    assert_eq!((code, cli_field(&out, "Name").as_str()), (0, "read-only"));
    // Policy info and delete; a deleted policy is gone.
    let (code, out, err) = nomad(&["acl", "policy", "info", "readonly"], &admin, None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("policy = \"read\""), "{out}");
    let spare = dir.path().join("spare.hcl");
    std::fs::write(&spare, "node {\n  policy = \"read\"\n}\n").expect("write");
    let (code, _, err) = nomad(
        &["acl", "policy", "apply", "spare", spare.to_str().unwrap()],
        &admin,
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = nomad(&["acl", "policy", "delete", "spare"], &admin, None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Successfully deleted \"spare\" ACL policy!"),
        "{out}"
    );
    let (code, _, _) = nomad(&["acl", "policy", "info", "spare"], &admin, None);
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
    assert_eq!(cli_field(&out, "Description"), "team a", "{out}");
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

/// Each general option of the docs with its environment variable, and the flag winning over
/// the variable: -ca-path, -tls-server-name, -tls-skip-verify, -region, -no-color and
/// -force-color (the address, CA, client certificate and token pairs are covered above).
#[test]
fn general_options_each_flag_and_its_variable() {
    let pki = make_pki();
    let ca = pki.p("nomad-agent-ca.pem");
    let cert = pki.p("global-cli-nomad.pem");
    let key = pki.p("global-cli-nomad-key.pem");
    let extra = format!(
        "tls {{\n  http = true\n  ca_file = \"{ca}\"\n  cert_file = \"{}\"\n  key_file = \"{}\"\n  verify_https_client = true\n}}\n",
        pki.p("global-server-nomad.pem"),
        pki.p("global-server-nomad-key.pem"),
    );
    let certs = |addr: &str| {
        vec![
            ("NOMAD_ADDR", addr.to_string()),
            ("NOMAD_CLIENT_CERT", cert.clone()),
            ("NOMAD_CLIENT_KEY", key.clone()),
        ]
    };
    let agent = DevAgent::start_with(bin(), &extra, true, |a| {
        let mut env = certs(&a.address);
        env.push(("NOMAD_CACERT", ca.clone()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (c, o, _) = nomad(&["node", "status"], &env, None);
        c == 0 && o.contains("ready")
    });
    let addr = agent.address.clone();
    let run = |args: &[&str], extra_env: &[(&str, &str)]| {
        let mut env = certs(&addr);
        env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        nomad(args, &env, None)
    };
    let ok = |what: &str, (code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "{what}: {out}{err}");
        out
    };
    let fails = |what: &str, (code, out, err): (i32, String, String)| {
        assert_eq!(code, 1, "{what} succeeded: {out}");
        err
    };

    // -ca-path / NOMAD_CAPATH: a directory of CA certificates.
    let ca_dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(&ca, ca_dir.path().join("ca.pem")).expect("copy ca");
    let ca_dir = ca_dir.path().display().to_string();
    ok(
        "-ca-path",
        run(&["node", "status", "-ca-path", &ca_dir], &[]),
    );
    ok(
        "NOMAD_CAPATH",
        run(&["node", "status"], &[("NOMAD_CAPATH", &ca_dir)]),
    );
    fails("no CA at all", run(&["node", "status"], &[]));

    // -tls-server-name / NOMAD_TLS_SERVER_NAME: the name the agent's certificate must carry.
    let with_ca = [("NOMAD_CACERT", ca.as_str())];
    let err = fails(
        "-tls-server-name wrong",
        run(
            &["node", "status", "-tls-server-name", "wrong.example"],
            &with_ca,
        ),
    );
    assert!(err.contains("wrong.example"), "{err}");
    ok(
        "-tls-server-name right",
        run(
            &["node", "status", "-tls-server-name", "server.global.nomad"],
            &with_ca,
        ),
    );
    let wrong_name = [
        ("NOMAD_CACERT", ca.as_str()),
        ("NOMAD_TLS_SERVER_NAME", "wrong.example"),
    ];
    fails(
        "NOMAD_TLS_SERVER_NAME wrong",
        run(&["node", "status"], &wrong_name),
    );
    ok(
        "-tls-server-name beats NOMAD_TLS_SERVER_NAME",
        run(
            &["node", "status", "-tls-server-name", "server.global.nomad"],
            &wrong_name,
        ),
    );

    // -tls-skip-verify / NOMAD_SKIP_VERIFY: no CA needed.
    ok(
        "-tls-skip-verify",
        run(&["node", "status", "-tls-skip-verify"], &[]),
    );
    let skip = [("NOMAD_SKIP_VERIFY", "true")];
    ok("NOMAD_SKIP_VERIFY", run(&["node", "status"], &skip));
    fails(
        "-tls-skip-verify=false beats NOMAD_SKIP_VERIFY",
        run(&["node", "status", "-tls-skip-verify=false"], &skip),
    );

    // -region / NOMAD_REGION: an unknown region has no path.
    let err = fails(
        "-region nowhere",
        run(&["node", "status", "-region", "nowhere"], &with_ca),
    );
    assert!(err.contains("No path to region"), "{err}");
    let nowhere = [("NOMAD_CACERT", ca.as_str()), ("NOMAD_REGION", "nowhere")];
    let err = fails("NOMAD_REGION nowhere", run(&["node", "status"], &nowhere));
    assert!(err.contains("No path to region"), "{err}");
    ok(
        "-region beats NOMAD_REGION",
        run(&["node", "status", "-region", "global"], &nowhere),
    );

    // -force-color / NOMAD_CLI_FORCE_COLOR colour even into a pipe; -no-color /
    // NOMAD_CLI_NO_COLOR win; a pipe alone gets none.
    let list = ok("node status", run(&["node", "status"], &with_ca));
    let node = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a node row")
        .to_string();
    const BOLD: &str = "\x1b[1m";
    let out = ok("plain", run(&["node", "status", &node], &with_ca));
    assert!(!out.contains(BOLD) && out.contains("Node Events"), "{out}");
    let out = ok(
        "-force-color",
        run(&["node", "status", "-force-color", &node], &with_ca),
    );
    assert!(
        out.contains(&format!("{BOLD}Node Events\x1b[0m")),
        "{out:?}"
    );
    let force = [
        ("NOMAD_CACERT", ca.as_str()),
        ("NOMAD_CLI_FORCE_COLOR", "1"),
    ];
    let out = ok(
        "NOMAD_CLI_FORCE_COLOR",
        run(&["node", "status", &node], &force),
    );
    assert!(out.contains(BOLD), "{out:?}");
    let out = ok(
        "-no-color beats NOMAD_CLI_FORCE_COLOR",
        run(&["node", "status", "-no-color", &node], &force),
    );
    assert!(!out.contains(BOLD), "{out:?}");
    let no = [("NOMAD_CACERT", ca.as_str()), ("NOMAD_CLI_NO_COLOR", "1")];
    let out = ok(
        "NOMAD_CLI_NO_COLOR beats -force-color",
        run(&["node", "status", "-force-color", &node], &no),
    );
    assert!(!out.contains(BOLD), "{out:?}");
}
