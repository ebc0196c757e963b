//! A program that asks seamless to run it as a plain process when its pid
//! file's location is unusable (`on_pid_file_error = "run_plain"`).

#[seamless::daemon(
    pid_file = std::env::var("TESTD_PID_FILE").ok().filter(|p| !p.is_empty()),
    on_pid_file_error = "run_plain",
)]
fn main() {
    seamless::started();
    println!("ran pid {}", std::process::id());
}
