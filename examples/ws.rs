//! WebSockets that move at a restart: an echo server whose connections are
//! each told to go when the shutdown begins (`Upgrades::GoAway`), a little
//! apart from one another; each sends a Close frame with status 1001
//! (going away), and its client reconnects, to the next generation.
//!
//! `GET /ws` is the WebSocket: every text message is answered with
//! `<pid> <message>`, the acknowledgement. `GET /` answers with the pid
//! (`?delay=MS` after MS milliseconds), as the axum example does.
//!
//! ```text
//! cargo run --example ws -- 127.0.0.1:8080 /tmp/ws.pid
//! websocat ws://127.0.0.1:8080/ws
//! seamless restart /tmp/ws.pid      # the client gets Close 1001
//! ```

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use seamless::axum::{GoingAway, Upgrades};

async fn hello(Query(params): Query<HashMap<String, String>>) -> String {
    if let Some(ms) = params.get("delay").and_then(|d| d.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    format!("Server pid: {}\n", std::process::id())
}

async fn ws(upgrade: WebSocketUpgrade, going_away: GoingAway) -> Response {
    upgrade.on_upgrade(move |socket| echo(socket, going_away))
}

/// Echoes until the client closes or the server goes away.
async fn echo(mut socket: WebSocket, going_away: GoingAway) {
    let pid = std::process::id();
    let mut going_away = going_away.into_future();
    loop {
        tokio::select! {
            () = &mut going_away => break,
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let answer = format!("{pid} {}", text.as_str());
                    if socket.send(Message::Text(answer.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    // Going away: say so, then read until the client's Close, so that the
    // connection ends with the closing handshake, not a reset.
    let close = CloseFrame {
        code: axum::extract::ws::close_code::AWAY,
        reason: "server restarting".into(),
    };
    if socket.send(Message::Close(Some(close))).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.recv().await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
}

#[seamless::daemon(
    pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/ws.pid".into()),
    shutdown_timeout = "30s",
)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = seamless::net::tcp("web", addr)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    seamless::started();

    let app = Router::new().route("/", get(hello)).route("/ws", get(ws));
    seamless::axum::serve(listener, app)
        .upgrades(Upgrades::GoAway)
        .await
}
