#[seamless::on_shutdown]
unsafe fn drain() {}

fn main() {}
