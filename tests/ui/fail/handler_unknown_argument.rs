#[seamless::on_shutdown(order = 1)]
fn drain() {}

fn main() {}
