//! End to end: `nomad var put|get|list|purge` against the real `nomad agent -dev`, with
//! Nomad's outputs, check-and-set conflicts and errors.

use std::path::Path;

use nomad_testkit::{cli_field, DevAgent};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nomad"))
}

#[test]
fn variables_round_trip_through_the_cli() {
    let agent = DevAgent::start(bin(), "");
    let cli = |args: &[&str]| agent.cli(bin(), args);

    let (code, out, err) = cli(&["var", "put", "app/db", "user=app", "pass=s3cret"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("Created variable \"app/db\" with modify index "),
        "{out}"
    );
    let index: u64 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();

    // A second put without -force or -check-index refuses to overwrite.
    let (code, _, err) = cli(&["var", "put", "app/db", "user=other"]);
    assert_eq!(code, 1);
    assert!(err.contains("Check-and-Set conflict"), "{err}");
    assert!(err.contains(&format!("-check-index={index} flag")), "{err}");
    let (code, out, err) = cli(&[
        "var",
        "put",
        "-check-index",
        &index.to_string(),
        "-out",
        "json",
        "app/db",
        "user=other",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Items"], serde_json::json!({"user": "other"}));
    let (code, out, err) = cli(&["var", "put", "-force", "app/web", "port=8080"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, _) = cli(&["var", "get", "app/db"]);
    assert_eq!(code, 0);
    assert_eq!(cli_field(&out, "Path"), "app/db");
    assert_eq!(cli_field(&out, "user"), "other");
    let (code, out, _) = cli(&["var", "get", "-item", "port", "app/web"]);
    assert_eq!((code, out.as_str()), (0, "8080"));
    let (code, _, err) = cli(&["var", "get", "-item", "nope", "app/web"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Variable does not contain \"nope\" item"),
        "{err}"
    );

    let (code, out, _) = cli(&["var", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Namespace"), "{out}");
    assert!(out.contains("app/db") && out.contains("app/web"), "{out}");
    let (_, out, _) = cli(&["var", "list", "-q", "app/w"]);
    assert_eq!(out.trim(), "app/web");

    // Errors in Nomad's words.
    let (code, _, err) = cli(&["var", "put", "app/empty"]);
    assert_eq!(code, 1);
    assert!(err.contains("Must supply data"), "{err}");
    let (code, _, err) = cli(&["var", "put", "nomad/secrets", "a=b"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("only paths at \"nomad/jobs\" or \"nomad/job-templates\" and below"),
        "{err}"
    );
    let (code, _, err) = cli(&["var", "get", "-namespace", "*", "app/db"]);
    assert_eq!(code, 1);
    assert!(err.contains("wildcard namespace"), "{err}");

    let (code, out, _) = cli(&["var", "purge", "app/db"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "Successfully purged variable \"app/db\"!");
    let (code, _, err) = cli(&["var", "get", "app/db"]);
    assert_eq!(code, 1);
    assert!(err.contains("Variable not found"), "{err}");
    let (_, out, _) = cli(&["var", "list", "app/db"]);
    assert_eq!(out.trim(), "No matching variables found");
}
