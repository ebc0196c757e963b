// A path taken from the command line; none is given when trybuild runs
// this, so seamless is disabled.
fn pid_file_argument() -> Option<String> {
    std::env::args().skip_while(|a| a != "--pid-file").nth(1)
}

#[seamless::daemon(pid_file = pid_file_argument())]
fn main() {}
