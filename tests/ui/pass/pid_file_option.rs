#[seamless::daemon(pid_file = None::<std::path::PathBuf>)]
fn main() {}
