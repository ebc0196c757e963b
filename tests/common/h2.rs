//! Which failed HTTP/2 requests a client may send again, shared by the
//! HTTP/2 client of `tests/frameworks.rs` and the benchmark's (which
//! include this file by path).

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
