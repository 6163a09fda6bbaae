//! `nomad acl bootstrap [options] [<path>]`: creates the first management token (optionally
//! with an operator-chosen secret read from `<path>` or stdin `-`).

use std::io::Read;

use nomad_acl::AclToken;

use crate::commands::{client_flags, error_hint, parse_flags, with_general};
use crate::format::json_pretty;
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad acl bootstrap [options] [<path>]

  Bootstraps the ACL system and prints the initial management token.
  With <path>, the token's secret is read from that file (\"-\" for stdin)
  instead of being generated.",
        "Bootstrap Options:

  -json
    Print the token as JSON.",
    )
}

/// Runs `nomad acl bootstrap`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("json", false).string("t", "");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.len() > 1 {
        eprintln!("This command takes up to one argument");
        eprintln!("{}", error_hint("acl bootstrap"));
        return 1;
    }
    let mut secret = String::new();
    if let Some(path) = rest.first() {
        let read = match path.as_str() {
            "" => Ok(String::new()),
            "-" => {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map(|_| s)
            }
            p => std::fs::read_to_string(p),
        };
        match read {
            Ok(s) => secret = s.trim_end_matches('\n').to_string(),
            Err(e) => {
                eprintln!("Error reading provided token: {e}");
                return 1;
            }
        }
    }
    let client = Meta::from_flags(&fs).client();
    let body = serde_json::json!({ "BootstrapSecret": secret });
    let token: AclToken = match client.put("/v1/acl/bootstrap", &[], &body) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("Error bootstrapping: {e}");
            return 1;
        }
    };
    if fs.get_bool("json") {
        outln!("{}", json_pretty(&token));
    } else {
        outln!("{}", super::format_token(&token));
    }
    0
}
