#[seamless::daemon(
    pid_file = std::env::var("NO_SUCH_VARIABLE_FOR_SEAMLESS").ok(),
    prepare_timeout = "1m30s",
    handover_timeout = "1500ms",
    shutdown_timeout = "1h",
    probation = "5s",
    parent_signal = "SIGUSR1",
    on_pid_file_error = "run_plain",
    crate = ::seamless,
)]
fn main() {}
