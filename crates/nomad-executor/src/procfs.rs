//! `/proc` helpers: process start time and liveness, used to re-attach to a task after an agent
//! restart without being fooled by PID reuse.

use std::path::PathBuf;

/// A `/proc/<pid>/stat` read failure.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The process does not exist (or its stat file could not be read).
    #[error("process {pid} not found")]
    NotFound {
        /// The pid looked up.
        pid: u32,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The stat file had an unexpected format.
    #[error("malformed /proc/{pid}/stat: {reason}")]
    Malformed {
        /// The pid looked up.
        pid: u32,
        /// What was wrong.
        reason: &'static str,
    },
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: state (`R`, `S`, `D`, `Z`, ...).
    pub state: char,
    /// Field 4: parent pid.
    pub ppid: i32,
    /// Field 5: process group id.
    pub pgrp: i32,
    /// Field 6: session id.
    pub session: i32,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parses the content of a `/proc/<pid>/stat` file. The command name (field 2) may contain
/// spaces and parentheses, so parsing starts after the *last* `)`.
pub fn parse_stat(content: &str) -> Option<ProcStat> {
    let rest = &content[content.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    if fields.len() < 20 {
        return None;
    }
    Some(ProcStat {
        state: fields[0].chars().next()?,
        ppid: fields[1].parse().ok()?,
        pgrp: fields[2].parse().ok()?,
        session: fields[3].parse().ok()?,
        start_time: fields[19].parse().ok()?,
    })
}

fn stat_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// Reads and parses `/proc/<pid>/stat`.
pub fn read_stat(pid: u32) -> Result<ProcStat, ProcError> {
    let content = std::fs::read_to_string(stat_path(pid))
        .map_err(|source| ProcError::NotFound { pid, source })?;
    parse_stat(&content).ok_or(ProcError::Malformed {
        pid,
        reason: "too few fields",
    })
}

/// The start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) of a process.
pub fn process_start_time(pid: u32) -> Result<u64, ProcError> {
    read_stat(pid).map(|s| s.start_time)
}

/// Whether `pid` names a live (non-zombie) process that started at `start_time`.
pub fn is_same_live_process(pid: u32, start_time: u64) -> bool {
    matches!(read_stat(pid), Ok(s) if s.start_time == start_time && s.state != 'Z' && s.state != 'X')
}

/// Whether any process (including zombies) currently has this pid.
pub fn pid_exists(pid: u32) -> bool {
    stat_path(pid).exists()
}

/// Whether the process is alive and not a zombie.
pub fn is_alive(pid: u32) -> bool {
    matches!(read_stat(pid), Ok(s) if s.state != 'Z' && s.state != 'X')
}

/// Pids of live (non-zombie) processes whose process group is `pgid`, found by scanning
/// `/proc`. Used when no cgroup tracks the task.
pub fn live_pids_in_group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            matches!(read_stat(*pid), Ok(s) if s.pgrp == pgid as i32 && s.state != 'Z' && s.state != 'X')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "1234 (my (weird) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        let s = parse_stat(line).expect("parse");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 1234);
        assert_eq!(s.session, 1234);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn rejects_truncated_stat() {
        assert!(parse_stat("1 (x) S 1 2").is_none());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn reads_own_stat() {
        let me = std::process::id();
        let t = process_start_time(me).expect("own stat");
        assert!(is_same_live_process(me, t));
        assert!(!is_same_live_process(me, t + 1));
        let pgrp = read_stat(me).expect("stat").pgrp as u32;
        assert!(live_pids_in_group(pgrp).contains(&me));
    }
}
