//! Progress on standard error while the benchmark runs: on a terminal one
//! line, rewritten in place; in a log or a pipe, plain lines. Lines that
//! must stay (a skipped run, a warning) go through [`note`], which clears
//! the progress line first so that the two do not mix.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The phase the progress line is in ("run 2 of 4: ..."), and whether a
/// progress line is on the terminal now.
struct State {
    phase: String,
    shown: bool,
    /// When the last plain line was written (not on a terminal).
    last_line: Option<Instant>,
}

static STATE: Mutex<State> = Mutex::new(State {
    phase: String::new(),
    shown: false,
    last_line: None,
});

/// Not on a terminal, a phase's updates are written at most this often:
/// a log gets a line every few seconds, not one per restart.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

fn terminal() -> bool {
    static TERMINAL: OnceLock<bool> = OnceLock::new();
    *TERMINAL.get_or_init(|| std::io::stderr().is_terminal())
}

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Begins a phase: what the following updates are about.
pub(crate) fn phase(name: impl Into<String>) {
    let mut s = state();
    s.phase = name.into();
    s.last_line = None;
    drop(s);
    update("");
}

/// Where the current phase is, e.g. "restart 3 of 10".
pub(crate) fn update(step: &str) {
    let mut s = state();
    let line = match (s.phase.is_empty(), step.is_empty()) {
        (_, true) => s.phase.clone(),
        (true, false) => step.to_owned(),
        (false, false) => format!("{}: {step}", s.phase),
    };
    let mut err = std::io::stderr().lock();
    if terminal() {
        // Carriage return, then erase the line: a shorter line leaves
        // nothing of the longer one behind.
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        s.shown = true;
    } else if s.last_line.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
        let _ = writeln!(err, "{line}");
        s.last_line = Some(Instant::now());
    }
}

/// Clears the progress line, if one is shown.
pub(crate) fn clear() {
    let mut s = state();
    if std::mem::take(&mut s.shown) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

/// A line that stays, printed below whatever progress was shown.
pub(crate) fn note(line: &str) {
    clear();
    eprintln!("{line}");
}
