//! Task log collection (facts §2.6): the driver writes stdout/stderr into FIFOs
//! `<A>/alloc/logs/.<task>.stdout.fifo` / `.stderr.fifo`; a tokio task per stream copies them
//! into `<task>.stdout.<N>` / `<task>.stderr.<N>` with size-based rotation.
//!
//! Design: the copier lives in the agent process (Nomad runs a separate `logmon` process).
//! The FIFO reader is opened read-write so it never sees EOF across task restarts. When
//! `mkfifo` is unavailable the driver writes straight into `<task>.<stream>.0` (no rotation).
//! While the agent is down nobody reads the FIFO; the task still never gets EPIPE/SIGPIPE,
//! because `nomad_executor::spawn` opens a FIFO output `O_RDWR` (the task's own descriptor
//! counts as a reader): writes fill the pipe buffer, then block until the restarted agent's
//! copier, reattached on restore, drains them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How far back from the cut point a newline is searched for.
const NEWLINE_SCAN_LIMIT: usize = 32 * 1024;

/// A size-rotated log file set `<dir>/<base>.<N>`.
#[derive(Debug)]
pub struct RotatingWriter {
    dir: PathBuf,
    base: String,
    max_files: u64,
    max_size: u64,
    index: u64,
    size: u64,
    file: File,
}

impl RotatingWriter {
    /// Opens (appending to the highest existing index) `<dir>/<base>.<N>`.
    pub fn open(
        dir: &Path,
        base: &str,
        max_files: u64,
        max_size: u64,
    ) -> io::Result<RotatingWriter> {
        let index = existing_indexes(dir, base)?.into_iter().max().unwrap_or(0);
        let (file, size) = open_index(dir, base, index)?;
        Ok(RotatingWriter {
            dir: dir.to_path_buf(),
            base: base.to_string(),
            max_files: max_files.max(1),
            max_size: max_size.max(1),
            index,
            size,
            file,
        })
    }

    /// The current file index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Writes `data`, rotating when a file reaches the size limit (cutting after a newline when
    /// one is close enough to the limit).
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = self.max_size.saturating_sub(self.size) as usize;
            if room == 0 {
                self.rotate()?;
                continue;
            }
            if data.len() <= room {
                self.file.write_all(data)?;
                self.size += data.len() as u64;
                return Ok(());
            }
            // Cut at the last newline within the room, if one lies within the scan limit.
            let window_start = room.saturating_sub(NEWLINE_SCAN_LIMIT);
            let cut = data[window_start..room]
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|p| window_start + p + 1);
            let n = cut.unwrap_or(room);
            self.file.write_all(&data[..n])?;
            self.size += n as u64;
            data = &data[n..];
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let mut next = self.index + 1;
        // Skip files that are already full (left by an earlier run).
        loop {
            let p = self.dir.join(format!("{}.{next}", self.base));
            match std::fs::metadata(&p) {
                Ok(m) if m.len() >= self.max_size => next += 1,
                _ => break,
            }
        }
        let (file, size) = open_index(&self.dir, &self.base, next)?;
        self.file = file;
        self.size = size;
        self.index = next;
        self.purge()
    }

    fn purge(&self) -> io::Result<()> {
        let mut idx = existing_indexes(&self.dir, &self.base)?;
        idx.sort_unstable();
        if idx.len() as u64 <= self.max_files {
            return Ok(());
        }
        let remove = idx.len() - self.max_files as usize;
        for i in &idx[..remove] {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.{i}", self.base)));
        }
        Ok(())
    }
}

fn open_index(dir: &Path, base: &str, index: u64) -> io::Result<(File, u64)> {
    let p = dir.join(format!("{base}.{index}"));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&p)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

fn existing_indexes(dir: &Path, base: &str) -> io::Result<Vec<u64>> {
    let prefix = format!("{base}.");
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix(&prefix)
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    Ok(out)
}

/// Creates a FIFO (replacing anything else at `path`); true when `path` is a FIFO after.
pub fn make_fifo(path: &Path) -> bool {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_fifo() {
            return true;
        }
        let _ = std::fs::remove_file(path);
    }
    nomad_executor::hostmount::make_fifo(path, 0o600).is_ok()
}

/// Log settings of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// `max_files`.
    pub max_files: u64,
    /// `max_file_size` in bytes.
    pub max_file_size: u64,
    /// `disabled`.
    pub disabled: bool,
}

impl LogSettings {
    /// From the task's `logs` block (defaults 10 × 10 MB).
    pub fn from_task(t: &nomad_structs::Task) -> LogSettings {
        let lc = t.log_config.clone().unwrap_or_default();
        LogSettings {
            max_files: lc.max_files.unwrap_or(10).max(1) as u64,
            max_file_size: lc.max_file_size_mb.unwrap_or(10).max(1) as u64 * 1024 * 1024,
            disabled: lc.disabled.unwrap_or(false),
        }
    }
}

/// A running log collector for one task.
#[derive(Debug)]
pub struct LogMon {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    /// Where the driver writes stdout.
    pub stdout_path: PathBuf,
    /// Where the driver writes stderr.
    pub stderr_path: PathBuf,
}

impl LogMon {
    /// Starts collection for `task` into `logs_dir`. Must run inside a tokio runtime.
    pub fn start(logs_dir: &Path, task: &str, settings: LogSettings) -> io::Result<LogMon> {
        let (stop, _) = watch::channel(false);
        if settings.disabled {
            return Ok(LogMon {
                stop,
                handles: Vec::new(),
                stdout_path: "/dev/null".into(),
                stderr_path: "/dev/null".into(),
            });
        }
        let mut handles = Vec::new();
        let mut paths = Vec::new();
        for stream in ["stdout", "stderr"] {
            let base = format!("{task}.{stream}");
            let fifo = logs_dir.join(format!(".{task}.{stream}.fifo"));
            let writer =
                RotatingWriter::open(logs_dir, &base, settings.max_files, settings.max_file_size)?;
            let receiver = if make_fifo(&fifo) {
                tokio::net::unix::pipe::OpenOptions::new()
                    .read_write(true)
                    .open_receiver(&fifo)
                    .ok()
            } else {
                None
            };
            match receiver {
                Some(rx) => {
                    paths.push(fifo);
                    handles.push(tokio::spawn(copy_loop(rx, writer, stop.subscribe())));
                }
                None => {
                    // Fallback: the driver appends to the current file directly.
                    paths.push(logs_dir.join(format!("{base}.{}", writer.index())));
                }
            }
        }
        let stderr_path = paths.pop().unwrap_or_else(|| "/dev/null".into());
        let stdout_path = paths.pop().unwrap_or_else(|| "/dev/null".into());
        Ok(LogMon {
            stop,
            handles,
            stdout_path,
            stderr_path,
        })
    }

    /// Drains what the task wrote so far and stops collecting.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for h in std::mem::take(&mut self.handles) {
            let _ = h.await;
        }
    }
}

impl Drop for LogMon {
    /// Dropped without [`LogMon::shutdown`] (agent shutdown): stop copying without draining;
    /// the copier is reattached on restore.
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

async fn copy_loop(
    rx: tokio::net::unix::pipe::Receiver,
    mut writer: RotatingWriter,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            // Data first: a stop that arrives with output pending must not skip it.
            biased;
            r = rx.readable() => {
                if r.is_err() {
                    return;
                }
                match rx.try_read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => {
                        if let Err(e) = writer.write_all(&buf[..n]) {
                            tracing::warn!(error = %e, "failed writing task log");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "failed reading task log fifo");
                        return;
                    }
                }
            }
            // The guard `wait_for` returns must not live across the drain's awaits.
            stopped = stop.wait_for(|s| *s) => {
                if stopped.is_err() {
                    return;
                }
            }
        }
        if *stop.borrow() {
            drain(&rx, &mut writer, &mut buf).await;
            return;
        }
    }
}

/// Copies what is still in the pipe once the task is gone. `try_read` alone is not enough:
/// tokio answers WouldBlock until the reactor has seen the pipe readable, which would drop the
/// output of a task that exits right after writing. So wait for readiness, briefly, until the
/// pipe stays quiet.
async fn drain(rx: &tokio::net::unix::pipe::Receiver, writer: &mut RotatingWriter, buf: &mut [u8]) {
    const QUIET: std::time::Duration = std::time::Duration::from_millis(25);
    loop {
        match tokio::time::timeout(QUIET, rx.readable()).await {
            Ok(Ok(())) => match rx.try_read(buf) {
                Ok(0) => return,
                Ok(n) => {
                    if let Err(e) = writer.write_all(&buf[..n]) {
                        tracing::warn!(error = %e, "failed writing task log");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            },
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap_or_default()
    }

    #[test]
    fn rotates_on_line_boundaries() {
        let d = tempfile::tempdir().expect("tmp");
        let mut w = RotatingWriter::open(d.path(), "t.stdout", 10, 10).expect("open");
        w.write_all(b"aaaa\nbbbb\ncccc\n").expect("write");
        assert_eq!(read(d.path(), "t.stdout.0"), "aaaa\nbbbb\n");
        assert_eq!(read(d.path(), "t.stdout.1"), "cccc\n");
        // No newline within the room: hard cut at the size limit.
        w.write_all(b"0123456789ABC").expect("write");
        assert_eq!(read(d.path(), "t.stdout.1"), "cccc\n01234");
        assert_eq!(read(d.path(), "t.stdout.2"), "56789ABC");
    }

    #[test]
    fn keeps_max_files() {
        let d = tempfile::tempdir().expect("tmp");
        let mut w = RotatingWriter::open(d.path(), "t.stderr", 2, 4).expect("open");
        for _ in 0..5 {
            w.write_all(b"abc\n").expect("write");
        }
        let mut idx = existing_indexes(d.path(), "t.stderr").expect("ls");
        idx.sort_unstable();
        assert_eq!(idx, vec![3, 4]);
    }

    #[test]
    fn appends_to_highest_index() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("t.stdout.0"), "old\n").expect("w");
        std::fs::write(d.path().join("t.stdout.3"), "x\n").expect("w");
        let mut w = RotatingWriter::open(d.path(), "t.stdout", 10, 100).expect("open");
        assert_eq!(w.index(), 3);
        w.write_all(b"y\n").expect("write");
        assert_eq!(read(d.path(), "t.stdout.3"), "x\ny\n");
    }

    #[tokio::test]
    async fn fifo_copy() {
        let d = tempfile::tempdir().expect("tmp");
        let lm = LogMon::start(
            d.path(),
            "web",
            LogSettings {
                max_files: 3,
                max_file_size: 1024,
                disabled: false,
            },
        )
        .expect("start");
        let path = lm.stdout_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = OpenOptions::new()
                .append(true)
                .open(path)
                .expect("open fifo");
            f.write_all(b"hello\n").expect("write");
        })
        .await
        .expect("join");
        lm.shutdown().await;
        assert_eq!(read(d.path(), "web.stdout.0"), "hello\n");
        assert!(d.path().join("web.stderr.0").exists());
    }
}
