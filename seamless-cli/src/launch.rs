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

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Process names of the supervisors `seamless` knows.
const SUPERVISORS: [&str; 6] = [
    "runsv",
    "supervise",
    "s6-supervise",
    "supervisord",
    "systemd",
    "init",
];

/// The supervisor running `launcher`, if any: `(name, pid)`.
pub(crate) fn supervisor_of(launcher: i32) -> Option<(String, i32)> {
    let parent = parent_of(launcher)?;
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    let comm = comm.trim();
    if comm == "systemd" || comm == "init" {
        // Pid 1 also adopts a launcher whose shell is gone: systemd runs
        // its services with INVOCATION_ID set.
        let environ = std::fs::read(format!("/proc/{launcher}/environ")).unwrap_or_default();
        let in_unit = environ
            .split(|b| *b == 0)
            .any(|v| v.starts_with(b"INVOCATION_ID="));
        return in_unit.then(|| (comm.to_owned(), parent));
    }
    if SUPERVISORS.contains(&comm) {
        return Some((comm.to_owned(), parent));
    }
    // supervisord is a Python program: its comm is the interpreter's.
    let cmdline = std::fs::read(format!("/proc/{parent}/cmdline")).unwrap_or_default();
    let runs_supervisord = cmdline
        .split(|b| *b == 0)
        .take(3)
        .any(|arg| arg.ends_with(b"supervisord"));
    runs_supervisord.then(|| ("supervisord".to_owned(), parent))
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
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
pub(crate) fn recipe(launcher: i32) -> io::Result<Recipe> {
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
        let me = std::process::id() as i32;
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
        assert_eq!(
            parent_of(me),
            Some(std::os::unix::process::parent_id() as i32)
        );
    }
}
