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
