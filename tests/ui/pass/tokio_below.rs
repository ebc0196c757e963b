#[seamless::daemon(pid_file = None)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    tokio::task::yield_now().await;
    Ok(())
}
