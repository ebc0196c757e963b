//! The servers the benchmark runs: the axum example (`examples/axum.rs`),
//! the actix-web, TLS and gRPC examples (`examples/actix.rs`, `tls.rs`,
//! `grpc.rs`, built on first use), `testd` (the integration tests' std
//! server, which drains politely by hand) and its variants, and the
//! comparison servers, each the same handler without seamless: plain
//! `axum::serve`, plain axum over tokio-rustls (`plain-tls`), the gRPC
//! service under plain hyper (`plain-grpc`) and the actix example's
//! handler under plain actix-web (`plain-actix`). The TLS servers are given one
//! certificate for the whole run, made here, which the TLS clients trust.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Server {
    /// `examples/axum.rs`, run as `axum ADDR PIDFILE`.
    Axum,
    /// `examples/actix.rs`, run as `actix ADDR PIDFILE` (HTTP/1.1 only:
    /// actix-web speaks HTTP/2 over TLS alone).
    Actix,
    /// `testd`, the listener handed over.
    Testd,
    /// `testd`, seamless on, each generation binds afresh with
    /// `SO_REUSEPORT` (the Go original's strategy).
    TestdReuseport,
    /// `testd` with seamless off: drain, exit, the supervisor starts the
    /// next one.
    TestdNaive,
    /// The comparison server (the example's handler under plain
    /// `axum::serve`, no seamless): TERM begins axum's graceful shutdown,
    /// the supervisor starts the next one once it has exited.
    PlainAxum,
    /// `examples/tls.rs`: the axum example over HTTPS, session-ticket keys
    /// handed to each next generation.
    Tls,
    /// `plain-tls` (`bench/src/bin/plain_tls.rs`): the same handler under
    /// plain axum and tokio-rustls, no seamless, rustls's own ticketer.
    PlainTls,
    /// `examples/grpc.rs`: a tonic service (unary and server-streaming)
    /// under `seamless::hyper::serve`.
    Grpc,
    /// `plain-grpc` (`bench/src/bin/plain_grpc.rs`): the same service
    /// under plain hyper, no seamless.
    PlainGrpc,
    /// `plain-actix` (the root package's `tests/bin/plain_actix.rs`): the
    /// actix example's handler under plain actix-web, no seamless; TERM
    /// begins actix's own graceful stop.
    PlainActix,
}

/// The names `--servers` takes, for messages.
pub(crate) const SERVER_NAMES: &str =
    "axum, plain-axum, tls, plain-tls, grpc, plain-grpc, actix, plain-actix, testd, testd-reuseport, testd-naive";

impl Server {
    pub(crate) fn parse(s: &str) -> Option<Server> {
        Some(match s {
            "axum" => Server::Axum,
            "actix" => Server::Actix,
            "testd" => Server::Testd,
            "testd-reuseport" => Server::TestdReuseport,
            "testd-naive" => Server::TestdNaive,
            "plain-axum" => Server::PlainAxum,
            "tls" => Server::Tls,
            "plain-tls" => Server::PlainTls,
            "grpc" => Server::Grpc,
            "plain-grpc" => Server::PlainGrpc,
            "plain-actix" => Server::PlainActix,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Server::Axum => "axum example",
            Server::Actix => "actix-web example",
            Server::Testd => "testd",
            Server::TestdReuseport => "testd, reuseport",
            Server::TestdNaive => "testd, seamless off",
            Server::PlainAxum => "plain axum::serve",
            Server::Tls => "TLS example",
            Server::PlainTls => "plain axum+rustls",
            Server::Grpc => "gRPC example",
            Server::PlainGrpc => "plain tonic+hyper",
            Server::PlainActix => "plain actix-web",
        }
    }

    /// Whether this server can be measured with `protocol`'s load: the
    /// TLS servers with wrk over HTTPS and h2load over TLS (hyper's
    /// HTTP/2 client speaks cleartext only), the gRPC servers with the
    /// gRPC load only.
    pub(crate) fn speaks(self, protocol: Protocol) -> bool {
        match self {
            Server::Axum | Server::PlainAxum => protocol != Protocol::Grpc,
            Server::Tls | Server::PlainTls => {
                matches!(protocol, Protocol::Http1 | Protocol::Http2)
            }
            Server::Grpc | Server::PlainGrpc => protocol == Protocol::Grpc,
            _ => protocol == Protocol::Http1,
        }
    }

    /// The loads this server runs when `--protocols` is not given.
    pub(crate) fn default_loads(self) -> &'static [Protocol] {
        match self {
            Server::Axum | Server::PlainAxum => &[Protocol::Http1, Protocol::Http2Hyper],
            Server::Tls | Server::PlainTls => &[Protocol::Http1, Protocol::Http2],
            Server::Grpc | Server::PlainGrpc => &[Protocol::Grpc],
            _ => &[Protocol::Http1],
        }
    }

    /// Whether a launcher stands between the supervisor and the server.
    pub(crate) fn seamless(self) -> bool {
        !matches!(
            self,
            Server::TestdNaive
                | Server::PlainAxum
                | Server::PlainTls
                | Server::PlainGrpc
                | Server::PlainActix
        )
    }

    /// Whether it speaks TLS (the benchmark's clients then do too).
    pub(crate) fn tls(self) -> bool {
        matches!(self, Server::Tls | Server::PlainTls)
    }

    /// Whether it serves gRPC (the benchmark's clients then call it).
    pub(crate) fn grpc(self) -> bool {
        matches!(self, Server::Grpc | Server::PlainGrpc)
    }

    /// The same handler without seamless, for the steady throughput.
    pub(crate) fn plain(self) -> Option<Server> {
        match self {
            Server::Axum => Some(Server::PlainAxum),
            Server::Tls => Some(Server::PlainTls),
            Server::Grpc => Some(Server::PlainGrpc),
            Server::Actix => Some(Server::PlainActix),
            _ => None,
        }
    }

    /// The command line that runs this server on `addr`; `pid_file` None
    /// turns seamless off.
    pub(crate) fn launch(self, bins: &Binaries, addr: &str, pid_file: Option<&Path>) -> Launch {
        let pid_file = pid_file
            .filter(|_| self.seamless())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match self {
            Server::Axum => Launch {
                program: bins.axum.clone(),
                args: vec![addr.into(), pid_file],
                env: Vec::new(),
            },
            Server::Actix => Launch {
                program: bins.example("actix"),
                args: vec![addr.into(), pid_file],
                env: Vec::new(),
            },
            Server::PlainAxum => Launch::plain_axum(addr),
            Server::Tls => Launch {
                program: bins.example("tls"),
                args: vec![addr.into(), pid_file],
                env: bins.certificate().env(),
            },
            Server::PlainTls => Launch {
                program: bins.bench_bin("plain-tls"),
                args: vec![addr.into()],
                env: bins.certificate().env(),
            },
            Server::Grpc => Launch {
                program: bins.example("grpc"),
                args: vec![addr.into(), pid_file],
                env: Vec::new(),
            },
            Server::PlainGrpc => Launch {
                program: bins.bench_bin("plain-grpc"),
                args: vec![addr.into()],
                env: Vec::new(),
            },
            Server::PlainActix => Launch {
                program: bins.actix_bin("plain-actix"),
                args: vec![addr.into()],
                env: Vec::new(),
            },
            _ => {
                let mut env = vec![
                    ("TESTD_ADDR".to_owned(), addr.to_owned()),
                    ("TESTD_PID_FILE".to_owned(), pid_file),
                ];
                if self != Server::Testd {
                    env.push(("TESTD_LISTEN".into(), "reuseport".into()));
                }
                Launch {
                    program: bins.testd.clone(),
                    args: Vec::new(),
                    env,
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Protocol {
    /// HTTP/1.1 keep-alive.
    Http1,
    /// HTTP/2 cleartext with prior knowledge, load from h2load.
    Http2,
    /// The same, load from hyper's HTTP/2 client, which sends again what a
    /// GOAWAY left unprocessed, as RFC 9113 provides.
    Http2Hyper,
    /// gRPC: tonic's client, unary calls and server streams of 2 s.
    Grpc,
}

impl Protocol {
    pub(crate) fn parse(s: &str) -> Option<Protocol> {
        match s {
            "h1" | "http1" | "http/1.1" => Some(Protocol::Http1),
            "h2" | "h2c" | "http2" => Some(Protocol::Http2),
            "h2-hyper" => Some(Protocol::Http2Hyper),
            "grpc" => Some(Protocol::Grpc),
            _ => None,
        }
    }

    /// Whether the load speaks HTTP/2.
    pub(crate) fn is_h2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Http2Hyper)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
            Protocol::Http2Hyper => "HTTP/2, hyper client",
            Protocol::Grpc => "gRPC",
        }
    }
}

/// A program, its arguments and the environment it needs.
#[derive(Clone)]
pub(crate) struct Launch {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

impl Launch {
    pub(crate) fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// The comparison server: this very program in its serving mode.
    pub(crate) fn plain_axum(addr: &str) -> Launch {
        Launch {
            program: std::env::current_exe().expect("current exe"),
            args: vec![PLAIN_AXUM.into(), addr.into()],
            env: Vec::new(),
        }
    }
}

/// The first argument that turns this program into the comparison server.
pub(crate) const PLAIN_AXUM: &str = "serve-plain-axum";

pub(crate) struct Binaries {
    pub(crate) axum: PathBuf,
    pub(crate) testd: PathBuf,
    /// The TLS servers' certificate, made on first use.
    certificate: OnceLock<Certificate>,
}

impl Drop for Binaries {
    fn drop(&mut self) {
        if let Some(c) = self.certificate.get() {
            let _ = std::fs::remove_dir_all(&c.dir);
        }
    }
}

/// One self-signed certificate for `localhost`, in PEM files that the TLS
/// example and `plain-tls` read (`TLS_CERT_FILE`, `TLS_KEY_FILE`), so that
/// every generation shows the same one and the clients trust it.
pub(crate) struct Certificate {
    pub(crate) der: CertificateDer<'static>,
    dir: PathBuf,
}

impl Certificate {
    fn new() -> Certificate {
        let dir = crate::supervision::temp_dir("certificate");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("write cert.pem");
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem())
            .expect("write key.pem");
        Certificate {
            der: made.cert.der().clone(),
            dir,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let file = |name: &str| self.dir.join(name).display().to_string();
        vec![
            ("TLS_CERT_FILE".into(), file("cert.pem")),
            ("TLS_KEY_FILE".into(), file("key.pem")),
        ]
    }

    /// A rustls client (HTTP/1.1 by ALPN) that trusts this certificate;
    /// with `resume`, it keeps the session tickets it is given and offers
    /// them on its next handshake.
    pub(crate) fn client(&self, resume: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("our certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring's protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Arc::new(config)
    }
}

impl Binaries {
    /// The TLS servers' certificate.
    pub(crate) fn certificate(&self) -> &Certificate {
        self.certificate.get_or_init(Certificate::new)
    }

    /// This package's binary `name` (`plain-tls`, `plain-grpc`), built now
    /// if need be with our profile: `cargo run` builds only the benchmark.
    pub(crate) fn bench_bin(&self, name: &str) -> PathBuf {
        let path = self.testd.with_file_name(name);
        self.cargo_build(&["-p", "seamless-bench", "--bin", name], path, name)
    }

    /// The root package's program `name` that needs actix-web
    /// (`plain-actix`), built now if need be with the feature `actix`.
    pub(crate) fn actix_bin(&self, name: &str) -> PathBuf {
        let path = self.testd.with_file_name(name);
        let target = [
            "-p",
            "seamless-tests",
            "--bin",
            name,
            "--no-default-features",
            "--features",
            "actix",
        ];
        self.cargo_build(&target, path, name)
    }

    /// The root package's example `name`, built now if need be, as
    /// [`build`] builds the others: [`build`] builds what every run
    /// needs, an example only some runs use (actix-web) is built here.
    pub(crate) fn example(&self, name: &str) -> PathBuf {
        let path = self.axum.with_file_name(name);
        let what = format!("the {name} example");
        let mut target = vec!["-p", "seamless-tests", "--example", name];
        // Each example with only the features it needs (see [`build`]).
        target.push("--no-default-features");
        if name == "actix" {
            target.extend(["--features", "actix"]);
        }
        self.cargo_build(&target, path, &what)
    }

    /// `cargo build` of `target` in this workspace, with this run's
    /// profile; `path` where it lands. Exits, naming `what`, if it can be
    /// neither built nor found.
    fn cargo_build(&self, target: &[&str], path: PathBuf, what: &str) -> PathBuf {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--manifest-path", manifest]);
        build.args(target);
        if self
            .testd
            .parent()
            .is_some_and(|dir| dir.ends_with("release"))
        {
            build.arg("--release");
        }
        let built = build.status().is_ok_and(|s| s.success());
        if !built && !path.exists() {
            eprintln!("demo: cannot build {what}");
            std::process::exit(1)
        }
        path
    }
}

/// Builds the servers the benchmark runs. `testd` and the example belong
/// to the root package and `cargo run` builds only the benchmark, so one
/// cargo call (the `cargo` that runs us, with our profile) builds them; it
/// is a no-op when they are up to date. They land next to this program.
///
/// The root package's examples are built without its default features,
/// as a user's server would be: its default feature `actix` (for the
/// actix-web example) brings tracing's `log` feature, which makes h2 spend
/// about 11,000 more instructions on each HTTP/2 request (counted with
/// callgrind: 48,600 against 37,300 for the TLS example, whose plain twin
/// spends 36,900).
pub(crate) fn build() -> Binaries {
    let me = std::env::current_exe().expect("current exe");
    let dir = me.parent().expect("exe dir").to_owned();
    let bins = Binaries {
        axum: dir.join("examples").join("axum"),
        testd: dir.join("testd"),
        certificate: OnceLock::new(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--manifest-path", manifest]);
    build.args([
        "-p",
        "seamless-tests",
        "--bin",
        "testd",
        "--example",
        "axum",
        "--no-default-features",
    ]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    match build.status() {
        Ok(s) if s.success() => {}
        _ if bins.axum.exists() && bins.testd.exists() => {
            eprintln!(
                "demo: could not rebuild the servers; using those in {}",
                dir.display()
            )
        }
        _ => {
            eprintln!("demo: cannot build testd and the axum example");
            std::process::exit(1)
        }
    }
    bins
}

/// The comparison server: the axum example's handler, served by plain
/// `axum::serve` on a multi-threaded runtime as `#[tokio::main]` builds
/// it, without seamless; TERM begins axum's own graceful shutdown, as in
/// most services.
pub(crate) fn serve_plain_axum(addr: &str) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let app = Router::new().route("/", get(hello));
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                term.recv().await;
            })
            .await
    })
}

/// The handler of `examples/axum.rs`, unchanged.
async fn hello(Query(params): Query<HashMap<String, String>>) -> String {
    if let Some(ms) = params.get("delay").and_then(|d| d.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
    }
    format!("Server pid: {}\n", std::process::id())
}

/// Whether the server on `port` speaks HTTP/2 with prior knowledge: it
/// answers the connection preface with a SETTINGS frame.
pub(crate) fn speaks_h2c(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
        // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])?;
        let mut header = [0u8; 9];
        s.read_exact(&mut header)?;
        Ok(header[3] == 4)
    };
    probe().unwrap_or(false)
}
