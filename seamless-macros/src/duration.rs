//! Durations written as string literals: `"1500ms"`, `"30s"`, `"2m"`,
//! `"1h"`, or concatenations such as `"1m30s"`.

/// The accepted forms, for error messages.
pub(crate) const FORMS: &str =
    "write a duration such as \"1500ms\", \"30s\", \"2m\", \"1h\" or \"1m30s\"";

/// Milliseconds, or what is wrong.
pub(crate) fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {FORMS}"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}: {FORMS}"));
        }
        let amount: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("number too large: {FORMS}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("missing unit after {amount}: {FORMS}")),
            other => return Err(format!("unknown unit {other:?}: {FORMS}")),
        };
        total = amount
            .checked_mul(factor)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(|| format!("duration too large: {FORMS}"))?;
        rest = &rest[unit_len..];
    }
    if total == 0 {
        return Err("a duration must be longer than zero".into());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse;

    include!("../tests/support/duration_cases.rs");

    #[test]
    fn every_case_of_the_shared_table() {
        for (text, want) in duration_cases() {
            assert_eq!(parse(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("10")
            .unwrap_err()
            .starts_with("missing unit after 10"));
        assert!(parse("10sec")
            .unwrap_err()
            .starts_with("unknown unit \"sec\""));
        assert_eq!(
            parse("0s").unwrap_err(),
            "a duration must be longer than zero"
        );
    }
}
