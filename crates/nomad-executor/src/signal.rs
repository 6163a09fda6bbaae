//! Signal names <-> numbers.
//!
//! Accepts upper- or lower-case names with or without the `SIG` prefix
//! (`"SIGTERM"`, `"term"`, `"TERM"`), and plain numbers (`"15"`).

/// A signal name that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {name:?}")]
pub struct SignalParseError {
    /// The name as given.
    pub name: String,
}

/// Linux signal names and numbers (x86_64/aarch64 numbering via libc constants).
const SIGNALS: &[(&str, i32)] = &[
    ("SIGABRT", libc::SIGABRT),
    ("SIGALRM", libc::SIGALRM),
    ("SIGBUS", libc::SIGBUS),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGFPE", libc::SIGFPE),
    ("SIGHUP", libc::SIGHUP),
    ("SIGILL", libc::SIGILL),
    ("SIGINT", libc::SIGINT),
    ("SIGIO", libc::SIGIO),
    ("SIGIOT", libc::SIGIOT),
    ("SIGKILL", libc::SIGKILL),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGPROF", libc::SIGPROF),
    ("SIGPWR", libc::SIGPWR),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGSTKFLT", libc::SIGSTKFLT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGSYS", libc::SIGSYS),
    ("SIGTERM", libc::SIGTERM),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
];

/// Parses a signal name (`"SIGTERM"`, `"TERM"`, `"sigterm"`) or number (`"15"`).
pub fn parse_signal(name: &str) -> Result<i32, SignalParseError> {
    let err = || SignalParseError {
        name: name.to_string(),
    };
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(err());
    }
    if let Ok(n) = trimmed.parse::<i32>() {
        // Real-time signals are allowed by number.
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(err())
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS
        .iter()
        .find(|(n, _)| *n == full)
        .map(|(_, v)| *v)
        .ok_or_else(err)
}

/// The canonical name (`"SIGTERM"`) for a signal number, if it has one.
pub fn signal_name(signo: i32) -> Option<&'static str> {
    SIGNALS
        .iter()
        .filter(|(n, _)| *n != "SIGIOT")
        .find(|(_, v)| *v == signo)
        .map(|(n, _)| *n)
}

/// Ignores the signals a terminal or a service manager sends to stop a process (HUP, INT,
/// QUIT, TERM, TSTP), for helpers such as the exit recorder that must outlive the agent.
#[cfg(target_os = "linux")]
pub fn ignore_stop_signals() {
    for sig in [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGTSTP,
    ] {
        // SAFETY: installing SIG_IGN runs no handler code; the call has no memory-safety
        // preconditions.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_and_without_prefix() {
        assert_eq!(parse_signal("SIGTERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sigint"), Ok(libc::SIGINT));
        assert_eq!(parse_signal("hup"), Ok(libc::SIGHUP));
        assert_eq!(parse_signal("SIGUSR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse_signal("KILL"), Ok(libc::SIGKILL));
        assert_eq!(parse_signal(" SIGQUIT "), Ok(libc::SIGQUIT));
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_signal("9"), Ok(9));
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("-1").is_err());
        assert!(parse_signal("1000").is_err());
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = parse_signal("SIGNOPE").unwrap_err();
        assert_eq!(err.to_string(), "unknown signal \"SIGNOPE\"");
        assert!(parse_signal("").is_err());
        assert!(parse_signal("SIG").is_err());
    }

    #[test]
    fn names_round_trip() {
        for (name, num) in SIGNALS {
            assert_eq!(parse_signal(name), Ok(*num));
        }
        assert_eq!(signal_name(libc::SIGABRT), Some("SIGABRT"));
        assert_eq!(signal_name(libc::SIGKILL), Some("SIGKILL"));
        assert_eq!(signal_name(12345), None);
    }
}
