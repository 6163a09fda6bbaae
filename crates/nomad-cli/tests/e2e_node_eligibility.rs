//! End to end: `nomad node eligibility` against the real `nomad agent -dev`. An ineligible node
//! takes no new allocations (the job waits, blocked); marked eligible again, the blocked job is
//! placed. What ran there keeps running throughout.

use std::path::Path;
use std::time::Duration;

use nomad_testkit::cluster::{allocs_with_status, raw_exec_job};
use nomad_testkit::{assert_eventually, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

fn eligibility(agent: &DevAgent) -> String {
    agent
        .get_json("/v1/nodes")
        .ok()
        .and_then(|v| v[0]["SchedulingEligibility"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn an_ineligible_node_takes_no_new_allocs_until_eligible_again() {
    let agent = DevAgent::start(bin(), "");
    let root = tempfile::tempdir().unwrap();
    let before = raw_exec_job(root.path(), "before", "service", "/bin/sleep", &["3600"]);
    let (code, out, err) = agent.cli(bin(), &["job", "run", "-detach", before.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eventually("the first job running", Duration::from_secs(30), || {
        allocs_with_status(&agent, "before", "running").len() == 1
    });

    // Usage errors, as Nomad words them.
    let (code, _, err) = agent.cli(bin(), &["node", "eligibility", "-self"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Either the '-enable' or '-disable' flag must be set"),
        "{err}"
    );
    let (code, _, err) = agent.cli(bin(), &["node", "eligibility", "-disable"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Node ID must be specified if -self isn't being used"),
        "{err}"
    );
    let (code, _, err) = agent.cli(bin(), &["node", "eligibility", "-disable", "ffffffff"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("No node(s) with prefix \"ffffffff\" found"),
        "{err}"
    );

    let (code, out, err) = agent.cli(bin(), &["node", "eligibility", "-disable", "-self"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("scheduling eligibility set: ineligible for scheduling"),
        "{out}"
    );
    assert_eq!(eligibility(&agent), "ineligible");
    let (code, out, _) = agent.cli(bin(), &["node", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("ineligible"), "{out}");

    // A new job finds no node; the running one is left alone.
    let after = raw_exec_job(root.path(), "after", "batch", "/bin/true", &[]);
    let (code, out, err) = agent.cli(bin(), &["job", "run", "-detach", after.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eventually(
        "a blocked eval for the new job",
        Duration::from_secs(30),
        || {
            agent
                .get_json("/v1/job/after/evaluations")
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .any(|e| e["Status"] == "blocked")
        },
    );
    let placed = agent
        .get_json("/v1/job/after/allocations")
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);
    assert_eq!(placed, 0, "an alloc was placed on an ineligible node");
    assert_eq!(allocs_with_status(&agent, "before", "running").len(), 1);

    // Eligible again: the blocked job is placed and runs to completion.
    let node_id = agent.get_json("/v1/nodes").unwrap()[0]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, out, err) = agent.cli(bin(), &["node", "eligibility", "-enable", &node_id[..8]]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("Node \"{node_id}\" scheduling eligibility set: eligible for scheduling")
    );
    assert_eventually(
        "the blocked job placed and complete",
        Duration::from_secs(30),
        || allocs_with_status(&agent, "after", "complete").len() == 1,
    );
    assert_eq!(allocs_with_status(&agent, "before", "running").len(), 1);
}
