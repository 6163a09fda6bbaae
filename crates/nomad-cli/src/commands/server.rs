//! `nomad server members` (also `nomad server-members`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::commands::{client_flags, parse_no_args, with_general};
use crate::format::{format_list, json_pretty};
use crate::meta::Meta;

const HELP: &str = "Usage: nomad server <subcommand> [options] [args]

  Inspect the servers of the cluster.

Subcommands:
    members    Display a list of known servers and their status
";

/// One entry of `/v1/agent/members`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentMember {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: String,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

/// `/v1/agent/members`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ServerMembers {
    members: Option<Vec<AgentMember>>,
}

/// Dispatches `nomad server ...`.
pub fn run(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("members") => members(rest),
        Some("-h" | "-help" | "--help") => {
            outln!("{}", HELP.trim_end());
            0
        }
        _ => {
            eprintln!("{}", HELP.trim_end());
            1
        }
    }
}

/// `host:port` as Go's `net.JoinHostPort` writes it (IPv6 in brackets).
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn tag<'a>(m: &'a AgentMember, k: &str) -> &'a str {
    m.tags.get(k).map(String::as_str).unwrap_or("")
}

/// Whether `m` is the leader of its region (its `Addr` plus RPC `port` tag is the address
/// `/v1/status/leader` answered for the region).
pub fn is_leader(m: &AgentMember, leaders: &BTreeMap<String, String>) -> bool {
    leaders
        .get(tag(m, "region"))
        .is_some_and(|l| *l == join_host_port(&m.addr, tag(m, "port")))
}

/// The default table.
pub fn standard_output(mem: &[AgentMember], leaders: &BTreeMap<String, String>) -> String {
    let mut rows =
        vec!["Name|Address|Port|Status|Leader|Raft Version|Build|Datacenter|Region".to_string()];
    for m in mem {
        rows.push(format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            m.name,
            m.addr,
            m.port,
            m.status,
            is_leader(m, leaders),
            tag(m, "raft_vsn"),
            tag(m, "build"),
            tag(m, "dc"),
            tag(m, "region")
        ));
    }
    format_list(&rows)
}

/// The `-verbose` / `-detailed` table (tags as `k=v`, sorted).
pub fn verbose_output(mem: &[AgentMember], leaders: &BTreeMap<String, String>) -> String {
    let mut rows = vec![
        "Name|Address|Port|Status|Leader|Protocol|Raft Version|Build|Datacenter|Region|Tags"
            .to_string(),
    ];
    for m in mem {
        let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            m.name,
            m.addr,
            m.port,
            m.status,
            is_leader(m, leaders),
            m.protocol_cur,
            tag(m, "raft_vsn"),
            tag(m, "build"),
            tag(m, "dc"),
            tag(m, "region"),
            tags.join(",")
        ));
    }
    format_list(&rows)
}

/// `nomad server members [-verbose|-detailed] [-json]`.
pub fn members(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad server members [options]

  Lists the servers of the cluster and their status. Only Nomad servers can
  answer. With ACLs, needs a token with node:read.",
        "Server Members Options:

  -verbose
    Also show the protocol version and every tag of each member.
    -detailed is the older name of this option.

  -json
    Print the members as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("detailed", false)
        .bool("verbose", false)
        .bool("json", false)
        .string("t", "");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "server members") {
        return code;
    }
    let verbose = fs.get_bool("verbose") || fs.get_bool("detailed");
    let client = Meta::from_flags(&fs).client();
    let resp: ServerMembers = match client.get("/v1/agent/members", &[]) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("Error querying servers: {e}");
            return 1;
        }
    };
    let Some(mut mem) = resp.members else {
        eprintln!("Agent doesn't know about server members");
        return 0;
    };
    mem.sort_by(|a, b| a.name.cmp(&b.name));

    // The leader of every region the members are in (left members excepted).
    let mut leaders = BTreeMap::new();
    let mut errors = Vec::new();
    let regions: std::collections::BTreeSet<String> = mem
        .iter()
        .filter(|m| m.status != "left")
        .map(|m| tag(m, "region").to_string())
        .collect();
    for region in regions {
        match client.get::<String>("/v1/status/leader", &[("region", region.clone())]) {
            Ok(l) => {
                leaders.insert(region, l);
            }
            Err(e) => errors.push(format!("Region {region:?}: {e}")),
        }
    }

    if fs.get_bool("json") {
        for m in &mut mem {
            let leader = is_leader(m, &leaders);
            m.tags.insert("Leader".into(), leader.to_string());
        }
        outln!("{}", json_pretty(&mem));
        return 0;
    }
    if verbose {
        outln!("{}", verbose_output(&mem, &leaders));
    } else {
        outln!("{}", standard_output(&mem, &leaders));
    }
    if !errors.is_empty() {
        outln!();
        let detail = if errors.len() == 1 {
            errors[0].clone()
        } else {
            let items: Vec<String> = errors.iter().map(|e| format!("\t* {e}")).collect();
            format!(
                "{} errors occurred:\n{}\n\n",
                errors.len(),
                items.join("\n")
            )
        };
        eprintln!("Error determining leaders: {detail}");
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, addr: &str, port: &str) -> AgentMember {
        let tags = [
            ("region", "global"),
            ("dc", "dc1"),
            ("build", "1.9.0"),
            ("raft_vsn", "3"),
            ("port", port),
            ("role", "nomad"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        AgentMember {
            name: name.into(),
            addr: addr.into(),
            port: 4648,
            tags,
            status: "alive".into(),
            protocol_cur: 2,
            ..Default::default()
        }
    }

    #[test]
    fn standard_table_marks_the_leader() {
        let mem = vec![
            member("a.global", "10.0.0.1", "4647"),
            member("b.global", "10.0.0.2", "4647"),
        ];
        let leaders = BTreeMap::from([("global".to_string(), "10.0.0.2:4647".to_string())]);
        assert_eq!(
            standard_output(&mem, &leaders),
            "Name      Address   Port  Status  Leader  Raft Version  Build  Datacenter  Region\n\
             a.global  10.0.0.1  4648  alive   false   3             1.9.0  dc1         global\n\
             b.global  10.0.0.2  4648  alive   true    3             1.9.0  dc1         global"
        );
        assert!(!is_leader(&mem[0], &BTreeMap::new()));
    }

    #[test]
    fn verbose_table_lists_sorted_tags() {
        let mem = vec![member("a.global", "::1", "4647")];
        let leaders = BTreeMap::from([("global".to_string(), "[::1]:4647".to_string())]);
        let out = verbose_output(&mem, &leaders);
        let mut lines = out.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            [
                "Name",
                "Address",
                "Port",
                "Status",
                "Leader",
                "Protocol",
                "Raft",
                "Version",
                "Build",
                "Datacenter",
                "Region",
                "Tags"
            ]
        );
        let row = lines.next().unwrap();
        assert!(row.contains(" true "), "{row}");
        assert!(
            row.ends_with("build=1.9.0,dc=dc1,port=4647,raft_vsn=3,region=global,role=nomad"),
            "{row}"
        );
    }

    #[test]
    fn members_json_decodes() {
        let v: ServerMembers = serde_json::from_str(
            r#"{"ServerName":"s","Members":[{"Name":"s.global","Addr":"127.0.0.1","Port":4648,
                "Tags":{"port":"4647"},"Status":"alive","ProtocolCur":2}]}"#,
        )
        .unwrap();
        let m = v.members.unwrap();
        assert_eq!(m[0].name, "s.global");
        assert_eq!(tag(&m[0], "port"), "4647");
        let none: ServerMembers = serde_json::from_str(r#"{"Members":null}"#).unwrap();
        assert!(none.members.is_none());
    }
}
