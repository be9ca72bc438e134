//! The prefetch lane: files evaluated before anyone executes them (a new executable was just
//! written), on a thread of its own, so that the first exec finds the decision in the cache.
//!
//! ```text
//!  Submit::prefetch (the source, on reading a close-after-write)
//!     │ claim slot ─ full? → dropped (counted)
//!     │ cache lookup ─ Hit → dropped: already decided; Parked → an exec is evaluating it
//!     │ Miss: the placeholder is ours from here on, so an exec arriving meanwhile parks on it
//!     │ push (slot, ticket) on the lane's bounded queue ─ full? → placeholder abandoned
//!     ▼
//!  prefetch thread: re-stamp (still changing? → abandoned) → evaluate → complete
//!                   → the parked execs get the decision
//! ```
//!
//! The lane never delays an exec waiting for an answer: no worker ever runs a prefetch (the
//! lane has its own thread and queue, which workers never pop), a prefetch holds no
//! per-principal charge, and an exec that parks on a prefetch's placeholder was going to
//! evaluate the same file itself. What a prefetch costs the host is bounded by the source
//! (which files, how many bytes per second) and by the lane's queue depth.

use super::answer::{Answer, AnsweredBy, Origin};
use super::shared::{Parts, Shared};
use super::traits::{Evaluator, Source};
use crate::cache::{Cacheability, Lookup, Ticket};
use crate::clock::Clock;
use crate::counters::bump;
use crate::slots::Event;
use crossbeam_queue::ArrayQueue;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::thread::Thread;
use std::time::Duration;

/// Longest the prefetch thread sleeps with nothing queued: a safety net, pushes unpark it.
const PREFETCH_PARK_MAX: Duration = Duration::from_millis(250);

/// What became of a file handed to [`Submit::prefetch`](super::Submit::prefetch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetched {
    /// Queued for the prefetch thread; its placeholder is in the cache.
    Queued,
    /// A decision that applies is already cached.
    Cached,
    /// An exec is being evaluated for this file right now: the prefetch waits on it.
    Evaluating,
    /// The lane's queue (or the slot table) was full: not prefetched.
    Full,
    /// The engine has no prefetch lane, or is shutting down.
    Off,
}

/// The lane: a bounded queue of claimed slots with their placeholders, and its thread.
pub(super) struct PrefetchLane {
    queue: ArrayQueue<(u32, Ticket)>,
    thread: OnceLock<Thread>,
}

impl PrefetchLane {
    pub(super) fn new(depth: usize) -> Option<Self> {
        (depth > 0).then(|| Self {
            queue: ArrayQueue::new(depth),
            thread: OnceLock::new(),
        })
    }

    /// The lane's thread, once it runs.
    pub(super) fn thread(&self) -> Option<&Thread> {
        self.thread.get()
    }
}

impl<K: Parts> Shared<K> {
    /// Counter block of the prefetch thread.
    pub(super) fn prefetch_core(&self) -> usize {
        self.workers() + 2
    }

    pub(super) fn prefetch_event(&self, event: Event<K::P>) -> Prefetched {
        let Some(lane) = &self.prefetch else {
            return Prefetched::Off;
        };
        let counters = self.counters.core(self.prefetch_core());
        if !self.running.load(Ordering::Acquire) {
            return Prefetched::Off;
        }
        let (key, stamp) = (event.key, event.stamp);
        let Ok(slot) = self.slots.claim(event) else {
            bump(&counters.prefetch_full);
            return Prefetched::Full;
        };
        match self
            .cache
            .lookup(key, stamp, self.clock.now_ns(), slot.index)
        {
            Lookup::Hit(_) => {
                bump(&counters.prefetch_cached);
                // Nobody else holds this slot: answered (to nobody) and released here.
                let _ = self.slots.try_answer(slot);
                self.slots.release(slot);
                Prefetched::Cached
            }
            Lookup::Parked => {
                // The exec's evaluation delivers to our slot and releases it.
                bump(&counters.prefetch_coalesced);
                Prefetched::Evaluating
            }
            Lookup::Miss(ticket) => match lane.queue.push((slot.index, ticket)) {
                Ok(()) => {
                    bump(&counters.prefetch_queued);
                    if let Some(t) = lane.thread.get() {
                        t.unpark();
                    }
                    Prefetched::Queued
                }
                Err((_, ticket)) => {
                    bump(&counters.prefetch_full);
                    let parked = self.cache.abandon(ticket);
                    self.requeue_parked(0, parked, false);
                    let _ = self.slots.try_answer(slot);
                    self.slots.release(slot);
                    Prefetched::Full
                }
            },
        }
    }

    /// One queued prefetch: re-stamp, evaluate, cache, deliver to whatever parked on it.
    fn run_prefetch(
        &self,
        local: &mut <K::E as Evaluator<K::P>>::Local,
        index: u32,
        ticket: Ticket,
    ) {
        let core = self.prefetch_core();
        let counters = self.counters.core(core);
        let by = AnsweredBy::Worker(core);
        let slot = self.slots.held(index);
        let event = self.slots.data(slot);
        // Still being written (another write since the close that queued it): its next
        // close-after-write brings it back; an exec parked meanwhile evaluates it itself.
        if !self.source.prefetch_must_run(&event.payload)
            && self
                .source
                .restamp(&event.payload)
                .is_some_and(|now| now != event.stamp)
        {
            bump(&counters.prefetch_changed);
            let parked = self.cache.abandon(ticket);
            self.requeue_parked(core, parked, true);
            let _ = self.slots.try_answer(slot);
            self.slots.release(slot);
            return;
        }
        bump(&counters.prefetch_evaluations);
        let epoch = ticket.epoch();
        match catch_unwind(AssertUnwindSafe(|| {
            self.evaluator.evaluate(local, &event.payload)
        })) {
            Ok(evaluation) => {
                // A deny is cached only briefly, so that a new allow rule takes effect without
                // a flush; a file nobody has executed yet is not held to one (an exec waiting
                // on this evaluation still takes it).
                let cacheability = match evaluation.cacheability {
                    Cacheability::DenyTtl => Cacheability::Never,
                    other => other,
                };
                let parked = self.cache.complete(
                    ticket,
                    &evaluation.decision,
                    cacheability,
                    self.clock.now_ns(),
                );
                // The prefetch's own answer goes to the responder, which has nobody to tell
                // (but may give a cacheable allow to a kernel-side cache, as for an exec).
                self.answer(
                    by,
                    slot,
                    Answer::Decided {
                        decision: &evaluation.decision,
                        origin: Origin::Evaluated,
                        cacheable: cacheability.is_cacheable(),
                        epoch,
                    },
                );
                self.deliver(core, parked, Ok(&evaluation.decision), epoch);
            }
            Err(_) => {
                bump(&counters.evaluator_panics);
                let parked = self.cache.abandon(ticket);
                // The parked execs evaluate the file themselves.
                self.requeue_parked(core, parked, false);
                let _ = self.slots.try_answer(slot);
            }
        }
        self.slots.release(slot);
    }

    pub(super) fn run_prefetcher(&self) {
        let Some(lane) = &self.prefetch else { return };
        let _ = lane.thread.set(std::thread::current());
        let mut local = self.evaluator.local(self.prefetch_core());
        // On the way down what is still queued is given up by `drain_prefetch`, not evaluated.
        while self.running.load(Ordering::Acquire) {
            if let Some((index, ticket)) = lane.queue.pop() {
                // The evaluator catches its own panics; this is the net for the rest.
                if catch_unwind(AssertUnwindSafe(|| {
                    self.run_prefetch(&mut local, index, ticket)
                }))
                .is_err()
                {
                    bump(&self.counters.core(self.prefetch_core()).worker_panics);
                }
                continue;
            }
            std::thread::park_timeout(PREFETCH_PARK_MAX);
        }
    }

    /// On the way down, after the prefetch thread left: placeholders still queued are given up
    /// (their parked execs go back on a queue, or get the default if none is left).
    pub(super) fn drain_prefetch(&self) {
        let Some(lane) = &self.prefetch else { return };
        while let Some((index, ticket)) = lane.queue.pop() {
            let parked = self.cache.abandon(ticket);
            self.requeue_parked(0, parked, false);
            let slot = self.slots.held(index);
            let _ = self.slots.try_answer(slot);
            self.slots.release(slot);
        }
    }
}
