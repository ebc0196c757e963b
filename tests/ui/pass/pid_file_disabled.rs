// Disabled in so many words: a plain process.
#[seamless::daemon(pid_file = seamless::PidFilePath::Disabled)]
fn main() {}
