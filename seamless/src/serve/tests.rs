//! The drain's rules, each pinned on a real socket on 127.0.0.1 with a
//! server started in the test and a shutdown the test triggers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use ::hyper::body::{Bytes, Incoming};
use ::hyper::service::service_fn;
use ::hyper::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use std::future::IntoFuture;

use super::{Options, Upgrades};

const T: Duration = Duration::from_secs(10);

/// `/?delay=MS` answers after MS milliseconds; `/upgrade` switches to an
/// echo protocol.
async fn app(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/upgrade" {
        let upgrade = ::hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        response
            .headers_mut()
            .insert("upgrade", "echo".parse().unwrap());
        return Ok(response);
    }
    let delay = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("delay="))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(options: Options) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let mut serve = crate::hyper::serve(listener, service_fn(app))
            .idle_linger(options.idle_linger)
            .upgrades(options.upgrades)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            });
        if let Some(timeout) = options.drain_timeout {
            serve = serve.drain_timeout(timeout);
        }
        let served = tokio::spawn(serve.into_future());
        Server {
            addr,
            shutdown: Some(tx),
            served,
        }
    }

    fn shut_down(&mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
    }

    async fn finished(self) {
        timeout(T, self.served)
            .await
            .expect("serve returns")
            .unwrap()
            .unwrap();
    }
}

/// One HTTP/1.1 response: status, header block (lower case), body.
async fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = timeout(T, reader.read_line(&mut line))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "end of file before the response; got {head:?}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0; length];
    timeout(T, reader.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.unwrap())
}

async fn send(conn: &mut BufReader<TcpStream>, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    conn.get_mut().write_all(request.as_bytes()).await.unwrap();
}

/// Waits for end-of-file (or a reset) on `conn`; returns when it came.
async fn closed(conn: &mut BufReader<TcpStream>) -> Instant {
    let mut rest = Vec::new();
    let _ = timeout(T, conn.read_to_end(&mut rest))
        .await
        .expect("the server closes");
    assert!(rest.is_empty(), "unexpected bytes: {rest:?}");
    Instant::now()
}

fn wants_close(head: &str) -> bool {
    head.contains("connection: close")
}

#[tokio::test]
async fn the_next_request_on_a_keep_alive_connection_gets_connection_close() {
    let mut server = Server::start(Options::default()).await;
    let mut conn = connect(server.addr).await;
    send(&mut conn, "/").await;
    let (status, head, body) = read_response(&mut conn).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(
        !wants_close(&head),
        "keep-alive before the shutdown: {head}"
    );

    server.shut_down();
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&mut conn, "/").await;
    let (status, head, _) = read_response(&mut conn).await;
    assert_eq!(status, 200);
    assert!(wants_close(&head), "no Connection: close: {head}");
    closed(&mut conn).await;
    server.finished().await;
}

#[tokio::test]
async fn a_request_in_flight_finishes_and_closes_its_connection() {
    let mut server = Server::start(Options::default()).await;
    let mut conn = connect(server.addr).await;
    send(&mut conn, "/?delay=300").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shut_down();
    let (status, head, body) = read_response(&mut conn).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(wants_close(&head), "{head}");
    closed(&mut conn).await;
    server.finished().await;
}

#[tokio::test]
async fn a_connection_accepted_but_not_read_is_served_once() {
    let mut server = Server::start(Options::default()).await;
    // Accepted (the server counts it), nothing sent yet.
    let mut conn = connect(server.addr).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The request leaves as the shutdown fires.
    server.shut_down();
    send(&mut conn, "/").await;
    let (status, head, _) = read_response(&mut conn).await;
    assert_eq!(status, 200);
    assert!(wants_close(&head), "{head}");
    closed(&mut conn).await;

    // The same with the request already written when the shutdown fires.
    // (Accepted first: with no next generation to take the listener's
    // queue, a connection still queued there is reset.)
    let mut server = Server::start(Options::default()).await;
    let mut conn = connect(server.addr).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    send(&mut conn, "/").await;
    server.shut_down();
    let (status, _, _) = read_response(&mut conn).await;
    assert_eq!(status, 200);
    closed(&mut conn).await;
    server.finished().await;
}

#[tokio::test]
async fn an_idle_connection_closes_after_the_linger_not_before() {
    let linger = Duration::from_millis(400);
    let mut server = Server::start(Options {
        idle_linger: linger,
        ..Options::default()
    })
    .await;
    let mut conn = connect(server.addr).await;
    send(&mut conn, "/").await;
    read_response(&mut conn).await;
    // A fresh connection that never sends is closed by the same rule.
    let mut silent = connect(server.addr).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let began = Instant::now();
    server.shut_down();
    let at = closed(&mut conn).await;
    assert!(
        at - began >= linger,
        "closed {:?} after the shutdown, before the linger",
        at - began
    );
    let at = closed(&mut silent).await;
    assert!(at - began >= linger);
    // The client closes its end on end-of-file, as clients do; the
    // server's lingering close then ends at once.
    drop((conn, silent));
    server.finished().await;
    assert!(began.elapsed() < linger * 2 + Duration::from_secs(5));
}

#[tokio::test]
async fn in_flight_h2_streams_finish_after_goaway() {
    let mut server = Server::start(Options::default()).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        ::hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let get = |path: &str| {
        Request::get(format!("http://t{path}"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    // The connection is known to be HTTP/2 once one stream went through.
    let response = sender.send_request(get("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let slow: Vec<_> = (0..3)
        .map(|_| sender.send_request(get("/?delay=400")))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shut_down();
    for response in slow {
        let response = timeout(T, response)
            .await
            .unwrap()
            .expect("stream finishes");
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    // GOAWAY: the client's connection ends cleanly, and so does the server.
    timeout(T, connection)
        .await
        .expect("the connection ends")
        .unwrap()
        .expect("a clean end");
    server.finished().await;
}

#[tokio::test]
async fn the_deadline_closes_what_is_left() {
    let mut server = Server::start(Options {
        drain_timeout: Some(Duration::from_millis(300)),
        ..Options::default()
    })
    .await;
    let mut conn = connect(server.addr).await;
    send(&mut conn, "/?delay=20000").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let began = Instant::now();
    server.shut_down();
    server.finished().await;
    closed(&mut conn).await;
    assert!(began.elapsed() < Duration::from_secs(5));
}

async fn upgrade(addr: SocketAddr) -> BufReader<TcpStream> {
    let mut conn = connect(addr).await;
    conn.get_mut()
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut conn).await;
    assert_eq!(status, 101);
    conn
}

async fn echoes(conn: &mut BufReader<TcpStream>) -> bool {
    if conn.get_mut().write_all(b"ping").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    matches!(timeout(T, conn.read_exact(&mut buf)).await, Ok(Ok(_))) && &buf == b"ping"
}

#[tokio::test]
async fn upgraded_connections_finish_by_default() {
    let mut server = Server::start(Options::default()).await;
    let mut conn = upgrade(server.addr).await;
    assert!(echoes(&mut conn).await);
    server.shut_down();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(echoes(&mut conn).await, "still open during the drain");
    assert!(!server.served.is_finished(), "serve waits for it");
    drop(conn);
    server.finished().await;
}

#[tokio::test]
async fn upgraded_connections_close_at_the_shutdown_when_asked() {
    let mut server = Server::start(Options {
        upgrades: Upgrades::Close,
        ..Options::default()
    })
    .await;
    let mut conn = upgrade(server.addr).await;
    assert!(echoes(&mut conn).await);
    server.shut_down();
    server.finished().await;
    assert!(!echoes(&mut conn).await, "closed by the drain");
}

#[tokio::test]
async fn an_upgrade_during_the_drain_gets_its_101_before_it_is_closed() {
    let mut server = Server::start(Options {
        upgrades: Upgrades::Close,
        ..Options::default()
    })
    .await;
    let mut conn = connect(server.addr).await;
    send(&mut conn, "/").await;
    read_response(&mut conn).await;
    server.shut_down();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.get_mut()
        .write_all(
            b"GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut conn).await;
    assert_eq!(status, 101, "the answer is written whole");
    server.finished().await;
    assert!(!echoes(&mut conn).await, "then closed by the drain");
}

#[test]
fn unread_input_sees_bytes_the_server_has_not_read() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let (mut client, mut server) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = server.as_raw_fd();
    assert!(!super::unread_input(fd), "nothing sent");
    client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    assert!(super::unread_input(fd), "a request waits unread");
    assert!(super::unread_input(fd), "peeking reads nothing");
    let mut buf = [0u8; 64];
    let _ = server.read(&mut buf).unwrap();
    assert!(!super::unread_input(fd), "read");
    drop(client);
    assert!(!super::unread_input(fd), "an end of file is no request");
}

#[tokio::test]
async fn with_go_away_an_upgraded_connection_is_told_to_go_within_the_spread() {
    use super::GoingAway;
    // An upgrade that echoes until its GoingAway fires, then writes "bye".
    async fn app(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let going_away = GoingAway::of(&request);
        let upgrade = ::hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            going_away.await;
            let _ = io.write_all(b"bye").await;
        });
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert("connection", "upgrade".parse().unwrap());
        headers.insert("upgrade", "echo".parse().unwrap());
        Ok(response)
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let spread = Duration::from_millis(300);
    let served = tokio::spawn(
        crate::hyper::serve(listener, service_fn(app))
            .upgrades(Upgrades::GoAway)
            .going_away_spread(spread)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .into_future(),
    );
    let mut conns = Vec::new();
    for _ in 0..5 {
        let mut conn = connect(addr).await;
        conn.get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut conn).await.0, 101);
        conns.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let began = Instant::now();
    tx.send(()).unwrap();
    for conn in &mut conns {
        let mut bye = [0u8; 3];
        timeout(T, conn.read_exact(&mut bye))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&bye, b"bye");
        assert!(began.elapsed() < spread + Duration::from_millis(200));
    }
    drop(conns);
    timeout(T, served).await.unwrap().unwrap().unwrap();
}

/// The drain over TLS: the handshake in the connection's task, ALPN, and
/// `close_notify` before the two-step close.
#[cfg(feature = "rustls")]
mod tls {
    use std::sync::Arc;

    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{client::TlsStream, TlsConnector};

    use super::*;

    fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert: CertificateDer<'static> = made.cert.der().clone();
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert).unwrap();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        (Arc::new(server), Arc::new(client))
    }

    struct TlsServer {
        addr: SocketAddr,
        client: Arc<ClientConfig>,
        shutdown: Option<oneshot::Sender<()>>,
        served: JoinHandle<std::io::Result<()>>,
    }

    async fn start(handshake_timeout: Duration) -> TlsServer {
        let (server, client) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let serve = crate::hyper::serve(listener, service_fn(app))
            .tls(server)
            .tls_handshake_timeout(handshake_timeout)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            });
        TlsServer {
            addr,
            client,
            shutdown: Some(tx),
            served: tokio::spawn(serve.into_future()),
        }
    }

    async fn connect(server: &TlsServer) -> BufReader<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(server.client.clone()).connect(name, tcp);
        BufReader::new(timeout(T, tls).await.unwrap().unwrap())
    }

    async fn get(conn: &mut BufReader<TlsStream<TcpStream>>) -> (u16, String) {
        conn.get_mut()
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            timeout(T, conn.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let mut body = [0u8; 2];
        timeout(T, conn.read_exact(&mut body))
            .await
            .unwrap()
            .unwrap();
        (head[9..12].parse().unwrap(), head)
    }

    #[tokio::test]
    async fn a_silent_client_delays_no_other_and_is_closed_after_the_handshake_timeout() {
        let server = start(Duration::from_millis(500)).await;
        // Connects and says nothing: its handshake waits in its own task.
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let began = Instant::now();
        let mut conn = connect(&server).await;
        assert_eq!(get(&mut conn).await.0, 200);
        assert!(
            began.elapsed() < Duration::from_millis(400),
            "served at once"
        );
        let mut rest = Vec::new();
        let _ = timeout(T, silent.read_to_end(&mut rest))
            .await
            .expect("closed");
        assert!(
            began.elapsed() >= Duration::from_millis(400),
            "after its timeout"
        );
    }

    #[tokio::test]
    async fn a_keep_alive_tls_connection_gets_connection_close_then_close_notify() {
        let mut server = start(Duration::from_secs(5)).await;
        let mut conn = connect(&server).await;
        let (status, head) = get(&mut conn).await;
        assert_eq!(status, 200);
        assert!(!wants_close(&head), "{head}");

        server.shutdown.take().unwrap().send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, head) = get(&mut conn).await;
        assert_eq!(status, 200);
        assert!(wants_close(&head), "no Connection: close: {head}");
        // The server's close_notify: a clean end of the TLS stream (an end
        // of the TCP stream without it is an error for rustls).
        let mut rest = Vec::new();
        timeout(T, conn.read_to_end(&mut rest))
            .await
            .unwrap()
            .expect("close_notify before the end of the connection");
        assert!(rest.is_empty());
        drop(conn);
        timeout(T, server.served).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn alpn_h2_gets_http2_and_a_goaway_at_the_drain() {
        let server = start(Duration::from_secs(5)).await;
        let mut client = (*server.client).clone();
        client.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(Arc::new(client)).connect(name, tcp);
        let tls = timeout(T, tls).await.unwrap().unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, connection) =
            ::hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        let request = Request::get("https://localhost/?delay=300")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let in_flight = tokio::spawn(sender.send_request(request));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut server = server;
        server.shutdown.take().unwrap().send(()).unwrap();
        let response = timeout(T, in_flight).await.unwrap().unwrap().unwrap();
        assert_eq!(response.status(), 200, "the stream in flight finishes");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        // GOAWAY, then the connection ends, and the server returns.
        timeout(T, connection).await.unwrap().unwrap().unwrap();
        timeout(T, server.served).await.unwrap().unwrap().unwrap();
    }
}
