//! A minimal HTTP/1.1 response reader, shared by the tests and the
//! benchmark (which includes this file).

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// What one response said.
pub(crate) struct Response {
    pub(crate) status: u16,
    /// From the body, `Server pid: N` (the examples) or `pid N` (testd);
    /// 0 when there is none.
    pub(crate) pid: u32,
    /// `Connection: close`: the server closes after this response.
    pub(crate) close: bool,
}

/// Reads one response from a (possibly keep-alive) connection.
pub(crate) fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut close) = (0usize, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let h = line.trim_end().to_ascii_lowercase();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        close |= h.starts_with("connection:") && h.contains("close");
    }
    let mut body = vec![0u8; length.min(4096)];
    reader.read_exact(&mut body)?;
    let pid = String::from_utf8_lossy(&body)
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Ok(Response { status, pid, close })
}
