#[seamless::daemon(pid_file = "")]
fn main() {
    if std::env::args().count() < 100 {
        return;
    }
    unreachable!();
}
