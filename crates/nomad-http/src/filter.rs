//! The `filter` query parameter of list endpoints: go-bexpr boolean expressions over the
//! listed objects' JSON, as Nomad evaluates them (`Status == "running" and Name contains
//! "web"`, `"dc1" in Datacenters`, `Meta.env is not empty`, `Name matches "^api-"`, `not`,
//! parentheses).
//!
//! Selectors name fields by their JSON (PascalCase) names, `.` or `["key"]` going deeper;
//! a missing field is empty. Values are quoted strings (`"..."` or backquoted), numbers,
//! `true`/`false`, or bare words.

use serde_json::Value;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match {
        selector: Vec<String>,
        op: Op,
        value: String,
    },
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Contains,
    NotContains,
    /// `value in selector`.
    In,
    /// `value not in selector`.
    NotIn,
    Matches,
    NotMatches,
    IsEmpty,
    IsNotEmpty,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Eq,
    Ne,
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1
            }
            '.' => {
                out.push(Tok::Dot);
                i += 1
            }
            '=' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Eq);
                i += 2
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Ne);
                i += 2
            }
            '"' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated string at column {}", i + 1)),
                        Some(&ch) if ch == quote => {
                            i += 1;
                            break;
                        }
                        Some('\\') if quote == '"' => {
                            match chars.get(i + 1) {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some(&o) => s.push(o),
                                None => {
                                    return Err(format!("unterminated string at column {}", i + 1))
                                }
                            }
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' || c == '/' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_-/:".contains(chars[i])) {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} at column {}", i + 1)),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x == w)
    }
    fn peek_word_at(&self, off: usize, w: &str) -> bool {
        matches!(self.toks.get(self.pos + off), Some(Tok::Word(x)) if x == w)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<Expr, String> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Expr, String> {
        if self.toks.get(self.pos) == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            if self.next() != Some(Tok::RParen) {
                return Err("expected \")\"".into());
            }
            return Ok(e);
        }
        // `value in selector` / `value not in selector`
        let in_at = if self.peek_word_at(1, "in") {
            Some(1)
        } else if self.peek_word_at(1, "not") && self.peek_word_at(2, "in") {
            Some(2)
        } else {
            None
        };
        if let Some(skip) = in_at {
            let value = self.value()?;
            self.pos += skip;
            let selector = self.selector()?;
            let op = if skip == 1 { Op::In } else { Op::NotIn };
            return Ok(Expr::Match {
                selector,
                op,
                value,
            });
        }
        let selector = self.selector()?;
        let op = match self.next() {
            Some(Tok::Eq) => Op::Equal,
            Some(Tok::Ne) => Op::NotEqual,
            Some(Tok::Word(w)) if w == "contains" => Op::Contains,
            Some(Tok::Word(w)) if w == "matches" => Op::Matches,
            Some(Tok::Word(w)) if w == "is" => {
                let negate = self.peek_word("not");
                if negate {
                    self.pos += 1;
                }
                if !matches!(self.next(), Some(Tok::Word(w)) if w == "empty") {
                    return Err("expected \"empty\" after \"is\"".into());
                }
                let op = if negate { Op::IsNotEmpty } else { Op::IsEmpty };
                return Ok(Expr::Match {
                    selector,
                    op,
                    value: String::new(),
                });
            }
            Some(Tok::Word(w)) if w == "not" => match self.next() {
                Some(Tok::Word(w)) if w == "contains" => Op::NotContains,
                Some(Tok::Word(w)) if w == "matches" => Op::NotMatches,
                _ => return Err("expected \"contains\" or \"matches\" after \"not\"".into()),
            },
            other => {
                return Err(format!(
                    "expected an operator after the selector, found {other:?}"
                ))
            }
        };
        let value = self.value()?;
        Ok(Expr::Match {
            selector,
            op,
            value,
        })
    }
    fn selector(&mut self) -> Result<Vec<String>, String> {
        let mut parts = match self.next() {
            Some(Tok::Word(w)) => vec![w],
            other => return Err(format!("expected a selector, found {other:?}")),
        };
        loop {
            match self.toks.get(self.pos) {
                Some(Tok::Dot) => {
                    self.pos += 1;
                    match self.next() {
                        Some(Tok::Word(w)) => parts.push(w),
                        other => {
                            return Err(format!("expected a field after \".\", found {other:?}"))
                        }
                    }
                }
                Some(Tok::LBracket) => {
                    self.pos += 1;
                    match self.next() {
                        Some(Tok::Str(s)) | Some(Tok::Word(s)) => parts.push(s),
                        other => return Err(format!("expected a key in \"[]\", found {other:?}")),
                    }
                    if self.next() != Some(Tok::RBracket) {
                        return Err("expected \"]\"".into());
                    }
                }
                _ => return Ok(parts),
            }
        }
    }
    fn value(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) | Some(Tok::Word(s)) => Ok(s),
            other => Err(format!("expected a value, found {other:?}")),
        }
    }
}

/// Parses a filter expression.
pub fn parse(src: &str) -> Result<Expr, String> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    Ok(e)
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Object(m) => m.get(p)?,
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn scalar_eq(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want.parse::<bool>().ok() == Some(*b),
        Value::Number(n) => match (n.as_f64(), want.parse::<f64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        },
        Value::Null => want.is_empty(),
        _ => false,
    }
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(m)) => m.is_empty(),
        Some(_) => false,
    }
}

fn contains(v: Option<&Value>, want: &str) -> bool {
    match v {
        Some(Value::String(s)) => s.contains(want),
        Some(Value::Array(a)) => a.iter().any(|x| scalar_eq(x, want)),
        Some(Value::Object(m)) => m.contains_key(want),
        _ => false,
    }
}

impl Expr {
    /// Whether `v` passes the filter. `matches` with an invalid regex matches nothing.
    pub fn eval(&self, v: &Value) -> bool {
        match self {
            Expr::And(a, b) => a.eval(v) && b.eval(v),
            Expr::Or(a, b) => a.eval(v) || b.eval(v),
            Expr::Not(e) => !e.eval(v),
            Expr::Match {
                selector,
                op,
                value,
            } => {
                let found = lookup(v, selector);
                match op {
                    Op::Equal => found.is_some_and(|f| scalar_eq(f, value)),
                    Op::NotEqual => !found.is_some_and(|f| scalar_eq(f, value)),
                    Op::Contains | Op::In => contains(found, value),
                    Op::NotContains | Op::NotIn => !contains(found, value),
                    Op::IsEmpty => is_empty(found),
                    Op::IsNotEmpty => !is_empty(found),
                    Op::Matches | Op::NotMatches => {
                        let hit = match (found, regex::Regex::new(value)) {
                            (Some(Value::String(s)), Ok(re)) => re.is_match(s),
                            _ => false,
                        };
                        (*op == Op::Matches) == hit
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keep(f: &str, v: &Value) -> bool {
        parse(f).unwrap_or_else(|e| panic!("{f}: {e}")).eval(v)
    }

    #[test]
    fn nomad_style_filters() {
        let job = json!({"ID": "web-1", "Status": "running", "Priority": 50, "Stop": false,
            "Datacenters": ["dc1", "dc2"], "Meta": {"env": "prod", "team.name": "x"}, "Empty": ""});
        assert!(keep(r#"Status == "running""#, &job));
        assert!(!keep(r#"Status != "running""#, &job));
        assert!(keep(r#"Priority == 50 and Stop == false"#, &job));
        assert!(keep(r#""dc2" in Datacenters"#, &job));
        assert!(keep(r#""dc3" not in Datacenters"#, &job));
        assert!(keep(r#"Datacenters contains "dc1""#, &job));
        assert!(keep(r#"ID contains "web" or Status == "dead""#, &job));
        assert!(keep(r#"Meta.env == prod"#, &job));
        assert!(keep(r#"Meta["team.name"] == "x""#, &job));
        assert!(keep(r#"Meta.missing is empty and Empty is empty"#, &job));
        assert!(keep(r#"Meta is not empty"#, &job));
        assert!(keep(r#"ID matches "^web-[0-9]+$""#, &job));
        assert!(keep(r#"ID not matches "^api""#, &job));
        assert!(keep(r#"not (Status == "dead")"#, &job));
        assert!(!keep(
            r#"Status == "running" and (ID == "x" or Priority == 1)"#,
            &job
        ));
        assert!(keep("ID == `web-1`", &job));
    }

    #[test]
    fn bad_filters_say_why() {
        for f in [
            "Status ==",
            "Status = \"x\"",
            "(Status == \"a\"",
            "== \"a\"",
            "\"open",
            "Status is full",
        ] {
            assert!(parse(f).is_err(), "{f}");
        }
    }
}
