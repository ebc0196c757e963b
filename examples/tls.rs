//! HTTPS with sessions that resume across restarts: the axum example over
//! TLS (rustls), HTTP/2 or HTTP/1.1 as ALPN chooses. The handshake runs in
//! each connection's own task; the drain is the same as in cleartext,
//! each connection closed with `close_notify`.
//!
//! The session-ticket keys come from the previous generation
//! (`seamless::tls::Ticketer`, through `seamless::state`), so a client that
//! saved its session before a restart resumes it on the new generation.
//! The first generation makes them; keys that cannot be read are replaced
//! with new ones, with a warning, and never fail the restart.
//!
//! The certificate and key are read from the PEM files named by
//! `TLS_CERT_FILE` and `TLS_KEY_FILE`; without them, a self-signed
//! certificate for `localhost` is made at start-up.
//!
//! (`TLS_TICKETS_OFFER=garbage` makes a generation offer 7 bytes instead
//! of its keys when a restart begins, to show the fallback: the next
//! generation warns, makes new keys and serves.)
//!
//! ```text
//! cargo run --example tls -- 127.0.0.1:8443 /tmp/tls.pid
//! curl -k 'https://localhost:8443/?delay=2000'
//! openssl s_client -connect 127.0.0.1:8443 -sess_out /tmp/session </dev/null
//! seamless restart /tmp/tls.pid
//! openssl s_client -connect 127.0.0.1:8443 -sess_in /tmp/session </dev/null | grep Reused
//! ```

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use seamless::tls::rustls;
use seamless::tls::rustls::pki_types::pem::PemObject;
use seamless::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

async fn hello(Query(params): Query<HashMap<String, String>>) -> String {
    if let Some(ms) = params.get("delay").and_then(|d| d.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    format!("Server pid: {}\n", std::process::id())
}

/// The certificate chain and key: from the files the environment names,
/// or self-signed for `localhost`.
fn certificate() -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let invalid =
        |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    if let (Some(cert), Some(key)) = (
        std::env::var_os("TLS_CERT_FILE"),
        std::env::var_os("TLS_KEY_FILE"),
    ) {
        let chain = CertificateDer::pem_file_iter(&cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(&e))?;
        let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| invalid(&e))?;
        return Ok((chain, key));
    }
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| invalid(&e))?;
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(|e| invalid(&e))?;
    Ok((vec![made.cert.der().clone()], key))
}

fn server_config() -> io::Result<rustls::ServerConfig> {
    let (chain, key) = certificate()?;
    // ring, named here: the process's default provider is ambiguous when
    // another crate of the build enables aws-lc-rs as well.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // The previous generation's keys, or new ones; offered to the next.
    config.ticketer = seamless::tls::Ticketer::handed_over("tls-tickets");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Stage 1 of a restart: replaces the keys offered with garbage, if asked.
#[seamless::on_shutdown_request]
fn offer_garbage_if_asked() {
    if std::env::var("TLS_TICKETS_OFFER").as_deref() == Ok("garbage") {
        if let Err(e) = seamless::state::offer("tls-tickets", b"garbage".to_vec(), &[]) {
            log::error!("cannot offer garbage: {e}");
        }
    }
}

#[seamless::daemon(
    pid_file = std::env::args().nth(2).unwrap_or_else(|| "/tmp/tls.pid".into()),
    shutdown_timeout = "60s",
)]
#[tokio::main]
async fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8443".into());
    // Before started(): the keys are taken while the previous generation
    // still hands over.
    let config = Arc::new(server_config()?);
    let listener = seamless::net::tcp("web", addr)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    seamless::started();

    let app = Router::new().route("/", get(hello));
    seamless::axum::serve(listener, app).tls(config).await
}
