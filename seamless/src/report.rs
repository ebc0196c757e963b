//! Where seamless's own messages go.
//!
//! Everything goes through the [`log`] facade under the target `seamless`.
//! The launcher never runs user code, so it never sees the user's logger;
//! when no logger is configured (`log::max_level()` is `Off`), warnings and
//! errors are written to stderr instead, prefixed with the process id, so
//! that a failing start-up or a refused pid is never silent. Nothing is ever
//! written to stdout.

use std::fmt;
use std::io::Write;

pub(crate) fn emit(level: log::Level, args: fmt::Arguments<'_>) {
    if log::max_level() == log::LevelFilter::Off {
        if level <= log::Level::Warn {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(
                stderr,
                "seamless[{}] {}: {}",
                std::process::id(),
                level.as_str().to_ascii_lowercase(),
                args
            );
        }
        return;
    }
    log::log!(target: "seamless", level, "{}", args);
}

macro_rules! error {
    ($($arg:tt)*) => { $crate::report::emit(log::Level::Error, format_args!($($arg)*)) };
}
macro_rules! warning {
    ($($arg:tt)*) => { $crate::report::emit(log::Level::Warn, format_args!($($arg)*)) };
}
macro_rules! info {
    ($($arg:tt)*) => { $crate::report::emit(log::Level::Info, format_args!($($arg)*)) };
}
macro_rules! debug {
    ($($arg:tt)*) => { $crate::report::emit(log::Level::Debug, format_args!($($arg)*)) };
}
pub(crate) use {debug, error, info, warning};
