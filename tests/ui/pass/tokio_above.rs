#[tokio::main(flavor = "current_thread")]
#[seamless::daemon(pid_file = "")]
async fn main() {
    tokio::task::yield_now().await;
}
