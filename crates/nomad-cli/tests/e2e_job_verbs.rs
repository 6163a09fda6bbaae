//! End to end: `job scale`, `job history`, `job revert`, `eval list` and the `/stable` endpoint
//! against the real `nomad agent -dev`, through the CLI and the HTTP API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nomad_testkit::{wait_for, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn hello() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello.nomad.hcl")
}

/// Non-terminal allocs of `job` whose client reports them running.
fn running_allocs(agent: &DevAgent, job: &str) -> usize {
    agent
        .get_json(&format!("/v1/job/{job}/allocations"))
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|a| a["ClientStatus"] == "running" && a["DesiredStatus"] == "run")
        .count()
}

fn wait_running(agent: &DevAgent, job: &str, n: usize) {
    assert!(
        wait_for(Duration::from_secs(30), || running_allocs(agent, job) == n),
        "{job} never had {n} running allocs (has {}); agent log:\n{}",
        running_allocs(agent, job),
        agent.log()
    );
}

fn job_field(agent: &DevAgent, job: &str, field: &str) -> serde_json::Value {
    agent
        .get_json(&format!("/v1/job/{job}"))
        .map(|v| v[field].clone())
        .unwrap_or_default()
}

#[test]
fn scale_history_revert_and_eval_list() {
    let agent = DevAgent::start(bin(), "");
    let (code, out, err) = agent.cli(bin(), &["job", "run", hello().to_str().unwrap()]);
    assert_eq!(code, 0, "job run: {out}\n{err}\n{}", agent.log());
    wait_running(&agent, "hello", 1);

    // Scale: the only group may be left out; the monitor follows the eval.
    let (code, out, err) = agent.cli(bin(), &["job", "scale", "hello", "2"]);
    assert_eq!(code, 0, "job scale: {out}\n{err}");
    assert!(out.contains("Monitoring evaluation"), "{out}");
    wait_running(&agent, "hello", 2);
    let status = agent.get_json("/v1/job/hello/scale").unwrap();
    let group = &status["TaskGroups"]["hello"];
    assert_eq!(group["Desired"], 2);
    assert_eq!(group["Running"], 2);
    assert_eq!(
        group["Events"][0]["Message"],
        "submitted using the Nomad CLI"
    );
    assert_eq!(group["Events"][0]["PreviousCount"], 1);
    assert_eq!(job_field(&agent, "hello", "Version"), 1);

    // Scale refusals name what is wrong.
    let (code, _, err) = agent.cli(bin(), &["job", "scale", "hello", "nogroup", "3"]);
    assert_eq!(code, 1);
    assert!(err.contains("Group nogroup not found within job"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["job", "scale", "hello", "many"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Failed to convert count string to int"),
        "{err}"
    );
    let (code, _, err) = agent.cli(bin(), &["job", "scale", "hello"]);
    assert_eq!(code, 1);
    assert!(err.contains("at least two arguments"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["job", "scale", "hello", "-1"]);
    assert_eq!(code, 1);
    assert!(err.contains("count can't be negative"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["job", "scale", "nope", "1"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error querying job:"), "{err}");

    // History: both versions, newest first.
    let (code, out, err) = agent.cli(bin(), &["job", "history", "hello"]);
    assert_eq!(code, 0, "{err}");
    let v1 = out.find("Version     = 1").expect("version 1 shown");
    let v0 = out.find("Version     = 0").expect("version 0 shown");
    assert!(v1 < v0, "{out}");
    assert!(out.contains("Stable      = false"), "{out}");
    assert!(out.contains("Submit Date = "), "{out}");
    let (code, out, _) = agent.cli(bin(), &["job", "history", "-json", "hello"]);
    assert_eq!(code, 0);
    let versions: serde_json::Value = serde_json::from_str(&out).expect("JSON history");
    assert_eq!(versions.as_array().map(Vec::len), Some(2));
    let (code, out, _) = agent.cli(
        bin(),
        &["job", "history", "-version", "0", "-full", "hello"],
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("Version     = 0"), "{out}");
    assert!(out.contains("Full        = JSON Job:"), "{out}");
    assert!(!out.contains("Version     = 1"), "{out}");
    let (code, _, err) = agent.cli(bin(), &["job", "history", "-version", "9", "hello"]);
    assert_eq!(code, 1);
    assert!(err.contains("non-existing job or job version"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["job", "history", "-version", "x", "hello"]);
    assert_eq!(code, 1);
    assert!(err.contains("Error parsing version value \"x\""), "{err}");
    let (code, _, err) = agent.cli(bin(), &["job", "history", "-json", "-p", "hello"]);
    assert_eq!(code, 1);
    assert!(err.contains("exclusive"), "{err}");

    // Revert to version 0: a new version 2 with the old count.
    let (code, out, err) = agent.cli(bin(), &["job", "revert", "hello", "0"]);
    assert_eq!(code, 0, "job revert: {out}\n{err}\n{}", agent.log());
    assert!(out.contains("Monitoring evaluation"), "{out}");
    assert_eq!(job_field(&agent, "hello", "Version"), 2);
    wait_running(&agent, "hello", 1);
    let (code, _, err) = agent.cli(bin(), &["job", "revert", "hello", "2"]);
    assert_eq!(code, 1);
    assert!(err.contains("can't revert to current version"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["job", "revert", "hello", "42"]);
    assert_eq!(code, 1);
    assert!(err.contains("at version 42 not found"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["job", "revert", "hello"]);
    assert_eq!(code, 1);
    assert!(err.contains("two arguments"), "{err}");
    let (code, out, err) = agent.cli(bin(), &["job", "revert", "-detach", "hello", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Evaluation ID: "), "{out}");
    wait_running(&agent, "hello", 2);

    // Stable over HTTP, seen in the history.
    let (status, body) = agent.put_json(
        "/v1/job/hello/stable",
        &serde_json::json!({"JobID": "hello", "JobVersion": 3, "Stable": true}),
    );
    assert_eq!(status, 200, "{body}");
    let (code, out, _) = agent.cli(bin(), &["job", "history", "-version", "3", "hello"]);
    assert_eq!(code, 0);
    assert!(out.contains("Stable      = true"), "{out}");
    let (status, body) = agent.put_json(
        "/v1/job/hello/stable",
        &serde_json::json!({"JobID": "other", "JobVersion": 3, "Stable": true}),
    );
    assert_eq!((status, body.as_str()), (400, "Job ID does not match"));

    // Revert over HTTP with a stale EnforcePriorVersion is refused.
    let (status, body) = agent.put_json(
        "/v1/job/hello/revert",
        &serde_json::json!({"JobID": "hello", "JobVersion": 0, "EnforcePriorVersion": 1}),
    );
    assert_eq!(
        (status, body.as_str()),
        (500, "Current job has version 3; enforcing version 1")
    );

    // Eval list: every eval, then filtered and paged.
    let (code, out, err) = agent.cli(bin(), &["eval", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID        Priority  Triggered By"), "{out}");
    assert!(out.contains("job-scaling"), "{out}");
    assert!(out.contains("job-register"), "{out}");
    let (code, out, _) = agent.cli(
        bin(),
        &["eval", "list", "-filter", "TriggeredBy == \"job-scaling\""],
    );
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "one scaling eval: {out}");
    let (code, out, _) = agent.cli(bin(), &["eval", "list", "-job", "hello", "-json"]);
    assert_eq!(code, 0);
    let evals: serde_json::Value = serde_json::from_str(&out).expect("JSON evals");
    assert!(evals.as_array().is_some_and(|a| a.len() >= 4), "{out}");
    let (code, out, _) = agent.cli(bin(), &["eval", "list", "-per-page", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("Results have been paginated"), "{out}");
    let token = out.trim_end().rsplit(' ').next().unwrap().to_string();
    let (code, next, _) = agent.cli(
        bin(),
        &["eval", "list", "-per-page", "1", "-page-token", &token],
    );
    assert_eq!(code, 0);
    assert!(
        next.contains(&token[..8]),
        "page starting at {token}: {next}"
    );
    let (code, out, _) = agent.cli(bin(), &["eval", "list", "-job", "no-such-job"]);
    assert_eq!((code, out.trim()), (0, "No evals found"));
    let (code, _, err) = agent.cli(bin(), &["eval", "list", "-filter", "TriggeredBy =="]);
    assert_eq!(code, 1);
    assert!(err.contains("Error querying evaluations"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["eval", "list", "extra"]);
    assert_eq!(code, 1);
    assert!(err.contains("This command takes no arguments"), "{err}");
}
