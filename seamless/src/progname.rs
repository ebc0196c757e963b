//! The daemon's kernel name: the same as its launcher's.
//!
//! A daemon forked from its launcher has its name already. One the
//! launcher had to execute (see `launcher`) runs `/proc/self/exe`, so that
//! a binary replaced on disk during a deploy cannot make the two processes
//! differ. The kernel names a process after the file it executed
//! (`/proc/PID/comm`, 15 bytes at most), which makes that daemon `exe`:
//! `ps -e`, `pgrep -x`, `top`, `killall` and systemd's log lines would not
//! find it under the program's name. The executed daemon copies its
//! launcher's name onto its main thread (`PR_SET_NAME`), first thing,
//! before any other thread exists, so threads started later without a name
//! of their own inherit it too. `argv` is passed through unchanged by the
//! launcher.

use std::ffi::CString;

use crate::report;

/// Gives the calling thread the kernel name of process `launcher`.
pub(crate) fn take_from(launcher: i32) {
    let name = match std::fs::read(format!("/proc/{launcher}/comm")) {
        Ok(name) => name,
        Err(e) => {
            report::debug!("cannot read the launcher's name: {e}; keeping ours");
            return;
        }
    };
    let Some(name) = comm_name(&name) else {
        return;
    };
    if let Err(e) = nix::sys::prctl::set_name(&name) {
        report::debug!("cannot set the daemon's name to {name:?}: {e}");
    }
}

/// The name in the contents of a `comm` file: up to the newline, never
/// empty, without NUL bytes.
fn comm_name(contents: &[u8]) -> Option<CString> {
    let name = contents.strip_suffix(b"\n").unwrap_or(contents);
    if name.is_empty() {
        return None;
    }
    CString::new(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_contents_give_the_name() {
        assert_eq!(comm_name(b"myapp\n").unwrap().as_bytes(), b"myapp");
        assert_eq!(comm_name(b"my app").unwrap().as_bytes(), b"my app");
        assert!(comm_name(b"\n").is_none());
        assert!(comm_name(b"a\0b\n").is_none());
    }

    #[test]
    fn a_thread_takes_the_name_of_a_process() {
        // On a thread of its own: the name belongs to the calling thread.
        let ours = std::fs::read(format!("/proc/{}/comm", std::process::id())).unwrap();
        let got = std::thread::Builder::new()
            .name("seamless-other".into())
            .spawn(|| {
                take_from(std::process::id() as i32);
                nix::sys::prctl::get_name().unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got.as_bytes(), comm_name(&ours).unwrap().as_bytes());
    }
}
