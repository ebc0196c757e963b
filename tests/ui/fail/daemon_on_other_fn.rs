#[seamless::daemon(pid_file = "/tmp/a.pid")]
fn serve() {}

fn main() {
    serve();
}
