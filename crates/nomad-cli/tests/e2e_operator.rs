//! End to end on one `agent -dev`: `server members`, `operator raft list-peers`, and a
//! snapshot save → inspect → restore round trip through the real binary.

use std::path::Path;

use nomad_testkit::DevAgent;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

#[test]
fn members_peers_and_snapshot_round_trip() {
    let agent = DevAgent::start(bin(), "");

    let (code, out, err) = agent.cli(bin(), &["server", "members"]);
    assert_eq!(code, 0, "server members:\n{out}\n{err}\n{}", agent.log());
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Name"), "{out}");
    assert!(lines[0].contains("Raft Version"), "{out}");
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].contains(" alive ") && lines[1].contains(" true "),
        "{out}"
    );

    let (code, out, err) = agent.cli(bin(), &["operator", "raft", "list-peers"]);
    assert_eq!(code, 0, "list-peers:\n{out}\n{err}");
    assert!(
        out.starts_with("Node") && out.contains("RaftProtocol"),
        "{out}"
    );
    assert!(out.contains(" leader "), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.snap");
    let file_s = file.to_str().expect("utf-8 path");
    let (code, out, err) = agent.cli(bin(), &["operator", "snapshot", "save", file_s]);
    assert_eq!(code, 0, "snapshot save:\n{out}\n{err}");
    assert_eq!(out.trim_end(), format!("State file written to {file_s}"));
    // Refuses to overwrite.
    let (code, _, err) = agent.cli(bin(), &["operator", "snapshot", "save", file_s]);
    assert_eq!(code, 1);
    assert!(err.contains("Destination file already exists"), "{err}");

    let (code, out, err) = agent.cli(bin(), &["operator", "snapshot", "inspect", file_s]);
    assert_eq!(code, 0, "snapshot inspect:\n{out}\n{err}");
    assert!(out.contains("Index") && out.contains("Term"), "{out}");
    assert!(out.contains("Nodes"), "{out}");

    let (code, out, err) = agent.cli(bin(), &["operator", "snapshot", "restore", file_s]);
    assert_eq!(code, 0, "snapshot restore:\n{out}\n{err}\n{}", agent.log());
    assert_eq!(out.trim_end(), "Snapshot Restored");

    let junk = dir.path().join("junk.snap");
    std::fs::write(&junk, b"not a snapshot").expect("write");
    let junk_s = junk.to_str().expect("utf-8 path");
    let (code, _, err) = agent.cli(bin(), &["operator", "snapshot", "inspect", junk_s]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error verifying snapshot"), "{err}");
    let (code, _, err) = agent.cli(bin(), &["operator", "snapshot", "restore", junk_s]);
    assert_eq!(code, 1);
    assert!(err.contains("400"), "{err}");

    let (code, _, err) = agent.cli(bin(), &["operator", "raft", "remove-peer"]);
    assert_eq!(code, 1);
    assert!(err.contains("Missing peer id required"), "{err}");
}

/// `nomad operator api`: GET by default, the body from stdin as POST, -X, -H, -filter (the
/// agent's `?filter=` expressions), -dryrun, and the
/// answer's body printed whatever its status (as Nomad's command does).
#[test]
fn operator_api_is_curl_with_the_cli_settings() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let agent = DevAgent::start(bin(), "");
    let api = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(bin())
            .arg("operator")
            .arg("api")
            .args(args)
            .env("NOMAD_ADDR", &agent.address)
            .env_remove("NOMAD_TOKEN")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        if let Some(body) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(body.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().expect("wait");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let job = r#"{"Job": {"ID": "viaapi", "Type": "batch", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec",
        "Config": {"command": "/bin/true"}}]}]}}"#;
    let (code, out, err) = api(&["/v1/jobs"], Some(job));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"EvalID\""), "{out}");
    let (code, out, _) = api(&["/v1/jobs"], None);
    assert_eq!(code, 0);
    let jobs: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(jobs.as_array().unwrap().iter().any(|j| j["ID"] == "viaapi"));
    let (code, out, _) = api(&["-dryrun", "-filter", "ID == \"nope\"", "/v1/jobs"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("/v1/jobs?filter=ID+%3D%3D+%22nope%22"),
        "{out}"
    );
    let (code, out, _) = api(&["-filter", "ID == \"nope\"", "/v1/jobs"], None);
    assert_eq!((code, out.trim()), (0, "[]"));
    let (code, out, _) = api(
        &["-filter", "ID == \"viaapi\" and Type == batch", "/v1/jobs"],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.contains("\"viaapi\""), "{out}");
    // A page holds `per_page` matching jobs: the filter is applied before the page is cut.
    let (code, _, err) = api(&["/v1/jobs"], Some(&job.replace("viaapi", "viaapi2")));
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = api(
        &["-filter", "ID != \"viaapi\"", "/v1/jobs?per_page=1"],
        None,
    );
    assert_eq!(code, 0);
    let page: serde_json::Value = serde_json::from_str(&out).expect("json");
    let ids: Vec<&str> = page
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["ID"].as_str())
        .collect();
    assert_eq!(ids, ["viaapi2"], "{out}");
    // The CLI's own -filter (node status) goes through the same expressions.
    let (code, out, err) = agent.cli(bin(), &["node", "status", "-filter", "Status == \"ready\""]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ready"), "{out}");
    let (code, out, _) = agent.cli(bin(), &["node", "status", "-filter", "Status == \"down\""]);
    assert_eq!(code, 0);
    assert!(!out.contains("ready"), "{out}");
    let (code, out, _) = api(&["-filter", "ID ==", "/v1/jobs"], None);
    assert_eq!(code, 0);
    assert!(out.contains("failed to read filter expression"), "{out}");
    // Any status: the body is printed, the exit code is 0.
    let (code, out, _) = api(&["/v1/job/nosuch"], None);
    assert_eq!((code, out.trim()), (0, "job not found"));
    let (code, _, err) = api(
        &["-verbose", "-X", "DELETE", "/v1/job/viaapi?purge=true"],
        None,
    );
    assert_eq!(code, 0);
    assert!(
        err.contains("> DELETE ") && err.contains("< HTTP/1.1 200"),
        "{err}"
    );
    let (code, _, err) = api(&["-H", "nocolon", "/v1/jobs"], None);
    assert_eq!(code, 1);
    assert!(err.contains("Key: Value"), "{err}");
    let (code, out, _) = api(&["-dryrun", "-H", "X-A: b", "/v1/jobs"], None);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("curl") && out.contains("-X GET") && out.contains("-H 'X-A: b'"),
        "{out}"
    );
    assert!(
        out.trim_end()
            .ends_with(&format!("{}/v1/jobs", agent.address)),
        "{out}"
    );
    let (code, _, err) = api(&[], None);
    assert_eq!(code, 1);
    assert!(err.contains("A path or URL is required"), "{err}");
}
