//! Rendering a parsed template: variables, field chains, builtins and the caller's functions.

use crate::parse::{Node, Operand, Pipeline, Template};
use crate::{Funcs, MissingKey, Value};

struct Ctx<'a> {
    funcs: &'a dyn Funcs,
    missing: MissingKey,
    /// Variables in scope, innermost last; `$` is the first.
    vars: Vec<(String, Value)>,
}

impl Template {
    /// Renders against `dot` (also `$`).
    pub fn render(
        &self,
        dot: &Value,
        funcs: &dyn Funcs,
        missing: MissingKey,
    ) -> Result<String, String> {
        let mut cx = Ctx {
            funcs,
            missing,
            vars: vec![("$".to_string(), dot.clone())],
        };
        let mut out = String::new();
        walk(&mut cx, &self.nodes, dot, &mut out)?;
        Ok(out)
    }
}

fn walk(cx: &mut Ctx<'_>, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = pipeline(cx, p, dot)?;
                if p.decl.is_empty() {
                    out.push_str(&v.to_string());
                }
            }
            Node::If {
                cond,
                then,
                otherwise,
            } => {
                let mark = cx.vars.len();
                let v = pipeline(cx, cond, dot)?;
                let branch = if v.truthy() { then } else { otherwise };
                walk(cx, branch, dot, out)?;
                cx.vars.truncate(mark);
            }
            Node::With {
                pipe,
                body,
                otherwise,
            } => {
                let mark = cx.vars.len();
                let v = pipeline(cx, pipe, dot)?;
                if v.truthy() {
                    walk(cx, body, &v, out)?;
                } else {
                    walk(cx, otherwise, dot, out)?;
                }
                cx.vars.truncate(mark);
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            } => {
                let mark = cx.vars.len();
                let bare = Pipeline {
                    decl: vec![],
                    cmds: pipe.cmds.clone(),
                };
                let v = pipeline(cx, &bare, dot)?;
                let items: Vec<(Value, Value)> = match v {
                    Value::List(l) => l
                        .into_iter()
                        .enumerate()
                        .map(|(i, e)| (Value::Int(i as i64), e))
                        .collect(),
                    Value::Map(m) => m.into_iter().map(|(k, e)| (Value::Str(k), e)).collect(),
                    Value::Int(n) => (0..n.max(0))
                        .map(|i| (Value::Int(i), Value::Int(i)))
                        .collect(),
                    Value::Nil => vec![],
                    other => return Err(format!("range can't iterate over {other}")),
                };
                if items.is_empty() {
                    walk(cx, otherwise, dot, out)?;
                }
                for (k, e) in items {
                    let inner = cx.vars.len();
                    match pipe.decl.as_slice() {
                        [] => {}
                        [one] => cx.vars.push((one.clone(), e.clone())),
                        [key, elem, ..] => {
                            cx.vars.push((key.clone(), k));
                            cx.vars.push((elem.clone(), e.clone()));
                        }
                    }
                    walk(cx, body, &e, out)?;
                    cx.vars.truncate(inner);
                }
                cx.vars.truncate(mark);
            }
        }
    }
    Ok(())
}

fn pipeline(cx: &mut Ctx<'_>, p: &Pipeline, dot: &Value) -> Result<Value, String> {
    let mut piped: Option<Value> = None;
    for cmd in &p.cmds {
        piped = Some(command(cx, cmd, dot, piped.take())?);
    }
    let v = piped.unwrap_or(Value::Nil);
    if let Some(name) = p.decl.first() {
        cx.vars.push((name.clone(), v.clone()));
    }
    Ok(v)
}

fn command(
    cx: &mut Ctx<'_>,
    cmd: &[Operand],
    dot: &Value,
    piped: Option<Value>,
) -> Result<Value, String> {
    let (first, rest) = cmd.split_first().ok_or("empty command")?;
    if let Operand::Ident(name) = first {
        let mut args = Vec::with_capacity(rest.len() + 1);
        for a in rest {
            args.push(operand(cx, a, dot)?);
        }
        args.extend(piped);
        return call(cx, name, &args);
    }
    if !rest.is_empty() || piped.is_some() {
        return Err("can't give argument to non-function".into());
    }
    operand(cx, first, dot)
}

fn operand(cx: &mut Ctx<'_>, o: &Operand, dot: &Value) -> Result<Value, String> {
    match o {
        Operand::Literal(v) => Ok(v.clone()),
        Operand::Dot(chain) => field_chain(cx, dot.clone(), chain),
        Operand::Var(name, chain) => {
            let v = cx
                .vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("undefined variable: {name}"))?;
            field_chain(cx, v, chain)
        }
        Operand::Ident(name) => call(cx, name, &[]),
        Operand::Sub(p, chain) => {
            let v = pipeline(cx, p, dot)?;
            field_chain(cx, v, chain)
        }
    }
}

fn field_chain(cx: &Ctx<'_>, mut v: Value, chain: &[String]) -> Result<Value, String> {
    for f in chain {
        v = match v {
            Value::Map(mut m) => match m.remove(f) {
                Some(x) => x,
                None if cx.missing == MissingKey::Error => {
                    return Err(format!("map has no entry for key {f:?}"))
                }
                None => Value::Nil,
            },
            // consul-template's variable items print as their value and have `.Value`.
            Value::Str(s) if f == "Value" => Value::Str(s),
            Value::Nil => Value::Nil,
            other => return Err(format!("can't evaluate field {f} in {other}")),
        };
    }
    Ok(v)
}

fn want(args: &[Value], n: usize, name: &str) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y).ok_or_else(|| "NaN".into()),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)).ok_or_else(|| "NaN".into()),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).ok_or_else(|| "NaN".into()),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => Err("incompatible types for comparison".into()),
    }
}

fn call(cx: &mut Ctx<'_>, name: &str, args: &[Value]) -> Result<Value, String> {
    if let Some(r) = cx.funcs.call(name, args) {
        return r.map_err(|e| format!("error calling {name}: {e}"));
    }
    match name {
        "and" => Ok(args
            .iter()
            .find(|a| !a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil)),
        "or" => Ok(args
            .iter()
            .find(|a| a.truthy())
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Nil)),
        "not" => {
            want(args, 1, name)?;
            Ok(Value::Bool(!args[0].truthy()))
        }
        "len" => {
            want(args, 1, name)?;
            match &args[0] {
                Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                Value::List(l) => Ok(Value::Int(l.len() as i64)),
                Value::Map(m) => Ok(Value::Int(m.len() as i64)),
                other => Err(format!("error calling len: len of type {other}")),
            }
        }
        "index" => {
            let (first, keys) = args.split_first().ok_or("wrong number of args for index")?;
            let mut v = first.clone();
            for k in keys {
                v = match (v, k) {
                    (Value::Map(mut m), Value::Str(s)) => m.remove(s).unwrap_or(Value::Nil),
                    (Value::List(l), Value::Int(i)) => l
                        .get(usize::try_from(*i).map_err(|_| "index out of range")?)
                        .cloned()
                        .ok_or_else(|| format!("error calling index: index out of range: {i}"))?,
                    (Value::Nil, _) => Value::Nil,
                    (other, k) => {
                        return Err(format!("error calling index: can't index {other} with {k}"))
                    }
                };
            }
            Ok(v)
        }
        "print" => Ok(Value::Str(go_print(args, false))),
        "println" => Ok(Value::Str(go_print(args, true) + "\n")),
        "printf" => {
            let (fmt, rest) = args
                .split_first()
                .ok_or("wrong number of args for printf")?;
            Ok(Value::Str(printf(&fmt.to_string(), rest)))
        }
        "eq" => {
            let (first, rest) = args
                .split_first()
                .ok_or("missing argument for comparison")?;
            Ok(Value::Bool(rest.iter().any(|b| {
                compare(first, b).is_ok_and(|o| o.is_eq()) || first == b
            })))
        }
        "ne" => {
            want(args, 2, name)?;
            Ok(Value::Bool(args[0] != args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(args, 2, name)?;
            let o =
                compare(&args[0], &args[1]).map_err(|e| format!("error calling {name}: {e}"))?;
            Ok(Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            }))
        }
        _ => Err(format!("function {name:?} not defined")),
    }
}

/// Go's `fmt.Sprint`: spaces only between operands when neither is a string (`Sprintln`:
/// always).
fn go_print(args: &[Value], always_space: bool) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            let both_non_str = !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_));
            if always_space || both_non_str {
                s.push(' ');
            }
        }
        s.push_str(&a.to_string());
    }
    s
}

/// `%s %v %d %q %t %f %%` with widths ignored, as far as templates use them.
fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Skip flags and width ("%-10s", "%05d", "%.2f").
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() || matches!(n, '-' | '+' | '.' | ' ' | '#') {
                spec.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        match verb {
            'q' => out.push_str(&format!("{:?}", a.to_string())),
            'f' => {
                let x = match a {
                    Value::Int(i) => *i as f64,
                    Value::Float(f) => *f,
                    _ => 0.0,
                };
                let prec = spec
                    .split_once('.')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(6);
                out.push_str(&format!("{x:.prec$}"));
            }
            _ => out.push_str(&a.to_string()),
        }
    }
    out
}
