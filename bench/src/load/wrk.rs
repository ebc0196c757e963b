//! wrk, the HTTP/1.1 keep-alive load (over HTTPS to a TLS server): one
//! thread, a few connections, run
//! once per restart cycle (or threads and connections held through a whole
//! run, stopped with SIGINT, after which wrk still prints its summary).
//! Its summary gives the requests and every socket error (`connect`,
//! `read`, `write`, `timeout`) and non-2xx answer; a Lua script counts its
//! answers per 10 ms of wall-clock time (LuaJIT's FFI reads
//! `CLOCK_REALTIME`), which places its throughput in time and tells how
//! many it has had so far.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use seamless_loadkit::wrk::Summary;

use super::{Clock, Slice};

/// Counts answers per 10 ms of wall-clock time into the file named by the
/// first script argument and the thread's number (each wrk thread has a
/// Lua state of its own), as lines `<10 ms since the epoch> <count>`. The
/// last 10 ms of a run are not written.
const SCRIPT: &str = r#"
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *ts);
]]
local now = ffi.new("bench_timespec")
local out, slot, count = nil, -1, 0
local threads = 0

function setup(thread)
  thread:set("thread_number", threads)
  threads = threads + 1
end

function init(args)
  out = io.open(args[1] .. "." .. thread_number, "w")
end

function response(status, headers, body)
  ffi.C.clock_gettime(0, now)
  local s = tonumber(now.tv_sec) * 100 + math.floor(tonumber(now.tv_nsec) / 10000000)
  if s ~= slot then
    if count > 0 then
      out:write(string.format("%d %d\n", slot, count))
      out:flush()
    end
    slot, count = s, 0
  end
  count = count + 1
end
"#;

/// Writes the counting script into `dir`.
pub(crate) fn script(dir: &Path) -> PathBuf {
    let path = dir.join("count.lua");
    std::fs::write(&path, SCRIPT).expect("write wrk script");
    path
}

pub(crate) struct Running {
    child: Child,
    started_ms: f64,
    seconds: u64,
    threads: usize,
    /// The counting script's files, without the thread's number.
    counts: Option<PathBuf>,
}

/// Starts `wrk -t1 -cN -dSs`; with `script`, counts answers in time into
/// `dir`.
pub(crate) fn start(
    url: &str,
    connections: usize,
    seconds: u64,
    script: Option<&Path>,
    dir: &Path,
    clock: &Clock,
) -> Running {
    let shape = Shape {
        threads: 1,
        timeout_s: None,
    };
    start_shaped(shape, url, connections, seconds, script, dir, clock)
}

/// wrk's threads, and how long it waits for an answer before it counts a
/// timeout (its default, 2 s, when None).
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) threads: usize,
    pub(crate) timeout_s: Option<u64>,
}

/// Starts `wrk -tT -cN -dSs [--timeout Ts]`.
pub(crate) fn start_shaped(
    Shape { threads, timeout_s }: Shape,
    url: &str,
    connections: usize,
    seconds: u64,
    script: Option<&Path>,
    dir: &Path,
    clock: &Clock,
) -> Running {
    let mut cmd = Command::new("wrk");
    cmd.args([
        &format!("-t{threads}"),
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
    ]);
    if let Some(t) = timeout_s {
        cmd.arg(format!("--timeout={t}s"));
    }
    let counts = script.map(|s| {
        let counts = dir.join("wrk-counts");
        for t in 0..threads {
            let _ = std::fs::remove_file(count_file(&counts, t));
        }
        cmd.arg("-s").arg(s);
        counts
    });
    cmd.arg(url);
    if let Some(c) = &counts {
        cmd.arg("--").arg(c);
    }
    let started_ms = clock.now_ms();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk");
    Running {
        child,
        started_ms,
        seconds,
        threads,
        counts,
    }
}

fn count_file(counts: &Path, thread: usize) -> PathBuf {
    let mut name = counts.as_os_str().to_owned();
    name.push(format!(".{thread}"));
    name.into()
}

/// The answers in the counting script's lines `<slot> <count>`.
fn count_answers(lines: &str) -> u64 {
    lines
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

impl Running {
    /// Answers so far, from the counting script's files (all but the
    /// latest 10 ms); 0 without the script.
    pub(crate) fn answered_so_far(&self) -> u64 {
        let Some(counts) = &self.counts else { return 0 };
        (0..self.threads)
            .map(|t| {
                count_answers(&std::fs::read_to_string(count_file(counts, t)).unwrap_or_default())
            })
            .sum()
    }

    /// Stops wrk before its duration is up: SIGINT, on which it stops its
    /// threads and prints its summary as usual.
    pub(crate) fn stop(mut self, clock: &Clock) -> Slice {
        // SAFETY: kill(2) with the pid of our own child, not yet waited for.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        // The load ran this long, in whole seconds as a slice counts.
        self.seconds = ((clock.now_ms() - self.started_ms) / 1000.0).floor() as u64;
        self.finish(clock)
    }

    pub(crate) fn finish(self, clock: &Clock) -> Slice {
        let out = self.child.wait_with_output().expect("wrk output");
        let text = String::from_utf8_lossy(&out.stdout);
        let (answered, failures) = match Summary::parse(&text) {
            Some(s) => (s.answered(), s.failures().to_vec()),
            None => {
                eprintln!(
                    "demo: cannot read wrk's summary:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                (0, vec![("wrk gave no summary", 1)])
            }
        };
        let mut per_10ms = Vec::new();
        if let Some(counts) = &self.counts {
            for t in 0..self.threads {
                let path = count_file(counts, t);
                for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
                    let mut f = line.split_whitespace().map(|x| x.parse::<u64>().ok());
                    if let (Some(Some(slot)), Some(Some(n))) = (f.next(), f.next()) {
                        per_10ms.push((clock.at_epoch_us(slot * 10_000), n as u32));
                    }
                }
                let _ = std::fs::remove_file(path);
            }
            // Two threads' lines interleave: keep the time order promised.
            per_10ms.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Slice {
            source: "wrk",
            latency_source: "-",
            started_ms: self.started_ms,
            seconds: self.seconds,
            answered,
            failures,
            per_10ms,
            latencies: Vec::new(),
            unfinished: 0,
            resent: 0,
            streams: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_so_far_add_the_counts() {
        assert_eq!(super::count_answers("178000001 12\n178000002 30\n"), 42);
        assert_eq!(super::count_answers("178000001 12\n1780000"), 12);
        assert_eq!(super::count_answers(""), 0);
    }
}
