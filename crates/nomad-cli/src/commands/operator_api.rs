//! `nomad operator api [options] <path>`: a curl-like call of the HTTP API with the CLI's
//! address, token, TLS, region and namespace settings, as Nomad's command behaves: the
//! body comes from stdin when stdin is not a terminal (and the method then defaults to POST),
//! the answer's body is printed whatever its status, `-dryrun` prints the equivalent curl.

use std::io::{IsTerminal, Read, Write};

use crate::commands::{client_flags, parse_flags, with_general};
use crate::meta::Meta;

fn help() -> String {
    with_general(
        "Usage: nomad operator api [options] <path>

  Sends a request to Nomad's HTTP API, filling in the address, ACL token, TLS
  settings, region and namespace of the general options. The path is either an
  API path (\"/v1/jobs\"), a host and path (\"localhost:4646/v1/jobs\") or a URL.
  Data piped to stdin is sent as the body, and the method then defaults to POST.",
        "Operator API Options:

  -dryrun
    Print the equivalent curl command and exit. The ACL token is referenced
    as ${NOMAD_TOKEN} unless it was given with -token.

  -filter <query>
    A filter expression for the query's results.

  -H <Header>
    An extra header, 'Key: Value'. Repeatable; takes precedence over the
    headers set automatically, such as X-Nomad-Token.

  -verbose
    Print the request and the answer's status and headers to stderr.

  -X <method>
    The HTTP method (default GET, or POST with data on stdin).",
    )
}

/// Splits `"Key: Value"`.
fn header(v: &str) -> Result<(String, String), String> {
    match v.split_once(':') {
        Some((k, val)) if !k.trim().is_empty() => {
            Ok((k.trim().to_string(), val.trim().to_string()))
        }
        _ => Err(format!(
            "Headers must be in the form 'Key: Value' but found: {v:?}"
        )),
    }
}

/// The URL for `path` given the configured address (scheme and host filled in when missing)
/// and the region/namespace to add unless the path sets them.
pub fn to_url(address: &str, tls: bool, path: &str, extra: &[(&str, &str)]) -> String {
    let mut url = if path.starts_with("http://") || path.starts_with("https://") {
        path.to_string()
    } else if path.starts_with('/') {
        format!("{}{path}", address.trim_end_matches('/'))
    } else {
        let scheme = if tls || address.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{path}")
    };
    for (k, v) in extra {
        if v.is_empty() || url.contains(&format!("{k}=")) {
            continue;
        }
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("{k}={}", crate::api::query_escape(v)));
    }
    url
}

/// Runs `nomad operator api`.
pub fn run(args: &[String]) -> i32 {
    let help = help();
    let mut fs = client_flags();
    fs.bool("dryrun", false)
        .string("filter", "")
        .bool("verbose", false)
        .string("X", "")
        .list("H");
    let rest = match parse_flags(&mut fs, args, &help) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if rest.is_empty() {
        eprintln!("A path or URL is required");
        eprintln!("For additional help try 'nomad operator api -help'");
        return 1;
    }
    if rest.len() > 1 {
        eprintln!(
            "operator api accepts exactly 1 argument, but {} arguments were found",
            rest.len()
        );
        eprintln!("For additional help try 'nomad operator api -help'");
        return 1;
    }
    let mut headers = Vec::new();
    for h in fs.get_list("H") {
        match header(&h) {
            Ok(kv) => headers.push(kv),
            Err(e) => {
                eprintln!("Error parsing flags: {e}");
                return 1;
            }
        }
    }
    let verbose = fs.get_bool("verbose");
    let mut method = fs.get_str("X");
    let mut body = None;
    if !std::io::stdin().is_terminal() {
        let mut b = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut b) {
            eprintln!("Error reading stdin: {e}");
            return 1;
        }
        if !b.is_empty() {
            if verbose {
                eprintln!("* Reading request body from stdin.");
            }
            body = Some(b);
            if method.is_empty() {
                method = "POST".into();
            }
        }
    }
    if method.is_empty() {
        method = "GET".into();
    }
    let meta = Meta::from_flags(&fs);
    let client = meta.client();
    let (region, namespace) = client.region_and_namespace();
    let filter = fs.get_str("filter");
    let tls = !meta.ca_cert.is_empty()
        || !meta.ca_path.is_empty()
        || !meta.client_cert.is_empty()
        || !meta.tls_server_name.is_empty()
        || meta.insecure;
    let url = to_url(
        client.address(),
        tls,
        &rest[0],
        &[
            ("filter", filter.as_str()),
            ("region", region),
            ("namespace", namespace),
        ],
    );
    if fs.get_bool("dryrun") {
        let mut parts = vec!["curl".to_string()];
        if verbose {
            parts.push("--verbose".into());
        }
        parts.push(format!("-X {method}"));
        if body.is_some() {
            parts.push("--data-binary @-".into());
        }
        for (flag, v) in [
            ("--cacert", &meta.ca_cert),
            ("--capath", &meta.ca_path),
            ("--cert", &meta.client_cert),
            ("--key", &meta.client_key),
        ] {
            if !v.is_empty() {
                parts.push(format!("{flag} \"{v}\""));
            }
        }
        if meta.insecure {
            parts.push("--insecure".into());
        }
        for (k, v) in &headers {
            parts.push(format!("-H '{k}: {v}'"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("X-Nomad-Token"))
        {
            if fs.is_set("token") {
                parts.push(format!("-H 'X-Nomad-Token: {}'", fs.get_str("token")));
            } else if !std::env::var("NOMAD_TOKEN").unwrap_or_default().is_empty() {
                parts.push("-H \"X-Nomad-Token: ${NOMAD_TOKEN}\"".into());
            }
        }
        if !std::env::var("NOMAD_HTTP_AUTH")
            .unwrap_or_default()
            .is_empty()
        {
            parts.push("-u \"$NOMAD_HTTP_AUTH\"".into());
        }
        parts.push(url);
        outln!("{}", parts.join(" \\\n  "));
        return 0;
    }
    if verbose {
        eprintln!("> {method} {url}");
        for (k, v) in &headers {
            eprintln!("> {k}: {v}");
        }
        eprintln!("* Sending request and receiving response...");
    }
    match client.send_raw(&method, &url, &headers, body.as_deref()) {
        Ok((status, hs, out)) => {
            if verbose {
                eprintln!("< HTTP/1.1 {status}");
                for (k, v) in hs {
                    eprintln!("< {k}: {v}");
                }
            }
            let _ = std::io::stdout().write_all(&out);
            0
        }
        Err(e) => {
            eprintln!("Error performing request: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_nomad_builds_them() {
        assert_eq!(
            to_url("http://127.0.0.1:4646", false, "/v1/jobs", &[]),
            "http://127.0.0.1:4646/v1/jobs"
        );
        assert_eq!(
            to_url("http://127.0.0.1:4646", true, "localhost:4646/v1/jobs", &[]),
            "https://localhost:4646/v1/jobs"
        );
        assert_eq!(
            to_url(
                "http://a:1",
                false,
                "/v1/jobs?namespace=x",
                &[("namespace", "y"), ("region", "r"), ("filter", "")]
            ),
            "http://a:1/v1/jobs?namespace=x&region=r"
        );
        assert!(header("X-A: b").is_ok());
        assert!(header("nocolon").is_err());
    }
}
