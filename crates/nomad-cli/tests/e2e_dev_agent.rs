//! End to end: the real `nomad` binary as `agent -dev` on free loopback ports, driven through the
//! CLI exactly as a user would (issue: walking skeleton).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nomad_testkit::{wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

fn first_alloc_id(agent: &DevAgent, job: &str) -> String {
    let mut id = String::new();
    let found = wait_for(Duration::from_secs(20), || {
        if let Ok(v) = agent.get_json(&format!("/v1/job/{job}/allocations")) {
            if let Some(a) = v.as_array().and_then(|a| a.first()) {
                id = a["ID"].as_str().unwrap_or_default().to_string();
                return !id.is_empty();
            }
        }
        false
    });
    assert!(
        found,
        "no allocation for {job}; agent log:\n{}",
        agent.log()
    );
    id
}

fn alloc_client_status(agent: &DevAgent, id: &str) -> String {
    agent
        .get_json(&format!("/v1/allocation/{id}"))
        .map(|v| v["ClientStatus"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn hello_job_runs_logs_and_stops() {
    let agent = DevAgent::start(bin(), "");
    let hello = example("hello.nomad.hcl");
    let (code, out, err) = agent.cli(bin(), &["job", "run", hello.to_str().unwrap()]);
    assert_eq!(
        code,
        0,
        "job run failed:\nstdout:\n{out}\nstderr:\n{err}\nagent:\n{}",
        agent.log()
    );
    assert!(out.contains("Monitoring evaluation"), "{out}");
    assert!(out.contains("finished with status \"complete\""), "{out}");

    let alloc = first_alloc_id(&agent, "hello");
    assert!(
        wait_for(Duration::from_secs(20), || alloc_client_status(
            &agent, &alloc
        ) == "running"),
        "alloc never ran; agent log:\n{}",
        agent.log()
    );

    let (code, out, _) = agent.cli(bin(), &["job", "status", "hello"]);
    assert_eq!(code, 0);
    assert!(out.contains("running"), "{out}");

    let short = &alloc[..8];
    let (code, out, err) = agent.cli(bin(), &["alloc", "status", short]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&alloc) || out.contains(short), "{out}");
    assert!(out.contains("Started"), "{out}");

    let mut logs = String::new();
    let saw = wait_for(Duration::from_secs(10), || {
        let (_, out, _) = agent.cli(bin(), &["alloc", "logs", short]);
        logs = out;
        logs.contains("Hello from nomad-rs")
    });
    assert!(saw, "logs: {logs}");
    assert!(
        logs.contains(&alloc),
        "NOMAD_ALLOC_ID was not interpolated: {logs}"
    );

    let (code, out, err) = agent.cli(bin(), &["job", "stop", "hello"]);
    assert_eq!(code, 0, "stop failed: {out}\n{err}");
    assert!(
        wait_for(Duration::from_secs(20), || alloc_client_status(
            &agent, &alloc
        ) == "complete"),
        "alloc not stopped: {}",
        alloc_client_status(&agent, &alloc)
    );
    let (code, out, _) = agent.cli(bin(), &["job", "status", "hello"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("dead (stopped)") || out.contains("dead"),
        "{out}"
    );

    let (code, _, err) = agent.cli(bin(), &["job", "stop", "-purge", "hello"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = agent.cli(bin(), &["job", "status", "hello"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("No job(s) with prefix or ID \"hello\" found"),
        "{err}"
    );
}

#[test]
fn batch_job_sees_its_environment() {
    let agent = DevAgent::start(bin(), "");
    let (code, out, err) = agent.cli(
        bin(),
        &["job", "run", example("batch.nomad.hcl").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let alloc = first_alloc_id(&agent, "batch-env");
    assert!(
        wait_for(Duration::from_secs(20), || alloc_client_status(
            &agent, &alloc
        ) == "complete"),
        "batch alloc did not complete: {} log:\n{}",
        alloc_client_status(&agent, &alloc),
        agent.log()
    );
    let (code, out, err) = agent.cli(bin(), &["alloc", "logs", &alloc, "env"]);
    assert_eq!(code, 0, "{err}");
    for var in [
        "NOMAD_ALLOC_ID=",
        "NOMAD_JOB_NAME=batch-env",
        "NOMAD_TASK_NAME=env",
        "NOMAD_GROUP_NAME=env",
        "NOMAD_DC=dc1",
        "NOMAD_ALLOC_INDEX=0",
    ] {
        assert!(out.contains(var), "missing {var} in:\n{out}");
    }
}

#[test]
fn placement_failure_exits_2_with_reason() {
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("docker.nomad.hcl");
    std::fs::write(
        &spec,
        "job \"needs-docker\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"docker\"\n      config {\n        image = \"redis:7\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let (code, out, err) = agent.cli(bin(), &["job", "run", spec.to_str().unwrap()]);
    assert_eq!(code, 2, "expected placement failure exit 2:\n{out}\n{err}");
    assert!(out.contains("failed to place"), "{out}");
    assert!(out.contains("missing drivers"), "{out}");
}

#[test]
fn bad_jobspec_names_file_line_and_submits_nothing() {
    let agent = DevAgent::start(bin(), "");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.nomad.hcl");
    std::fs::write(&spec, "job \"bad\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      comand = \"x\"\n    }\n  }\n}\n").unwrap();
    let (code, _, err) = agent.cli(bin(), &["job", "run", spec.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.nomad.hcl:5:"),
        "error should name file:line: {err}"
    );
    let jobs = agent.get_json("/v1/jobs").unwrap();
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(0),
        "nothing may be submitted: {jobs}"
    );
}

#[test]
fn api_survives_bad_requests() {
    let agent = DevAgent::start(bin(), "");
    let url = format!("{}/v1/jobs", agent.address);
    let resp = ureq::put(&url)
        .config()
        .http_status_as_error(false)
        .build()
        .send("{not json");
    let mut resp = resp.expect("request sent");
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert!(!body.is_empty());
    let resp = ureq::get(&format!("{}/v1/job/nope", agent.address))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = ureq::get(&format!("{}/v1/jobs?index=abc", agent.address))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Still serving.
    assert!(agent.get_json("/v1/status/leader").is_ok());
}
