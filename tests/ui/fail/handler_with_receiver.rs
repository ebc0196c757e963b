struct Server;

impl Server {
    #[seamless::on_shutdown]
    fn drain(&self) {}
}

fn main() {}
