//! `seamless`: the status of a service's generations, and restarts with a
//! verdict.
//!
//! ```text
//! seamless status PIDFILE [--json]
//! seamless restart PIDFILE [--timeout DUR] [--spawn auto|always|never]
//! seamless --version
//! ```
//!
//! Exit status of `status`: 0 when a generation serves, 3 when none runs,
//! 1 on an error (unreadable pid file, foreign owner, an endpoint that
//! misbehaves), 2 on a usage error.
//!
//! Exit status of `restart`: 0 when a new generation called `started()`
//! within the timeout, 1 when none did (or the restart was refused), 3 when
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

const USAGE: &str = "usage:
  seamless status PIDFILE [--json]
  seamless restart PIDFILE [--timeout DUR] [--spawn auto|always|never]
  seamless --version

DUR is written as \"10s\", \"1500ms\", \"2m\" or \"1m30s\".
--spawn: who starts the next launcher once the old one exits:
  auto   (default) the supervisor, if this tool knows it (runsv, supervise,
         s6-supervise, supervisord, systemd); this tool, if nobody else can
         (the launcher was adopted by pid 1, or a shell at a terminal runs
         it); for any other parent, exit 2 having changed nothing;
  never  the launcher's parent, whatever it is: when it restarts the service;
  always this tool: when nothing restarts the service.
With no serving generation but some running (a restart under way), nothing
is asked and --spawn is not used: restart waits for one to call started().";

/// Exit statuses.
pub(crate) const OK: u8 = 0;
pub(crate) const FAILED: u8 = 1;
/// A usage error, or `--spawn auto` cannot tell who starts the next
/// launcher: the caller must say, and nothing was changed.
pub(crate) const USAGE_ERROR: u8 = 2;
pub(crate) const NONE_RUNS: u8 = 3;

/// Who starts the next generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spawn {
    Auto,
    Always,
    Never,
}

enum Command {
    Status {
        pid_file: PathBuf,
        json: bool,
    },
    Restart {
        pid_file: PathBuf,
        timeout: Option<Duration>,
        spawn: Spawn,
    },
    Help,
    Version,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut args = args.iter();
    let command = args.next().ok_or("a command is missing")?;
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        return Ok(Command::Help);
    }
    if matches!(command.as_str(), "-V" | "--version") {
        return Ok(Command::Version);
    }
    let mut pid_file = None;
    let (mut json, mut timeout, mut spawn) = (false, None, Spawn::Auto);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--json" if command == "status" => json = true,
            "--timeout" if command == "restart" => {
                timeout = Some(time::parse_duration(&value("--timeout")?)?)
            }
            "--spawn" if command == "restart" => {
                spawn = match value("--spawn")?.as_str() {
                    "auto" => Spawn::Auto,
                    "always" => Spawn::Always,
                    "never" => Spawn::Never,
                    other => return Err(format!("--spawn {other:?}: auto, always or never")),
                }
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path if pid_file.is_none() => pid_file = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    let pid_file = pid_file.ok_or("PIDFILE is missing")?;
    match command.as_str() {
        "status" => Ok(Command::Status { pid_file, json }),
        "restart" => Ok(Command::Restart {
            pid_file,
            timeout,
            spawn,
        }),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Runs the tool with the process's arguments; returns its exit status.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     seamless_cli::main()
/// }
/// ```
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse(&args) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            OK
        }
        Ok(Command::Version) => {
            println!("seamless {}", env!("CARGO_PKG_VERSION"));
            OK
        }
        Ok(Command::Status { pid_file, json }) => status::run(&pid_file, json),
        Ok(Command::Restart {
            pid_file,
            timeout,
            spawn,
        }) => restart::run(&pid_file, timeout, spawn),
        Err(e) => {
            eprintln!("seamless: {e}\n{USAGE}");
            USAGE_ERROR
        }
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_and_options_are_parsed() {
        assert!(matches!(
            parse(&args("status /run/a.pid --json")),
            Ok(Command::Status { json: true, .. })
        ));
        assert!(matches!(parse(&args("--version")), Ok(Command::Version)));
        assert!(matches!(parse(&args("-V")), Ok(Command::Version)));
        assert!(matches!(
            parse(&args("restart /run/a.pid --timeout 1500ms --spawn always")),
            Ok(Command::Restart { timeout: Some(t), spawn: Spawn::Always, .. }) if t == Duration::from_millis(1500)
        ));
        for bad in [
            "",
            "status",
            "status a b",
            "status a --timeout 1s",
            "restart a --json",
            "restart a --timeout",
            "restart a --timeout 10",
            "restart a --spawn maybe",
            "stop a",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
