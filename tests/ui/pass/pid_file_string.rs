// Any expression that converts into a pid file path: here a `String`
// (empty: seamless is disabled and the program runs as a plain process).
#[seamless::daemon(pid_file = String::new())]
fn main() {}
