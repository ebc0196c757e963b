//! The examples the benchmark measures are built as a user's server would
//! be: without the root package's default feature `actix`, their
//! dependency tree turns on no feature of `tracing` that sends h2's spans
//! through the `log` facade (`log`, `log-always`). With it, h2 spent about
//! 11,000 more instructions on each HTTP/2 request (callgrind: 48,600
//! against 37,300 in the TLS example), and the benchmark compared a
//! slower build of the examples with plain twins that did not carry it.

use std::process::Command;

/// What `cargo tree` prints of the features of `tracing` that the root
/// package turns on, built with `args`.
fn tracing_features(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "-p", "seamless-tests", "-e", "features"])
        .args(["-i", "tracing", "--prefix", "none", "--format", "{p} {f}"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sends_spans_to_log(tree: &str) -> bool {
    tree.lines().any(|line| {
        line.contains("tracing feature \"log\"") || line.contains("tracing feature \"log-always\"")
    })
}

#[test]
fn the_examples_the_benchmark_builds_do_not_send_h2_spans_to_log() {
    let without = tracing_features(&["--no-default-features"]);
    assert!(
        !sends_spans_to_log(&without),
        "a dependency of the root package turns on tracing's log feature \
         without the feature actix:\n{without}"
    );
    // The check reads what it means to: with actix-web, the feature is on.
    let with = tracing_features(&[]);
    assert!(
        sends_spans_to_log(&with),
        "cargo tree no longer shows actix-web turning on tracing's log feature; \
         this test reads its output wrongly:\n{with}"
    );
}
