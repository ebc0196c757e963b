// Doc comments and lint attributes are not a runtime.
/// The server.
#[seamless::daemon(pid_file = "/tmp/a.pid")]
#[allow(unused)]
async fn main() {}
