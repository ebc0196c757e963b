#[seamless::daemon(pid_file = "")]
fn main() {
    seamless::started();
}
