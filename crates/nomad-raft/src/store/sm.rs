//! The state machine (a [`StateStore`]) and its snapshots (`<data_dir>/raft/snapshot.bin`).
//!
//! Snapshot file: `NRSNAP01` magic, crc32 (u32 LE) of everything after it, meta length (u64 LE),
//! the meta as JSON, then the `StateStore::persist` bytes. Written to a temp file, fsync'd and
//! renamed, so a crash leaves either the old or the new snapshot.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nomad_state::StateStore;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, StorageIOError};

use crate::node::ApplyObserver;
use crate::types::{
    ApplyResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::RaftError;

const SNAPSHOT_MAGIC: &[u8; 8] = b"NRSNAP01";
pub(crate) const SNAPSHOT_FILE: &str = "snapshot.bin";

/// A snapshot kept by this node: its meta and the persisted state.
#[derive(Debug, Clone)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Vec<u8>,
}

fn encode_snapshot(s: &StoredSnapshot) -> Result<Vec<u8>, RaftError> {
    let meta = serde_json::to_vec(&s.meta)
        .map_err(|e| RaftError::Storage(format!("encode snapshot meta: {e}")))?;
    let mut body = Vec::with_capacity(8 + meta.len() + s.data.len());
    body.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    body.extend_from_slice(&meta);
    body.extend_from_slice(&s.data);
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode_snapshot(bytes: &[u8], path: &str) -> Result<StoredSnapshot, RaftError> {
    let corrupt = |m: &str| RaftError::Corrupt(format!("{path}: {m}"));
    let Some((magic, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(corrupt("truncated header"));
    };
    if magic != SNAPSHOT_MAGIC {
        return Err(corrupt("not a nomad-raft snapshot"));
    }
    let Some((crc, body)) = rest.split_first_chunk::<4>() else {
        return Err(corrupt("truncated header"));
    };
    if u32::from_le_bytes(*crc) != crc32fast::hash(body) {
        return Err(corrupt("checksum mismatch"));
    }
    let Some((len, rest)) = body.split_first_chunk::<8>() else {
        return Err(corrupt("truncated header"));
    };
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| corrupt("bad meta length"))?;
    if len > rest.len() {
        return Err(corrupt("bad meta length"));
    }
    let (meta, data) = rest.split_at(len);
    let meta: SnapshotMeta = serde_json::from_slice(meta)
        .map_err(|e| corrupt(&format!("snapshot meta does not decode: {e}")))?;
    Ok(StoredSnapshot {
        meta,
        data: data.to_vec(),
    })
}

/// Loads `<dir>/snapshot.bin`, if there is one.
pub(crate) fn load_snapshot(dir: &Path) -> Result<Option<StoredSnapshot>, RaftError> {
    let path = dir.join(SNAPSHOT_FILE);
    match std::fs::read(&path) {
        Ok(b) => decode_snapshot(&b, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RaftError::Storage(format!("{}: {e}", path.display()))),
    }
}

/// Writes the snapshot file atomically (temp file, fsync, rename, fsync of the directory).
fn save_snapshot(dir: &Path, s: &StoredSnapshot, fsync: bool) -> Result<(), RaftError> {
    let bytes = encode_snapshot(s)?;
    let path = dir.join(SNAPSHOT_FILE);
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let err = |p: &Path, e: std::io::Error| RaftError::Storage(format!("{}: {e}", p.display()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| err(&tmp, e))?;
        if fsync {
            f.sync_all().map_err(|e| err(&tmp, e))?;
        }
    }
    std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
    if fsync {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err(dir, e))?;
    }
    Ok(())
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::new(
        ErrorSubject::StateMachine,
        verb,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
}

/// The latest snapshot, shared by the state machine and its builders.
type SnapshotSlot = Arc<Mutex<Option<StoredSnapshot>>>;

/// The observer of applied commands, settable after the node started.
pub(crate) type ObserverSlot = Arc<std::sync::RwLock<Option<ApplyObserver>>>;

/// openraft's state machine: applies [`nomad_state::Command`]s to the shared [`StateStore`].
pub(crate) struct StateMachine {
    state: Arc<StateStore>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    current: SnapshotSlot,
    /// Where snapshots are written; `None` keeps them in memory only (-dev).
    dir: Option<PathBuf>,
    fsync: bool,
    seq: Arc<AtomicU64>,
    observer: ObserverSlot,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("last_applied", &self.last_applied)
            .finish_non_exhaustive()
    }
}

impl StateMachine {
    /// A state machine starting from `snapshot` (already restored into `state` by the caller)
    /// or from the empty state.
    pub(crate) fn new(
        state: Arc<StateStore>,
        snapshot: Option<StoredSnapshot>,
        dir: Option<PathBuf>,
        fsync: bool,
    ) -> Self {
        let (last_applied, last_membership) = match &snapshot {
            Some(s) => (s.meta.last_log_id, s.meta.last_membership.clone()),
            None => (None, StoredMembership::default()),
        };
        StateMachine {
            state,
            last_applied,
            last_membership,
            current: Arc::new(Mutex::new(snapshot)),
            dir,
            fsync,
            seq: Arc::new(AtomicU64::new(0)),
            observer: ObserverSlot::default(),
        }
    }

    /// The slot whose observer sees every command this state machine applies.
    pub(crate) fn observer_slot(&self) -> ObserverSlot {
        self.observer.clone()
    }

    fn current(&self) -> Option<StoredSnapshot> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Builds a snapshot from a view captured when it was created.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    snapshot: StoredSnapshot,
    current: SnapshotSlot,
    dir: Option<PathBuf>,
    fsync: bool,
}

async fn store_snapshot(
    dir: Option<PathBuf>,
    fsync: bool,
    current: &SnapshotSlot,
    snapshot: StoredSnapshot,
) -> Result<(), RaftError> {
    if let Some(dir) = dir {
        let s = snapshot.clone();
        tokio::task::spawn_blocking(move || save_snapshot(&dir, &s, fsync))
            .await
            .map_err(|e| RaftError::Storage(format!("snapshot task failed: {e}")))??;
    }
    *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let s = self.snapshot.clone();
        store_snapshot(self.dir.clone(), self.fsync, &self.current, s.clone())
            .await
            .map_err(|e| {
                StorageIOError::write_snapshot(
                    Some(s.meta.signature()),
                    openraft::AnyError::error(e),
                )
            })?;
        tracing::info!(snapshot = %s.meta, bytes = s.data.len(), "raft snapshot built");
        Ok(Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            let mut error = None;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(cmd) => {
                    // The state store may already hold this index (it was restored from a
                    // snapshot that covers it); applying it again would be refused anyway.
                    if index > self.state.latest_index() {
                        match self.state.apply(index, &cmd) {
                            Ok(_) => {
                                let observer = self
                                    .observer
                                    .read()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .clone();
                                if let Some(o) = observer {
                                    o(index, &cmd);
                                }
                            }
                            Err(e) => error = Some(e.to_string()),
                        }
                    }
                }
                EntryPayload::Membership(m) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            self.last_applied = Some(entry.log_id);
            out.push(ApplyResponse { index, error });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // The view is captured here, in the state machine task, so later applies do not leak
        // into a snapshot labelled with this `last_applied`.
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &self.last_applied {
            Some(l) => format!("{}-{}-{n}", l.leader_id, l.index),
            None => format!("none-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id,
        };
        SnapshotBuilder {
            snapshot: StoredSnapshot {
                meta,
                data: self.state.persist(),
            },
            current: self.current.clone(),
            dir: self.dir.clone(),
            fsync: self.fsync,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.state
            .restore(&data)
            .map_err(|e| sm_err(ErrorVerb::Write, format!("install snapshot {meta}: {e}")))?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        let s = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        store_snapshot(self.dir.clone(), self.fsync, &self.current, s)
            .await
            .map_err(|e| {
                StorageIOError::write_snapshot(Some(meta.signature()), openraft::AnyError::error(e))
            })?;
        tracing::info!(snapshot = %meta, "raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.current().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_file_round_trips_and_detects_damage() {
        let s = StoredSnapshot {
            meta: SnapshotMeta::default(),
            data: b"{\"state\":1}".to_vec(),
        };
        let bytes = encode_snapshot(&s).expect("encodes");
        let back = decode_snapshot(&bytes, "x").expect("decodes");
        assert_eq!(back.data, s.data);
        assert_eq!(back.meta, s.meta);

        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        assert!(
            matches!(decode_snapshot(&bad, "x"), Err(RaftError::Corrupt(m)) if m.contains("checksum"))
        );
        assert!(matches!(
            decode_snapshot(&bytes[..10], "x"),
            Err(RaftError::Corrupt(_))
        ));
        assert!(matches!(
            decode_snapshot(b"garbage-garbage", "x"),
            Err(RaftError::Corrupt(_))
        ));
    }
}
