use std::path::PathBuf;

fn from_args() -> Option<String> {
    // A value parsed from the command line: none given here.
    std::env::args().nth(5)
}

#[seamless::daemon(pid_file = from_args())]
fn main() {
    let _: PathBuf = PathBuf::new();
    let _ = seamless::Builder::new(String::new());
    let _ = seamless::Builder::new(PathBuf::new());
    let _ = seamless::Builder::new(Some(PathBuf::new()));
    let _ = seamless::Builder::new(std::path::Path::new(""));
}
