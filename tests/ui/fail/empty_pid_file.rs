// An empty path is a mistake, not a way to disable seamless.
#[seamless::daemon(pid_file = "")]
fn main() {}
