//! The HCL2 function library (the commonly used part of Nomad's jobspec2 functions).
//!
//! hcl-rs functions are plain `fn` pointers, so `file()` reads its base directory from a
//! thread-local set by the parser for the duration of one parse.

use std::cell::RefCell;
use std::path::PathBuf;

use base64::Engine as _;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

use crate::eval::{as_bool, as_string, from_json, number_to_string, to_json, type_name};

thread_local! {
    static BASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Sets the directory `file()` resolves relative paths against, until the guard drops.
pub(crate) struct BaseDirGuard(Option<PathBuf>);

impl BaseDirGuard {
    pub fn set(dir: Option<PathBuf>) -> BaseDirGuard {
        BaseDirGuard(BASE_DIR.with(|b| b.replace(dir)))
    }
}

impl Drop for BaseDirGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        BASE_DIR.with(|b| *b.borrow_mut() = prev);
    }
}

type R = Result<Value, String>;

fn s(v: &Value) -> Result<String, String> {
    as_string(v).ok_or_else(|| format!("string required, got {}", type_name(v)))
}

fn f(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| "invalid number".to_string()),
        Value::String(st) => st
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("a number is required, got string {st:?}")),
        other => Err(format!("number required, got {}", type_name(other))),
    }
}

fn i(v: &Value) -> Result<i64, String> {
    let x = f(v)?;
    if x.fract() != 0.0 {
        return Err(format!("a whole number is required, got {x}"));
    }
    Ok(x as i64)
}

fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9e15 {
        Value::from(x as i64)
    } else {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

fn list(v: &Value) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(a) => Ok(a.clone()),
        other => Err(format!("list required, got {}", type_name(other))),
    }
}

fn obj(v: &Value) -> Result<Map<String, Value>, String> {
    match v {
        Value::Object(o) => Ok(o.clone()),
        other => Err(format!("map required, got {}", type_name(other))),
    }
}

fn str_list(v: &Value) -> Result<Vec<String>, String> {
    list(v)?.iter().map(s).collect()
}

fn args(a: &FuncArgs) -> Vec<Value> {
    a.iter().cloned().collect()
}

// --- strings

fn upper(a: FuncArgs) -> R {
    Ok(Value::String(s(&a[0])?.to_uppercase()))
}
fn lower(a: FuncArgs) -> R {
    Ok(Value::String(s(&a[0])?.to_lowercase()))
}
fn title(a: FuncArgs) -> R {
    let st = s(&a[0])?;
    let mut out = String::new();
    let mut prev_letter = false;
    for c in st.chars() {
        if !prev_letter && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric();
    }
    Ok(Value::String(out))
}
fn trimspace(a: FuncArgs) -> R {
    Ok(Value::String(s(&a[0])?.trim().to_string()))
}
fn trimprefix(a: FuncArgs) -> R {
    let (x, p) = (s(&a[0])?, s(&a[1])?);
    Ok(Value::String(
        x.strip_prefix(p.as_str()).unwrap_or(&x).to_string(),
    ))
}
fn trimsuffix(a: FuncArgs) -> R {
    let (x, p) = (s(&a[0])?, s(&a[1])?);
    Ok(Value::String(
        x.strip_suffix(p.as_str()).unwrap_or(&x).to_string(),
    ))
}
fn trim(a: FuncArgs) -> R {
    let (x, cs) = (s(&a[0])?, s(&a[1])?);
    Ok(Value::String(
        x.trim_matches(|c| cs.contains(c)).to_string(),
    ))
}
fn chomp(a: FuncArgs) -> R {
    Ok(Value::String(
        s(&a[0])?.trim_end_matches(['\n', '\r']).to_string(),
    ))
}
fn replace(a: FuncArgs) -> R {
    Ok(Value::String(s(&a[0])?.replace(&s(&a[1])?, &s(&a[2])?)))
}
fn strrev(a: FuncArgs) -> R {
    Ok(Value::String(s(&a[0])?.chars().rev().collect()))
}
fn substr(a: FuncArgs) -> R {
    let st: Vec<char> = s(&a[0])?.chars().collect();
    let len = st.len() as i64;
    let mut off = i(&a[1])?;
    let n = i(&a[2])?;
    if off < 0 {
        off += len;
    }
    if off < 0 || off > len {
        return Err("offset out of range".into());
    }
    let end = if n < 0 { len } else { (off + n).min(len) };
    Ok(Value::String(
        st[off as usize..end as usize].iter().collect(),
    ))
}
fn join(a: FuncArgs) -> R {
    let sep = s(&a[0])?;
    let mut parts = Vec::new();
    for l in a.iter().skip(1) {
        parts.extend(str_list(l)?);
    }
    Ok(Value::String(parts.join(&sep)))
}
fn split(a: FuncArgs) -> R {
    let (sep, st) = (s(&a[0])?, s(&a[1])?);
    if st.is_empty() {
        return Ok(Value::Array(vec![Value::String(String::new())]));
    }
    Ok(Value::Array(
        st.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}
fn regex_replace(a: FuncArgs) -> R {
    let (st, pat, rep) = (s(&a[0])?, s(&a[1])?, s(&a[2])?);
    let re = regex_automata::meta::Regex::new(&pat).map_err(|e| format!("invalid regexp: {e}"))?;
    let mut out = String::new();
    let mut last = 0;
    let mut caps = re.create_captures();
    let mut start = 0;
    while start <= st.len() {
        re.search_captures(&regex_automata::Input::new(&st).range(start..), &mut caps);
        let Some(m) = caps.get_match() else { break };
        out.push_str(&st[last..m.start()]);
        expand_replacement(&rep, &st, &caps, &re, &mut out);
        last = m.end();
        start = if m.is_empty() {
            m.end() + st[m.end()..].chars().next().map_or(1, char::len_utf8)
        } else {
            m.end()
        };
    }
    out.push_str(st.get(last..).unwrap_or(""));
    Ok(Value::String(out))
}

fn expand_replacement(
    rep: &str,
    hay: &str,
    caps: &regex_automata::util::captures::Captures,
    re: &regex_automata::meta::Regex,
    out: &mut String,
) {
    let b: Vec<char> = rep.chars().collect();
    let mut k = 0;
    while k < b.len() {
        if b[k] == '$' && k + 1 < b.len() {
            if b[k + 1] == '$' {
                out.push('$');
                k += 2;
                continue;
            }
            let (name, next) = if b[k + 1] == '{' {
                match b[k + 2..].iter().position(|c| *c == '}') {
                    Some(p) => (b[k + 2..k + 2 + p].iter().collect::<String>(), k + 3 + p),
                    None => (String::new(), k + 1),
                }
            } else {
                let e = b[k + 1..]
                    .iter()
                    .position(|c| !(c.is_alphanumeric() || *c == '_'))
                    .map_or(b.len(), |p| k + 1 + p);
                (b[k + 1..e].iter().collect::<String>(), e)
            };
            if !name.is_empty() {
                let span = match name.parse::<usize>() {
                    Ok(n) => caps.get_group(n),
                    Err(_) => re
                        .group_info()
                        .to_index(regex_automata::PatternID::ZERO, &name)
                        .and_then(|n| caps.get_group(n)),
                };
                if let Some(sp) = span {
                    out.push_str(&hay[sp.start..sp.end]);
                }
                k = next;
                continue;
            }
        }
        out.push(b[k]);
        k += 1;
    }
}

fn format_fn(a: FuncArgs) -> R {
    let all = args(&a);
    let fmt = s(&all[0])?;
    let mut vals = all[1..].iter();
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() || n == '.' || n == '-' || n == '+' || n == '#' || n == ' ' {
                spec.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else {
            return Err("format string ends with an incomplete verb".into());
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let v = vals
            .next()
            .ok_or_else(|| format!("not enough arguments for %{verb}"))?;
        let (left, width, prec) = parse_spec(&spec);
        let text = match verb {
            's' => s(v)?,
            'd' => i(v)?.to_string(),
            'f' => format!("{:.*}", prec.unwrap_or(6), f(v)?),
            'q' => serde_json::to_string(&s(v)?).unwrap_or_default(),
            'v' | '#' => match v {
                Value::String(x) => x.clone(),
                Value::Number(n) => number_to_string(n),
                other => serde_json::to_string(&to_json(other)).unwrap_or_default(),
            },
            't' => as_bool(v).ok_or("bool required")?.to_string(),
            'x' => format!("{:x}", i(v)?),
            'X' => format!("{:X}", i(v)?),
            'o' => format!("{:o}", i(v)?),
            'b' => format!("{:b}", i(v)?),
            'e' => format!("{:e}", f(v)?),
            other => return Err(format!("unsupported format verb %{other}")),
        };
        let text = if verb == 's' {
            prec.map_or(text.clone(), |p| text.chars().take(p).collect())
        } else {
            text
        };
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            let zero = spec.starts_with('0') && verb != 's';
            out.push_str(&(if zero { "0" } else { " " }).repeat(pad));
            out.push_str(&text);
        }
    }
    Ok(Value::String(out))
}

fn parse_spec(spec: &str) -> (bool, usize, Option<usize>) {
    let left = spec.contains('-');
    let digits: String = spec
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut it = digits.splitn(2, '.');
    let width = it.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    let prec = it.next().and_then(|p| p.parse().ok());
    (left, width, prec)
}

// --- collections

fn length(a: FuncArgs) -> R {
    Ok(Value::from(match &a[0] {
        Value::Array(x) => x.len() as i64,
        Value::Object(o) => o.len() as i64,
        Value::String(x) => x.chars().count() as i64,
        other => return Err(format!("cannot take the length of {}", type_name(other))),
    }))
}
fn concat(a: FuncArgs) -> R {
    let mut out = Vec::new();
    for l in a.iter() {
        out.extend(list(l)?);
    }
    Ok(Value::Array(out))
}
fn merge(a: FuncArgs) -> R {
    let mut out = Map::new();
    for m in a.iter() {
        if m.is_null() {
            continue;
        }
        out.extend(obj(m)?);
    }
    Ok(Value::Object(out))
}
fn lookup(a: FuncArgs) -> R {
    let m = obj(&a[0])?;
    let k = s(&a[1])?;
    match m.get(&k) {
        Some(v) => Ok(v.clone()),
        None => a
            .get(2)
            .cloned()
            .ok_or_else(|| format!("the given key {k:?} does not exist in the map")),
    }
}
fn element(a: FuncArgs) -> R {
    let l = list(&a[0])?;
    if l.is_empty() {
        return Err("cannot use element function with an empty list".into());
    }
    let idx = i(&a[1])?;
    if idx < 0 {
        return Err("cannot use element function with a negative index".into());
    }
    Ok(l[(idx as usize) % l.len()].clone())
}
fn contains(a: FuncArgs) -> R {
    Ok(Value::Bool(list(&a[0])?.contains(&a[1])))
}
fn index_fn(a: FuncArgs) -> R {
    list(&a[0])?
        .iter()
        .position(|v| *v == a[1])
        .map(|p| Value::from(p as i64))
        .ok_or_else(|| "item not found".into())
}
fn coalesce(a: FuncArgs) -> R {
    a.iter()
        .find(|v| !v.is_null() && !matches!(v, Value::String(x) if x.is_empty()))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty-string arguments".into())
}
fn coalescelist(a: FuncArgs) -> R {
    a.iter()
        .find(|v| matches!(v, Value::Array(x) if !x.is_empty()))
        .cloned()
        .ok_or_else(|| "no non-empty list arguments".into())
}
fn compact(a: FuncArgs) -> R {
    Ok(Value::Array(
        list(&a[0])?
            .into_iter()
            .filter(|v| !v.is_null() && !matches!(v, Value::String(x) if x.is_empty()))
            .collect(),
    ))
}
fn keys(a: FuncArgs) -> R {
    let mut k: Vec<String> = obj(&a[0])?.keys().cloned().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(Value::String).collect()))
}
fn values(a: FuncArgs) -> R {
    let m = obj(&a[0])?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(
        k.into_iter().filter_map(|k| m.get(k).cloned()).collect(),
    ))
}
fn reverse(a: FuncArgs) -> R {
    let mut l = list(&a[0])?;
    l.reverse();
    Ok(Value::Array(l))
}
fn sort(a: FuncArgs) -> R {
    let mut l = str_list(&a[0])?;
    l.sort();
    Ok(Value::Array(l.into_iter().map(Value::String).collect()))
}
fn distinct(a: FuncArgs) -> R {
    let mut out: Vec<Value> = Vec::new();
    for v in list(&a[0])? {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(Value::Array(out))
}
fn flatten_into(v: Vec<Value>, out: &mut Vec<Value>) {
    for e in v {
        match e {
            Value::Array(inner) => flatten_into(inner, out),
            other => out.push(other),
        }
    }
}
fn flatten(a: FuncArgs) -> R {
    let mut out = Vec::new();
    flatten_into(list(&a[0])?, &mut out);
    Ok(Value::Array(out))
}
fn slice(a: FuncArgs) -> R {
    let l = list(&a[0])?;
    let (st, en) = (i(&a[1])?, i(&a[2])?);
    if st < 0 || en < st || en as usize > l.len() {
        return Err("invalid slice indices".into());
    }
    Ok(Value::Array(l[st as usize..en as usize].to_vec()))
}
fn zipmap(a: FuncArgs) -> R {
    let (k, v) = (str_list(&a[0])?, list(&a[1])?);
    if k.len() != v.len() {
        return Err("number of keys and values must match".into());
    }
    Ok(Value::Object(k.into_iter().zip(v).collect()))
}
fn range(a: FuncArgs) -> R {
    let all = args(&a);
    let nums = all.iter().map(f).collect::<Result<Vec<_>, _>>()?;
    let (start, end, step) = match nums.as_slice() {
        [e] => (0.0, *e, 1.0),
        [s0, e] => (*s0, *e, if e >= s0 { 1.0 } else { -1.0 }),
        [s0, e, st] => (*s0, *e, *st),
        _ => return Err("range expects 1 to 3 arguments".into()),
    };
    if step == 0.0 {
        return Err("step must not be zero".into());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        out.push(num(x));
        x += step;
        if out.len() > 1024 {
            return Err("more than 1024 values were generated".into());
        }
    }
    Ok(Value::Array(out))
}

// --- numbers

fn abs(a: FuncArgs) -> R {
    Ok(num(f(&a[0])?.abs()))
}
fn ceil(a: FuncArgs) -> R {
    Ok(num(f(&a[0])?.ceil()))
}
fn floor(a: FuncArgs) -> R {
    Ok(num(f(&a[0])?.floor()))
}
fn min(a: FuncArgs) -> R {
    let n = a.iter().map(f).collect::<Result<Vec<_>, _>>()?;
    n.into_iter()
        .reduce(f64::min)
        .map(num)
        .ok_or_else(|| "must pass at least one number".into())
}
fn max(a: FuncArgs) -> R {
    let n = a.iter().map(f).collect::<Result<Vec<_>, _>>()?;
    n.into_iter()
        .reduce(f64::max)
        .map(num)
        .ok_or_else(|| "must pass at least one number".into())
}
fn parseint(a: FuncArgs) -> R {
    let (st, base) = (s(&a[0])?, i(&a[1])?);
    i64::from_str_radix(&st, base as u32)
        .map(Value::from)
        .map_err(|e| format!("cannot parse {st:?} as a base {base} integer: {e}"))
}

// --- conversions

fn tostring(a: FuncArgs) -> R {
    if a[0].is_null() {
        return Ok(Value::Null);
    }
    s(&a[0]).map(Value::String)
}
fn tonumber(a: FuncArgs) -> R {
    if a[0].is_null() {
        return Ok(Value::Null);
    }
    match &a[0] {
        Value::Number(_) => Ok(a[0].clone()),
        Value::String(st) => crate::eval::VarType::Number
            .convert(Value::String(st.clone()))
            .map_err(|_| format!("cannot convert {st:?} to number")),
        other => Err(format!("cannot convert {} to number", type_name(other))),
    }
}
fn tobool(a: FuncArgs) -> R {
    if a[0].is_null() {
        return Ok(Value::Null);
    }
    as_bool(&a[0])
        .map(Value::Bool)
        .ok_or_else(|| format!("cannot convert {} to bool", type_name(&a[0])))
}
fn tolist(a: FuncArgs) -> R {
    Ok(Value::Array(list(&a[0])?))
}
fn toset(a: FuncArgs) -> R {
    distinct(a)
}
fn tomap(a: FuncArgs) -> R {
    Ok(Value::Object(obj(&a[0])?))
}
fn jsonencode(a: FuncArgs) -> R {
    serde_json::to_string(&to_json(&a[0]))
        .map(Value::String)
        .map_err(|e| e.to_string())
}
fn jsondecode(a: FuncArgs) -> R {
    let v: serde_json::Value =
        serde_json::from_str(&s(&a[0])?).map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(from_json(&v))
}
fn base64encode(a: FuncArgs) -> R {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(s(&a[0])?),
    ))
}
fn base64decode(a: FuncArgs) -> R {
    let b = base64::engine::general_purpose::STANDARD
        .decode(s(&a[0])?)
        .map_err(|e| format!("failed to decode base64 data: {e}"))?;
    String::from_utf8(b)
        .map(Value::String)
        .map_err(|_| "the result of decoding the provided string is not valid UTF-8".into())
}

// --- filesystem

fn file(a: FuncArgs) -> R {
    let p = PathBuf::from(s(&a[0])?);
    let full = if p.is_absolute() {
        p.clone()
    } else {
        BASE_DIR
            .with(|b| b.borrow().clone())
            .unwrap_or_default()
            .join(&p)
    };
    std::fs::read_to_string(&full)
        .map(Value::String)
        .map_err(|e| format!("failed to read {}: {e}", p.display()))
}

/// Declares every function in `ctx`.
pub(crate) fn declare_all(ctx: &mut Context) {
    use ParamType::Any;
    let fixed = |func: hcl::eval::Func, n: usize| FuncDef::new(func, std::iter::repeat_n(Any, n));
    let variadic = |func: hcl::eval::Func, n: usize| {
        let mut b = FuncDef::builder();
        for _ in 0..n {
            b = b.param(Any);
        }
        b.variadic_param(Any).build(func)
    };
    let table: &[(&str, hcl::eval::Func, usize, bool)] = &[
        ("upper", upper, 1, false),
        ("lower", lower, 1, false),
        ("title", title, 1, false),
        ("trimspace", trimspace, 1, false),
        ("trimprefix", trimprefix, 2, false),
        ("trimsuffix", trimsuffix, 2, false),
        ("trim", trim, 2, false),
        ("chomp", chomp, 1, false),
        ("replace", replace, 3, false),
        ("strrev", strrev, 1, false),
        ("substr", substr, 3, false),
        ("join", join, 1, true),
        ("split", split, 2, false),
        ("regex_replace", regex_replace, 3, false),
        ("format", format_fn, 1, true),
        ("length", length, 1, false),
        ("concat", concat, 0, true),
        ("merge", merge, 0, true),
        ("lookup", lookup, 2, true),
        ("element", element, 2, false),
        ("contains", contains, 2, false),
        ("index", index_fn, 2, false),
        ("coalesce", coalesce, 0, true),
        ("coalescelist", coalescelist, 0, true),
        ("compact", compact, 1, false),
        ("keys", keys, 1, false),
        ("values", values, 1, false),
        ("reverse", reverse, 1, false),
        ("sort", sort, 1, false),
        ("distinct", distinct, 1, false),
        ("flatten", flatten, 1, false),
        ("slice", slice, 3, false),
        ("zipmap", zipmap, 2, false),
        ("range", range, 1, true),
        ("abs", abs, 1, false),
        ("ceil", ceil, 1, false),
        ("floor", floor, 1, false),
        ("min", min, 0, true),
        ("max", max, 0, true),
        ("parseint", parseint, 2, false),
        ("tostring", tostring, 1, false),
        ("tonumber", tonumber, 1, false),
        ("tobool", tobool, 1, false),
        ("tolist", tolist, 1, false),
        ("toset", toset, 1, false),
        ("tomap", tomap, 1, false),
        ("jsonencode", jsonencode, 1, false),
        ("jsondecode", jsondecode, 1, false),
        ("base64encode", base64encode, 1, false),
        ("base64decode", base64decode, 1, false),
        ("file", file, 1, false),
    ];
    for (name, func, n, var) in table {
        let def = if *var {
            variadic(*func, *n)
        } else {
            fixed(*func, *n)
        };
        ctx.declare_func(*name, def);
    }
}
