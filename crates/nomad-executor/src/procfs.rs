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

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount id.
    pub mount_id: u32,
    /// Parent mount id.
    pub parent_id: u32,
    /// Device major:minor of the file system.
    pub dev: (u32, u32),
    /// Root of the mount within its file system.
    pub root: PathBuf,
    /// Mount point, relative to the reading process's root.
    pub mount_point: PathBuf,
    /// File system type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 2 {
                return None;
            }
            let (maj, min) = l[2].split_once(':')?;
            Some(MountInfo {
                mount_id: l[0].parse().ok()?,
                parent_id: l[1].parse().ok()?,
                dev: (maj.parse().ok()?, min.parse().ok()?),
                root: PathBuf::from(unescape_mountinfo(l[3])),
                mount_point: PathBuf::from(unescape_mountinfo(l[4])),
                fstype: unescape_mountinfo(r[0]),
                source: unescape_mountinfo(r[1]),
            })
        })
        .collect()
}

/// The mounts of a process (`"self"` or a pid) as it sees them.
pub fn read_mountinfo(pid: &str) -> std::io::Result<Vec<MountInfo>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(format!(
        "/proc/{pid}/mountinfo"
    ))?))
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
    fn parses_mountinfo() {
        let text = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                    90 27 0:45 / /a\\040b/secrets rw,nosuid,nodev,noexec shared:7 - tmpfs nomad-secrets rw,size=1024k\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/proc"));
        assert_eq!(m[1].mount_point, PathBuf::from("/a b/secrets"));
        assert_eq!(m[1].dev, (0, 45));
        assert_eq!(m[1].fstype, "tmpfs");
        assert_eq!(m[1].source, "nomad-secrets");
        assert!(read_mountinfo("self").is_ok_and(|v| !v.is_empty()));
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
