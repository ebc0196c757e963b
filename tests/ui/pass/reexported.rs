// A crate that reaches seamless through a re-export (or a renamed
// dependency) points the macros at it with `crate = path`.
mod facade {
    pub use ::seamless::*;
}

#[facade::on_shutdown(crate = crate::facade)]
fn drain() {}

#[facade::daemon(pid_file = None, crate = crate::facade)]
fn main() {
    facade::started();
}
