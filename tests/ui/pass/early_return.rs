#[seamless::daemon(pid_file = None)]
fn main() {
    if std::env::args().count() < 100 {
        return;
    }
    unreachable!();
}
