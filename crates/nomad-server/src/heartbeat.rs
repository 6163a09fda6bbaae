//! Node heartbeat timers: a node that misses its TTL (plus grace) is marked down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::Server;

/// Deadlines per node; one timer task (`Server::heartbeat_loop`) serves them all.
#[derive(Debug)]
pub(crate) struct Heartbeats {
    deadlines: Mutex<HashMap<String, Instant>>,
    grace: Mutex<Duration>,
    changed: Notify,
}

impl Heartbeats {
    pub(crate) fn new(grace: Duration) -> Self {
        Heartbeats {
            deadlines: Mutex::new(HashMap::new()),
            grace: Mutex::new(grace),
            changed: Notify::new(),
        }
    }

    pub(crate) fn set_grace(&self, grace: Duration) {
        *self.grace.lock().unwrap_or_else(|e| e.into_inner()) = grace;
    }

    /// The node heartbeated (or registered): it is down only after `ttl` + grace from now.
    pub(crate) fn reset(&self, node_id: &str, ttl: Duration) {
        let grace = *self.grace.lock().unwrap_or_else(|e| e.into_inner());
        self.deadlines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node_id.to_string(), Instant::now() + ttl + grace);
        self.changed.notify_waiters();
    }

    /// Forgets every timer (leadership lost).
    pub(crate) fn clear(&self) {
        self.deadlines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.changed.notify_waiters();
    }

    /// Removes and returns the nodes whose deadline passed, and the next deadline.
    fn take_expired(&self, now: Instant) -> (Vec<String>, Option<Instant>) {
        let mut g = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        let mut expired: Vec<String> = g
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        expired.sort();
        for id in &expired {
            g.remove(id);
        }
        (expired, g.values().min().copied())
    }
}

impl Server {
    pub(crate) async fn heartbeat_loop(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let changed = self.heartbeats.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (expired, next) = self.heartbeats.take_expired(Instant::now());
            for node_id in expired {
                self.node_missed_heartbeat(&node_id).await;
            }
            let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep_until(sleep_until) => {}
                _ = &mut changed => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
        }
    }
}
