//! Golden runtime-environment test (facts §1.1–1.4, §1.9): a real raw_exec task runs
//! `/usr/bin/env` and every variable Nomad sets is checked in its output. Its own test binary,
//! because it sets variables in the process env (the agent's host env).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use nomad_structs::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedPortMapping, AllocatedResources,
    AllocatedSharedResources, AllocatedTaskResources, NetworkResource, Port,
};

fn parse_env(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn golden_task_env() {
    // The agent's environment: passed through minus the denylist, never over Nomad's keys.
    std::env::set_var("GOLDEN_HOST_VAR", "host-value");
    std::env::set_var("GOLDEN_HOST_REF", "dc=${node.datacenter}");
    std::env::set_var("VAULT_TOKEN", "must-not-leak");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "must-not-leak");
    std::env::set_var("NOMAD_REGION", "host-region");

    let h = start(TestDir::new(), FakeServer::new());
    let mut t = task("web", "");
    t.config =
        Some(serde_json::from_value(serde_json::json!({"command": "/usr/bin/env"})).expect("cfg"));
    t.meta = Some(BTreeMap::from([(
        "owner".to_string(),
        "task-wins".to_string(),
    )]));
    t.env = Some(BTreeMap::from([
        ("NOMAD_DC".to_string(), "overridden-dc".to_string()),
        (
            "GREETING".to_string(),
            "hi ${NOMAD_TASK_NAME} on ${attr.kernel.name} ${unknown.ref}".to_string(),
        ),
    ]));
    let mut a = alloc("service", vec![t], no_restart());
    a.name = "golden-job.grp[2]".into();
    a.job_id = "golden-job".into();
    {
        let job = a.job.as_mut().expect("job");
        job.id = "golden-job".into();
        job.name = "Golden Job".into();
        job.meta = Some(BTreeMap::from([
            ("owner".to_string(), "job".to_string()),
            ("mixed-Case".to_string(), "j".to_string()),
        ]));
        job.task_groups[0].meta = Some(BTreeMap::from([(
            "tier".to_string(),
            "${node.datacenter}".to_string(),
        )]));
    }
    // As the scheduler fills them for `network { port "my-port" {} port "db" { static = 6379 } }`
    // with `resources { cpu = 500 memory = 256 memory_max = 512 }`.
    a.allocated_resources = Some(AllocatedResources {
        tasks: BTreeMap::from([(
            "web".to_string(),
            AllocatedTaskResources {
                cpu: AllocatedCpuResources {
                    cpu_shares: 500,
                    reserved_cores: None,
                },
                memory: AllocatedMemoryResources {
                    memory_mb: 256,
                    memory_max_mb: 512,
                },
                networks: None,
                devices: None,
            },
        )]),
        task_lifecycles: None,
        shared: AllocatedSharedResources {
            networks: Some(vec![NetworkResource {
                mode: "host".into(),
                ip: "127.0.0.1".into(),
                reserved_ports: vec![Port {
                    label: "db".into(),
                    value: 6379,
                    to: 0,
                    host_network: "default".into(),
                    ..Default::default()
                }],
                dynamic_ports: vec![Port {
                    label: "my-port".into(),
                    value: 23456,
                    to: 0,
                    host_network: "default".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }]),
            disk_mb: 300,
            ports: Some(vec![
                AllocatedPortMapping {
                    label: "my-port".into(),
                    value: 23456,
                    to: 0,
                    host_ip: "127.0.0.1".into(),
                    ignore_collision: false,
                },
                AllocatedPortMapping {
                    label: "db".into(),
                    value: 6379,
                    to: 0,
                    host_ip: "127.0.0.1".into(),
                    ignore_collision: false,
                },
            ]),
        },
    });
    h.server.set_allocs(vec![a.clone()]);
    let c = h.client.clone();
    let id = a.id.clone();
    wait_until("env output", Duration::from_secs(15), || {
        stdout_of(&c, &id, "web").contains("NOMAD_TASK_NAME=")
            && c.task_state(&id, "web")
                .is_some_and(|s| event_types(&s).iter().any(|t| t == "Terminated"))
    })
    .await;
    let env = parse_env(&stdout_of(&h.client, &a.id, "web"));
    let root = h.client.alloc_dir_path(&a.id).expect("alloc dir");
    let root = root.display();
    let want: Vec<(&str, String)> = vec![
        ("NOMAD_ALLOC_DIR", format!("{root}/alloc")),
        ("NOMAD_TASK_DIR", format!("{root}/web/local")),
        ("NOMAD_SECRETS_DIR", format!("{root}/web/secrets")),
        ("NOMAD_MEMORY_LIMIT", "256".into()),
        ("NOMAD_MEMORY_MAX_LIMIT", "512".into()),
        ("NOMAD_CPU_LIMIT", "500".into()),
        ("NOMAD_ALLOC_ID", a.id.clone()),
        ("NOMAD_SHORT_ALLOC_ID", a.id[..8].to_string()),
        ("NOMAD_ALLOC_NAME", "golden-job.grp[2]".into()),
        ("NOMAD_ALLOC_INDEX", "2".into()),
        ("NOMAD_TASK_NAME", "web".into()),
        ("NOMAD_GROUP_NAME", "grp".into()),
        ("NOMAD_JOB_ID", "golden-job".into()),
        ("NOMAD_JOB_NAME", "Golden Job".into()),
        ("NOMAD_PARENT_CGROUP", "nomad.slice".into()),
        ("NOMAD_NAMESPACE", "default".into()),
        // The host's NOMAD_REGION does not override Nomad's.
        ("NOMAD_REGION", "global".into()),
        // The task env overrides a NOMAD_ variable.
        ("NOMAD_DC", "overridden-dc".into()),
        // Meta: task > group > job, both cases, keys cleaned, values interpolated.
        ("NOMAD_META_owner", "task-wins".into()),
        ("NOMAD_META_OWNER", "task-wins".into()),
        ("NOMAD_META_mixed_Case", "j".into()),
        ("NOMAD_META_MIXED_CASE", "j".into()),
        ("NOMAD_META_tier", "dc1".into()),
        ("NOMAD_META_TIER", "dc1".into()),
        // Ports: cleaned labels for the cleaned prefixes.
        ("NOMAD_IP_my_port", "127.0.0.1".into()),
        ("NOMAD_PORT_my_port", "23456".into()),
        ("NOMAD_ADDR_my_port", "127.0.0.1:23456".into()),
        ("NOMAD_HOST_PORT_my_port", "23456".into()),
        ("NOMAD_IP_db", "127.0.0.1".into()),
        ("NOMAD_PORT_db", "6379".into()),
        ("NOMAD_ADDR_db", "127.0.0.1:6379".into()),
        ("NOMAD_HOST_PORT_db", "6379".into()),
        // (quirk) not cleaned: hyphen kept.
        ("NOMAD_HOST_IP_my-port", "127.0.0.1".into()),
        ("NOMAD_HOST_ADDR_my-port", "127.0.0.1:23456".into()),
        ("NOMAD_ALLOC_PORT_my-port", "23456".into()),
        ("NOMAD_HOST_ADDR_db", "127.0.0.1:6379".into()),
        ("NOMAD_ALLOC_PORT_db", "6379".into()),
        // Host passthrough (values interpolated) and task env interpolation.
        ("GOLDEN_HOST_VAR", "host-value".into()),
        ("GOLDEN_HOST_REF", "dc=dc1".into()),
        ("GREETING", "hi web on linux ${unknown.ref}".into()),
    ];
    for (k, v) in &want {
        assert_eq!(env.get(*k), Some(v), "{k} in {env:#?}");
    }
    assert_eq!(
        env.get("PATH"),
        std::env::var("PATH").ok().as_ref(),
        "PATH passes through"
    );
    for absent in [
        "NOMAD_JOB_PARENT_ID",
        "NOMAD_CPU_CORES",
        "VAULT_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "NOMAD_PORT_my-port",
        "NOMAD_TOKEN",
    ] {
        assert!(!env.contains_key(absent), "{absent} must be absent");
    }
    let mut stop = a.clone();
    stop.desired_status = "stop".into();
    stop.alloc_modify_index = 2;
    h.server.set_allocs(vec![stop]);
    h.shutdown().await;
}
