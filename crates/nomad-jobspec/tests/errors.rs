//! Bad inputs give `file:line:col: ...` errors with Nomad's wording.

use nomad_jobspec::{parse_job, parse_job_json, ParseOptions};

fn opts() -> ParseOptions {
    ParseOptions {
        filename: "hello.nomad.hcl".into(),
        ..Default::default()
    }
}

fn err(src: &str, o: &ParseOptions) -> String {
    match parse_job(src, o) {
        Ok(j) => panic!("expected an error, got {j:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(e: &str, want: &str) {
    assert!(e.contains(want), "error {e:?} does not contain {want:?}");
}

const TASK_PREFIX: &str = "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/true\"\n      }\n";

#[test]
fn unsupported_argument() {
    let src = "job \"j\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n\n      resources {}\n    comand = \"x\"\n    }\n  }\n}\n";
    let e = err(src, &opts());
    assert_has(&e, "hello.nomad.hcl:7:5: Unsupported argument; An argument named \"comand\" is not expected here.");
}

#[test]
fn unsupported_block() {
    let src =
        format!("{TASK_PREFIX}      resourcez {{\n        cpu = 1\n      }}\n    }}\n  }}\n}}\n");
    let e = err(&src, &opts());
    assert_has(&e, "hello.nomad.hcl:8:7: Unsupported block type; Blocks of type \"resourcez\" are not expected here.");
}

#[test]
fn missing_labels() {
    let e = err("job {\n  group \"g\" {}\n}\n", &opts());
    assert_has(&e, "hello.nomad.hcl:1:1: Missing id for job");
    let e = err("job \"j\" {\n  group {}\n}\n", &opts());
    assert_has(&e, "hello.nomad.hcl:2:3: Missing name for group");
}

#[test]
fn wrong_types() {
    let e = err(
        "job \"j\" {\n  group \"g\" {\n    count = \"two\"\n  }\n}\n",
        &opts(),
    );
    assert_has(&e, "hello.nomad.hcl:3:13: Incorrect attribute value type; Inappropriate value for attribute \"count\"");
    let src = format!(
        "{TASK_PREFIX}      resources {{\n        memory = \"256\"\n      }}\n    }}\n  }}\n}}\n"
    );
    let e = err(&src, &opts());
    assert_has(&e, "hello.nomad.hcl:9:18: Incorrect attribute value type; Inappropriate value for attribute \"memory\"");
}

#[test]
fn bad_duration() {
    let src = format!("{TASK_PREFIX}      kill_timeout = \"10 seconds\"\n    }}\n  }}\n}}\n");
    let e = err(&src, &opts());
    assert_has(&e, "hello.nomad.hcl:8:22: Unsuitable value type; Unsuitable duration value: time: invalid duration \"10 seconds\"");
}

#[test]
fn syntax_error() {
    let e = err("job \"j\" {\n  group \"g\" {\n    count = \n  }\n", &opts());
    assert!(e.starts_with("hello.nomad.hcl:"), "{e}");
    assert_has(&e, "Invalid HCL syntax");
}

#[test]
fn variables_errors() {
    let e = err(
        "variable \"x\" {}\njob \"j\" {\n  name = var.x\n}\n",
        &opts(),
    );
    assert_has(&e, "hello.nomad.hcl:1:1: Required variable not set");
    assert_has(&e, "Unset variable \"x\"");

    let e = err("job \"j\" {\n  name = var.nope\n}\n", &opts());
    assert_has(&e, "hello.nomad.hcl:2:10: Reference to undeclared input variable; An input variable with the name \"nope\" has not been declared.");

    let e = err("job \"j\" {\n  name = \"${local.nope}\"\n}\n", &opts());
    assert_has(
        &e,
        "hello.nomad.hcl:2:13: Reference to undeclared local value",
    );

    let o = ParseOptions {
        var_args: vec!["undeclared=1".into()],
        ..opts()
    };
    let e = err("job \"j\" {}\n", &o);
    assert_has(&e, "Undefined -var variable");
    // Not strict: ignored.
    let o = ParseOptions { strict: false, ..o };
    assert!(parse_job("job \"j\" {}\n", &o).is_ok());

    let o = ParseOptions {
        var_args: vec!["n=abc".into()],
        ..opts()
    };
    let e = err("variable \"n\" {\n  type = number\n}\njob \"j\" {}\n", &o);
    assert_has(&e, "Invalid value for variable");

    let src = "variable \"p\" {\n  default = 80\n  validation {\n    condition     = var.p > 1024\n    error_message = \"Port must be above 1024.\"\n  }\n}\njob \"j\" {}\n";
    let e = err(src, &opts());
    assert_has(
        &e,
        "hello.nomad.hcl:4:21: Invalid value for variable; Port must be above 1024.",
    );

    let o = ParseOptions {
        var_files: vec![("bad.vars.hcl".into(), "x = \n".into())],
        ..opts()
    };
    let e = err("variable \"x\" {\n  default = 1\n}\njob \"j\" {}\n", &o);
    assert_has(&e, "bad.vars.hcl:");
}

#[test]
fn unknown_function_and_duplicates() {
    let e = err("job \"j\" {\n  name = nope(\"x\")\n}\n", &opts());
    assert_has(
        &e,
        "hello.nomad.hcl:2:10: Call to unknown function; There is no function named \"nope\".",
    );
    let src = format!("{TASK_PREFIX}      env = {{ A = \"1\" }}\n      env {{\n        B = \"2\"\n      }}\n    }}\n  }}\n}}\n");
    let e = err(&src, &opts());
    assert_has(&e, "Duplicate env block");
    let e = err(
        "job \"j\" {\n  type = \"batch\"\n  type = \"service\"\n}\n",
        &opts(),
    );
    assert_has(&e, "hello.nomad.hcl:3:3: Invalid HCL syntax");
    assert_has(&e, "redefined attribute");
}

#[test]
fn multiple_errors_are_all_reported() {
    let err = parse_job("job \"j\" {\n  foo = 1\n  bar = 2\n}\n", &opts()).unwrap_err();
    let d = err.diagnostics();
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].starts_with("hello.nomad.hcl:2:3: Unsupported argument"));
    assert!(d[1].starts_with("hello.nomad.hcl:3:3: Unsupported argument"));
}

#[test]
fn json_jobs() {
    let j = parse_job_json(r#"{"Job":{"ID":"a","TaskGroups":[{"Name":"g","Tasks":[{"Name":"t","Driver":"raw_exec"}]}]}}"#).unwrap();
    assert_eq!(j.id, "a");
    assert_eq!(j.task_groups[0].tasks[0].driver, "raw_exec");
    let j = parse_job_json(r#"{"ID":"b","Name":"b"}"#).unwrap();
    assert_eq!(j.id, "b");
    assert!(parse_job_json("{nope").is_err());
    assert!(parse_job_json("[1]").is_err());
}
