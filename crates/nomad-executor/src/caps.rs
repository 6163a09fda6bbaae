//! Linux capability names and Nomad's capability calculation (exec driver).
//!
//! Pure logic: names are normalised (`"CAP_NET_RAW"`, `"net_raw"`, `" Net_Raw "` are the same
//! capability), sets are 64-bit masks indexed by capability number. The syscalls that apply a
//! set live in the isolated spawn path (`isolate`), which receives a precomputed [`CapSet`].

use std::fmt;

/// Capability names indexed by number (Linux 5.9+: up to `checkpoint_restore` = 40).
const NAMES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// Nomad's default exec capability set (Docker's default minus `NET_RAW`); also the default of
/// the exec plugin's `allow_caps`.
pub const NOMAD_DEFAULT_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The legacy list Nomad gives a task whose user is exactly `root` (the calculation is
/// ignored then).
pub const ROOT_LEGACY_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
];

/// A capability-related configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    /// The name is not a Linux capability.
    #[error("unknown capability {0:?}")]
    Unknown(String),
    /// The running kernel does not know this capability.
    #[error("capability {0:?} is not supported by the kernel")]
    Unsupported(String),
    /// `cap_add` asked for capabilities outside `allow_caps`.
    #[error("driver does not allow the following capabilities: {}", .0.join(", "))]
    NotAllowed(Vec<String>),
}

/// A set of capabilities (bit N = capability number N).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The empty set.
    pub const EMPTY: CapSet = CapSet(0);

    /// Every capability numbered `0..=last_cap`.
    pub fn all(last_cap: u32) -> CapSet {
        let last = last_cap.min(63);
        CapSet(if last == 63 {
            u64::MAX
        } else {
            (1u64 << (last + 1)) - 1
        })
    }

    /// Whether capability number `cap` is in the set.
    pub fn contains(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1u64 << cap) != 0
    }

    /// Adds capability number `cap`.
    pub fn insert(&mut self, cap: u32) {
        if cap < 64 {
            self.0 |= 1u64 << cap;
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Capability numbers in ascending order.
    pub fn numbers(self) -> impl Iterator<Item = u32> {
        (0..64u32).filter(move |c| self.contains(*c))
    }

    /// Canonical names (`CAP_CHOWN`, ...) sorted alphabetically, as Nomad reports them.
    pub fn names(self) -> Vec<String> {
        let mut v: Vec<String> = self
            .numbers()
            .map(|n| match NAMES.get(n as usize) {
                Some(name) => format!("CAP_{}", name.to_ascii_uppercase()),
                None => format!("CAP_{n}"),
            })
            .collect();
        v.sort();
        v
    }

    /// The low and high 32-bit words, as `capset(2)` (version 3) wants them.
    pub fn words(self) -> [u32; 2] {
        [self.0 as u32, (self.0 >> 32) as u32]
    }
}

impl fmt::Debug for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapSet({:#018x} {:?})", self.0, self.names())
    }
}

/// Normalises a name: trim, lower-case, strip a `cap_` prefix.
pub fn normalize_cap_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.strip_prefix("cap_") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

/// The number of a capability name (any accepted spelling).
pub fn cap_number(name: &str) -> Option<u32> {
    let n = normalize_cap_name(name);
    NAMES.iter().position(|c| *c == n).map(|i| i as u32)
}

/// The highest capability number the running kernel supports
/// (`/proc/sys/kernel/cap_last_cap`); falls back to the highest we know.
pub fn kernel_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(NAMES.len() as u32 - 1)
        .min(63)
}

/// Parses a `CapPrm:`-style line value (hex) from `/proc/<pid>/status`.
pub fn parse_status_caps(status: &str, key: &str) -> Option<CapSet> {
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    u64::from_str_radix(v.trim(), 16).ok().map(CapSet)
}

/// The calling process's permitted set (what a child can keep at most); all caps if unknown.
pub fn current_permitted() -> CapSet {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_status_caps(&s, "CapPrm"))
        .unwrap_or(CapSet(u64::MAX))
}

/// Parses a list of names into a set. `all` expands to every kernel-supported capability.
pub fn parse_cap_list<S: AsRef<str>>(names: &[S], last_cap: u32) -> Result<CapSet, CapsError> {
    let mut set = CapSet::EMPTY;
    for raw in names {
        let raw = raw.as_ref();
        let n = normalize_cap_name(raw);
        if n == "all" {
            set.0 |= CapSet::all(last_cap).0;
            continue;
        }
        let num = cap_number(&n).ok_or_else(|| CapsError::Unknown(raw.trim().to_string()))?;
        if num > last_cap {
            return Err(CapsError::Unsupported(raw.trim().to_string()));
        }
        set.insert(num);
    }
    Ok(set)
}

/// Nomad's `capabilities.Calculate`: `(basis ∩ allow) − drop ∪ add`, where any `add` entry not
/// in `allow` is an error naming the offending capabilities. `all` in `drop` clears the set;
/// `all` in `add` asks for every capability (so it needs `allow_caps = ["all"]`).
pub fn compute_caps<S: AsRef<str>>(
    basis: CapSet,
    allow: &[S],
    add: &[S],
    drop: &[S],
    last_cap: u32,
) -> Result<CapSet, CapsError> {
    let allow = parse_cap_list(allow, last_cap)?;
    let add = parse_cap_list(add, last_cap)?;
    let drop = parse_cap_list(drop, last_cap)?;
    let denied = CapSet(add.0 & !allow.0);
    if !denied.is_empty() {
        let names = denied
            .numbers()
            .filter_map(|n| NAMES.get(n as usize).map(|s| s.to_string()))
            .collect();
        return Err(CapsError::NotAllowed(names));
    }
    Ok(CapSet(((basis.0 & allow.0) & !drop.0) | add.0))
}

/// Nomad's default basis set, limited to what the kernel supports.
pub fn nomad_default_caps(last_cap: u32) -> CapSet {
    parse_cap_list(NOMAD_DEFAULT_CAPS, last_cap).unwrap_or_default()
}

/// The legacy `root` list, limited to what the kernel supports.
pub fn root_legacy_caps(last_cap: u32) -> CapSet {
    let mut set = CapSet::EMPTY;
    for n in ROOT_LEGACY_CAPS {
        if let Some(num) = cap_number(n).filter(|c| *c <= last_cap) {
            set.insert(num);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAST: u32 = 40;

    fn names(set: CapSet) -> Vec<String> {
        set.names()
    }

    #[test]
    fn normalises_names() {
        assert_eq!(cap_number("CAP_NET_RAW"), Some(13));
        assert_eq!(cap_number(" net_raw "), Some(13));
        assert_eq!(cap_number("Net_Raw"), Some(13));
        assert_eq!(cap_number("chown"), Some(0));
        assert_eq!(cap_number("checkpoint_restore"), Some(40));
        assert_eq!(cap_number("nope"), None);
        assert_eq!(NAMES.len(), 41);
    }

    #[test]
    fn default_set_is_docker_minus_net_raw() {
        let d = nomad_default_caps(LAST);
        assert_eq!(d.numbers().count(), 13);
        assert!(!d.contains(13));
        assert_eq!(
            names(d),
            vec![
                "CAP_AUDIT_WRITE",
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_MKNOD",
                "CAP_NET_BIND_SERVICE",
                "CAP_SETFCAP",
                "CAP_SETGID",
                "CAP_SETPCAP",
                "CAP_SETUID",
                "CAP_SYS_CHROOT"
            ]
        );
    }

    #[test]
    fn calculation_follows_nomad() {
        let basis = nomad_default_caps(LAST);
        let none: [&str; 0] = [];
        // Defaults only.
        let r = compute_caps(basis, NOMAD_DEFAULT_CAPS, &none, &none, LAST).unwrap();
        assert_eq!(r, basis);
        // Drop all clears.
        let r = compute_caps(basis, NOMAD_DEFAULT_CAPS, &none, &["all"], LAST).unwrap();
        assert!(r.is_empty());
        // Drop one, any spelling.
        let r = compute_caps(
            basis,
            NOMAD_DEFAULT_CAPS,
            &none,
            &["CAP_CHOWN", "kill"],
            LAST,
        )
        .unwrap();
        assert!(!r.contains(0) && !r.contains(5) && r.contains(7));
        // Add needs allow.
        let e = compute_caps(basis, NOMAD_DEFAULT_CAPS, &["net_raw"], &none, LAST).unwrap_err();
        assert_eq!(
            e.to_string(),
            "driver does not allow the following capabilities: net_raw"
        );
        let allow: Vec<&str> = NOMAD_DEFAULT_CAPS
            .iter()
            .copied()
            .chain(["NET_RAW"])
            .collect();
        let r = compute_caps(basis, &allow, &["net_raw"], &["all"], LAST).unwrap();
        assert_eq!(names(r), vec!["CAP_NET_RAW"]);
        // A narrower allow list also narrows the basis.
        let r = compute_caps(basis, &["chown", "kill"], &none, &none, LAST).unwrap();
        assert_eq!(names(r), vec!["CAP_CHOWN", "CAP_KILL"]);
        // add = all needs allow = all.
        assert!(compute_caps(basis, NOMAD_DEFAULT_CAPS, &["all"], &none, LAST).is_err());
        let r = compute_caps(basis, &["all"], &["all"], &none, LAST).unwrap();
        assert_eq!(r, CapSet::all(LAST));
    }

    #[test]
    fn unknown_and_unsupported_names() {
        let none: [&str; 0] = [];
        let e = compute_caps(CapSet::EMPTY, &["all"], &["CAP_FLY"], &none, LAST).unwrap_err();
        assert_eq!(e, CapsError::Unknown("CAP_FLY".into()));
        assert_eq!(e.to_string(), "unknown capability \"CAP_FLY\"");
        // A kernel that stops at 37 (audit_read) does not know bpf.
        let e = parse_cap_list(&["bpf"], 37).unwrap_err();
        assert_eq!(e, CapsError::Unsupported("bpf".into()));
        assert_eq!(CapSet::all(37).numbers().count(), 38);
    }

    #[test]
    fn status_caps() {
        let st = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n";
        assert_eq!(parse_status_caps(st, "CapPrm"), Some(CapSet(0x1fffeffffff)));
        assert_eq!(parse_status_caps(st, "CapInh"), Some(CapSet(0)));
        assert_eq!(parse_status_caps(st, "CapEff"), None);
        assert!(!current_permitted().is_empty() || !current_permitted().contains(0));
    }

    #[test]
    fn root_legacy_list() {
        let r = root_legacy_caps(LAST);
        assert_eq!(r.numbers().count(), 38);
        assert!(r.contains(21)); // sys_admin
        assert!(!r.contains(38)); // perfmon is not in the legacy list
        assert_eq!(r.words()[1], (r.0 >> 32) as u32);
    }
}
