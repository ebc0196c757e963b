//! The servers the benchmark runs: the axum example (`examples/axum.rs`),
//! the actix-web example (`examples/actix.rs`, built on first use),
//! `testd` (the integration tests' std server, which drains politely by
//! hand) and its variants, and the comparison server: the example's
//! handler under plain `axum::serve`, without seamless.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;

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
}

impl Server {
    pub(crate) fn parse(s: &str) -> Option<Server> {
        Some(match s {
            "axum" => Server::Axum,
            "actix" => Server::Actix,
            "testd" => Server::Testd,
            "testd-reuseport" => Server::TestdReuseport,
            "testd-naive" => Server::TestdNaive,
            "plain-axum" => Server::PlainAxum,
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
        }
    }

    pub(crate) fn speaks(self, protocol: Protocol) -> bool {
        protocol == Protocol::Http1 || matches!(self, Server::Axum | Server::PlainAxum)
    }

    /// Whether a launcher stands between the supervisor and the server.
    pub(crate) fn seamless(self) -> bool {
        !matches!(self, Server::TestdNaive | Server::PlainAxum)
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
}

impl Protocol {
    pub(crate) fn parse(s: &str) -> Option<Protocol> {
        match s {
            "h1" | "http1" | "http/1.1" => Some(Protocol::Http1),
            "h2" | "h2c" | "http2" => Some(Protocol::Http2),
            "h2-hyper" => Some(Protocol::Http2Hyper),
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
}

impl Binaries {
    /// The root package's example `name`, built now if need be, as
    /// [`build`] builds the others: [`build`] builds what every run
    /// needs, an example only some runs use (actix-web) is built here.
    pub(crate) fn example(&self, name: &str) -> PathBuf {
        let path = self.axum.with_file_name(name);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--manifest-path", manifest]);
        build.args(["-p", "seamless-tests", "--example", name]);
        if self
            .testd
            .parent()
            .is_some_and(|dir| dir.ends_with("release"))
        {
            build.arg("--release");
        }
        let built = build.status().is_ok_and(|s| s.success());
        if !built && !path.exists() {
            eprintln!("demo: cannot build the {name} example");
            std::process::exit(1)
        }
        path
    }
}

/// Builds the servers the benchmark runs. `testd` and the example belong
/// to the root package and `cargo run` builds only the benchmark, so one
/// cargo call (the `cargo` that runs us, with our profile) builds them; it
/// is a no-op when they are up to date. They land next to this program.
pub(crate) fn build() -> Binaries {
    let me = std::env::current_exe().expect("current exe");
    let dir = me.parent().expect("exe dir").to_owned();
    let bins = Binaries {
        axum: dir.join("examples").join("axum"),
        testd: dir.join("testd"),
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
