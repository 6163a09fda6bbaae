//! End-to-end tests: generate a PKI with our own functions, serve HTTPS with
//! `server_config` + tokio-rustls, and connect with `ureq_agent`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::*;

struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    ca_key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, ca_key_pem) = create_ca(&CaOptions::default()).expect("create_ca");
        let (ca_name, ca_key_name) = default_ca_file_names("nomad");
        let ca = dir.path().join(ca_name);
        let ca_key = dir.path().join(ca_key_name);
        std::fs::write(&ca, &ca_pem).unwrap();
        std::fs::write(&ca_key, &ca_key_pem).unwrap();
        for role in [CertRole::Server, CertRole::Client, CertRole::Cli] {
            let opts = CertOptions {
                role,
                ..CertOptions::default()
            };
            let (cert, key) = create_cert(&ca_pem, &ca_key_pem, &opts).expect("create_cert");
            let (cert_name, key_name) = default_file_names(&role, "global", "nomad");
            std::fs::write(dir.path().join(cert_name), cert).unwrap();
            std::fs::write(dir.path().join(key_name), key).unwrap();
        }
        Pki { dir, ca, ca_key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_cfg(&self, verify_https_client: bool) -> ServerTlsConfig {
        ServerTlsConfig {
            ca_file: Some(self.ca.clone()),
            cert_file: self.path("global-server-nomad.pem"),
            key_file: self.path("global-server-nomad-key.pem"),
            verify_https_client,
        }
    }

    fn trusting(&self) -> ClientTlsConfig {
        ClientTlsConfig {
            ca_cert: Some(self.ca.clone()),
            ..ClientTlsConfig::default()
        }
    }
}

/// A tokio-rustls server answering every request with `200 ok`. Dropping it stops it.
struct TestServer {
    addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl TestServer {
    fn start(cfg: Arc<rustls::ServerConfig>) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = acceptor(cfg);
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TestServer { addr, _rt: rt }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/v1/agent/self", self.addr.port())
    }
}

fn get(cfg: &ClientTlsConfig, url: &str) -> Result<(u16, String), ureq::Error> {
    let agent = ureq_agent(cfg).expect("ureq_agent");
    let resp = agent.get(url).call()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_string()?;
    Ok((status, body))
}

#[test]
fn trusted_ca_gets_200() {
    let pki = Pki::new();
    let server = TestServer::start(server_config(&pki.server_cfg(false)).unwrap());
    assert_eq!(
        get(&pki.trusting(), &server.url()).unwrap(),
        (200, "ok".to_string())
    );
}

#[test]
fn ca_path_directory_is_trusted() {
    let pki = Pki::new();
    let server = TestServer::start(server_config(&pki.server_cfg(false)).unwrap());
    let ca_dir = pki.path("cas");
    std::fs::create_dir(&ca_dir).unwrap();
    std::fs::copy(&pki.ca, ca_dir.join("ca.pem")).unwrap();
    let cfg = ClientTlsConfig {
        ca_path: Some(ca_dir),
        ..ClientTlsConfig::default()
    };
    assert_eq!(get(&cfg, &server.url()).unwrap().0, 200);
}

#[test]
fn no_ca_is_unknown_authority() {
    let pki = Pki::new();
    let server = TestServer::start(server_config(&pki.server_cfg(false)).unwrap());
    let cfg = ClientTlsConfig::default();
    let err = get(&cfg, &server.url()).unwrap_err();
    let msg = explain_handshake_error(&err, &cfg);
    eprintln!("EXPLAINED: {msg} // RAW: {err}");
    assert!(
        msg.contains("certificate signed by unknown authority"),
        "{msg}"
    );
    assert!(msg.contains("127.0.0.1"), "{msg}");
    assert!(msg.contains("-ca-cert"), "{msg}");
}

#[test]
fn other_ca_is_unknown_authority_naming_the_ca_file() {
    let pki = Pki::new();
    let other = Pki::new();
    let server = TestServer::start(server_config(&pki.server_cfg(false)).unwrap());
    let cfg = other.trusting();
    let err = get(&cfg, &server.url()).unwrap_err();
    let msg = explain_handshake_error(&err, &cfg);
    eprintln!("EXPLAINED: {msg} // RAW: {err}");
    assert!(
        msg.starts_with("x509: certificate signed by unknown authority (the server's certificate for 127.0.0.1 is not signed by the CA in "),
        "{msg}"
    );
    assert!(msg.contains(&other.ca.display().to_string()), "{msg}");
}

#[test]
fn skip_verify_gets_200() {
    let pki = Pki::new();
    let server = TestServer::start(server_config(&pki.server_cfg(false)).unwrap());
    let cfg = ClientTlsConfig {
        skip_verify: true,
        ..ClientTlsConfig::default()
    };
    assert_eq!(get(&cfg, &server.url()).unwrap().0, 200);
}

#[test]
fn mutual_tls_requires_client_cert() {
    let pki = Pki::new();
    let server = TestServer::start(server_config(&pki.server_cfg(true)).unwrap());

    // Without a client certificate: the handshake fails.
    let cfg = pki.trusting();
    let err = get(&cfg, &server.url()).unwrap_err();
    let msg = explain_handshake_error(&err, &cfg);
    eprintln!("EXPLAINED: {msg} // RAW: {err}");
    assert!(msg.contains("client certificate"), "{msg}");

    // With the client and with the cli certificate: 200.
    for role in ["client", "cli"] {
        let cfg = ClientTlsConfig {
            client_cert: Some(pki.path(&format!("global-{role}-nomad.pem"))),
            client_key: Some(pki.path(&format!("global-{role}-nomad-key.pem"))),
            ..pki.trusting()
        };
        assert_eq!(get(&cfg, &server.url()).unwrap().0, 200, "{role}");
    }

    // A client certificate from another CA is rejected.
    let other = Pki::new();
    let cfg = ClientTlsConfig {
        client_cert: Some(other.path("global-cli-nomad.pem")),
        client_key: Some(other.path("global-cli-nomad-key.pem")),
        ..pki.trusting()
    };
    let err = get(&cfg, &server.url()).unwrap_err();
    let msg = explain_handshake_error(&err, &cfg);
    eprintln!("EXPLAINED: {msg} // RAW: {err}");
    assert!(msg.contains("rejected the client certificate"), "{msg}");
}

#[test]
fn server_name_override() {
    let pki = Pki::new();
    let server = TestServer::start(server_config(&pki.server_cfg(false)).unwrap());
    for name in ["server.global.nomad", "localhost", "127.0.0.1"] {
        let cfg = ClientTlsConfig {
            server_name: Some(name.to_string()),
            ..pki.trusting()
        };
        assert_eq!(get(&cfg, &server.url()).unwrap().0, 200, "{name}");
    }
    let cfg = ClientTlsConfig {
        server_name: Some("client.global.nomad".to_string()),
        ..pki.trusting()
    };
    let err = get(&cfg, &server.url()).unwrap_err();
    let msg = explain_handshake_error(&err, &cfg);
    eprintln!("EXPLAINED: {msg} // RAW: {err}");
    assert!(
        msg.contains("x509: certificate is valid for server.global.nomad, localhost, 127.0.0.1, not client.global.nomad")
            && msg.contains("server.global.nomad")
            && msg.contains("not client.global.nomad"),
        "{msg}"
    );
    assert!(msg.contains("-tls-server-name"), "{msg}");
}

#[test]
fn client_cert_is_not_a_server_cert_for_other_names() {
    // The client certificate also carries serverAuth and 127.0.0.1 (as in Nomad), but not
    // server.global.nomad.
    let pki = Pki::new();
    let cfg = ServerTlsConfig {
        cert_file: pki.path("global-client-nomad.pem"),
        key_file: pki.path("global-client-nomad-key.pem"),
        ..pki.server_cfg(false)
    };
    let server = TestServer::start(server_config(&cfg).unwrap());
    assert_eq!(get(&pki.trusting(), &server.url()).unwrap().0, 200);
    let client = ClientTlsConfig {
        server_name: Some("server.global.nomad".into()),
        ..pki.trusting()
    };
    assert!(get(&client, &server.url()).is_err());
}

#[test]
fn plain_http_server_is_explained() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            use std::io::{Read, Write};
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let cfg = ClientTlsConfig {
        skip_verify: true,
        ..ClientTlsConfig::default()
    };
    let err = get(&cfg, &format!("https://127.0.0.1:{port}/")).unwrap_err();
    let msg = explain_handshake_error(&err, &cfg);
    eprintln!("EXPLAINED: {msg} // RAW: {err}");
    assert!(msg.contains("plain HTTP"), "{msg}");
    handle.join().unwrap();
}

fn parse_pem_cert(pem: &str) -> Vec<u8> {
    crate::pem::parse_certs(pem.as_bytes(), Path::new("x"))
        .unwrap()
        .remove(0)
        .to_vec()
}

fn sans_of(der: &[u8]) -> (Vec<String>, Vec<IpAddr>) {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
                }
                GeneralName::IPAddress(b) if b.len() == 16 => {
                    ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()))
                }
                _ => {}
            }
        }
    }
    (dns, ips)
}

fn validity_days(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let v = cert.validity();
    (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400
}

#[test]
fn generated_certificates_have_nomads_names_and_lifetimes() {
    let (ca_pem, ca_key) = create_ca(&CaOptions::default()).unwrap();
    let ca_der = parse_pem_cert(&ca_pem);
    assert_eq!(validity_days(&ca_der), 1825);
    {
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert!(ca.is_ca());
        let cn = ca
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        assert!(cn.starts_with("Nomad Agent CA "), "{cn}");
        assert!(
            cn["Nomad Agent CA ".len()..].parse::<u128>().is_ok(),
            "{cn}"
        );
        let org = ca.subject().iter_organization().next().unwrap();
        assert_eq!(org.as_str().unwrap(), "HashiCorp Inc.");
    }
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    let cases = [
        (
            CertRole::Server,
            vec!["server.global.nomad", "localhost"],
            vec![localhost],
        ),
        (
            CertRole::Client,
            vec!["client.global.nomad", "localhost"],
            vec![localhost],
        ),
        (CertRole::Cli, vec!["cli.global.nomad", "localhost"], vec![]),
    ];
    for (role, want_dns, want_ips) in cases {
        let opts = CertOptions {
            role,
            ..CertOptions::default()
        };
        let (pem, key) = create_cert(&ca_pem, &ca_key, &opts).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let der = parse_pem_cert(&pem);
        let (dns, ips) = sans_of(&der);
        assert_eq!(dns, want_dns, "{role:?}");
        assert_eq!(ips, want_ips, "{role:?}");
        assert_eq!(validity_days(&der), 365);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), want_dns[0]);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert!(!cert.is_ca());
    }

    // Region and domain, extra names and days.
    let opts = CertOptions {
        role: CertRole::Server,
        region: "eu".into(),
        domain: "example".into(),
        days: 10,
        additional_dns: vec![" nomad.example.com ".into(), "".into()],
        additional_ips: vec!["10.0.0.5".parse().unwrap()],
    };
    let (pem, _) = create_cert(&ca_pem, &ca_key, &opts).unwrap();
    let der = parse_pem_cert(&pem);
    let (dns, ips) = sans_of(&der);
    assert_eq!(
        dns,
        [
            "nomad.example.com",
            "server.eu.example",
            "server.eu.nomad",
            "server.global.nomad",
            "localhost"
        ]
    );
    assert_eq!(ips, ["10.0.0.5".parse::<IpAddr>().unwrap(), localhost]);
    assert_eq!(validity_days(&der), 10);

    let opts = CertOptions {
        role: CertRole::Client,
        region: "eu".into(),
        ..CertOptions::default()
    };
    let (pem, _) = create_cert(&ca_pem, &ca_key, &opts).unwrap();
    let (dns, _) = sans_of(&parse_pem_cert(&pem));
    assert_eq!(dns, ["client.eu.nomad", "client.global.nomad", "localhost"]);

    let opts = CertOptions {
        role: CertRole::Cli,
        domain: "corp".into(),
        ..CertOptions::default()
    };
    let (pem, _) = create_cert(&ca_pem, &ca_key, &opts).unwrap();
    let (dns, _) = sans_of(&parse_pem_cert(&pem));
    assert_eq!(dns, ["cli.global.nomad", "cli.global.corp", "localhost"]);
}

#[test]
fn file_names() {
    assert_eq!(
        default_file_names(&CertRole::Server, "global", "nomad"),
        (
            "global-server-nomad.pem".to_string(),
            "global-server-nomad-key.pem".to_string()
        )
    );
    assert_eq!(
        default_file_names(&CertRole::Cli, "eu", "corp").0,
        "eu-cli-corp.pem"
    );
    assert_eq!(
        default_ca_file_names("nomad"),
        (
            "nomad-agent-ca.pem".to_string(),
            "nomad-agent-ca-key.pem".to_string()
        )
    );
}

#[test]
fn name_constrained_ca() {
    let opts = CaOptions {
        common_name: Some("My CA".into()),
        domain: "example".into(),
        name_constraint: true,
        ..CaOptions::default()
    };
    let (ca_pem, ca_key) = create_ca(&opts).unwrap();
    {
        let der = parse_pem_cert(&ca_pem);
        let (_, ca) = x509_parser::parse_x509_certificate(&der).unwrap();
        let nc = ca.name_constraints().unwrap().unwrap();
        assert!(nc.critical);
        assert_eq!(nc.value.permitted_subtrees.as_ref().unwrap().len(), 3);
        let cn = ca.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "My CA");
    }
    // Names under the permitted zones are fine...
    let ok = CertOptions {
        domain: "example".into(),
        ..CertOptions::default()
    };
    create_cert(&ca_pem, &ca_key, &ok).unwrap();
    // ...others are refused at generation time.
    let bad = CertOptions {
        additional_dns: vec!["evil.com".into()],
        ..CertOptions::default()
    };
    let err = create_cert(&ca_pem, &ca_key, &bad).unwrap_err();
    assert!(matches!(err, TlsError::Verify(_)), "{err}");
}

/// Unwraps our PKCS#8 key into the SEC1 `EC PRIVATE KEY` form Nomad writes.
fn pkcs8_to_sec1_pem(pkcs8_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pkcs8_pem.as_bytes()).unwrap();
    let (_, body, _) = crate::certgen::der_read(der.secret_pkcs8_der()).unwrap();
    let (_, _, rest) = crate::certgen::der_read(body).unwrap(); // version
    let (_, _, rest) = crate::certgen::der_read(rest).unwrap(); // algorithm
    let (tag, sec1, _) = crate::certgen::der_read(rest).unwrap();
    assert_eq!(tag, 0x04);
    let b64 = base64_encode(sec1);
    let mut out = String::from("-----BEGIN EC PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END EC PRIVATE KEY-----\n");
    out
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn sec1_ca_key_is_accepted() {
    let (ca_pem, ca_key) = create_ca(&CaOptions::default()).unwrap();
    let sec1 = pkcs8_to_sec1_pem(&ca_key);
    let (pem, _) = create_cert(&ca_pem, &sec1, &CertOptions::default()).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"));

    // A SEC1 server key works for the listener too.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = create_cert(&ca_pem, &ca_key, &CertOptions::default()).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert).unwrap();
    std::fs::write(dir.path().join("k.pem"), pkcs8_to_sec1_pem(&key)).unwrap();
    server_config(&ServerTlsConfig {
        ca_file: None,
        cert_file: dir.path().join("c.pem"),
        key_file: dir.path().join("k.pem"),
        verify_https_client: false,
    })
    .unwrap();
}

#[test]
fn openssl_sec1_ca_is_accepted_when_available() {
    // Nomad-style SEC1 keys carry the curve parameters; openssl writes the same form.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ca-key.pem");
    let cert = dir.path().join("ca.pem");
    let Ok(status) = std::process::Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .status()
    else {
        return; // no openssl binary: nothing to compare against
    };
    if !status.success() {
        return;
    }
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-new",
            "-days",
            "2",
            "-subj",
            "/CN=openssl CA",
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    if !status.success() {
        return;
    }
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(key_pem.contains("BEGIN EC PRIVATE KEY"), "{key_pem}");
    let ca_pem = std::fs::read_to_string(&cert).unwrap();
    create_cert(&ca_pem, &key_pem, &CertOptions::default()).unwrap();
}

#[test]
fn error_messages_name_the_file() {
    let pki = Pki::new();
    let missing = pki.path("nope.pem");

    let err = server_config(&ServerTlsConfig {
        ca_file: Some(missing.clone()),
        ..pki.server_cfg(true)
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("failed to read CA file {missing:?}: No such file or directory")
    );

    // A key file given as the certificate: no certificates.
    let err = server_config(&ServerTlsConfig {
        cert_file: pki.ca_key.clone(),
        ..pki.server_cfg(false)
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no certificates found in {:?}", pki.ca_key)
    );

    // A certificate given as the key: no private key.
    let err = server_config(&ServerTlsConfig {
        key_file: pki.ca.clone(),
        ..pki.server_cfg(false)
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no private key found in {:?}", pki.ca)
    );

    // The client key with the server certificate.
    let key = pki.path("global-client-nomad-key.pem");
    let err = server_config(&ServerTlsConfig {
        key_file: key.clone(),
        ..pki.server_cfg(false)
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "private key in {key:?} does not match certificate {:?}",
            pki.path("global-server-nomad.pem")
        )
    );

    let err = server_config(&ServerTlsConfig {
        ca_file: None,
        ..pki.server_cfg(true)
    })
    .unwrap_err();
    assert!(matches!(err, TlsError::ClientVerifyWithoutCa));

    let err = client_config(&ClientTlsConfig {
        client_cert: Some(pki.path("global-cli-nomad.pem")),
        ..ClientTlsConfig::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, TlsError::IncompleteClientCert { .. }),
        "{err}"
    );

    let err = client_config(&ClientTlsConfig {
        ca_cert: Some(missing.clone()),
        ..ClientTlsConfig::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().starts_with("failed to read CA file"),
        "{err}"
    );

    // A CA path containing a non-PEM file is an error naming that file.
    let dir = pki.path("capath");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("README"), "hello").unwrap();
    let err = client_config(&ClientTlsConfig {
        ca_path: Some(dir.clone()),
        ..ClientTlsConfig::default()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no certificates found in {:?}", dir.join("README"))
    );

    let err = create_cert("garbage", "garbage", &CertOptions::default()).unwrap_err();
    assert!(err.to_string().starts_with("error reading CA"), "{err}");
}

#[test]
fn go_parse_bool_and_server_name() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(parse_go_bool(t), Some(true), "{t}");
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(parse_go_bool(f), Some(false), "{f}");
    }
    assert_eq!(parse_go_bool("yes"), None);
    assert_eq!(parse_go_bool(""), None);

    let cfg = ClientTlsConfig::default();
    assert_eq!(cfg.server_name("127.0.0.1"), "127.0.0.1");
    assert_eq!(cfg.server_name("[::1]"), "::1");
    let cfg = ClientTlsConfig {
        server_name: Some("server.global.nomad".into()),
        ..ClientTlsConfig::default()
    };
    assert_eq!(cfg.server_name("10.0.0.1"), "server.global.nomad");
    assert!(cfg.rustls_server_name("x").is_ok());
    let bad = ClientTlsConfig {
        server_name: Some("not a name!".into()),
        ..ClientTlsConfig::default()
    };
    assert!(matches!(
        bad.rustls_server_name("x"),
        Err(TlsError::InvalidServerName(_))
    ));
    assert!(ureq_agent(&bad).is_err());
}

#[test]
fn from_env_reads_nomad_variables() {
    // The only test touching these variables.
    std::env::set_var("NOMAD_CACERT", "/x/ca.pem");
    std::env::set_var("NOMAD_CAPATH", "");
    std::env::set_var("NOMAD_CLIENT_CERT", "/x/cli.pem");
    std::env::set_var("NOMAD_CLIENT_KEY", "/x/cli-key.pem");
    std::env::set_var("NOMAD_TLS_SERVER_NAME", "server.global.nomad");
    std::env::set_var("NOMAD_SKIP_VERIFY", "T");
    let cfg = ClientTlsConfig::from_env();
    assert_eq!(
        cfg,
        ClientTlsConfig {
            ca_cert: Some("/x/ca.pem".into()),
            ca_path: None,
            client_cert: Some("/x/cli.pem".into()),
            client_key: Some("/x/cli-key.pem".into()),
            server_name: Some("server.global.nomad".into()),
            skip_verify: true,
        }
    );
    std::env::set_var("NOMAD_SKIP_VERIFY", "yes");
    assert!(!ClientTlsConfig::from_env().skip_verify);
    for v in [
        "NOMAD_CACERT",
        "NOMAD_CAPATH",
        "NOMAD_CLIENT_CERT",
        "NOMAD_CLIENT_KEY",
        "NOMAD_TLS_SERVER_NAME",
        "NOMAD_SKIP_VERIFY",
    ] {
        std::env::remove_var(v);
    }
}

#[test]
fn certificate_names_reads_the_role_from_the_sans() {
    let pki = Pki::new();
    let cert = |role: &str| {
        crate::pem::load_certs("cert", &pki.path(&format!("global-{role}-nomad.pem")))
            .unwrap()
            .remove(0)
    };
    let server = cert("server");
    let client = cert("client");
    assert!(certificate_names(&server, "server.global.nomad"));
    assert!(certificate_names(&server, "127.0.0.1"));
    assert!(!certificate_names(&server, "server.europe.nomad"));
    assert!(!certificate_names(&client, "server.global.nomad"));
    assert!(certificate_names(&client, "client.global.nomad"));
    assert!(!certificate_names(&server, "not a name"));
}
