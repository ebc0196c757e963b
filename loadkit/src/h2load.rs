//! h2load's summary and its per-request log.
//!
//! The summary's lines
//!
//! ```text
//! requests: 17670 total, 17670 started, 17670 done, 17664 succeeded, 6 failed, 6 errored, 0 timeout
//! status codes: 17664 2xx, 0 3xx, 0 4xx, 0 5xx
//! ```
//!
//! and the log (`--log-file`), one line per request: its start in µs
//! since the epoch, its status (-1 without an answer), and the µs from its
//! start to the end of its answer, tab-separated.
//!
//! When a GOAWAY arrives in the same read as the end of an answer, h2load
//! (nghttp2 1.52) has already queued its next request on that connection,
//! which nghttp2 then may not send; h2load counts it errored and logs it
//! with start time 0, since the frame that would have started it was never
//! written ([`LogEntry::never_sent`]). Such a request never reached the
//! server.

/// What h2load's summary says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests it meant to make.
    pub total: u64,
    /// Requests started.
    pub started: u64,
    /// Requests done, answered or failed.
    pub done: u64,
    /// Requests answered with 2xx or 3xx.
    pub succeeded: u64,
    /// Every failed request, those answered with 4xx or 5xx included.
    pub failed: u64,
    /// Failed without an answer, the timed-out ones included.
    pub errored: u64,
    /// Failed by h2load's timeout.
    pub timeout: u64,
    /// `status codes: A 2xx, B 3xx, C 4xx, D 5xx`, when printed.
    pub status_codes: Option<[u64; 4]>,
}

impl Summary {
    /// Reads h2load's standard output; `None` when it holds no summary.
    ///
    /// ```
    /// let out = "requests: 100 total, 100 started, 100 done, 99 succeeded, 1 failed, 1 errored, 0 timeout\n\
    ///            status codes: 99 2xx, 0 3xx, 0 4xx, 0 5xx\n";
    /// let s = seamless_loadkit::h2load::Summary::parse(out).unwrap();
    /// assert_eq!((s.succeeded, s.errored, s.non_2xx()), (99, 1, 0));
    /// ```
    pub fn parse(text: &str) -> Option<Summary> {
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("requests:"))?;
        let count = |what: &str| -> Option<u64> {
            line.split(',')
                .find_map(|part| part.trim().strip_suffix(what))
                .and_then(|n| n.trim().parse().ok())
        };
        let status_codes = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("status codes:"))
            .and_then(|codes| {
                let mut n = codes.split(',').map(|part| {
                    part.split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                });
                Some([n.next()??, n.next()??, n.next()??, n.next()??])
            });
        Some(Summary {
            total: count("total")?,
            started: count("started")?,
            done: count("done")?,
            succeeded: count("succeeded")?,
            failed: count("failed")?,
            errored: count("errored")?,
            timeout: count("timeout")?,
            status_codes,
        })
    }

    /// Requests answered with a status other than 2xx or 3xx.
    ///
    /// ```
    /// let s = seamless_loadkit::h2load::Summary { failed: 5, errored: 2, ..Default::default() };
    /// assert_eq!(s.non_2xx(), 3);
    /// ```
    pub fn non_2xx(&self) -> u64 {
        self.failed.saturating_sub(self.errored)
    }

    /// Requests started and neither answered nor failed when h2load
    /// stopped: cut by the end of its run, or lost with their connection
    /// (h2load neither counts nor replaces a connection closed without a
    /// GOAWAY).
    ///
    /// ```
    /// let s = seamless_loadkit::h2load::Summary { started: 108, done: 100, ..Default::default() };
    /// assert_eq!(s.in_flight(), 8);
    /// ```
    pub fn in_flight(&self) -> u64 {
        self.started.saturating_sub(self.done)
    }
}

/// One line of h2load's per-request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The request's start, µs since the epoch; 0 for a request never sent.
    pub start_us: u64,
    /// Its answer's status; `None` without an answer.
    pub status: Option<u16>,
    /// µs from its start to the end of its answer.
    pub took_us: u64,
}

impl LogEntry {
    /// Reads one line; `None` for a line of another shape.
    ///
    /// ```
    /// use seamless_loadkit::h2load::LogEntry;
    /// let e = LogEntry::parse("1796016916988619\t200\t7980").unwrap();
    /// assert_eq!((e.status, e.took_us, e.never_sent()), (Some(200), 7980, false));
    /// assert!(LogEntry::parse("0\t-1\t9388846309").unwrap().never_sent());
    /// ```
    pub fn parse(line: &str) -> Option<LogEntry> {
        let mut fields = line.split('\t').map(str::trim);
        let start_us = fields.next()?.parse().ok()?;
        let status: i64 = fields.next()?.parse().ok()?;
        let took_us = fields.next()?.parse().ok()?;
        Some(LogEntry {
            start_us,
            status: u16::try_from(status).ok(),
            took_us,
        })
    }

    /// Whether this is a request h2load never sent: unanswered, with start
    /// time 0 (see the module's documentation).
    ///
    /// ```
    /// use seamless_loadkit::h2load::LogEntry;
    /// assert!(!LogEntry::parse("1796016916988619\t-1\t212").unwrap().never_sent());
    /// ```
    pub fn never_sent(&self) -> bool {
        self.start_us == 0 && self.status.is_none()
    }
}

/// The requests a whole log shows h2load never sent.
///
/// ```
/// let log = "1795694405141855\t200\t212\n0\t-1\t9869452306\n";
/// assert_eq!(seamless_loadkit::h2load::never_sent(log), 1);
/// ```
pub fn never_sent(log: &str) -> u64 {
    log.lines()
        .filter_map(LogEntry::parse)
        .filter(LogEntry::never_sent)
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from h2load (nghttp2 1.52) against the axum example's
    // handler: a clean run, a run across which the server was stopped
    // (axum's graceful shutdown, a GOAWAY) and started again, and its log.
    const CLEAN: &str = include_str!("../testdata/h2load-clean.txt");
    const SERVER_KILLED: &str = include_str!("../testdata/h2load-server-killed.txt");
    const SERVER_KILLED_LOG: &str = include_str!("../testdata/h2load-server-killed.log");
    const NOT_FOUND: &str = include_str!("../testdata/h2load-404.txt");

    #[test]
    fn a_clean_run() {
        let s = Summary::parse(CLEAN).unwrap();
        assert_eq!(
            s,
            Summary {
                total: 6949,
                started: 6957,
                done: 6949,
                succeeded: 6949,
                failed: 0,
                errored: 0,
                timeout: 0,
                status_codes: Some([6949, 0, 0, 0]),
            }
        );
        assert_eq!((s.in_flight(), s.non_2xx()), (8, 0));
    }

    #[test]
    fn a_goaway_leaves_errored_streams_the_log_shows_were_never_sent() {
        let s = Summary::parse(SERVER_KILLED).unwrap();
        assert_eq!(
            (s.succeeded, s.failed, s.errored, s.timeout),
            (17664, 6, 6, 0)
        );
        assert_eq!(s.non_2xx(), 0);
        assert_eq!(never_sent(SERVER_KILLED_LOG), s.errored);
        let answered: Vec<_> = SERVER_KILLED_LOG
            .lines()
            .filter_map(LogEntry::parse)
            .filter(|e| e.status == Some(200))
            .collect();
        assert_eq!(answered.len(), 3);
        assert_eq!(answered[0].start_us, 1796016918010482);
    }

    #[test]
    fn answers_with_4xx_are_failed_not_errored() {
        let s = Summary::parse(NOT_FOUND).unwrap();
        assert_eq!((s.succeeded, s.failed, s.errored), (0, 20, 0));
        assert_eq!(s.non_2xx(), 20);
        assert_eq!(s.status_codes, Some([0, 0, 20, 0]));
    }

    #[test]
    fn an_unanswered_request_that_was_sent_is_not_never_sent() {
        assert_eq!(never_sent("1795694405141855\t-1\t212\n"), 0);
        assert_eq!(LogEntry::parse("garbage"), None);
        assert_eq!(Summary::parse("unable to connect\n"), None);
    }
}
