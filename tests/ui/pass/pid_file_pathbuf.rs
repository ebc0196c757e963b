use std::path::PathBuf;

#[seamless::daemon(pid_file = PathBuf::new())]
fn main() {}
