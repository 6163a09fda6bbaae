//! A Go `text/template` subset, for the `template` block of tasks (consul-template's language)
//! and the CLI's `-t` flags.
//!
//! What it knows: text and `{{ }}` actions with `{{-`/`-}}` trimming and custom delimiters,
//! comments, pipelines (`a | b`), variables (`$x := ...`, `$k, $v := ...` in `range`),
//! field chains (`.A.b`, `$x.y`), literals, `if`/`else if`/`else`, `range` (lists and maps,
//! in key order, with `else`), `with`, Go's builtins (`and or not len index print printf
//! println eq ne lt le gt ge`) and whatever functions the caller provides ([`Funcs`]).
//! Not here: `define`/`template`/`block`, methods on values, `break`/`continue`.
//!
//! Pure: no IO; functions that read the world come from the caller.

use std::collections::BTreeMap;
use std::fmt;

mod eval;
mod parse;

pub use parse::Template;

/// A value templates work on (Go's `interface{}` as JSON would give it).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Go's nil (prints `<no value>`).
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Go's truth: false, 0, nil and empty strings, lists and maps are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// A string map as a template value.
    pub fn from_strings<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
        Value::Map(
            m.into_iter()
                .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
                .collect(),
        )
    }
}

impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect())
            }
        }
    }
}

impl From<&Value> for serde_json::Value {
    fn from(v: &Value) -> Self {
        match v {
            Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Value::from(*f),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Into::into).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.into())).collect())
            }
        }
    }
}

impl fmt::Display for Value {
    /// Go's `%v`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("<no value>"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("map[")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Functions beyond Go's builtins. `None`: no function of that name.
pub trait Funcs {
    fn call(&self, name: &str, args: &[Value]) -> Option<Result<Value, String>>;
}

/// No functions beyond the builtins.
pub struct NoFuncs;

impl Funcs for NoFuncs {
    fn call(&self, _name: &str, _args: &[Value]) -> Option<Result<Value, String>> {
        None
    }
}

/// How a render treats a field a map does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// Go's default: `<no value>`.
    #[default]
    Default,
    /// `missingkey=error` (Nomad's `error_on_missing_key`).
    Error,
}

/// Parses `src` with `{{`/`}}` and renders it against `dot`.
pub fn render(src: &str, dot: &Value, funcs: &dyn Funcs) -> Result<String, String> {
    Template::parse(src, "{{", "}}")?.render(dot, funcs, MissingKey::Default)
}

#[cfg(test)]
mod tests;
