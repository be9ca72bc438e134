//! Zero heap allocations per event once warm, shown with a counting global allocator.
//!
//! Its own test binary, so no other test's threads allocate while it counts.

use santa_hotpath::replay::{ReplaySource, Synthetic, Trace, TraceEvent};
use santa_hotpath::{
    Answer, AnsweredBy, Cacheability, Engine, EngineConfig, Evaluation, Evaluator, MonotonicClock,
    Responder,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The workspace's counting allocator (also the signing tests', the fuzz targets' and the
/// benchmarks'); only its allocation count is used here.
#[path = "../../signing/tests/common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, allocations};

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM: usize = 200_000;
const MEASURED: usize = 200_000;

/// Records the allocation count when the warm-up is answered and when everything is.
struct Marks {
    answered: AtomicUsize,
    at_warm: AtomicU64,
    at_end: AtomicU64,
}

impl Responder<u64, u32> for Marks {
    fn respond(&self, _by: AnsweredBy, _payload: &u64, _answer: Answer<'_, u32>) {
        let n = self.answered.fetch_add(1, Ordering::SeqCst) + 1;
        if n == WARM {
            self.at_warm.store(allocations(), Ordering::SeqCst);
        } else if n == WARM + MEASURED {
            self.at_end.store(allocations(), Ordering::SeqCst);
        }
    }
}

struct Cheap;
impl Evaluator<u64> for Cheap {
    type Decision = u32;
    type Local = ();
    fn local(&self, _worker: usize) {}
    fn evaluate(&self, _local: &mut (), payload: &u64) -> Evaluation<u32> {
        let cacheability = if payload.is_multiple_of(3) {
            Cacheability::DenyTtl
        } else {
            Cacheability::UntilChanged
        };
        Evaluation {
            decision: (*payload % 7) as u32,
            cacheability,
        }
    }
}

#[test]
fn no_allocation_per_event_once_warm() {
    // 90 % of execs from a hot set twice the cache's size (hits and LRU evictions), 10 % new
    // files (misses that push into a full LRU): every path of a warm cache.
    let mut trace = Trace::synthetic(&Synthetic {
        events: WARM + MEASURED,
        hot_files: 4_000,
        new_percent: 10,
        seed: 9,
    });
    assert_eq!(trace.len(), WARM + MEASURED);
    let source = ReplaySource::new(
        std::mem::take(&mut trace),
        1,
        60_000_000_000,
        |e: &TraceEvent, _| e.key.ino,
    );
    let marks = Arc::new(Marks {
        answered: AtomicUsize::new(0),
        at_warm: AtomicU64::new(0),
        at_end: AtomicU64::new(0),
    });
    let cfg = EngineConfig {
        workers: 2,
        pin_workers: false,
        cache_capacity: 2_000,
        cache_shards: 16,
        ..EngineConfig::default()
    };
    let engine = Engine::start(cfg, Cheap, marks.clone(), MonotonicClock::new(), source).unwrap();
    let start = Instant::now();
    while marks.answered.load(Ordering::SeqCst) < WARM + MEASURED {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "replay did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let counters = engine.counters();
    engine.shutdown();
    let during = marks.at_end.load(Ordering::SeqCst) - marks.at_warm.load(Ordering::SeqCst);
    println!("{MEASURED} events once warm: {during} allocations; {counters:?}");
    assert!(
        counters.hits > 0 && counters.misses > (MEASURED / 20) as u64,
        "{counters:?}"
    );
    // The counter works: warming up (creating LRU nodes, threads) did allocate.
    assert!(
        marks.at_warm.load(Ordering::SeqCst) > 1_000,
        "the counting allocator saw nothing"
    );
    assert_eq!(during, 0, "heap allocations on the warm path");
}
