#[seamless::daemon(pid_file = "/tmp/a.pid", prepare_timeout = 10)]
fn main() {}
