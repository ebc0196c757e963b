//! The `seamless` command-line tool (the `seamless-cli` package), built
//! as a program of this package so that the integration tests find it.

fn main() -> std::process::ExitCode {
    seamless_cli::main()
}
