//! Clean exit on Ctrl-C (and SIGTERM) for streaming commands (`alloc logs -f`, `alloc fs -f`):
//! stdout is flushed and the process exits 0, as Nomad's CLI closes the stream and returns.

use std::io::Write as _;
use std::sync::Once;
use std::time::Duration;

/// Installs the handler once; returns when it is in place (or after a second if it could not
/// be installed, in which case the default signal behaviour stays).
pub fn exit_on_interrupt() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("interrupt".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                else {
                    let _ = ready_tx.send(());
                    return;
                };
                rt.block_on(wait_for_signal(ready_tx));
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().flush();
                std::process::exit(0);
            });
        if spawned.is_ok() {
            let _ = ready_rx.recv_timeout(Duration::from_secs(1));
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal(ready: std::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    let _ = ready.send(());
    match (int, term) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        (Ok(mut i), Err(_)) => {
            i.recv().await;
        }
        (Err(_), Ok(mut t)) => {
            t.recv().await;
        }
        // Nothing could be registered: never fire (default behaviour stays).
        (Err(_), Err(_)) => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn wait_for_signal(ready: std::sync::mpsc::Sender<()>) {
    let _ = ready.send(());
    let _ = tokio::signal::ctrl_c().await;
}
