// Any expression that converts into a pid file path: here an
// `Option<String>`, `None` (the variable is not set): seamless is disabled
// and the program runs as a plain process.
#[seamless::daemon(pid_file = std::env::var("NO_SUCH_VARIABLE_FOR_SEAMLESS").ok())]
fn main() {}
