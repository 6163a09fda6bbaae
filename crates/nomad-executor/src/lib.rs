//! nomad-executor: the low-level, Linux-specific process machinery behind the executor-based
//! drivers (raw_exec, exec): fork/exec with cgroup placement, waiting, signals, cgroups v1/v2,
//! and for exec the isolated start: namespaces, a bind-mounted chroot built from a
//! [`MountPlan`], capabilities ([`caps`]).
//!
//! This is the only crate of the workspace that contains `unsafe`; every block carries a
//! `// SAFETY:` comment. Logic (signal parsing, cgroup path and limit plans, `/proc` parsing)
//! is separated from syscalls so it is unit-tested without root.

pub mod caps;
#[cfg(target_os = "linux")]
pub mod cgroup;
#[cfg(target_os = "linux")]
pub mod exec_enter;
#[cfg(target_os = "linux")]
pub mod exec_session;
#[cfg(target_os = "linux")]
pub mod exit_record;
#[cfg(target_os = "linux")]
pub mod hostmount;
#[cfg(target_os = "linux")]
pub mod isolate;
pub mod mount_plan;
#[cfg(target_os = "linux")]
pub mod process;
pub mod procfs;
pub mod signal;
#[cfg(target_os = "linux")]
pub mod spawn;

#[cfg(target_os = "linux")]
pub use cgroup::{Cgroup, CgroupError, CgroupFs, CgroupLimits, CgroupMode, HostFs};
#[cfg(target_os = "linux")]
pub use process::{
    signal_group, signal_process, wait_child, wait_foreign, ExitStatus, ProcessError,
};
pub use procfs::{
    is_alive, is_same_live_process, live_pids_in_group, parse_mountinfo, process_start_time,
    read_mountinfo, MountInfo, ProcError,
};
pub use signal::{parse_signal, signal_name, SignalParseError};
#[cfg(target_os = "linux")]
pub use spawn::{
    lookup_user, spawn, spawn_isolated, ExitRecordSpec, ProcessSpec, SpawnError, Spawned, UserInfo,
};

pub use caps::{compute_caps, CapSet, CapsError};
#[cfg(target_os = "linux")]
pub use isolate::Isolation;
pub use mount_plan::{build_plan, ChrootSpec, MountPlan, MountStep, PlanError, RealHost};
