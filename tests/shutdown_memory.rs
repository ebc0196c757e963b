//! Waiting on `seamless::shutdown()` keeps nothing of a finished task.
//!
//! A tokio waker keeps its task's memory alive: a shutdown that kept the
//! waker of every task that ever waited would keep every finished
//! connection task until the next restart. Here 100,000 tasks wait on it
//! next to a little work and finish, in rounds of 10,000; the memory after
//! the first round (the high-water mark of one round's live tasks) must
//! not grow with the rounds that follow.

use std::time::Duration;

/// RssAnon of this process, in kB.
fn rss_anon_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("RssAnon:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .expect("RssAnon in /proc/self/status")
}

const ROUNDS: usize = 10;
const PER_ROUND: usize = 10_000;

#[test]
fn a_hundred_thousand_finished_waiters_leave_the_memory_flat() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let round = || {
        runtime.block_on(async {
            let tasks: Vec<_> = (0..PER_ROUND)
                .map(|_| {
                    tokio::spawn(async {
                        tokio::select! {
                            () = seamless::shutdown() => unreachable!("no shutdown here"),
                            () = tokio::time::sleep(Duration::from_millis(1)) => {}
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        })
    };
    round();
    let first = rss_anon_kb();
    for _ in 1..ROUNDS {
        round();
    }
    let last = rss_anon_kb();
    let growth_kb = last.saturating_sub(first);
    let waited = (ROUNDS - 1) * PER_ROUND;
    eprintln!(
        "RssAnon after round 1: {first} kB, after {ROUNDS}: {last} kB; {:.1} bytes per task",
        growth_kb as f64 * 1024.0 / waited as f64
    );
    // A kept waker costs a task's whole memory (some hundreds of bytes
    // to kilobytes): 90,000 of them would be tens of megabytes.
    assert!(
        growth_kb * 1024 < (waited as u64) * 32,
        "memory grew by {growth_kb} kB over {waited} finished waiters"
    );
}
