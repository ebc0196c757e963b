#[seamless::daemon(pid_file = "/tmp/a.pid")]
struct Server;

fn main() {}
