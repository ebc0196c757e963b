//! `testd` with a probation: each new generation serves beside the
//! previous one for 2 s after `started()` before it sends it TERM. The
//! same `TESTD_*` variables apply. Its `handover_timeout` is 10 s, so that
//! a rollback (the fleet test's) lands while the old generation waits.

use std::process::ExitCode;

#[path = "testd.rs"]
mod testd;

#[seamless::daemon(
    pid_file = std::env::var("TESTD_PID_FILE").ok(),
    prepare_timeout = "3s",
    handover_timeout = "10s",
    shutdown_timeout = "8s",
    probation = "2s",
)]
fn main() -> ExitCode {
    testd::run()
}
