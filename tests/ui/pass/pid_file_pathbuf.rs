use std::path::PathBuf;

// A `PathBuf`; an `Option` of one, here `None`, disables seamless.
#[seamless::daemon(pid_file = std::env::var_os("NO_SUCH_VARIABLE_FOR_SEAMLESS").map(PathBuf::from))]
fn main() {}
