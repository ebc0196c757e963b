//! `testd` with a probation: each new generation serves beside the
//! previous one for 2 s after `started()` before it sends it TERM. The
//! same `TESTD_*` variables apply.

use std::process::ExitCode;

#[path = "testd.rs"]
mod testd;

#[seamless::daemon(
    pid_file = std::env::var("TESTD_PID_FILE").ok(),
    prepare_timeout = "3s",
    handover_timeout = "3s",
    shutdown_timeout = "8s",
    probation = "2s",
)]
fn main() -> ExitCode {
    testd::run()
}
