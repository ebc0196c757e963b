//! Checks that cannot run here (a tool missing, not root) say so: no test
//! passes by doing nothing.

use std::io::Write;

/// Whether this is CI: `CI` set, as CI services set it, to anything but
/// `false` or `0`.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"))
}

/// Says that a check did not run, and why. In CI the test fails: there,
/// "did not run" is a failure. Elsewhere the line goes straight to the
/// terminal, past the test harness's capture (which would hide it for a
/// test that passes), and the caller goes on without the check.
#[track_caller]
pub(crate) fn not_run(why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let at = std::panic::Location::caller();
    if in_ci() {
        panic!("NOT RUN in CI ({test}, {at}): {why}");
    }
    let _ = writeln!(std::io::stderr(), "NOT RUN ({test}, {at}): {why}");
}

/// Whether `program` is in a directory of `PATH`.
pub(crate) fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
