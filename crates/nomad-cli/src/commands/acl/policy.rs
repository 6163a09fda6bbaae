//! `nomad acl policy <apply|list|info|delete>`.

use std::io::Read;

use nomad_acl::{AclPolicy, AclPolicyListStub};

use crate::api::path_escape;
use crate::commands::{
    client_flags, error_hint, parse_flags, parse_no_args, parse_one_arg, with_general,
};
use crate::format::{format_list, json_pretty};
use crate::meta::Meta;

const HELP: &str = "Usage: nomad acl policy <subcommand> [options] [args]

  Write, list, inspect and delete ACL policies (HCL or JSON rules).

Subcommands:
    apply     Create or update a policy from a file
    delete    Delete a policy
    info      Show a policy and its rules
    list      List policies
";

/// Dispatches `nomad acl policy ...`.
pub fn run(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("apply") => apply(rest),
        Some("list") => list(rest),
        Some("info") => info(rest),
        Some("delete") => delete(rest),
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

fn apply(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl policy apply [options] <name> <path>

  Writes the rules in <path> (\"-\" for stdin) as the policy <name>,
  creating or replacing it. Needs a management token.",
        "Apply Options:

  -description=\"\"
    A description of the policy.",
    );
    let mut fs = client_flags();
    fs.string("description", "")
        .string("namespace-job", "")
        .string("job", "")
        .string("group", "")
        .string("task", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.len() != 2 {
        eprintln!("This command takes two arguments: <name> and <path>");
        eprintln!("{}", error_hint("acl policy apply"));
        return 1;
    }
    let (name, path) = (&rest[0], &rest[1]);
    let rules = if path == "-" {
        let mut s = String::new();
        match std::io::stdin().read_to_string(&mut s) {
            Ok(_) => s,
            Err(e) => {
                eprintln!("Failed to read stdin: {e}");
                return 1;
            }
        }
    } else {
        match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("Failed to read file: {e}");
                return 1;
            }
        }
    };
    let mut body = serde_json::json!({
        "Name": name,
        "Description": fs.get_str("description"),
        "Rules": rules,
    });
    let job = fs.get_str("job");
    if !job.is_empty() {
        let ns = match fs.get_str("namespace-job") {
            s if s.is_empty() => "default".to_string(),
            s => s,
        };
        body["JobACL"] = serde_json::json!({
            "Namespace": ns, "JobID": job, "Group": fs.get_str("group"), "Task": fs.get_str("task"),
        });
    }
    let client = Meta::from_flags(&fs).client();
    let p = format!("/v1/acl/policy/{}", path_escape(name));
    match client.send_no_body("PUT", &p, &[], Some(&body)) {
        Ok(()) => {
            outln!("Successfully wrote {name:?} ACL policy!");
            0
        }
        Err(e) => {
            eprintln!("Error writing ACL policy: {e}");
            1
        }
    }
}

fn list(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl policy list [options]

  Lists the ACL policies the token may read.",
        "List Options:

  -json
    Print the policies as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("json", false).string("t", "");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "acl policy list") {
        return code;
    }
    let client = Meta::from_flags(&fs).client();
    let policies: Vec<AclPolicyListStub> = match client.get("/v1/acl/policies", &[]) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("Error fetching ACL policies: {e}");
            return 1;
        }
    };
    if fs.get_bool("json") {
        outln!("{}", json_pretty(&policies));
        return 0;
    }
    if policies.is_empty() {
        outln!("No policies found");
        return 0;
    }
    let mut rows = vec!["Name|Description".to_string()];
    rows.extend(
        policies
            .iter()
            .map(|p| format!("{}|{}", p.name, p.description)),
    );
    outln!("{}", format_list(&rows));
    0
}

fn info(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl policy info [options] <name>

  Shows a policy and its rules.",
        "Info Options:

  -json
    Print the policy as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("json", false).string("t", "");
    let arg = match parse_one_arg(&mut fs, args, &help, "acl policy info", "<name>") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = Meta::from_flags(&fs).client();
    let p = format!("/v1/acl/policy/{}", path_escape(&arg));
    match client.get::<AclPolicy>(&p, &[]) {
        Ok(policy) => {
            if fs.get_bool("json") {
                outln!("{}", json_pretty(&policy));
            } else {
                outln!("{}", super::format_policy(&policy));
            }
            0
        }
        Err(e) => {
            eprintln!("Error fetching ACL policy: {e}");
            1
        }
    }
}

fn delete(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl policy delete [options] <name>

  Deletes a policy. Needs a management token.",
        "",
    );
    let mut fs = client_flags();
    let arg = match parse_one_arg(&mut fs, args, &help, "acl policy delete", "<name>") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let name = &arg;
    let client = Meta::from_flags(&fs).client();
    let p = format!("/v1/acl/policy/{}", path_escape(name));
    match client.send_no_body::<()>("DELETE", &p, &[], None) {
        Ok(()) => {
            outln!("Successfully deleted {name:?} ACL policy!");
            0
        }
        Err(e) => {
            eprintln!("Error deleting ACL policy: {e}");
            1
        }
    }
}
