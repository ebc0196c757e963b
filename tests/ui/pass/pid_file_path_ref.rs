#[seamless::daemon(pid_file = std::path::Path::new(""))]
fn main() {}
