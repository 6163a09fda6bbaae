//! `nomad alloc stop`: stop an allocation (the scheduler replaces it) and watch the eval.

use serde::Deserialize;

use crate::api::path_escape;
use crate::commands::alloc::{client_for, single_alloc};
use crate::commands::{client_flags, parse_one_arg, with_general};
use crate::format::{FULL_ID, SHORT_ID};
use crate::meta::Meta;
use crate::monitor::Monitor;

fn help() -> String {
    with_general(
        "Usage: nomad alloc stop [options] <allocation>

  Stops an allocation; the scheduler then places a replacement. The evaluation
  that does so is watched until it finishes (leaving early with Ctrl-C is safe).

  With ACLs on, the token needs 'alloc-lifecycle', 'read-job' and 'list-jobs'
  in the allocation's namespace.",
        "Stop Options:

  -detach
    Print the evaluation ID and return instead of watching it.

  -no-shutdown-delay
    Skip the group and task shutdown_delay: the tasks are stopped right after
    their services are deregistered.

  -verbose
    Print full IDs.",
    )
}

/// `PUT /v1/allocation/<id>/stop` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AllocStopResponse {
    /// The eval that replaces the allocation.
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// Raft index.
    #[serde(rename = "Index")]
    pub index: u64,
}

/// Query parameters of the stop request.
pub fn stop_query(no_shutdown_delay: bool) -> Vec<(&'static str, String)> {
    if no_shutdown_delay {
        vec![("no_shutdown_delay", "true".to_string())]
    } else {
        Vec::new()
    }
}

/// Runs `nomad alloc stop`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("detach", false)
        .bool("verbose", false)
        .bool("no-shutdown-delay", false);
    let arg = match parse_one_arg(&mut fs, args, &help, "alloc stop", "<alloc-id>") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let verbose = fs.get_bool("verbose");
    let length = if verbose { FULL_ID } else { SHORT_ID };
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let alloc = match single_alloc(&client, &arg, verbose, length) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = client_for(&client, &alloc);
    let resp: AllocStopResponse = match client.put(
        &format!("/v1/allocation/{}/stop", path_escape(&alloc.id)),
        &stop_query(fs.get_bool("no-shutdown-delay")),
        &serde_json::json!({}),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error stopping allocation: {e}");
            return 1;
        }
    };
    if fs.get_bool("detach") {
        outln!("{}", resp.eval_id);
        return 0;
    }
    Monitor::new(&client, length).monitor(&resp.eval_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_response() {
        assert!(stop_query(false).is_empty());
        assert_eq!(
            stop_query(true),
            vec![("no_shutdown_delay", "true".to_string())]
        );
        let r: AllocStopResponse = serde_json::from_str(r#"{"EvalID":"e1","Index":7}"#).unwrap();
        assert_eq!((r.eval_id.as_str(), r.index), ("e1", 7));
    }
}
