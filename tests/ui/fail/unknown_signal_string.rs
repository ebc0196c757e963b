#[seamless::daemon(pid_file = "/tmp/a.pid", parent_signal = "usr1")]
fn main() {}
