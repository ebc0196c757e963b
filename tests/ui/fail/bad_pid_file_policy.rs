#[seamless::daemon(pid_file = "/tmp/a.pid", on_pid_file_error = "ignore")]
fn main() {}
