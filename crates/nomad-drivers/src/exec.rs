//! The `exec` driver: runs a command isolated in its own mount (and by default PID and IPC)
//! namespaces, in a chroot assembled from read-only bind mounts, with a reduced capability
//! set, as `nobody` unless `task.user` says otherwise, inside a per-task cgroup.
//!
//! Unlike Nomad, which copies or hard-links every `chroot_env` entry into the task dir
//! (seconds per task), the chroot is *mounted*: the new root is a small tmpfs mounted on
//! `<task_dir>/.root` inside the task's own mount namespace, holding only mount points, with
//! the `chroot_env` entries bound read-only and the task dirs bound at `/alloc`, `/local`,
//! `/secrets`, `/tmp`. The layout is documented on [`nomad_executor::mount_plan`]. All of those
//! mounts die with the namespace; the only host-side mount is the `secrets/` tmpfs (as in
//! Nomad), which `destroy_task` unmounts.
//!
//! Host-side preparation done by the driver before start (the client does not do it yet):
//! - `<T>/local`, `<T>/tmp` (mode 1777) and `<T>/secrets` are created if missing and chowned to
//!   the task user, so `nobody` can write them;
//! - `<T>/secrets` becomes a 1 MiB `noexec,nosuid,nodev` tmpfs owned by the task user unless it
//!   already is a mount point (then it is left to whoever mounted it);
//! - `<T>/.root` is created (an empty directory; only a mount point inside the namespace).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nomad_executor::caps::{self, CapSet};
use nomad_executor::hostmount;
use nomad_executor::mount_plan::{validate_chroot_env, DEFAULT_CHROOT_ENV};
use nomad_executor::{
    build_plan, parse_signal, CgroupFs, CgroupMode, ChrootSpec, HostFs, Isolation, MountPlan,
    ProcessSpec, RealHost, SpawnError, UserInfo,
};
use serde_json::Value;

use crate::common::{self, ensure_executable, error_chain, unix_nanos_now, TaskCleanup, TaskTable};
use crate::task_config::{invalid, string, string_list, type_name};
use crate::{
    Capabilities, Driver, DriverError, ExecRequest, ExecSession, ExitFuture, Fingerprint,
    FsIsolation, TaskConfig, TaskHandle,
};

/// Driver name.
pub const DRIVER_NAME: &str = "exec";
/// The default task user.
pub const DEFAULT_USER: &str = "nobody";
/// Size of the `secrets/` tmpfs (Nomad's default `resources { secrets = 1 }`).
pub const SECRETS_SIZE_MB: u64 = 1;
/// Name of the per-task root mount point inside the task dir.
pub const ROOT_DIR_NAME: &str = ".root";

/// `pid_mode` / `ipc_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    /// A new namespace for the task.
    #[default]
    Private,
    /// Share the host's namespace.
    Host,
}

impl NamespaceMode {
    /// Parses `"private"` / `"host"` (case-insensitive); `""` is `None` (use the default).
    pub fn parse(field: &str, s: &str) -> Result<Option<NamespaceMode>, DriverError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "private" => Ok(Some(NamespaceMode::Private)),
            "host" => Ok(Some(NamespaceMode::Host)),
            _ => Err(invalid(
                field,
                format!("{field} must be \"private\" or \"host\", got {s:?}"),
            )),
        }
    }
}

/// Plugin configuration of exec (`plugin "exec" { config { ... } }`) plus the client's
/// `chroot_env`.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Use move-mount + chroot instead of pivot_root.
    pub no_pivot_root: bool,
    /// `"private"` (default) or `"host"`.
    pub default_pid_mode: String,
    /// `"private"` (default) or `"host"`.
    pub default_ipc_mode: String,
    /// Capabilities tasks may have or add (Nomad's default list).
    pub allow_caps: Vec<String>,
    /// Client `chroot_env` (host path → chroot path); empty = Nomad's default map.
    pub chroot_env: BTreeMap<String, String>,
    /// The client's alloc dir root, never embedded in a chroot.
    pub alloc_root: Option<PathBuf>,
    /// Force a cgroup mode instead of detecting it. `None` = detect at start.
    pub cgroup_mode: Option<CgroupMode>,
    /// `denied_host_uids`: tasks may not run as these uids.
    pub denied_host_uids: crate::IdSet,
    /// `denied_host_gids`: tasks may not run as a user in these groups.
    pub denied_host_gids: crate::IdSet,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            no_pivot_root: false,
            default_pid_mode: "private".into(),
            default_ipc_mode: "private".into(),
            allow_caps: caps::NOMAD_DEFAULT_CAPS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            chroot_env: BTreeMap::new(),
            alloc_root: None,
            cgroup_mode: None,
            denied_host_uids: Default::default(),
            denied_host_gids: Default::default(),
        }
    }
}

/// The decoded exec task config (facts 4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ExecTaskConfig {
    pub command: String,
    pub args: Vec<String>,
    pub pid_mode: Option<NamespaceMode>,
    pub ipc_mode: Option<NamespaceMode>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub work_dir: Option<PathBuf>,
}

const KEYS: &[&str] = &[
    "command", "args", "pid_mode", "ipc_mode", "cap_add", "cap_drop", "work_dir",
];

fn caps_field_error(field: &str, e: caps::CapsError) -> DriverError {
    invalid(field, e.to_string())
}

/// Decodes and validates the block (capability names against the kernel, `cap_add` against
/// `allow_caps`).
pub(crate) fn parse_task_config(
    config: &Value,
    allow_caps: &[String],
) -> Result<ExecTaskConfig, DriverError> {
    let obj = match config {
        Value::Object(m) => m,
        Value::Null => return Err(invalid("command", "missing required argument")),
        other => {
            return Err(invalid(
                "",
                format!("config must be a map, got {}", type_name(other)),
            ))
        }
    };
    for k in obj.keys() {
        if !KEYS.contains(&k.as_str()) {
            return Err(invalid(
                k,
                format!("unsupported argument: an argument named {k:?} is not expected here"),
            ));
        }
    }
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let command = match get("command") {
        Some(v) => string("command", v)?,
        None => return Err(invalid("command", "missing required argument")),
    };
    if command.trim().is_empty() {
        return Err(invalid("command", "must not be empty"));
    }
    let mut cfg = ExecTaskConfig {
        command,
        ..Default::default()
    };
    if let Some(v) = get("args") {
        cfg.args = string_list("args", v)?;
    }
    if let Some(v) = get("pid_mode") {
        cfg.pid_mode = NamespaceMode::parse("pid_mode", &string("pid_mode", v)?)?;
    }
    if let Some(v) = get("ipc_mode") {
        cfg.ipc_mode = NamespaceMode::parse("ipc_mode", &string("ipc_mode", v)?)?;
    }
    if let Some(v) = get("cap_add") {
        cfg.cap_add = string_list("cap_add", v)?;
    }
    if let Some(v) = get("cap_drop") {
        cfg.cap_drop = string_list("cap_drop", v)?;
    }
    let last = caps::kernel_last_cap();
    caps::parse_cap_list(&cfg.cap_add, last).map_err(|e| caps_field_error("cap_add", e))?;
    caps::parse_cap_list(&cfg.cap_drop, last).map_err(|e| caps_field_error("cap_drop", e))?;
    caps::compute_caps(CapSet::EMPTY, allow_caps, &cfg.cap_add, &[], last)
        .map_err(|e| caps_field_error("cap_add", e))?;
    if let Some(v) = get("work_dir") {
        let w = string("work_dir", v)?;
        if !w.is_empty() {
            let p = Path::new(&w);
            if !p.is_absolute() {
                return Err(invalid(
                    "work_dir",
                    format!("work_dir must be absolute but got relative path {w:?}"),
                ));
            }
            if nomad_executor::mount_plan::has_parent_component(p) {
                return Err(invalid(
                    "work_dir",
                    format!("work_dir must stay inside the chroot, got {w:?}"),
                ));
            }
            cfg.work_dir = Some(PathBuf::from(w));
        }
    }
    Ok(cfg)
}

/// The task's capability set: Nomad's calculation, or the legacy list for user `root`.
pub(crate) fn task_caps(
    user: &str,
    allow_caps: &[String],
    tc: &ExecTaskConfig,
    last_cap: u32,
) -> Result<CapSet, DriverError> {
    if user == "root" {
        return Ok(caps::root_legacy_caps(last_cap));
    }
    caps::compute_caps(
        caps::nomad_default_caps(last_cap),
        allow_caps,
        &tc.cap_add,
        &tc.cap_drop,
        last_cap,
    )
    .map_err(|e| caps_field_error("cap_add", e))
}

/// Nomad's `lookupTaskBin`, against the chroot as mounted: `<T>/local/<cmd>`, the chroot path
/// `/<cmd>` (task dirs, alloc dir and chroot_env mounts), then — for a bare name only —
/// `/usr/local/bin`, `/usr/bin`, `/bin` inside the chroot. Returns the path *inside* the
/// chroot. Binaries under the task dir get their `0555` bits set.
pub(crate) fn lookup_task_bin(
    task_dir: &Path,
    plan: &MountPlan,
    command: &str,
) -> Result<PathBuf, DriverError> {
    let rel = command.trim_start_matches('/');
    let is_file = |p: &Path| p.metadata().is_ok_and(|m| m.is_file());
    let local = task_dir.join("local").join(rel);
    if !rel.is_empty() && is_file(&local) {
        ensure_executable(&local);
        return Ok(Path::new("/local").join(rel));
    }
    let mut candidates = vec![Path::new("/").join(rel)];
    if !command.contains('/') {
        for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
            candidates.push(Path::new(dir).join(command));
        }
    }
    for c in candidates {
        if let Some(host) = plan.host_path(&c) {
            if is_file(&host) {
                if host.starts_with(task_dir) {
                    ensure_executable(&host);
                }
                return Ok(c);
            }
        }
    }
    Err(invalid(
        "command",
        format!(
            "file {command:?} not found under path {} (searched local/, the chroot{})",
            task_dir.display(),
            if command.contains('/') {
                ""
            } else {
                ", usr/local/bin, usr/bin and bin"
            }
        ),
    ))
}

/// `<task_dir>/.root`: where the task's root tmpfs is mounted inside its namespace.
pub fn task_root_dir(task_dir: &Path) -> PathBuf {
    task_dir.join(ROOT_DIR_NAME)
}

fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The exec driver.
#[derive(Debug)]
pub struct ExecDriver {
    config: ExecConfig,
    default_pid: NamespaceMode,
    default_ipc: NamespaceMode,
    chroot_env: Vec<(String, String)>,
    tasks: TaskTable,
    fs: Arc<dyn CgroupFs>,
}

impl ExecDriver {
    /// Creates the driver; the plugin config is validated (modes, capability names,
    /// `chroot_env` paths) with errors naming the option.
    pub fn new(config: ExecConfig) -> Result<ExecDriver, DriverError> {
        let default_pid =
            NamespaceMode::parse("default_pid_mode", &config.default_pid_mode)?.unwrap_or_default();
        let default_ipc =
            NamespaceMode::parse("default_ipc_mode", &config.default_ipc_mode)?.unwrap_or_default();
        caps::parse_cap_list(&config.allow_caps, caps::kernel_last_cap())
            .map_err(|e| caps_field_error("allow_caps", e))?;
        let chroot_env: Vec<(String, String)> = if config.chroot_env.is_empty() {
            DEFAULT_CHROOT_ENV
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        } else {
            config
                .chroot_env
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect()
        };
        validate_chroot_env(&chroot_env).map_err(|e| invalid("chroot_env", e.to_string()))?;
        Ok(ExecDriver {
            config,
            default_pid,
            default_ipc,
            chroot_env,
            tasks: TaskTable::new(DRIVER_NAME),
            fs: Arc::new(HostFs),
        })
    }

    fn cgroup_mode(&self) -> CgroupMode {
        self.config
            .cgroup_mode
            .clone()
            .unwrap_or_else(CgroupMode::detect)
    }

    /// The cgroup directories of a task (for tests and the client's stats).
    pub fn task_cgroup_paths(&self, task_id: &str) -> Result<Vec<PathBuf>, DriverError> {
        Ok(self
            .tasks
            .get(task_id)?
            .cgroup
            .as_ref()
            .map(|c| c.paths())
            .unwrap_or_default())
    }

    /// The mount plan a task would get (no side effects; for tests and debugging).
    pub fn mount_plan(&self, cfg: &TaskConfig) -> Result<MountPlan, DriverError> {
        build_plan(&self.chroot_spec(cfg), &RealHost).map_err(|e| DriverError::Start {
            task_id: cfg.id.clone(),
            message: format!("failed to build the task chroot: {e}"),
        })
    }

    fn chroot_spec(&self, cfg: &TaskConfig) -> ChrootSpec {
        ChrootSpec {
            root: task_root_dir(&cfg.task_dir),
            task_dir: cfg.task_dir.clone(),
            alloc_dir: cfg.alloc_dir.clone(),
            chroot_env: self.chroot_env.clone(),
            skip_sources: self.config.alloc_root.iter().cloned().collect(),
            pivot_root: !self.config.no_pivot_root,
        }
    }

    /// Host-side preparation (see the module docs). Returns what destroy must undo.
    fn prepare_dirs(&self, cfg: &TaskConfig, user: &UserInfo) -> Result<TaskCleanup, String> {
        use std::os::unix::fs::PermissionsExt;
        let t = &cfg.task_dir;
        let mut cleanup = TaskCleanup::default();
        for (d, mode) in [("local", 0o777), ("tmp", 0o1777), ("secrets", 0o700)] {
            let p = t.join(d);
            std::fs::create_dir_all(&p)
                .map_err(|e| format!("failed to create {}: {e}", p.display()))?;
            if d == "tmp" {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("failed to chmod {}: {e}", p.display()))?;
            }
            std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid))
                .map_err(|e| format!("failed to chown {} to {}: {e}", p.display(), user.name))?;
        }
        let secrets = t.join("secrets");
        if !hostmount::is_mount_point(&secrets) {
            hostmount::mount_secrets_tmpfs(&secrets, SECRETS_SIZE_MB, user.uid, user.gid).map_err(
                |e| {
                    format!(
                        "failed to mount secrets tmpfs at {}: {e}",
                        secrets.display()
                    )
                },
            )?;
            cleanup.unmount.push(secrets);
        }
        let root = task_root_dir(t);
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("failed to create {}: {e}", root.display()))?;
        cleanup.remove_dirs.push(root);
        Ok(cleanup)
    }

    fn undo(cleanup: &TaskCleanup) {
        for m in &cleanup.unmount {
            let _ = hostmount::unmount_detach(m);
        }
        for d in &cleanup.remove_dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Driver for ExecDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            send_signals: true,
            exec: true,
            fs_isolation: FsIsolation::Chroot,
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        let unhealthy = |why: String| Fingerprint {
            detected: true,
            healthy: false,
            health_description: why,
            attributes: Default::default(),
        };
        if euid() != Some(0) {
            return unhealthy("exec driver must run as root".into());
        }
        for ns in ["mnt", "pid", "ipc"] {
            let p = format!("/proc/self/ns/{ns}");
            if !Path::new(&p).exists() {
                return unhealthy(format!(
                    "exec driver needs {ns} namespaces, but {p} does not exist"
                ));
            }
        }
        if self.cgroup_mode() == CgroupMode::Unavailable {
            return unhealthy("Failed to discover cgroup mount point".into());
        }
        Fingerprint {
            detected: true,
            healthy: true,
            health_description: "Healthy".to_string(),
            attributes: [("driver.exec".to_string(), "1".to_string())].into(),
        }
    }

    fn validate_config(&self, config: &Value) -> Result<(), DriverError> {
        parse_task_config(config, &self.config.allow_caps).map(|_| ())
    }

    fn start_task(&self, cfg: &TaskConfig) -> Result<TaskHandle, DriverError> {
        let tc = parse_task_config(&cfg.driver_config, &self.config.allow_caps)?;
        if let Some(kill) = &cfg.kill_signal {
            parse_signal(kill)?;
        }
        if self.tasks.contains(&cfg.id) {
            return Err(DriverError::DuplicateTask(cfg.id.clone()));
        }
        let start_err = |message: String| DriverError::Start {
            task_id: cfg.id.clone(),
            message,
        };
        let user_name = cfg
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_USER.to_string());
        let user = nomad_executor::lookup_user(&user_name).map_err(|e| start_err(e.to_string()))?;
        let mut gids = user.groups.clone();
        gids.push(user.gid);
        crate::idset::check_ids(
            user.uid,
            &gids,
            &self.config.denied_host_uids,
            &self.config.denied_host_gids,
        )
        .map_err(start_err)?;
        let last_cap = caps::kernel_last_cap();
        let caps = task_caps(&user_name, &self.config.allow_caps, &tc, last_cap)?;

        let cleanup = self.prepare_dirs(cfg, &user).map_err(start_err)?;
        let plan = match self.mount_plan(cfg) {
            Ok(p) => p,
            Err(e) => {
                Self::undo(&cleanup);
                return Err(e);
            }
        };
        for w in &plan.warnings {
            tracing::debug!(task_id = %cfg.id, warning = %w, "chroot");
        }
        let program = match lookup_task_bin(&cfg.task_dir, &plan, &tc.command) {
            Ok(p) => p,
            Err(e) => {
                Self::undo(&cleanup);
                return Err(e);
            }
        };

        let mut env = cfg.env.clone();
        env.insert("USER".into(), user.name.clone());
        env.insert("LOGNAME".into(), user.name.clone());
        env.insert("HOME".into(), user.home.display().to_string());
        let mode = self.cgroup_mode();
        let cgroup = common::create_cgroup(&mode, cfg, self.fs.clone(), true);
        let spec = ProcessSpec {
            program: program.clone(),
            args: tc.args.clone(),
            env,
            cwd: tc.work_dir.clone().unwrap_or_else(|| PathBuf::from("/")),
            user: Some(user_name.clone()),
            stdout_path: cfg.stdout_path.clone(),
            stderr_path: cfg.stderr_path.clone(),
            cgroup_procs: cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default(),
            // Nomad sets 0 so tasks do not inherit the agent's value.
            oom_score_adj: Some(0),
            exit_record: common::exit_record_spec(cfg),
        };
        let iso = Isolation {
            plan,
            pid_namespace: tc.pid_mode.unwrap_or(self.default_pid) == NamespaceMode::Private,
            ipc_namespace: tc.ipc_mode.unwrap_or(self.default_ipc) == NamespaceMode::Private,
            caps,
        };
        let spawned = match nomad_executor::spawn_isolated(&spec, &iso) {
            Ok(s) => s,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    if let Err(error) = cg.destroy() {
                        tracing::warn!(task_id = %cfg.id, %error, "could not remove cgroup");
                    }
                }
                Self::undo(&cleanup);
                let message = match &e {
                    SpawnError::Child {
                        command,
                        step,
                        source,
                    } if step.starts_with("chdir") => format!(
                        "failed to start command {command:?}: chdir to work_dir {:?} inside the chroot: {source}",
                        spec.cwd.display().to_string()
                    ),
                    SpawnError::Exec { .. }
                    | SpawnError::Child { .. }
                    | SpawnError::Isolation { .. } => e.to_string(),
                    other => format!(
                        "failed to start command {:?}: {}",
                        program.display().to_string(),
                        error_chain(other)
                    ),
                };
                return Err(start_err(message));
            }
        };
        let mut cgroup = cgroup;
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
        tracing::info!(alloc_id = %cfg.alloc_id, task = %cfg.task_name, pid = spawned.pid, cgroup = ?handle.cgroup, pid_ns = iso.pid_namespace, "exec task started");
        self.tasks.insert_started(handle.clone(), cgroup, cleanup);
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

    /// `alloc exec` inside the task: its namespaces, root, cgroup, user and capabilities (read
    /// from its live main process, so recovered tasks work too).
    fn exec_task(&self, task_id: &str, req: ExecRequest) -> Result<ExecSession, DriverError> {
        crate::exec_session::exec_in_isolated_task(&self.tasks, task_id, req)
    }

    fn recover_task(&self, handle: &TaskHandle) -> Result<(), DriverError> {
        let pid = handle.pid;
        self.tasks
            .recover_task(handle, &self.cgroup_mode(), self.fs.clone(), || {
                // Find the host-side secrets tmpfs through the task's own view of /secrets.
                let mut cleanup = TaskCleanup::default();
                if let Some(secrets) =
                    hostmount::host_mount_of(pid, Path::new("/secrets"), hostmount::SECRETS_SOURCE)
                {
                    if let Some(t) = secrets.parent() {
                        cleanup.remove_dirs.push(task_root_dir(t));
                    }
                    cleanup.unmount.push(secrets);
                }
                cleanup
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allow() -> Vec<String> {
        ExecConfig::default().allow_caps
    }

    fn field_of(e: DriverError) -> (String, String) {
        match e {
            DriverError::InvalidConfig { field, message } => (field, message),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn parses_full_config() {
        let c = parse_task_config(
            &json!({"command": "/bin/sh", "args": ["-c", "x"], "pid_mode": "host",
                    "ipc_mode": "private", "cap_add": ["CAP_CHOWN"], "cap_drop": ["all"],
                    "work_dir": "/local"}),
            &allow(),
        )
        .expect("ok");
        assert_eq!(c.pid_mode, Some(NamespaceMode::Host));
        assert_eq!(c.ipc_mode, Some(NamespaceMode::Private));
        assert_eq!(c.work_dir, Some(PathBuf::from("/local")));
        let c = parse_task_config(&json!({"command": "x", "pid_mode": ""}), &allow()).expect("ok");
        assert_eq!(c.pid_mode, None);
    }

    #[test]
    fn bad_input_names_field_and_value() {
        let (f, m) = field_of(
            parse_task_config(&json!({"command": "x", "pid_mode": "privte"}), &allow())
                .unwrap_err(),
        );
        assert_eq!(f, "pid_mode");
        assert_eq!(
            m,
            "pid_mode must be \"private\" or \"host\", got \"privte\""
        );
        let (f, m) = field_of(
            parse_task_config(&json!({"command": "x", "cap_add": ["net_raw"]}), &allow())
                .unwrap_err(),
        );
        assert_eq!(f, "cap_add");
        assert_eq!(
            m,
            "driver does not allow the following capabilities: net_raw"
        );
        let (f, m) = field_of(
            parse_task_config(&json!({"command": "x", "cap_drop": ["CAP_FLY"]}), &allow())
                .unwrap_err(),
        );
        assert_eq!(f, "cap_drop");
        assert_eq!(m, "unknown capability \"CAP_FLY\"");
        let (f, m) = field_of(
            parse_task_config(&json!({"command": "x", "work_dir": "local"}), &allow()).unwrap_err(),
        );
        assert_eq!(f, "work_dir");
        assert_eq!(
            m,
            "work_dir must be absolute but got relative path \"local\""
        );
        let (_, m) = field_of(
            parse_task_config(&json!({"command": "x", "work_dir": "/../etc"}), &allow())
                .unwrap_err(),
        );
        assert!(m.contains("\"/../etc\""), "{m}");
        let (f, _) = field_of(
            parse_task_config(&json!({"command": "x", "bogus": 1}), &allow()).unwrap_err(),
        );
        assert_eq!(f, "bogus");
        assert_eq!(
            field_of(parse_task_config(&json!({}), &allow()).unwrap_err()).0,
            "command"
        );
    }

    #[test]
    fn cap_add_allowed_when_allow_caps_has_it() {
        let mut a = allow();
        a.push("NET_RAW".into());
        let tc = parse_task_config(
            &json!({"command": "x", "cap_add": ["net_raw"], "cap_drop": ["all"]}),
            &a,
        )
        .expect("ok");
        let set = task_caps("nobody", &a, &tc, 40).expect("caps");
        assert_eq!(set.names(), vec!["CAP_NET_RAW"]);
        // root gets the legacy list whatever the config says.
        let set = task_caps("root", &a, &tc, 40).expect("caps");
        assert!(set.contains(21));
    }

    #[test]
    fn plugin_config_is_validated() {
        let e = ExecDriver::new(ExecConfig {
            default_pid_mode: "shared".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(field_of(e).0, "default_pid_mode");
        let e = ExecDriver::new(ExecConfig {
            allow_caps: vec!["CAP_FLY".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(field_of(e).0, "allow_caps");
        let e = ExecDriver::new(ExecConfig {
            chroot_env: [("/usr".to_string(), "usr".to_string())].into(),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(field_of(e).0, "chroot_env");
        let d = ExecDriver::new(ExecConfig::default()).expect("default config");
        let caps = d.capabilities();
        assert!(caps.send_signals && caps.exec);
        assert_eq!(caps.fs_isolation, FsIsolation::Chroot);
        let fp = d.fingerprint();
        assert!(fp.detected);
        if fp.healthy {
            assert_eq!(fp.attributes["driver.exec"], "1");
        } else {
            assert!(!fp.health_description.is_empty());
        }
    }

    #[test]
    fn binary_lookup_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = dir.path().join("web");
        let alloc = dir.path().join("alloc");
        let usr = dir.path().join("usr");
        for d in [
            t.join("local"),
            t.join("secrets"),
            t.join("tmp"),
            t.join(".root"),
            alloc.join("logs"),
            usr.join("bin"),
            usr.join("local/bin"),
        ] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(usr.join("bin/tool"), "x").expect("write");
        std::fs::write(usr.join("local/bin/both"), "x").expect("write");
        std::fs::write(usr.join("bin/both"), "x").expect("write");
        std::fs::write(t.join("local/run.sh"), "x").expect("write");
        let plan = build_plan(
            &ChrootSpec {
                root: t.join(".root"),
                task_dir: t.clone(),
                alloc_dir: alloc,
                chroot_env: vec![(usr.display().to_string(), "/usr".into())],
                skip_sources: vec![],
                pivot_root: true,
            },
            &RealHost,
        )
        .expect("plan");
        assert_eq!(
            lookup_task_bin(&t, &plan, "run.sh").expect("local"),
            PathBuf::from("/local/run.sh")
        );
        assert_eq!(
            lookup_task_bin(&t, &plan, "local/run.sh").expect("relative"),
            PathBuf::from("/local/run.sh")
        );
        assert_eq!(
            lookup_task_bin(&t, &plan, "/usr/bin/tool").expect("abs"),
            PathBuf::from("/usr/bin/tool")
        );
        assert_eq!(
            lookup_task_bin(&t, &plan, "tool").expect("path"),
            PathBuf::from("/usr/bin/tool")
        );
        assert_eq!(
            lookup_task_bin(&t, &plan, "both").expect("usr/local first"),
            PathBuf::from("/usr/local/bin/both")
        );
        let (f, m) = field_of(lookup_task_bin(&t, &plan, "nope").unwrap_err());
        assert_eq!(f, "command");
        assert!(m.contains("\"nope\""), "{m}");
        // A path-like command is not searched in the fake PATH.
        assert!(lookup_task_bin(&t, &plan, "bin/tool").is_err());
        // Made executable.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.join("local/run.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o555, 0o555);
    }
}
