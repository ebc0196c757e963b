//! What the tests decide about failed HTTP/2 requests: which a client may
//! send again, and which h2load never sent. Shared by `tests/frameworks.rs`,
//! `tests/grpc.rs` and the benchmark (which include this file by path).

/// A request the server did not process, which a client may send again
/// (RFC 9113, 6.8 and 8.7): refused with `REFUSED_STREAM`, or failed by h2
/// with the server's GOAWAY itself, which it gives to the streams numbered
/// above the GOAWAY's last stream and to requests made after it arrived
/// (never sent). A stream the server accepted and left unanswered when the
/// connection closed fails otherwise (a broken pipe, a reset): a failure.
pub(crate) fn unprocessed(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.is_remote());
        }
        source = err.source();
    }
    false
}

/// Whether a line of h2load's per-request log (`--log-file`: start in µs
/// since the epoch, status or -1, µs to the end) is a request h2load never
/// sent: unanswered, and with start time 0, since the frame that would
/// have started it was never written. h2load logs so the request it had
/// queued when a GOAWAY came, and counts it errored.
pub(crate) fn h2load_never_sent(line: &str) -> bool {
    let mut fields = line.split('\t').map(str::trim);
    fields.next() == Some("0") && fields.next() == Some("-1")
}
