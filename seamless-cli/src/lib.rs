//! `seamless`: the status of a service's generations, and restarts with a
//! verdict.
//!
//! ```text
//! seamless status PIDFILE [--json]
//! seamless restart PIDFILE [--timeout DUR] [--spawn auto|always|never]
//! seamless --help | --version
//! seamless restart --help
//! ```
//!
//! Exit status of `status`: 0 when a generation serves, 3 when none runs,
//! 1 on an error (unreadable pid file, foreign owner, an endpoint that
//! misbehaves), 2 on a usage error.
//!
//! Exit status of `restart`: 0 when a new generation called `started()`
//! (and passed its probation, when the service sets one) within the
//! timeout, 1 when none did, when it died during its probation, or when
//! the restart was refused, 3 when
//! no generation runs, 2 on a usage error, or when `--spawn auto` cannot
//! tell who starts the next launcher (then nothing was changed). When no
//! generation serves but some run (a restart under way), `restart` asks
//! nothing and waits for one to call `started()`.
//!
//! The tool talks to each generation through its endpoint next to the pid
//! file (`seamless::admin`); it needs nothing from the supervisor.
//!
//! The binary is `src/main.rs`; this library is the whole tool, so that
//! the workspace's integration tests can build it as a program of their
//! own.

mod launch;
mod restart;
mod status;
mod time;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit statuses.
pub(crate) const OK: u8 = 0;
pub(crate) const FAILED: u8 = 1;
/// A usage error, or `--spawn auto` cannot tell who starts the next
/// launcher: the caller must say, and nothing was changed. (clap exits
/// with 2 on a usage error as well.)
pub(crate) const USAGE_ERROR: u8 = 2;
pub(crate) const NONE_RUNS: u8 = 3;

/// Who starts the next generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Spawn {
    /// The supervisor, if this tool knows it (runsv, supervise,
    /// s6-supervise, supervisord, systemd); this tool, if nobody else can
    /// (the launcher was adopted by pid 1, or a shell at a terminal runs
    /// it); for any other parent, exit 2 having changed nothing.
    Auto,
    /// This tool: when nothing restarts the service.
    Always,
    /// The launcher's parent, whatever it is: when it restarts the
    /// service.
    Never,
}

/// The status of a service's generations, and restarts with a verdict.
#[derive(Debug, Parser)]
#[command(
    name = "seamless",
    version,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = "Exit status: 0 done (a generation serves; a new generation started), \
                  1 failed or an error, 2 usage error, 3 no generation runs."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every generation of the service: role, since and until when, its
    /// launcher, listeners and successors.
    ///
    /// Exits 0 when a generation serves, 3 when none does, 1 on an error.
    Status {
        /// The service's pid file.
        #[arg(value_name = "PIDFILE")]
        pid_file: PathBuf,
        /// A JSON object with a `generations` array.
        #[arg(long)]
        json: bool,
    },
    /// Restarts the service as a TERM to its launcher would, and waits
    /// for a new generation to call started() (and to pass its probation,
    /// when the service sets one).
    ///
    /// Exits 0 when a new generation called started() (and passed its
    /// probation) within the timeout, 1 when none did or it died during
    /// its probation (what happened is printed), 3 when no generation
    /// runs, 2 when --spawn auto cannot tell who starts the next launcher
    /// (then nothing was changed). With no serving generation but some
    /// running (a restart under way), nothing is asked and --spawn is not
    /// used: restart waits for one to call started().
    Restart {
        /// The service's pid file.
        #[arg(value_name = "PIDFILE")]
        pid_file: PathBuf,
        /// How long to wait for the new generation: "10s", "1500ms", "2m"
        /// or "1m30s" [default: the service's handover_timeout plus its
        /// probation]. Once a new generation is on probation, the wait
        /// lasts until its probation ends.
        #[arg(long, value_name = "DUR", value_parser = time::parse_duration)]
        timeout: Option<Duration>,
        /// Who starts the next launcher once the old one exits.
        #[arg(long, value_enum, default_value_t = Spawn::Auto)]
        spawn: Spawn,
    },
}

/// The tool's reading of a duration (`--timeout`), for the workspace's
/// test that holds it to the same table of cases as the attribute's
/// parser. Not part of the tool's interface.
#[doc(hidden)]
pub fn __parse_duration(text: &str) -> Result<Duration, String> {
    time::parse_duration(text)
}

/// Runs the tool with the process's arguments; returns its exit status.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     seamless_cli::main()
/// }
/// ```
pub fn main() -> ExitCode {
    let code = match Cli::try_parse() {
        Ok(Cli {
            command: Command::Status { pid_file, json },
        }) => status::run(&pid_file, json),
        Ok(Cli {
            command:
                Command::Restart {
                    pid_file,
                    timeout,
                    spawn,
                },
        }) => restart::run(&pid_file, timeout, spawn),
        // --help and --version (0), or a usage error naming the argument
        // (2).
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                USAGE_ERROR
            } else {
                OK
            }
        }
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("seamless").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_and_options_are_parsed() {
        assert!(matches!(
            parse("status /run/a.pid --json"),
            Ok(Cli {
                command: Command::Status { json: true, .. }
            })
        ));
        assert!(matches!(
            parse("restart /run/a.pid --timeout 1500ms --spawn always"),
            Ok(Cli { command: Command::Restart { timeout: Some(t), spawn: Spawn::Always, .. } })
                if t == Duration::from_millis(1500)
        ));
        assert!(matches!(
            parse("restart /run/a.pid"),
            Ok(Cli {
                command: Command::Restart {
                    timeout: None,
                    spawn: Spawn::Auto,
                    ..
                }
            })
        ));
        for (line, kind) in [
            ("--version", clap::error::ErrorKind::DisplayVersion),
            ("-V", clap::error::ErrorKind::DisplayVersion),
            ("--help", clap::error::ErrorKind::DisplayHelp),
            ("help", clap::error::ErrorKind::DisplayHelp),
            ("restart --help", clap::error::ErrorKind::DisplayHelp),
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.kind(), kind, "{line:?}");
            assert!(!e.use_stderr(), "{line:?}: exit 0, on stdout");
        }
    }

    #[test]
    fn usage_errors_name_the_argument() {
        for (bad, named) in [
            ("", "Usage"),
            ("status", "<PIDFILE>"),
            ("status a b", "'b'"),
            ("status a --timeout 1s", "--timeout"),
            ("restart a --json", "--json"),
            ("restart a --timeout", "--timeout"),
            ("restart a --timeout 10", "--timeout <DUR>"),
            ("restart a --timeout 0s", "longer than zero"),
            ("restart a --spawn maybe", "--spawn <SPAWN>"),
            ("stop a", "'stop'"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.use_stderr(), "{bad:?}: a usage error, exit 2");
            assert_eq!(e.exit_code(), i32::from(USAGE_ERROR), "{bad:?}");
            let shown = e.render().to_string();
            assert!(shown.contains(named), "{bad:?}: {shown}");
        }
    }
}
