// The reader of `duration_cases.txt`, included (`include!`) by both of
// its users: the attribute parser's unit tests and the workspace's
// tests/durations.rs, which holds the tool's parser to the same table.

/// The table's cases: `(text, Some(ms))`, or `(text, None)` for a duration
/// that must be refused.
fn duration_cases() -> Vec<(&'static str, Option<u64>)> {
    const TABLE: &str = include_str!("../duration_cases.txt");
    let cases: Vec<_> = TABLE
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (text, want) = line[1..].split_once('"').expect("a quoted text");
            let want = want.trim();
            let want = (want != "error").then(|| want.parse().expect("ms or `error`"));
            (text, want)
        })
        .collect();
    assert!(cases.len() > 30, "the table is read whole: {}", cases.len());
    cases
}
