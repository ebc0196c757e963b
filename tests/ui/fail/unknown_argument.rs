#[seamless::daemon(pid_file = "/tmp/a.pid", pidfile = "/tmp/b.pid")]
fn main() {}
