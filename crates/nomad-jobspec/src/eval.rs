//! Expression evaluation: HCL2 expressions from hcl-edit (with spans) evaluated by hcl-rs.
//!
//! Before handing an expression to hcl-rs we rewrite it: every reference whose root is not a
//! name we know (`var`, `local`, iterators) is a runtime reference (`${NOMAD_ALLOC_ID}`,
//! `${attr.kernel.name}`, `${meta.x}`, `${env["X"]}`) and is replaced by its source text, so it
//! survives as a literal `${...}` string, byte for byte.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use hcl::eval::Evaluate;
use hcl::Value;
use hcl_edit::expr::{Expression, ObjectKey, TraversalOperator};
use hcl_edit::template::{Directive, Element, Template};
use hcl_edit::Span;

use crate::Diagnostic;

/// Source text plus the file name, for positions.
pub(crate) struct Source<'a> {
    pub filename: &'a str,
    pub text: &'a str,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, col)
    }

    pub fn diag(
        &self,
        span: Option<Range<usize>>,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            filename: self.filename.to_string(),
            pos: span.map(|r| self.line_col(r.start)),
            summary: summary.into(),
            detail: detail.into(),
        }
    }

    pub fn slice(&self, span: &Option<Range<usize>>) -> Option<&str> {
        span.as_ref().and_then(|r| self.text.get(r.clone()))
    }
}

/// The evaluation scope: hcl-rs context plus the names that are "known" (not runtime refs).
#[derive(Clone)]
pub(crate) struct Scope {
    pub ctx: hcl::eval::Context<'static>,
    pub bound: HashSet<String>,
    pub var_names: HashSet<String>,
    pub local_names: HashSet<String>,
}

impl Scope {
    pub fn new() -> Scope {
        let mut ctx = hcl::eval::Context::new();
        crate::funcs::declare_all(&mut ctx);
        Scope {
            ctx,
            bound: HashSet::new(),
            var_names: HashSet::new(),
            local_names: HashSet::new(),
        }
    }

    /// A child scope with one more variable (dynamic block iterators).
    pub fn with_var(&self, name: &str, value: Value) -> Scope {
        let mut s = self.clone();
        s.ctx.declare_var(name.to_string(), value);
        s.bound.insert(name.to_string());
        s
    }

    pub fn set_vars(&mut self, vars: BTreeMap<String, Value>) {
        let obj: hcl::Map<String, Value> = vars.into_iter().collect();
        self.ctx.declare_var("var", Value::Object(obj));
        self.bound.insert("var".into());
    }

    pub fn set_locals(&mut self, locals: &BTreeMap<String, Value>) {
        let obj: hcl::Map<String, Value> = locals.clone().into_iter().collect();
        self.ctx.declare_var("local", Value::Object(obj));
        self.bound.insert("local".into());
    }

    /// Evaluates an expression; runtime references are kept as literal `${...}` text.
    pub fn eval(&self, src: &Source, expr: &Expression) -> Result<Value, Diagnostic> {
        let mut e = expr.clone();
        let mut extra = Vec::new();
        let mut errs = Vec::new();
        self.rewrite(src, &mut e, &mut extra, &mut errs);
        if let Some(d) = errs.into_iter().next() {
            return Err(d);
        }
        let he: hcl::Expression = e.into();
        he.evaluate(&self.ctx).map_err(|err| {
            let (summary, detail) = describe_eval_error(&err);
            src.diag(expr.span(), summary, detail)
        })
    }

    fn known(&self, name: &str, extra: &[String]) -> bool {
        self.bound.contains(name) || extra.iter().any(|n| n == name)
    }

    /// Root variable name of a reference expression (Variable or Traversal on a Variable).
    fn runtime_ref(&self, e: &Expression, extra: &[String]) -> bool {
        match e {
            Expression::Variable(v) => !self.known(v.as_str(), extra),
            Expression::Traversal(t) => match &t.expr {
                Expression::Variable(v) => !self.known(v.as_str(), extra),
                _ => false,
            },
            _ => false,
        }
    }

    fn rewrite(
        &self,
        src: &Source,
        e: &mut Expression,
        extra: &mut Vec<String>,
        errs: &mut Vec<Diagnostic>,
    ) {
        if self.runtime_ref(e, extra) {
            let text = src.slice(&e.span()).unwrap_or("").trim().to_string();
            *e = Expression::from(format!("${{{text}}}"));
            return;
        }
        match e {
            Expression::Array(a) => {
                for v in a.iter_mut() {
                    self.rewrite(src, v, extra, errs);
                }
            }
            Expression::Object(o) => {
                // Keys cannot be rewritten in place (hcl-edit); computed keys are evaluated as is.
                for (_, v) in o.iter_mut() {
                    self.rewrite(src, v.expr_mut(), extra, errs);
                }
            }
            Expression::StringTemplate(t) => self.rewrite_template(src, t, extra, errs),
            Expression::HeredocTemplate(h) => {
                self.rewrite_template(src, &mut h.template, extra, errs)
            }
            Expression::Parenthesis(p) => self.rewrite(src, p.inner_mut(), extra, errs),
            Expression::Conditional(c) => {
                self.rewrite(src, &mut c.cond_expr, extra, errs);
                self.rewrite(src, &mut c.true_expr, extra, errs);
                self.rewrite(src, &mut c.false_expr, extra, errs);
            }
            Expression::FuncCall(f) => {
                for a in f.args.iter_mut() {
                    self.rewrite(src, a, extra, errs);
                }
            }
            Expression::Traversal(t) => {
                if let Expression::Variable(root) = &t.expr {
                    let root = root.as_str().to_string();
                    if let Some(TraversalOperator::GetAttr(name)) =
                        t.operators.first().map(|o| o.value())
                    {
                        let name = name.as_str();
                        if root == "var"
                            && !self.var_names.contains(name)
                            && !extra.iter().any(|n| n == "var")
                        {
                            errs.push(src.diag(
                                t.span(),
                                "Reference to undeclared input variable",
                                format!("An input variable with the name {name:?} has not been declared."),
                            ));
                        } else if root == "local"
                            && !self.local_names.contains(name)
                            && !extra.iter().any(|n| n == "local")
                        {
                            errs.push(src.diag(
                                t.span(),
                                "Reference to undeclared local value",
                                format!(
                                    "A local value with the name {name:?} has not been declared."
                                ),
                            ));
                        }
                    }
                } else {
                    self.rewrite(src, &mut t.expr, extra, errs);
                }
                for op in t.operators.iter_mut() {
                    if let TraversalOperator::Index(ie) = op.value_mut() {
                        self.rewrite(src, ie, extra, errs);
                    }
                }
            }
            Expression::UnaryOp(u) => self.rewrite(src, &mut u.expr, extra, errs),
            Expression::BinaryOp(b) => {
                self.rewrite(src, &mut b.lhs_expr, extra, errs);
                self.rewrite(src, &mut b.rhs_expr, extra, errs);
            }
            Expression::ForExpr(f) => {
                self.rewrite(src, &mut f.intro.collection_expr, extra, errs);
                let n = extra.len();
                extra.push(f.intro.value_var.as_str().to_string());
                if let Some(k) = &f.intro.key_var {
                    extra.push(k.as_str().to_string());
                }
                if let Some(k) = &mut f.key_expr {
                    self.rewrite(src, k, extra, errs);
                }
                self.rewrite(src, &mut f.value_expr, extra, errs);
                if let Some(c) = &mut f.cond {
                    self.rewrite(src, &mut c.expr, extra, errs);
                }
                extra.truncate(n);
            }
            _ => {}
        }
    }

    fn rewrite_template(
        &self,
        src: &Source,
        t: &mut Template,
        extra: &mut Vec<String>,
        errs: &mut Vec<Diagnostic>,
    ) {
        for el in t.iter_mut() {
            match el {
                Element::Interpolation(interp) => {
                    if self.runtime_ref(&interp.expr, extra) {
                        let span = el.span();
                        let text = src.slice(&span).unwrap_or("").to_string();
                        let text = if text.starts_with("${") {
                            text
                        } else {
                            format!("${{{text}}}")
                        };
                        *el = Element::from(text);
                    } else {
                        self.rewrite(src, &mut interp.expr, extra, errs);
                    }
                }
                Element::Directive(d) => match &mut **d {
                    Directive::If(i) => {
                        self.rewrite(src, &mut i.if_expr.cond_expr, extra, errs);
                        self.rewrite_template(src, &mut i.if_expr.template, extra, errs);
                        if let Some(e) = &mut i.else_expr {
                            self.rewrite_template(src, &mut e.template, extra, errs);
                        }
                    }
                    Directive::For(f) => {
                        self.rewrite(src, &mut f.for_expr.collection_expr, extra, errs);
                        let n = extra.len();
                        extra.push(f.for_expr.value_var.as_str().to_string());
                        if let Some(k) = &f.for_expr.key_var {
                            extra.push(k.as_str().to_string());
                        }
                        self.rewrite_template(src, &mut f.for_expr.template, extra, errs);
                        extra.truncate(n);
                    }
                },
                Element::Literal(_) => {}
            }
        }
    }
}

fn describe_eval_error(err: &hcl::eval::Error) -> (String, String) {
    use hcl::eval::ErrorKind;
    match err.kind() {
        ErrorKind::UndefinedFunc(name) => (
            "Call to unknown function".into(),
            format!("There is no function named {:?}.", name.to_string()),
        ),
        ErrorKind::FuncCall(name, msg) => (
            "Error in function call".into(),
            format!("Call to function {:?} failed: {msg}.", name.to_string()),
        ),
        ErrorKind::UndefinedVar(name) => (
            "Unknown variable".into(),
            format!("There is no variable named {:?}.", name.to_string()),
        ),
        _ => ("Invalid expression".into(), err.kind().to_string()),
    }
}

/// Collects the `local.<name>` references in an expression (for ordering locals).
pub(crate) fn local_refs(e: &Expression, out: &mut Vec<String>) {
    match e {
        Expression::Traversal(t) => {
            if let (Expression::Variable(root), Some(TraversalOperator::GetAttr(n))) =
                (&t.expr, t.operators.first().map(|o| o.value()))
            {
                if root.as_str() == "local" {
                    out.push(n.as_str().to_string());
                }
            }
            local_refs(&t.expr, out);
            for op in &t.operators {
                if let TraversalOperator::Index(ie) = op.value() {
                    local_refs(ie, out);
                }
            }
        }
        Expression::Array(a) => a.iter().for_each(|v| local_refs(v, out)),
        Expression::Object(o) => o.iter().for_each(|(k, v)| {
            if let ObjectKey::Expression(ke) = k {
                local_refs(ke, out);
            }
            local_refs(v.expr(), out);
        }),
        Expression::StringTemplate(t) => template_local_refs(t, out),
        Expression::HeredocTemplate(h) => template_local_refs(&h.template, out),
        Expression::Parenthesis(p) => local_refs(p.inner(), out),
        Expression::Conditional(c) => {
            local_refs(&c.cond_expr, out);
            local_refs(&c.true_expr, out);
            local_refs(&c.false_expr, out);
        }
        Expression::FuncCall(f) => f.args.iter().for_each(|a| local_refs(a, out)),
        Expression::UnaryOp(u) => local_refs(&u.expr, out),
        Expression::BinaryOp(b) => {
            local_refs(&b.lhs_expr, out);
            local_refs(&b.rhs_expr, out);
        }
        Expression::ForExpr(f) => {
            local_refs(&f.intro.collection_expr, out);
            if let Some(k) = &f.key_expr {
                local_refs(k, out);
            }
            local_refs(&f.value_expr, out);
            if let Some(c) = &f.cond {
                local_refs(&c.expr, out);
            }
        }
        _ => {}
    }
}

fn template_local_refs(t: &Template, out: &mut Vec<String>) {
    for el in t.iter() {
        match el {
            Element::Interpolation(i) => local_refs(&i.expr, out),
            Element::Directive(d) => match &**d {
                Directive::If(i) => {
                    local_refs(&i.if_expr.cond_expr, out);
                    template_local_refs(&i.if_expr.template, out);
                    if let Some(e) = &i.else_expr {
                        template_local_refs(&e.template, out);
                    }
                }
                Directive::For(f) => {
                    local_refs(&f.for_expr.collection_expr, out);
                    template_local_refs(&f.for_expr.template, out);
                }
            },
            Element::Literal(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Value conversions (cty-like)

/// A friendly name of a value's type, as cty prints it.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "tuple",
        Value::Object(_) => "object",
    }
}

/// Converts to a string the way cty does (numbers and bools convert).
pub(crate) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(number_to_string(n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn number_to_string(n: &hcl::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    }
}

pub(crate) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

pub(crate) fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 9e15 {
                    serde_json::Value::from(f as i64)
                } else {
                    serde_json::Number::from_f64(f)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number)
                }
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(o) => {
            serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

pub(crate) fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                hcl::Number::from_f64(n.as_f64().unwrap_or(0.0)).map_or(Value::Null, Value::Number)
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Variable type constraints

/// A `variable` block's `type`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VarType {
    Any,
    String,
    Number,
    Bool,
    List(Box<VarType>),
    Set(Box<VarType>),
    Map(Box<VarType>),
    Object(Vec<(String, VarType)>),
    Tuple(Vec<VarType>),
}

impl VarType {
    /// Parses a type expression (`string`, `list(number)`, `object({a=string})`).
    pub fn parse(e: &Expression) -> Result<VarType, String> {
        match e {
            Expression::Variable(v) => match v.as_str() {
                "string" => Ok(VarType::String),
                "number" => Ok(VarType::Number),
                "bool" => Ok(VarType::Bool),
                "any" => Ok(VarType::Any),
                "list" => Ok(VarType::List(Box::new(VarType::Any))),
                "map" => Ok(VarType::Map(Box::new(VarType::Any))),
                "set" => Ok(VarType::Set(Box::new(VarType::Any))),
                other => Err(format!("The keyword {other:?} is not a valid type specification.")),
            },
            Expression::FuncCall(f) => {
                let name = f.name.name.as_str();
                let args: Vec<&Expression> = f.args.iter().collect();
                let one = || -> Result<VarType, String> {
                    match args.as_slice() {
                        [a] => VarType::parse(a),
                        _ => Err(format!("The {name} type constructor requires one argument specifying the element type.")),
                    }
                };
                match name {
                    "list" => Ok(VarType::List(Box::new(one()?))),
                    "set" => Ok(VarType::Set(Box::new(one()?))),
                    "map" => Ok(VarType::Map(Box::new(one()?))),
                    "object" => match args.as_slice() {
                        [Expression::Object(o)] => {
                            let mut fields = Vec::new();
                            for (k, v) in o.iter() {
                                let key = match k {
                                    ObjectKey::Ident(i) => i.as_str().to_string(),
                                    ObjectKey::Expression(Expression::String(s)) => s.as_str().to_string(),
                                    ObjectKey::Expression(Expression::Variable(i)) => i.as_str().to_string(),
                                    _ => return Err("Object constructor map keys must be attribute names.".into()),
                                };
                                fields.push((key, VarType::parse(v.expr())?));
                            }
                            Ok(VarType::Object(fields))
                        }
                        _ => Err("The object type constructor requires one argument specifying the attribute types as a map.".into()),
                    },
                    "tuple" => match args.as_slice() {
                        [Expression::Array(a)] => Ok(VarType::Tuple(a.iter().map(VarType::parse).collect::<Result<_, _>>()?)),
                        _ => Err("The tuple type constructor requires one argument specifying the element types as a list.".into()),
                    },
                    other => Err(format!("Keyword {other:?} is not a valid type constructor.")),
                }
            }
            _ => Err("A type specification is either a primitive type keyword (bool, number, string) or a complex type constructor call, like list(string).".into()),
        }
    }

    /// Whether `-var` / `NOMAD_VAR_` strings are taken literally (true) or parsed as HCL.
    pub fn takes_literal_string(t: Option<&VarType>) -> bool {
        matches!(t, None | Some(VarType::String) | Some(VarType::Number))
    }

    pub fn describe(&self) -> String {
        match self {
            VarType::Any => "any".into(),
            VarType::String => "string".into(),
            VarType::Number => "number".into(),
            VarType::Bool => "bool".into(),
            VarType::List(t) => format!("list of {}", t.describe()),
            VarType::Set(t) => format!("set of {}", t.describe()),
            VarType::Map(t) => format!("map of {}", t.describe()),
            VarType::Object(_) => "object".into(),
            VarType::Tuple(_) => "tuple".into(),
        }
    }

    /// Converts a value to this type (cty's `convert.Convert`, simplified).
    pub fn convert(&self, v: Value) -> Result<Value, String> {
        let fail = |t: &VarType, v: &Value| {
            Err(format!("{} required, got {}", t.describe(), type_name(v)))
        };
        match self {
            VarType::Any => Ok(v),
            _ if v.is_null() => Ok(v),
            VarType::String => as_string(&v)
                .map(Value::String)
                .map_or_else(|| fail(self, &v), Ok),
            VarType::Number => match &v {
                Value::Number(_) => Ok(v),
                Value::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| {
                        s.trim()
                            .parse::<f64>()
                            .ok()
                            .and_then(hcl::Number::from_f64)
                            .map(Value::Number)
                            .ok_or(())
                    })
                    .map_err(|_| format!("a number is required, got string {s:?}")),
                _ => fail(self, &v),
            },
            VarType::Bool => as_bool(&v)
                .map(Value::Bool)
                .map_or_else(|| fail(self, &v), Ok),
            VarType::List(t) | VarType::Set(t) => match v {
                Value::Array(a) => {
                    let mut out: Vec<Value> = Vec::with_capacity(a.len());
                    for e in a {
                        let c = t.convert(e)?;
                        if matches!(self, VarType::Set(_)) && out.contains(&c) {
                            continue;
                        }
                        out.push(c);
                    }
                    Ok(Value::Array(out))
                }
                other => fail(self, &other),
            },
            VarType::Map(t) => match v {
                Value::Object(o) => {
                    let mut out = hcl::Map::new();
                    for (k, e) in o {
                        out.insert(k, t.convert(e)?);
                    }
                    Ok(Value::Object(out))
                }
                other => fail(self, &other),
            },
            VarType::Object(fields) => match v {
                Value::Object(mut o) => {
                    let mut out = hcl::Map::new();
                    for (k, t) in fields {
                        let e = o
                            .shift_remove(k)
                            .ok_or_else(|| format!("attribute {k:?} is required"))?;
                        out.insert(k.clone(), t.convert(e)?);
                    }
                    Ok(Value::Object(out))
                }
                other => fail(self, &other),
            },
            VarType::Tuple(ts) => match v {
                Value::Array(a) if a.len() == ts.len() => a
                    .into_iter()
                    .zip(ts)
                    .map(|(e, t)| t.convert(e))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array),
                other => fail(self, &other),
            },
        }
    }
}
