#[seamless::on_shutdown]
fn drain() -> bool {
    true
}

fn main() {}
