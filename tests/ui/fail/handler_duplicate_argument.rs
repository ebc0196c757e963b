#[seamless::on_shutdown(crate = ::seamless, crate = ::seamless)]
fn drain() {}

fn main() {}
