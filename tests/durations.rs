//! The tool's `--timeout` reads a duration as the attribute reads it:
//! every case of `seamless-macros/tests/duration_cases.txt` (which the
//! macro crate's own tests hold its parser to) through the tool's parser.
//! The check lives here, in the workspace, because the published
//! `seamless-cli` package does not carry the macro crate's table.

use std::time::Duration;

const TABLE: &str = include_str!("../seamless-macros/tests/duration_cases.txt");

/// `(text, Some(ms))`, or `(text, None)` for a duration to refuse.
fn cases() -> Vec<(&'static str, Option<u64>)> {
    TABLE
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (text, want) = line[1..].split_once('"').expect("a quoted text");
            let want = want.trim();
            let want = (want != "error").then(|| want.parse().expect("ms or `error`"));
            (text, want)
        })
        .collect()
}

#[test]
fn the_tool_reads_every_duration_as_the_attribute_does() {
    let cases = cases();
    assert!(cases.len() > 30, "the table is read whole: {}", cases.len());
    for (text, want) in cases {
        assert_eq!(
            seamless_cli::__parse_duration(text).ok(),
            want.map(Duration::from_millis),
            "{text:?}"
        );
    }
}
