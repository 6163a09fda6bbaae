//! Ranking and fit: what a group asks for, what a node has left, port assignment and the
//! BestFit-v3 bin-packing score.

use std::collections::{BTreeMap, BTreeSet};

use nomad_structs::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedPortMapping, AllocatedResources,
    AllocatedSharedResources, AllocatedTaskResources, Allocation, Lifecycle, NetworkResource, Node,
    Port, TaskGroup,
};

/// Default dynamic port range when the node reports none.
pub const DEFAULT_MIN_DYNAMIC_PORT: i64 = 20000;
/// Upper end of the default dynamic port range.
pub const DEFAULT_MAX_DYNAMIC_PORT: i64 = 32000;

/// Task resource defaults, as canonicalize applies them (used when a stored job lacks them).
const DEFAULT_TASK_CPU: i64 = 100;
const DEFAULT_TASK_MEMORY_MB: i64 = 300;

/// One task's ask.
#[derive(Debug, Clone)]
pub(crate) struct TaskAsk {
    pub(crate) name: String,
    pub(crate) cpu: i64,
    pub(crate) memory_mb: i64,
    pub(crate) memory_max_mb: i64,
    pub(crate) lifecycle: Option<Lifecycle>,
}

/// What one alloc of a task group needs.
#[derive(Debug, Clone)]
pub(crate) struct ResourceAsk {
    pub(crate) tasks: Vec<TaskAsk>,
    pub(crate) cpu: i64,
    pub(crate) memory_mb: i64,
    pub(crate) disk_mb: i64,
    pub(crate) network: Option<NetworkResource>,
}

impl ResourceAsk {
    /// The ask of one alloc of `tg`.
    pub(crate) fn for_group(tg: &TaskGroup) -> Self {
        let tasks: Vec<TaskAsk> = tg
            .tasks
            .iter()
            .map(|t| {
                let r = t.resources.clone().unwrap_or_default();
                TaskAsk {
                    name: t.name.clone(),
                    cpu: r.cpu.unwrap_or(DEFAULT_TASK_CPU).max(0),
                    memory_mb: r.memory_mb.unwrap_or(DEFAULT_TASK_MEMORY_MB).max(0),
                    memory_max_mb: r.memory_max_mb.unwrap_or(0).max(0),
                    lifecycle: t.lifecycle.clone(),
                }
            })
            .collect();
        let network = tg.networks.as_ref().and_then(|n| n.first()).cloned();
        ResourceAsk {
            cpu: tasks.iter().map(|t| t.cpu).sum(),
            memory_mb: tasks.iter().map(|t| t.memory_mb).sum(),
            disk_mb: tg
                .ephemeral_disk
                .as_ref()
                .and_then(|d| d.size_mb)
                .unwrap_or(0)
                .max(0),
            tasks,
            network,
        }
    }
}

/// What a node's live allocs hold.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeUsage {
    pub(crate) cpu: i64,
    pub(crate) memory_mb: i64,
    pub(crate) disk_mb: i64,
    pub(crate) ports: BTreeSet<i64>,
}

impl NodeUsage {
    /// Sums the non-terminal allocs (callers pass the proposed set for the node).
    pub(crate) fn of(allocs: &[Allocation]) -> Self {
        let mut u = NodeUsage::default();
        for a in allocs.iter().filter(|a| !a.terminal()) {
            u.add(a);
        }
        u
    }

    fn add(&mut self, a: &Allocation) {
        if let Some(ar) = &a.allocated_resources {
            for t in ar.tasks.values() {
                self.cpu += t.cpu.cpu_shares;
                self.memory_mb += t.memory.memory_mb;
                for n in t.networks.iter().flatten() {
                    self.add_network(n);
                }
            }
            self.disk_mb += ar.shared.disk_mb;
            for p in ar.shared.ports.iter().flatten() {
                self.ports.insert(p.value);
            }
            for n in ar.shared.networks.iter().flatten() {
                self.add_network(n);
            }
        } else if let Some(tg) = a
            .job
            .as_ref()
            .and_then(|j| j.lookup_task_group(&a.task_group))
        {
            // Allocs written without AllocatedResources still hold what their group asks.
            let ask = ResourceAsk::for_group(tg);
            self.cpu += ask.cpu;
            self.memory_mb += ask.memory_mb;
            self.disk_mb += ask.disk_mb;
        }
    }

    fn add_network(&mut self, n: &NetworkResource) {
        for p in n.reserved_ports.iter().chain(n.dynamic_ports.iter()) {
            if p.value > 0 {
                self.ports.insert(p.value);
            }
        }
    }
}

/// The node's schedulable capacity (total minus reserved).
pub(crate) fn capacity(node: &Node) -> (i64, i64, i64) {
    let nr = &node.node_resources;
    let rr = &node.reserved_resources;
    (
        nr.cpu.cpu_shares - rr.cpu.cpu_shares,
        nr.memory.memory_mb - rr.memory.memory_mb,
        nr.disk.disk_mb - rr.disk.disk_mb,
    )
}

/// Parses a Nomad port spec such as `22,80,8000-8100`; bad parts are ignored.
pub(crate) fn parse_port_spec(spec: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
                    if a <= b && b - a <= 65535 {
                        out.extend(a..=b);
                    }
                }
            }
            None => {
                if let Ok(p) = part.parse::<i64>() {
                    out.insert(p);
                }
            }
        }
    }
    out
}

/// The address ports are bound on.
pub(crate) fn host_ip(node: &Node) -> String {
    if let Some(ip) = node
        .attributes
        .get("unique.network.ip-address")
        .filter(|s| !s.is_empty())
    {
        return ip.clone();
    }
    node.node_resources
        .networks
        .iter()
        .flatten()
        .map(|n| n.ip.clone())
        .find(|ip| !ip.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// What a node offers an alloc: its ports and network.
#[derive(Debug, Clone, Default)]
pub(crate) struct Offer {
    pub(crate) ports: Vec<AllocatedPortMapping>,
    pub(crate) network: Option<NetworkResource>,
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Assigns ports, then checks cpu, memory and disk. `Err` carries the exhausted dimension, in
/// Nomad's words (`network: reserved port collision http=80`, `cpu`, `memory`, `disk`).
/// `seed` spreads dynamic port choices deterministically (alloc name + node ID).
pub(crate) fn fit(
    node: &Node,
    usage: &NodeUsage,
    ask: &ResourceAsk,
    seed: &str,
) -> Result<Offer, String> {
    let mut offer = Offer::default();
    if let Some(net) = &ask.network {
        let mut used = usage.ports.clone();
        used.extend(parse_port_spec(
            &node.reserved_resources.networks.reserved_host_ports,
        ));
        let ip = host_ip(node);
        let mapping = |p: &Port, value: i64| AllocatedPortMapping {
            label: p.label.clone(),
            value,
            to: if p.to == -1 { value } else { p.to },
            host_ip: ip.clone(),
            ignore_collision: p.ignore_collision,
        };
        let mut out_net = NetworkResource {
            mode: if net.mode.is_empty() {
                "host".to_string()
            } else {
                net.mode.clone()
            },
            ip: ip.clone(),
            mbits: net.mbits,
            dns: net.dns.clone(),
            cni: net.cni.clone(),
            hostname: net.hostname.clone(),
            ..Default::default()
        };
        for p in &net.reserved_ports {
            if !p.ignore_collision && !used.insert(p.value) {
                return Err(format!(
                    "network: reserved port collision {}={}",
                    p.label, p.value
                ));
            }
            offer.ports.push(mapping(p, p.value));
            out_net.reserved_ports.push(p.clone());
        }
        let (mut lo, mut hi) = (
            node.node_resources.min_dynamic_port,
            node.node_resources.max_dynamic_port,
        );
        if lo <= 0 || hi <= 0 || lo > hi {
            (lo, hi) = (DEFAULT_MIN_DYNAMIC_PORT, DEFAULT_MAX_DYNAMIC_PORT);
        }
        let span = (hi - lo + 1) as u64;
        for p in &net.dynamic_ports {
            let start = (fnv1a(&format!("{seed}/{}", p.label)) % span) as i64;
            let found = (0..span as i64)
                .map(|i| lo + (start + i) % span as i64)
                .find(|v| !used.contains(v));
            let Some(v) = found else {
                return Err("network: dynamic port selection failed".to_string());
            };
            used.insert(v);
            offer.ports.push(mapping(p, v));
            out_net.dynamic_ports.push(Port {
                value: v,
                ..p.clone()
            });
        }
        offer.network = Some(out_net);
    }
    let (cpu, mem, disk) = capacity(node);
    if usage.cpu + ask.cpu > cpu {
        return Err("cpu".to_string());
    }
    if usage.memory_mb + ask.memory_mb > mem {
        return Err("memory".to_string());
    }
    // Nodes that report no disk (zero) are not checked: the fingerprint may be missing.
    if node.node_resources.disk.disk_mb > 0 && usage.disk_mb + ask.disk_mb > disk {
        return Err("disk".to_string());
    }
    Ok(offer)
}

/// BestFit-v3: fuller nodes score higher. Normalized to 0..=1.
pub(crate) fn binpack_score(node: &Node, usage: &NodeUsage, ask: &ResourceAsk) -> f64 {
    let (cpu, mem, _) = capacity(node);
    let free = |used: i64, cap: i64| {
        if cap <= 0 {
            0.0
        } else {
            1.0 - (used as f64 / cap as f64)
        }
    };
    let free_cpu = free(usage.cpu + ask.cpu, cpu);
    let free_mem = free(usage.memory_mb + ask.memory_mb, mem);
    let total = 10f64.powf(free_cpu) + 10f64.powf(free_mem);
    (20.0 - total).clamp(0.0, 18.0) / 18.0
}

/// The alloc's AllocatedResources for an ask and an offer.
pub(crate) fn allocated_resources(ask: &ResourceAsk, offer: &Offer) -> AllocatedResources {
    let mut tasks = BTreeMap::new();
    let mut lifecycles = BTreeMap::new();
    for t in &ask.tasks {
        tasks.insert(
            t.name.clone(),
            AllocatedTaskResources {
                cpu: AllocatedCpuResources {
                    cpu_shares: t.cpu,
                    reserved_cores: None,
                },
                memory: AllocatedMemoryResources {
                    memory_mb: t.memory_mb,
                    memory_max_mb: t.memory_max_mb,
                },
                networks: None,
                devices: None,
            },
        );
        lifecycles.insert(t.name.clone(), t.lifecycle.clone());
    }
    AllocatedResources {
        tasks,
        task_lifecycles: Some(lifecycles),
        shared: AllocatedSharedResources {
            networks: offer.network.clone().map(|n| vec![n]),
            disk_mb: ask.disk_mb,
            ports: if offer.network.is_some() {
                Some(offer.ports.clone())
            } else {
                None
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_spec() {
        let s = parse_port_spec("22, 80,8000-8002,bad,9-1");
        assert_eq!(
            s.into_iter().collect::<Vec<_>>(),
            vec![22, 80, 8000, 8001, 8002]
        );
    }

    #[test]
    fn score_prefers_fuller() {
        let mut n = Node::default();
        n.node_resources.cpu.cpu_shares = 1000;
        n.node_resources.memory.memory_mb = 1000;
        let ask = ResourceAsk {
            tasks: vec![],
            cpu: 100,
            memory_mb: 100,
            disk_mb: 0,
            network: None,
        };
        let empty = NodeUsage::default();
        let half = NodeUsage {
            cpu: 500,
            memory_mb: 500,
            ..Default::default()
        };
        assert!(binpack_score(&n, &half, &ask) > binpack_score(&n, &empty, &ask));
    }
}
