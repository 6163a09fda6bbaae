//! The durable Raft log, vote and metadata in one redb file (`<data_dir>/raft/raft.db`).
//!
//! Every value is framed as `crc32 (u32 LE) ++ JSON`, so damage that redb's own page checksums
//! do not catch (or a file from something else) is reported instead of trusted. The whole log is
//! verified when the file is opened: checksums, keys matching the entry's index, no gaps.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::RaftError;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Written once into a new file; an existing file without it is not ours.
const MAGIC: &str = "nomad-raft log v1";

pub(crate) const META_MAGIC: &str = "magic";
pub(crate) const META_VOTE: &str = "vote";
pub(crate) const META_COMMITTED: &str = "committed";
pub(crate) const META_LAST_PURGED: &str = "last_purged";
pub(crate) const META_NODE_ID: &str = "node_id";
pub(crate) const META_CLUSTER_ID: &str = "cluster_id";

/// The opened redb database with its path (for error messages) and commit durability.
pub(crate) struct LogDb {
    db: Database,
    path: String,
    durability: Durability,
    /// The committed id openraft reported, written with the next log transaction (or on
    /// drop) instead of in a transaction of its own: it is only a lower bound for replay.
    pending_committed: Mutex<Option<Option<LogId>>>,
}

impl Drop for LogDb {
    fn drop(&mut self) {
        if let Err(e) = self.flush_committed() {
            tracing::warn!(path = %self.path, error = %e, "committed index not saved");
        }
    }
}

impl Debug for LogDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDb").field("path", &self.path).finish()
    }
}

/// Frames a value: crc32 of the JSON, then the JSON.
pub(crate) fn frame<T: Serialize>(v: &T) -> Result<Vec<u8>, RaftError> {
    let json = serde_json::to_vec(v).map_err(|e| RaftError::Storage(format!("encode: {e}")))?;
    let mut out = Vec::with_capacity(json.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Checks and decodes a value written by [`frame`]; `what` names it in the error.
pub(crate) fn unframe<T: DeserializeOwned>(
    bytes: &[u8],
    path: &str,
    what: &str,
) -> Result<T, RaftError> {
    let Some((crc, json)) = bytes.split_first_chunk::<4>() else {
        return Err(RaftError::Corrupt(format!(
            "{path}: {what}: value is truncated"
        )));
    };
    if u32::from_le_bytes(*crc) != crc32fast::hash(json) {
        return Err(RaftError::Corrupt(format!(
            "{path}: {what}: checksum mismatch"
        )));
    }
    serde_json::from_slice(json)
        .map_err(|e| RaftError::Corrupt(format!("{path}: {what}: does not decode: {e}")))
}

fn open_error(path: &str, e: redb::DatabaseError) -> RaftError {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(m)) => {
            RaftError::Corrupt(format!("{path}: {m}"))
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            ) =>
        {
            RaftError::Corrupt(format!("{path}: {io}"))
        }
        redb::DatabaseError::UpgradeRequired(v) => RaftError::Corrupt(format!(
            "{path}: file format version {v} is not the one this build writes"
        )),
        redb::DatabaseError::RepairAborted => RaftError::Corrupt(format!("{path}: repair aborted")),
        redb::DatabaseError::DatabaseAlreadyOpen => {
            RaftError::Storage(format!("{path}: already open"))
        }
        e => RaftError::Storage(format!("{path}: {e}")),
    }
}

impl LogDb {
    /// Opens (or creates) the log at `path`, or an in-memory log when `path` is `None`.
    /// Verifies the whole file; damage is [`RaftError::Corrupt`] naming the path.
    pub(crate) fn open(path: Option<&Path>, fsync: bool) -> Result<LogDb, RaftError> {
        let (db, shown, existed) = match path {
            None => {
                let db = Database::builder()
                    .create_with_backend(redb::backends::InMemoryBackend::new())
                    .map_err(|e| open_error("<memory>", e))?;
                (db, "<memory>".to_string(), false)
            }
            Some(p) => {
                let shown = p.display().to_string();
                let existed = std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false);
                // redb verifies every page checksum with this set; without it a damaged file may
                // panic later. A panic while opening is still turned into an error here.
                let opened = std::panic::catch_unwind(|| {
                    let mut b = Database::builder();
                    b.set_check_integrity_on_open(true);
                    b.create(p)
                });
                let db = match opened {
                    Ok(r) => r.map_err(|e| open_error(&shown, e))?,
                    Err(_) => {
                        return Err(RaftError::Corrupt(format!(
                            "{shown}: the database panicked while opening"
                        )))
                    }
                };
                (db, shown, existed)
            }
        };
        let durability = if fsync {
            Durability::Immediate
        } else {
            Durability::None
        };
        let log = LogDb {
            db,
            path: shown,
            durability,
            pending_committed: Mutex::new(None),
        };
        log.init(existed)?;
        Ok(log)
    }

    /// Path shown in errors.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    fn storage(&self, e: impl std::fmt::Display) -> RaftError {
        let msg = e.to_string();
        // redb reports page damage found while reading as `Corrupted`.
        if msg.to_ascii_lowercase().contains("corrupt") {
            RaftError::Corrupt(format!("{}: {msg}", self.path))
        } else {
            RaftError::Storage(format!("{}: {msg}", self.path))
        }
    }

    fn init(&self, existed: bool) -> Result<(), RaftError> {
        let magic: Option<String> = self.get_meta(META_MAGIC)?;
        match magic {
            Some(m) if m == MAGIC => {}
            Some(m) => {
                return Err(RaftError::Corrupt(format!(
                    "{}: unknown format {m:?}",
                    self.path
                )))
            }
            None if existed && self.has_tables()? => {
                return Err(RaftError::Corrupt(format!(
                    "{}: no nomad-raft header",
                    self.path
                )))
            }
            None => {
                self.put_meta(META_MAGIC, &MAGIC.to_string(), true)?;
            }
        }
        self.verify()
    }

    fn has_tables(&self) -> Result<bool, RaftError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        match txn.open_table(META) {
            Ok(_) => Ok(true),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
            Err(e) => Err(self.storage(e)),
        }
    }

    /// Checks every log entry: frame checksum, key = entry index, contiguous indexes.
    fn verify(&self) -> Result<(), RaftError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = match txn.open_table(LOGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.storage(e)),
        };
        let mut prev: Option<u64> = None;
        for item in table.iter().map_err(|e| self.storage(e))? {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let index = k.value();
            let entry: Entry = unframe(v.value(), &self.path, &format!("log entry {index}"))?;
            if entry.log_id.index != index {
                return Err(RaftError::Corrupt(format!(
                    "{}: log entry at key {index} has index {}",
                    self.path, entry.log_id.index
                )));
            }
            if let Some(p) = prev {
                if index != p + 1 {
                    return Err(RaftError::Corrupt(format!(
                        "{}: log entries {} to {} are missing",
                        self.path,
                        p + 1,
                        index - 1
                    )));
                }
            }
            prev = Some(index);
        }
        let purged: Option<LogId> = self.get_meta(META_LAST_PURGED)?;
        if let (Some(purged), Some(first)) = (purged, self.first_index()?) {
            if first > purged.index + 1 {
                return Err(RaftError::Corrupt(format!(
                    "{}: log entries {} to {} are missing",
                    self.path,
                    purged.index + 1,
                    first - 1
                )));
            }
        }
        Ok(())
    }

    fn first_index(&self) -> Result<Option<u64>, RaftError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = match txn.open_table(LOGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.storage(e)),
        };
        let first = table
            .first()
            .map_err(|e| self.storage(e))?
            .map(|(k, _)| k.value());
        Ok(first)
    }

    /// Reads a metadata value.
    pub(crate) fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RaftError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.storage(e)),
        };
        match table.get(key).map_err(|e| self.storage(e))? {
            None => Ok(None),
            Some(v) => unframe(v.value(), &self.path, key).map(Some),
        }
    }

    /// Writes a metadata value; `durable` commits with fsync (when the log fsyncs at all).
    pub(crate) fn put_meta<T: Serialize>(
        &self,
        key: &str,
        v: &T,
        durable: bool,
    ) -> Result<(), RaftError> {
        let bytes = frame(v)?;
        let mut txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let durability = if durable {
            self.durability
        } else {
            Durability::None
        };
        txn.set_durability(durability)
            .map_err(|e| self.storage(e))?;
        {
            let mut table = txn.open_table(META).map_err(|e| self.storage(e))?;
            table
                .insert(key, bytes.as_slice())
                .map_err(|e| self.storage(e))?;
            // Make sure the logs table exists too, so readers never see it missing.
            txn.open_table(LOGS).map_err(|e| self.storage(e))?;
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// Entries with indexes in `range`, in order (stops at the first gap).
    pub(crate) fn entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, RaftError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = match txn.open_table(LOGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
            Err(e) => return Err(self.storage(e)),
        };
        let mut out = Vec::new();
        for item in table.range::<u64>(range).map_err(|e| self.storage(e))? {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let index = k.value();
            let entry: Entry = unframe(v.value(), &self.path, &format!("log entry {index}"))?;
            out.push(entry);
        }
        Ok(out)
    }

    fn last_log_id(&self) -> Result<Option<LogId>, RaftError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = match txn.open_table(LOGS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.storage(e)),
        };
        let last = match table.last().map_err(|e| self.storage(e))? {
            None => None,
            Some((k, v)) => {
                let entry: Entry =
                    unframe(v.value(), &self.path, &format!("log entry {}", k.value()))?;
                Some(entry.log_id)
            }
        };
        Ok(last)
    }

    /// Appends entries in one transaction (fsync'd unless the log is in-memory/-dev).
    pub(crate) fn append(&self, entries: &[Entry]) -> Result<(), RaftError> {
        let committed = self
            .pending_committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        txn.set_durability(self.durability)
            .map_err(|e| self.storage(e))?;
        {
            if let Some(c) = committed {
                let bytes = frame(&c)?;
                let mut meta = txn.open_table(META).map_err(|e| self.storage(e))?;
                meta.insert(META_COMMITTED, bytes.as_slice())
                    .map_err(|e| self.storage(e))?;
            }
            let mut table = txn.open_table(LOGS).map_err(|e| self.storage(e))?;
            for e in entries {
                let bytes = frame(e)?;
                table
                    .insert(e.log_id.index, bytes.as_slice())
                    .map_err(|e| self.storage(e))?;
            }
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// Records the committed id, to be written with the next transaction.
    pub(crate) fn set_committed(&self, committed: Option<LogId>) {
        *self
            .pending_committed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(committed);
    }

    /// The committed id: the pending one, else the stored one.
    pub(crate) fn committed(&self) -> Result<Option<LogId>, RaftError> {
        if let Some(c) = *self
            .pending_committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            return Ok(c);
        }
        let c: Option<Option<LogId>> = self.get_meta(META_COMMITTED)?;
        Ok(c.flatten())
    }

    /// Writes a pending committed id now.
    pub(crate) fn flush_committed(&self) -> Result<(), RaftError> {
        let pending = self
            .pending_committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match pending {
            Some(c) => self.put_meta(META_COMMITTED, &c, true),
            None => Ok(()),
        }
    }

    /// Removes entries with index >= `from` (conflicting entries).
    pub(crate) fn truncate(&self, from: u64) -> Result<(), RaftError> {
        let mut txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        txn.set_durability(self.durability)
            .map_err(|e| self.storage(e))?;
        {
            let mut table = txn.open_table(LOGS).map_err(|e| self.storage(e))?;
            table
                .retain_in(from.., |_, _| false)
                .map_err(|e| self.storage(e))?;
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// Removes entries with index <= `upto.index` and records `upto` as the last purged id.
    pub(crate) fn purge(&self, upto: &LogId) -> Result<(), RaftError> {
        let bytes = frame(upto)?;
        let mut txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        txn.set_durability(self.durability)
            .map_err(|e| self.storage(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.storage(e))?;
            meta.insert(META_LAST_PURGED, bytes.as_slice())
                .map_err(|e| self.storage(e))?;
            let mut table = txn.open_table(LOGS).map_err(|e| self.storage(e))?;
            table
                .retain_in(..=upto.index, |_, _| false)
                .map_err(|e| self.storage(e))?;
        }
        txn.commit().map_err(|e| self.storage(e))
    }
}

fn sto_err(verb: ErrorVerb, subject: ErrorSubject<u64>, e: RaftError) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}

fn read_logs_err(e: RaftError) -> StorageError {
    sto_err(ErrorVerb::Read, ErrorSubject::Logs, e)
}

fn write_logs_err(e: RaftError) -> StorageError {
    sto_err(ErrorVerb::Write, ErrorSubject::Logs, e)
}

/// Runs blocking redb work without stalling other tasks. On a multi-thread runtime the work
/// stays on this thread (`block_in_place` hands the thread's other tasks to another worker):
/// each `spawn_blocking` costs two thread wake-ups on the commit path, which runs through here
/// twice (leader and follower appends) and once more per replication read.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RaftError> + Send + 'static,
) -> Result<T, RaftError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(f);
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RaftError::Storage(format!("storage task failed: {e}")))?
}

/// openraft's view of the log: a cheap handle on the shared [`LogDb`].
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    db: Arc<LogDb>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<LogDb>) -> Self {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        blocking(move || db.entries(bounds))
            .await
            .map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = self.db.get_meta(META_LAST_PURGED).map_err(read_logs_err)?;
        let last = self.db.last_log_id().map_err(read_logs_err)?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let db = self.db.clone();
        let vote = *vote;
        blocking(move || db.put_meta(META_VOTE, &vote, true))
            .await
            .map_err(|e| sto_err(ErrorVerb::Write, ErrorSubject::Vote, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.db
            .get_meta(META_VOTE)
            .map_err(|e| sto_err(ErrorVerb::Read, ErrorSubject::Vote, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not a transaction of its own (that costs a redb commit per entry on the commit
        // path): it rides on the next append, or is written on close. A committed index lost
        // in a crash is only a lower bound, which is safe.
        self.db.set_committed(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.db.committed().map_err(read_logs_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        let res = blocking(move || db.append(&entries)).await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || db.truncate(log_id.index))
            .await
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || db.purge(&log_id))
            .await
            .map_err(write_logs_err)
    }
}
