//! `nomad namespace <apply|list|status|delete>`.

use serde_json::{json, Value};

use crate::api::{path_escape, ApiError};
use crate::commands::{client_flags, parse_no_args, parse_one_arg, with_general};
use crate::format::{format_kv, format_list, json_pretty};
use crate::meta::Meta;

const HELP: &str = "Usage: nomad namespace <subcommand> [options] [args]

  Create, list, inspect and delete namespaces. Jobs, allocations and
  evaluations live in a namespace; \"default\" always exists.

Subcommands:
    apply     Create or update a namespace
    delete    Delete a namespace
    list      List namespaces
    status    Show a namespace
";

/// Dispatches `nomad namespace ...`.
pub fn run(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("apply") => apply(rest),
        Some("list") => list(rest),
        Some("status" | "inspect") => status(rest),
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

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn apply(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad namespace apply [options] <namespace>

  Creates the namespace, or updates an existing one (only the fields given
  as flags change). Needs a management token.",
        "Apply Options:

  -description
    A description of the namespace.

  -quota
    A quota to attach to the namespace.

  -json
    Accepted for compatibility; specification files are not read.",
    );
    let mut fs = client_flags();
    fs.string("description", "")
        .string("quota", "")
        .bool("json", false);
    let arg = match parse_one_arg(&mut fs, args, &help, "namespace apply", "<namespace>") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let name = &arg;
    let client = Meta::from_flags(&fs).client();
    let path = format!("/v1/namespace/{}", path_escape(name));
    let mut ns = match client.get::<Value>(&path, &[]) {
        Ok(v) => v,
        Err(ApiError::Status { code: 404, .. }) => json!({ "Name": name }),
        Err(e) => {
            eprintln!("Error applying namespace specification: {e}");
            return 1;
        }
    };
    if fs.is_set("description") {
        ns["Description"] = json!(fs.get_str("description"));
    }
    if fs.is_set("quota") {
        ns["Quota"] = json!(fs.get_str("quota"));
    }
    match client.send_no_body("PUT", "/v1/namespace", &[], Some(&ns)) {
        Ok(()) => {
            outln!("Successfully applied namespace {name:?}!");
            0
        }
        Err(e) => {
            eprintln!("Error applying namespace specification: {e}");
            1
        }
    }
}

fn list(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad namespace list [options]

  Lists the namespaces the token may use.",
        "List Options:

  -json
    Print the namespaces as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("json", false).string("t", "");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "namespace list") {
        return code;
    }
    let client = Meta::from_flags(&fs).client();
    let list: Vec<Value> = match client.get("/v1/namespaces", &[]) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error retrieving namespaces: {e}");
            return 1;
        }
    };
    if fs.get_bool("json") {
        outln!("{}", json_pretty(&list));
        return 0;
    }
    if list.is_empty() {
        outln!("No namespaces found");
        return 0;
    }
    let mut rows = vec!["Name|Description".to_string()];
    rows.extend(
        list.iter()
            .map(|n| format!("{}|{}", s(n, "Name"), s(n, "Description"))),
    );
    outln!("{}", format_list(&rows));
    0
}

fn status(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad namespace status [options] <namespace>

  Shows a namespace. <namespace> may be a prefix.",
        "Status Options:

  -json
    Print the namespace as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("json", false).string("t", "");
    let arg = match parse_one_arg(&mut fs, args, &help, "namespace status", "<namespace>") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let name = &arg;
    let client = Meta::from_flags(&fs).client();
    let list: Vec<Value> = match client.get("/v1/namespaces", &[("prefix", name.clone())]) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("Error retrieving namespaces: {e}");
            return 1;
        }
    };
    let exact = list.iter().find(|n| s(n, "Name") == name.as_str());
    let ns = match (exact, list.len()) {
        (Some(n), _) => n.clone(),
        (None, 0) => {
            eprintln!("Error retrieving namespaces: Namespace {name:?} matched no namespaces");
            return 1;
        }
        (None, 1) => list[0].clone(),
        (None, _) => {
            let mut rows = vec!["Name|Description".to_string()];
            rows.extend(
                list.iter()
                    .map(|n| format!("{}|{}", s(n, "Name"), s(n, "Description"))),
            );
            eprintln!(
                "Prefix matched multiple namespaces\n\n{}",
                format_list(&rows)
            );
            return 1;
        }
    };
    if fs.get_bool("json") {
        outln!("{}", json_pretty(&ns));
        return 0;
    }
    let mut out = format_kv(&[
        format!("Name|{}", s(&ns, "Name")),
        format!("Description|{}", s(&ns, "Description")),
        format!("Quota|{}", s(&ns, "Quota")),
    ]);
    if let Some(meta) = ns
        .get("Meta")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    {
        let rows: Vec<String> = meta
            .iter()
            .map(|(k, v)| format!("{k}|{}", v.as_str().unwrap_or("")))
            .collect();
        out.push_str("\n\nMetadata\n");
        out.push_str(&format_kv(&rows));
    }
    outln!("{out}");
    0
}

fn delete(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad namespace delete [options] <namespace>

  Deletes a namespace. Refused for \"default\" and for namespaces that still
  hold jobs. Needs a management token.",
        "",
    );
    let mut fs = client_flags();
    let arg = match parse_one_arg(&mut fs, args, &help, "namespace delete", "<namespace>") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let name = &arg;
    let client = Meta::from_flags(&fs).client();
    let path = format!("/v1/namespace/{}", path_escape(name));
    match client.send_no_body::<()>("DELETE", &path, &[], None) {
        Ok(()) => {
            outln!("Successfully deleted namespace {name:?}!");
            0
        }
        Err(e) => {
            eprintln!("Error deleting namespace: {e}");
            1
        }
    }
}
