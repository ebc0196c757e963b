#[seamless::daemon(pid_file = None)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = "42".parse()?;
    if n != 42 {
        return Err("unreachable".into());
    }
    Ok(())
}
