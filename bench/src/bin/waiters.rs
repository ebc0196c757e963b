//! What waiting on `seamless::shutdown()` costs a long-lived process: the
//! memory and time of N tokio tasks that each wait on the shutdown next to
//! a little work and then finish, as a per-connection task does.
//!
//! ```text
//! cargo run --release -p seamless-bench --bin waiters -- 1000000
//! ```
//!
//! It prints VmRSS and RssAnon (from `/proc/self/status`) before the first
//! task and after every tenth of them, and the time each tenth took. A
//! waiter that leaves nothing behind shows flat memory and flat time.

use std::time::Instant;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn main() {
    let tasks: usize = std::env::args()
        .nth(1)
        .map(|n| n.replace('_', "").parse().expect("usage: waiters [TASKS]"))
        .unwrap_or(1_000_000);
    let step = (tasks / 10).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (rss0, anon0) = (status_kb("VmRSS:"), status_kb("RssAnon:"));
    println!("{tasks} tasks, each waiting on seamless::shutdown() beside a yield, then finishing");
    println!(
        "{:>10}  {:>10}  {:>10}  {:>12}",
        "tasks", "VmRSS kB", "RssAnon kB", "ms this step"
    );
    println!("{:>10}  {rss0:>10}  {anon0:>10}  {:>12}", 0, "-");
    let mut done = 0;
    while done < tasks {
        let n = step.min(tasks - done);
        let began = Instant::now();
        runtime.block_on(async {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    tokio::spawn(async {
                        tokio::select! {
                            () = seamless::shutdown() => {}
                            () = tokio::task::yield_now() => {}
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("task");
            }
        });
        done += n;
        println!(
            "{done:>10}  {:>10}  {:>10}  {:>12.1}",
            status_kb("VmRSS:"),
            status_kb("RssAnon:"),
            began.elapsed().as_secs_f64() * 1e3
        );
    }
    let (rss, anon) = (status_kb("VmRSS:"), status_kb("RssAnon:"));
    println!(
        "growth after {tasks} finished waiters: VmRSS {:+} kB, RssAnon {:+} kB ({:.1} bytes per task)",
        rss as i64 - rss0 as i64,
        anon as i64 - anon0 as i64,
        (anon as f64 - anon0 as f64) * 1024.0 / tasks as f64
    );
}
