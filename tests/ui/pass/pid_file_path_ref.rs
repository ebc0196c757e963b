// A `&Path`; an `Option` of one, here `None` (the variable is not set),
// disables seamless.
#[seamless::daemon(
    pid_file = std::env::var_os("NO_SUCH_VARIABLE_FOR_SEAMLESS")
        .as_deref()
        .map(std::path::Path::new)
)]
fn main() {}
