use std::process::ExitCode;

#[seamless::daemon(pid_file = None::<&str>)]
fn main() -> ExitCode {
    ExitCode::SUCCESS
}
