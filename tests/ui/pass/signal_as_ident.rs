#[seamless::daemon(pid_file = "", parent_signal = USR2, crate = "seamless")]
fn main() {}
