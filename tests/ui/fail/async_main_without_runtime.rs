#[seamless::daemon(pid_file = "/tmp/a.pid")]
async fn main() {}
