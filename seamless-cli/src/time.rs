//! Durations as the `#[seamless::daemon]` attribute writes them, and
//! wall-clock times in UTC, without a date library.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `"1500ms"`, `"30s"`, `"2m"`, `"1h"`, or a sum such as `"1m30s"`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    const FORMS: &str = "write a duration such as \"1500ms\", \"30s\", \"2m\" or \"1m30s\"";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(format!("empty duration: {FORMS}"));
    }
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let amount: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: {FORMS}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(format!("{text:?}: {FORMS}")),
        };
        rest = &rest[unit_len..];
        total_ms = amount
            .checked_mul(factor)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    // As the attribute's parser: a zero timeout is a mistake, not "none".
    if total_ms == 0 {
        return Err(format!("{text:?}: a duration must be longer than zero"));
    }
    Ok(Duration::from_millis(total_ms))
}

/// `"10s"` when whole seconds, else `"1500ms"`.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-11-26T10:04:21.123Z`.
pub(crate) fn format_time(t: SystemTime) -> String {
    let ms = unix_ms(t);
    let (secs, ms) = (ms / 1000, ms % 1000);
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a date.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every case of the table the attribute's parser is held to is
    // checked in the workspace's tests/durations.rs; these few keep this
    // package's own tests whole.
    #[test]
    fn durations_read_as_the_attribute_reads_them() {
        let cases = [
            ("1500ms", Some(1500)),
            ("1m30s", Some(90_000)),
            (" 10s ", Some(10_000)),
            ("0s", None),
            ("10", None),
            ("10 s", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_duration(text).ok(),
                want.map(Duration::from_millis),
                "{text:?}"
            );
        }
    }

    #[test]
    fn durations_are_written_as_the_attribute_reads_them() {
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn times_are_written_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_687_461_123);
        assert_eq!(format_time(t), "2026-11-26T10:04:21.123Z");
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_time(leap), "2000-02-29T00:00:00.000Z");
    }
}
