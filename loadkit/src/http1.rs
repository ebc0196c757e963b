//! A minimal HTTP/1.1 response reader for the servers the tests and the
//! benchmark run, which name the pid that answered in their body.

use std::io::{BufRead, BufReader, Read};

/// What one response said.
pub struct Response {
    /// The status code; 0 when the status line has none.
    pub status: u16,
    /// From the body, `Server pid: N` (the examples) or `pid N` (testd);
    /// 0 when there is none.
    pub pid: u32,
    /// `Connection: close`: the server closes after this response.
    pub close: bool,
}

/// Reads one response from a (possibly keep-alive) connection: a TCP
/// stream, or a TLS one over it.
///
/// ```no_run
/// use std::io::{BufReader, Write};
/// let mut s = std::net::TcpStream::connect("127.0.0.1:8080")?;
/// s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
/// let r = seamless_loadkit::http1::read_response(&mut BufReader::new(s))?;
/// println!("{} from pid {}", r.status, r.pid);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read_response<R: Read>(reader: &mut BufReader<R>) -> std::io::Result<Response> {
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
