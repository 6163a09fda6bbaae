//! Local client state (facts §8, simplified): one JSON file per alloc,
//! `<state_dir>/allocs/<alloc_id>.json`, holding the alloc, each task's state and driver
//! handle. Files are written atomically (temp file + rename), mode 0600.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nomad_drivers::TaskHandle;
use nomad_structs::{Allocation, TaskState};
use serde::{Deserialize, Serialize};

/// Persisted per-task state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalTaskState {
    /// The state reported to the servers.
    pub state: TaskState,
    /// The driver handle of the running task.
    pub handle: Option<TaskHandle>,
    /// The task runner finished (no restart will follow).
    pub run_complete: bool,
    /// Every artifact was downloaded (the artifact hook is done and is skipped on restarts
    /// and after an agent restart, like Nomad's `PrestartDone`).
    pub artifacts_done: bool,
    /// The restart tracker's count and window, so a restored task keeps its restart budget.
    pub restart_tracker: crate::restarts::TrackerState,
}

/// Persisted alloc state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalAllocState {
    /// The alloc as last received from the servers.
    pub alloc: Allocation,
    /// Per task.
    pub tasks: BTreeMap<String, LocalTaskState>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDb {
    dir: PathBuf,
}

impl StateDb {
    /// Opens (creating, 0700) `<state_dir>/allocs`.
    pub fn open(state_dir: &Path) -> io::Result<StateDb> {
        std::fs::create_dir_all(state_dir)?;
        let dir = state_dir.join("allocs");
        std::fs::create_dir_all(&dir)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700));
        Ok(StateDb { dir })
    }

    fn path(&self, alloc_id: &str) -> PathBuf {
        self.dir.join(format!("{alloc_id}.json"))
    }

    /// Writes an alloc's state.
    pub fn put(&self, st: &LocalAllocState) -> io::Result<()> {
        let data = serde_json::to_vec(st).map_err(io::Error::other)?;
        let final_path = self.path(&st.alloc.id);
        let tmp = self.dir.join(format!(".{}.json.tmp", st.alloc.id));
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
        }
        std::fs::rename(&tmp, &final_path)
    }

    /// Removes an alloc's state.
    pub fn delete(&self, alloc_id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(alloc_id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Loads every persisted alloc; unreadable files are skipped (and logged).
    pub fn load_all(&self) -> Vec<LocalAllocState> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<LocalAllocState>(&b).map_err(|e| e.to_string())
            }) {
                Ok(st) if !st.alloc.id.is_empty() => out.push(st),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "skipping unreadable alloc state")
                }
            }
        }
        out.sort_by(|a, b| a.alloc.id.cmp(&b.alloc.id));
        out
    }
}

/// Loads `<state_dir>/<name>` or creates it with a fresh UUID (node ID, secret ID).
pub fn load_or_create_id(state_dir: &Path, name: &str) -> io::Result<String> {
    std::fs::create_dir_all(state_dir)?;
    let p = state_dir.join(name);
    if let Ok(s) = std::fs::read_to_string(&p) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_string());
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&p, &id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = tempfile::tempdir().expect("tmp");
        let db = StateDb::open(d.path()).expect("open");
        let mut st = LocalAllocState {
            alloc: Allocation {
                id: "a1".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        st.tasks.insert(
            "web".into(),
            LocalTaskState {
                state: TaskState {
                    state: "running".into(),
                    ..Default::default()
                },
                handle: Some(TaskHandle {
                    task_id: "a1/web/1".into(),
                    driver: "raw_exec".into(),
                    pid: 42,
                    start_time: 7,
                    cgroup: None,
                    started_at_unix_nanos: 1,
                    kill_signal: None,
                    recorder: None,
                }),
                run_complete: false,
                artifacts_done: true,
                restart_tracker: crate::restarts::TrackerState {
                    count: 2,
                    window_start_unix_nanos: Some(5),
                },
            },
        );
        db.put(&st).expect("put");
        std::fs::write(d.path().join("allocs").join("bad.json"), "{").expect("w");
        assert_eq!(db.load_all(), vec![st]);
        // State written before these fields existed still loads.
        std::fs::write(
            d.path().join("allocs").join("old.json"),
            r#"{"alloc":{"ID":"old"},"tasks":{"t":{"state":{"State":"dead"},"handle":null,"run_complete":true}}}"#,
        )
        .expect("w");
        let all = db.load_all();
        assert_eq!(all.len(), 2);
        assert!(!all[1].tasks["t"].artifacts_done);
        db.delete("old").expect("del");
        db.delete("a1").expect("del");
        assert!(db.load_all().is_empty());
        let id = load_or_create_id(d.path(), "node-id").expect("id");
        assert_eq!(load_or_create_id(d.path(), "node-id").expect("id"), id);
    }
}
