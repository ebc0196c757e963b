//! The `seamless` command: see the `seamless_cli` library.

fn main() -> std::process::ExitCode {
    seamless_cli::main()
}
