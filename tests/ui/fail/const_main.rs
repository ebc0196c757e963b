#[seamless::daemon(pid_file = "/tmp/a.pid")]
const fn main() {}
