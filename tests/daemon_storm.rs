//! santad under load and under failure, as root, each test on its own private tmpfs.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{field, run};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A storm thread: its (ran, refused) counts and when its last exec returned.
type Stormer = std::thread::JoinHandle<(usize, usize, Instant)>;

/// Execs `bins` round-robin from `threads` threads until `stop`; returns (ran, refused) counts
/// and, per thread, when its last exec returned.
fn storm(bins: Arc<Vec<PathBuf>>, threads: usize, stop: Arc<AtomicBool>) -> Vec<Stormer> {
    (0..threads)
        .map(|t| {
            let (bins, stop) = (bins.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut ran, mut refused) = (0, 0);
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    match run(&bins[i % bins.len()]) {
                        Ok(_) => ran += 1,
                        Err(_) => refused += 1,
                    }
                    i += threads;
                }
                (ran, refused, Instant::now())
            })
        })
        .collect()
}

/// `count` distinct copies of `true` on the watched mount, the `i`th named `name(i)`.
fn binaries(s: &common::Santad, count: usize, name: impl Fn(usize) -> String) -> Arc<Vec<PathBuf>> {
    Arc::new(
        (0..count)
            .map(|i| s.binary(&name(i), &i.to_string()))
            .collect(),
    )
}

/// The storm both failure tests run: 64 binaries (named `<prefix><i>`) exec'd from 8 threads
/// for half a second, still going; stop it with the flag, then join the threads.
fn storm_under_way(s: &common::Santad, prefix: &str) -> (Arc<AtomicBool>, Vec<Stormer>) {
    let bins = binaries(s, 64, |i| format!("{prefix}{i}"));
    let stop = Arc::new(AtomicBool::new(false));
    let handles = storm(bins, 8, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    (stop, handles)
}

#[test]
fn a_stalled_evaluation_is_answered_with_the_default_within_the_deadline() {
    const DEADLINE_MS: u64 = 50;
    let s = common::start_with_deadline(DEADLINE_MS);
    // 400 MiB: hashing it takes ~250 ms at 1.8 GB/s, five times the deadline.
    let big = s.binary("big", "padding");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&big).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..400 {
            f.write_all(&chunk).unwrap();
        }
    }
    let start = Instant::now();
    let result = run(&big);
    let held = start.elapsed();
    assert!(
        result.unwrap().success(),
        "Monitor's default answer is allow"
    );
    assert!(
        held < Duration::from_millis(DEADLINE_MS + 20),
        "held {held:?}, more than DeadlineMs + 20 ms"
    );
    assert!(
        held >= Duration::from_millis(DEADLINE_MS - 5),
        "answered in {held:?}: too early for a default"
    );
    let line = &s.wait_log(1, |l| field(l, "path") == Some(big.to_str().unwrap()))[0];
    assert_eq!(field(line, "decision"), Some("ALLOW"));
    assert_eq!(
        field(line, "explain"),
        Some("default answer: deadline"),
        "{line}"
    );
}

#[test]
fn kill_9_during_a_storm_leaves_no_exec_blocked() {
    let mut s = common::start("MONITOR", "");
    let (stop, handles) = storm_under_way(&s, "k");
    s.kill9();
    let killed = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in handles {
        let (ran, refused, last) = h.join().unwrap();
        total += ran;
        assert_eq!(
            refused, 0,
            "Monitor never refuses, and a dead santad fails open"
        );
        assert!(
            last.saturating_duration_since(killed) < Duration::from_secs(1),
            "an exec stayed blocked after the kill"
        );
    }
    assert!(total > 0, "the storm ran");
}

#[test]
fn twenty_thousand_execs_of_a_thousand_binaries_are_each_answered_and_logged_once() {
    const BINARIES: usize = 1_000;
    const EXECS: usize = 20_000;
    const THREADS: usize = 8;
    let s = common::start("MONITOR", "EventLogRingSize = 16384");
    let bins = binaries(&s, BINARIES, |i| format!("b{i:04}"));
    let fds_before = s.settled_fds();
    let ran = santa_testkit::count_in_parallel(THREADS, EXECS, |i| {
        run(&bins[i % BINARIES]).unwrap().success()
    });
    assert_eq!(ran, EXECS, "every exec answered and run");
    let prefix = s.mount.path().to_str().unwrap().to_string();
    let an_exec_of_ours = |l: &str| {
        field(l, "action") == Some("EXEC")
            && field(l, "path").is_some_and(|p| p.starts_with(&prefix))
    };
    let lines = s.wait_log(EXECS, an_exec_of_ours);
    // Let any straggler arrive, then count exactly.
    std::thread::sleep(Duration::from_millis(500));
    let lines_after: Vec<String> = s
        .log_lines()
        .into_iter()
        .filter(|l| an_exec_of_ours(l))
        .collect();
    assert_eq!(
        lines_after.len(),
        EXECS,
        "one EXEC line per exec (had {} at first count)",
        lines.len()
    );
    let mut per_binary = std::collections::HashMap::new();
    for l in &lines_after {
        *per_binary
            .entry(field(l, "path").unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(per_binary.len(), BINARIES);
    assert!(
        per_binary.values().all(|&n| n == EXECS / BINARIES),
        "each binary logged once per exec"
    );
    let fds_after = s.settled_fds();
    assert_eq!(fds_before, fds_after, "santad leaked fds");
}

#[test]
fn sigterm_during_a_storm_exits_0_with_nothing_held() {
    let mut s = common::start("MONITOR", "");
    let (stop, handles) = storm_under_way(&s, "t");
    let status = s.stop();
    let stopped = Instant::now();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let (ran, refused, last) = h.join().unwrap();
        assert!(ran > 0);
        assert_eq!(refused, 0);
        assert!(
            last.saturating_duration_since(stopped) < Duration::from_secs(1),
            "an exec stayed held"
        );
    }
}
