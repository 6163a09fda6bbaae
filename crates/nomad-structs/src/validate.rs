//! Job validation with Nomad's messages, collected rather than stopping at the first problem.

use std::collections::BTreeSet;

use crate::job::*;

/// Checks a canonicalized job; returns every problem found (empty when valid).
pub fn validate_job(job: &Job) -> Vec<String> {
    let mut errs = Vec::new();
    if job.region.is_empty() {
        errs.push("Missing job region".to_string());
    }
    if job.id.is_empty() {
        errs.push("Missing job ID".to_string());
    } else if job.id.contains(' ') {
        errs.push("Job ID contains a space".to_string());
    } else if job.id.contains('\0') {
        errs.push("Job ID contains a null character".to_string());
    }
    if job.name.is_empty() {
        errs.push("Missing job name".to_string());
    } else if job.name.contains('\0') {
        errs.push("Job Name contains a null character".to_string());
    }
    if job.namespace.is_empty() {
        errs.push("Job must be in a namespace".to_string());
    }
    match job.job_type.as_str() {
        JOB_TYPE_SERVICE | JOB_TYPE_BATCH | JOB_TYPE_SYSTEM | JOB_TYPE_SYSBATCH => {}
        "" => errs.push("Missing job type".to_string()),
        t => errs.push(format!("Invalid job type: {t:?}")),
    }
    if !(1..=100).contains(&job.priority) {
        errs.push("Job priority must be between [1, 100]".to_string());
    }
    if job.datacenters.as_ref().is_none_or(|d| d.is_empty()) {
        errs.push("Missing job datacenters".to_string());
    } else if job.datacenters.iter().flatten().any(|d| d.is_empty()) {
        errs.push("Job datacenter must be non-empty string".to_string());
    }
    if job.task_groups.is_empty() {
        errs.push("Missing job task groups".to_string());
    }
    for c in job.constraints.iter().flatten() {
        if let Err(e) = validate_constraint(c) {
            errs.push(format!("Constraint {} validation failed: {e}", c));
        }
    }
    let mut names = BTreeSet::new();
    for (i, tg) in job.task_groups.iter().enumerate() {
        if tg.name.is_empty() {
            errs.push(format!("Job task group {} missing name", i + 1));
        } else if !names.insert(tg.name.clone()) {
            errs.push(format!(
                "Job task group {} redefines '{}' from group {}",
                i + 1,
                tg.name,
                i
            ));
        }
        for e in validate_group(job, tg) {
            errs.push(format!("Task group {} validation failed: {e}", tg.name));
        }
    }
    errs
}

fn validate_group(job: &Job, tg: &TaskGroup) -> Vec<String> {
    let mut errs = Vec::new();
    if let Some(c) = tg.count {
        if c < 0 {
            errs.push("Task group count can't be negative".to_string());
        }
        if job.is_system_like() && c > 1 {
            errs.push(format!(
                "Job task group {} has count {c}. Count cannot exceed 1 with system scheduler",
                tg.name
            ));
        }
    }
    if tg.tasks.is_empty() {
        errs.push("Missing tasks for task group".to_string());
    }
    if let Some(rp) = &tg.restart_policy {
        if let Some(m) = &rp.mode {
            if m != "fail" && m != "delay" {
                errs.push(format!("Unsupported restart mode: {m:?}"));
            }
        }
        if rp.attempts.unwrap_or(0) < 0 {
            errs.push("Restart policy attempts can't be negative".to_string());
        }
    }
    for c in tg.constraints.iter().flatten() {
        if let Err(e) = validate_constraint(c) {
            errs.push(format!("Constraint {} validation failed: {e}", c));
        }
    }
    let mut ports = BTreeSet::new();
    for n in tg.networks.iter().flatten() {
        for p in n.reserved_ports.iter().chain(n.dynamic_ports.iter()) {
            if !ports.insert(p.label.clone()) {
                errs.push(format!("Port label {:?} already in use", p.label));
            }
            if p.value < 0 || p.value > 65535 {
                errs.push(format!(
                    "Port {:?} has an invalid value {}",
                    p.label, p.value
                ));
            }
        }
    }
    let mut names = BTreeSet::new();
    let mut leaders = 0;
    for (i, t) in tg.tasks.iter().enumerate() {
        if t.name.is_empty() {
            errs.push(format!("Task {} missing name", i + 1));
        } else if !names.insert(t.name.clone()) {
            errs.push(format!(
                "Task {} redefines '{}' from task {}",
                i + 1,
                t.name,
                i
            ));
        }
        if t.leader {
            leaders += 1;
        }
        for e in validate_task(t) {
            errs.push(format!("Task {} validation failed: {e}", t.name));
        }
    }
    if leaders > 1 {
        errs.push("Only one task may be marked as leader".to_string());
    }
    errs
}

fn validate_task(t: &Task) -> Vec<String> {
    let mut errs = Vec::new();
    if t.name.contains('/') {
        errs.push("Task name cannot include slashes".to_string());
    }
    if t.name.contains('\0') {
        errs.push("Task name cannot include null characters".to_string());
    }
    if t.driver.is_empty() {
        errs.push("Missing task driver".to_string());
    }
    if t.kill_timeout.unwrap_or(0) < 0 {
        errs.push("KillTimeout must be a positive value".to_string());
    }
    if let Some(r) = &t.resources {
        let cores = r.cores.unwrap_or(0);
        let cpu = r.cpu.unwrap_or(0);
        if cores == 0 && cpu < 1 {
            errs.push(format!(
                "Resources validation failed: minimum CPU value is 1; got {cpu}"
            ));
        }
        if cores > 0 && cpu > 0 {
            errs.push("Resources validation failed: Task can only ask for 'cpu' or 'cores' resource, not both.".to_string());
        }
        let mem = r.memory_mb.unwrap_or(0);
        if mem < 10 {
            errs.push(format!(
                "Resources validation failed: minimum MemoryMB value is 10; got {mem}"
            ));
        }
        let max = r.memory_max_mb.unwrap_or(0);
        if max != 0 && max < mem {
            errs.push(format!(
                "Resources validation failed: MemoryMaxMB value ({max}) should be larger than MemoryMB value ({mem})"
            ));
        }
    }
    if let Some(lc) = &t.log_config {
        if lc.max_files.unwrap_or(1) < 1 {
            errs.push("Logs validation failed: minimum number of files is 1".to_string());
        }
        if lc.max_file_size_mb.unwrap_or(1) < 1 {
            errs.push("Logs validation failed: minimum file size is 1MB".to_string());
        }
    }
    if let Some(l) = &t.lifecycle {
        if !matches!(l.hook.as_str(), "prestart" | "poststart" | "poststop") {
            errs.push(format!(
                "Lifecycle validation failed: invalid hook: {}",
                l.hook
            ));
        }
    }
    let mut actions = BTreeSet::new();
    for a in t.actions.iter().flatten() {
        if !actions.insert(a.name.clone()) {
            errs.push(format!("Action {} defined multiple times", a.name));
        }
        let valid_name = !a.name.is_empty()
            && a.name.len() <= 128
            && !a.name.chars().any(|c| c == '\0' || c.is_whitespace());
        if !valid_name {
            errs.push(format!(
                "Action {} validation failed: invalid name '{}'",
                a.name, a.name
            ));
        }
        if a.command.is_empty() {
            errs.push(format!(
                "Action {} validation failed: command cannot be empty",
                a.name
            ));
        }
    }
    for c in t.constraints.iter().flatten() {
        if let Err(e) = validate_constraint(c) {
            errs.push(format!("Constraint {} validation failed: {e}", c));
        }
    }
    errs
}

/// Operators a constraint may use.
pub const CONSTRAINT_OPERANDS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    "<",
    "<=",
    ">",
    ">=",
    "regexp",
    "version",
    "semver",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "is_set",
    "is_not_set",
    "distinct_hosts",
    "distinct_property",
];

fn validate_constraint(c: &Constraint) -> Result<(), String> {
    if !CONSTRAINT_OPERANDS.contains(&c.operand.as_str()) {
        return Err(format!("Unknown constraint type {:?}", c.operand));
    }
    match c.operand.as_str() {
        "distinct_hosts" | "is_set" | "is_not_set" => Ok(()),
        "distinct_property" => {
            if c.l_target.is_empty() {
                Err("No LTarget provided but is required by constraint".into())
            } else {
                Ok(())
            }
        }
        _ => {
            if c.l_target.is_empty() {
                return Err("No LTarget provided but is required by constraint".into());
            }
            if c.r_target.is_empty() {
                return Err("No RTarget provided but is required by constraint".into());
            }
            Ok(())
        }
    }
}

/// Formats errors as go-multierror does, which Nomad's clients print verbatim.
pub fn multierror(errs: &[String]) -> String {
    let noun = if errs.len() == 1 { "error" } else { "errors" };
    let mut s = format!("{} {noun} occurred:\n", errs.len());
    for e in errs {
        s.push_str(&format!("\t* {e}\n"));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonicalize::canonicalize_job;

    #[test]
    fn valid_job_has_no_errors() {
        let mut j = Job {
            id: "x".into(),
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
        };
        canonicalize_job(&mut j);
        assert!(validate_job(&j).is_empty(), "{:?}", validate_job(&j));
    }

    #[test]
    fn duplicate_actions_and_missing_driver() {
        let mut j = Job {
            id: "x".into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                tasks: vec![Task {
                    name: "t".into(),
                    actions: Some(vec![
                        Action {
                            name: "a".into(),
                            command: "/bin/true".into(),
                            args: None,
                        },
                        Action {
                            name: "a".into(),
                            command: "".into(),
                            args: None,
                        },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        canonicalize_job(&mut j);
        let errs = validate_job(&j);
        assert!(
            errs.iter().any(|e| e.contains("Missing task driver")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("Action a defined multiple times")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("command cannot be empty")),
            "{errs:?}"
        );
        assert!(multierror(&errs).starts_with("3 errors occurred:\n\t* "));
    }
}
