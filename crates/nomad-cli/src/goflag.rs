//! A per-command flag parser with the rules of Go's `flag` package, which Nomad's CLI uses.
//!
//! Rules: `-flag` and `--flag` are the same; values come as `-flag=v` or `-flag v`; bool flags
//! take a value only as `-flag=false`; parsing stops at the first positional argument or after
//! `--`; `-h`/`-help` ask for help unless the command defines them.

use std::collections::BTreeMap;

/// Why parsing stopped without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagError {
    /// `-h` or `-help` was given.
    Help,
    /// A malformed or unknown flag; the message is Go's wording.
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bool(bool),
    Str(String),
    Int(i64),
    List(Vec<String>),
}

#[derive(Debug, Clone)]
struct Flag {
    value: Value,
    set: bool,
}

/// The flags of one command.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    flags: BTreeMap<String, Flag>,
}

impl FlagSet {
    /// An empty flag set.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, name: &str, value: Value) -> &mut Self {
        self.flags
            .insert(name.to_string(), Flag { value, set: false });
        self
    }

    /// Registers a bool flag.
    pub fn bool(&mut self, name: &str, default: bool) -> &mut Self {
        self.add(name, Value::Bool(default))
    }

    /// Registers a string flag.
    pub fn string(&mut self, name: &str, default: &str) -> &mut Self {
        self.add(name, Value::Str(default.to_string()))
    }

    /// Registers an integer flag (Go `strconv.ParseInt(s, 0, 64)` syntax).
    pub fn int(&mut self, name: &str, default: i64) -> &mut Self {
        self.add(name, Value::Int(default))
    }

    /// Registers a repeatable string flag (`-var a=1 -var b=2`).
    pub fn list(&mut self, name: &str) -> &mut Self {
        self.add(name, Value::List(Vec::new()))
    }

    /// Parses `args`, returning the remaining positional arguments.
    pub fn parse(&mut self, args: &[String]) -> Result<Vec<String>, FlagError> {
        let mut i = 0;
        while i < args.len() {
            let s = &args[i];
            if s.len() < 2 || !s.starts_with('-') {
                break;
            }
            let mut minuses = 1;
            if s.as_bytes()[1] == b'-' {
                minuses = 2;
                if s.len() == 2 {
                    i += 1;
                    break;
                }
            }
            let body = &s[minuses..];
            if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
                return Err(FlagError::Invalid(format!("bad flag syntax: {s}")));
            }
            i += 1;
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let Some(flag) = self.flags.get_mut(name) else {
                if name == "help" || name == "h" {
                    return Err(FlagError::Help);
                }
                return Err(FlagError::Invalid(format!(
                    "flag provided but not defined: -{name}"
                )));
            };
            if let Value::Bool(b) = &mut flag.value {
                match inline {
                    Some(v) => match parse_go_bool(&v) {
                        Some(parsed) => *b = parsed,
                        None => {
                            return Err(FlagError::Invalid(format!(
                                "invalid boolean value {v:?} for -{name}: parse error"
                            )))
                        }
                    },
                    None => *b = true,
                }
                flag.set = true;
                continue;
            }
            let v = match inline {
                Some(v) => v,
                None if i < args.len() => {
                    i += 1;
                    args[i - 1].clone()
                }
                None => {
                    return Err(FlagError::Invalid(format!(
                        "flag needs an argument: -{name}"
                    )))
                }
            };
            match &mut flag.value {
                Value::Str(cur) => *cur = v,
                Value::List(l) => l.push(v),
                Value::Int(n) => match parse_go_int(&v) {
                    Some(parsed) => *n = parsed,
                    None => {
                        return Err(FlagError::Invalid(format!(
                            "invalid value {v:?} for flag -{name}: parse error"
                        )))
                    }
                },
                Value::Bool(_) => unreachable!("bool flags are handled above"),
            }
            flag.set = true;
        }
        Ok(args[i..].to_vec())
    }

    /// A bool flag's value (false for unknown names).
    pub fn get_bool(&self, name: &str) -> bool {
        matches!(
            self.flags.get(name).map(|f| &f.value),
            Some(Value::Bool(true))
        )
    }

    /// A string flag's value (empty for unknown names).
    pub fn get_str(&self, name: &str) -> String {
        match self.flags.get(name).map(|f| &f.value) {
            Some(Value::Str(s)) => s.clone(),
            _ => String::new(),
        }
    }

    /// An integer flag's value (0 for unknown names).
    pub fn get_int(&self, name: &str) -> i64 {
        match self.flags.get(name).map(|f| &f.value) {
            Some(Value::Int(n)) => *n,
            _ => 0,
        }
    }

    /// A list flag's values in the order given.
    pub fn get_list(&self, name: &str) -> Vec<String> {
        match self.flags.get(name).map(|f| &f.value) {
            Some(Value::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }

    /// Whether the flag was given on the command line.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_set(&self, name: &str) -> bool {
        self.flags.get(name).is_some_and(|f| f.set)
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b`/leading-0 prefixes, `_` separators.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = rest.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    if digits.is_empty() || digits.ends_with('_') || (radix == 10 && digits.contains('_')) {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    let v = i128::from_str_radix(&clean, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn set() -> FlagSet {
        let mut f = FlagSet::new();
        f.bool("detach", false)
            .bool("verbose", false)
            .string("address", "")
            .int("n", -1)
            .list("var");
        f
    }

    #[test]
    fn values_inline_and_separate() {
        let mut f = set();
        let rest = f
            .parse(&args(&["-address=http://x:1", "--n", "5", "job.hcl"]))
            .unwrap();
        assert_eq!(f.get_str("address"), "http://x:1");
        assert_eq!(f.get_int("n"), 5);
        assert_eq!(rest, args(&["job.hcl"]));
        let mut f = set();
        f.parse(&args(&["--address", "a"])).unwrap();
        assert_eq!(f.get_str("address"), "a");
        assert!(f.is_set("address"));
        assert!(!f.is_set("n"));
    }

    #[test]
    fn bools_take_no_separate_value() {
        let mut f = set();
        let rest = f.parse(&args(&["-detach", "false"])).unwrap();
        assert!(f.get_bool("detach"));
        assert_eq!(rest, args(&["false"]));
        let mut f = set();
        f.parse(&args(&["-detach=false", "--verbose=true"]))
            .unwrap();
        assert!(!f.get_bool("detach"));
        assert!(f.get_bool("verbose"));
        let mut f = set();
        assert_eq!(
            f.parse(&args(&["-detach=maybe"])),
            Err(FlagError::Invalid(
                "invalid boolean value \"maybe\" for -detach: parse error".into()
            ))
        );
    }

    #[test]
    fn stops_at_positional_and_double_dash() {
        let mut f = set();
        let rest = f.parse(&args(&["-detach", "id", "-verbose"])).unwrap();
        assert_eq!(rest, args(&["id", "-verbose"]));
        assert!(!f.get_bool("verbose"));
        let mut f = set();
        let rest = f.parse(&args(&["-detach", "--", "-verbose"])).unwrap();
        assert_eq!(rest, args(&["-verbose"]));
        let mut f = set();
        let rest = f.parse(&args(&["-", "x"])).unwrap();
        assert_eq!(rest, args(&["-", "x"]));
    }

    #[test]
    fn repeatable_lists() {
        let mut f = set();
        f.parse(&args(&["-var", "a=1", "-var=b=2"])).unwrap();
        assert_eq!(f.get_list("var"), args(&["a=1", "b=2"]));
    }

    #[test]
    fn errors_use_go_wording() {
        let mut f = set();
        assert_eq!(
            f.parse(&args(&["-x"])),
            Err(FlagError::Invalid(
                "flag provided but not defined: -x".into()
            ))
        );
        let mut f = set();
        assert_eq!(
            f.parse(&args(&["-address"])),
            Err(FlagError::Invalid(
                "flag needs an argument: -address".into()
            ))
        );
        let mut f = set();
        assert_eq!(
            f.parse(&args(&["---x"])),
            Err(FlagError::Invalid("bad flag syntax: ---x".into()))
        );
        let mut f = set();
        assert_eq!(
            f.parse(&args(&["-=x"])),
            Err(FlagError::Invalid("bad flag syntax: -=x".into()))
        );
        let mut f = set();
        assert_eq!(
            f.parse(&args(&["-n", "abc"])),
            Err(FlagError::Invalid(
                "invalid value \"abc\" for flag -n: parse error".into()
            ))
        );
    }

    #[test]
    fn help_flags() {
        for h in ["-h", "-help", "--help", "--h"] {
            let mut f = set();
            assert_eq!(f.parse(&args(&[h])), Err(FlagError::Help));
        }
        let mut f = FlagSet::new();
        f.string("h", "");
        f.parse(&args(&["-h", "v"])).unwrap();
        assert_eq!(f.get_str("h"), "v");
    }

    #[test]
    fn go_ints() {
        assert_eq!(parse_go_int("0x10"), Some(16));
        assert_eq!(parse_go_int("010"), Some(8));
        assert_eq!(parse_go_int("-5"), Some(-5));
        assert_eq!(parse_go_int("1_000"), None);
        assert_eq!(parse_go_int("0x_1"), Some(1));
        assert_eq!(parse_go_int(""), None);
    }
}
