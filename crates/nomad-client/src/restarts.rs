//! The restart tracker (facts §5.4): events in (exit, start failure), decision out. Sans-IO:
//! the caller passes the current time and a jitter fraction.
//!
//! Times are durations since the Unix epoch (wall clock), so the tracker's window and count can
//! be persisted with the task state and survive an agent restart ([`TrackerState`]).

use std::time::Duration;

use nomad_structs::{RestartPolicy, JOB_TYPE_BATCH, JOB_TYPE_SYSBATCH};

/// Reason when a restart is within policy.
pub const REASON_WITHIN_POLICY: &str = "Restart within policy";
/// Reason when no restarts are allowed.
pub const REASON_NO_RESTARTS_ALLOWED: &str = "Policy allows no restarts";
/// Reason when a start error is not recoverable.
pub const REASON_UNRECOVERABLE_ERROR: &str = "Error was unrecoverable";
/// Reason when a batch task completed.
pub const REASON_UNNECESSARY: &str = "Restart unnecessary as task terminated successfully";
/// Reason when `delay` mode waits out the interval.
pub const REASON_DELAY: &str = "Exceeded allowed attempts, applying a delay";

/// The effective restart policy of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Allowed restarts per interval.
    pub attempts: u64,
    /// The window.
    pub interval: Duration,
    /// Delay between restarts.
    pub delay: Duration,
    /// `fail` or `delay`.
    pub mode: String,
}

impl Policy {
    /// The task's policy merged over the group's, with Nomad's job-type defaults (§5.3).
    pub fn resolve(
        job_type: &str,
        group: Option<&RestartPolicy>,
        task: Option<&RestartPolicy>,
    ) -> Policy {
        let batch = job_type == JOB_TYPE_BATCH || job_type == JOB_TYPE_SYSBATCH;
        let (da, di) = if batch { (3, 24 * 3600) } else { (2, 30 * 60) };
        let pick =
            |f: fn(&RestartPolicy) -> Option<i64>| task.and_then(f).or_else(|| group.and_then(f));
        let ns = |v: i64| Duration::from_nanos(v.max(0) as u64);
        Policy {
            attempts: pick(|p| p.attempts).map_or(da, |a| a.max(0) as u64),
            interval: pick(|p| p.interval).map_or(Duration::from_secs(di), ns),
            delay: pick(|p| p.delay).map_or(Duration::from_secs(15), ns),
            mode: task
                .and_then(|p| p.mode.clone())
                .or_else(|| group.and_then(|p| p.mode.clone()))
                .unwrap_or_else(|| "fail".to_string()),
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Restart after `delay` (event `Restarting`).
    Restart {
        /// Wait this long.
        delay: Duration,
        /// `RestartReason`.
        reason: String,
    },
    /// Stop for good (event `Not Restarting`); `fails_task` marks the task failed.
    NotRestarting {
        /// `RestartReason`.
        reason: String,
        /// Whether the task ends failed.
        fails_task: bool,
    },
    /// The task completed and needs no restart (dead, not failed).
    Terminated {
        /// `RestartReason`.
        reason: String,
    },
    /// The task was killed; nothing to do.
    Killed,
}

/// What happened to the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The task exited (success = exit 0, no signal, no error).
    Exited {
        /// Successful exit.
        success: bool,
    },
    /// Starting failed.
    StartError {
        /// Whether retrying could help.
        recoverable: bool,
    },
    /// The client killed the task.
    Killed,
    /// A user asked for a restart.
    RestartRequested,
}

/// The persisted part of a [`RestartTracker`]: restarts counted in the current window and
/// when the window started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrackerState {
    /// Restarts (and failed starts) counted against the policy in the current window.
    pub count: u64,
    /// Window start, Unix nanoseconds; `None` before the first exit.
    pub window_start_unix_nanos: Option<i64>,
}

/// Per-task restart state.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: Policy,
    on_success: bool,
    count: u64,
    /// Window start, as a duration since the Unix epoch.
    start: Option<Duration>,
}

impl RestartTracker {
    /// `on_success`: restart even after a successful exit (service/system, sidecars).
    pub fn new(policy: Policy, on_success: bool) -> Self {
        RestartTracker {
            policy,
            on_success,
            count: 0,
            start: None,
        }
    }

    /// Whether a job type restarts successful tasks (true for service/system).
    pub fn on_success_for(job_type: &str, lifecycle: Option<&nomad_structs::Lifecycle>) -> bool {
        match lifecycle {
            Some(lc) if lc.hook == "prestart" || lc.hook == "poststart" => lc.sidecar,
            Some(lc) if lc.hook == "poststop" => false,
            _ => !(job_type == JOB_TYPE_BATCH || job_type == JOB_TYPE_SYSBATCH),
        }
    }

    /// A tracker continuing from persisted state (agent restart).
    pub fn restored(policy: Policy, on_success: bool, st: TrackerState) -> Self {
        RestartTracker {
            policy,
            on_success,
            count: st.count,
            start: st
                .window_start_unix_nanos
                .map(|n| Duration::from_nanos(n.max(0) as u64)),
        }
    }

    /// The state to persist.
    pub fn state(&self) -> TrackerState {
        TrackerState {
            count: self.count,
            window_start_unix_nanos: self.start.map(|d| d.as_nanos() as i64),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides; `now` is the time since the Unix epoch, `jitter` in `[0, 1)`.
    ///
    /// A user-requested restart restarts at once, with an empty reason (Nomad clears it), and
    /// is not counted against the policy.
    pub fn decide(&mut self, outcome: Outcome, now: Duration, jitter: f64) -> Decision {
        let success = match outcome {
            Outcome::Killed => return Decision::Killed,
            Outcome::RestartRequested => {
                return Decision::Restart {
                    delay: Duration::ZERO,
                    reason: String::new(),
                }
            }
            Outcome::Exited { success } => success,
            Outcome::StartError { .. } => false,
        };
        if self.policy.attempts == 0 {
            if !self.on_success && success {
                return Decision::Terminated {
                    reason: REASON_UNNECESSARY.to_string(),
                };
            }
            return Decision::NotRestarting {
                reason: REASON_NO_RESTARTS_ALLOWED.to_string(),
                fails_task: true,
            };
        }
        let start = *self.start.get_or_insert(now);
        if now > start + self.policy.interval {
            self.count = 0;
            self.start = Some(now);
        }
        self.count += 1;
        if let Outcome::StartError { recoverable: false } = outcome {
            return Decision::NotRestarting {
                reason: REASON_UNRECOVERABLE_ERROR.to_string(),
                fails_task: true,
            };
        }
        if success && !self.on_success {
            return Decision::Terminated {
                reason: REASON_UNNECESSARY.to_string(),
            };
        }
        if self.count > self.policy.attempts {
            if self.policy.mode == "delay" {
                let end = self.start.unwrap_or(now) + self.policy.interval;
                return Decision::Restart {
                    delay: end.saturating_sub(now),
                    reason: REASON_DELAY.to_string(),
                };
            }
            return Decision::NotRestarting {
                reason: format!(
                    "Exceeded allowed attempts {} in interval {} and mode is \"fail\"",
                    self.policy.attempts,
                    nomad_structs::duration::format_go_duration(
                        self.policy.interval.as_nanos() as i64
                    )
                ),
                fails_task: true,
            };
        }
        let j = jitter.clamp(0.0, 1.0);
        let delay = self.policy.delay + self.policy.delay.mul_f64(j * 0.25);
        Decision::Restart {
            delay,
            reason: REASON_WITHIN_POLICY.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u64, interval_s: u64, delay_s: u64, mode: &str) -> Policy {
        Policy {
            attempts,
            interval: Duration::from_secs(interval_s),
            delay: Duration::from_secs(delay_s),
            mode: mode.into(),
        }
    }

    #[test]
    fn table() {
        let s = |n| Duration::from_secs(n);
        struct Case {
            name: &'static str,
            policy: Policy,
            on_success: bool,
            steps: Vec<(Outcome, u64, Decision)>,
        }
        let restart = |d: u64| Decision::Restart {
            delay: s(d),
            reason: REASON_WITHIN_POLICY.into(),
        };
        let cases = vec![
            Case {
                name: "batch success completes",
                policy: policy(3, 86400, 15, "fail"),
                on_success: false,
                steps: vec![(
                    Outcome::Exited { success: true },
                    0,
                    Decision::Terminated {
                        reason: REASON_UNNECESSARY.into(),
                    },
                )],
            },
            Case {
                name: "service success restarts then fails",
                policy: policy(2, 1800, 15, "fail"),
                on_success: true,
                steps: vec![
                    (Outcome::Exited { success: true }, 0, restart(15)),
                    (Outcome::Exited { success: true }, 20, restart(15)),
                    (
                        Outcome::Exited { success: true },
                        40,
                        Decision::NotRestarting {
                            reason:
                                "Exceeded allowed attempts 2 in interval 30m0s and mode is \"fail\""
                                    .into(),
                            fails_task: true,
                        },
                    ),
                ],
            },
            Case {
                name: "interval resets the count",
                policy: policy(1, 10, 1, "fail"),
                on_success: false,
                steps: vec![
                    (Outcome::Exited { success: false }, 0, restart(1)),
                    (Outcome::Exited { success: false }, 20, restart(1)),
                ],
            },
            Case {
                name: "delay mode waits until the window ends",
                policy: policy(1, 100, 1, "delay"),
                on_success: false,
                steps: vec![
                    (Outcome::Exited { success: false }, 0, restart(1)),
                    (
                        Outcome::Exited { success: false },
                        30,
                        Decision::Restart {
                            delay: s(70),
                            reason: REASON_DELAY.into(),
                        },
                    ),
                ],
            },
            Case {
                name: "zero attempts",
                policy: policy(0, 100, 1, "fail"),
                on_success: false,
                steps: vec![
                    (
                        Outcome::Exited { success: true },
                        0,
                        Decision::Terminated {
                            reason: REASON_UNNECESSARY.into(),
                        },
                    ),
                    (
                        Outcome::Exited { success: false },
                        1,
                        Decision::NotRestarting {
                            reason: REASON_NO_RESTARTS_ALLOWED.into(),
                            fails_task: true,
                        },
                    ),
                ],
            },
            Case {
                name: "unrecoverable start error",
                policy: policy(3, 100, 1, "fail"),
                on_success: true,
                steps: vec![(
                    Outcome::StartError { recoverable: false },
                    0,
                    Decision::NotRestarting {
                        reason: REASON_UNRECOVERABLE_ERROR.into(),
                        fails_task: true,
                    },
                )],
            },
            Case {
                name: "recoverable start error restarts",
                policy: policy(1, 100, 2, "fail"),
                on_success: true,
                steps: vec![(Outcome::StartError { recoverable: true }, 0, restart(2))],
            },
            Case {
                name: "killed and user restart",
                policy: policy(1, 100, 2, "fail"),
                on_success: true,
                steps: vec![
                    (Outcome::Killed, 0, Decision::Killed),
                    (
                        Outcome::RestartRequested,
                        0,
                        Decision::Restart {
                            delay: Duration::ZERO,
                            reason: String::new(),
                        },
                    ),
                    // The user restart did not count: one attempt is still left.
                    (Outcome::Exited { success: false }, 1, restart(2)),
                ],
            },
        ];
        for c in cases {
            let mut t = RestartTracker::new(c.policy, c.on_success);
            for (i, (o, at, want)) in c.steps.into_iter().enumerate() {
                assert_eq!(t.decide(o, s(at), 0.0), want, "{} step {i}", c.name);
            }
        }
    }

    #[test]
    fn state_round_trip() {
        let s = |n| Duration::from_secs(n);
        let mut t = RestartTracker::new(policy(2, 100, 1, "fail"), false);
        assert_eq!(t.state(), TrackerState::default());
        t.decide(Outcome::Exited { success: false }, s(1_000), 0.0);
        let st = t.state();
        assert_eq!(st.count, 1);
        assert_eq!(st.window_start_unix_nanos, Some(1_000_000_000_000));
        let json = serde_json::to_string(&st).expect("ser");
        let back: TrackerState = serde_json::from_str(&json).expect("de");
        // A restored tracker keeps counting in the same window: the second failure restarts,
        // the third exceeds the policy.
        let mut r = RestartTracker::restored(policy(2, 100, 1, "fail"), false, back);
        assert!(matches!(
            r.decide(Outcome::Exited { success: false }, s(1_010), 0.0),
            Decision::Restart { .. }
        ));
        assert!(matches!(
            r.decide(Outcome::Exited { success: false }, s(1_020), 0.0),
            Decision::NotRestarting { .. }
        ));
        // Past the window the count resets.
        let mut r = RestartTracker::restored(policy(2, 100, 1, "fail"), false, back);
        r.decide(Outcome::Exited { success: false }, s(1_200), 0.0);
        assert_eq!(r.state().count, 1);
    }

    #[test]
    fn jitter_bounds() {
        let mut t = RestartTracker::new(policy(5, 100, 4, "fail"), true);
        match t.decide(Outcome::Exited { success: false }, Duration::ZERO, 0.999) {
            Decision::Restart { delay, .. } => {
                assert!(delay >= Duration::from_secs(4) && delay < Duration::from_secs(5))
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn resolve_defaults() {
        let p = Policy::resolve("batch", None, None);
        assert_eq!(
            (p.attempts, p.interval, p.mode.as_str()),
            (3, Duration::from_secs(86400), "fail")
        );
        let p = Policy::resolve("service", None, None);
        assert_eq!((p.attempts, p.interval), (2, Duration::from_secs(1800)));
        let g = RestartPolicy {
            attempts: Some(5),
            delay: Some(1_000_000_000),
            ..Default::default()
        };
        let t = RestartPolicy {
            attempts: Some(1),
            mode: Some("delay".into()),
            ..Default::default()
        };
        let p = Policy::resolve("service", Some(&g), Some(&t));
        assert_eq!(
            (p.attempts, p.delay, p.mode.as_str()),
            (1, Duration::from_secs(1), "delay")
        );
    }
}
