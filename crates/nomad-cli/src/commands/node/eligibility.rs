//! `nomad node eligibility`: marks a node eligible or ineligible for new placements.

use nomad_structs::{NodeEligibilityUpdateRequest, NodeEligibilityUpdateResponse};

use super::status::find_node;
use crate::api::path_escape;
use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::SHORT_ID;
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad node eligibility [options] <node>

  Toggles a node's scheduling eligibility. An ineligible node gets no new
  allocations; what runs there keeps running.",
        "Node Eligibility Options:

  -enable
    Mark the node eligible for scheduling.

  -disable
    Mark the node ineligible for scheduling.

  -self
    Set the eligibility of the node of the agent this command talks to.",
    )
}

/// Runs `nomad node eligibility`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("enable", false)
        .bool("disable", false)
        .bool("self", false)
        .string("description", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (enable, disable) = (fs.get_bool("enable"), fs.get_bool("disable"));
    if enable == disable {
        eprintln!("Either the '-enable' or '-disable' flag must be set");
        eprintln!("{}", error_hint("node eligibility"));
        return 1;
    }
    if !disable && !fs.get_str("description").is_empty() {
        eprintln!("Description can only be provided when marking a node as ineligible.");
        return 1;
    }
    let own = fs.get_bool("self");
    if (own && !rest.is_empty()) || (!own && rest.len() != 1) {
        eprintln!("Node ID must be specified if -self isn't being used");
        eprintln!("{}", error_hint("node eligibility"));
        return 1;
    }
    let client = Meta::from_flags(&fs).client();
    let wanted = (!own).then(|| rest[0].as_str());
    let node = match find_node(
        &client,
        wanted,
        SHORT_ID,
        "Error updating scheduling eligibility",
    ) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let eligibility = if enable { "eligible" } else { "ineligible" };
    let req = NodeEligibilityUpdateRequest {
        node_id: node.id.clone(),
        eligibility: eligibility.into(),
    };
    let path = format!("/v1/node/{}/eligibility", path_escape(&node.id));
    if let Err(e) = client.put::<_, NodeEligibilityUpdateResponse>(&path, &[], &req) {
        eprintln!("Error updating scheduling eligibility: {e}");
        return 1;
    }
    outln!(
        "Node {:?} scheduling eligibility set: {eligibility} for scheduling",
        node.id
    );
    0
}
