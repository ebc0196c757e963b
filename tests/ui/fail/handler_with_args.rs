#[seamless::on_shutdown]
fn drain(timeout: u64) {
    let _ = timeout;
}

fn main() {}
