#[seamless::daemon]
fn main() {}
