#[seamless::daemon(pid_file = "/tmp/a.pid", parent_signal = SIGFOO)]
fn main() {}
