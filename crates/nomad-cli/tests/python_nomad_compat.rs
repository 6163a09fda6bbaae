//! python-nomad (from PyPI) drives the agent unchanged: register a job, list jobs, read its
//! allocations, drain the node and open it again. `.ci/run` installs python-nomad; without it
//! this test skips loudly.

use nomad_testkit::DevAgent;
use std::path::Path;
use std::process::Command;

const SCRIPT: &str = r#"
import sys, time, nomad
host, port = sys.argv[1], int(sys.argv[2])
n = nomad.Nomad(host=host, port=port, timeout=10)
job = {"Job": {
    "ID": "pyjob", "Name": "pyjob", "Type": "batch", "Datacenters": ["dc1"],
    "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{
        "Name": "t", "Driver": "raw_exec",
        "Config": {"command": "/bin/sh", "args": ["-c", "echo from-python"]},
        "Resources": {"CPU": 50, "MemoryMB": 32}}]}]}}
resp = n.job.register_job("pyjob", job)
assert resp["EvalID"], resp
ids = [j["ID"] for j in n.jobs.get_jobs()]
assert "pyjob" in ids, ids
info = n.job.get_job("pyjob")
assert info["Type"] == "batch", info
deadline = time.time() + 20
while time.time() < deadline:
    allocs = n.job.get_allocations("pyjob")
    if allocs and allocs[0]["ClientStatus"] == "complete":
        break
    time.sleep(0.1)
else:
    raise SystemExit("alloc did not complete: %r" % (allocs,))
alloc = n.allocation.get_allocation(allocs[0]["ID"])
assert alloc["JobID"] == "pyjob", alloc
nodes = n.nodes.get_nodes()
assert nodes and nodes[0]["Status"] == "ready", nodes
node_id = nodes[0]["ID"]
r = n.node.drain_node_with_spec(node_id, {"Deadline": 60000000000, "IgnoreSystemJobs": False})
assert r["NodeModifyIndex"] > 0, r
# Only a finished alloc is left there: the drain completes on its own.
deadline = time.time() + 20
while time.time() < deadline:
    info = n.node.get_node(node_id)
    if info["DrainStrategy"] is None and (info["LastDrain"] or {}).get("Status") == "complete":
        break
    time.sleep(0.1)
else:
    raise SystemExit("drain did not complete: %r" % (info,))
assert info["SchedulingEligibility"] == "ineligible", info
n.node.drain_node_with_spec(node_id, None, mark_eligible=True)
assert n.node.get_node(node_id)["SchedulingEligibility"] == "eligible"
print("python-nomad OK")
"#;

fn python_nomad_available() -> bool {
    Command::new("python3")
        .args(["-c", "import nomad"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn python_nomad_registers_and_reads() {
    if !python_nomad_available() {
        eprintln!("SKIP python_nomad_registers_and_reads: python3 with python-nomad is not installed (pip install python-nomad)");
        return;
    }
    let agent = DevAgent::start(Path::new(env!("CARGO_BIN_EXE_nomad")), "");
    let port = agent.address.rsplit(':').next().unwrap().to_string();
    let out = Command::new("python3")
        .args(["-c", SCRIPT, "127.0.0.1", &port])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python-nomad failed:\n{stdout}\n{stderr}\nagent:\n{}",
        agent.log()
    );
    assert!(stdout.contains("python-nomad OK"));
}
