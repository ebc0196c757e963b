#[seamless::daemon(pid_file = "/tmp/a.pid")]
fn main<T>() {}
