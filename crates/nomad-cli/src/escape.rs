//! The escape character of interactive exec sessions (ssh-style, as Nomad's `escapingio`):
//! recognised at the very start of input and right after `\n` or `\r`; `<esc>.` closes the
//! session, `<esc><esc>` sends one `<esc>`, `<esc>` followed by anything else is forwarded
//! unchanged. `-e none` disables it.

/// Parses `-e`: `none` → no escape character; else exactly one byte.
pub fn parse_escape_char(v: &str) -> Result<Option<u8>, String> {
    match v {
        "none" | "" => Ok(None),
        s if s.len() == 1 => Ok(Some(s.as_bytes()[0])),
        _ => Err("-e requires 'none' or a single character".to_string()),
    }
}

/// What feeding input produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    /// Bytes to send.
    pub data: Vec<u8>,
    /// `<esc>.` was typed: close the session (nothing after it is sent).
    pub disconnect: bool,
}

/// The escape state machine over a byte stream (state carries across reads).
#[derive(Debug, Clone)]
pub struct EscapeFilter {
    esc: Option<u8>,
    at_line_start: bool,
    pending: bool,
}

impl EscapeFilter {
    /// A filter for `esc` (`None` = transparent).
    pub fn new(esc: Option<u8>) -> Self {
        EscapeFilter {
            esc,
            at_line_start: true,
            pending: false,
        }
    }

    /// Filters one chunk of input.
    pub fn feed(&mut self, input: &[u8]) -> Filtered {
        let Some(esc) = self.esc else {
            return Filtered {
                data: input.to_vec(),
                disconnect: false,
            };
        };
        let mut out = Filtered::default();
        for &b in input {
            if self.pending {
                self.pending = false;
                if b == b'.' {
                    out.disconnect = true;
                    return out;
                }
                if b == esc {
                    // `~~`: one `~`, and we are no longer at the start of a line.
                    out.data.push(esc);
                    self.at_line_start = false;
                    continue;
                }
                out.data.push(esc);
                // Fall through: `b` is handled as ordinary input below.
            } else if self.at_line_start && b == esc {
                self.pending = true;
                continue;
            }
            out.data.push(b);
            self.at_line_start = b == b'\n' || b == b'\r';
        }
        out
    }

    /// Whether an escape character is held back waiting for the next byte (flush it at EOF).
    pub fn pending(&self) -> Option<u8> {
        if self.pending {
            self.esc
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(esc: Option<u8>, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut f = EscapeFilter::new(esc);
        let mut data = Vec::new();
        for c in chunks {
            let r = f.feed(c);
            data.extend(r.data);
            if r.disconnect {
                return (data, true);
            }
        }
        (data, false)
    }

    #[test]
    fn disconnect_at_start_and_after_newlines() {
        assert_eq!(run(Some(b'~'), &[b"~."]), (vec![], true));
        assert_eq!(run(Some(b'~'), &[b"ls\n~.rest"]), (b"ls\n".to_vec(), true));
        assert_eq!(run(Some(b'~'), &[b"ls\r~."]), (b"ls\r".to_vec(), true));
        // Split across reads.
        assert_eq!(run(Some(b'~'), &[b"ls\n~", b"."]), (b"ls\n".to_vec(), true));
    }

    #[test]
    fn not_at_line_start_is_plain() {
        assert_eq!(run(Some(b'~'), &[b"a~.b"]), (b"a~.b".to_vec(), false));
    }

    #[test]
    fn double_escape_sends_one_and_other_bytes_pass() {
        assert_eq!(run(Some(b'~'), &[b"~~."]), (b"~.".to_vec(), false));
        assert_eq!(run(Some(b'~'), &[b"~x"]), (b"~x".to_vec(), false));
        // `~\n` forwards both and the next line starts fresh.
        assert_eq!(run(Some(b'~'), &[b"~\n~."]), (b"~\n".to_vec(), true));
    }

    #[test]
    fn none_is_transparent_and_other_chars_work() {
        assert_eq!(run(None, &[b"~."]), (b"~.".to_vec(), false));
        assert_eq!(run(Some(b'#'), &[b"~.\n#."]), (b"~.\n".to_vec(), true));
    }

    #[test]
    fn pending_is_reported() {
        let mut f = EscapeFilter::new(Some(b'~'));
        assert!(f.feed(b"~").data.is_empty());
        assert_eq!(f.pending(), Some(b'~'));
    }

    #[test]
    fn escape_flag_parsing() {
        assert_eq!(parse_escape_char("~"), Ok(Some(b'~')));
        assert_eq!(parse_escape_char("none"), Ok(None));
        assert_eq!(
            parse_escape_char("ab"),
            Err("-e requires 'none' or a single character".to_string())
        );
    }
}
