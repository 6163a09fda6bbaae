//! Shared helpers of the benchmark binaries: percentiles, the fork/exec floor, finding the binary.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The `p`-th percentile (0..=100) of `samples` (sorted in place), nearest-rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Median time to fork, exec and reap `/bin/true` from this process: the machine's floor for
/// starting any task, measured in the same run as the benchmark so ratios survive noise.
pub fn fork_exec_floor(runs: usize) -> Duration {
    let mut v: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let _ = std::process::Command::new("/bin/true").status();
            t.elapsed()
        })
        .collect();
    percentile(&mut v, 50.0)
}

/// The `nomad` binary to benchmark: `$NOMAD_BIN`, else `target/release/nomad` from the workspace.
pub fn nomad_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NOMAD_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/nomad")
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&mut v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&mut [], 50.0), Duration::ZERO);
    }
}
