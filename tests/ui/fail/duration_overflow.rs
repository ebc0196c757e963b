#[seamless::daemon(pid_file = "/tmp/a.pid", shutdown_timeout = "99999999999999999999s")]
fn main() {}
