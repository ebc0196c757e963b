#[seamless::daemon(pid_file = "/tmp/a.pid", parent_signal = libc::SIGUSR1)]
fn main() {}
