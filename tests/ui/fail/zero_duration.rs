#[seamless::daemon(pid_file = "/tmp/a.pid", shutdown_timeout = "0s")]
fn main() {}
