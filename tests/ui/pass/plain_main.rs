#[seamless::daemon(pid_file = None)]
fn main() {
    seamless::started();
}
