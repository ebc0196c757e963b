//! wrk's summary: the requests it counted, and every failure it counted
//! (socket errors and non-2xx answers).
//!
//! ```text
//!   23294 requests in 2.02s, 3.00MB read
//!   Socket errors: connect 0, read 4, write 577, timeout 0
//!   Non-2xx or 3xx responses: 3
//! ```
//!
//! wrk prints the `Socket errors` and `Non-2xx` lines only when their
//! counts are not all zero.

/// What wrk's summary says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests wrk counted, answers with another status than 2xx or 3xx
    /// included.
    pub requests: u64,
    /// `Socket errors: connect C, read R, write W, timeout T`.
    pub socket_errors: SocketErrors,
    /// `Non-2xx or 3xx responses: N`.
    pub non_2xx: u64,
}

/// wrk's socket errors by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketErrors {
    /// Connections that could not be opened.
    pub connect: u64,
    /// Reads that failed, connections closed under a request included.
    pub read: u64,
    /// Writes that failed.
    pub write: u64,
    /// Requests without an answer within wrk's `--timeout`.
    pub timeout: u64,
}

impl Summary {
    /// Reads wrk's standard output; `None` when it holds no summary (wrk
    /// could not start, or was killed before it printed one).
    ///
    /// ```
    /// let out = "  12 requests in 1.00s, 1.2KB read\n  Socket errors: connect 0, read 4, write 0, timeout 0\n";
    /// let s = seamless_loadkit::wrk::Summary::parse(out).unwrap();
    /// assert_eq!((s.requests, s.socket_errors.read, s.failed()), (12, 4, 4));
    /// ```
    pub fn parse(text: &str) -> Option<Summary> {
        let requests = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.parse().ok())?;
        let mut summary = Summary {
            requests,
            ..Summary::default()
        };
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("Socket errors:") {
                let e = &mut summary.socket_errors;
                for (slot, key) in [
                    (&mut e.connect, "connect"),
                    (&mut e.read, "read"),
                    (&mut e.write, "write"),
                    (&mut e.timeout, "timeout"),
                ] {
                    *slot = count_named(rest, key).unwrap_or(0);
                }
            } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
                summary.non_2xx = rest.trim().parse().unwrap_or(0);
            }
        }
        Some(summary)
    }

    /// Requests answered with 2xx or 3xx.
    ///
    /// ```
    /// let s = seamless_loadkit::wrk::Summary { requests: 10, non_2xx: 3, ..Default::default() };
    /// assert_eq!(s.answered(), 7);
    /// ```
    pub fn answered(&self) -> u64 {
        self.requests.saturating_sub(self.non_2xx)
    }

    /// Every failure wrk counted: socket errors and non-2xx answers.
    ///
    /// ```
    /// let s = seamless_loadkit::wrk::Summary { requests: 10, non_2xx: 3, ..Default::default() };
    /// assert_eq!(s.failed(), 3);
    /// ```
    pub fn failed(&self) -> u64 {
        self.failures().iter().map(|(_, n)| n).sum()
    }

    /// The failures by kind, named for a report (`wrk read`, ...), zeros
    /// included.
    ///
    /// ```
    /// let s = seamless_loadkit::wrk::Summary::default();
    /// assert_eq!(s.failures()[4], ("wrk non-2xx", 0));
    /// ```
    pub fn failures(&self) -> [(&'static str, u64); 5] {
        let e = &self.socket_errors;
        [
            ("wrk connect", e.connect),
            ("wrk read", e.read),
            ("wrk write", e.write),
            ("wrk timeout", e.timeout),
            ("wrk non-2xx", self.non_2xx),
        ]
    }
}

/// In `connect 0, read 4, write 0`, the number after `key`.
fn count_named(list: &str, key: &str) -> Option<u64> {
    list.split(',').find_map(|part| {
        let mut words = part.split_whitespace();
        (words.next() == Some(key))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from wrk 4.1.0 (Debian) against the axum example's handler.
    const CLEAN: &str = include_str!("../testdata/wrk-clean.txt");
    const SERVER_KILLED: &str = include_str!("../testdata/wrk-server-killed.txt");
    const NOT_FOUND: &str = include_str!("../testdata/wrk-404.txt");

    #[test]
    fn a_clean_run_has_requests_and_no_failure() {
        let s = Summary::parse(CLEAN).unwrap();
        assert_eq!(s.requests, 10560);
        assert_eq!((s.answered(), s.failed()), (10560, 0));
    }

    #[test]
    fn a_server_killed_under_load_shows_its_socket_errors() {
        let s = Summary::parse(SERVER_KILLED).unwrap();
        assert_eq!(s.requests, 23294);
        assert_eq!(
            s.socket_errors,
            SocketErrors {
                connect: 0,
                read: 4,
                write: 577,
                timeout: 0
            }
        );
        assert_eq!(s.failed(), 581);
    }

    #[test]
    fn non_2xx_answers_are_failures_and_not_answers() {
        let s = Summary::parse(NOT_FOUND).unwrap();
        assert_eq!((s.requests, s.non_2xx), (19557, 19557));
        assert_eq!((s.answered(), s.failed()), (0, 19557));
    }

    #[test]
    fn no_summary_is_none() {
        assert_eq!(Summary::parse(""), None);
        assert_eq!(
            Summary::parse("unable to connect to 127.0.0.1:1 Connection refused\n"),
            None
        );
    }
}
