//! The state every engine thread shares, and its common moves: submitting onto a worker's queue,
//! waking a sleeping worker, stealing, and answering an event exactly once.

use super::answer::{Answer, AnsweredBy, DefaultReason, Submitted};
use super::deadline::SCANNING;
use super::traits::{Evaluator, Responder, Source, Submit};
use crate::cache::{DecisionCache, Parked};
use crate::clock::Clock;
use crate::counters::{CoreCounters, Counters, CountersSnapshot, bump};
use crate::key::FileKey;
use crate::slots::{Event, SlotRef, Slots};
use crate::throttle::Throttle;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::thread::Thread;

/// Queue items are slot indices with two flags above them (slots are capped below 2^30).
pub(super) const ITEM_INDEX: u32 = (1 << 30) - 1;
/// The event is evaluated again: its file changed while it was parked; re-read its stamp.
pub(super) const ITEM_RESTART: u32 = 1 << 31;
/// The event was resumed by the throttle and already holds its principal's charge.
pub(super) const ITEM_CHARGED: u32 = 1 << 30;

/// The engine's five type parameters `(P, E, R, C, S)` as one, so that each impl over [`Shared`]
/// (here, in `deadline.rs` and in `worker.rs`) states its bounds once, as `K: Parts`. Only the
/// bound the struct itself needs is here, so a `Handle` can hold a `Shared` without the rest.
pub(super) trait Types {
    type P;
    type E: Evaluator<Self::P>;
    type R;
    type C;
    type S;
}

impl<P, E: Evaluator<P>, R, C, S> Types for (P, E, R, C, S) {
    type P = P;
    type E = E;
    type R = R;
    type C = C;
    type S = S;
}

/// The decision type of the engine's evaluator.
pub(super) type Decision<K> = <<K as Types>::E as Evaluator<<K as Types>::P>>::Decision;
/// A worker's own state for the engine's evaluator.
pub(super) type Local<K> = <<K as Types>::E as Evaluator<<K as Types>::P>>::Local;

/// The bounds the engine's threads need of its parameters (those of `Engine`'s impls).
pub(super) trait Parts:
    Types<R: Responder<<Self as Types>::P, Decision<Self>>, C: Clock, S: Source<<Self as Types>::P>>
{
}

impl<K> Parts for K where
    K: Types<R: Responder<<K as Types>::P, Decision<K>>, C: Clock, S: Source<<K as Types>::P>>
{
}

/// What the workers, the deadline thread and outside submitters share, behind one `Arc`.
pub(super) struct Shared<K: Types> {
    pub(super) slots: Slots<K::P>,
    pub(super) queues: Box<[CachePadded<ArrayQueue<u32>>]>,
    pub(super) sleeping: Box<[CachePadded<AtomicBool>]>,
    pub(super) worker_threads: Box<[OnceLock<Thread>]>,
    pub(super) cache: DecisionCache<Decision<K>>,
    pub(super) throttle: Throttle,
    pub(super) counters: Counters,
    pub(super) evaluator: K::E,
    pub(super) responder: K::R,
    pub(super) clock: K::C,
    pub(super) source: K::S,
    pub(super) idle_spins: u32,
    pub(super) running: CachePadded<AtomicBool>,
    pub(super) next_wake: CachePadded<AtomicU64>,
    pub(super) deadline_thread: OnceLock<Thread>,
    pub(super) deadline_stop: AtomicBool,
    /// The clock's time of the last answer given with the default (0: none yet), for
    /// `santactl doctor`. Written only on that rare path.
    pub(super) last_default_ns: CachePadded<AtomicU64>,
    /// Files evaluated before their first exec, on a thread of their own (`None`: off).
    pub(super) prefetch: Option<super::prefetch::PrefetchLane>,
}

impl<K: Parts> Shared<K> {
    pub(super) fn workers(&self) -> usize {
        self.queues.len()
    }

    /// Counter block of the deadline thread.
    pub(super) fn deadline_core(&self) -> usize {
        self.workers()
    }

    /// Counter block of outside submitters.
    pub(super) fn external_core(&self) -> usize {
        self.workers() + 1
    }

    /// Answers the default for an event that never got a slot (nobody else can reach it).
    fn answer_unqueued(&self, payload: &K::P, reason: DefaultReason) -> Submitted {
        self.responder
            .respond(AnsweredBy::Submitter, payload, Answer::Default(reason));
        Submitted::Answered(reason)
    }

    pub(super) fn submit_event(&self, core: usize, event: Event<K::P>) -> Submitted {
        let workers = self.workers();
        let counters = self.counters.core(core.min(self.external_core()));
        if !self.running.load(Ordering::Acquire) {
            bump(&counters.shutdown_defaults);
            return self.answer_unqueued(&event.payload, DefaultReason::ShuttingDown);
        }
        let deadline_ns = event.deadline_ns;
        let slot = match self.slots.claim(event) {
            Ok(slot) => slot,
            Err(event) => {
                bump(&counters.slots_full_defaults);
                return self.answer_unqueued(&event.payload, DefaultReason::SlotsFull);
            }
        };
        // The deadline thread sleeps until the earliest deadline it saw; wake it only for an
        // earlier one (with one deadline for all events: only when it had nothing pending).
        let next_wake = self.next_wake.load(Ordering::SeqCst);
        if (next_wake == SCANNING || deadline_ns < next_wake)
            && let Some(t) = self.deadline_thread.get()
        {
            t.unpark();
        }
        let target = core % workers;
        match self.queues[target].push(slot.index) {
            Ok(()) => {
                self.after_push(target);
                Submitted::Queued
            }
            Err(_) => {
                self.answer_queue_full(AnsweredBy::Submitter, counters, slot);
                Submitted::Answered(DefaultReason::QueueFull)
            }
        }
    }

    /// After a push onto `target`'s queue: wake `target` if it sleeps; if it is busy and now
    /// has a backlog, wake a sleeping sibling to steal (one slow evaluation must not hold up
    /// other files).
    pub(super) fn after_push(&self, target: usize) {
        // Pairs with the fence in the worker between `sleeping = true` and its queue re-check:
        // either we see it sleeping, or it sees our item.
        fence(Ordering::SeqCst);
        if self.sleeping[target].load(Ordering::Relaxed) {
            self.wake(target);
        } else if self.queues[target].len() > 1 {
            let workers = self.workers();
            for k in 1..workers {
                let sibling = (target + k) % workers;
                if self.sleeping[sibling].load(Ordering::Relaxed) && self.wake(sibling) {
                    break;
                }
            }
        }
    }

    /// Wakes `worker` if it is sleeping; true if this call woke it.
    pub(super) fn wake(&self, worker: usize) -> bool {
        if !self.sleeping[worker].swap(false, Ordering::SeqCst) {
            return false;
        }
        bump(&self.counters.core(worker).wakeups);
        self.source.wake(worker);
        if let Some(t) = self.worker_threads[worker].get() {
            t.unpark();
        }
        true
    }

    pub(super) fn pop(&self, worker: usize) -> Option<u32> {
        if let Some(index) = self.queues[worker].pop() {
            return Some(index);
        }
        let workers = self.workers();
        for k in 1..workers {
            if let Some(index) = self.queues[(worker + k) % workers].pop() {
                bump(&self.counters.core(worker).steals);
                return Some(index);
            }
        }
        None
    }

    pub(super) fn any_queued(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty())
    }

    /// Responds if nobody has yet. A panicking responder is caught (the worker keeps going) and
    /// asked to make sure the kernel got an answer.
    #[inline]
    pub(super) fn answer(&self, by: AnsweredBy, slot: SlotRef, answer: Answer<'_, Decision<K>>) {
        if self.slots.try_answer(slot) {
            if let Answer::Default(_) = answer {
                self.last_default_ns
                    .store(self.clock.now_ns().max(1), Ordering::Relaxed);
            }
            self.respond_guarded(by, &self.slots.data(slot).payload, answer);
        }
    }

    pub(super) fn respond_guarded(
        &self,
        by: AnsweredBy,
        payload: &K::P,
        answer: Answer<'_, Decision<K>>,
    ) {
        if catch_unwind(AssertUnwindSafe(|| {
            self.responder.respond(by, payload, answer)
        }))
        .is_err()
        {
            let core = match by {
                AnsweredBy::Worker(w) => w,
                AnsweredBy::Deadline => self.deadline_core(),
                AnsweredBy::Submitter => self.external_core(),
            };
            bump(&self.counters.core(core).responder_panics);
            let _ = catch_unwind(AssertUnwindSafe(|| {
                self.responder.respond_failed(by, payload)
            }));
        }
    }

    /// Answers the default for an event its queue had no room for (counted in `counters`), and
    /// drops the reference.
    pub(super) fn answer_queue_full(&self, by: AnsweredBy, counters: &CoreCounters, slot: SlotRef) {
        bump(&counters.queue_full_defaults);
        self.answer(by, slot, Answer::Default(DefaultReason::QueueFull));
        self.slots.release(slot);
    }

    /// Puts `item` back on `worker`'s queue; if it is full, answers the default and drops the
    /// reference. Returns whether it was queued.
    pub(super) fn requeue(&self, worker: usize, item: u32) -> bool {
        // The prefetch thread hands back to the first queue.
        let target = worker % self.workers();
        match self.queues[target].push(item) {
            Ok(()) => {
                self.after_push(target);
                true
            }
            Err(_) => {
                let slot = self.slots.held(item & ITEM_INDEX);
                self.answer_queue_full(
                    AnsweredBy::Worker(worker),
                    self.counters.core(worker),
                    slot,
                );
                false
            }
        }
    }

    /// Hands parked events back to the queue, to be looked up (and, if `restart`, re-stamped)
    /// again.
    pub(super) fn requeue_parked(&self, worker: usize, mut parked: Parked, restart: bool) {
        let flag = if restart { ITEM_RESTART } else { 0 };
        while let Some(index) = self.cache.next_parked(&mut parked) {
            if restart {
                bump(&self.counters.core(worker).restarts);
            }
            self.requeue(worker, index | flag);
        }
    }

    pub(super) fn snapshot(&self) -> CountersSnapshot {
        let mut s = self.counters.snapshot();
        s.flushes = self.cache.flush_counts();
        s.invalidations = self.cache.invalidation_count();
        let last = self.last_default_ns.load(Ordering::Relaxed);
        s.last_default_age_ns = (last != 0).then(|| self.clock.now_ns().saturating_sub(last));
        s
    }
}

impl<K: Parts> Submit<K::P> for Shared<K> {
    fn submit(&self, core: usize, event: Event<K::P>) -> Submitted {
        self.submit_event(core, event)
    }
    fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }
    fn invalidate(&self, core: usize, key: FileKey) {
        let parked = self.cache.invalidate(key);
        if !parked.is_empty() {
            self.requeue_parked(core % self.workers(), parked, true);
        }
    }
    fn prefetch(&self, event: Event<K::P>) -> super::prefetch::Prefetched {
        self.prefetch_event(event)
    }
}
