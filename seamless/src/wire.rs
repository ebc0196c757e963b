//! The versioned line format spoken on a generation's endpoint: requests,
//! the head of each answer, and the status record. Pure functions, no I/O;
//! this module imports no other module of the crate.
//!
//! # Requests
//!
//! One line per connection, at most [`MAX_REQUEST`] bytes with its
//! newline: the protocol version, a verb, its arguments.
//!
//! ```text
//! seamless/3 listener <name>      a socket by name (with SCM_RIGHTS)
//! seamless/3 state <name>         named state offered to the next generation
//! seamless/3 status               the status record below
//! seamless/3 restart              stage 1, as a TERM to the launcher would
//! seamless/3 spawned <pid>        a launcher tells: I started daemon <pid>
//! seamless/3 exited <pid> <how>   ... and it ended (status N | signal N)
//! seamless/3 probation <ms>       the asking generation called started()
//!                                 and is on probation for <ms>
//! ```
//!
//! # Answers
//!
//! A head line, then a body until the server hangs up:
//! `seamless/3 ok [text]`, `seamless/3 none` (no such name) or
//! `seamless/3 refused <reason>`. Fds travel with the first byte.
//!
//! # Versions
//!
//! A request in another version, or none (the unversioned requests of
//! version 1 were a bare socket name), is answered
//! `seamless/3 refused protocol ...` and logged by the server; a client
//! that reads another version refuses the answer. Neither side guesses.

use std::fmt::Write as _;

/// The protocol this build speaks.
pub(crate) const VERSION: &str = "seamless/3";
/// The longest request line, newline included.
pub(crate) const MAX_REQUEST: usize = 512;
/// The longest name (socket or state), in bytes.
pub(crate) const MAX_NAME: usize = 255;

/// How a process ended, as a launcher saw its daemon end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited with this status.
    Status(i32),
    /// A signal (its number) killed it.
    Signal(i32),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Status(code) => write!(f, "status {code}"),
            Ended::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

impl Ended {
    fn parse(kind: &str, value: &str) -> Option<Ended> {
        let value = value.parse().ok()?;
        match kind {
            "status" => Some(Ended::Status(value)),
            "signal" => Some(Ended::Signal(value)),
            _ => None,
        }
    }
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    Listener(String),
    State(String),
    Status,
    Restart,
    Spawned(i32),
    Exited(i32, Ended),
    /// The peer called `started()` and is on probation for this many
    /// milliseconds: the asked generation serves on until it ends.
    Probation(u64),
}

/// Why a request line was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The peer speaks another protocol (what it sent in place of ours).
    Version(String),
    Malformed(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Version(theirs) => write!(
                f,
                "protocol version mismatch: the peer speaks {theirs}, this generation {VERSION}"
            ),
            Refusal::Malformed(what) => f.write_str(what),
        }
    }
}

/// A name must be 1 to [`MAX_NAME`] bytes, without newline or NUL.
pub(crate) fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.contains(['\n', '\0'])
}

impl Request {
    /// The request line, newline included.
    pub(crate) fn encode(&self) -> String {
        match self {
            Request::Listener(name) => format!("{VERSION} listener {name}\n"),
            Request::State(name) => format!("{VERSION} state {name}\n"),
            Request::Status => format!("{VERSION} status\n"),
            Request::Restart => format!("{VERSION} restart\n"),
            Request::Spawned(pid) => format!("{VERSION} spawned {pid}\n"),
            Request::Exited(pid, how) => format!("{VERSION} exited {pid} {how}\n"),
            Request::Probation(ms) => format!("{VERSION} probation {ms}\n"),
        }
    }

    /// Parses a request line (without its newline).
    pub(crate) fn parse(line: &str) -> Result<Request, Refusal> {
        let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
        if version != VERSION {
            return Err(Refusal::Version(if version.starts_with("seamless/") {
                version.chars().take(32).collect()
            } else {
                "seamless/1 (an unversioned request)".into()
            }));
        }
        let (verb, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let pid = |s: &str| s.parse::<i32>().ok().filter(|p| *p > 1);
        match verb {
            "listener" | "state" if !name_ok(args) => Err(Refusal::Malformed("invalid name")),
            "listener" => Ok(Request::Listener(args.to_owned())),
            "state" => Ok(Request::State(args.to_owned())),
            "status" if args.is_empty() => Ok(Request::Status),
            "restart" if args.is_empty() => Ok(Request::Restart),
            "spawned" => pid(args)
                .map(Request::Spawned)
                .ok_or(Refusal::Malformed("bad pid")),
            "exited" => {
                let mut f = args.split(' ');
                match (f.next().and_then(pid), f.next(), f.next(), f.next()) {
                    (Some(pid), Some(kind), Some(value), None) => Ended::parse(kind, value)
                        .map(|how| Request::Exited(pid, how))
                        .ok_or(Refusal::Malformed("bad exit")),
                    _ => Err(Refusal::Malformed("bad exit")),
                }
            }
            "probation" => args
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0 && !args.starts_with('+'))
                .map(Request::Probation)
                .ok_or(Refusal::Malformed("bad probation")),
            _ => Err(Refusal::Malformed("unknown verb")),
        }
    }
}

/// The head of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// Done; the text, if any, is on the head line.
    Ok(String),
    /// No such name.
    None,
    Refused(String),
}

impl Head {
    /// The head line, newline included.
    pub(crate) fn encode(&self) -> String {
        match self {
            Head::Ok(text) if text.is_empty() => format!("{VERSION} ok\n"),
            Head::Ok(text) => format!("{VERSION} ok {}\n", one_line(text)),
            Head::None => format!("{VERSION} none\n"),
            Head::Refused(reason) => format!("{VERSION} refused {}\n", one_line(reason)),
        }
    }

    /// Splits an answer into its head and body.
    pub(crate) fn parse(answer: &[u8]) -> Result<(Head, &[u8]), Refusal> {
        let end = answer
            .iter()
            .position(|b| *b == b'\n')
            .ok_or(Refusal::Malformed("an answer without a head line"))?;
        let line = std::str::from_utf8(&answer[..end])
            .map_err(|_| Refusal::Malformed("the head line is not UTF-8"))?;
        let body = &answer[end + 1..];
        let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
        if version != VERSION {
            return Err(Refusal::Version(version.chars().take(32).collect()));
        }
        let (kind, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let head = match kind {
            "ok" => Head::Ok(text.to_owned()),
            "none" if text.is_empty() => Head::None,
            "refused" => Head::Refused(text.to_owned()),
            _ => return Err(Refusal::Malformed("an unknown answer")),
        };
        Ok((head, body))
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

// ---------------------------------------------------------------- status

/// What a generation says of itself: `key value` lines, one fact each.
/// Times are milliseconds since the Unix epoch; unknown keys are skipped
/// by the reader, so that a later version may add some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) pid: i32,
    pub(crate) role: String,
    pub(crate) since_ms: Option<u64>,
    pub(crate) until_ms: Option<u64>,
    pub(crate) launcher: Option<i32>,
    pub(crate) handover_timeout_ms: u64,
    /// The configured probation, 0 for none.
    pub(crate) probation_ms: u64,
    /// (name, kind and address).
    pub(crate) listeners: Vec<(String, String)>,
    /// (pid, what became of it).
    pub(crate) successors: Vec<(i32, Fate)>,
}

/// What became of a successor, as far as its predecessor knows:
/// `running`, `probation <until ms>`, `ended <status N | signal N>
/// [probation <ms>]` or `gone [probation <ms>]`, where `probation <ms>`
/// says that it ended that long into its probation (else before it called
/// `started()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Alive.
    Running,
    /// Called `started()`, on probation until this time.
    Probation { until_ms: u64 },
    /// Ended, how, and if during its probation, how long into it.
    Ended {
        how: Ended,
        into_probation_ms: Option<u64>,
    },
    /// No longer there, how it ended unknown.
    Gone { into_probation_ms: Option<u64> },
}

impl Fate {
    fn encode(&self) -> String {
        let into = |ms: &Option<u64>| ms.map(|ms| format!(" probation {ms}")).unwrap_or_default();
        match self {
            Fate::Running => "running".into(),
            Fate::Probation { until_ms } => format!("probation {until_ms}"),
            Fate::Ended {
                how,
                into_probation_ms,
            } => format!("ended {how}{}", into(into_probation_ms)),
            Fate::Gone { into_probation_ms } => format!("gone{}", into(into_probation_ms)),
        }
    }

    fn parse(text: &str) -> Option<Fate> {
        let f: Vec<&str> = text.split(' ').collect();
        let ms = |s: &str| s.parse::<u64>().ok().filter(|_| !s.starts_with('+'));
        let into = |rest: &[&str]| match rest {
            [] => Some(None),
            ["probation", v] => ms(v).map(Some),
            _ => None,
        };
        match f.as_slice() {
            ["running"] => Some(Fate::Running),
            ["probation", until] => ms(until).map(|until_ms| Fate::Probation { until_ms }),
            ["ended", kind, value, rest @ ..] => Some(Fate::Ended {
                how: Ended::parse(kind, value)?,
                into_probation_ms: into(rest)?,
            }),
            ["gone", rest @ ..] => Some(Fate::Gone {
                into_probation_ms: into(rest)?,
            }),
            _ => None,
        }
    }
}

impl Status {
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "pid {}", self.pid);
        let _ = writeln!(out, "role {}", self.role);
        if let Some(ms) = self.since_ms {
            let _ = writeln!(out, "since {ms}");
        }
        if let Some(ms) = self.until_ms {
            let _ = writeln!(out, "until {ms}");
        }
        if let Some(pid) = self.launcher {
            let _ = writeln!(out, "launcher {pid}");
        }
        let _ = writeln!(out, "handover_timeout {}", self.handover_timeout_ms);
        if self.probation_ms > 0 {
            let _ = writeln!(out, "probation {}", self.probation_ms);
        }
        for (name, address) in &self.listeners {
            // The name may hold spaces, the address not its newline.
            let _ = writeln!(
                out,
                "listener {} {}",
                name.len(),
                one_line(&format!("{name}{address}"))
            );
        }
        for (pid, fate) in &self.successors {
            let _ = writeln!(out, "successor {pid} {}", fate.encode());
        }
        out
    }

    pub(crate) fn parse(text: &str) -> Result<Status, Refusal> {
        let mut status = Status::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let num = |v: &str| v.parse::<u64>().ok();
            match key {
                "pid" => status.pid = value.parse().map_err(|_| Refusal::Malformed("bad pid"))?,
                "role" => status.role = value.to_owned(),
                "since" => status.since_ms = num(value),
                "until" => status.until_ms = num(value),
                "launcher" => status.launcher = value.parse().ok(),
                "handover_timeout" => status.handover_timeout_ms = num(value).unwrap_or(0),
                "probation" => status.probation_ms = num(value).unwrap_or(0),
                "listener" => {
                    let (len, rest) = value.split_once(' ').unwrap_or((value, ""));
                    let len: usize = len
                        .parse()
                        .map_err(|_| Refusal::Malformed("bad listener"))?;
                    if !rest.is_char_boundary(len.min(rest.len())) || len > rest.len() {
                        return Err(Refusal::Malformed("bad listener"));
                    }
                    let (name, address) = rest.split_at(len);
                    status.listeners.push((name.to_owned(), address.to_owned()));
                }
                "successor" => {
                    let (pid, fate) = value.split_once(' ').unwrap_or((value, ""));
                    match (pid.parse::<i32>(), Fate::parse(fate)) {
                        (Ok(pid), Some(fate)) if pid > 1 => status.successors.push((pid, fate)),
                        _ => return Err(Refusal::Malformed("bad successor")),
                    }
                }
                _ => {}
            }
        }
        if status.pid <= 1 || status.role.is_empty() {
            return Err(Refusal::Malformed("a status without pid or role"));
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Listener("web api".into()),
            Request::State("ticket-keys".into()),
            Request::Status,
            Request::Restart,
            Request::Spawned(42),
            Request::Exited(42, Ended::Status(3)),
            Request::Exited(42, Ended::Signal(9)),
            Request::Probation(5000),
        ] {
            let line = request.encode();
            assert!(line.len() <= MAX_REQUEST);
            assert_eq!(Request::parse(line.trim_end_matches('\n')), Ok(request));
        }
    }

    #[test]
    fn other_versions_are_named_and_refused() {
        assert_eq!(
            Request::parse("seamless/4 listener web"),
            Err(Refusal::Version("seamless/4".into()))
        );
        assert!(
            matches!(Request::parse("web"), Err(Refusal::Version(v)) if v.contains("seamless/1"))
        );
        assert!(matches!(
            Head::parse(b"seamless/9 ok\n"),
            Err(Refusal::Version(v)) if v == "seamless/9"
        ));
        // What a version-1 client makes of our answer: not `+` nor `-`.
        let refused = Head::Refused("protocol".into()).encode();
        assert!(!refused.starts_with(['+', '-']));
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            "seamless/3",
            "seamless/3 listener",
            "seamless/3 status now",
            "seamless/3 spawned 1",
            "seamless/3 spawned -5",
            "seamless/3 exited 42 status",
            "seamless/3 exited 42 killed 9",
            "seamless/3 fly",
            "seamless/3 probation",
            "seamless/3 probation 0",
            "seamless/3 probation -5",
            "seamless/3 probation 5s",
        ] {
            assert!(
                matches!(Request::parse(bad), Err(Refusal::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn heads_round_trip_with_their_body() {
        for head in [
            Head::Ok(String::new()),
            Head::Ok("tcp 127.0.0.1:80".into()),
            Head::None,
            Head::Refused("no".into()),
        ] {
            let mut answer = head.encode().into_bytes();
            answer.extend(b"body\nmore");
            let (parsed, body) = Head::parse(&answer).unwrap();
            assert_eq!(parsed, head);
            assert_eq!(body, b"body\nmore");
        }
        assert!(Head::parse(b"seamless/3 ok").is_err(), "no newline");
    }

    #[test]
    fn status_round_trips() {
        let status = Status {
            pid: 1234,
            role: "detached".into(),
            since_ms: Some(1_700_000_000_000),
            until_ms: Some(1_700_000_010_000),
            launcher: Some(1233),
            handover_timeout_ms: 10_000,
            probation_ms: 5_000,
            listeners: vec![("web api".into(), "tcp 127.0.0.1:8080".into())],
            successors: vec![
                (
                    1240,
                    Fate::Ended {
                        how: Ended::Status(3),
                        into_probation_ms: None,
                    },
                ),
                (
                    1241,
                    Fate::Ended {
                        how: Ended::Signal(9),
                        into_probation_ms: Some(1200),
                    },
                ),
                (
                    1242,
                    Fate::Gone {
                        into_probation_ms: None,
                    },
                ),
                (
                    1243,
                    Fate::Gone {
                        into_probation_ms: Some(5),
                    },
                ),
                (
                    1244,
                    Fate::Probation {
                        until_ms: 1_700_000_015_000,
                    },
                ),
                (1250, Fate::Running),
            ],
        };
        assert_eq!(Status::parse(&status.encode()), Ok(status));
        assert!(Status::parse("role serving\n").is_err());
        assert!(Status::parse("pid 5\nrole x\nlistener 99 a\n").is_err());
        assert!(Status::parse("pid 5\nrole x\nfuture key\n").is_ok());
        for bad in [
            "successor 7 exited status 3",
            "successor 7 ended status",
            "successor 7 ended status 3 probation",
            "successor 7 gone after 5",
            "successor 7 probation +5",
            "successor 1 running",
            "successor x running",
        ] {
            let text = format!("pid 5\nrole x\n{bad}\n");
            assert!(Status::parse(&text).is_err(), "{bad}");
        }
    }
}
