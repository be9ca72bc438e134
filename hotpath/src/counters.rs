//! Per-core counters, readable at any time as one summed snapshot.
//!
//! Each answering thread (worker, deadline thread, external submitter) bumps its own
//! cache-line-padded block with relaxed atomics, so counting never bounces a line between cores.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why the decision cache was flushed; flushes are counted per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlushReason {
    /// Rules were added, changed or removed in a way that needs a flush (Santa's flush rule).
    Rules,
    /// The client mode changed (Monitor ↔ Lockdown).
    Mode,
    /// Path scopes or other config that decisions depend on changed.
    Config,
    /// An operator asked for it (`santactl flushcache`).
    Operator,
}

impl FlushReason {
    /// Every reason, in counter order.
    pub const ALL: [FlushReason; 4] = [Self::Rules, Self::Mode, Self::Config, Self::Operator];

    /// A stable lower-case name for reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rules => "rules",
            Self::Mode => "mode",
            Self::Config => "config",
            Self::Operator => "operator",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One thread's counters.
#[derive(Debug, Default)]
pub(crate) struct CoreCounters {
    pub events: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub waits: AtomicU64,
    pub evaluations: AtomicU64,
    pub evaluator_panics: AtomicU64,
    pub deadline_defaults: AtomicU64,
    pub queue_full_defaults: AtomicU64,
    pub slots_full_defaults: AtomicU64,
    pub shutdown_defaults: AtomicU64,
    pub steals: AtomicU64,
    pub wakeups: AtomicU64,
    pub deferred: AtomicU64,
    pub restarts: AtomicU64,
    pub responder_panics: AtomicU64,
    pub worker_panics: AtomicU64,
    pub prefetch_queued: AtomicU64,
    pub prefetch_cached: AtomicU64,
    pub prefetch_coalesced: AtomicU64,
    pub prefetch_full: AtomicU64,
    pub prefetch_changed: AtomicU64,
    pub prefetch_evaluations: AtomicU64,
}

#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// All counters summed over threads at one moment (each counter read once; the sum is not an
/// atomic cut across counters, which is fine for monitoring).
///
/// With the `serde` feature it serializes as the metrics santad exports (`engine.<name>`): each
/// field under its own name, the cache's three under `cache_*`, the flushes left to
/// [`CountersSnapshot::flushes_for`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CountersSnapshot {
    /// Events taken off a queue by a worker.
    pub events: u64,
    /// Answered from the decision cache.
    #[cfg_attr(feature = "serde", serde(rename = "cache_hits"))]
    pub hits: u64,
    /// Not in the cache: this worker evaluated.
    #[cfg_attr(feature = "serde", serde(rename = "cache_misses"))]
    pub misses: u64,
    /// Another worker was already evaluating the same file: the event was parked on that
    /// evaluation (no worker waits) and took its decision.
    #[cfg_attr(feature = "serde", serde(rename = "cache_waits"))]
    pub waits: u64,
    /// Evaluations started (equals misses).
    pub evaluations: u64,
    /// Evaluations that panicked; answered with the default.
    pub evaluator_panics: u64,
    /// Answered with the default because the deadline came first.
    pub deadline_defaults: u64,
    /// Answered with the default because the target queue was full.
    pub queue_full_defaults: u64,
    /// Answered with the default because every in-flight slot was taken.
    pub slots_full_defaults: u64,
    /// Answered with the default because the engine was shutting down.
    pub shutdown_defaults: u64,
    /// Events a worker took from another worker's queue.
    pub steals: u64,
    /// Times an idle worker was woken for new work.
    pub wakeups: u64,
    /// Evaluations deferred because their principal (the file's owner) was at its bound of
    /// evaluations or bytes in flight.
    pub deferred: u64,
    /// Parked events evaluated again because the file changed while they waited.
    pub restarts: u64,
    /// Responder calls that panicked (the default was written to the kernel instead).
    pub responder_panics: u64,
    /// Panics caught on a worker outside the evaluator and responder (the worker kept going).
    pub worker_panics: u64,
    /// Written files queued for evaluation before their first exec.
    pub prefetch_queued: u64,
    /// Of the files offered for prefetch, those whose decision was already cached.
    pub prefetch_cached: u64,
    /// Of the files offered for prefetch, those an exec was already evaluating.
    pub prefetch_coalesced: u64,
    /// Prefetches dropped because the lane's queue or the slot table was full.
    pub prefetch_full: u64,
    /// Queued prefetches given up because the file changed again before its turn.
    pub prefetch_changed: u64,
    /// Prefetch evaluations run (on the prefetch thread, never a worker).
    pub prefetch_evaluations: u64,
    /// Cache flushes, by [`FlushReason`] (indexed as [`FlushReason::ALL`]).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub flushes: [u64; 4],
    /// Single-file invalidations (the file was written).
    pub invalidations: u64,
    /// How long ago the last answer with the default was given (`None`: never).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub last_default_age_ns: Option<u64>,
}

impl CountersSnapshot {
    /// Flushes for one reason.
    pub fn flushes_for(&self, reason: FlushReason) -> u64 {
        self.flushes[reason.index()]
    }

    /// Every answer given with the default instead of a decision.
    pub fn defaults(&self) -> u64 {
        self.deadline_defaults
            + self.queue_full_defaults
            + self.slots_full_defaults
            + self.shutdown_defaults
            + self.evaluator_panics
            + self.responder_panics
    }
}

/// Counters for `threads` answering threads.
#[derive(Debug)]
pub(crate) struct Counters {
    cores: Box<[CachePadded<CoreCounters>]>,
}

impl Counters {
    pub fn new(threads: usize) -> Self {
        Self {
            cores: (0..threads.max(1))
                .map(|_| CachePadded::new(CoreCounters::default()))
                .collect(),
        }
    }

    #[inline]
    pub fn core(&self, index: usize) -> &CoreCounters {
        &self.cores[index % self.cores.len()]
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let mut s = CountersSnapshot::default();
        for c in self.cores.iter() {
            s.events += c.events.load(Relaxed);
            s.hits += c.hits.load(Relaxed);
            s.misses += c.misses.load(Relaxed);
            s.waits += c.waits.load(Relaxed);
            s.evaluations += c.evaluations.load(Relaxed);
            s.evaluator_panics += c.evaluator_panics.load(Relaxed);
            s.deadline_defaults += c.deadline_defaults.load(Relaxed);
            s.queue_full_defaults += c.queue_full_defaults.load(Relaxed);
            s.slots_full_defaults += c.slots_full_defaults.load(Relaxed);
            s.shutdown_defaults += c.shutdown_defaults.load(Relaxed);
            s.steals += c.steals.load(Relaxed);
            s.wakeups += c.wakeups.load(Relaxed);
            s.deferred += c.deferred.load(Relaxed);
            s.restarts += c.restarts.load(Relaxed);
            s.responder_panics += c.responder_panics.load(Relaxed);
            s.worker_panics += c.worker_panics.load(Relaxed);
            s.prefetch_queued += c.prefetch_queued.load(Relaxed);
            s.prefetch_cached += c.prefetch_cached.load(Relaxed);
            s.prefetch_coalesced += c.prefetch_coalesced.load(Relaxed);
            s.prefetch_full += c.prefetch_full.load(Relaxed);
            s.prefetch_changed += c.prefetch_changed.load(Relaxed);
            s.prefetch_evaluations += c.prefetch_evaluations.load(Relaxed);
        }
        s
    }
}
