//! Node fingerprinting: attributes, resources and driver health (facts §1.5, §3.4).
//!
//! Everything comes from `/proc`, `/sys` and `/etc/os-release`; parsing is separated from
//! reading so it is unit-tested. Disk: this crate cannot call statvfs(2) (no unsafe, no libc),
//! so `Disk.DiskMB` is the client option `disk_total_mb` when set, else a fixed 100 GiB
//! ([`DEFAULT_DISK_MB`]).

use std::collections::BTreeMap;

use nomad_drivers::Driver;
use nomad_structs::{
    DriverInfo, NodeCpuResources, NodeDiskResources, NodeMemoryResources, NodeResources,
};

/// Disk reported when no `disk_total_mb` option is set.
pub const DEFAULT_DISK_MB: i64 = 100 * 1024;
/// `nomad.revision`.
pub const NOMAD_REVISION: &str = "nomad-rs";

/// CPU facts.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuInfo {
    /// Cores.
    pub cores: u32,
    /// MHz per core.
    pub mhz: u64,
    /// `model name`.
    pub model: String,
}

/// Parses `/proc/cpuinfo` (cores = `processor` entries, highest `cpu MHz`, first model name).
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut cores = 0u32;
    let mut mhz = 0f64;
    let mut model = String::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => cores += 1,
            "cpu MHz" => {
                if let Ok(f) = v.parse::<f64>() {
                    mhz = mhz.max(f);
                }
            }
            "model name" if model.is_empty() => model = v.to_string(),
            _ => {}
        }
    }
    CpuInfo {
        cores,
        mhz: mhz.round() as u64,
        model,
    }
}

/// Parses `MemTotal` (kB) from `/proc/meminfo` into bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Parses `ID` and `VERSION_ID` from `/etc/os-release`.
pub fn parse_os_release(text: &str) -> (String, String) {
    let mut id = String::new();
    let mut ver = String::new();
    for l in text.lines() {
        if let Some((k, v)) = l.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "ID" => id = v,
                "VERSION_ID" => ver = v,
                _ => {}
            }
        }
    }
    (id, ver)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Go's `runtime.GOARCH` for the build target.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

/// The host name.
pub fn hostname() -> String {
    let h = read("/proc/sys/kernel/hostname").trim().to_string();
    if h.is_empty() {
        "localhost".to_string()
    } else {
        h
    }
}

/// Host facts gathered once.
#[derive(Debug, Clone, PartialEq)]
pub struct HostFacts {
    /// Attributes (without drivers).
    pub attributes: BTreeMap<String, String>,
    /// Total compute in MHz.
    pub total_compute: u64,
    /// Cores.
    pub cores: u32,
    /// Memory in MB.
    pub memory_mb: u64,
}

/// Fingerprints the host. `ip` is the advertised address (`unique.network.ip-address`).
pub fn host_facts(ip: &str) -> HostFacts {
    let mut a = BTreeMap::new();
    let cpu = parse_cpuinfo(&read("/proc/cpuinfo"));
    let cores = if cpu.cores > 0 {
        cpu.cores
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    };
    // Nomad prefers the max frequency.
    let max_khz: u64 = read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .trim()
        .parse()
        .unwrap_or(0);
    let mhz = if max_khz > 0 {
        max_khz / 1000
    } else if cpu.mhz > 0 {
        cpu.mhz
    } else {
        1000
    };
    let total = mhz * u64::from(cores);
    let mem = parse_meminfo_total(&read("/proc/meminfo")).unwrap_or(0);
    let (os, osv) = parse_os_release(&read("/etc/os-release"));
    let kernel_ver = read("/proc/sys/kernel/osrelease").trim().to_string();
    a.insert("kernel.name".into(), std::env::consts::OS.to_string());
    a.insert("kernel.arch".into(), std::env::consts::ARCH.to_string());
    a.insert("kernel.version".into(), kernel_ver);
    a.insert(
        "os.name".into(),
        if os.is_empty() { "linux".into() } else { os },
    );
    a.insert("os.version".into(), osv);
    a.insert("cpu.arch".into(), go_arch().to_string());
    a.insert("cpu.numcores".into(), cores.to_string());
    a.insert("cpu.totalcompute".into(), total.to_string());
    a.insert("cpu.usablecompute".into(), total.to_string());
    a.insert("cpu.frequency".into(), mhz.to_string());
    if !cpu.model.is_empty() {
        a.insert("cpu.modelname".into(), cpu.model);
    }
    a.insert("memory.totalbytes".into(), mem.to_string());
    a.insert("unique.hostname".into(), hostname());
    a.insert("unique.network.ip-address".into(), ip.to_string());
    a.insert(
        "nomad.version".into(),
        nomad_structs::NOMAD_VERSION.to_string(),
    );
    a.insert("nomad.revision".into(), NOMAD_REVISION.to_string());
    a.insert("nomad.service_discovery".into(), "true".into());
    HostFacts {
        attributes: a,
        total_compute: total,
        cores,
        memory_mb: mem / 1024 / 1024,
    }
}

/// Driver fingerprints: node attributes to add and the `Drivers` map.
pub fn drivers(
    drivers: &BTreeMap<String, std::sync::Arc<dyn Driver>>,
    now_rfc3339: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, DriverInfo>) {
    let mut attrs = BTreeMap::new();
    let mut infos = BTreeMap::new();
    for (name, d) in drivers {
        let fp = d.fingerprint();
        for (k, v) in &fp.attributes {
            attrs.insert(k.clone(), v.clone());
        }
        if fp.detected {
            attrs.insert(format!("driver.{name}"), "1".to_string());
        }
        infos.insert(
            name.clone(),
            DriverInfo {
                attributes: Some(fp.attributes.clone()),
                detected: fp.detected,
                healthy: fp.healthy,
                health_description: fp.health_description.clone(),
                update_time: Some(now_rfc3339.to_string()),
            },
        );
    }
    (attrs, infos)
}

/// Node resources from host facts.
pub fn node_resources(h: &HostFacts, disk_mb: i64, min_port: u16, max_port: u16) -> NodeResources {
    NodeResources {
        cpu: NodeCpuResources {
            cpu_shares: h.total_compute as i64,
            total_cpu_cores: h.cores.min(u32::from(u16::MAX)) as u16,
            reservable_cpu_cores: Some((0..h.cores.min(u32::from(u16::MAX)) as u16).collect()),
        },
        memory: NodeMemoryResources {
            memory_mb: h.memory_mb as i64,
        },
        disk: NodeDiskResources { disk_mb },
        networks: None,
        node_networks: None,
        devices: None,
        min_dynamic_port: i64::from(min_port),
        max_dynamic_port: i64::from(max_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo() {
        let t = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: 2199.998\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: 2400.100\n";
        let c = parse_cpuinfo(t);
        assert_eq!(
            c,
            CpuInfo {
                cores: 2,
                mhz: 2400,
                model: "Intel(R) Xeon(R)".into()
            }
        );
    }

    #[test]
    fn meminfo_and_os() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       16314856 kB\nMemFree: 1 kB\n"),
            Some(16314856 * 1024)
        );
        assert_eq!(
            parse_os_release("NAME=\"Ubuntu\"\nID=ubuntu\nVERSION_ID=\"22.04\"\n"),
            ("ubuntu".into(), "22.04".into())
        );
    }

    #[test]
    fn host() {
        let h = host_facts("127.0.0.1");
        assert_eq!(h.attributes["kernel.name"], "linux");
        assert_eq!(h.attributes["nomad.version"], nomad_structs::NOMAD_VERSION);
        assert!(h.total_compute > 0);
        assert!(h.cores > 0);
    }
}
