//! A supervisor the `seamless` tool does not know, for the tests: it runs
//! a program and runs it again whenever it exits, as pm2, circus, a runner
//! of one's own or a container's init would.
//!
//! `respawn LOG PROGRAM [ARG...]`: appends `start <pid>` to `LOG` at each
//! start, waits 200 ms after an exit before the next start, and gives up
//! after 100 starts. The program inherits the environment, the standard
//! streams and the process group; it dies with the thread that started it.

use std::io::Write;
use std::process::{Command, ExitCode};
use std::time::Duration;

const MAX_STARTS: usize = 100;
const PAUSE: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [log, program, rest @ ..] = &args[..] else {
        eprintln!("usage: respawn LOG PROGRAM [ARG...]");
        return ExitCode::from(2);
    };
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes no pointers. A test that dies
    // before its guard runs takes this process with it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    for _ in 0..MAX_STARTS {
        let mut child = match Command::new(program).args(rest).spawn() {
            Ok(child) => child,
            Err(e) => {
                eprintln!("respawn: {}: {e}", program.to_string_lossy());
                std::thread::sleep(PAUSE);
                continue;
            }
        };
        let line = format!("start {}\n", child.id());
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            eprintln!("respawn: {}: {e}", log.to_string_lossy());
        }
        match child.wait() {
            Ok(status) => eprintln!("respawn: {} ended: {status}", child.id()),
            Err(e) => eprintln!("respawn: wait: {e}"),
        }
        std::thread::sleep(PAUSE);
    }
    eprintln!("respawn: {MAX_STARTS} starts, giving up");
    ExitCode::FAILURE
}
