#[seamless::daemon(pid_file = "/tmp/a.pid", prepare_timeout = "1x", colour = "blue")]
fn main(argc: i32) {
    let _ = argc;
}
