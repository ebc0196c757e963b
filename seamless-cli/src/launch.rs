//! Who starts the next generation, and starting it when nobody else will.
//!
//! Under a supervisor, the old launcher's exit makes the supervisor start
//! the next one. A launcher started by hand has nobody: this tool then
//! starts its successor itself, as the supervisor would have, with what
//! `/proc` says of the old launcher, read before it exits: the program
//! (its `argv[0]` resolved as the shell did, through `PATH` and symlinks,
//! so that a deploy that replaced the file or switched a symlink runs the
//! new binary; else the file at `/proc/PID/exe`'s path), argv, working
//! directory, environment, and its stdout and stderr, in a session of its
//! own (`setsid`) so that it outlives this tool and the terminal.
//!
//! Which of the two holds is decided from the launcher's parent alone
//! ([`judge`]), and never guessed: a parent that is neither a supervisor
//! this tool knows nor certainly nobody is [`Starter::Unknown`], and
//! `--spawn auto` then refuses before it touches anything. Starting a
//! launcher next to a supervisor that starts one too runs the service
//! twice; a restart nobody completes leaves the old generation serving
//! until `handover_timeout`: neither is for the tool to risk.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use seamless::admin::Pid;

/// Process names of the supervisors `seamless` knows, besides systemd
/// (known by the unit's `INVOCATION_ID`, see [`judge`]).
const SUPERVISORS: [&str; 4] = ["runsv", "supervise", "s6-supervise", "supervisord"];

/// Process names of shells: a shell at a terminal is a person who typed
/// the command, and a shell does not start a program again when it exits.
const SHELLS: [&str; 13] = [
    "sh", "bash", "dash", "zsh", "fish", "ksh", "mksh", "ash", "yash", "csh", "tcsh", "nu",
    "elvish",
];

/// A process, as the messages name it: `runsv (6226)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) name: String,
    pub(crate) pid: i32,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.pid)
    }
}

/// Why nobody starts the next launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nobody {
    /// The launcher's parent is pid 1 (or systemd's user manager), and the
    /// launcher runs in no systemd unit: its own parent is gone and it was
    /// adopted.
    Adopted,
    /// Its parent is a shell with a controlling terminal.
    Terminal,
}

/// Who starts the next launcher once the old one exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Starter {
    /// A supervisor this tool knows.
    Supervisor(Process),
    /// Nobody, for sure: this tool may start it.
    Nobody(Process, Nobody),
    /// A parent this tool cannot judge: it may start the next launcher, or
    /// not.
    Unknown(Process),
}

/// What `/proc` says of a launcher's parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parent {
    pub(crate) process: Process,
    /// Its first arguments (supervisord is a Python program: its name is
    /// the interpreter's).
    pub(crate) args: Vec<Vec<u8>>,
    /// Whether its session has a controlling terminal.
    pub(crate) terminal: bool,
}

/// Who starts the next launcher, from the launcher's parent and whether
/// the launcher runs in a systemd unit (`INVOCATION_ID` set). Pure.
///
/// A supervisor this tool knows starts it. Nobody does when the launcher
/// was adopted, by pid 1 or by systemd (a user manager is a subreaper)
/// outside a unit, or when its parent is a shell at a terminal. Anything
/// else is unknown: a respawning script, pm2, circus, a container's init
/// run as a child; a shell without a terminal (a script, which may loop).
pub(crate) fn judge(parent: Parent, in_unit: bool) -> Starter {
    let name = parent.process.name.as_str();
    if SUPERVISORS.contains(&name) {
        return Starter::Supervisor(parent.process);
    }
    let runs_supervisord = parent
        .args
        .iter()
        .take(3)
        .any(|arg| arg.ends_with(b"supervisord"));
    if runs_supervisord {
        let pid = parent.process.pid;
        return Starter::Supervisor(Process {
            name: "supervisord".to_owned(),
            pid,
        });
    }
    if name == "systemd" || name == "init" || parent.process.pid == 1 {
        // systemd runs its services with INVOCATION_ID set; pid 1 also
        // adopts a launcher whose parent is gone.
        return if in_unit && name == "systemd" {
            Starter::Supervisor(parent.process)
        } else {
            Starter::Nobody(parent.process, Nobody::Adopted)
        };
    }
    if SHELLS.contains(&name) && parent.terminal {
        return Starter::Nobody(parent.process, Nobody::Terminal);
    }
    Starter::Unknown(parent.process)
}

/// Who starts the next launcher of `launcher` (see [`judge`]).
pub(crate) fn starter_of(launcher: Pid) -> io::Result<Starter> {
    let stat = std::fs::read_to_string(format!("/proc/{launcher}/stat"))?;
    let parent = field(&stat, 1)
        .ok_or_else(|| io::Error::other(format!("/proc/{launcher}/stat: no parent")))?;
    let environ = std::fs::read(format!("/proc/{launcher}/environ"))?;
    let in_unit = environ
        .split(|b| *b == 0)
        .any(|v| v.starts_with(b"INVOCATION_ID="));
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm"))?;
    let parent_stat = std::fs::read_to_string(format!("/proc/{parent}/stat"))?;
    let args = std::fs::read(format!("/proc/{parent}/cmdline")).unwrap_or_default();
    let parent = Parent {
        process: Process {
            name: comm.trim_end_matches('\n').to_owned(),
            pid: parent,
        },
        args: args.split(|b| *b == 0).map(<[u8]>::to_vec).collect(),
        terminal: field(&parent_stat, 4).is_some_and(|tty| tty != 0),
    };
    Ok(judge(parent, in_unit))
}

/// Field `n` after the command name of a `/proc/PID/stat` line: 0 is the
/// state, 1 the parent, 4 the controlling terminal (`tty_nr`).
fn field(stat: &str, n: usize) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n)?.parse().ok()
}

/// What it takes to start the launcher again.
#[derive(Debug)]
pub(crate) struct Recipe {
    exe: PathBuf,
    argv: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    stdout: Option<File>,
    stderr: Option<File>,
}

/// Reads the recipe of `launcher` from `/proc` (it must still run).
pub(crate) fn recipe(launcher: Pid) -> io::Result<Recipe> {
    let proc = PathBuf::from(format!("/proc/{launcher}"));
    let exe = std::fs::read_link(proc.join("exe"))?;
    // A binary replaced on disk shows as "<path> (deleted)": the new one is
    // what the next generation should run.
    let exe = match exe.to_str().and_then(|e| e.strip_suffix(" (deleted)")) {
        Some(path) => PathBuf::from(path),
        None => exe,
    };
    let split = |bytes: Vec<u8>| -> Vec<OsString> {
        bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    let argv = split(std::fs::read(proc.join("cmdline"))?);
    if argv.is_empty() {
        return Err(io::Error::other(format!("launcher {launcher} has no argv")));
    }
    let env: Vec<(OsString, OsString)> = split(std::fs::read(proc.join("environ"))?)
        .into_iter()
        .filter_map(|v| {
            let bytes = v.into_vec();
            let at = bytes.iter().position(|b| *b == b'=')?;
            Some((
                OsString::from_vec(bytes[..at].to_vec()),
                OsString::from_vec(bytes[at + 1..].to_vec()),
            ))
        })
        .collect();
    let cwd = std::fs::read_link(proc.join("cwd"))?;
    let exe = program(&argv[0], &cwd, &env).unwrap_or(exe);
    // Files, pipes and terminals reopen through /proc; sockets do not.
    let output = |fd: u8| {
        std::fs::OpenOptions::new()
            .append(true)
            .open(proc.join(format!("fd/{fd}")))
            .ok()
    };
    Ok(Recipe {
        exe,
        argv,
        cwd,
        env,
        stdout: output(1),
        stderr: output(2),
    })
}

/// `argv0` as `execvp` found it: a path (relative to `cwd`) when it holds
/// a slash, else the first match in the launcher's `PATH`.
fn program(
    argv0: &OsString,
    cwd: &std::path::Path,
    env: &[(OsString, OsString)],
) -> Option<PathBuf> {
    let argv0 = PathBuf::from(argv0);
    if argv0.as_os_str().as_encoded_bytes().contains(&b'/') {
        let path = cwd.join(argv0);
        return path.is_file().then_some(path);
    }
    let path = env.iter().find(|(k, _)| k == "PATH")?.1.clone();
    std::env::split_paths(&path)
        .map(|dir| cwd.join(dir).join(&argv0))
        .find(|p| p.is_file())
}

impl Recipe {
    /// Starts the launcher again, in a session of its own.
    pub(crate) fn spawn(self) -> io::Result<Child> {
        let mut command = Command::new(&self.exe);
        command
            .arg0(&self.argv[0])
            .args(&self.argv[1..])
            .env_clear()
            .envs(self.env)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(self.stdout.map_or_else(Stdio::null, Stdio::from))
            .stderr(self.stderr.map_or_else(Stdio::null, Stdio::from));
        // SAFETY: setsid is async-signal-safe and touches no memory; it is
        // the only call between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_recipe_is_read_from_proc() {
        let me = Pid::from(std::process::id());
        let recipe = recipe(me).unwrap();
        assert_eq!(
            recipe.exe.canonicalize().unwrap(),
            std::env::current_exe().unwrap()
        );
        let path = vec![("PATH".into(), "/nonexistent:/bin".into())];
        assert_eq!(
            program(&"sh".into(), "/".as_ref(), &path),
            Some("/bin/sh".into())
        );
        assert_eq!(
            program(&"./sh".into(), "/bin".as_ref(), &[]),
            Some("/bin/./sh".into())
        );
        assert_eq!(program(&"nonexistent-x".into(), "/".as_ref(), &path), None);
        assert_eq!(recipe.cwd, std::env::current_dir().unwrap());
        assert!(recipe.env.iter().any(|(k, _)| k == "PATH"));
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(
            field(&stat, 1),
            Some(std::os::unix::process::parent_id() as i32)
        );
    }

    fn parent(name: &str, pid: i32, terminal: bool) -> Parent {
        Parent {
            process: Process {
                name: name.to_owned(),
                pid,
            },
            args: vec![name.as_bytes().to_vec()],
            terminal,
        }
    }

    #[test]
    fn the_starter_is_judged_from_the_parent_and_never_guessed() {
        let known = |name: &str| Starter::Supervisor(parent(name, 40, false).process);
        for name in ["runsv", "supervise", "s6-supervise", "supervisord"] {
            assert_eq!(judge(parent(name, 40, false), false), known(name));
        }
        let mut python = parent("python3", 40, false);
        python.args = vec![
            b"/usr/bin/python3".to_vec(),
            b"/usr/bin/supervisord".to_vec(),
        ];
        assert_eq!(judge(python, false), known("supervisord"));
        // systemd: a unit's launcher, or one it adopted (also as a user
        // manager, not pid 1).
        assert_eq!(
            judge(parent("systemd", 1, false), true),
            Starter::Supervisor(parent("systemd", 1, false).process)
        );
        for (name, pid) in [("systemd", 1), ("systemd", 900), ("init", 1), ("tini", 1)] {
            assert_eq!(
                judge(parent(name, pid, false), false),
                Starter::Nobody(parent(name, pid, false).process, Nobody::Adopted),
                "{name} ({pid})"
            );
        }
        // INVOCATION_ID inherited, the parent not systemd: adopted all the same.
        assert_eq!(
            judge(parent("tini", 1, false), true),
            Starter::Nobody(parent("tini", 1, false).process, Nobody::Adopted)
        );
        // A shell at a terminal; the same shell in a script is unknown.
        for shell in ["bash", "sh", "zsh", "dash", "fish"] {
            assert_eq!(
                judge(parent(shell, 40, true), false),
                Starter::Nobody(parent(shell, 40, true).process, Nobody::Terminal)
            );
            assert_eq!(
                judge(parent(shell, 40, false), false),
                Starter::Unknown(parent(shell, 40, false).process)
            );
        }
        // Anything else: a respawning script, pm2, a runner of one's own,
        // even at a terminal.
        for name in ["python3", "PM2 v5.3.0: God", "node", "respawn", "sudo"] {
            for terminal in [false, true] {
                assert_eq!(
                    judge(parent(name, 40, terminal), false),
                    Starter::Unknown(parent(name, 40, terminal).process),
                    "{name}"
                );
            }
        }
    }
}
