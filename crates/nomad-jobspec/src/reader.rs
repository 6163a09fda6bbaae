//! A schema-checking reader over one HCL body: typed attribute getters, block lookup,
//! `dynamic` block expansion, and "Unsupported argument / block type" errors for leftovers.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Range;
use std::rc::Rc;

use hcl::Value;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Attribute, Body};
use hcl_edit::Span;

use crate::eval::{as_bool, as_i64, as_string, to_json, type_name, Scope, Source};
use crate::Diagnostic;

/// Shared parse state: the source and the collected diagnostics.
pub(crate) struct Dec<'a> {
    pub src: Source<'a>,
    pub diags: RefCell<Vec<Diagnostic>>,
}

impl Dec<'_> {
    pub fn err(
        &self,
        span: Option<Range<usize>>,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.diags
            .borrow_mut()
            .push(self.src.diag(span, summary, detail));
    }

    pub fn push(&self, d: Diagnostic) {
        self.diags.borrow_mut().push(d);
    }

    pub fn pos_string(&self, span: &Option<Range<usize>>) -> String {
        match span {
            Some(r) => {
                let (l, c) = self.src.line_col(r.start);
                format!("{}:{l},{c}", self.src.filename)
            }
            None => self.src.filename.to_string(),
        }
    }
}

/// A block (possibly produced by a `dynamic` block) with the scope its body evaluates in.
#[derive(Clone)]
pub(crate) struct BlockItem<'a> {
    pub ident: String,
    pub ident_span: Option<Range<usize>>,
    pub labels: Vec<(String, Option<Range<usize>>)>,
    pub body: &'a Body,
    pub scope: Rc<Scope>,
}

pub(crate) struct Reader<'a> {
    pub d: &'a Dec<'a>,
    pub scope: Rc<Scope>,
    attrs: Vec<(&'a Attribute, Cell<bool>)>,
    blocks: Vec<(BlockItem<'a>, Cell<bool>)>,
}

impl<'a> Reader<'a> {
    pub fn new(d: &'a Dec<'a>, body: &'a Body, scope: Rc<Scope>) -> Reader<'a> {
        let mut attrs: Vec<(&'a Attribute, Cell<bool>)> = Vec::new();
        let mut blocks = Vec::new();
        for a in body.attributes() {
            if let Some((prev, _)) = attrs.iter().find(|(p, _)| p.key.as_str() == a.key.as_str()) {
                d.err(
                    a.key.span(),
                    "Attribute redefined",
                    format!(
                        "The argument {:?} was already set at {}. Each argument may be set only once.",
                        a.key.as_str(),
                        d.pos_string(&prev.key.span())
                    ),
                );
                continue;
            }
            attrs.push((a, Cell::new(false)));
        }
        for b in body.blocks() {
            let item = BlockItem {
                ident: b.ident.as_str().to_string(),
                ident_span: b.ident.span(),
                labels: b
                    .labels
                    .iter()
                    .map(|l| (l.as_str().to_string(), l.span()))
                    .collect(),
                body: &b.body,
                scope: scope.clone(),
            };
            if item.ident == "dynamic" {
                for gen in expand_dynamic(d, &item) {
                    blocks.push((gen, Cell::new(false)));
                }
            } else {
                blocks.push((item, Cell::new(false)));
            }
        }
        Reader {
            d,
            scope,
            attrs,
            blocks,
        }
    }

    pub fn of(&self, b: &BlockItem<'a>) -> Reader<'a> {
        Reader::new(self.d, b.body, b.scope.clone())
    }

    pub fn attr(&self, name: &str) -> Option<&'a Attribute> {
        self.attrs
            .iter()
            .find(|(a, _)| a.key.as_str() == name)
            .map(|(a, used)| {
                used.set(true);
                *a
            })
    }

    /// All attributes, marking them used (free-form bodies).
    pub fn all_attrs(&self) -> Vec<&'a Attribute> {
        self.attrs
            .iter()
            .map(|(a, u)| {
                u.set(true);
                *a
            })
            .collect()
    }

    pub fn all_blocks(&self) -> Vec<BlockItem<'a>> {
        self.blocks
            .iter()
            .map(|(b, u)| {
                u.set(true);
                b.clone()
            })
            .collect()
    }

    pub fn eval(&self, e: &Expression) -> Option<Value> {
        match self.scope.eval(&self.d.src, e) {
            Ok(v) => Some(v),
            Err(diag) => {
                self.d.push(diag);
                None
            }
        }
    }

    /// Evaluated value of an attribute; `None` when absent, null or in error (reported).
    pub fn val(&self, name: &str) -> Option<(Value, Option<Range<usize>>)> {
        let a = self.attr(name)?;
        let v = self.eval(&a.value)?;
        if v.is_null() {
            return None;
        }
        Some((v, a.value.span()))
    }

    fn type_err(&self, name: &str, span: Option<Range<usize>>, what: &str) {
        self.d.err(
            span,
            "Incorrect attribute value type",
            format!("Inappropriate value for attribute {name:?}: {what}."),
        );
    }

    pub fn string(&self, name: &str) -> Option<String> {
        let (v, span) = self.val(name)?;
        let out = as_string(&v);
        if out.is_none() {
            self.type_err(name, span, "string required");
        }
        out
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        let (v, span) = self.val(name)?;
        match &v {
            Value::Number(_) => {
                let out = as_i64(&v);
                if out.is_none() {
                    self.type_err(name, span, "a whole number is required");
                }
                out
            }
            // Nomad (cty) would convert a numeric string; the brief asks for strictness here.
            Value::String(s) => {
                self.type_err(
                    name,
                    span,
                    &format!("a number is required, got string {s:?}"),
                );
                None
            }
            other => {
                self.type_err(
                    name,
                    span,
                    &format!("a number is required, got {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        let (v, span) = self.val(name)?;
        let out = as_bool(&v);
        if out.is_none() {
            self.type_err(name, span, &format!("bool required, got {}", type_name(&v)));
        }
        out
    }

    /// A Go duration string ("30s") or a number of nanoseconds.
    pub fn dur(&self, name: &str) -> Option<i64> {
        let (v, span) = self.val(name)?;
        match &v {
            Value::String(s) => match nomad_structs::duration::parse_go_duration(s) {
                Ok(ns) => Some(ns),
                Err(e) => {
                    self.d.err(
                        span,
                        "Unsuitable value type",
                        format!("Unsuitable duration value: {e}"),
                    );
                    None
                }
            },
            Value::Number(_) => as_i64(&v),
            other => {
                self.d.err(
                    span,
                    "Unsuitable value type",
                    format!(
                        "Unsuitable value: expected a string but found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        let (v, span) = self.val(name)?;
        let out = match &v {
            Value::Array(a) => a.iter().map(as_string).collect::<Option<Vec<_>>>(),
            _ => None,
        };
        if out.is_none() {
            self.type_err(name, span, "list of string required");
        }
        out
    }

    pub fn blocks(&self, name: &str) -> Vec<BlockItem<'a>> {
        self.blocks
            .iter()
            .filter(|(b, _)| b.ident == name)
            .map(|(b, used)| {
                used.set(true);
                b.clone()
            })
            .collect()
    }

    /// At most one block of this type.
    pub fn block(&self, name: &str) -> Option<BlockItem<'a>> {
        let mut bs = self.blocks(name).into_iter();
        let first = bs.next()?;
        for dup in bs {
            self.d.err(
                dup.ident_span.clone(),
                format!("Duplicate {name} block"),
                format!(
                    "Only one {name:?} block is allowed. Another was defined at {}.",
                    self.d.pos_string(&first.ident_span)
                ),
            );
        }
        Some(first)
    }

    /// A map of strings given either as a block (`meta { k = v }`) or as an attribute
    /// (`meta = { "k.x" = v }`).
    pub fn string_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let attr = self.attr(name);
        let blocks = self.blocks(name);
        if let (Some(a), Some(b)) = (attr, blocks.first()) {
            self.d.err(
                b.ident_span.clone(),
                format!("Duplicate {name} block"),
                format!("{name} may not be defined more than once. Another definition is defined at {}.", self.d.pos_string(&a.key.span())),
            );
            return None;
        }
        if let Some(a) = attr {
            let v = self.eval(&a.value)?;
            let Value::Object(o) = v else {
                self.d.err(
                    a.value.span(),
                    "Unsuitable value type",
                    "Unsuitable value: map of string required",
                );
                return None;
            };
            let mut out = BTreeMap::new();
            for (k, v) in o {
                match as_string(&v) {
                    Some(s) => {
                        out.insert(k, s);
                    }
                    None if v.is_null() => {}
                    None => {
                        self.d.err(
                            a.value.span(),
                            "Unsuitable value type",
                            "Unsuitable value: map of string required",
                        );
                        return None;
                    }
                }
            }
            return Some(out);
        }
        let mut out: Option<BTreeMap<String, String>> = None;
        for b in blocks {
            no_labels(self.d, &b);
            let r = self.of(&b);
            let m = out.get_or_insert_with(BTreeMap::new);
            for a in r.all_attrs() {
                let Some(v) = r.eval(&a.value) else { continue };
                match as_string(&v) {
                    Some(s) => {
                        m.insert(a.key.as_str().to_string(), s);
                    }
                    None if v.is_null() => {}
                    None => r.type_err(a.key.as_str(), a.value.span(), "string required"),
                }
            }
            for nb in r.all_blocks() {
                self.d.err(
                    nb.ident_span.clone(),
                    "Unsupported block type",
                    format!("Blocks of type {:?} are not expected here.", nb.ident),
                );
            }
        }
        out
    }

    /// A free-form body (driver `config`, `options`): attributes as JSON, nested blocks as lists
    /// of objects (labelled blocks nest by label), keys as written.
    pub fn freeform(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for a in self.all_attrs() {
            if let Some(v) = self.eval(&a.value) {
                out.insert(a.key.as_str().to_string(), to_json(&v));
            }
        }
        for b in self.all_blocks() {
            let inner = serde_json::Value::Object(self.of(&b).freeform());
            let wrapped = b.labels.iter().rev().fold(inner, |acc, (l, _)| {
                let mut m = serde_json::Map::new();
                m.insert(l.clone(), acc);
                serde_json::Value::Object(m)
            });
            let entry = out
                .entry(b.ident.clone())
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(list) = entry {
                list.push(wrapped);
            }
        }
        out
    }

    /// Reports every attribute and block that no getter asked for.
    pub fn finish(self) {
        for (a, used) in &self.attrs {
            if !used.get() {
                self.d.err(
                    a.key.span(),
                    "Unsupported argument",
                    format!(
                        "An argument named {:?} is not expected here.",
                        a.key.as_str()
                    ),
                );
            }
        }
        for (b, used) in &self.blocks {
            if !used.get() {
                self.d.err(
                    b.ident_span.clone(),
                    "Unsupported block type",
                    format!("Blocks of type {:?} are not expected here.", b.ident),
                );
            }
        }
    }
}

/// Checks a block has exactly the named labels; returns them.
pub(crate) fn labels(d: &Dec, b: &BlockItem, names: &[&str]) -> Option<Vec<String>> {
    if b.labels.len() < names.len() {
        let missing = names[b.labels.len()];
        d.err(
            b.ident_span.clone(),
            format!("Missing {missing} for {}", b.ident),
            format!(
                "All {} blocks must have {} labels ({}).",
                b.ident,
                names.len(),
                names.join(", ")
            ),
        );
        return None;
    }
    if b.labels.len() > names.len() {
        let (_, span) = &b.labels[names.len()];
        let detail = if names.is_empty() {
            format!("No labels are expected for {} blocks.", b.ident)
        } else {
            format!(
                "Only {} labels ({}) are expected for {} blocks.",
                names.len(),
                names.join(", "),
                b.ident
            )
        };
        d.err(
            span.clone(),
            format!("Extraneous label for {}", b.ident),
            detail,
        );
        return None;
    }
    Some(b.labels.iter().map(|(l, _)| l.clone()).collect())
}

pub(crate) fn no_labels(d: &Dec, b: &BlockItem) -> bool {
    labels(d, b, &[]).is_some()
}

/// Expands `dynamic "<type>" { for_each, iterator, labels, content {} }`.
fn expand_dynamic<'a>(d: &'a Dec<'a>, item: &BlockItem<'a>) -> Vec<BlockItem<'a>> {
    let Some(lbls) = labels(d, item, &["type"]) else {
        return Vec::new();
    };
    let ty = lbls[0].clone();
    let r = Reader::new(d, item.body, item.scope.clone());
    let iter_name = match r.attr("iterator") {
        Some(a) => match &a.value {
            Expression::Variable(v) => v.as_str().to_string(),
            _ => {
                d.err(
                    a.value.span(),
                    "Invalid dynamic iterator name",
                    "Dynamic iterator must be a single variable name.",
                );
                return Vec::new();
            }
        },
        None => ty.clone(),
    };
    let for_each = r.attr("for_each");
    let labels_attr = r.attr("labels");
    let content = r.block("content");
    r.finish();
    let Some(for_each) = for_each else {
        d.err(
            item.ident_span.clone(),
            "Missing required argument",
            "The argument \"for_each\" is required, but no definition was found.",
        );
        return Vec::new();
    };
    let Some(content) = content else {
        d.err(
            item.ident_span.clone(),
            "Missing required block",
            "A \"content\" block is required for a dynamic block.",
        );
        return Vec::new();
    };
    no_labels(d, &content);
    let Some(coll) = item
        .scope
        .eval(&d.src, &for_each.value)
        .map_err(|e| d.push(e))
        .ok()
    else {
        return Vec::new();
    };
    let pairs: Vec<(Value, Value)> = match coll {
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i as i64), v))
            .collect(),
        Value::Object(o) => o.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
        Value::Null => Vec::new(),
        other => {
            d.err(
                for_each.value.span(),
                "Invalid dynamic for_each value",
                format!(
                    "Cannot use a {} value in for_each. An iterable collection is required.",
                    type_name(&other)
                ),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (k, v) in pairs {
        let mut obj = hcl::Map::new();
        obj.insert("key".to_string(), k);
        obj.insert("value".to_string(), v);
        let scope = Rc::new(item.scope.with_var(&iter_name, Value::Object(obj)));
        let mut gen_labels = Vec::new();
        if let Some(la) = labels_attr {
            match scope.eval(&d.src, &la.value) {
                Ok(Value::Array(ls)) => {
                    for l in ls {
                        gen_labels.push((as_string(&l).unwrap_or_default(), la.value.span()));
                    }
                }
                Ok(_) => d.err(
                    la.value.span(),
                    "Invalid dynamic labels",
                    "labels must be a list of strings.",
                ),
                Err(e) => d.push(e),
            }
        }
        out.push(BlockItem {
            ident: ty.clone(),
            ident_span: item.ident_span.clone(),
            labels: gen_labels,
            body: content.body,
            scope,
        });
    }
    out
}
