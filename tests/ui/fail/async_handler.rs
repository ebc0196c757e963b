#[seamless::on_shutdown_request]
async fn release() {}

fn main() {}
