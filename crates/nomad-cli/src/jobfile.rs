//! Reads a jobspec from a file or stdin and turns it into a job plus its submission (Nomad `JobGetter`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use nomad_structs::{Job, JobSubmission};

use crate::goflag::FlagSet;

/// Options controlling how a jobspec is read.
#[derive(Debug, Clone, Default)]
pub struct JobGetter {
    /// `-var k=v` values in order.
    pub vars: Vec<String>,
    /// `-var-file` paths in order.
    pub var_files: Vec<String>,
    /// `-json`: the file is JSON (with or without a top-level `Job`).
    pub json: bool,
    /// `-hcl2-strict` (default true).
    pub strict: bool,
}

impl JobGetter {
    /// Adds `-var`, `-var-file`, `-json` and `-hcl2-strict`.
    pub fn register(fs: &mut FlagSet) {
        fs.list("var")
            .list("var-file")
            .bool("json", false)
            .bool("hcl2-strict", true);
    }

    /// Reads the options back from parsed flags.
    pub fn from_flags(fs: &FlagSet) -> Self {
        JobGetter {
            vars: fs.get_list("var"),
            var_files: fs.get_list("var-file"),
            json: fs.get_bool("json"),
            strict: fs.get_bool("hcl2-strict"),
        }
    }

    /// Rejects option combinations Nomad rejects.
    pub fn validate(&self) -> Result<(), String> {
        if self.json && (!self.vars.is_empty() || !self.var_files.is_empty()) {
            return Err("cannot use variables with JSON files.".to_string());
        }
        Ok(())
    }

    /// Reads and parses `jpath` (`-` = stdin). Errors are worded like Nomad's and already carry the
    /// parser's `file:line,col` positions.
    pub fn get(&self, jpath: &str) -> Result<(JobSubmission, Job), String> {
        let (source, name, base_dir) = if jpath == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("Error reading stdin: {e}"))?;
            (s, "stdin".to_string(), std::env::current_dir().ok())
        } else {
            if jpath.is_empty() {
                return Err("Error jobfile path has to be specified.".to_string());
            }
            if jpath.contains("://") {
                return Err(format!(
                    "Error getting jobfile from {jpath:?}: remote job files are not supported"
                ));
            }
            let p = Path::new(jpath);
            let src = std::fs::read_to_string(p).map_err(|e| {
                let abs = std::env::current_dir()
                    .map(|d| d.join(p))
                    .unwrap_or_else(|_| PathBuf::from(p));
                format!(
                    "Error getting jobfile from {jpath:?}: source path error: stat {}: {}",
                    abs.display(),
                    io_text(&e)
                )
            })?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| jpath.to_string());
            let dir = p.parent().map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_path_buf()
                }
            });
            (src, name, dir)
        };

        if self.json {
            let job =
                parse_json_job(&source).map_err(|e| format!("Failed to parse JSON job: {e}"))?;
            let sub = JobSubmission {
                source,
                format: "json".into(),
                variable_flags: None,
                variables: String::new(),
            };
            return Ok((sub, job));
        }

        let mut var_files = Vec::new();
        let mut variables = String::new();
        for f in &self.var_files {
            let content = std::fs::read_to_string(f).map_err(|e| {
                format!(
                    "Error parsing job file from {jpath}:\nfailed to read var file {f:?}: {}",
                    io_text(&e)
                )
            })?;
            if !variables.is_empty() && !variables.ends_with('\n') {
                variables.push('\n');
            }
            variables.push_str(&content);
            var_files.push((f.clone(), content));
        }
        let mut flags = BTreeMap::new();
        for v in &self.vars {
            if let Some((k, val)) = v.split_once('=') {
                flags.insert(k.to_string(), val.to_string());
            }
        }
        let opts = nomad_jobspec::ParseOptions {
            filename: name,
            var_args: self.vars.clone(),
            var_files,
            env_vars: std::env::vars().collect(),
            strict: self.strict,
            base_dir,
        };
        let job = nomad_jobspec::parse_job(&source, &opts)
            .map_err(|e| format!("Error parsing job file from {jpath}:\n{e}"))?;
        let sub = JobSubmission {
            source,
            format: "hcl2".into(),
            variable_flags: if flags.is_empty() { None } else { Some(flags) },
            variables,
        };
        Ok((sub, job))
    }
}

/// Parses a JSON jobspec with or without a top-level `"Job"` wrapper.
pub fn parse_json_job(src: &str) -> Result<Job, String> {
    let v: serde_json::Value = serde_json::from_str(src).map_err(|e| e.to_string())?;
    let inner = match v.get("Job") {
        Some(j) if j.is_object() => j.clone(),
        _ => v,
    };
    serde_json::from_value(inner).map_err(|e| e.to_string())
}

/// Go-like text of common IO errors ("no such file or directory").
pub fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_with_and_without_wrapper() {
        let a = parse_json_job(r#"{"Job":{"ID":"x","TaskGroups":[]}}"#).unwrap();
        let b = parse_json_job(r#"{"ID":"x","TaskGroups":[]}"#).unwrap();
        assert_eq!(a.id, "x");
        assert_eq!(b.id, "x");
    }

    #[test]
    fn json_rejects_vars() {
        let g = JobGetter {
            json: true,
            vars: vec!["a=1".into()],
            ..Default::default()
        };
        assert!(g.validate().is_err());
    }
}
