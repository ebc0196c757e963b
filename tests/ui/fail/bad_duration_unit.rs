#[seamless::daemon(pid_file = "/tmp/a.pid", handover_timeout = "10sec")]
fn main() {}
