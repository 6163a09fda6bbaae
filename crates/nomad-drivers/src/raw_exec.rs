//! The `raw_exec` driver: runs a command directly on the host, as the agent's user (or
//! `task.user`), in the task directory, inside a per-task cgroup when available.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nomad_executor::{parse_signal, CgroupFs, CgroupMode, HostFs, ProcessSpec, SpawnError};

use crate::common::{self, ensure_executable, error_chain, unix_nanos_now, TaskTable};
use crate::task_config::{self, RawExecTaskConfig};
use crate::{
    Capabilities, Driver, DriverError, ExitFuture, Fingerprint, FsIsolation, TaskConfig, TaskHandle,
};

/// Driver name.
pub const DRIVER_NAME: &str = "raw_exec";

/// Plugin configuration of raw_exec.
#[derive(Debug, Clone, Default)]
pub struct RawExecConfig {
    /// `plugin "raw_exec" { config { enabled = true } }`; default false.
    pub enabled: bool,
    /// Run tasks without cgroups (only the process group is killed on stop).
    pub no_cgroups: bool,
    /// Force a cgroup mode instead of detecting it (tests use this to exercise v2 on a hybrid
    /// host). `None` = detect from `/proc/self/mounts` at start.
    pub cgroup_mode: Option<CgroupMode>,
    /// `denied_host_uids`: tasks may not run as these uids.
    pub denied_host_uids: crate::IdSet,
    /// `denied_host_gids`: tasks may not run as a user in these groups.
    pub denied_host_gids: crate::IdSet,
}

/// The uid and groups a raw_exec task runs with: its `user`, else the agent's own.
fn task_ids(user: Option<&str>) -> Result<(u32, Vec<u32>), String> {
    if let Some(name) = user.filter(|u| !u.is_empty()) {
        let u = nomad_executor::lookup_user(name).map_err(|e| e.to_string())?;
        let mut groups = u.groups.clone();
        groups.push(u.gid);
        return Ok((u.uid, groups));
    }
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata("/proc/self").map_err(|e| format!("reading /proc/self: {e}"))?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut groups: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    groups.push(me.gid());
    Ok((me.uid(), groups))
}

/// The raw_exec driver.
#[derive(Debug)]
pub struct RawExecDriver {
    config: RawExecConfig,
    tasks: TaskTable,
    fs: Arc<dyn CgroupFs>,
}

impl RawExecDriver {
    /// Creates the driver.
    pub fn new(config: RawExecConfig) -> Self {
        RawExecDriver {
            config,
            tasks: TaskTable::new(DRIVER_NAME),
            fs: Arc::new(HostFs),
        }
    }

    fn cgroup_mode(&self) -> CgroupMode {
        if self.config.no_cgroups {
            return CgroupMode::Unavailable;
        }
        self.config
            .cgroup_mode
            .clone()
            .unwrap_or_else(CgroupMode::detect)
    }

    /// The cgroup of a running task, if any (for tests and the client's stats).
    pub fn task_cgroup_paths(&self, task_id: &str) -> Result<Vec<PathBuf>, DriverError> {
        Ok(self
            .tasks
            .get(task_id)?
            .cgroup
            .as_ref()
            .map(|c| c.paths())
            .unwrap_or_default())
    }
}

/// Resolves the binary like Nomad's raw_exec: `<T>/local/<cmd>`, `<T>/<cmd>`, an absolute
/// path that exists, then the agent's `PATH`. Binaries found in the task dir get their
/// `0555` bits set (artifacts are often downloaded without them).
pub(crate) fn lookup_bin(task_dir: &Path, command: &str) -> Option<PathBuf> {
    let rel = command.trim_start_matches('/');
    for candidate in [task_dir.join("local").join(rel), task_dir.join(rel)] {
        if candidate.is_file() {
            ensure_executable(&candidate);
            return Some(candidate);
        }
    }
    let p = Path::new(command);
    if p.is_absolute() && p.exists() {
        return Some(p.to_path_buf());
    }
    if command.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|c| {
            c.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn build_spec(cfg: &TaskConfig, tc: &RawExecTaskConfig, program: PathBuf) -> ProcessSpec {
    let env = cfg
        .env
        .iter()
        .filter(|(k, _)| {
            !tc.denied_envvars
                .iter()
                .any(|p| task_config::glob_match(p, k))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ProcessSpec {
        program,
        args: tc.args.clone(),
        env,
        cwd: tc
            .work_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| cfg.task_dir.clone()),
        user: cfg.user.clone().filter(|u| !u.is_empty()),
        stdout_path: cfg.stdout_path.clone(),
        stderr_path: cfg.stderr_path.clone(),
        cgroup_procs: vec![],
        oom_score_adj: tc.oom_score_adj,
        exit_record: common::exit_record_spec(cfg),
    }
}

impl Driver for RawExecDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            send_signals: true,
            exec: true,
            fs_isolation: FsIsolation::None,
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        if !self.config.enabled {
            return Fingerprint {
                detected: false,
                healthy: false,
                health_description: "disabled".to_string(),
                attributes: Default::default(),
            };
        }
        Fingerprint {
            detected: true,
            healthy: true,
            health_description: "Healthy".to_string(),
            attributes: [("driver.raw_exec".to_string(), "1".to_string())].into(),
        }
    }

    fn validate_config(&self, config: &serde_json::Value) -> Result<(), DriverError> {
        task_config::parse(config).map(|_| ())
    }

    fn start_task(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
        if !self.config.enabled {
            return Err(DriverError::Disabled(DRIVER_NAME));
        }
        let tc = task_config::parse(&cfg.driver_config)?;
        if let Some(kill) = &cfg.kill_signal {
            parse_signal(kill)?;
        }
        if self.tasks.contains(&cfg.id) {
            return Err(DriverError::DuplicateTask(cfg.id.clone()));
        }
        if !self.config.denied_host_uids.is_empty() || !self.config.denied_host_gids.is_empty() {
            let start_err = |message: String| DriverError::Start {
                task_id: cfg.id.clone(),
                message,
            };
            let (uid, gids) = task_ids(cfg.user.as_deref()).map_err(start_err)?;
            crate::idset::check_ids(
                uid,
                &gids,
                &self.config.denied_host_uids,
                &self.config.denied_host_gids,
            )
            .map_err(start_err)?;
        }
        if tc.cgroup_v1_override.is_some() || tc.cgroup_v2_override.is_some() {
            tracing::debug!(task_id = %cfg.id, "cgroup overrides are accepted but not applied");
        }
        let program = match lookup_bin(&cfg.task_dir, &tc.command) {
            Some(p) => p,
            // A path-like command is tried as given so exec reports the precise errno.
            None if tc.command.contains('/') => cfg.task_dir.join(&tc.command),
            None => {
                return Err(DriverError::BinaryNotFound {
                    command: tc.command.clone(),
                })
            }
        };
        let mut spec = build_spec(cfg, &tc, program);
        let mut cgroup = common::create_cgroup(
            &self.cgroup_mode(),
            cfg,
            self.fs.clone(),
            !self.config.no_cgroups,
        );
        if let Some(cg) = &cgroup {
            spec.cgroup_procs = cg.procs_files();
        }
        let spawned = match nomad_executor::spawn(&spec) {
            Ok(s) => s,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    if let Err(error) = cg.destroy() {
                        tracing::warn!(task_id = %cfg.id, %error, "could not remove cgroup");
                    }
                }
                let message = match &e {
                    SpawnError::Exec { .. } | SpawnError::Child { .. } => e.to_string(),
                    other => format!(
                        "failed to start command {:?}: {}",
                        spec.program.display().to_string(),
                        error_chain(other)
                    ),
                };
                return Err(DriverError::Start {
                    task_id: cfg.id.clone(),
                    message,
                });
            }
        };
        if let Some(cg) = &cgroup {
            if spawned.cgroup_join_failures >= cg.procs_files().len() {
                tracing::warn!(task_id = %cfg.id, "task could not join its cgroup; using its process group only");
                let _ = cg.destroy();
                cgroup = None;
            }
        }
        let handle = TaskHandle {
            task_id: cfg.id.clone(),
            driver: DRIVER_NAME.to_string(),
            pid: spawned.pid,
            start_time: spawned.start_time,
            cgroup: cgroup.as_ref().map(|c| c.rel().to_string()),
            started_at_unix_nanos: unix_nanos_now(),
            kill_signal: cfg.kill_signal.clone(),
            recorder: common::recorder_handle(&spawned, spec.exit_record.as_ref()),
        };
        tracing::info!(alloc_id = %cfg.alloc_id, task = %cfg.task_name, pid = spawned.pid, cgroup = ?handle.cgroup, "raw_exec task started");
        self.tasks
            .insert_started(handle.clone(), cgroup, Default::default());
        Ok(handle)
    }

    fn wait_task(&self, task_id: &str) -> Result<ExitFuture, DriverError> {
        self.tasks.wait_task(task_id)
    }

    fn stop_task(
        &self,
        task_id: &str,
        timeout: Duration,
        signal: Option<&str>,
    ) -> Result<(), DriverError> {
        self.tasks.stop_task(task_id, timeout, signal)
    }

    fn signal_task(&self, task_id: &str, signal: &str) -> Result<(), DriverError> {
        self.tasks.signal_task(task_id, signal)
    }

    fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError> {
        self.tasks.destroy_task(task_id, force)
    }

    fn recover_task(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        self.tasks.recover_task(
            handle,
            &self.cgroup_mode(),
            self.fs.clone(),
            Default::default,
        )
    }

    fn exec_task(
        &self,
        task_id: &str,
        req: crate::ExecRequest,
    ) -> Result<crate::ExecSession, DriverError> {
        crate::exec_session::exec_in_task(&self.tasks, task_id, req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_disabled_and_enabled() {
        let d = RawExecDriver::new(RawExecConfig::default());
        let fp = d.fingerprint();
        assert!(!fp.detected && !fp.healthy);
        assert_eq!(fp.health_description, "disabled");
        assert!(fp.attributes.is_empty());
        let d = RawExecDriver::new(RawExecConfig {
            enabled: true,
            ..Default::default()
        });
        let fp = d.fingerprint();
        assert!(fp.detected && fp.healthy);
        assert_eq!(fp.health_description, "Healthy");
        assert_eq!(fp.attributes["driver.raw_exec"], "1");
        let caps = d.capabilities();
        assert!(caps.send_signals && caps.exec);
        assert_eq!(caps.fs_isolation.to_string(), "none");
    }

    #[test]
    fn disabled_driver_refuses_to_start() {
        let d = RawExecDriver::new(RawExecConfig::default());
        let err = d.start_task(&TaskConfig::default()).unwrap_err();
        assert_eq!(err.to_string(), "raw_exec is disabled");
    }

    #[test]
    fn lookup_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = dir.path();
        std::fs::create_dir_all(t.join("local")).expect("mkdir");
        std::fs::write(t.join("tool"), "#!/bin/sh\n").expect("write");
        assert_eq!(lookup_bin(t, "tool"), Some(t.join("tool")));
        // Made executable.
        let mode = std::fs::metadata(t.join("tool"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o555, 0o555);
        std::fs::write(t.join("local/tool"), "#!/bin/sh\n").expect("write");
        assert_eq!(lookup_bin(t, "tool"), Some(t.join("local/tool")));
        assert_eq!(lookup_bin(t, "/bin/sh"), Some(PathBuf::from("/bin/sh")));
        assert!(lookup_bin(t, "sh").is_some_and(|p| p.is_absolute()));
        assert_eq!(lookup_bin(t, "definitely-not-a-binary-xyz"), None);
        assert_eq!(lookup_bin(t, "/nope"), None);
    }

    #[test]
    fn spec_filters_denied_env_and_uses_task_dir() {
        let mut cfg = TaskConfig {
            task_dir: "/alloc/web".into(),
            ..Default::default()
        };
        cfg.env.insert("AWS_KEY".into(), "x".into());
        cfg.env.insert("KEEP".into(), "y".into());
        let tc = RawExecTaskConfig {
            command: "x".into(),
            denied_envvars: vec!["AWS_*".into()],
            ..Default::default()
        };
        let spec = build_spec(&cfg, &tc, "/bin/x".into());
        assert_eq!(spec.env.len(), 1);
        assert_eq!(spec.env["KEEP"], "y");
        assert_eq!(spec.cwd, PathBuf::from("/alloc/web"));
    }
}
