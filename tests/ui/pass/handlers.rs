#[seamless::on_shutdown]
fn drain() {}

#[seamless::on_shutdown]
fn flush() -> () {}

#[seamless::on_shutdown_request]
fn release() {}

#[seamless::on_child_launch(crate = ::seamless)]
pub fn launched() {}

mod inner {
    #[seamless::on_shutdown]
    pub(crate) fn drain() {}
}

#[seamless::daemon(pid_file = None)]
fn main() {
    seamless::on_shutdown(|| {});
}
