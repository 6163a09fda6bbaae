//! nomad-jobspec: HCL2 job specifications → `nomad_structs::Job`, as Nomad's `jobspec2` does.
//!
//! The pipeline: hcl-edit parses the file (keeping byte spans for `file:line:col` errors);
//! `variable` / `locals` blocks are resolved (defaults < `NOMAD_VAR_*` < var files < `-var`);
//! then the `job` block is walked with a schema-checking reader that evaluates each
//! attribute with hcl-rs. References with unknown roots (`${NOMAD_ALLOC_ID}`, `${attr.x}`,
//! `${meta.x}`, `${node.x}`, `${env["X"]}`) are kept as literal `${...}` text for the client.
//! The returned job is not canonicalized; unset optional fields stay `None`.

mod eval;
mod funcs;
mod job;
mod reader;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::rc::Rc;

use hcl::Value;
use hcl_edit::structure::Body;
use hcl_edit::Span;

use eval::{Scope, Source, VarType};
use reader::{labels, Dec, Reader};

/// Inputs besides the job file itself.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Used in error messages, e.g. "hello.nomad.hcl".
    pub filename: String,
    /// `-var 'k=v'` arguments.
    pub var_args: Vec<String>,
    /// `-var-file` files as (path, content); `.json` paths are read as JSON.
    pub var_files: Vec<(String, String)>,
    /// The environment; only `NOMAD_VAR_*` entries are used.
    pub env_vars: Vec<(String, String)>,
    /// `-hcl2-strict`: setting undeclared variables is an error.
    pub strict: bool,
    /// Directory `file()` resolves relative paths against.
    pub base_dir: Option<std::path::PathBuf>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            filename: "job.nomad.hcl".into(),
            var_args: Vec::new(),
            var_files: Vec::new(),
            env_vars: Vec::new(),
            strict: true,
            base_dir: None,
        }
    }
}

/// One problem found in a job file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub filename: String,
    /// 1-based line and column, when known.
    pub pos: Option<(usize, usize)>,
    pub summary: String,
    pub detail: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some((l, c)) => write!(f, "{}:{l}:{c}: {}", self.filename, self.summary)?,
            None => write!(f, "{}: {}", self.filename, self.summary)?,
        }
        if !self.detail.is_empty() {
            write!(f, "; {}", self.detail)?;
        }
        Ok(())
    }
}

/// Errors from parsing a job specification.
#[derive(Debug, thiserror::Error)]
pub enum JobspecError {
    /// HCL syntax or decoding problems, in source order.
    #[error("{}", join_diags(.0))]
    Hcl(Vec<Diagnostic>),
    /// A `-json` job that is not valid JSON or not a job.
    #[error("Failed to parse JSON job: {0}")]
    Json(String),
}

fn join_diags(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl JobspecError {
    /// Every problem as its own `file:line:col: summary; detail` line.
    pub fn diagnostics(&self) -> Vec<String> {
        match self {
            JobspecError::Hcl(d) => d.iter().map(ToString::to_string).collect(),
            JobspecError::Json(m) => vec![format!("Failed to parse JSON job: {m}")],
        }
    }
}

/// Parses an HCL2 job specification.
pub fn parse_job(src: &str, opts: &ParseOptions) -> Result<nomad_structs::Job, JobspecError> {
    let _guard = funcs::BaseDirGuard::set(opts.base_dir.clone());
    let body = parse_hcl(&opts.filename, src)?;
    let d = Dec {
        src: Source {
            filename: &opts.filename,
            text: src,
        },
        diags: Default::default(),
    };
    let base = Rc::new(Scope::new());
    let top = Reader::new(&d, &body, base.clone());

    // Variables.
    let mut decls: Vec<VarDecl> = Vec::new();
    for b in top.blocks("variable") {
        let Some(name) = labels(&d, &b, &["name"]).and_then(|l| l.into_iter().next()) else {
            continue;
        };
        if decls.iter().any(|v| v.name == name) {
            d.err(
                b.ident_span.clone(),
                "Duplicate variable",
                format!("Duplicate {name} variable definition found."),
            );
            continue;
        }
        decls.push(decl_variable(&d, &top, &b, name));
    }
    for b in top.blocks("variables") {
        let r = top.of(&b);
        for a in r.all_attrs() {
            let name = a.key.as_str().to_string();
            if decls.iter().any(|v| v.name == name) {
                d.err(
                    a.key.span(),
                    "Duplicate variable",
                    format!("Duplicate {name} variable definition found."),
                );
                continue;
            }
            let default = r.eval(&a.value);
            decls.push(VarDecl {
                name,
                ty: None,
                default,
                span: a.key.span(),
                validations: Vec::new(),
            });
        }
        r.finish();
    }
    let values = collect_var_values(&d, &decls, opts);
    let mut scope = Scope::new();
    scope.var_names = decls.iter().map(|v| v.name.clone()).collect();
    scope.set_vars(values.clone());
    run_validations(&d, &decls, &values);

    // Locals, in dependency order.
    let mut local_exprs: Vec<(
        String,
        &hcl_edit::expr::Expression,
        Option<std::ops::Range<usize>>,
    )> = Vec::new();
    for b in top.blocks("locals") {
        reader::no_labels(&d, &b);
        let r = top.of(&b);
        for a in r.all_attrs() {
            let name = a.key.as_str().to_string();
            if local_exprs.iter().any(|(n, _, _)| *n == name) {
                d.err(
                    a.key.span(),
                    "Duplicate local value",
                    format!("A local value named {name:?} was already defined."),
                );
                continue;
            }
            local_exprs.push((name, &a.value, a.key.span()));
        }
        r.finish();
    }
    scope.local_names = local_exprs.iter().map(|(n, _, _)| n.clone()).collect();
    let mut locals: BTreeMap<String, Value> = BTreeMap::new();
    let mut pending: Vec<usize> = (0..local_exprs.len()).collect();
    while !pending.is_empty() {
        let ready: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&i| {
                let mut refs = Vec::new();
                eval::local_refs(local_exprs[i].1, &mut refs);
                refs.iter()
                    .all(|r| locals.contains_key(r) || !scope.local_names.contains(r))
            })
            .collect();
        let batch = if ready.is_empty() {
            // A cycle: evaluate the rest anyway so the user gets an error at the reference.
            let (name, _, span) = &local_exprs[pending[0]];
            d.err(
                span.clone(),
                "Cycle in local values",
                format!("The local value {name:?} depends on itself."),
            );
            break;
        } else {
            ready
        };
        for i in &batch {
            scope.set_locals(&locals);
            let (name, e, _) = &local_exprs[*i];
            match scope.eval(&d.src, e) {
                Ok(v) => {
                    locals.insert(name.clone(), v);
                }
                Err(diag) => {
                    d.push(diag);
                    locals.insert(name.clone(), Value::Null);
                }
            }
        }
        pending.retain(|i| !batch.contains(i));
    }
    scope.set_locals(&locals);

    // The job.
    let scope = Rc::new(scope);
    let jobs = top.blocks("job");
    let mut job = None;
    if jobs.is_empty() && d.diags.borrow().is_empty() {
        d.err(
            None,
            "Missing job block",
            "A job file must contain exactly one \"job\" block.",
        );
    }
    for (i, jb) in jobs.into_iter().enumerate() {
        if i > 0 {
            d.err(
                jb.ident_span.clone(),
                "Duplicate job block",
                "Only one \"job\" block is allowed in a job file.",
            );
            continue;
        }
        let jb = reader::BlockItem {
            scope: scope.clone(),
            ..jb
        };
        job = Some(job::decode_job(&top, &jb));
    }
    top.finish();
    let diags = d.diags.into_inner();
    if !diags.is_empty() {
        return Err(JobspecError::Hcl(diags));
    }
    job.ok_or_else(|| {
        JobspecError::Hcl(vec![Diagnostic {
            filename: opts.filename.clone(),
            pos: None,
            summary: "Missing job block".into(),
            detail: String::new(),
        }])
    })
}

/// Parses a JSON job (`nomad job run -json`), with or without a top-level `"Job"` key.
pub fn parse_job_json(src: &str) -> Result<nomad_structs::Job, JobspecError> {
    let v: serde_json::Value =
        serde_json::from_str(src).map_err(|e| JobspecError::Json(e.to_string()))?;
    let v = match v {
        serde_json::Value::Object(mut m)
            if m.contains_key("Job") && m.get("Job").is_some_and(|j| j.is_object()) =>
        {
            m.remove("Job").unwrap_or_default()
        }
        other => other,
    };
    if !v.is_object() {
        return Err(JobspecError::Json("expected a JSON object".into()));
    }
    serde_json::from_value(v).map_err(|e| JobspecError::Json(e.to_string()))
}

fn parse_hcl(filename: &str, src: &str) -> Result<Body, JobspecError> {
    hcl_edit::parser::parse_body(src).map_err(|e| {
        let loc = e.location();
        JobspecError::Hcl(vec![Diagnostic {
            filename: filename.to_string(),
            pos: Some((loc.line(), loc.column())),
            summary: "Invalid HCL syntax".into(),
            detail: e.message().to_string(),
        }])
    })
}

// ---------------------------------------------------------------------------------------------
// Variables

/// A value set in a var file: name, value, position of the name.
type Assigned = (String, Value, Option<(usize, usize)>);

struct VarDecl {
    name: String,
    ty: Option<VarType>,
    default: Option<Value>,
    span: Option<std::ops::Range<usize>>,
    validations: Vec<(
        hcl_edit::expr::Expression,
        String,
        Option<std::ops::Range<usize>>,
    )>,
}

fn decl_variable(d: &Dec, top: &Reader, b: &reader::BlockItem, name: String) -> VarDecl {
    let r = top.of(b);
    let _ = r.string("description");
    let mut ty = None;
    if let Some(a) = r.attr("type") {
        match VarType::parse(&a.value) {
            Ok(t) => ty = Some(t),
            Err(m) => d.err(a.value.span(), "Invalid type specification", m),
        }
    }
    let mut default = None;
    if let Some(a) = r.attr("default") {
        if let Some(v) = r.eval(&a.value) {
            match &ty {
                Some(t) => match t.convert(v) {
                    Ok(v) => default = Some(v),
                    Err(e) => d.err(
                        a.value.span(),
                        "Invalid default value for variable",
                        format!("This default value is not compatible with the variable's type constraint: {e}."),
                    ),
                },
                None => default = Some(v),
            }
        }
    }
    let mut validations = Vec::new();
    for vb in r.blocks("validation") {
        reader::no_labels(d, &vb);
        let vr = r.of(&vb);
        let cond = vr.attr("condition").map(|a| a.value.clone());
        let msg = vr.string("error_message");
        match (&cond, &msg) {
            (Some(_), Some(m)) if m.trim().is_empty() => d.err(
                vr.attr("error_message").and_then(|a| a.value.span()),
                "Invalid validation error message",
                "An empty string is not a valid nor useful error message.",
            ),
            (None, _) => d.err(
                vb.ident_span.clone(),
                "Missing required argument",
                "The argument \"condition\" is required, but no definition was found.",
            ),
            (_, None) => d.err(
                vb.ident_span.clone(),
                "Missing required argument",
                "The argument \"error_message\" is required, but no definition was found.",
            ),
            _ => {}
        }
        if let (Some(c), Some(m)) = (cond, msg) {
            validations.push((c, m, vb.ident_span.clone()));
        }
        vr.finish();
    }
    r.finish();
    if ty.is_none() {
        ty = default.as_ref().map(infer_type);
    }
    VarDecl {
        name,
        ty,
        default,
        span: b.ident_span.clone(),
        validations,
    }
}

/// The implied type of a default value: primitives only, so `-var` strings convert.
fn infer_type(v: &Value) -> VarType {
    match v {
        Value::String(_) => VarType::String,
        Value::Number(_) => VarType::Number,
        Value::Bool(_) => VarType::Bool,
        _ => VarType::Any,
    }
}

fn collect_var_values(d: &Dec, decls: &[VarDecl], opts: &ParseOptions) -> BTreeMap<String, Value> {
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    for v in decls {
        if let Some(def) = &v.default {
            values.insert(v.name.clone(), def.clone());
        }
    }
    let find = |name: &str| decls.iter().find(|v| v.name == name);
    let from_string = |name: &str, raw: &str, from: &str| -> Option<Value> {
        let decl = find(name)?;
        let parsed = if VarType::takes_literal_string(decl.ty.as_ref()) {
            Ok(Value::String(raw.to_string()))
        } else {
            hcl_edit::parser::parse_expr(raw)
                .map_err(|e| e.message().to_string())
                .and_then(|e| {
                    Scope::new()
                        .eval(
                            &Source {
                                filename: "",
                                text: raw,
                            },
                            &e,
                        )
                        .map_err(|d| d.detail)
                })
        };
        let converted = parsed.and_then(|v| match &decl.ty {
            Some(t) => t.convert(v),
            None => Ok(v),
        });
        match converted {
            Ok(v) => Some(v),
            Err(e) => {
                d.err(
                    None,
                    "Invalid value for variable",
                    format!("The value for {name} {from} is not compatible with the variable's type constraint: {e}."),
                );
                None
            }
        }
    };
    // NOMAD_VAR_<name> from the environment (undeclared ones are ignored, as Nomad does).
    for (k, v) in &opts.env_vars {
        let Some(name) = k.strip_prefix("NOMAD_VAR_") else {
            continue;
        };
        if name.is_empty() || find(name).is_none() {
            continue;
        }
        if let Some(val) = from_string(name, v, "from the environment") {
            values.insert(name.to_string(), val);
        }
    }
    // -var-file files.
    for (path, content) in &opts.var_files {
        let vd = Dec {
            src: Source {
                filename: path,
                text: content,
            },
            diags: Default::default(),
        };
        let mut assigned: Vec<Assigned> = Vec::new();
        if path.ends_with(".json") {
            match serde_json::from_str::<serde_json::Value>(content) {
                Ok(serde_json::Value::Object(m)) => {
                    assigned.extend(m.into_iter().map(|(k, v)| (k, eval::from_json(&v), None)));
                }
                Ok(_) => vd.err(
                    None,
                    "Invalid variable file",
                    "A JSON variable file must contain an object.",
                ),
                Err(e) => vd.err(Some(0..0), "Invalid JSON variable file", e.to_string()),
            }
        } else {
            match hcl_edit::parser::parse_body(content) {
                Ok(body) => {
                    let r = Reader::new(&vd, &body, Rc::new(Scope::new()));
                    for b in r.blocks("variable") {
                        let name = b.labels.first().map(|l| l.0.clone()).unwrap_or_default();
                        vd.err(
                            b.ident_span.clone(),
                            "Variable declaration in a .var file",
                            format!("A .var file is used to assign values to variables that have already been declared in job files, not to declare new variables. To declare variable {name:?}, place this block in one of your job files\n\nTo set a value for this variable in {path}, use the definition syntax instead:\n    {name} = <value>"),
                        );
                    }
                    for a in r.all_attrs() {
                        if let Some(v) = r.eval(&a.value) {
                            assigned.push((
                                a.key.as_str().to_string(),
                                v,
                                a.key.span().map(|s| vd.src.line_col(s.start)),
                            ));
                        }
                    }
                    r.finish();
                }
                Err(e) => {
                    let loc = e.location();
                    vd.push(Diagnostic {
                        filename: path.clone(),
                        pos: Some((loc.line(), loc.column())),
                        summary: "Invalid HCL syntax".into(),
                        detail: e.message().to_string(),
                    });
                }
            }
        }
        for (name, v, pos) in assigned {
            let Some(decl) = find(&name) else {
                if opts.strict {
                    vd.push(Diagnostic {
                        filename: path.clone(),
                        pos,
                        summary: "Undefined variable".into(),
                        detail: format!("A {name:?} variable was set but was not found in known variables. To declare variable {name:?}, place this block in your job files"),
                    });
                }
                continue;
            };
            let conv = match &decl.ty {
                Some(t) => t.convert(v),
                None => Ok(v),
            };
            match conv {
                Ok(v) => {
                    values.insert(name, v);
                }
                Err(e) => vd.push(Diagnostic {
                    filename: path.clone(),
                    pos,
                    summary: "Invalid value for variable".into(),
                    detail: format!("The value for {name} is not compatible with the variable's type constraint: {e}."),
                }),
            }
        }
        for diag in vd.diags.into_inner() {
            d.push(diag);
        }
    }
    // -var k=v arguments.
    for arg in &opts.var_args {
        let (name, raw) = match arg.split_once('=') {
            Some((k, v)) => (k.trim(), v),
            None => (arg.trim(), ""),
        };
        if name.is_empty() {
            continue;
        }
        if find(name).is_none() {
            if opts.strict {
                d.err(
                    None,
                    "Undefined -var variable",
                    format!("A {name:?} variable was passed in the command line but was not found in known variables. To declare variable {name:?}, place this block in your job file"),
                );
            }
            continue;
        }
        if let Some(val) = from_string(name, raw, "from arguments") {
            values.insert(name.to_string(), val);
        }
    }
    for v in decls {
        if !values.contains_key(&v.name) {
            d.err(
                v.span.clone(),
                "Required variable not set",
                format!("Unset variable {:?}: a used variable must be set or have a default value; see https://developer.hashicorp.com/nomad/docs/job-specification/hcl2/variables for details.", v.name),
            );
        }
    }
    values
}

fn run_validations(d: &Dec, decls: &[VarDecl], values: &BTreeMap<String, Value>) {
    for v in decls {
        let Some(val) = values.get(&v.name) else {
            continue;
        };
        for (cond, msg, span) in &v.validations {
            let mut vs = Scope::new();
            vs.var_names = HashSet::from([v.name.clone()]);
            vs.set_vars(BTreeMap::from([(v.name.clone(), val.clone())]));
            match vs.eval(&d.src, cond) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => d.err(
                    cond.span(),
                    "Invalid value for variable",
                    format!(
                        "{msg}\n\nThis was checked by the validation rule at {}.",
                        d.pos_string(span)
                    ),
                ),
                Ok(other) => d.err(
                    cond.span(),
                    "Invalid variable validation result",
                    format!(
                        "Invalid validation condition result value: bool required, got {}.",
                        eval::type_name(&other)
                    ),
                ),
                Err(e) => d.push(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_of(src: &str, opts: &ParseOptions) -> BTreeMap<String, String> {
        parse_job(src, opts)
            .unwrap_or_else(|e| panic!("{e}"))
            .meta
            .unwrap_or_default()
    }

    #[test]
    fn functions() {
        let src = r#"
locals {
  m = { a = 1, b = 2 }
}
job "f" {
  meta {
    upper   = upper("a")
    fmt     = format("%s-%03d-%.1f-%v", "x", 7, 1.25, true)
    split   = join("|", split(",", "a,b,c"))
    len     = length([1, 2, 3])
    lookup  = lookup(local.m, "b", 0)
    missing = lookup(local.m, "z", "dflt")
    elem    = element(["a", "b"], 3)
    has     = contains(["a"], "a")
    coal    = coalesce("", "x")
    keys    = join(",", keys(local.m))
    vals    = jsonencode(values(local.m))
    rep     = replace("a-b-c", "-", "_")
    rre     = regex_replace("abc123", "([a-z]+)([0-9]+)", "$2$1")
    trim    = trimsuffix(trimprefix("  xay  ", "  x"), "y  ")
    sub     = substr("hello", 1, 3)
    nums    = "${abs(-2)} ${min(3, 1)} ${max(3, 1)} ${ceil(1.2)} ${floor(1.8)}"
    conv    = "${tostring(1)} ${tonumber("2") + 1} ${tobool("true")}"
    coll    = jsonencode([tolist(["a"]), toset(["a", "a"]), tomap({ x = "y" })])
    json    = jsondecode("{\"k\": [1, 2]}").k[1]
    range   = jsonencode(range(3))
    rev     = jsonencode(reverse([1, 2]))
    sort    = jsonencode(sort(["b", "a"]))
    flat    = jsonencode(distinct(flatten([[1, 2], [2, [3]]])))
    b64     = base64decode(base64encode("hi"))
    merged  = jsonencode(merge(local.m, { c = 3 }))
    cc      = jsonencode(concat([1], [2]))
    cond    = 1 > 2 ? "yes" : "no"
    forx    = join(",", [for k, v in local.m : "${k}=${v}" if v > 1])
    tmpl    = "%{ for x in ["a", "b"] }${x};%{ endfor }"
  }
}
"#;
        let m = meta_of(src, &ParseOptions::default());
        let want = [
            ("upper", "A"),
            ("fmt", "x-007-1.2-true"),
            ("split", "a|b|c"),
            ("len", "3"),
            ("lookup", "2"),
            ("missing", "dflt"),
            ("elem", "b"),
            ("has", "true"),
            ("coal", "x"),
            ("keys", "a,b"),
            ("vals", "[1,2]"),
            ("rep", "a_b_c"),
            ("rre", "123abc"),
            ("trim", "a"),
            ("sub", "ell"),
            ("nums", "2 1 3 2 1"),
            ("conv", "1 3 true"),
            ("coll", r#"[["a"],["a"],{"x":"y"}]"#),
            ("json", "2"),
            ("range", "[0,1,2]"),
            ("rev", "[2,1]"),
            ("sort", r#"["a","b"]"#),
            ("flat", "[1,2,3]"),
            ("b64", "hi"),
            ("merged", r#"{"a":1,"b":2,"c":3}"#),
            ("cc", "[1,2]"),
            ("cond", "no"),
            ("forx", "b=2"),
            ("tmpl", "a;b;"),
        ];
        for (k, v) in want {
            assert_eq!(m.get(k).map(String::as_str), Some(v), "meta {k}");
        }
    }

    #[test]
    fn variable_precedence() {
        let src = "variable \"x\" {\n  default = \"default\"\n}\njob \"j\" {\n  meta {\n    x = var.x\n  }\n}\n";
        let get = |o: &ParseOptions| meta_of(src, o)["x"].clone();
        let mut o = ParseOptions::default();
        assert_eq!(get(&o), "default");
        o.env_vars = vec![("NOMAD_VAR_x".into(), "env".into())];
        assert_eq!(get(&o), "env");
        o.var_files = vec![("a.hcl".into(), "x = \"file\"\n".into())];
        assert_eq!(get(&o), "file");
        o.var_files
            .push(("b.json".into(), "{\"x\": \"json\"}".into()));
        assert_eq!(get(&o), "json");
        o.var_args = vec!["x=arg".into()];
        assert_eq!(get(&o), "arg");
    }

    #[test]
    fn typed_var_args() {
        let src = "variable \"l\" {\n  type = list(number)\n}\nvariable \"b\" {\n  type = bool\n}\nvariable \"m\" {\n  type = map(string)\n}\njob \"j\" {\n  meta {\n    l = jsonencode(var.l)\n    b = var.b\n    m = var.m.k\n  }\n}\n";
        let o = ParseOptions {
            var_args: vec!["l=[1, 2]".into(), "b=true".into(), "m={ k = \"v\" }".into()],
            ..Default::default()
        };
        let m = meta_of(src, &o);
        assert_eq!(m["l"], "[1,2]");
        assert_eq!(m["b"], "true");
        assert_eq!(m["m"], "v");
    }

    #[test]
    fn line_col() {
        let s = Source {
            filename: "f",
            text: "ab\ncdé\nx",
        };
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(4), (2, 2));
        assert_eq!(s.line_col(8), (3, 1));
    }
}
