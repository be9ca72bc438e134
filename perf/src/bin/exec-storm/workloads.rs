//! The workloads: watched and control execs alternated, the concurrent storm, and santad's
//! memory with a full cache.

use crate::harness::{Harness, Pair, cstr};
use crate::listener::Config;
use crate::process::{rss_kb, spawn_wait};
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A kind of exec measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Workload {
    Repeated,
    RepeatedUser,
    FirstExec1M,
    FirstExec50M,
    Storm,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Repeated => "repeated exec of one root-owned binary (kernel allow cache)",
            Workload::RepeatedUser => {
                "repeated exec of one binary owned by nobody (65534:65534): no kernel cache"
            }
            Workload::FirstExec1M => "first exec, distinct 1 MB binaries",
            Workload::FirstExec50M => "first exec, 50 MiB binary",
            Workload::Storm => "mixed storm, concurrency 8",
        }
    }
}

/// One workload's measurement under one listener in one round.
pub(crate) struct Run {
    /// Per-exec (watched − control) differences, ns (storm: latencies).
    pub(crate) values: Vec<i64>,
    /// The watched execs' latencies, ns (storm: the same latencies).
    pub(crate) latencies: Vec<u64>,
    pub(crate) refused: usize,
}

/// Alternates watched and control execs of `pairs`: per-exec (watched − control) and the
/// watched execs' latencies, in ns.
pub(crate) fn alternate(pairs: &[&Pair]) -> Result<Run, String> {
    let mut diffs = Vec::with_capacity(pairs.len());
    let mut latencies = Vec::with_capacity(pairs.len());
    for (i, p) in pairs.iter().enumerate() {
        // Rotate which goes first, so "second in a pair" never favours one side.
        let (w, c) = if i % 2 == 0 {
            let w = spawn_wait(&p.watched);
            (w, spawn_wait(&p.control))
        } else {
            let c = spawn_wait(&p.control);
            (spawn_wait(&p.watched), c)
        };
        let w = w.map_err(|e| format!("exec of {:?} refused: errno {e}", p.watched))?;
        let c = c.map_err(|e| format!("control exec refused: errno {e}"))?;
        diffs.push(w as i64 - c as i64);
        latencies.push(w);
    }
    Ok(Run {
        values: diffs,
        latencies,
        refused: 0,
    })
}

/// The storm: `execs` execs at concurrency 8 of a mix (90 % from a hot set, 10 % distinct
/// 1 MB binaries); every exec's latency in ns, and how many were refused.
pub(crate) fn storm(h: &Harness, execs: usize, round: usize) -> (Vec<u64>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let hot = Arc::new(h.storm_hot.clone());
    let distinct = Arc::new(h.distinct.clone());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (next, hot, distinct) = (next.clone(), hot.clone(), distinct.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut refused = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= execs {
                        return (lat, refused);
                    }
                    let p = if i % 10 == 9 {
                        &distinct[(i / 10 + round * 131) % distinct.len()]
                    } else {
                        &hot[i % hot.len()]
                    };
                    match spawn_wait(&p.watched) {
                        Ok(ns) => lat.push(ns),
                        Err(_) => refused += 1,
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(execs);
    let mut refused = 0;
    for t in threads {
        let (l, r) = t.join().unwrap_or_default();
        all.extend(l);
        refused += r;
    }
    (all, refused)
}

/// santad's RSS idle and with `entries` cache entries: that many distinct tiny scripts on the
/// watched image (each a new file for the cache), executed at concurrency 8.
pub(crate) fn measure_rss(h: &Harness, entries: usize) -> Result<(u64, u64, usize), String> {
    let dir = h.watched.join("rss");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let interpreter = h.repeated.watched_path.display().to_string();
    let scripts: Vec<CString> = (0..entries)
        .map(|i| {
            let p = dir.join(format!("s{i:05}"));
            std::fs::write(&p, format!("#!{interpreter}\n# {i}\n")).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            Ok(cstr(&p))
        })
        .collect::<Result<_, String>>()?;
    let mut listener = h
        .start(Config::SantadMonitor)?
        .ok_or("santad did not start")?;
    let pid = listener.pid();
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kb(pid);
    let refused =
        santa_testkit::count_in_parallel(8, scripts.len(), |i| spawn_wait(&scripts[i]).is_err());
    std::thread::sleep(Duration::from_millis(500));
    let full = rss_kb(pid);
    listener.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((idle, full, refused))
}
