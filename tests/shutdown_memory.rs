//! Waiting on `seamless::shutdown()` keeps nothing of a finished task.
//!
//! A tokio waker keeps its task's memory alive: a shutdown that kept the
//! waker of every task that ever waited would keep every finished
//! connection task until the next restart. Here 400,000 tasks wait on it
//! next to a little work and finish, in rounds of 10,000.
//!
//! Kept wakers grow the memory by the same amount every round (a whole
//! task each, some hundreds of bytes: 4.5 MB a round when this was
//! broken). The allocator does not: what it keeps of freed memory is at
//! most about one round's live tasks, and it moves up and down between
//! rounds (after one round it may have given nearly everything back, after
//! the next it may hold a round's worth). So the test compares the lowest
//! of the last three rounds with the highest of the first three, over
//! enough rounds that a slow leak would outgrow that noise many times.

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

const ROUNDS: usize = 40;
/// Rounds at each end whose extreme is taken, so that one round's swing
/// of the allocator is not read as growth.
const ENDS: usize = 3;
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
    let after_each_round: Vec<u64> = (0..ROUNDS)
        .map(|_| {
            round();
            rss_anon_kb()
        })
        .collect();
    let early_kb = *after_each_round[..ENDS].iter().max().unwrap();
    let late_kb = *after_each_round[ROUNDS - ENDS..].iter().min().unwrap();
    let growth_kb = late_kb.saturating_sub(early_kb);
    let waited = (ROUNDS - ENDS) * PER_ROUND;
    eprintln!(
        "RssAnon after each round (kB): {after_each_round:?}\n\
         highest of the first {ENDS}: {early_kb} kB, lowest of the last {ENDS}: {late_kb} kB; \
         {:.1} bytes per finished waiter",
        growth_kb as f64 * 1024.0 / waited as f64
    );
    // A kept waker costs a task's whole memory (some hundreds of bytes):
    // 370,000 of them would be well over a hundred megabytes, and even one
    // task in ten keeping its waker would pass 32 bytes each. The
    // allocator's swing is bounded by about one round's live tasks
    // (under 5 MB here), far below the 11.6 MB this allows.
    assert!(
        growth_kb * 1024 < (waited as u64) * 32,
        "memory grew by {growth_kb} kB over {waited} finished waiters"
    );
}
