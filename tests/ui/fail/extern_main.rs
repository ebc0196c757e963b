#[seamless::daemon(pid_file = "/tmp/a.pid")]
extern "C" fn main() {}
