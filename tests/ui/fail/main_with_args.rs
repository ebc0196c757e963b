#[seamless::daemon(pid_file = "/tmp/a.pid")]
fn main(args: Vec<String>) {
    let _ = args;
}
