//! `nomad var <put|get|list|purge>`: variables at paths in a namespace.

use std::collections::BTreeMap;
use std::io::Read;

use nomad_structs::{Variable, VariableMetadata};

use crate::api::{path_escape, ApiError, Client};
use crate::commands::{client_flags, error_hint, parse_flags, parse_one_arg, with_general};
use crate::format::{format_kv, format_list, format_unix_nanos, json_pretty};
use crate::goflag::FlagSet;
use crate::meta::Meta;

const HELP: &str = "Usage: nomad var <subcommand> [options] [args]

  Variables hold small key/value documents at a path in a namespace, for
  operators and for tasks.

  Upsert a variable:

      $ nomad var put <path> <key>=<value>...

  Examine a variable:

      $ nomad var get <path>

  List existing variables:

      $ nomad var list <prefix>

  Purge a variable:

      $ nomad var purge <path>
";

const ERR_WILDCARD: &str = "The wildcard namespace (\"*\") is not valid for this command.";
const ERR_NOT_FOUND: &str = "Variable not found";
const ERR_NONE_MATCHING: &str = "No matching variables found";

/// Dispatches `nomad var ...`.
pub fn run(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("put") => put(rest),
        Some("get") => get(rest),
        Some("list") => list(rest),
        Some("purge") => purge(rest),
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

/// The client and namespace of a command that names one variable (`*` is refused).
fn client_for_one(fs: &FlagSet) -> Result<Client, i32> {
    let client = Meta::from_flags(fs).client();
    if client.region_and_namespace().1 == "*" {
        eprintln!("{ERR_WILDCARD}");
        return Err(1);
    }
    Ok(client)
}

fn var_path(path: &str) -> String {
    format!("/v1/var/{}", path_escape(path.trim().trim_matches('/')))
}

/// `-check-index`: empty means not given.
fn check_index(fs: &FlagSet) -> Result<Option<u64>, i32> {
    let raw = fs.get_str("check-index");
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        eprintln!(
            "Error parsing check-index value {raw:?}: strconv.ParseUint: parsing {raw:?}: invalid syntax"
        );
        1
    })
}

fn put(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad var put [options] <path> [<key>=<value>]...

  Create or update the variable at <path> with the given items; the items
  replace the ones stored. A value of @file reads the file, - reads stdin.
  The first argument may instead be @spec.json, a variable in JSON.",
        "Var put Options:

  -check-index <index>
    Write only if the variable's modify index is this (0: only if it does
    not exist yet). Without it and without -force, only a new variable is
    written.

  -force
    Write whatever is stored.

  -out (none|json|table|hcl)
    What to print after the write. Defaults to none.

  -verbose
    Print what is being done.",
    );
    let mut fs = client_flags();
    fs.bool("force", false)
        .string("check-index", "")
        .string("out", "none")
        .string("in", "json")
        .string("template", "")
        .bool("verbose", false);
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let Ok(cas) = check_index(&fs) else { return 1 };
    let out = fs.get_str("out");
    if !matches!(out.as_str(), "none" | "json" | "table" | "hcl") {
        eprintln!(
            "Invalid value for \"-out\"; valid values are [go-template, hcl, json, none, table]"
        );
        return 1;
    }
    match rest.len() {
        0 => {
            eprintln!("Not enough arguments (expected >1, got 0)");
            eprintln!("{}", error_hint("var put"));
            return 1;
        }
        1 if !rest[0].starts_with('@') && rest[0] != "-" => {
            eprintln!("Must supply data");
            eprintln!("{}", error_hint("var put"));
            return 1;
        }
        _ => {}
    }
    let Ok(client) = client_for_one(&fs) else {
        return 1;
    };
    let mut var = match build_variable(&rest) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    var.meta.namespace = client.region_and_namespace().1.to_string();
    let cas = if fs.get_bool("force") {
        None
    } else {
        Some(cas.unwrap_or(var.meta.modify_index))
    };
    let query: Vec<(&str, String)> = cas.map(|c| ("cas", c.to_string())).into_iter().collect();
    let stored: Variable = match client.put(&var_path(&var.meta.path), &query, &var) {
        Ok(v) => v,
        Err(e) => return report_write_error(&e, cas, "Error creating variable"),
    };
    if fs.get_bool("verbose") || out == "none" {
        outln!(
            "Created variable {:?} with modify index {}",
            stored.meta.path,
            stored.meta.modify_index
        );
    }
    print_variable(&stored, &out);
    0
}

/// The variable `nomad var put` was asked to write: from `@spec.json` or the path, then
/// the `key=value` arguments (an empty value drops the key).
fn build_variable(args: &[String]) -> Result<Variable, String> {
    let mut var = Variable::default();
    let mut kv = &args[1..];
    if let Some(file) = args[0].strip_prefix('@') {
        var = read_spec(file)?;
    } else {
        var.meta.path = args[0].trim().trim_matches('/').to_string();
        if let Some(file) = kv.first().and_then(|a| a.strip_prefix('@')) {
            let spec = read_spec(file)?;
            var.items = spec.items;
            kv = &kv[1..];
        }
    }
    for arg in kv {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(format!(
                "Failed to parse K=V data: invalid key/value pair {arg:?}: format must be key=value"
            ));
        };
        let value = if let Some(file) = value.strip_prefix('@') {
            std::fs::read_to_string(file).map_err(|e| {
                format!("Failed to parse K=V data: invalid key/value pair {arg:?}: error reading file: {e}")
            })?
        } else if value == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("Error reading from stdin: {e}"))?;
            s
        } else {
            value.strip_prefix('\\').unwrap_or(value).to_string()
        };
        if value.is_empty() {
            var.items.remove(key);
        } else {
            var.items.insert(key.to_string(), value);
        }
    }
    Ok(var)
}

fn read_spec(file: &str) -> Result<Variable, String> {
    if !file.ends_with(".json") {
        return Err(format!(
            "Unable to determine format of @{file}; only JSON specifications (.json) are supported"
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("Error reading {file:?}: {e}"))?;
    serde_json::from_str(&text)
        .map_err(|e| format!("Failed to parse variable data: error unmarshaling json: {e}"))
}

/// A 409 is Nomad's check-and-set conflict, with the stored variable as the body.
fn report_write_error(e: &ApiError, cas: Option<u64>, what: &str) -> i32 {
    if let ApiError::Status { code: 409, body } = e {
        let current: Variable = serde_json::from_str(body).unwrap_or_default();
        eprintln!("\nCheck-and-Set conflict\n");
        let index = current.meta.modify_index;
        eprintln!(
            "    Your provided check-index ({}) does not match the server-side index ({index}).",
            cas.unwrap_or(0)
        );
        if index > 0 {
            eprintln!(
                "    The server-side item was last updated on {}.",
                format_unix_nanos(current.meta.modify_time)
            );
        }
        eprintln!(
            "    If you are sure you want to perform this operation, add the -force or\n    -check-index={index} flag before the positional arguments.\n"
        );
        return 1;
    }
    eprintln!("{what}: {e}");
    1
}

fn print_variable(v: &Variable, out: &str) {
    match out {
        "json" => outln!("{}", json_pretty(v)),
        "hcl" => outln!("{}", render_hcl(v)),
        "table" => {
            let mut meta = vec![
                format!("Namespace|{}", v.meta.namespace),
                format!("Path|{}", v.meta.path),
                format!("Create Time|{}", format_unix_nanos(v.meta.create_time)),
            ];
            if v.meta.create_time != v.meta.modify_time {
                meta.push(format!(
                    "Modify Time|{}",
                    format_unix_nanos(v.meta.modify_time)
                ));
            }
            meta.push(format!("Check Index|{}", v.meta.modify_index));
            outln!("{}", format_kv(&meta));
            outln!("\nItems");
            let items: Vec<String> = v.items.iter().map(|(k, v)| format!("{k}|{v}")).collect();
            outln!("{}", format_kv(&items));
        }
        _ => {}
    }
}

/// The variable as the HCL specification `nomad var put @file` reads in Nomad.
fn render_hcl(v: &Variable) -> String {
    let pad = v.items.keys().map(String::len).max().unwrap_or(0);
    let items: String = v
        .items
        .iter()
        .map(|(k, val)| format!("  {k:>pad$} = {val:?}\n"))
        .collect();
    format!(
        "namespace    = {:?}\npath         = {:?}\ncreate_index = {}  # Set by server\nmodify_index = {}  # Set by server; consulted for check-and-set\ncreate_time  = {}   # Set by server\nmodify_time  = {}   # Set by server\n\nitems = {{\n{items}}}",
        v.meta.namespace,
        v.meta.path,
        v.meta.create_index,
        v.meta.modify_index,
        v.meta.create_time,
        v.meta.modify_time,
    )
}

fn get(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad var get [options] <path>

  Print the variable at <path>.",
        "Var get Options:

  -item <key>
    Print only the value of this item.

  -out (table|json|hcl|none)
    Output format. Defaults to table.",
    );
    let mut fs = client_flags();
    fs.string("item", "")
        .string("out", "table")
        .string("template", "");
    let path = match parse_one_arg(&mut fs, args, &help, "var get", "<path>") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let out = fs.get_str("out");
    if !matches!(out.as_str(), "none" | "json" | "table" | "hcl") {
        eprintln!(
            "Invalid value for \"-out\"; valid values are [go-template, hcl, json, none, table]"
        );
        return 1;
    }
    let Ok(client) = client_for_one(&fs) else {
        return 1;
    };
    let v: Variable = match client.get(&var_path(&path), &[]) {
        Ok(v) => v,
        Err(ApiError::Status { code: 404, .. }) => {
            eprintln!("{ERR_NOT_FOUND}");
            return 1;
        }
        Err(e) => {
            eprintln!("Error retrieving variable: {e}");
            return 1;
        }
    };
    let item = fs.get_str("item");
    if !item.is_empty() {
        return match v.items.get(&item) {
            Some(value) => {
                // As Nomad: the bare value, no newline, for `$(nomad var get -item ...)`.
                use std::io::Write as _;
                let _ = write!(std::io::stdout(), "{value}");
                0
            }
            None => {
                eprintln!("Variable does not contain {item:?} item");
                1
            }
        };
    }
    print_variable(&v, &out);
    0
}

fn list(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad var list [options] [<prefix>]

  List the variables (without their items) whose path starts with <prefix>.",
        "Var list Options:

  -q
    Print only the paths.

  -json
    Print the list as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("q", false)
        .bool("json", false)
        .string("t", "")
        .string("filter", "")
        .int("per-page", 0)
        .string("page-token", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.len() > 1 {
        eprintln!("This command takes flags and either no arguments or one: <prefix>");
        eprintln!("{}", error_hint("var list"));
        return 1;
    }
    let client = Meta::from_flags(&fs).client();
    let mut query = vec![("prefix", rest.first().cloned().unwrap_or_default())];
    let filter = fs.get_str("filter");
    if !filter.is_empty() {
        query.push(("filter", filter));
    }
    let mut vars: Vec<VariableMetadata> = match client.get("/v1/vars", &query) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Error retrieving vars: {e}");
            return 1;
        }
    };
    vars.sort_by(|a, b| (&a.namespace, &a.path).cmp(&(&b.namespace, &b.path)));
    let all = client.region_and_namespace().1 == "*";
    let quiet = fs.get_bool("q");
    if fs.get_bool("json") {
        if quiet {
            let paths: Vec<serde_json::Value> = vars
                .iter()
                .map(|v| {
                    if all {
                        serde_json::json!({"Namespace": v.namespace, "Path": v.path})
                    } else {
                        serde_json::json!(v.path)
                    }
                })
                .collect();
            outln!("{}", json_pretty(&paths));
        } else {
            outln!("{}", json_pretty(&vars));
        }
        return 0;
    }
    if quiet {
        let rows: Vec<String> = vars
            .iter()
            .map(|v| {
                if all {
                    format!("{}|{}", v.namespace, v.path)
                } else {
                    v.path.clone()
                }
            })
            .collect();
        outln!("{}", format_list(&rows));
        return 0;
    }
    if vars.is_empty() {
        outln!("{ERR_NONE_MATCHING}");
        return 0;
    }
    let mut rows = vec!["Namespace|Path|Last Updated".to_string()];
    rows.extend(vars.iter().map(|v| {
        format!(
            "{}|{}|{}",
            v.namespace,
            v.path,
            format_unix_nanos(v.modify_time)
        )
    }));
    outln!("{}", format_list(&rows));
    0
}

fn purge(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad var purge [options] <path>

  Permanently delete the variable at <path>.",
        "Var purge Options:

  -check-index <index>
    Delete only if the variable's modify index is this.",
    );
    let mut fs = client_flags();
    fs.string("check-index", "");
    let path = match parse_one_arg(&mut fs, args, &help, "var purge", "<path>") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Ok(cas) = check_index(&fs) else { return 1 };
    let Ok(client) = client_for_one(&fs) else {
        return 1;
    };
    let query: Vec<(&str, String)> = cas.map(|c| ("cas", c.to_string())).into_iter().collect();
    let none: Option<&BTreeMap<String, String>> = None;
    if let Err(e) = client.send_no_body("DELETE", &var_path(&path), &query, none) {
        return report_write_error(&e, cas, "Error purging variable");
    }
    outln!("Successfully purged variable {path:?}!");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn put_arguments_become_items() {
        let v = build_variable(&args(&["/app/db/", "user=app", "pass=s3cret", "pass="])).unwrap();
        assert_eq!(v.meta.path, "app/db");
        assert_eq!(v.items.len(), 1);
        assert_eq!(v.items["user"], "app");
        let v = build_variable(&args(&["a", r"at=\@home"])).unwrap();
        assert_eq!(v.items["at"], "@home");
        let e = build_variable(&args(&["a", "novalue"])).unwrap_err();
        assert!(e.contains("format must be key=value"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("spec.json");
        std::fs::write(
            &spec,
            r#"{"Path":"from/file","ModifyIndex":4,"Items":{"k":"v"}}"#,
        )
        .unwrap();
        let v = build_variable(&args(&[&format!("@{}", spec.display()), "extra=1"])).unwrap();
        assert_eq!(
            (v.meta.path.as_str(), v.meta.modify_index),
            ("from/file", 4)
        );
        assert_eq!(v.items.len(), 2);
    }

    #[test]
    fn hcl_rendering_aligns_items() {
        let v = Variable {
            meta: VariableMetadata {
                namespace: "default".into(),
                path: "a".into(),
                ..Default::default()
            },
            items: BTreeMap::from([
                ("k".to_string(), "v".to_string()),
                ("long".to_string(), "x\"y".to_string()),
            ]),
        };
        let h = render_hcl(&v);
        assert!(h.contains("     k = \"v\"\n"), "{h}");
        assert!(h.contains("  long = \"x\\\"y\"\n"), "{h}");
    }
}
