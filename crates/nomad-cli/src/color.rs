//! Coloured output as Nomad's CLI does it: section headers in bold when stdout is a
//! terminal, never with `-no-color` / `NOMAD_CLI_NO_COLOR`, always with `-force-color` /
//! `NOMAD_CLI_FORCE_COLOR` (no-color wins when both are given). Decided once per command by
//! [`crate::meta::Meta::from_flags`].

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether output is coloured, given the two options and whether stdout is a terminal.
pub fn decide(no_color: bool, force_color: bool, stdout_is_terminal: bool) -> bool {
    !no_color && (force_color || stdout_is_terminal)
}

/// Sets this process's colour mode from the general options.
pub fn configure(no_color: bool, force_color: bool) {
    let on = decide(no_color, force_color, std::io::stdout().is_terminal());
    ENABLED.store(on, Ordering::Relaxed);
}

/// `s` in bold (then reset) when colour is on, else `s` unchanged.
pub fn bold(s: &str) -> String {
    if ENABLED.load(Ordering::Relaxed) {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        assert!(decide(false, false, true));
        assert!(!decide(false, false, false));
        assert!(decide(false, true, false));
        assert!(!decide(true, true, true));
        assert!(!decide(true, false, true));
    }
}
