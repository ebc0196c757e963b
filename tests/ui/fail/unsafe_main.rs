#[seamless::daemon(pid_file = "/tmp/a.pid")]
unsafe fn main() {}
