//! The smallest seamless program, for the tests of the launcher split
//! (`tests/split.rs`) and for timing start-up: it starts, calls
//! `started()`, and waits for its shutdown.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `TESTD_PID_FILE` | pid file; unset or empty disables seamless |
//! | `SPLITD_THREAD_FIRST` | start a thread before the split, as a library constructor might: the launcher must then execute the daemon instead of forking it |
//! | `SPLITD_EXIT` | exit right after `started()` (status 0) instead of waiting for a shutdown |

use std::time::Duration;

fn main() {
    if std::env::var_os("SPLITD_THREAD_FIRST").is_some() {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(3600));
        });
    }
    // Unset or empty: seamless disabled.
    let pid_file = std::env::var("TESTD_PID_FILE")
        .ok()
        .filter(|p| !p.is_empty());
    let session = seamless::Builder::new(pid_file).start();
    seamless::started();
    if std::env::var_os("SPLITD_EXIT").is_some() {
        // At once, without the drain's goodbyes: timed from outside, the
        // whole process is then its start-up.
        std::process::exit(0);
    }
    seamless::shutdown().wait();
    session.finish();
}
