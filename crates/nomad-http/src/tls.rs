//! HTTPS: the same [`crate::router`] served over rustls (`tls { http = true }`).
//!
//! `axum::serve` takes plain TCP only, so this is its own accept loop: every accepted
//! connection does the TLS handshake (bounded by a timeout, so a silent peer cannot hold a
//! task forever), then hyper's HTTP/1.1 connection serves the router as a tower service,
//! with upgrades enabled so websockets (`alloc exec`) work over TLS too. A failed
//! handshake (e.g. no client certificate when `verify_https_client` is on) only closes that
//! connection. At shutdown the listener stops accepting, open connections are asked to
//! finish gracefully and get a few seconds before they are dropped.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use nomad_tls::rustls;
use nomad_tls::tokio_rustls::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::HttpState;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn wait_shutdown(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serves [`crate::router`] over TLS on `listener` until `shutdown` turns true (or its sender
/// goes away). `config` is the agent's rustls server config (see `nomad_tls::server_config`;
/// it demands client certificates when `verify_https_client` is set).
pub async fn serve_tls(
    listener: TcpListener,
    state: HttpState,
    shutdown: watch::Receiver<bool>,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<()> {
    let app = crate::router(state);
    let acceptor = TlsAcceptor::from(config);
    let mut conns = tokio::task::JoinSet::new();
    let stop = wait_shutdown(shutdown.clone());
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            a = listener.accept() => a,
        };
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "https: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let conn_shutdown = shutdown.clone();
        conns.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "https: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "https: TLS handshake timed out");
                    return;
                }
            };
            let svc = TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "https: connection error");
                    }
                }
                () = wait_shutdown(conn_shutdown) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("https: connections still open at shutdown; closing");
        conns.abort_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AgentInfo;
    use nomad_tls::{create_ca, create_cert, CaOptions, CertOptions, CertRole, ClientTlsConfig};

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, ca_key) = create_ca(&CaOptions::default()).expect("ca");
        std::fs::write(dir.path().join("ca.pem"), &ca).expect("write");
        for (role, name) in [(CertRole::Server, "server"), (CertRole::Cli, "cli")] {
            let opts = CertOptions {
                role,
                ..CertOptions::default()
            };
            let (c, k) = create_cert(&ca, &ca_key, &opts).expect("cert");
            std::fs::write(dir.path().join(format!("{name}.pem")), c).expect("write");
            std::fs::write(dir.path().join(format!("{name}-key.pem")), k).expect("write");
        }
        Pki { dir }
    }

    async fn start(pki: &Pki, verify_client: bool) -> (String, watch::Sender<bool>) {
        let cfg = nomad_tls::server_config(&nomad_tls::ServerTlsConfig {
            ca_file: Some(pki.path("ca.pem")),
            cert_file: pki.path("server.pem"),
            key_file: pki.path("server-key.pem"),
            verify_https_client: verify_client,
        })
        .expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = HttpState {
            server: Some(nomad_server::Server::new(Default::default())),
            client: None,
            agent: Arc::new(AgentInfo::default()),
        };
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve_tls(listener, state, rx, cfg));
        (format!("https://127.0.0.1:{}", addr.port()), tx)
    }

    fn get(url: String, cfg: ClientTlsConfig) -> Result<u16, String> {
        let agent = nomad_tls::ureq_agent(&cfg).map_err(|e| e.to_string())?;
        match agent.get(&format!("{url}/v1/status/leader")).call() {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(nomad_tls::explain_handshake_error(&e, &cfg)),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn https_with_and_without_client_certificates() {
        let pki = pki();
        let with_cert = ClientTlsConfig {
            ca_cert: Some(pki.path("ca.pem")),
            client_cert: Some(pki.path("cli.pem")),
            client_key: Some(pki.path("cli-key.pem")),
            ..Default::default()
        };
        let ca_only = ClientTlsConfig {
            ca_cert: Some(pki.path("ca.pem")),
            ..Default::default()
        };

        let (url, stop) = start(&pki, true).await;
        let (u, c) = (url.clone(), with_cert.clone());
        let ok = tokio::task::spawn_blocking(move || get(u, c))
            .await
            .expect("join");
        assert_eq!(ok, Ok(200));
        let (u, c) = (url.clone(), ca_only.clone());
        let err = tokio::task::spawn_blocking(move || get(u, c))
            .await
            .expect("join")
            .expect_err("no client certificate must fail");
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        // No trusted CA: the server's certificate is refused, and the message says so.
        let (u, c) = (url.clone(), ClientTlsConfig::default());
        let err = tokio::task::spawn_blocking(move || get(u, c))
            .await
            .expect("join")
            .expect_err("unknown CA must fail");
        assert!(err.contains("certificate"), "{err}");
        let _ = stop.send(true);

        // Without verify_https_client a CA-only client is fine.
        let (url, stop) = start(&pki, false).await;
        let ok = tokio::task::spawn_blocking(move || get(url, ca_only))
            .await
            .expect("join");
        assert_eq!(ok, Ok(200));
        let _ = stop.send(true);
    }
}
