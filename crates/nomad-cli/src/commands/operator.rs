//! `nomad operator raft <list-peers|remove-peer>` and
//! `nomad operator snapshot <save|restore|inspect>`.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::commands::{
    client_flags, error_hint, parse_flags, parse_no_args, parse_one_arg, with_general,
};
use crate::format::format_list;
use crate::meta::Meta;

const HELP: &str = "Usage: nomad operator <subcommand> [options] [args]

  Low-level cluster operations for operators.

Subcommands:
    api         Query Nomad's HTTP API
    raft        Inspect and change the Raft peer set
    snapshot    Save, restore and inspect snapshots of the server state
";

const RAFT_HELP: &str = "Usage: nomad operator raft <subcommand> [options]

  Inspect and change the Raft configuration of the servers.

Subcommands:
    list-peers     Display the current Raft peer configuration
    remove-peer    Remove a Nomad server from the Raft configuration
";

const SNAPSHOT_HELP: &str = "Usage: nomad operator snapshot <subcommand> [options] [args]

  Save and restore point-in-time snapshots of the state of the Nomad servers
  (jobs, nodes, allocations, evaluations, namespaces, ACLs).

Subcommands:
    inspect    Display information about a snapshot file
    restore    Restore the servers' state from a snapshot file
    save       Save a snapshot of the servers' state to a file
";

/// Largest snapshot `save` downloads.
const MAX_SNAPSHOT: u64 = 8 << 30;

fn print_help(help: &str, ok: bool) -> i32 {
    if ok {
        outln!("{}", help.trim_end());
        0
    } else {
        eprintln!("{}", help.trim_end());
        1
    }
}

/// Dispatches `nomad operator ...`.
pub fn run(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("api") => super::operator_api::run(rest),
        Some("raft") => raft(rest),
        Some("snapshot") => snapshot(rest),
        Some("-h" | "-help" | "--help") => print_help(HELP, true),
        _ => print_help(HELP, false),
    }
}

fn raft(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("list-peers") => list_peers(rest),
        Some("remove-peer") => remove_peer(rest),
        Some("-h" | "-help" | "--help") => print_help(RAFT_HELP, true),
        _ => print_help(RAFT_HELP, false),
    }
}

fn snapshot(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("save") => snapshot_save(rest),
        Some("restore") => snapshot_restore(rest),
        Some("inspect") => snapshot_inspect(rest),
        Some("-h" | "-help" | "--help") => print_help(SNAPSHOT_HELP, true),
        _ => print_help(SNAPSHOT_HELP, false),
    }
}

/// One server of `/v1/operator/raft/configuration`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RaftServer {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    pub raft_protocol: String,
}

/// `/v1/operator/raft/configuration`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RaftConfiguration {
    pub servers: Vec<RaftServer>,
    pub index: u64,
}

/// The `list-peers` table, sorted by node name.
pub fn peers_table(cfg: &RaftConfiguration) -> String {
    let mut servers = cfg.servers.clone();
    servers.sort_by(|a, b| a.node.cmp(&b.node));
    let mut rows = vec!["Node|ID|Address|State|Voter|RaftProtocol".to_string()];
    for s in &servers {
        let state = if s.leader { "leader" } else { "follower" };
        rows.push(format!(
            "{}|{}|{}|{}|{}|{}",
            s.node, s.id, s.address, state, s.voter, s.raft_protocol
        ));
    }
    format_list(&rows)
}

fn list_peers(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad operator raft list-peers [options]

  Displays the current Raft peer configuration. With ACLs, needs a management
  token.",
        "List Peers Options:

  -stale=[true|false]
    Defaults to false: the leader answers. When the cluster has no leader,
    -stale=true reads the configuration from any server.",
    );
    let mut fs = client_flags();
    fs.bool("stale", false);
    if let Err(code) = parse_no_args(&mut fs, args, &help, "operator raft list-peers") {
        return code;
    }
    let client = Meta::from_flags(&fs).client();
    let mut query = Vec::new();
    if fs.get_bool("stale") {
        query.push(("stale", String::new()));
    }
    let cfg: RaftConfiguration = match client.get("/v1/operator/raft/configuration", &query) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Failed to retrieve raft configuration: {e}");
            return 1;
        }
    };
    outln!("{}", peers_table(&cfg));
    0
}

fn remove_peer(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad operator raft remove-peer [options]

  Removes the Nomad server with the given -peer-id or -peer-address from the
  Raft configuration: for a server that is gone for good but still counts
  towards the quorum. With ACLs, needs a management token.",
        "Remove Peer Options:

  -peer-address=\"IP:port\"
    Remove the server with this Raft (RPC) address.

  -peer-id=\"id\"
    Remove the server with this Raft ID (see 'nomad operator raft list-peers').",
    );
    let mut fs = client_flags();
    fs.string("peer-address", "").string("peer-id", "");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "operator raft remove-peer") {
        return code;
    }
    let address = fs.get_str("peer-address");
    let id = fs.get_str("peer-id");
    let (key, value, what) = match (address.is_empty(), id.is_empty()) {
        (true, true) => {
            eprintln!("Missing peer id required");
            return 1;
        }
        (false, false) => {
            eprintln!("Only one of -peer-address or -peer-id may be given");
            return 1;
        }
        (false, true) => ("address", address, "address"),
        (true, false) => ("id", id, "id"),
    };
    let client = Meta::from_flags(&fs).client();
    let query = [(key, value.clone())];
    match client.send_no_body::<()>("DELETE", "/v1/operator/raft/peer", &query, None) {
        Ok(()) => {
            outln!("Removed peer with {what} {value:?}");
            0
        }
        Err(e) => {
            eprintln!("Error removing peer: {e}");
            1
        }
    }
}

/// Nomad's default snapshot file name, `nomad-state-<YYYYMMDD>-<unix>.snap`.
fn default_snapshot_name() -> String {
    let now = chrono::Local::now();
    format!(
        "nomad-state-{}-{}.snap",
        now.format("%Y%m%-d"),
        now.timestamp()
    )
}

/// Checks a body against a `Digest: sha-256=<base64>` header, as the Go API client does.
pub fn verify_digest(body: &[u8], digest: Option<&str>) -> Result<(), String> {
    let Some(digest) = digest.filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let Some((algo, want)) = digest.split_once('=') else {
        return Err(format!("unsupported digest format: {digest:?}"));
    };
    if !algo.eq_ignore_ascii_case("sha-256") {
        return Err(format!("unsupported digest algorithm {algo:?}"));
    }
    use base64::Engine as _;
    let got = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
    if got != want {
        return Err(format!("checksum mismatch: expected {want} got {got}"));
    }
    Ok(())
}

fn snapshot_save(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad operator snapshot save [options] [<file>]

  Saves an atomic, point-in-time snapshot of the servers' state to <file>
  (default: nomad-state-<date>-<unix time>.snap). With ACLs, needs a
  management token.

    $ nomad operator snapshot save backup.snap",
        "Snapshot Save Options:

  -stale=[true|false]
    Defaults to false: the leader takes the snapshot. Accepted for
    compatibility; servers always take it after a consistent read.",
    );
    let mut fs = client_flags();
    fs.bool("stale", false);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.len() > 1 {
        eprintln!("This command takes either no arguments or one: <filename>");
        eprintln!("{}", error_hint("operator snapshot save"));
        return 1;
    }
    let filename = rest.first().cloned().unwrap_or_else(default_snapshot_name);
    match std::fs::symlink_metadata(&filename) {
        Ok(_) => {
            eprintln!("Destination file already exists: {filename:?}");
            eprintln!("{}", error_hint("operator snapshot save"));
            return 1;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            eprintln!("Unexpected failure checking {filename:?}: {e}");
            return 1;
        }
    }
    let client = Meta::from_flags(&fs).client();
    let mut query = Vec::new();
    if fs.get_bool("stale") {
        query.push(("stale", String::new()));
    }
    let resp = match client.get_raw("/v1/operator/snapshot", &query, MAX_SNAPSHOT) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Failed to get snapshot file: {e}");
            return 1;
        }
    };
    if let Err(e) = verify_digest(&resp.body, resp.digest.as_deref()) {
        eprintln!("Failed to download snapshot file: {e}");
        return 1;
    }
    let tmp = format!("{filename}.tmp");
    if let Err(e) = std::fs::write(&tmp, &resp.body) {
        eprintln!("Failed to create file: {e}");
        let _ = std::fs::remove_file(&tmp);
        return 1;
    }
    if let Err(e) = std::fs::rename(&tmp, &filename) {
        eprintln!("Failed to finalize snapshot file: {e}");
        let _ = std::fs::remove_file(&tmp);
        return 1;
    }
    outln!("State file written to {filename}");
    0
}

fn snapshot_restore(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad operator snapshot restore [options] <file>

  Replaces the state of every server with the one in a snapshot file written
  by 'nomad operator snapshot save'. Meant for disaster recovery into a fresh
  cluster. With ACLs, needs a management token.

    $ nomad operator snapshot restore backup.snap",
        "",
    );
    let mut fs = client_flags();
    let arg = match parse_one_arg(
        &mut fs,
        args,
        &help,
        "operator snapshot restore",
        "<filename>",
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let bytes = match std::fs::read(&arg) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("Error opening snapshot file: {:?}", e.to_string());
            return 1;
        }
    };
    let client = Meta::from_flags(&fs).client();
    match client.put_raw("/v1/operator/snapshot", &[], &bytes) {
        Ok(()) => {
            outln!("Snapshot Restored");
            0
        }
        Err(e) => {
            eprintln!("Failed to get restore snapshot: {e}");
            1
        }
    }
}

/// The `inspect` output: a `key = value` block (ID, Size, Index, Term, Version) and a table
/// of what the snapshot holds.
pub fn inspect_output(info: &nomad_server::SnapshotInfo) -> String {
    let kv = [
        format!("ID|{}-{}", info.term, info.index),
        format!("Size|{}", info.size),
        format!("Index|{}", info.index),
        format!("Term|{}", info.term),
        "Version|1".to_string(),
    ];
    let counts = [
        ("ACLPolicies", info.acl_policies),
        ("ACLTokens", info.acl_tokens),
        ("Allocations", info.allocs),
        ("Evaluations", info.evals),
        ("Jobs", info.jobs),
        ("Namespaces", info.namespaces),
        ("Nodes", info.nodes),
    ];
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let mut rows = vec!["Type|Count".to_string()];
    rows.extend(counts.iter().map(|(t, n)| format!("{t}|{n}")));
    rows.push(format!("Total|{total}"));
    format!(
        "{}\n\n{}",
        crate::format::format_kv(&kv),
        format_list(&rows)
    )
}

fn snapshot_inspect(args: &[String]) -> i32 {
    let help = "Usage: nomad operator snapshot inspect <file>

  Displays information about a snapshot file on disk (no agent is contacted).

    $ nomad operator snapshot inspect backup.snap
";
    if matches!(
        args.first().map(String::as_str),
        Some("-h" | "-help" | "--help")
    ) {
        return print_help(help, true);
    }
    if args.len() != 1 {
        eprintln!("This command takes one argument: <filename>");
        eprintln!("{}", error_hint("operator snapshot inspect"));
        return 1;
    }
    let path = Path::new(&args[0]);
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("Error opening snapshot file: {e}");
            return 1;
        }
    };
    match nomad_server::Server::snapshot_inspect(&bytes) {
        Ok(info) => {
            outln!("{}", inspect_output(&info));
            0
        }
        Err(e) => {
            eprintln!("Error verifying snapshot: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_table_sorts_by_node_and_names_the_leader() {
        let cfg: RaftConfiguration = serde_json::from_str(
            r#"{"Servers":[
                {"ID":"2","Node":"s2.global","Address":"10.0.0.2:4647","Leader":true,"Voter":true,"RaftProtocol":"3"},
                {"ID":"1","Node":"s1.global","Address":"10.0.0.1:4647","Leader":false,"Voter":false,"RaftProtocol":"3"}
            ],"Index":7}"#,
        )
        .unwrap();
        assert_eq!(
            peers_table(&cfg),
            "Node       ID  Address        State     Voter  RaftProtocol\n\
             s1.global  1   10.0.0.1:4647  follower  false  3\n\
             s2.global  2   10.0.0.2:4647  leader    true   3"
        );
    }

    #[test]
    fn digest_check() {
        let body = b"";
        let ok = "sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert!(verify_digest(body, Some(ok)).is_ok());
        assert!(verify_digest(body, None).is_ok());
        assert!(verify_digest(b"x", Some(ok))
            .unwrap_err()
            .starts_with("checksum mismatch"));
        assert!(verify_digest(body, Some("nodigest")).is_err());
        assert!(verify_digest(body, Some("md5=abc")).is_err());
    }

    #[test]
    fn inspect_of_a_real_snapshot() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let bytes = rt.block_on(async {
            let s = nomad_server::Server::new(Default::default());
            s.snapshot_save().await.unwrap()
        });
        let info = nomad_server::Server::snapshot_inspect(&bytes).unwrap();
        let out = inspect_output(&info);
        let size = format!("Size    = {}", bytes.len());
        assert!(
            out.starts_with(&format!("ID      = 0-{}", info.index)),
            "{out}"
        );
        assert!(out.contains(&size), "{out}");
        assert!(out.contains("Version = 1"), "{out}");
        assert!(out.contains("\n\nType         Count\n"), "{out}");
        assert!(out.contains("Namespaces   1\n"), "{out}");
        assert!(out.ends_with("Total        1"), "{out}");
        assert!(nomad_server::Server::snapshot_inspect(b"junk").is_err());
    }

    #[test]
    fn default_name_shape() {
        let n = default_snapshot_name();
        assert!(n.starts_with("nomad-state-") && n.ends_with(".snap"), "{n}");
    }
}
