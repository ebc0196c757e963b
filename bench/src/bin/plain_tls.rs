//! The comparison server of `bench/tls.sh`: the TLS example's handler
//! served the way axum's own low-level rustls example does it, without
//! seamless: an accept loop, and in each connection's task the
//! tokio-rustls handshake and hyper-util's `auto` connection (HTTP/1.1 or
//! HTTP/2 as ALPN chose). Same certificate source as `examples/tls.rs`
//! (`TLS_CERT_FILE`, `TLS_KEY_FILE`, else self-signed for `localhost`),
//! same rustls defaults (ring, TLS 1.3 and 1.2, two tickets per
//! handshake, rustls's own ticketer). TERM stops the accept loop and
//! begins hyper's graceful shutdown of each connection, as most services
//! do (the benchmark restarts it so, `--servers plain-tls`).
//!
//! ```text
//! cargo run --release -p seamless-bench --bin plain-tls -- 127.0.0.1:8443
//! ```

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

async fn hello(Query(params): Query<HashMap<String, String>>) -> String {
    if let Some(ms) = params.get("delay").and_then(|d| d.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    format!("Server pid: {}\n", std::process::id())
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn server_config() -> io::Result<rustls::ServerConfig> {
    let (chain, key) = if let (Some(cert), Some(key)) = (
        std::env::var_os("TLS_CERT_FILE"),
        std::env::var_os("TLS_KEY_FILE"),
    ) {
        let chain = CertificateDer::pem_file_iter(&cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(invalid)?;
        (chain, PrivateKeyDer::from_pem_file(&key).map_err(invalid)?)
    } else {
        let made =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).map_err(invalid)?;
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(invalid)?;
        (vec![made.cert.der().clone()], key)
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(invalid)?;
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(invalid)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8443".into());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config()?));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let service = TowerToHyperService::new(Router::new().route("/", get(hello)));
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        // Every connection's task holds a receiver: `closed()` once all
        // are done.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                _ = term.recv() => break,
            };
            let (acceptor, service, builder) = (acceptor.clone(), service.clone(), builder.clone());
            let mut stopping = stopping.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                else {
                    return;
                };
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                tokio::pin!(connection);
                if *stopping.borrow_and_update() {
                    connection.as_mut().graceful_shutdown();
                }
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = stopping.changed() => {}
                }
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            });
        }
        drop(listener);
        drop(stopping);
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(60), stop.closed()).await;
        Ok(())
    })
}
