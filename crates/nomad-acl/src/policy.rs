//! ACL policy rules: the model, and parsing of the HCL or JSON text that
//! `ACLPolicy.Rules` carries (`acl/policy.go`).
//!
//! Grammar (HCL; the JSON form nests labels as object keys, as HCL1 JSON does):
//!
//! ```hcl
//! namespace "default" {            # name may contain `*` globs
//!   policy       = "read"          # deny | read | write | scale
//!   capabilities = ["alloc-exec"]  # see `capability`
//!   variables {
//!     path "project/*" { capabilities = ["read", "write"] }
//!   }
//! }
//! node_pool "prod-*" { policy = "write" }     # or capabilities: read write delete deny
//! host_volume "data" { policy = "read" }      # or capabilities: mount-readonly mount-readwrite deny
//! agent    { policy = "read" }                # deny | read | write
//! node     { policy = "write" }
//! operator { policy = "read" }
//! quota    { policy = "read" }
//! plugin   { policy = "list" }                # deny | read | list | write
//! ```
//!
//! After parsing, every rule's `capabilities` holds the explicit capabilities
//! followed by the expansion of its `policy` shorthand (and implied
//! host-volume capabilities), exactly as Nomad stores them in `RulesJSON`.

use crate::capability;
use crate::error::PolicyError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A coarse policy level (`policy = "..."`) for the non-namespaced scopes.
///
/// `List` is meaningful for `plugin` only. `Scale` is accepted by Nomad's
/// validation for every scope but grants nothing outside namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Deny,
    Read,
    Write,
    List,
    Scale,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Deny => "deny",
            Level::Read => "read",
            Level::Write => "write",
            Level::List => "list",
            Level::Scale => "scale",
        }
    }

    /// Parses a level name (case-sensitive, as Nomad).
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "deny" => Some(Level::Deny),
            "read" => Some(Level::Read),
            "write" => Some(Level::Write),
            "list" => Some(Level::List),
            "scale" => Some(Level::Scale),
            _ => None,
        }
    }

    /// Rank used when merging: deny > write > read > list; scale ranks as
    /// "nothing" (Nomad's `maxPrivilege`).
    pub(crate) fn rank(self) -> u8 {
        match self {
            Level::Deny => 4,
            Level::Write => 3,
            Level::Read => 2,
            Level::List => 1,
            Level::Scale => 0,
        }
    }
}

/// A parsed policy. Serializes in the shape of Nomad's `RulesJSON`
/// (`{"Namespaces":[{"Name","Policy","Capabilities","Variables"}],"NodePools",
/// "HostVolumes","Agent":{"Policy"},"Node","Operator","Quota","Plugin"}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    #[serde(rename = "Namespaces", with = "null_vec")]
    pub namespaces: Vec<NamespaceRule>,
    #[serde(rename = "NodePools", with = "null_vec")]
    pub node_pools: Vec<NodePoolRule>,
    #[serde(rename = "HostVolumes", with = "null_vec")]
    pub host_volumes: Vec<HostVolumeRule>,
    #[serde(rename = "Agent", with = "level_obj")]
    pub agent: Option<Level>,
    #[serde(rename = "Node", with = "level_obj")]
    pub node: Option<Level>,
    #[serde(rename = "Operator", with = "level_obj")]
    pub operator: Option<Level>,
    #[serde(rename = "Quota", with = "level_obj")]
    pub quota: Option<Level>,
    #[serde(rename = "Plugin", with = "level_obj")]
    pub plugin: Option<Level>,
}

/// `namespace "<name>" { ... }`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NamespaceRule {
    /// Namespace name; may contain `*` globs.
    #[serde(rename = "Name")]
    pub name: String,
    /// The `policy` shorthand as written (`deny|read|write|scale`).
    #[serde(rename = "Policy", with = "empty_string")]
    pub policy: Option<String>,
    /// Explicit capabilities followed by the shorthand's expansion.
    #[serde(rename = "Capabilities", with = "null_vec")]
    pub capabilities: Vec<String>,
    /// Variables rules in Nomad's JSON shape:
    /// `{"Paths":[{"PathSpec":"a/*","Capabilities":["read","list"]}]}`.
    #[serde(rename = "Variables")]
    pub variables: Option<Value>,
}

impl NamespaceRule {
    /// The `(path spec, capabilities)` pairs of the variables block.
    pub fn variable_paths(&self) -> Vec<(String, Vec<String>)> {
        let Some(paths) = self
            .variables
            .as_ref()
            .and_then(|v| v.get("Paths"))
            .and_then(Value::as_array)
        else {
            return Vec::new();
        };
        paths
            .iter()
            .filter_map(|p| {
                let spec = p.get("PathSpec")?.as_str()?.to_string();
                let caps = p
                    .get("Capabilities")
                    .and_then(Value::as_array)
                    .map(|caps| {
                        caps.iter()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                Some((spec, caps))
            })
            .collect()
    }
}

/// `node_pool "<name>" { ... }`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodePoolRule {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Policy", with = "empty_string")]
    pub policy: Option<String>,
    #[serde(rename = "Capabilities", with = "null_vec")]
    pub capabilities: Vec<String>,
}

/// `host_volume "<name>" { ... }`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HostVolumeRule {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Policy", with = "empty_string")]
    pub policy: Option<String>,
    #[serde(rename = "Capabilities", with = "null_vec")]
    pub capabilities: Vec<String>,
}

/// Parses policy rules strictly, as Nomad does when a policy is written:
/// unknown or duplicate top-level keys are refused
/// (`Invalid or duplicate policy keys: a, b`).
///
/// Empty rules give an empty policy; non-empty rules granting nothing give
/// `Invalid policy: <rules>`.
pub fn parse_policy(rules: &str) -> Result<Policy, PolicyError> {
    parse(rules, true)
}

/// Parses policy rules leniently (unknown top-level keys ignored), as Nomad
/// does when evaluating stored policies.
pub fn parse_policy_lenient(rules: &str) -> Result<Policy, PolicyError> {
    parse(rules, false)
}

// ---------------------------------------------------------------------------
// A small syntax tree shared by the HCL and JSON front ends.

#[derive(Debug)]
enum Node {
    Str(String),
    List(Vec<Node>),
    Obj(Vec<Entry>),
    Other(&'static str),
}

#[derive(Debug)]
struct Entry {
    key: String,
    labels: Vec<String>,
    value: Node,
}

/// Keys whose blocks carry one label (the JSON form nests it as a key).
const LABELED: &[&str] = &["namespace", "node_pool", "host_volume", "path"];

fn hcl_body(body: hcl::Body) -> Vec<Entry> {
    body.into_iter()
        .map(|structure| match structure {
            hcl::Structure::Attribute(attr) => Entry {
                key: attr.key.to_string(),
                labels: Vec::new(),
                value: hcl_expr(attr.expr),
            },
            hcl::Structure::Block(block) => Entry {
                key: block.identifier.to_string(),
                labels: block
                    .labels
                    .iter()
                    .map(|l| l.as_str().to_string())
                    .collect(),
                value: Node::Obj(hcl_body(block.body)),
            },
        })
        .collect()
}

fn hcl_expr(expr: hcl::Expression) -> Node {
    use hcl::Expression as E;
    match expr {
        E::String(s) => Node::Str(s),
        E::TemplateExpr(t) => Node::Str(match *t {
            hcl::TemplateExpr::QuotedString(s) => s,
            hcl::TemplateExpr::Heredoc(h) => h.template,
        }),
        E::Array(items) => Node::List(items.into_iter().map(hcl_expr).collect()),
        E::Object(obj) => Node::Obj(
            obj.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        hcl::ObjectKey::Identifier(i) => i.to_string(),
                        hcl::ObjectKey::Expression(E::String(s)) => s,
                        hcl::ObjectKey::Expression(other) => other.to_string(),
                        other => other.to_string(),
                    };
                    Entry {
                        key,
                        labels: Vec::new(),
                        value: hcl_expr(v),
                    }
                })
                .collect(),
        ),
        E::Parenthesis(inner) => hcl_expr(*inner),
        E::Null => Node::Other("null"),
        E::Bool(_) => Node::Other("bool"),
        E::Number(_) => Node::Other("number"),
        _ => Node::Other("expression"),
    }
}

fn json_obj(map: serde_json::Map<String, Value>) -> Vec<Entry> {
    let mut out = Vec::new();
    for (key, value) in map {
        let labeled = LABELED.contains(&key.to_ascii_lowercase().as_str());
        match value {
            Value::Object(inner) if labeled => {
                for (label, body) in inner {
                    out.push(Entry {
                        key: key.clone(),
                        labels: vec![label],
                        value: json_value(body),
                    });
                }
            }
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                // HCL1 JSON: a list of objects is a list of blocks.
                for item in items {
                    let Value::Object(inner) = item else { continue };
                    if labeled {
                        for (label, body) in inner {
                            out.push(Entry {
                                key: key.clone(),
                                labels: vec![label],
                                value: json_value(body),
                            });
                        }
                    } else {
                        out.push(Entry {
                            key: key.clone(),
                            labels: Vec::new(),
                            value: Node::Obj(json_obj(inner)),
                        });
                    }
                }
            }
            other => out.push(Entry {
                key,
                labels: Vec::new(),
                value: json_value(other),
            }),
        }
    }
    out
}

fn json_value(v: Value) -> Node {
    match v {
        Value::String(s) => Node::Str(s),
        Value::Array(items) => Node::List(items.into_iter().map(json_value).collect()),
        Value::Object(map) => Node::Obj(json_obj(map)),
        Value::Null => Node::Other("null"),
        Value::Bool(_) => Node::Other("bool"),
        Value::Number(_) => Node::Other("number"),
    }
}

fn parse_tree(rules: &str) -> Result<Vec<Entry>, PolicyError> {
    if rules.trim_start().starts_with('{') {
        let value: Value = serde_json::from_str(rules).map_err(|e| {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            PolicyError::Syntax {
                line: e.line(),
                column: e.column(),
                message: full.strip_suffix(&suffix).unwrap_or(&full).to_string(),
            }
        })?;
        match value {
            Value::Object(map) => Ok(json_obj(map)),
            _ => Err(PolicyError::Decode(
                "error parsing: root should be an object".into(),
            )),
        }
    } else {
        match hcl::parse(rules) {
            Ok(body) => Ok(hcl_body(body)),
            Err(e) => {
                // HCL1 (what Nomad uses) accepts one-line forms HCL2 refuses,
                // such as `node { policy = "read" } agent { policy = "read" }`
                // or several attributes on one line. Retry with a small
                // HCL1-style parser; report the HCL2 error if that fails too.
                if let Some(entries) = hcl1::parse(rules) {
                    return Ok(entries);
                }
                Err(match e {
                    hcl::Error::Parse(pe) => PolicyError::Syntax {
                        line: pe.location().line(),
                        column: pe.location().column(),
                        message: pe.message().to_string(),
                    },
                    other => PolicyError::Decode(other.to_string()),
                })
            }
        }
    }
}

/// A lenient parser for the HCL1 subset policies use: `key label* { body }`,
/// `key = value`, values being strings, lists and objects; items separated
/// by newlines, commas or nothing; `#`, `//` and `/* */` comments.
mod hcl1 {
    use super::{Entry, Node};

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Ident(String),
        Str(String),
        Other,
        LBrace,
        RBrace,
        LBrack,
        RBrack,
        Eq,
        Comma,
    }

    fn lex(src: &str) -> Option<Vec<Tok>> {
        let mut out = Vec::new();
        let mut chars = src.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    chars.next();
                }
                '#' => while chars.next_if(|&c| c != '\n').is_some() {},
                '/' => {
                    chars.next();
                    match chars.next()? {
                        '/' => while chars.next_if(|&c| c != '\n').is_some() {},
                        '*' => {
                            let mut prev = ' ';
                            loop {
                                let c = chars.next()?;
                                if prev == '*' && c == '/' {
                                    break;
                                }
                                prev = c;
                            }
                        }
                        _ => return None,
                    }
                }
                '"' => {
                    chars.next();
                    let mut s = String::new();
                    loop {
                        match chars.next()? {
                            '"' => break,
                            '\\' => match chars.next()? {
                                'n' => s.push('\n'),
                                't' => s.push('\t'),
                                'r' => s.push('\r'),
                                other => s.push(other),
                            },
                            '\n' => return None,
                            c => s.push(c),
                        }
                    }
                    out.push(Tok::Str(s));
                }
                '{' | '}' | '[' | ']' | '=' | ',' => {
                    chars.next();
                    out.push(match c {
                        '{' => Tok::LBrace,
                        '}' => Tok::RBrace,
                        '[' => Tok::LBrack,
                        ']' => Tok::RBrack,
                        '=' => Tok::Eq,
                        _ => Tok::Comma,
                    });
                }
                c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => {
                    let mut s = String::new();
                    while let Some(c) = chars
                        .next_if(|&c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
                    {
                        s.push(c);
                    }
                    let first = s.chars().next()?;
                    if first.is_ascii_alphabetic() || first == '_' {
                        if s == "true" || s == "false" {
                            out.push(Tok::Other);
                        } else {
                            out.push(Tok::Ident(s));
                        }
                    } else {
                        out.push(Tok::Other);
                    }
                }
                _ => return None,
            }
        }
        Some(out)
    }

    struct P {
        toks: Vec<Tok>,
        pos: usize,
        depth: usize,
    }

    /// Nesting beyond this is refused rather than risking the stack.
    const MAX_DEPTH: usize = 64;

    impl P {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.pos)
        }
        fn next(&mut self) -> Option<Tok> {
            let t = self.toks.get(self.pos).cloned();
            self.pos += 1;
            t
        }

        fn body(&mut self, nested: bool) -> Option<Vec<Entry>> {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return None;
            }
            let out = self.body_inner(nested);
            self.depth -= 1;
            out
        }

        fn body_inner(&mut self, nested: bool) -> Option<Vec<Entry>> {
            let mut entries = Vec::new();
            loop {
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                }
                match self.peek() {
                    None if !nested => return Some(entries),
                    Some(Tok::RBrace) if nested => {
                        self.pos += 1;
                        return Some(entries);
                    }
                    _ => {}
                }
                let key = match self.next()? {
                    Tok::Ident(s) | Tok::Str(s) => s,
                    _ => return None,
                };
                let mut labels = Vec::new();
                loop {
                    match self.next()? {
                        Tok::Ident(s) | Tok::Str(s) => labels.push(s),
                        Tok::Eq if labels.is_empty() => {
                            let value = self.value()?;
                            entries.push(Entry { key, labels, value });
                            break;
                        }
                        Tok::LBrace => {
                            let value = Node::Obj(self.body(true)?);
                            entries.push(Entry { key, labels, value });
                            break;
                        }
                        _ => return None,
                    }
                }
            }
        }

        fn value(&mut self) -> Option<Node> {
            match self.next()? {
                Tok::Str(s) => Some(Node::Str(s)),
                Tok::Other => Some(Node::Other("literal")),
                Tok::LBrace => Some(Node::Obj(self.body(true)?)),
                Tok::LBrack => {
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return None;
                    }
                    let list = self.list();
                    self.depth -= 1;
                    list
                }
                _ => None,
            }
        }

        fn list(&mut self) -> Option<Node> {
            let mut items = Vec::new();
            loop {
                if self.peek() == Some(&Tok::RBrack) {
                    self.pos += 1;
                    return Some(Node::List(items));
                }
                items.push(self.value()?);
                match self.next()? {
                    Tok::Comma => {}
                    Tok::RBrack => return Some(Node::List(items)),
                    _ => return None,
                }
            }
        }
    }

    /// `None` when the text is not in the supported subset.
    pub(super) fn parse(src: &str) -> Option<Vec<Entry>> {
        let mut p = P {
            toks: lex(src)?,
            pos: 0,
            depth: 0,
        };
        p.body(false)
    }
}

// ---------------------------------------------------------------------------
// Decoding the tree into a Policy.

fn key_is(entry: &Entry, key: &str) -> bool {
    entry.key.eq_ignore_ascii_case(key)
}

fn block_entries<'a>(entry: &'a Entry, what: &str) -> Result<&'a [Entry], PolicyError> {
    match &entry.value {
        Node::Obj(entries) => Ok(entries),
        Node::List(items) if items.is_empty() => Ok(&[]),
        other => Err(PolicyError::Decode(format!(
            "{what}: expected an object, got {}",
            kind(other)
        ))),
    }
}

fn kind(node: &Node) -> &'static str {
    match node {
        Node::Str(_) => "string",
        Node::List(_) => "list",
        Node::Obj(_) => "object",
        Node::Other(k) => k,
    }
}

/// The last `key = "string"` of a block body.
fn string_field(entries: &[Entry], key: &str, what: &str) -> Result<String, PolicyError> {
    let mut out = String::new();
    for e in entries.iter().filter(|e| key_is(e, key)) {
        match &e.value {
            Node::Str(s) => out = s.clone(),
            other => {
                return Err(PolicyError::Decode(format!(
                    "{what}: {key} must be a string, got {}",
                    kind(other)
                )))
            }
        }
    }
    Ok(out)
}

/// All `key = ["a", "b"]` of a block body, concatenated.
fn list_field(entries: &[Entry], key: &str, what: &str) -> Result<Vec<String>, PolicyError> {
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| key_is(e, key)) {
        match &e.value {
            Node::List(items) => {
                for item in items {
                    match item {
                        Node::Str(s) => out.push(s.clone()),
                        other => {
                            return Err(PolicyError::Decode(format!(
                                "{what}: {key} must be a list of strings, got {}",
                                kind(other)
                            )))
                        }
                    }
                }
            }
            // HCL1 accepts a single string for a list.
            Node::Str(s) => out.push(s.clone()),
            other => {
                return Err(PolicyError::Decode(format!(
                    "{what}: {key} must be a list of strings, got {}",
                    kind(other)
                )))
            }
        }
    }
    Ok(out)
}

fn label_of(entry: &Entry) -> Result<String, PolicyError> {
    match entry.labels.as_slice() {
        [] => Ok(String::new()),
        [one] => Ok(one.clone()),
        _ => Err(PolicyError::Decode(format!(
            "{}: expected exactly one label, got {}",
            entry.key,
            entry.labels.len()
        ))),
    }
}

fn valid_name(name: &str, allow_underscore: bool) -> bool {
    (1..=128).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || b == b'-' || b == b'*' || (allow_underscore && b == b'_')
        })
}

fn is_policy_level_valid(p: &str) -> bool {
    matches!(p, "deny" | "read" | "write" | "scale")
}

fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn go_slice(v: &[String]) -> String {
    if v.is_empty() {
        "[]string(nil)".to_string()
    } else {
        let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
        format!("[]string{{{}}}", items.join(", "))
    }
}

/// Go's `%#v` of a `*acl.<Type>{Name, Policy, Capabilities}` rule, which
/// Nomad embeds in its error messages.
fn go_rule(ty: &str, name: &str, policy: &str, caps: &[String], vars: Option<bool>) -> String {
    let vars = match vars {
        None => String::new(),
        Some(false) => ", Variables:(*acl.VariablesPolicy)(nil)".to_string(),
        Some(true) => ", Variables:&acl.VariablesPolicy{...}".to_string(),
    };
    format!(
        "&acl.{ty}{{Name:{}, Policy:{}, Capabilities:{}{vars}}}",
        go_quote(name),
        go_quote(policy),
        go_slice(caps)
    )
}

fn append_caps(caps: &mut Vec<String>, extra: &[&str]) {
    caps.extend(extra.iter().map(|s| s.to_string()));
}

fn decode_namespace(entry: &Entry) -> Result<NamespaceRule, PolicyError> {
    let name = label_of(entry)?;
    let what = format!("namespace {}", go_quote(&name));
    let body = block_entries(entry, &what)?;
    let policy = string_field(body, "policy", &what)?;
    let mut caps = list_field(body, "capabilities", &what)?;
    let vars_entry = body.iter().find(|e| key_is(e, "variables"));
    let repr = |caps: &[String]| {
        go_rule(
            "NamespacePolicy",
            &name,
            &policy,
            caps,
            Some(vars_entry.is_some()),
        )
    };

    if !valid_name(&name, false) {
        return Err(PolicyError::Invalid(format!(
            "Invalid namespace name: {}",
            repr(&caps)
        )));
    }
    if !policy.is_empty() && !is_policy_level_valid(&policy) {
        return Err(PolicyError::Invalid(format!(
            "Invalid namespace policy: {}",
            repr(&caps)
        )));
    }
    if let Some(bad) = caps.iter().find(|c| !capability::is_valid(c)) {
        return Err(PolicyError::Invalid(format!(
            "Invalid namespace capability '{bad}': {}",
            repr(&caps)
        )));
    }
    if !policy.is_empty() {
        append_caps(&mut caps, &capability::expand_namespace_policy(&policy));
    }
    let implied: Vec<&str> = caps
        .iter()
        .flat_map(|c| capability::implied_capabilities(c).iter().copied())
        .collect();
    append_caps(&mut caps, &implied);

    let variables = match vars_entry {
        None => None,
        Some(v) => Some(decode_variables(v, &name)?),
    };

    Ok(NamespaceRule {
        name,
        policy: (!policy.is_empty()).then_some(policy),
        capabilities: caps,
        variables,
    })
}

fn decode_variables(entry: &Entry, ns: &str) -> Result<Value, PolicyError> {
    let what = format!("namespace {} variables", go_quote(ns));
    let body = block_entries(entry, &what)?;
    let mut paths = Vec::new();
    for path in body.iter().filter(|e| key_is(e, "path")) {
        let spec = label_of(path)?;
        let pwhat = format!("{what} path {}", go_quote(&spec));
        let pbody = block_entries(path, &pwhat)?;
        let caps = list_field(pbody, "capabilities", &pwhat)?;
        paths.push((spec, caps));
    }
    if paths.is_empty() {
        return Err(PolicyError::Invalid(format!(
            "Invalid variable policy: no variable paths in namespace {ns}"
        )));
    }
    let mut out = Vec::new();
    for (spec, caps) in paths {
        if spec.is_empty() {
            return Err(PolicyError::Invalid(format!(
                "Invalid missing variable path in namespace {ns}"
            )));
        }
        if spec.starts_with('/') {
            // The stray backtick is Nomad's.
            return Err(PolicyError::Invalid(format!(
                "Invalid variable path {} in namespace {ns}: cannot start with a leading '/'`",
                go_quote(&spec)
            )));
        }
        if let Some(bad) = caps.iter().find(|c| !capability::variables::is_valid(c)) {
            return Err(PolicyError::Invalid(format!(
                "Invalid variable capability '{bad}' in namespace {ns}"
            )));
        }
        let caps = expand_variables_capabilities(caps);
        out.push(serde_json::json!({ "PathSpec": spec, "Capabilities": caps }));
    }
    Ok(serde_json::json!({ "Paths": out }))
}

/// `deny` replaces everything; `read` implies `list`.
fn expand_variables_capabilities(caps: Vec<String>) -> Vec<String> {
    if caps.iter().any(|c| c == capability::variables::DENY) {
        return vec![capability::variables::DENY.to_string()];
    }
    let read = caps.iter().any(|c| c == capability::variables::READ);
    let list = caps.iter().any(|c| c == capability::variables::LIST);
    let mut caps = caps;
    if read && !list {
        caps.push(capability::variables::LIST.to_string());
    }
    caps
}

fn decode_node_pool(entry: &Entry) -> Result<NodePoolRule, PolicyError> {
    let name = label_of(entry)?;
    let what = format!("node_pool {}", go_quote(&name));
    let body = block_entries(entry, &what)?;
    let policy = string_field(body, "policy", &what)?;
    let mut caps = list_field(body, "capabilities", &what)?;
    if !valid_name(&name, true) {
        return Err(PolicyError::Invalid(format!(
            "Invalid node pool name '{name}'"
        )));
    }
    if !policy.is_empty() && !is_policy_level_valid(&policy) {
        return Err(PolicyError::Invalid(format!(
            "Invalid node pool policy '{policy}' for '{name}'"
        )));
    }
    if let Some(bad) = caps.iter().find(|c| !capability::node_pool::is_valid(c)) {
        return Err(PolicyError::Invalid(format!(
            "Invalid node pool capability '{bad}' for '{name}'"
        )));
    }
    if !policy.is_empty() {
        append_caps(&mut caps, &capability::node_pool::expand_policy(&policy));
    }
    Ok(NodePoolRule {
        name,
        policy: (!policy.is_empty()).then_some(policy),
        capabilities: caps,
    })
}

fn decode_host_volume(entry: &Entry) -> Result<HostVolumeRule, PolicyError> {
    let name = label_of(entry)?;
    let what = format!("host_volume {}", go_quote(&name));
    let body = block_entries(entry, &what)?;
    let policy = string_field(body, "policy", &what)?;
    let mut caps = list_field(body, "capabilities", &what)?;
    let repr = |caps: &[String]| go_rule("HostVolumePolicy", &name, &policy, caps, None);
    if !valid_name(&name, false) {
        return Err(PolicyError::Invalid(format!(
            "Invalid host volume name: {}",
            repr(&caps)
        )));
    }
    if !policy.is_empty() && !is_policy_level_valid(&policy) {
        return Err(PolicyError::Invalid(format!(
            "Invalid host volume policy: {}",
            repr(&caps)
        )));
    }
    if let Some(bad) = caps.iter().find(|c| !capability::host_volume::is_valid(c)) {
        return Err(PolicyError::Invalid(format!(
            "Invalid host volume capability '{bad}': {}",
            repr(&caps)
        )));
    }
    if !policy.is_empty() {
        append_caps(&mut caps, &capability::host_volume::expand_policy(&policy));
    }
    Ok(HostVolumeRule {
        name,
        policy: (!policy.is_empty()).then_some(policy),
        capabilities: caps,
    })
}

/// A singleton scope block (`agent`, `node`, ...) as written.
struct Scope {
    policy: String,
    capabilities: Vec<String>,
}

fn decode_scope(entry: &Entry) -> Result<Scope, PolicyError> {
    let what = entry.key.to_ascii_lowercase();
    let body = block_entries(entry, &what)?;
    Ok(Scope {
        policy: string_field(body, "policy", &what)?,
        capabilities: list_field(body, "capabilities", &what)?,
    })
}

const OPERATOR_CAPABILITIES: &[&str] = &[
    "deny",
    "snapshot-save",
    "license-read",
    "keyring-rotate",
    "keyring-read",
    "keyring-delete",
];
const SENTINEL_CAPABILITIES: &[&str] = &[
    "deny",
    "sentinel-read",
    "sentinel-submit",
    "sentinel-delete",
];

fn parse(rules: &str, strict: bool) -> Result<Policy, PolicyError> {
    if rules.is_empty() {
        return Ok(Policy::default());
    }
    let tree = parse_tree(rules)?;

    let mut extra: Vec<String> = Vec::new();
    let mut ns_entries = Vec::new();
    let mut np_entries = Vec::new();
    let mut hv_entries = Vec::new();
    // agent, node, operator, sentinel, quota, plugin
    let mut scopes: [Option<&Entry>; 6] = [None; 6];
    const SCOPES: [&str; 6] = ["agent", "node", "operator", "sentinel", "quota", "plugin"];

    for entry in &tree {
        let key = entry.key.to_ascii_lowercase();
        match key.as_str() {
            "namespace" => ns_entries.push(entry),
            "node_pool" => np_entries.push(entry),
            "host_volume" => hv_entries.push(entry),
            k => match SCOPES.iter().position(|s| *s == k) {
                Some(i) if scopes[i].is_none() => scopes[i] = Some(entry),
                _ => extra.push(entry.key.clone()),
            },
        }
    }

    let is_empty = ns_entries.is_empty()
        && np_entries.is_empty()
        && hv_entries.is_empty()
        && scopes.iter().all(Option::is_none);
    if is_empty {
        return Err(PolicyError::Invalid(format!("Invalid policy: {rules}")));
    }

    let mut policy = Policy::default();
    for e in ns_entries {
        policy.namespaces.push(decode_namespace(e)?);
    }
    for e in np_entries {
        policy.node_pools.push(decode_node_pool(e)?);
    }
    for e in hv_entries {
        policy.host_volumes.push(decode_host_volume(e)?);
    }

    if strict && !extra.is_empty() {
        extra.sort();
        return Err(PolicyError::Invalid(format!(
            "Invalid or duplicate policy keys: {}",
            extra.join(", ")
        )));
    }

    let [agent, node, operator, sentinel, quota, plugin] = scopes;
    let simple =
        |entry: Option<&Entry>, ty: &str, scope: &str| -> Result<Option<Level>, PolicyError> {
            let Some(entry) = entry else { return Ok(None) };
            let s = decode_scope(entry)?;
            if !is_policy_level_valid(&s.policy) {
                return Err(PolicyError::Invalid(format!(
                    "Invalid {scope} policy: &acl.{ty}{{Policy:{}}}",
                    go_quote(&s.policy)
                )));
            }
            Ok(Level::parse(&s.policy))
        };
    policy.agent = simple(agent, "AgentPolicy", "agent")?;
    policy.node = simple(node, "NodePolicy", "node")?;

    for (entry, ty, scope, valid_caps) in [
        (
            operator,
            "OperatorPolicy",
            "operator",
            OPERATOR_CAPABILITIES,
        ),
        (
            sentinel,
            "SentinelPolicy",
            "sentinel",
            SENTINEL_CAPABILITIES,
        ),
    ] {
        let Some(entry) = entry else { continue };
        let s = decode_scope(entry)?;
        if !s.policy.is_empty() && !is_policy_level_valid(&s.policy) {
            return Err(PolicyError::Invalid(format!(
                "Invalid {scope} policy: &acl.{ty}{{Policy:{}, Capabilities:{}}}",
                go_quote(&s.policy),
                go_slice(&s.capabilities)
            )));
        }
        if let Some(bad) = s
            .capabilities
            .iter()
            .find(|c| !valid_caps.contains(&c.as_str()))
        {
            return Err(PolicyError::Invalid(format!(
                "Invalid {scope} capability '{bad}'"
            )));
        }
        if scope == "operator" {
            policy.operator = Level::parse(&s.policy);
        }
    }

    policy.quota = simple(quota, "QuotaPolicy", "quota")?;

    if let Some(entry) = plugin {
        let s = decode_scope(entry)?;
        if !matches!(s.policy.as_str(), "deny" | "read" | "list" | "write") {
            return Err(PolicyError::Invalid(format!(
                "Invalid plugin policy: &acl.PluginPolicy{{Policy:{}}}",
                go_quote(&s.policy)
            )));
        }
        policy.plugin = Level::parse(&s.policy);
    }

    Ok(policy)
}

// ---------------------------------------------------------------------------
// serde helpers for Go's JSON shapes.

/// `Vec` that is `null` when empty (Go nil slice) and accepts `null`.
mod null_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            v.serialize(s)
        }
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

/// `Option<String>` that is `""` when `None` (Go string field).
mod empty_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v = Option::<String>::deserialize(d)?;
        Ok(v.filter(|s| !s.is_empty()))
    }
}

/// `Option<Level>` as Go's `*acl.XxxPolicy{Policy string}`: `{"Policy":"read"}`
/// or `null`.
mod level_obj {
    use super::Level;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wrapper {
        #[serde(rename = "Policy", default)]
        policy: String,
    }

    pub fn serialize<S: Serializer>(v: &Option<Level>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(level) => Wrapper {
                policy: level.as_str().to_string(),
            }
            .serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Level>, D::Error> {
        Ok(Option::<Wrapper>::deserialize(d)?.and_then(|w| Level::parse(&w.policy)))
    }
}
