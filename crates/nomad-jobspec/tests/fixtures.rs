//! Golden tests: each `tests/fixtures/*.hcl` parses to the Job in the `.json` beside it.
//! Optional `<name>.opts.json`: {"var_args": [..], "var_files": [[path, content]], "env_vars": [[k, v]]}.
//! `UPDATE_FIXTURES=1 cargo test -p nomad-jobspec` rewrites the `.json` files.

use std::path::Path;

use nomad_jobspec::{parse_job, ParseOptions};

#[test]
fn fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let update = std::env::var("UPDATE_FIXTURES").is_ok_and(|v| v == "1");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut count = 0;
    let mut failures = Vec::new();
    for hcl in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
    {
        count += 1;
        let name = hcl.file_name().unwrap().to_string_lossy().to_string();
        let src = std::fs::read_to_string(hcl).unwrap();
        let mut opts = ParseOptions {
            filename: name.clone(),
            base_dir: Some(dir.clone()),
            ..Default::default()
        };
        let opts_path = hcl.with_extension("opts.json");
        if opts_path.exists() {
            let o: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&opts_path).unwrap()).unwrap();
            let strs = |k: &str| -> Vec<String> {
                o[k].as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let pairs = |k: &str| -> Vec<(String, String)> {
                o[k].as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                (
                                    p[0].as_str().unwrap().to_string(),
                                    p[1].as_str().unwrap().to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            opts.var_args = strs("var_args");
            opts.var_files = pairs("var_files");
            opts.env_vars = pairs("env_vars");
        }
        let job = match parse_job(&src, &opts) {
            Ok(j) => j,
            Err(e) => {
                failures.push(format!("{name}: parse error:\n{e}"));
                continue;
            }
        };
        let got = serde_json::to_string_pretty(&job).unwrap() + "\n";
        let json_path = hcl.with_extension("json");
        if update || !json_path.exists() {
            std::fs::write(&json_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&json_path).unwrap();
        if want != got {
            failures.push(format!(
                "{name}: output differs from {} (UPDATE_FIXTURES=1 to rewrite)\n--- got ---\n{got}",
                json_path.display()
            ));
        }
    }
    assert!(count > 0, "no fixtures found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
