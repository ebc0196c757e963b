#[seamless::daemon(pid_file = "/tmp/a.pid", prepare_timeout = "soon")]
fn main() {}
