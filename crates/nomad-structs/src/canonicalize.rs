//! Nomad's submission defaults (api `Canonicalize`), applied by the server to every job it accepts.

use crate::job::*;

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

/// Fills every unset field of `job` with Nomad's default. Idempotent.
pub fn canonicalize_job(job: &mut Job) {
    if job.name.is_empty() {
        job.name = job.id.clone();
    }
    if job.namespace.is_empty() {
        job.namespace = "default".into();
    }
    if job.priority == 0 {
        job.priority = 50;
    }
    if job.region.is_empty() {
        job.region = "global".into();
    }
    if job.job_type.is_empty() {
        job.job_type = JOB_TYPE_SERVICE.into();
    }
    if job.node_pool.is_empty() {
        job.node_pool = "default".into();
    }
    if job.datacenters.as_ref().is_none_or(|d| d.is_empty()) {
        job.datacenters = Some(vec!["*".into()]);
    }
    let job_type = job.job_type.clone();
    let service_like = job_type == JOB_TYPE_SERVICE || job_type == JOB_TYPE_SYSTEM;

    // The job-level update block is merged into groups; at job level Nomad keeps only
    // Stagger and MaxParallel, and always emits the object.
    let job_update = job.update.clone();
    let mut top = UpdateStrategy::default();
    if service_like {
        let u = job_update.clone().unwrap_or_default();
        top.stagger = Some(u.stagger.unwrap_or(30 * SEC));
        top.max_parallel = Some(u.max_parallel.unwrap_or(1));
    } else {
        top.stagger = Some(0);
        top.max_parallel = Some(0);
    }
    let job_reschedule = job.reschedule.take();
    let job_migrate = job.migrate.take();

    for tg in &mut job.task_groups {
        canonicalize_group(
            tg,
            &job_type,
            job_update.as_ref(),
            job_reschedule.as_ref(),
            job_migrate.as_ref(),
        );
    }
    job.update = Some(top);
}

fn merge_update(base: Option<&UpdateStrategy>, over: Option<&UpdateStrategy>) -> UpdateStrategy {
    let b = base.cloned().unwrap_or_default();
    let o = over.cloned().unwrap_or_default();
    UpdateStrategy {
        stagger: o.stagger.or(b.stagger).or(Some(30 * SEC)),
        max_parallel: o.max_parallel.or(b.max_parallel).or(Some(1)),
        health_check: o.health_check.or(b.health_check).or(Some("checks".into())),
        min_healthy_time: o.min_healthy_time.or(b.min_healthy_time).or(Some(10 * SEC)),
        healthy_deadline: o.healthy_deadline.or(b.healthy_deadline).or(Some(5 * MIN)),
        progress_deadline: o
            .progress_deadline
            .or(b.progress_deadline)
            .or(Some(10 * MIN)),
        auto_revert: o.auto_revert.or(b.auto_revert).or(Some(false)),
        auto_promote: o.auto_promote.or(b.auto_promote).or(Some(false)),
        canary: o.canary.or(b.canary).or(Some(0)),
    }
}

fn canonicalize_group(
    tg: &mut TaskGroup,
    job_type: &str,
    job_update: Option<&UpdateStrategy>,
    job_reschedule: Option<&ReschedulePolicy>,
    job_migrate: Option<&MigrateStrategy>,
) {
    if tg.count.is_none() {
        let min = tg
            .scaling
            .as_ref()
            .and_then(|s| s.get("Min"))
            .and_then(|m| m.as_i64());
        tg.count = Some(min.unwrap_or(1));
    }
    let disk = tg.ephemeral_disk.get_or_insert_with(Default::default);
    disk.sticky.get_or_insert(false);
    disk.migrate.get_or_insert(false);
    disk.size_mb.get_or_insert(300);

    let service_like = job_type == JOB_TYPE_SERVICE || job_type == JOB_TYPE_SYSTEM;
    if service_like && (job_update.is_some() || tg.update.is_some() || job_type == JOB_TYPE_SERVICE)
    {
        tg.update = Some(merge_update(job_update, tg.update.as_ref()));
    } else if !service_like {
        tg.update = None;
    }

    let (attempts, interval) = if job_type == JOB_TYPE_BATCH || job_type == JOB_TYPE_SYSBATCH {
        (3, 24 * HOUR)
    } else {
        (2, 30 * MIN)
    };
    let rp = tg.restart_policy.get_or_insert_with(Default::default);
    rp.attempts.get_or_insert(attempts);
    rp.interval.get_or_insert(interval);
    rp.delay.get_or_insert(15 * SEC);
    rp.mode.get_or_insert_with(|| "fail".into());
    rp.render_templates.get_or_insert(false);
    let group_restart = rp.clone();

    match job_type {
        JOB_TYPE_SERVICE | JOB_TYPE_BATCH => {
            let (a, i, d, f, m, u) = if job_type == JOB_TYPE_SERVICE {
                (0, 0, 30 * SEC, "exponential", HOUR, true)
            } else {
                (1, 24 * HOUR, 5 * SEC, "constant", 0, false)
            };
            let base = job_reschedule.cloned().unwrap_or_default();
            let rs = tg.reschedule_policy.get_or_insert_with(Default::default);
            rs.attempts = rs.attempts.or(base.attempts).or(Some(a));
            rs.interval = rs.interval.or(base.interval).or(Some(i));
            rs.delay = rs.delay.or(base.delay).or(Some(d));
            rs.delay_function = rs
                .delay_function
                .clone()
                .or(base.delay_function)
                .or(Some(f.into()));
            rs.max_delay = rs.max_delay.or(base.max_delay).or(Some(m));
            rs.unlimited = rs.unlimited.or(base.unlimited).or(Some(u));
        }
        _ => tg.reschedule_policy = None,
    }

    if job_type == JOB_TYPE_SERVICE {
        let base = job_migrate.cloned().unwrap_or_default();
        let m = tg.migrate.get_or_insert_with(Default::default);
        m.max_parallel = m.max_parallel.or(base.max_parallel).or(Some(1));
        m.health_check = m
            .health_check
            .clone()
            .or(base.health_check)
            .or(Some("checks".into()));
        m.min_healthy_time = m
            .min_healthy_time
            .or(base.min_healthy_time)
            .or(Some(10 * SEC));
        m.healthy_deadline = m
            .healthy_deadline
            .or(base.healthy_deadline)
            .or(Some(5 * MIN));
    } else {
        tg.migrate = None;
    }

    for t in &mut tg.tasks {
        canonicalize_task(t, &group_restart);
    }
}

fn canonicalize_task(t: &mut Task, group_restart: &RestartPolicy) {
    let r = t.resources.get_or_insert_with(Default::default);
    if r.cores.unwrap_or(0) == 0 {
        r.cpu.get_or_insert(100);
    } else {
        r.cpu.get_or_insert(0);
    }
    r.cores.get_or_insert(0);
    r.memory_mb.get_or_insert(300);
    r.memory_max_mb.get_or_insert(0);
    t.kill_timeout.get_or_insert(5 * SEC);
    t.shutdown_delay.get_or_insert(0);
    let lc = t.log_config.get_or_insert_with(Default::default);
    lc.max_files.get_or_insert(10);
    lc.max_file_size_mb.get_or_insert(10);
    let disabled = lc.disabled.or(lc.enabled.map(|e| !e)).unwrap_or(false);
    lc.disabled = Some(disabled);
    lc.enabled = None;
    // The task's restart policy is the group's, overridden field by field.
    let own = t.restart_policy.clone().unwrap_or_default();
    t.restart_policy = Some(RestartPolicy {
        attempts: own.attempts.or(group_restart.attempts),
        interval: own.interval.or(group_restart.interval),
        delay: own.delay.or(group_restart.delay),
        mode: own.mode.or(group_restart.mode.clone()),
        render_templates: own.render_templates.or(group_restart.render_templates),
    });
    if let Some(arts) = &mut t.artifacts {
        for a in arts {
            let mode = a.getter_mode.get_or_insert_with(|| "any".into()).clone();
            if a.relative_dest.as_deref().unwrap_or("").is_empty() {
                let dest = if mode == "file" {
                    let src = a.getter_source.clone().unwrap_or_default();
                    let base = src
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .split('?')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    format!("local/{base}")
                } else {
                    "local/".to_string()
                };
                a.relative_dest = Some(dest);
            }
            a.getter_insecure.get_or_insert(false);
            a.chown.get_or_insert(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(job_type: &str) -> Job {
        Job {
            id: "example".into(),
            job_type: job_type.into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn service_defaults() {
        let mut j = job("");
        canonicalize_job(&mut j);
        assert_eq!(j.name, "example");
        assert_eq!(j.priority, 50);
        assert_eq!(j.job_type, "service");
        assert_eq!(j.datacenters, Some(vec!["*".to_string()]));
        let tg = &j.task_groups[0];
        assert_eq!(tg.count, Some(1));
        let rp = tg.restart_policy.as_ref().unwrap();
        assert_eq!(
            (rp.attempts, rp.interval, rp.delay),
            (Some(2), Some(30 * MIN), Some(15 * SEC))
        );
        let t = &tg.tasks[0];
        let r = t.resources.as_ref().unwrap();
        assert_eq!((r.cpu, r.memory_mb), (Some(100), Some(300)));
        assert_eq!(t.kill_timeout, Some(5 * SEC));
        assert_eq!(t.log_config.as_ref().unwrap().max_files, Some(10));
        assert_eq!(
            tg.reschedule_policy
                .as_ref()
                .unwrap()
                .delay_function
                .as_deref(),
            Some("exponential")
        );
        // Idempotent.
        let before = j.clone();
        canonicalize_job(&mut j);
        assert_eq!(before, j);
    }

    #[test]
    fn batch_defaults() {
        let mut j = job("batch");
        canonicalize_job(&mut j);
        let tg = &j.task_groups[0];
        let rp = tg.restart_policy.as_ref().unwrap();
        assert_eq!((rp.attempts, rp.interval), (Some(3), Some(24 * HOUR)));
        assert!(tg.update.is_none());
        assert!(tg.migrate.is_none());
        assert_eq!(tg.reschedule_policy.as_ref().unwrap().attempts, Some(1));
    }

    #[test]
    fn explicit_zero_count_kept() {
        let mut j = job("service");
        j.task_groups[0].count = Some(0);
        canonicalize_job(&mut j);
        assert_eq!(j.task_groups[0].count, Some(0));
    }
}
