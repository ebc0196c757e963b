#[seamless::daemon(handover_timeout = "5s")]
fn main() {}
