//! The tool's `--timeout` reads a duration as the attribute reads it:
//! every case of `seamless-macros/tests/duration_cases.txt` (which the
//! macro crate's own tests hold its parser to) through the tool's parser.
//! The check lives here, in the workspace, because the published
//! `seamless-cli` package does not carry the macro crate's table.

use std::time::Duration;

include!("../seamless-macros/tests/support/duration_cases.rs");

#[test]
fn the_tool_reads_every_duration_as_the_attribute_does() {
    for (text, want) in duration_cases() {
        assert_eq!(
            seamless_cli::__parse_duration(text).ok(),
            want.map(Duration::from_millis),
            "{text:?}"
        );
    }
}
