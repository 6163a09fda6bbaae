//! The restart tracker (facts §5.4): events in (exit, start failure), decision out. Sans-IO:
//! the caller passes the current time and a jitter fraction.

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

/// Per-task restart state.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: Policy,
    on_success: bool,
    count: u64,
    /// Window start, as a duration since an arbitrary epoch chosen by the caller.
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

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides; `now` is monotonic time since the caller's epoch, `jitter` in `[0, 1)`.
    pub fn decide(&mut self, outcome: Outcome, now: Duration, jitter: f64) -> Decision {
        let success = match outcome {
            Outcome::Killed => return Decision::Killed,
            Outcome::RestartRequested => {
                return Decision::Restart {
                    delay: Duration::ZERO,
                    reason: REASON_WITHIN_POLICY.to_string(),
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
                            reason: REASON_WITHIN_POLICY.into(),
                        },
                    ),
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
