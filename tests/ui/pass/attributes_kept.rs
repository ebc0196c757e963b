#![deny(warnings)]

// Docs, cfg and lint attributes stay on the user's code; an `expect` must
// not be left unfulfilled on the generated `main`.

/// The server.
#[seamless::daemon(pid_file = None)]
#[cfg(unix)]
#[expect(unused_variables)]
#[allow(clippy::let_unit_value)]
fn main() {
    let unused = ();
}
