//! The local terminal for interactive exec sessions: tty detection, raw mode (restored on
//! every exit path: drop, explicit restore before `process::exit`, and a process-wide copy for
//! signal exits) and the window size.

use std::io::IsTerminal;
use std::sync::Mutex;

use nix::sys::termios::{self, SetArg, Termios};

/// Whether both stdin and stdout are terminals (Nomad's default for `-t`).
pub fn stdin_and_stdout_are_terminals() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The terminal size of stdout (else stdin) as (rows, columns).
pub fn window_size() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| rustix::termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    Some((ws.ws_row, ws.ws_col))
}

/// The mode to restore, shared so any exit path can put it back.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Raw mode on stdin while alive.
#[derive(Debug)]
pub struct RawMode(());

impl RawMode {
    /// Puts stdin into raw mode (no echo, no line editing, no signals from keys: Ctrl-C goes to
    /// the remote command).
    pub fn enable() -> Result<RawMode, String> {
        let stdin = std::io::stdin();
        let orig = termios::tcgetattr(&stdin).map_err(|e| format!("not a terminal: {e}"))?;
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw)
            .map_err(|e| format!("failed to set raw mode: {e}"))?;
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(orig);
        Ok(RawMode(()))
    }
}

/// Restores the terminal mode saved by [`RawMode::enable`], if any (idempotent).
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(orig) = saved {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &orig);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}
