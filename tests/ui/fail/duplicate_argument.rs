#[seamless::daemon(pid_file = "/tmp/a.pid", prepare_timeout = "1s", prepare_timeout = "2s")]
fn main() {}
