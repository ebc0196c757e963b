//! WebSockets that move: the ws example (`examples/ws.rs`, an echo server
//! with `Upgrades::GoAway`) holds 200 clients (tokio-tungstenite) through
//! 10 restarts. At each restart every client must receive a Close frame
//! with status 1001 (going away), never a reset or a connection closed
//! without the closing handshake; it then reconnects, and its first answer
//! must come from the new generation. Each client sends numbered messages,
//! one at a time, and sends again on the new connection what was not
//! acknowledged (echoed): every acknowledgement must be the one expected,
//! in order, so none is lost, repeated or answered out of turn. The test
//! prints how far apart the clients were told to go at each restart (the
//! spread) and how long they took to be answered again.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(20);
const CLIENTS: usize = 200;
const RESTARTS: usize = 10;
/// Between two messages of a client.
const PACE: Duration = Duration::from_millis(100);

/// `GET /` on a new connection; the pid named in the answer.
fn get_pid(port: u16) -> std::io::Result<i32> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(T))?;
    write!(s, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    example_pid(&answer)
}

/// What a client saw.
#[derive(Default)]
struct Seen {
    /// Messages acknowledged.
    acked: u64,
    /// For each close: when it came, from which pid, and when the client
    /// was answered again after it.
    closes: Vec<(Instant, i32, Option<Instant>)>,
    failures: Vec<String>,
}

/// Shared with the clients: the pid each one is talking to now.
struct Client {
    id: usize,
    port: u16,
    pid: AtomicI32,
    stop: Arc<AtomicBool>,
    seen: Mutex<Seen>,
}

impl Client {
    fn fail(&self, e: String) {
        self.seen.lock().unwrap().failures.push(e);
    }

    /// Connects, sends, reconnects after each Close, until told to stop.
    async fn run(self: Arc<Client>) {
        let url = format!("ws://127.0.0.1:{}/ws", self.port);
        let mut next: u64 = 0;
        // The pid that last said going away: the next answer must come
        // from another.
        let mut gone: Option<i32> = None;
        for _ in 0..1000 {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let (mut socket, _) = match tokio_tungstenite::connect_async(&url).await {
                Ok(pair) => pair,
                Err(e) => return self.fail(format!("client {}: connect: {e}", self.id)),
            };
            // One connection: numbered messages, each sent again until it
            // is acknowledged.
            'connection: loop {
                if self.stop.load(Ordering::SeqCst) {
                    let _ = socket.close(None).await;
                    return;
                }
                let text = format!("{}:{next}", self.id);
                if let Err(e) = socket.send(Message::text(text.clone())).await {
                    return self.fail(format!("client {}: send: {e}", self.id));
                }
                // Its acknowledgement, then PACE of reading before the next
                // message: the server's Close may come at any time, and is
                // read when it comes.
                let mut awaiting = true;
                loop {
                    let wait = if awaiting { T } else { PACE };
                    match tokio::time::timeout(wait, socket.next()).await {
                        Err(_) if awaiting => {
                            return self.fail(format!("client {}: no answer", self.id))
                        }
                        Err(_) => break,
                        Ok(Some(Ok(Message::Text(answer)))) if awaiting => {
                            awaiting = false;
                            let Some((pid, echoed)) = answer.as_str().split_once(' ') else {
                                return self.fail(format!("client {}: answer {answer:?}", self.id));
                            };
                            let pid: i32 = pid.parse().unwrap_or(0);
                            if echoed != text {
                                return self.fail(format!(
                                    "client {}: sent {text:?}, acknowledged {echoed:?}",
                                    self.id
                                ));
                            }
                            if gone == Some(pid) {
                                return self.fail(format!(
                                    "client {}: answered by {pid} after it said going away",
                                    self.id
                                ));
                            }
                            let mut seen = self.seen.lock().unwrap();
                            if gone.take().is_some() {
                                if let Some(last) = seen.closes.last_mut() {
                                    last.2 = Some(Instant::now());
                                }
                            }
                            seen.acked += 1;
                            drop(seen);
                            self.pid.store(pid, Ordering::SeqCst);
                            next += 1;
                        }
                        Ok(Some(Ok(Message::Close(frame)))) => {
                            let code = frame.as_ref().map(|f| f.code);
                            if code != Some(CloseCode::Away) {
                                return self
                                    .fail(format!("client {}: closed with {frame:?}", self.id));
                            }
                            let pid = self.pid.load(Ordering::SeqCst);
                            self.seen
                                .lock()
                                .unwrap()
                                .closes
                                .push((Instant::now(), pid, None));
                            gone = Some(pid);
                            // tungstenite answered the Close; the server ends
                            // the connection, cleanly.
                            loop {
                                match tokio::time::timeout(T, socket.next()).await {
                                    Ok(None) => break 'connection,
                                    Ok(Some(Ok(_))) => {}
                                    Ok(Some(Err(e))) => {
                                        return self.fail(format!(
                                            "client {}: after the Close: {e}",
                                            self.id
                                        ))
                                    }
                                    Err(_) => {
                                        return self.fail(format!(
                                            "client {}: the server did not close",
                                            self.id
                                        ))
                                    }
                                }
                            }
                        }
                        Ok(Some(Ok(other))) => {
                            return self.fail(format!("client {}: unexpected {other:?}", self.id))
                        }
                        Ok(Some(Err(e))) => return self.fail(format!("client {}: {e}", self.id)),
                        Ok(None) => {
                            return self.fail(format!("client {}: closed without a Close", self.id))
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn websocket_clients_are_told_to_go_and_move_across_10_restarts() {
    let program = example("ws");
    let sb = Sandbox::new("ws");
    let port = sb.port;
    let start = || sb.start_example(&program);
    let wait_generation = |except: &[i32]| {
        sb.wait_generation(except, T, |p| {
            get_pid(port).is_ok_and(|answered| answered == p)
        })
    };
    let mut launcher = start();
    let mut served = vec![wait_generation(&[])];

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<Arc<Client>> = (0..CLIENTS)
        .map(|id| {
            Arc::new(Client {
                id,
                port,
                pid: AtomicI32::new(0),
                stop: stop.clone(),
                seen: Mutex::default(),
            })
        })
        .collect();
    let tasks: Vec<_> = clients
        .iter()
        .map(|c| runtime.spawn(c.clone().run()))
        .collect();
    let _stop = StopOnDrop(stop.clone());
    let failures = || -> Vec<String> {
        clients
            .iter()
            .flat_map(|c| c.seen.lock().unwrap().failures.clone())
            .collect()
    };
    // Every client answered by `pid`, or a failure.
    let all_on = |pid: i32| {
        let moved = wait_until(T, || {
            clients.iter().all(|c| c.pid.load(Ordering::SeqCst) == pid) || !failures().is_empty()
        });
        assert!(moved, "clients still not on generation {pid}");
        assert!(failures().is_empty(), "failures: {:?}", failures());
    };
    all_on(served[0]);

    let mut restarts = Vec::new();
    for _ in 0..RESTARTS {
        let began = Instant::now();
        launcher.signal(Signal::SIGTERM);
        assert!(launcher.wait(T).success());
        launcher = start();
        served.push(wait_generation(&served));
        all_on(*served.last().unwrap());
        restarts.push(began);
    }
    stop.store(true, Ordering::SeqCst);
    runtime.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(T, t).await;
        }
    });

    let failures = failures();
    assert!(failures.is_empty(), "failures: {failures:?}");
    // Each client was told to go once per restart, by each old generation
    // in turn, and answered again after each.
    let mut per_restart: Vec<Vec<(Instant, Option<Instant>)>> = vec![Vec::new(); RESTARTS];
    let mut acked = 0;
    for c in &clients {
        let seen = c.seen.lock().unwrap();
        acked += seen.acked;
        let pids: Vec<i32> = seen.closes.iter().map(|(_, pid, _)| *pid).collect();
        assert_eq!(
            pids,
            served[..RESTARTS],
            "client {}: closes from {pids:?}",
            c.id
        );
        for (n, (at, _, back)) in seen.closes.iter().enumerate() {
            per_restart[n].push((*at, *back));
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut report = Vec::new();
    for (n, closes) in per_restart.iter().enumerate() {
        let first = closes.iter().map(|(at, _)| *at).min().unwrap();
        let last = closes.iter().map(|(at, _)| *at).max().unwrap();
        let back = closes
            .iter()
            .map(|(at, back)| back.expect("answered again") - *at)
            .max()
            .unwrap();
        report.push(format!(
            "restart {}: 1001 to all {CLIENTS} over {:.0} ms (first {:.0} ms after the TERM), \
             each answered again within {:.0} ms",
            n + 1,
            ms(last - first),
            ms(first - restarts[n]),
            ms(back)
        ));
    }
    eprintln!(
        "WebSocket, {CLIENTS} clients, {RESTARTS} restarts: {acked} messages acknowledged, \
         {} Close 1001, 0 failures\n{}",
        CLIENTS * RESTARTS,
        report.join("\n")
    );
    for old in &served[..served.len() - 1] {
        wait_dead(*old, T);
    }
}
