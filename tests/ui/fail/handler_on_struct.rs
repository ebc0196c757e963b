#[seamless::on_shutdown]
struct Drain;

fn main() {}
