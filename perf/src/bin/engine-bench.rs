//! The engine benchmark: throughput and enqueue→answer latency of the hotpath engine, driven by
//! the replay source from inside the workers (the same path the fanotify source takes), for
//! cache hits, misses with a fixed evaluation cost, a 90/10 mix and duplicate bursts, on 1 and 2
//! workers. Also counts heap allocations per event once warm, and runs a harness-only baseline
//! in the same process so the ratio, not the noisy absolute figure, is what compares.
//!
//! `cargo run --release -p santa-perf --bin engine-bench [-- --quick]`; writes
//! `perf/results/engine.md`.

use hdrhistogram::Histogram;
use santa_hotpath::replay::{ReplaySource, Synthetic, Trace, TraceEvent};
use santa_hotpath::{
    Answer, AnsweredBy, Cacheability, Clock, Engine, EngineConfig, Evaluation, Evaluator, FileKey,
    MonotonicClock, Responder,
};
use santa_perf::{CountingAlloc, allocations, machine_summary, write_result};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// What the benchmark carries per event: when it was submitted, and whether it is measured.
#[derive(Debug)]
struct Payload {
    submitted_ns: u64,
    measured: bool,
}

/// Spins for a fixed time: a stand-in for hashing and rule evaluation whose cost is known.
struct FixedCost {
    cost_ns: u64,
    clock: MonotonicClock,
    evaluations: AtomicU64,
}

impl Evaluator<Payload> for FixedCost {
    type Decision = u32;
    type Local = ();
    fn local(&self, _worker: usize) {}
    fn evaluate(&self, _local: &mut (), _payload: &Payload) -> Evaluation<u32> {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        let start = self.clock.now_ns();
        while self.clock.now_ns() - start < self.cost_ns {
            std::hint::spin_loop();
        }
        Evaluation {
            decision: 1,
            cacheability: Cacheability::UntilChanged,
        }
    }
}

/// Records enqueue→answer latency per answering thread, and allocation marks.
struct Recorder {
    clock: MonotonicClock,
    histograms: Vec<Mutex<Histogram<u64>>>,
    answered: AtomicUsize,
    warm: usize,
    total: usize,
    warm_done_ns: AtomicU64,
    end_ns: AtomicU64,
    allocs_at_warm: AtomicU64,
    allocs_at_end: AtomicU64,
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 100 s at 3 significant digits; allocated once, before measuring.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static histogram bounds are valid")
}

impl Recorder {
    fn new(workers: usize, warm: usize, total: usize) -> Self {
        Self {
            clock: MonotonicClock::new(),
            histograms: (0..workers + 2).map(|_| Mutex::new(histogram())).collect(),
            answered: AtomicUsize::new(0),
            warm,
            total,
            warm_done_ns: AtomicU64::new(0),
            end_ns: AtomicU64::new(0),
            allocs_at_warm: AtomicU64::new(0),
            allocs_at_end: AtomicU64::new(0),
        }
    }

    fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for h in &self.histograms {
            all.add(&*h.lock().expect("histogram lock"))
                .expect("same bounds");
        }
        all
    }
}

impl Responder<Payload, u32> for Recorder {
    fn respond(&self, by: AnsweredBy, payload: &Payload, _answer: Answer<'_, u32>) {
        let now = self.clock.now_ns();
        if payload.measured {
            let index = match by {
                AnsweredBy::Worker(w) => w,
                AnsweredBy::Deadline => self.histograms.len() - 2,
                AnsweredBy::Submitter => self.histograms.len() - 1,
            };
            let _ = self.histograms[index]
                .lock()
                .expect("histogram lock")
                .record(now.saturating_sub(payload.submitted_ns).max(1));
        }
        let n = self.answered.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.warm {
            self.warm_done_ns.store(now, Ordering::Release);
            self.allocs_at_warm.store(allocations(), Ordering::Release);
        }
        if n == self.total {
            self.end_ns.store(now, Ordering::Release);
            self.allocs_at_end.store(allocations(), Ordering::Release);
        }
    }
}

struct Scenario {
    name: &'static str,
    /// Events before measuring (fills the cache).
    warm: Trace,
    measured: Trace,
    eval_cost_ns: u64,
    batch: usize,
    cache_capacity: usize,
}

struct Row {
    name: String,
    workers: usize,
    events: usize,
    per_sec: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    evaluations: u64,
    allocs_per_event: f64,
}

fn run(s: &Scenario, workers: usize) -> Row {
    let warm_len = s.warm.len();
    let total = warm_len + s.measured.len();
    let mut events = Vec::with_capacity(total);
    events.extend_from_slice(s.warm.events());
    events.extend_from_slice(s.measured.events());
    let trace = Trace::default().extended(events);
    let recorder = Arc::new(Recorder::new(workers, warm_len.max(1), total));
    let position = Arc::new(AtomicUsize::new(0));
    let clock = MonotonicClock::new();
    let source = {
        let position = position.clone();
        ReplaySource::new(
            trace,
            s.batch,
            60_000_000_000,
            move |_: &TraceEvent, now| Payload {
                submitted_ns: now,
                measured: position.fetch_add(1, Ordering::Relaxed) >= warm_len,
            },
        )
    };
    let evaluator = FixedCost {
        cost_ns: s.eval_cost_ns,
        clock,
        evaluations: AtomicU64::new(0),
    };
    let config = EngineConfig {
        workers,
        pin_workers: true,
        cache_capacity: s.cache_capacity,
        idle_spins: 0,
        ..EngineConfig::default()
    };
    let started = Instant::now();
    let engine =
        Engine::start(config, evaluator, recorder.clone(), clock, source).expect("engine starts");
    while recorder.answered.load(Ordering::Acquire) < total {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{}: did not finish",
            s.name
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let counters = engine.counters();
    engine.shutdown();
    let measured = s.measured.len();
    let start_ns = recorder.warm_done_ns.load(Ordering::Acquire);
    let elapsed_ns = recorder
        .end_ns
        .load(Ordering::Acquire)
        .saturating_sub(start_ns)
        .max(1);
    let h = recorder.merged();
    let allocs = recorder.allocs_at_end.load(Ordering::Acquire)
        - recorder.allocs_at_warm.load(Ordering::Acquire);
    assert_eq!(
        counters.defaults(),
        0,
        "{}: answers by default in a benchmark: {counters:?}",
        s.name
    );
    Row {
        name: s.name.to_string(),
        workers,
        events: measured,
        per_sec: measured as f64 / (elapsed_ns as f64 / 1e9),
        p50: h.value_at_quantile(0.50),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        evaluations: counters.evaluations,
        allocs_per_event: allocs as f64 / measured as f64,
    }
}

/// The floor: the same payload construction, clock reads and histogram recording, on one
/// thread, with no engine in between.
fn baseline(events: usize) -> Row {
    let recorder = Recorder::new(1, 1, events + 1);
    let clock = MonotonicClock::new();
    let started = clock.now_ns();
    for _ in 0..events {
        let payload = Payload {
            submitted_ns: clock.now_ns(),
            measured: true,
        };
        recorder.respond(
            AnsweredBy::Worker(0),
            &payload,
            Answer::Default(santa_hotpath::DefaultReason::Deadline),
        );
    }
    let elapsed = clock.now_ns() - started;
    let h = recorder.merged();
    Row {
        name: "baseline: harness only".into(),
        workers: 1,
        events,
        per_sec: events as f64 / (elapsed as f64 / 1e9),
        p50: h.value_at_quantile(0.5),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        evaluations: 0,
        allocs_per_event: 0.0,
    }
}

fn us(ns: u64) -> String {
    format!("{:.2}", ns as f64 / 1000.0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let hot: u64 = 10_000;
    let hits_n = 4_000_000 / scale;
    let miss_n = 200_000 / scale;
    let mix_n = 1_000_000 / scale;
    let bursts = 2_000 / scale;
    // Warm-ups fill the cache (3 × its capacity in new files: shards fill unevenly) so that
    // "once warm" means what it says: every insert then reuses an evicted node.
    let fill = |seed| {
        Trace::synthetic(&Synthetic {
            events: 60_000,
            hot_files: 0,
            new_percent: 100,
            seed,
        })
    };
    let warm_hot = fill(10).extended(Trace::warmup(hot).events().iter().copied());
    let burst_trace = {
        let mut events = Vec::with_capacity(bursts * 100);
        for b in 0..bursts as u64 {
            events.extend_from_slice(Trace::burst(FileKey { dev: 2, ino: b }, 100).events());
        }
        Trace::default().extended(events)
    };
    let scenarios = [
        Scenario {
            name: "all hits",
            warm: warm_hot.clone(),
            measured: Trace::synthetic(&Synthetic {
                events: hits_n,
                hot_files: hot,
                new_percent: 0,
                seed: 1,
            }),
            eval_cost_ns: 0,
            batch: 1,
            cache_capacity: 20_000,
        },
        Scenario {
            name: "all misses, 5 µs evaluation",
            // Warm with other files so the LRU is full and every insert evicts.
            warm: fill(2),
            measured: Trace::synthetic(&Synthetic {
                events: miss_n,
                hot_files: 0,
                new_percent: 100,
                seed: 3,
            }),
            eval_cost_ns: 5_000,
            batch: 1,
            cache_capacity: 20_000,
        },
        Scenario {
            name: "90% hits / 10% misses (5 µs)",
            warm: warm_hot.clone(),
            measured: Trace::synthetic(&Synthetic {
                events: mix_n,
                hot_files: hot,
                new_percent: 10,
                seed: 4,
            }),
            eval_cost_ns: 5_000,
            batch: 1,
            cache_capacity: 20_000,
        },
        Scenario {
            name: "duplicate bursts: 100 × one new file (50 µs)",
            warm: fill(5),
            measured: burst_trace,
            eval_cost_ns: 50_000,
            batch: 100,
            cache_capacity: 20_000,
        },
    ];
    let base = baseline(hits_n);
    let mut rows = Vec::new();
    for s in &scenarios {
        for workers in [1, 2] {
            let row = run(s, workers);
            eprintln!(
                "{:<46} {} worker(s): {:>12.0}/s p99 {} µs",
                row.name,
                workers,
                row.per_sec,
                us(row.p99)
            );
            rows.push(row);
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "# Engine benchmark\n");
    let _ = writeln!(out, "{}\n", machine_summary());
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p santa-perf --bin engine-bench{}` (`make bench`). Latency is enqueue → \
         answer, measured by the responder; events are generated inside the workers by the replay source (batch 1, \
         bursts batch 100), as the fanotify source does. Throughput is measured events / time from the end of the \
         warm-up to the last answer. `vs baseline` is the engine's time per event (1/throughput × workers) over the \
         harness-only loop's, in the same run.\n",
        if quick { " -- --quick" } else { "" }
    );
    let _ = writeln!(
        out,
        "| scenario | workers | events | answers/s | per worker/s | p50 µs | p99 µs | p99.9 µs | max µs | evaluations | allocs/event | vs baseline |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let base_ns = 1e9 / base.per_sec;
    for r in std::iter::once(&base).chain(rows.iter()) {
        let ns_per_event = 1e9 / r.per_sec * r.workers as f64;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {:.4} | {:.1}× |",
            r.name,
            r.workers,
            r.events,
            r.per_sec,
            r.per_sec / r.workers as f64,
            us(r.p50),
            us(r.p99),
            us(r.p999),
            us(r.max),
            r.evaluations,
            r.allocs_per_event,
            ns_per_event / base_ns
        );
    }
    let hits1 = &rows[0];
    let _ = writeln!(
        out,
        "\nTargets: cache hits ≥ 2,000,000 answers/s per worker — {} ({:.0}/s on 1 worker); p99 ≤ 2 µs — {} ({} µs); \
         zero allocations per event once warm — {}.",
        if hits1.per_sec >= 2e6 {
            "met"
        } else {
            "MISSED"
        },
        hits1.per_sec,
        if hits1.p99 <= 2_000 { "met" } else { "MISSED" },
        us(hits1.p99),
        if rows.iter().all(|r| r.allocs_per_event == 0.0) {
            "met"
        } else {
            "MISSED (see allocs/event)"
        },
    );
    let _ = writeln!(
        out,
        "Duplicate bursts: {} bursts of 100 events each → evaluations counted above (one per burst expected, plus the warm-up's).",
        bursts
    );
    print!("{out}");
    match write_result("engine.md", &out) {
        Ok(path) => eprintln!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write the results file: {e}"),
    }
}
