//! Mapping of the `job` block (and everything inside it) onto `nomad_structs::Job`.

use std::collections::BTreeMap;

use nomad_structs::{
    Action, Affinity, Constraint, EphemeralDisk, Job, Lifecycle, LogConfig, MigrateStrategy,
    NetworkResource, Port, ReschedulePolicy, Resources, RestartPolicy, Task, TaskArtifact,
    TaskGroup, UpdateStrategy,
};
use serde_json::{json, Map, Value as J};

use crate::eval::to_json;
use crate::reader::{labels, no_labels, BlockItem, Reader};

fn some_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

pub(crate) fn decode_job(r: &Reader, b: &BlockItem) -> Job {
    let id = labels(r.d, b, &["id"])
        .and_then(|l| l.into_iter().next())
        .unwrap_or_default();
    let jr = r.of(b);
    let mut job = Job {
        id: id.clone(),
        ..Default::default()
    };
    job.name = jr.string("name").unwrap_or_else(|| id.clone());
    job.job_type = jr.string("type").unwrap_or_default();
    job.priority = jr.int("priority").map_or(0, |p| p as i32);
    job.region = jr.string("region").unwrap_or_default();
    job.namespace = jr.string("namespace").unwrap_or_default();
    job.datacenters = jr.strings("datacenters");
    job.node_pool = jr.string("node_pool").unwrap_or_default();
    job.all_at_once = jr.bool("all_at_once").unwrap_or(false);
    job.consul_namespace = jr.string("consul_namespace").unwrap_or_default();
    job.vault_namespace = jr.string("vault_namespace").unwrap_or_default();
    // Deprecated token attributes: accepted, not carried (the server ignores them too).
    let _ = jr.string("consul_token");
    let _ = jr.string("vault_token");
    job.meta = jr.string_map("meta");
    job.constraints = some_vec(
        jr.blocks("constraint")
            .iter()
            .map(|c| constraint(&jr, c))
            .collect(),
    );
    job.affinities = some_vec(
        jr.blocks("affinity")
            .iter()
            .map(|c| affinity(&jr, c))
            .collect(),
    );
    job.spreads = some_vec(jr.blocks("spread").iter().map(|c| spread(&jr, c)).collect());
    job.update = jr.block("update").map(|u| update(&jr, &u));
    job.migrate = jr.block("migrate").map(|u| migrate(&jr, &u));
    job.reschedule = jr.block("reschedule").map(|u| reschedule(&jr, &u));
    job.periodic = jr.block("periodic").map(|p| periodic(&jr, &p));
    job.parameterized_job = jr.block("parameterized").map(|p| parameterized(&jr, &p));
    job.multiregion = jr.block("multiregion").map(|m| generic(&jr, &m));
    job.ui = jr.block("ui").map(|u| ui(&jr, &u));
    let job_vault = jr.block("vault").map(|v| vault(&jr, &v));
    // Tasks directly under the job become groups of their own (jobspec2 behaviour).
    let mut groups: Vec<TaskGroup> = jr
        .blocks("task")
        .iter()
        .filter_map(|t| task(&jr, t))
        .map(|t| TaskGroup {
            name: t.name.clone(),
            tasks: vec![t],
            ..Default::default()
        })
        .collect();
    groups.extend(jr.blocks("group").iter().filter_map(|g| group(&jr, g)));
    jr.finish();
    for g in &mut groups {
        for t in &mut g.tasks {
            if t.vault.is_none() {
                t.vault.clone_from(&job_vault);
            }
        }
    }
    job.task_groups = groups;
    job
}

fn constraint(r: &Reader, b: &BlockItem) -> Constraint {
    no_labels(r.d, b);
    let c = r.of(b);
    let mut out = Constraint {
        l_target: c.string("attribute").unwrap_or_default(),
        r_target: c.string("value").unwrap_or_default(),
        operand: c.string("operator").unwrap_or_default(),
    };
    for op in [
        "version",
        "semver",
        "regexp",
        "set_contains",
        "set_contains_all",
        "set_contains_any",
    ] {
        if let Some(v) = c.string(op).filter(|v| !v.is_empty()) {
            out.operand = op.into();
            out.r_target = v;
        }
    }
    for op in ["attribute_is_set", "attribute_is_not_set"] {
        if let Some(v) = c.string(op).filter(|v| !v.is_empty()) {
            out.operand = if op == "attribute_is_set" {
                "is_set".into()
            } else {
                "is_not_set".into()
            };
            out.l_target = v;
        }
    }
    if c.bool("distinct_hosts") == Some(true) {
        out.operand = "distinct_hosts".into();
    }
    if let Some(p) = c.string("distinct_property").filter(|v| !v.is_empty()) {
        out.operand = "distinct_property".into();
        out.l_target = p;
    }
    if out.operand.is_empty() {
        out.operand = "=".into();
    }
    c.finish();
    out
}

fn affinity(r: &Reader, b: &BlockItem) -> Affinity {
    no_labels(r.d, b);
    let c = r.of(b);
    let mut out = Affinity {
        l_target: c.string("attribute").unwrap_or_default(),
        r_target: c.string("value").unwrap_or_default(),
        operand: c.string("operator").unwrap_or_default(),
        weight: c
            .int("weight")
            .map_or(0, |w| w.clamp(i8::MIN as i64, i8::MAX as i64) as i8),
    };
    for op in [
        "version",
        "semver",
        "regexp",
        "set_contains_any",
        "set_contains_all",
        "set_contains",
    ] {
        if let Some(v) = c.string(op).filter(|v| !v.is_empty()) {
            out.operand = op.into();
            out.r_target = v;
        }
    }
    if out.operand.is_empty() {
        out.operand = "=".into();
    }
    c.finish();
    out
}

fn spread(r: &Reader, b: &BlockItem) -> J {
    no_labels(r.d, b);
    let c = r.of(b);
    let mut m = Map::new();
    if let Some(a) = c.string("attribute") {
        m.insert("Attribute".into(), J::String(a));
    }
    if let Some(w) = c.int("weight") {
        m.insert("Weight".into(), json!(w));
    }
    let targets: Vec<J> = c
        .blocks("target")
        .iter()
        .map(|t| {
            let value = labels(r.d, t, &["name"])
                .and_then(|l| l.into_iter().next())
                .unwrap_or_default();
            let tr = c.of(t);
            let mut tm = Map::new();
            tm.insert(
                "Value".into(),
                J::String(tr.string("value").unwrap_or(value)),
            );
            if let Some(p) = tr.int("percent") {
                tm.insert("Percent".into(), json!(p));
            }
            tr.finish();
            J::Object(tm)
        })
        .collect();
    if !targets.is_empty() {
        m.insert("SpreadTarget".into(), J::Array(targets));
    }
    c.finish();
    J::Object(m)
}

fn update(r: &Reader, b: &BlockItem) -> UpdateStrategy {
    no_labels(r.d, b);
    let c = r.of(b);
    let u = UpdateStrategy {
        stagger: c.dur("stagger"),
        max_parallel: c.int("max_parallel"),
        health_check: c.string("health_check"),
        min_healthy_time: c.dur("min_healthy_time"),
        healthy_deadline: c.dur("healthy_deadline"),
        progress_deadline: c.dur("progress_deadline"),
        auto_revert: c.bool("auto_revert"),
        auto_promote: c.bool("auto_promote"),
        canary: c.int("canary"),
    };
    c.finish();
    u
}

fn migrate(r: &Reader, b: &BlockItem) -> MigrateStrategy {
    no_labels(r.d, b);
    let c = r.of(b);
    let m = MigrateStrategy {
        max_parallel: c.int("max_parallel"),
        health_check: c.string("health_check"),
        min_healthy_time: c.dur("min_healthy_time"),
        healthy_deadline: c.dur("healthy_deadline"),
    };
    c.finish();
    m
}

fn reschedule(r: &Reader, b: &BlockItem) -> ReschedulePolicy {
    no_labels(r.d, b);
    let c = r.of(b);
    let p = ReschedulePolicy {
        attempts: c.int("attempts"),
        interval: c.dur("interval"),
        delay: c.dur("delay"),
        delay_function: c.string("delay_function"),
        max_delay: c.dur("max_delay"),
        unlimited: c.bool("unlimited"),
    };
    c.finish();
    p
}

fn restart(r: &Reader, b: &BlockItem) -> RestartPolicy {
    no_labels(r.d, b);
    let c = r.of(b);
    let p = RestartPolicy {
        attempts: c.int("attempts"),
        interval: c.dur("interval"),
        delay: c.dur("delay"),
        mode: c.string("mode"),
        render_templates: c.bool("render_templates"),
    };
    c.finish();
    p
}

fn periodic(r: &Reader, b: &BlockItem) -> J {
    no_labels(r.d, b);
    let c = r.of(b);
    let mut m = Map::new();
    if let Some(e) = c.bool("enabled") {
        m.insert("Enabled".into(), J::Bool(e));
    }
    let spec = c.string("cron");
    let specs = c.strings("crons");
    let spec_type = c.string("spec_type");
    if let Some(s) = &spec {
        m.insert("Spec".into(), J::String(s.clone()));
    }
    if let Some(s) = &specs {
        m.insert("Specs".into(), json!(s));
    }
    if let Some(t) = spec_type {
        m.insert("SpecType".into(), J::String(t));
    }
    if spec.is_some() || specs.is_some() {
        m.insert("SpecType".into(), J::String("cron".into()));
    }
    if let Some(p) = c.bool("prohibit_overlap") {
        m.insert("ProhibitOverlap".into(), J::Bool(p));
    }
    if let Some(t) = c.string("time_zone") {
        m.insert("TimeZone".into(), J::String(t));
    }
    c.finish();
    J::Object(m)
}

fn parameterized(r: &Reader, b: &BlockItem) -> J {
    no_labels(r.d, b);
    let c = r.of(b);
    let mut m = Map::new();
    if let Some(p) = c.string("payload") {
        m.insert("Payload".into(), J::String(p));
    }
    if let Some(p) = c.strings("meta_required") {
        m.insert("MetaRequired".into(), json!(p));
    }
    if let Some(p) = c.strings("meta_optional") {
        m.insert("MetaOptional".into(), json!(p));
    }
    c.finish();
    J::Object(m)
}

fn ui(r: &Reader, b: &BlockItem) -> J {
    no_labels(r.d, b);
    let c = r.of(b);
    let mut m = Map::new();
    if let Some(d) = c.string("description") {
        m.insert("Description".into(), J::String(d));
    }
    let links: Vec<J> = c
        .blocks("link")
        .iter()
        .map(|l| {
            no_labels(r.d, l);
            let lr = c.of(l);
            let v = json!({"Label": lr.string("label").unwrap_or_default(), "URL": lr.string("url").unwrap_or_default()});
            lr.finish();
            v
        })
        .collect();
    if !links.is_empty() {
        m.insert("Links".into(), J::Array(links));
    }
    c.finish();
    J::Object(m)
}

fn vault(r: &Reader, b: &BlockItem) -> J {
    let mut v = generic(r, b);
    if let J::Object(m) = &mut v {
        m.entry("Env").or_insert(J::Bool(true));
        m.entry("ChangeMode").or_insert(J::String("restart".into()));
    }
    v
}

fn group(r: &Reader, b: &BlockItem) -> Option<TaskGroup> {
    let name = labels(r.d, b, &["name"])?.into_iter().next()?;
    let g = r.of(b);
    let mut tg = TaskGroup {
        name,
        ..Default::default()
    };
    tg.count = g.int("count");
    tg.constraints = some_vec(
        g.blocks("constraint")
            .iter()
            .map(|c| constraint(&g, c))
            .collect(),
    );
    tg.affinities = some_vec(
        g.blocks("affinity")
            .iter()
            .map(|c| affinity(&g, c))
            .collect(),
    );
    tg.spreads = some_vec(g.blocks("spread").iter().map(|c| spread(&g, c)).collect());
    tg.restart_policy = g.block("restart").map(|x| restart(&g, &x));
    tg.reschedule_policy = g.block("reschedule").map(|x| reschedule(&g, &x));
    tg.update = g.block("update").map(|x| update(&g, &x));
    tg.migrate = g.block("migrate").map(|x| migrate(&g, &x));
    tg.ephemeral_disk = g.block("ephemeral_disk").map(|x| {
        no_labels(g.d, &x);
        let e = g.of(&x);
        let d = EphemeralDisk {
            sticky: e.bool("sticky"),
            size_mb: e.int("size"),
            migrate: e.bool("migrate"),
        };
        e.finish();
        d
    });
    tg.meta = g.string_map("meta");
    tg.networks = some_vec(g.blocks("network").iter().map(|n| network(&g, n)).collect());
    tg.services = some_vec(g.blocks("service").iter().map(|s| generic(&g, s)).collect());
    tg.shutdown_delay = g.dur("shutdown_delay");
    tg.max_client_disconnect = g.dur("max_client_disconnect");
    tg.stop_after_client_disconnect = g.dur("stop_after_client_disconnect");
    tg.prevent_reschedule_on_lost = g.bool("prevent_reschedule_on_lost");
    tg.disconnect = g.block("disconnect").map(|x| generic(&g, &x));
    tg.consul = g.block("consul").map(|x| generic(&g, &x));
    tg.scaling = g.block("scaling").map(|x| {
        let mut v = generic(&g, &x);
        if let J::Object(m) = &mut v {
            m.entry("Type").or_insert(J::String("horizontal".into()));
        }
        v
    });
    let mut volumes = BTreeMap::new();
    for v in g.blocks("volume") {
        let Some(name) = labels(g.d, &v, &["name"]).and_then(|l| l.into_iter().next()) else {
            continue;
        };
        let mut val = generic(&g, &v);
        if let J::Object(m) = &mut val {
            m.insert("Name".into(), J::String(name.clone()));
        }
        volumes.insert(name, val);
    }
    if !volumes.is_empty() {
        tg.volumes = Some(volumes);
    }
    let group_vault = g.block("vault").map(|v| vault(&g, &v));
    tg.tasks = g
        .blocks("task")
        .iter()
        .filter_map(|t| task(&g, t))
        .collect();
    g.finish();
    if let Some(v) = group_vault {
        for t in &mut tg.tasks {
            if t.vault.is_none() {
                t.vault = Some(v.clone());
            }
        }
    }
    Some(tg)
}

fn network(r: &Reader, b: &BlockItem) -> NetworkResource {
    no_labels(r.d, b);
    let n = r.of(b);
    let mut out = NetworkResource {
        mode: n.string("mode").unwrap_or_default(),
        device: n.string("device").unwrap_or_default(),
        cidr: n.string("cidr").unwrap_or_default(),
        ip: n.string("ip").unwrap_or_default(),
        hostname: n.string("hostname").unwrap_or_default(),
        mbits: n.int("mbits").unwrap_or(0),
        ..Default::default()
    };
    out.dns = n.block("dns").map(|x| generic(&n, &x));
    out.cni = n.block("cni").map(|x| generic(&n, &x));
    for p in n.blocks("port") {
        let Some(label) = labels(n.d, &p, &["label"]).and_then(|l| l.into_iter().next()) else {
            continue;
        };
        let pr = n.of(&p);
        let port = Port {
            label,
            value: pr.int("static").unwrap_or(0),
            to: pr.int("to").unwrap_or(0),
            host_network: pr.string("host_network").unwrap_or_default(),
            ignore_collision: pr.bool("ignore_collision").unwrap_or(false),
        };
        pr.finish();
        if port.value > 0 {
            out.reserved_ports.push(port);
        } else {
            out.dynamic_ports.push(port);
        }
    }
    n.finish();
    out
}

fn task(r: &Reader, b: &BlockItem) -> Option<Task> {
    let name = labels(r.d, b, &["name"])?.into_iter().next()?;
    let t = r.of(b);
    let mut task = Task {
        name,
        ..Default::default()
    };
    task.driver = t.string("driver").unwrap_or_default();
    task.user = t.string("user").unwrap_or_default();
    task.kind = t.string("kind").unwrap_or_default();
    task.leader = t.bool("leader").unwrap_or(false);
    task.kill_timeout = t.dur("kill_timeout");
    task.kill_signal = t.string("kill_signal").unwrap_or_default();
    task.shutdown_delay = t.dur("shutdown_delay");
    task.config = t.block("config").map(|c| {
        no_labels(t.d, &c);
        t.of(&c).freeform()
    });
    task.env = t.string_map("env");
    task.meta = t.string_map("meta");
    task.constraints = some_vec(
        t.blocks("constraint")
            .iter()
            .map(|c| constraint(&t, c))
            .collect(),
    );
    task.affinities = some_vec(
        t.blocks("affinity")
            .iter()
            .map(|c| affinity(&t, c))
            .collect(),
    );
    task.services = some_vec(t.blocks("service").iter().map(|s| generic(&t, s)).collect());
    task.restart_policy = t.block("restart").map(|x| restart(&t, &x));
    task.resources = t.block("resources").map(|x| resources(&t, &x));
    task.lifecycle = t.block("lifecycle").map(|x| {
        no_labels(t.d, &x);
        let l = t.of(&x);
        let lc = Lifecycle {
            hook: l.string("hook").unwrap_or_default(),
            sidecar: l.bool("sidecar").unwrap_or(false),
        };
        l.finish();
        lc
    });
    task.log_config = t.block("logs").map(|x| {
        no_labels(t.d, &x);
        let l = t.of(&x);
        let lc = LogConfig {
            max_files: l.int("max_files"),
            max_file_size_mb: l.int("max_file_size"),
            disabled: l.bool("disabled"),
            enabled: l.bool("enabled"),
        };
        l.finish();
        lc
    });
    task.artifacts = some_vec(
        t.blocks("artifact")
            .iter()
            .map(|a| artifact(&t, a))
            .collect(),
    );
    task.templates = some_vec(
        t.blocks("template")
            .iter()
            .map(|x| template(&t, x))
            .collect(),
    );
    task.vault = t.block("vault").map(|x| vault(&t, &x));
    task.dispatch_payload = t.block("dispatch_payload").map(|x| generic(&t, &x));
    task.volume_mounts = some_vec(
        t.blocks("volume_mount")
            .iter()
            .map(|x| generic(&t, x))
            .collect(),
    );
    task.csi_plugin_config = t.block("csi_plugin").map(|x| generic(&t, &x));
    task.schedule = t.block("schedule").map(|x| generic(&t, &x));
    let mut identities = Vec::new();
    for i in t.blocks("identity") {
        let v = generic(&t, &i);
        let name = v.get("Name").and_then(J::as_str).unwrap_or("");
        if name.is_empty() || name == "default" {
            if task.identity.is_some() {
                t.d.err(
                    i.ident_span.clone(),
                    "Duplicate identity block",
                    "Only one default identity block is allowed.",
                );
            }
            task.identity = Some(v);
        } else {
            identities.push(v);
        }
    }
    task.identities = some_vec(identities);
    task.actions = some_vec(
        t.blocks("action")
            .iter()
            .filter_map(|a| {
                let name = labels(t.d, a, &["name"])?.into_iter().next()?;
                let ar = t.of(a);
                let act = Action {
                    name,
                    command: ar.string("command").unwrap_or_default(),
                    args: ar.strings("args"),
                };
                ar.finish();
                Some(act)
            })
            .collect(),
    );
    let mut scaling = Vec::new();
    for s in t.blocks("scaling") {
        let Some(label) = labels(t.d, &s, &["name"]).and_then(|l| l.into_iter().next()) else {
            continue;
        };
        let policy_type = match label.to_lowercase().as_str() {
            "cpu" => "vertical_cpu",
            "mem" => "vertical_mem",
            _ => {
                t.d.err(
                    s.labels[0].1.clone(),
                    "Invalid scaling policy name",
                    "scaling policy name must be \"cpu\" or \"mem\"",
                );
                continue;
            }
        };
        let mut v = generic(&t, &s);
        if let J::Object(m) = &mut v {
            m.entry("Type").or_insert(J::String(policy_type.into()));
        }
        scaling.push(v);
    }
    task.scaling_policies = some_vec(scaling);
    // Accepted for compatibility; nomad_structs::Task has no field for these yet.
    let _ = t.block("consul").map(|x| generic(&t, &x));
    for s in t.blocks("secret") {
        let _ = generic(&t, &s);
    }
    t.finish();
    Some(task)
}

fn resources(r: &Reader, b: &BlockItem) -> Resources {
    no_labels(r.d, b);
    let c = r.of(b);
    let mut res = Resources {
        cpu: c.int("cpu"),
        cores: c.int("cores"),
        memory_mb: c.int("memory"),
        memory_max_mb: c.int("memory_max"),
        disk_mb: c.int("disk"),
        iops: c.int("iops"),
        secrets_mb: c.int("secrets"),
        ..Default::default()
    };
    res.networks = some_vec(c.blocks("network").iter().map(|n| network(&c, n)).collect());
    res.numa = c.block("numa").map(|n| generic(&c, &n));
    let devices: Vec<J> = c
        .blocks("device")
        .iter()
        .filter_map(|d| {
            let name = labels(c.d, d, &["name"])?.into_iter().next()?;
            let dr = c.of(d);
            let mut m = Map::new();
            m.insert("Name".into(), J::String(name));
            if let Some(n) = dr.int("count") {
                m.insert("Count".into(), json!(n));
            }
            let cons: Vec<Constraint> = dr
                .blocks("constraint")
                .iter()
                .map(|x| constraint(&dr, x))
                .collect();
            if !cons.is_empty() {
                m.insert(
                    "Constraints".into(),
                    serde_json::to_value(cons).unwrap_or(J::Null),
                );
            }
            let affs: Vec<Affinity> = dr
                .blocks("affinity")
                .iter()
                .map(|x| affinity(&dr, x))
                .collect();
            if !affs.is_empty() {
                m.insert(
                    "Affinities".into(),
                    serde_json::to_value(affs).unwrap_or(J::Null),
                );
            }
            dr.finish();
            Some(J::Object(m))
        })
        .collect();
    res.devices = some_vec(devices);
    c.finish();
    res
}

fn artifact(r: &Reader, b: &BlockItem) -> TaskArtifact {
    no_labels(r.d, b);
    let c = r.of(b);
    let opts = |name: &str| {
        c.block(name).map(|x| {
            no_labels(c.d, &x);
            let fr = c.of(&x);
            let m: BTreeMap<String, String> = fr
                .freeform()
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect();
            fr.finish();
            m
        })
    };
    let a = TaskArtifact {
        getter_source: c.string("source"),
        relative_dest: c.string("destination"),
        getter_mode: c.string("mode"),
        getter_insecure: c.bool("insecure"),
        chown: c.bool("chown"),
        getter_options: opts("options"),
        getter_headers: opts("headers"),
    };
    c.finish();
    a
}

fn template(r: &Reader, b: &BlockItem) -> J {
    let mut v = generic(r, b);
    if let J::Object(m) = &mut v {
        m.entry("ChangeMode").or_insert(J::String("restart".into()));
        m.entry("Perms").or_insert(J::String("0644".into()));
        m.entry("Splay").or_insert(json!(5_000_000_000i64));
        m.entry("ErrMissingKey").or_insert(J::Bool(false));
        if let Some(J::Object(cs)) = m.get_mut("ChangeScript") {
            cs.entry("Args").or_insert(json!([]));
            cs.entry("Timeout").or_insert(json!(5_000_000_000i64));
            cs.entry("FailOnError").or_insert(J::Bool(false));
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Generic blocks (service, check, template, identity, vault, volume, ...) kept as JSON in
// Nomad's api key spelling, best effort.

/// HCL key → JSON key where simple PascalCase is wrong.
fn json_key(parent: &str, key: &str) -> String {
    let special = match (parent, key) {
        ("service", "port") => Some("PortLabel"),
        ("service", "check") | ("sidecar_task", "check") => Some("Checks"),
        ("template", "source") => Some("SourcePath"),
        ("template", "destination") => Some("DestPath"),
        ("template", "data") => Some("EmbeddedTmpl"),
        ("template", "left_delimiter") => Some("LeftDelim"),
        ("template", "right_delimiter") => Some("RightDelim"),
        ("template", "env") => Some("Envvars"),
        ("template", "error_on_missing_key") => Some("ErrMissingKey"),
        ("identity", "aud") => Some("Audience"),
        ("dispatch_payload", "file") => Some("File"),
        ("volume_mount", "selinux_label") => Some("SELinuxLabel"),
        ("mount_options", "fs_type") => Some("FSType"),
        ("upstreams", "local_bind_port") => Some("LocalBindPort"),
        ("expose", "path") => Some("Paths"),
        ("proxy", "upstreams") => Some("Upstreams"),
        ("sidecar_service", "port") => Some("Port"),
        ("check", "grpc_service") => Some("GRPCService"),
        ("check", "grpc_use_tls") => Some("GRPCUseTLS"),
        ("check", "tls_skip_verify") => Some("TLSSkipVerify"),
        ("check", "tls_server_name") => Some("TLSServerName"),
        ("check", "port") => Some("PortLabel"),
        ("check", "header") => Some("Header"),
        ("spread", "target") => Some("SpreadTarget"),
        (_, "ttl") => Some("TTL"),
        (_, "id") => Some("ID"),
        (_, "cidr") => Some("CIDR"),
        (_, "ip") => Some("IP"),
        _ => None,
    };
    if let Some(s) = special {
        return s.to_string();
    }
    key.split('_')
        .map(|w| match w {
            "id" => "ID".to_string(),
            "ttl" => "TTL".to_string(),
            "tls" => "TLS".to_string(),
            "grpc" => "GRPC".to_string(),
            "http" => "HTTP".to_string(),
            "url" => "URL".to_string(),
            "dns" => "DNS".to_string(),
            "ip" => "IP".to_string(),
            "csi" => "CSI".to_string(),
            _ => {
                let mut c = w.chars();
                c.next().map_or_else(String::new, |f| {
                    f.to_uppercase().collect::<String>() + c.as_str()
                })
            }
        })
        .collect()
}

/// Keys whose string values are Go durations (converted to nanoseconds).
const DURATION_KEYS: &[&str] = &[
    "interval",
    "timeout",
    "grace",
    "splay",
    "vault_grace",
    "min",
    "max",
    "ttl",
    "lost_after",
    "stop_on_client_after",
    "deregister_critical_service_after",
    "success_before_passing",
    "initial_status_delay",
    "local_idle_timeout",
    "connect_timeout",
    "delay",
    "max_delay",
    "change_script_timeout",
];

/// Blocks that repeat (become lists) inside generic blocks.
const LIST_BLOCKS: &[&str] = &[
    "check",
    "upstreams",
    "path",
    "expose_path",
    "link",
    "target",
    "header_block",
];

/// Blocks whose contents are free-form maps.
const FREEFORM_BLOCKS: &[&str] = &[
    "meta",
    "canary_meta",
    "config",
    "options",
    "headers",
    "extra_claims",
    "tagged_addresses",
    "policy",
    "args",
    "header",
    "labels",
];

pub(crate) fn generic(r: &Reader, b: &BlockItem) -> J {
    let c = r.of(b);
    let mut m = Map::new();
    if let Some((label, _)) = b.labels.first() {
        if b.ident != "volume" && b.ident != "scaling" {
            m.insert("Name".into(), J::String(label.clone()));
        }
    }
    for a in c.all_attrs() {
        let key = a.key.as_str();
        let Some(v) = c.eval(&a.value) else { continue };
        let jv = if DURATION_KEYS.contains(&key) {
            match &v {
                hcl::Value::String(s) => match nomad_structs::duration::parse_go_duration(s) {
                    Ok(ns) => json!(ns),
                    Err(e) => {
                        c.d.err(
                            a.value.span_of(),
                            "Unsuitable value type",
                            format!("Unsuitable duration value: {e}"),
                        );
                        continue;
                    }
                },
                other => to_json(other),
            }
        } else if key == "aud" {
            match &v {
                hcl::Value::String(s) => json!([s]),
                other => to_json(other),
            }
        } else {
            to_json(&v)
        };
        m.insert(json_key(&b.ident, key), jv);
    }
    for nb in c.all_blocks() {
        let key = json_key(&b.ident, &nb.ident);
        let val = if FREEFORM_BLOCKS.contains(&nb.ident.as_str()) {
            let fr = c.of(&nb);
            let mut ff = fr.freeform();
            if nb.ident == "meta" || nb.ident == "canary_meta" {
                ff = ff
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            J::String(v.as_str().map_or_else(|| v.to_string(), str::to_string)),
                        )
                    })
                    .collect();
            }
            if nb.ident == "header" {
                // check header { Name = ["v"] } → {"Name": ["v"]}
                ff = ff
                    .into_iter()
                    .map(|(k, v)| match v {
                        J::Array(_) => (k, v),
                        other => (k, J::Array(vec![other])),
                    })
                    .collect();
            }
            J::Object(ff)
        } else {
            generic(&c, &nb)
        };
        if LIST_BLOCKS.contains(&nb.ident.as_str()) || (b.ident == "service" && nb.ident == "check")
        {
            let e = m.entry(key).or_insert_with(|| J::Array(Vec::new()));
            if let J::Array(l) = e {
                l.push(val);
            }
        } else {
            if m.contains_key(&key) {
                c.d.err(
                    nb.ident_span.clone(),
                    format!("Duplicate {} block", nb.ident),
                    format!("Only one {:?} block is allowed here.", nb.ident),
                );
            }
            m.insert(key, val);
        }
    }
    J::Object(m)
}

trait SpanOf {
    fn span_of(&self) -> Option<std::ops::Range<usize>>;
}

impl SpanOf for hcl_edit::expr::Expression {
    fn span_of(&self) -> Option<std::ops::Range<usize>> {
        hcl_edit::Span::span(self)
    }
}
