#[seamless::daemon(pid_file = None, parent_signal = USR2, crate = "seamless")]
fn main() {}
