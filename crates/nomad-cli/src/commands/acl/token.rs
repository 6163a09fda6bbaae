//! `nomad acl token <create|list|info|self|update|delete>`.

use nomad_acl::{AclToken, AclTokenListStub};

use crate::api::{path_escape, Client};
use crate::commands::{client_flags, parse_no_args, parse_one_arg, with_general};
use crate::format::{format_list, json_pretty};
use crate::goflag::FlagSet;
use crate::meta::Meta;

const HELP: &str = "Usage: nomad acl token <subcommand> [options] [args]

  Create, list, inspect, update and delete ACL tokens.

Subcommands:
    create    Create a token
    delete    Delete a token
    info      Show a token
    list      List tokens
    self      Show the token in use
    update    Update a token
";

/// Dispatches `nomad acl token ...`.
pub fn run(args: &[String]) -> i32 {
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("create") => create(rest),
        Some("list") => list(rest),
        Some("info") => info(rest),
        Some("self") => self_cmd(rest),
        Some("update") => update(rest),
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

fn print_token(fs: &FlagSet, token: &AclToken) {
    if fs.get_bool("json") {
        outln!("{}", json_pretty(token));
    } else {
        outln!("{}", super::format_token(token));
    }
}

/// Flags shared by create and update.
fn token_flags(fs: &mut FlagSet, default_type: &str) {
    fs.string("name", "")
        .string("type", default_type)
        .list("policy")
        .bool("global", false)
        .string("ttl", "")
        .bool("json", false)
        .string("t", "");
}

fn create(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl token create [options]

  Creates an ACL token; prints it, with its secret.",
        "Create Options:

  -name=\"\"
    The token's name.

  -type=\"client\"
    \"client\" or \"management\".

  -policy=\"\"
    A policy for the token (client tokens). Repeatable.

  -global=false
    Replicate the token to every region.

  -ttl=\"\"
    How long the token lives (a duration such as \"1h\"); none by default.

  -json
    Print the token as JSON.",
    );
    let mut fs = client_flags();
    token_flags(&mut fs, "client");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "acl token create") {
        return code;
    }
    let mut body = serde_json::json!({
        "Name": fs.get_str("name"),
        "Type": fs.get_str("type"),
        "Policies": fs.get_list("policy"),
        "Global": fs.get_bool("global"),
    });
    let ttl = fs.get_str("ttl");
    if !ttl.is_empty() {
        match nomad_structs::duration::parse_go_duration(&ttl) {
            Ok(ns) => body["ExpirationTTL"] = serde_json::json!(ns),
            Err(_) => {
                eprintln!("Failed to parse TTL as time duration: time: invalid duration {ttl:?}");
                return 1;
            }
        }
    }
    let client = Meta::from_flags(&fs).client();
    match client.put::<_, AclToken>("/v1/acl/token", &[], &body) {
        Ok(t) => {
            print_token(&fs, &t);
            0
        }
        Err(e) => {
            eprintln!("Error creating token: {e}");
            1
        }
    }
}

fn list(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl token list [options]

  Lists ACL tokens (never their secrets). Needs a management token.",
        "List Options:

  -json
    Print the tokens as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("json", false).string("t", "");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "acl token list") {
        return code;
    }
    let client = Meta::from_flags(&fs).client();
    let tokens: Vec<AclTokenListStub> = match client.get("/v1/acl/tokens", &[]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("Error fetching tokens: {e}");
            return 1;
        }
    };
    if fs.get_bool("json") {
        outln!("{}", json_pretty(&tokens));
        return 0;
    }
    outln!("{}", format_tokens(&tokens));
    0
}

/// `nomad acl token list`'s table.
fn format_tokens(tokens: &[AclTokenListStub]) -> String {
    if tokens.is_empty() {
        return "No tokens found".to_string();
    }
    let now = chrono::Utc::now();
    let mut rows = vec!["Name|Type|Global|Accessor ID|Expired".to_string()];
    for t in tokens {
        let expired = t
            .expiration_time
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .is_some_and(|e| e.year_ce().1 > 1 && e < now);
        rows.push(format!(
            "{}|{}|{}|{}|{}",
            t.name, t.token_type, t.global, t.accessor_id, expired
        ));
    }
    format_list(&rows)
}

use chrono::Datelike as _;

fn info(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl token info [options] <token_accessor_id>

  Shows a token (with its secret). A management token may read any token,
  other tokens only themselves.",
        "Info Options:

  -json
    Print the token as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("json", false).string("t", "");
    let accessor = match parse_one_arg(
        &mut fs,
        args,
        &help,
        "acl token info",
        "<token_accessor_id>",
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = Meta::from_flags(&fs).client();
    match client.get::<AclToken>(&format!("/v1/acl/token/{}", path_escape(&accessor)), &[]) {
        Ok(t) => {
            print_token(&fs, &t);
            0
        }
        Err(e) => {
            eprintln!("Error fetching token: {e}");
            1
        }
    }
}

fn self_cmd(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl token self [options]

  Shows the token the command runs with (-token or NOMAD_TOKEN).",
        "Self Options:

  -json
    Print the token as JSON.",
    );
    let mut fs = client_flags();
    fs.bool("json", false).string("t", "");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "acl token self") {
        return code;
    }
    let client = Meta::from_flags(&fs).client();
    match client.get::<AclToken>("/v1/acl/token/self", &[]) {
        Ok(t) => {
            print_token(&fs, &t);
            0
        }
        Err(e) => {
            eprintln!("Error fetching self token: {e}");
            1
        }
    }
}

fn fetch(client: &Client, accessor: &str) -> Result<AclToken, String> {
    client
        .get::<AclToken>(&format!("/v1/acl/token/{}", path_escape(accessor)), &[])
        .map_err(|e| format!("Error when retrieving token: {e}"))
}

fn update(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl token update [options] <token_accessor_id>

  Updates a token's name, type or policies. The secret, global flag and
  expiry cannot change.",
        "Update Options:

  -name=\"\"
    A new name.

  -type=\"\"
    A new type (\"client\" or \"management\").

  -policy=\"\"
    Replace the policies (repeatable).

  -json
    Print the token as JSON.",
    );
    let mut fs = client_flags();
    token_flags(&mut fs, "");
    let accessor = match parse_one_arg(
        &mut fs,
        args,
        &help,
        "acl token update",
        "<token_accessor_id>",
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = Meta::from_flags(&fs).client();
    let mut token = match fetch(&client, &accessor) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if fs.is_set("name") {
        token.name = fs.get_str("name");
    }
    if fs.is_set("type") {
        token.token_type = fs.get_str("type");
    }
    if fs.is_set("policy") {
        token.policies = Some(fs.get_list("policy"));
    }
    if token.token_type == "management" {
        token.policies = None;
    }
    let path = format!("/v1/acl/token/{}", path_escape(&accessor));
    match client.put::<_, AclToken>(&path, &[], &token) {
        Ok(t) => {
            print_token(&fs, &t);
            0
        }
        Err(e) => {
            eprintln!("Error updating token: {e}");
            1
        }
    }
}

fn delete(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad acl token delete [options] <token_accessor_id>

  Deletes a token. Needs a management token.",
        "",
    );
    let mut fs = client_flags();
    let accessor = match parse_one_arg(
        &mut fs,
        args,
        &help,
        "acl token delete",
        "<token_accessor_id>",
    ) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let client = Meta::from_flags(&fs).client();
    let path = format!("/v1/acl/token/{}", path_escape(&accessor));
    match client.send_no_body::<()>("DELETE", &path, &[], None) {
        Ok(()) => {
            outln!("Token {accessor} successfully deleted");
            0
        }
        Err(e) => {
            eprintln!("Error deleting token: {e}");
            1
        }
    }
}
