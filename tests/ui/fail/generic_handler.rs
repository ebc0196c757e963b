#[seamless::on_child_launch]
fn launched<T: Default>() {
    let _ = T::default();
}

fn main() {}
