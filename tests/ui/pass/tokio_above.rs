#[tokio::main(flavor = "current_thread")]
#[seamless::daemon(pid_file = None)]
async fn main() {
    tokio::task::yield_now().await;
}
