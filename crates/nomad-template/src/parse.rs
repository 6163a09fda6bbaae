//! Lexing and parsing: text and actions into a tree of [`Node`]s.

use crate::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub(crate) nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Text(String),
    Action(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// `$a, $b := cmd | cmd`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pipeline {
    pub(crate) decl: Vec<String>,
    pub(crate) cmds: Vec<Vec<Operand>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Literal(Value),
    /// `.`, `.a.b`
    Dot(Vec<String>),
    /// `$`, `$x`, `$x.a`
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    /// `( pipeline )` with an optional field chain after it.
    Sub(Box<Pipeline>, Vec<String>),
}

/// One lexed piece of the source.
enum Piece {
    Text(String),
    /// The action's inside, and the line it starts on (for errors).
    Action(String, usize),
}

fn lex(src: &str, left: &str, right: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(start) = rest.find(left) else {
            push_text(&mut out, rest, trim_next);
            break;
        };
        let mut text = &rest[..start];
        let after = &rest[start + left.len()..];
        let trim_before =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_before {
            text = text.trim_end();
        }
        push_text(&mut out, text, trim_next);
        line += rest[..start].matches('\n').count();
        let inner_src = if trim_before { &after[1..] } else { after };
        let end = find_close(inner_src, right)
            .ok_or_else(|| format!("template: {line}: unclosed action"))?;
        let mut inner = &inner_src[..end];
        trim_next = false;
        if inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-") {
            inner = &inner[..inner.len() - 1];
            trim_next = true;
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            out.push(Piece::Action(inner.to_string(), line));
        }
        line += inner_src[..end].matches('\n').count();
        rest = &inner_src[end + right.len()..];
    }
    Ok(out)
}

fn push_text(out: &mut Vec<Piece>, text: &str, trim_start: bool) {
    let text = if trim_start { text.trim_start() } else { text };
    if !text.is_empty() {
        out.push(Piece::Text(text.to_string()));
    }
}

/// Where the action closes, skipping quoted strings (which may contain the delimiter).
fn find_close(s: &str, right: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            _ if s[i..].starts_with(right) => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Num(Value),
    Word(String),
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Pipe,
    Open,
    /// `)` with the field chain after it.
    Close(Vec<String>),
    Declare,
    Comma,
}

fn fields(chain: &str) -> Vec<String> {
    chain
        .split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn tokens(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (is_word_char(chars[*i]) || chars[*i] == '$') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                i += 1;
                let chain = if i < chars.len() && chars[i] == '.' {
                    fields(&word(&mut i))
                } else {
                    vec![]
                };
                out.push(Tok::Close(chain));
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                out.push(Tok::Declare);
                i += 1;
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => v.push('\n'),
                                Some('t') => v.push('\t'),
                                Some('r') => v.push('\r'),
                                Some(&o) => v.push(o),
                                None => return Err("unterminated quoted string".into()),
                            }
                        }
                        Some(&o) => v.push(o),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(v));
            }
            '`' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated raw quoted string".into());
                }
                out.push(Tok::Str(chars[start..i].iter().collect()));
                i += 1;
            }
            '.' => {
                let w = word(&mut i);
                out.push(Tok::Dot(fields(&w)));
            }
            '$' => {
                let w = word(&mut i);
                let mut parts = w.splitn(2, '.');
                let name = parts.next().unwrap_or("$").to_string();
                out.push(Tok::Var(name, fields(parts.next().unwrap_or(""))));
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+')
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect::<String>().replace('_', "");
                let v = if let Some(hex) = text.strip_prefix("0x") {
                    i64::from_str_radix(hex, 16).map(Value::Int).ok()
                } else {
                    text.parse::<i64>()
                        .map(Value::Int)
                        .ok()
                        .or_else(|| text.parse::<f64>().map(Value::Float).ok())
                };
                out.push(Tok::Num(
                    v.ok_or_else(|| format!("bad number syntax: {text:?}"))?,
                ));
            }
            c if c.is_alphabetic() || c == '_' => out.push(Tok::Word(word(&mut i))),
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn pipeline(&mut self, allow_decl: bool) -> Result<Pipeline, String> {
        let mut decl = Vec::new();
        if allow_decl {
            // `$a :=` or `$a, $b :=`
            let save = self.pos;
            let mut names = Vec::new();
            while let Some(Tok::Var(name, chain)) = self.peek().cloned() {
                if !chain.is_empty() {
                    break;
                }
                self.pos += 1;
                names.push(name);
                if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    continue;
                }
                break;
            }
            if !names.is_empty() && self.peek() == Some(&Tok::Declare) {
                self.pos += 1;
                decl = names;
            } else {
                self.pos = save;
            }
        }
        let mut cmds = Vec::new();
        loop {
            let mut cmd = Vec::new();
            while let Some(t) = self.peek().cloned() {
                match t {
                    Tok::Pipe | Tok::Close(_) => break,
                    _ => {
                        self.pos += 1;
                        cmd.push(self.operand(t)?);
                    }
                }
            }
            if cmd.is_empty() {
                return Err("missing value for command".into());
            }
            cmds.push(cmd);
            if self.peek() == Some(&Tok::Pipe) {
                self.pos += 1;
                continue;
            }
            break;
        }
        Ok(Pipeline { decl, cmds })
    }

    fn operand(&mut self, t: Tok) -> Result<Operand, String> {
        Ok(match t {
            Tok::Str(s) => Operand::Literal(Value::Str(s)),
            Tok::Num(v) => Operand::Literal(v),
            Tok::Dot(chain) => Operand::Dot(chain),
            Tok::Var(name, chain) => Operand::Var(name, chain),
            Tok::Word(w) => match w.as_str() {
                "true" => Operand::Literal(Value::Bool(true)),
                "false" => Operand::Literal(Value::Bool(false)),
                "nil" => Operand::Literal(Value::Nil),
                _ => Operand::Ident(w),
            },
            Tok::Open => {
                let inner = self.pipeline(false)?;
                match self.peek().cloned() {
                    Some(Tok::Close(chain)) => {
                        self.pos += 1;
                        Operand::Sub(Box::new(inner), chain)
                    }
                    _ => return Err("unclosed left paren".into()),
                }
            }
            Tok::Pipe | Tok::Close(_) | Tok::Declare | Tok::Comma => {
                return Err("unexpected token in operand".into())
            }
        })
    }
}

fn parse_pipeline(src: &str, line: usize, allow_decl: bool) -> Result<Pipeline, String> {
    let toks = tokens(src).map_err(|e| format!("template: {line}: {e}"))?;
    let mut p = Parser { toks, pos: 0 };
    let pipe = p
        .pipeline(allow_decl)
        .map_err(|e| format!("template: {line}: {e}"))?;
    if p.pos != p.toks.len() {
        return Err(format!("template: {line}: unexpected \")\" in command"));
    }
    Ok(pipe)
}

/// What ended a list of nodes.
enum Stop {
    Eof,
    End,
    Else(Option<(String, usize)>),
}

fn nodes(
    pieces: &mut std::iter::Peekable<std::vec::IntoIter<Piece>>,
) -> Result<(Vec<Node>, Stop), String> {
    let mut out = Vec::new();
    while let Some(p) = pieces.next() {
        let (act, line) = match p {
            Piece::Text(t) => {
                out.push(Node::Text(t));
                continue;
            }
            Piece::Action(a, line) => (a, line),
        };
        let (kw, rest) = act
            .split_once(char::is_whitespace)
            .map_or((act.as_str(), ""), |(k, r)| (k, r.trim()));
        match kw {
            "end" => return Ok((out, Stop::End)),
            "else" => {
                let chained = rest
                    .strip_prefix("if")
                    .filter(|r| r.starts_with(char::is_whitespace))
                    .map(|r| (r.trim().to_string(), line));
                return Ok((out, Stop::Else(chained)));
            }
            "if" => out.push(if_node(rest, line, pieces)?),
            "range" | "with" => {
                let pipe = parse_pipeline(rest, line, true)?;
                let (body, stop) = nodes(pieces)?;
                let otherwise = match stop {
                    Stop::End => vec![],
                    Stop::Else(None) => closed(pieces, kw, line)?,
                    Stop::Else(Some(_)) => {
                        return Err(format!("template: {line}: else if is only for if"))
                    }
                    Stop::Eof => return Err(format!("template: {line}: unexpected EOF")),
                };
                out.push(if kw == "range" {
                    Node::Range {
                        pipe,
                        body,
                        otherwise,
                    }
                } else {
                    Node::With {
                        pipe,
                        body,
                        otherwise,
                    }
                });
            }
            "define" | "template" | "block" | "break" | "continue" => {
                return Err(format!("template: {line}: {kw:?} is not supported"))
            }
            _ => out.push(Node::Action(parse_pipeline(&act, line, true)?)),
        }
    }
    Ok((out, Stop::Eof))
}

/// The rest of an `if`, after its condition: `then`, and `else` / `else if` chains.
fn if_node(
    cond: &str,
    line: usize,
    pieces: &mut std::iter::Peekable<std::vec::IntoIter<Piece>>,
) -> Result<Node, String> {
    let cond = parse_pipeline(cond, line, true)?;
    let (then, stop) = nodes(pieces)?;
    let otherwise = match stop {
        Stop::End => vec![],
        Stop::Else(None) => closed(pieces, "if", line)?,
        Stop::Else(Some((next, l))) => vec![if_node(&next, l, pieces)?],
        Stop::Eof => return Err(format!("template: {line}: unexpected EOF")),
    };
    Ok(Node::If {
        cond,
        then,
        otherwise,
    })
}

/// Nodes up to the `end` of an `else` branch.
fn closed(
    pieces: &mut std::iter::Peekable<std::vec::IntoIter<Piece>>,
    kw: &str,
    line: usize,
) -> Result<Vec<Node>, String> {
    match nodes(pieces)? {
        (n, Stop::End) => Ok(n),
        (_, Stop::Else(_)) => Err(format!("template: {line}: more than one else in {kw}")),
        (_, Stop::Eof) => Err(format!("template: {line}: unexpected EOF")),
    }
}

impl Template {
    /// Parses `src` with the given delimiters (empty: `{{` and `}}`).
    pub fn parse(src: &str, left: &str, right: &str) -> Result<Template, String> {
        let left = if left.is_empty() { "{{" } else { left };
        let right = if right.is_empty() { "}}" } else { right };
        let mut pieces = lex(src, left, right)?.into_iter().peekable();
        match nodes(&mut pieces)? {
            (nodes, Stop::Eof) => Ok(Template { nodes }),
            (_, Stop::End) => Err("template: unexpected {{end}}".into()),
            (_, Stop::Else(_)) => Err("template: unexpected {{else}}".into()),
        }
    }
}
