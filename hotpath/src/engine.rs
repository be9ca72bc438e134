//! The engine: sources submit events, pinned workers answer them, a deadline thread answers
//! whatever a worker could not answer in time.
//!
//! ```text
//!  Source::poll (in the worker, or any thread via Handle::submit)
//!     │ claim slot ─ full? → default now (counted)
//!     │ push slot index on the worker's queue ─ full? → default now (counted)
//!     ▼
//!  worker w: pop own queue, else steal ─► cache lookup ─ Hit ──────────────► respond
//!                                           ├ Miss → admit (per principal) → evaluate
//!                                           │   → complete ─► respond, then the parked ones
//!                                           │   (or defer behind the principal's others)
//!                                           └ Pending → park on the placeholder (owner answers)
//!  deadline thread: sleeps until the earliest pending deadline, answers the default
//! ```
//!
//! Exactly one of worker and deadline thread responds to an event (a CAS on the slot's state,
//! see the private `slots` module); the payload is dropped when both are done with it.

use crate::cache::Epoch;
use crate::cache::{Cacheability, DecisionCache, Lookup, Parked};
use crate::clock::Clock;
use crate::counters::{Counters, CountersSnapshot, FlushReason, bump};
use crate::key::{FileKey, FileStamp, KeyHashBuilder};
use crate::slots::{Event, SlotRef, Slots};
use crate::throttle::{Principal, Throttle};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

/// Bounds and knobs of the engine. Every limit is here, with why it has its default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads; 0 means one per online core (thread-per-core: more only adds switches).
    pub workers: usize,
    /// Pin worker `w` to core `w % cores`, so a worker's queue, cache lines and the kernel's
    /// wake-ups stay on one CPU (a cross-CPU wake-up costs ~55 µs here against ~6 µs).
    pub pin_workers: bool,
    /// In-flight slots: events held at once. 4096 is well above what the kernel queues for one
    /// listener in practice (each held exec is a blocked process) and costs ~200 KiB.
    pub inflight_max: usize,
    /// Queue depth per worker. A full queue is answered with the default at once, so it must
    /// absorb a burst (1024 execs) without ever making the kernel wait on us.
    pub queue_depth_max: usize,
    /// Decisions kept in the user-space cache (one entry per distinct file).
    pub cache_capacity: usize,
    /// Cache shards; more shards mean less lock contention, each costs one mutex and LRU.
    pub cache_shards: usize,
    /// How long a deny is cached, so a new allow rule takes effect without a flush (Santa: 1.5 s).
    pub deny_ttl_ms: u64,
    /// Spins on the queues before a worker blocks in its source; 0 when the source is the
    /// kernel (the worker is woken by it directly) — spinning only helps cross-thread feeding.
    pub idle_spins: u32,
    /// Start the deadline thread. Tests with a simulated clock turn it off and call
    /// [`Engine::expire_due`] themselves.
    pub deadline_thread: bool,
    /// Evaluations one principal (on Linux: the owner of the file) may have running at once;
    /// 0 means one fewer than the workers (at least 1), so one user's slow files always leave a
    /// worker for everyone else's execs. Principals the source does not name (root's files)
    /// are not bounded.
    pub evaluations_per_principal_max: usize,
    /// Bytes one principal may have being hashed at once (a file larger than this still runs,
    /// alone). 256 MiB is ~150 ms of SHA-256 here: enough for any real binary to be evaluated
    /// beside another, not enough to pin two workers with sparse giants.
    pub hash_bytes_per_principal_max: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            pin_workers: true,
            inflight_max: 4096,
            queue_depth_max: 1024,
            cache_capacity: 10_000,
            cache_shards: 64,
            deny_ttl_ms: 1_500,
            idle_spins: 0,
            deadline_thread: true,
            evaluations_per_principal_max: 0,
            hash_bytes_per_principal_max: 256 << 20,
        }
    }
}

/// Why an event was answered with the default instead of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefaultReason {
    /// The deadline came before a decision.
    Deadline,
    /// The target worker's queue was full.
    QueueFull,
    /// Every in-flight slot was taken.
    SlotsFull,
    /// The engine is shutting down.
    ShuttingDown,
    /// The evaluation panicked (ours or, for parked events, the owner's), or the responder
    /// did.
    EvaluationFailed,
}

impl DefaultReason {
    /// A stable name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::QueueFull => "queue_full",
            Self::SlotsFull => "slots_full",
            Self::ShuttingDown => "shutting_down",
            Self::EvaluationFailed => "evaluation_failed",
        }
    }
}

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// This worker evaluated the file.
    Evaluated,
    /// The decision cache.
    Cache,
    /// Another worker's evaluation of the same file, waited for.
    Coalesced,
}

/// The answer to one event.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a, D> {
    /// A decision.
    Decided {
        /// The decision.
        decision: &'a D,
        /// Where it came from.
        origin: Origin,
        /// Whether the responder may let the kernel cache it (true only for the evaluation that
        /// produced a cacheable decision and for cache hits).
        cacheable: bool,
        /// The cache epoch the decision belongs to. A kernel-side cache entry placed for it must
        /// be withdrawn if [`Epoch::current`] has moved on once it is placed (a flush raced it).
        epoch: u64,
    },
    /// The configured default (the responder knows what it is: it depends on mode and config).
    Default(DefaultReason),
}

/// Which thread answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredBy {
    /// Worker `n`.
    Worker(usize),
    /// The deadline thread (or whoever calls [`Engine::expire_due`]).
    Deadline,
    /// The thread that submitted the event (queue or slots full, shutdown).
    Submitter,
}

/// What an evaluation produced.
#[derive(Debug, Clone)]
pub struct Evaluation<D> {
    /// The decision.
    pub decision: D,
    /// How it may be cached.
    pub cacheability: Cacheability,
}

/// Decides one event's file. Called only on a cache miss, by one worker per file at a time.
pub trait Evaluator<P>: Send + Sync + 'static {
    /// The decision, cloned out of the cache on every hit: keep it small (`Copy` or `Arc`s).
    type Decision: Clone + Send + Sync + 'static;
    /// Per-worker state (e.g. a regex clone with its own scratch space).
    type Local: Send + 'static;
    /// Creates worker `worker`'s state, on that worker's thread.
    fn local(&self, worker: usize) -> Self::Local;
    /// Evaluates the file behind `payload`. A panic is caught and answered with the default.
    fn evaluate(&self, local: &mut Self::Local, payload: &P) -> Evaluation<Self::Decision>;
}

/// Delivers answers (to the kernel, a test, a benchmark). Called exactly once per event.
pub trait Responder<P, D>: Send + Sync + 'static {
    /// Answers the event behind `payload`.
    fn respond(&self, by: AnsweredBy, payload: &P, answer: Answer<'_, D>);
    /// Called when `respond` panicked: make sure the event is answered (with the default) if
    /// the panic came before the answer reached the kernel. Must not panic.
    fn respond_failed(&self, _by: AnsweredBy, _payload: &P) {}
}

impl<P, D, T: Responder<P, D>> Responder<P, D> for Arc<T> {
    fn respond(&self, by: AnsweredBy, payload: &P, answer: Answer<'_, D>) {
        (**self).respond(by, payload, answer)
    }
    fn respond_failed(&self, by: AnsweredBy, payload: &P) {
        (**self).respond_failed(by, payload)
    }
}

/// What happened to a submitted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for a worker.
    Queued,
    /// Already answered with the default (the responder was called).
    Answered(DefaultReason),
}

/// How events enter the engine. Implemented by the engine for sources.
pub trait Submit<P> {
    /// Submits an event on behalf of core `core` (a worker index, or any larger number for an
    /// outside thread): it goes on that worker's queue, or is answered with the default now.
    fn submit(&self, core: usize, event: Event<P>) -> Submitted;
    /// The engine clock's now, for computing deadlines.
    fn now_ns(&self) -> u64;
    /// Forgets the cached decision about one file (the source saw it written); events parked
    /// on an evaluation of it go back on `core`'s queue to be evaluated again.
    fn invalidate(&self, core: usize, key: FileKey);
}

/// Where events come from, read by the workers themselves when they are idle.
///
/// On Linux every worker reads the fanotify fd and submits onto its own queue, so the common
/// path has no hand-off between threads. Sources fed from other threads (Endpoint Security's
/// callback, tests) use [`ExternalSource`] and [`Handle::submit`].
pub trait Source<P>: Send + Sync + 'static {
    /// Reads what is available to `worker` now, without blocking, and submits it; returns how
    /// many events were submitted.
    fn poll(&self, worker: usize, submit: &dyn Submit<P>) -> usize;
    /// Blocks `worker` until its source may have events or [`Source::wake`] is called for it.
    /// Spurious returns are fine. The engine also unparks the thread when waking it.
    fn wait(&self, worker: usize);
    /// Makes `worker`'s current or next [`Source::wait`] return.
    fn wake(&self, worker: usize);
    /// The file's stamp now, for an event evaluated again because its file changed while it
    /// waited; `None` keeps the stamp it was submitted with.
    fn restamp(&self, _payload: &P) -> Option<FileStamp> {
        None
    }
    /// Who pays for evaluating this event's file and how much it costs, for the per-principal
    /// bounds; `None` (the default) is not bounded.
    fn principal(&self, _payload: &P) -> Option<Principal> {
        None
    }
}

/// A source that reads nothing itself: events come from other threads through
/// [`Handle::submit`]; idle workers park.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExternalSource;

/// Longest a parked worker sleeps before re-checking: a safety net only, wake-ups are explicit.
const PARK_MAX: Duration = Duration::from_millis(100);
/// Longest the deadline thread sleeps with nothing pending, likewise a safety net.
const DEADLINE_SLEEP_MAX: Duration = Duration::from_secs(1);
/// `next_wake` value while the deadline thread scans: submitters then always wake it.
const SCANNING: u64 = 0;

/// Queue items are slot indices with two flags above them (slots are capped below 2^30).
const ITEM_INDEX: u32 = (1 << 30) - 1;
/// The event is evaluated again: its file changed while it was parked; re-read its stamp.
const ITEM_RESTART: u32 = 1 << 31;
/// The event was resumed by the throttle and already holds its principal's charge.
const ITEM_CHARGED: u32 = 1 << 30;

impl<P> Source<P> for ExternalSource {
    fn poll(&self, _worker: usize, _submit: &dyn Submit<P>) -> usize {
        0
    }
    fn wait(&self, _worker: usize) {
        std::thread::park_timeout(PARK_MAX);
    }
    fn wake(&self, _worker: usize) {}
}

struct Shared<P, E: Evaluator<P>, R, C, S> {
    slots: Slots<P>,
    queues: Box<[CachePadded<ArrayQueue<u32>>]>,
    sleeping: Box<[CachePadded<AtomicBool>]>,
    worker_threads: Box<[OnceLock<Thread>]>,
    cache: DecisionCache<E::Decision>,
    throttle: Throttle,
    counters: Counters,
    evaluator: E,
    responder: R,
    clock: C,
    source: S,
    idle_spins: u32,
    running: CachePadded<AtomicBool>,
    next_wake: CachePadded<AtomicU64>,
    deadline_thread: OnceLock<Thread>,
    deadline_stop: AtomicBool,
}

impl<P, E, R, C, S> Shared<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    fn workers(&self) -> usize {
        self.queues.len()
    }

    /// Counter block of the deadline thread.
    fn deadline_core(&self) -> usize {
        self.workers()
    }

    /// Counter block of outside submitters.
    fn external_core(&self) -> usize {
        self.workers() + 1
    }

    /// Answers the default for an event that never got a slot (nobody else can reach it).
    fn answer_unqueued(&self, payload: &P, reason: DefaultReason) -> Submitted {
        self.responder
            .respond(AnsweredBy::Submitter, payload, Answer::Default(reason));
        Submitted::Answered(reason)
    }

    fn submit_event(&self, core: usize, event: Event<P>) -> Submitted {
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
                bump(&counters.queue_full_defaults);
                self.answer(
                    AnsweredBy::Submitter,
                    slot,
                    Answer::Default(DefaultReason::QueueFull),
                );
                self.slots.release(slot);
                Submitted::Answered(DefaultReason::QueueFull)
            }
        }
    }

    /// After a push onto `target`'s queue: wake `target` if it sleeps; if it is busy and now
    /// has a backlog, wake a sleeping sibling to steal (one slow evaluation must not hold up
    /// other files).
    fn after_push(&self, target: usize) {
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
    fn wake(&self, worker: usize) -> bool {
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

    fn pop(&self, worker: usize) -> Option<u32> {
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

    fn any_queued(&self) -> bool {
        self.queues.iter().any(|q| !q.is_empty())
    }

    /// Responds if nobody has yet. A panicking responder is caught (the worker keeps going) and
    /// asked to make sure the kernel got an answer.
    #[inline]
    fn answer(&self, by: AnsweredBy, slot: SlotRef, answer: Answer<'_, E::Decision>) {
        if self.slots.try_answer(slot) {
            self.respond_guarded(by, &self.slots.data(slot).payload, answer);
        }
    }

    fn respond_guarded(&self, by: AnsweredBy, payload: &P, answer: Answer<'_, E::Decision>) {
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

    /// Puts `item` back on `worker`'s queue; if it is full, answers the default and drops the
    /// reference. Returns whether it was queued.
    fn requeue(&self, worker: usize, item: u32) -> bool {
        match self.queues[worker].push(item) {
            Ok(()) => {
                self.after_push(worker);
                true
            }
            Err(_) => {
                let slot = self.slots.held(item & ITEM_INDEX);
                bump(&self.counters.core(worker).queue_full_defaults);
                self.answer(
                    AnsweredBy::Worker(worker),
                    slot,
                    Answer::Default(DefaultReason::QueueFull),
                );
                self.slots.release(slot);
                false
            }
        }
    }

    /// Hands parked events back to the queue, to be looked up (and, if `restart`, re-stamped)
    /// again.
    fn requeue_parked(&self, worker: usize, mut parked: Parked, restart: bool) {
        let flag = if restart { ITEM_RESTART } else { 0 };
        while let Some(index) = self.cache.next_parked(&mut parked) {
            if restart {
                bump(&self.counters.core(worker).restarts);
            }
            self.requeue(worker, index | flag);
        }
    }

    /// Answers the events parked on an evaluation with its outcome, or re-queues them if the
    /// file changed meanwhile. Each parked event's reference is released here.
    fn deliver(
        &self,
        worker: usize,
        mut parked: Parked,
        outcome: Result<&E::Decision, DefaultReason>,
        epoch: u64,
    ) {
        if parked.restart {
            self.requeue_parked(worker, parked, true);
            return;
        }
        if outcome.is_ok() && self.cache.epoch() != epoch {
            // Rules, mode or scopes changed while they waited: a parked exec may have started
            // after the change took effect, so it is decided again, under the new rules.
            self.requeue_parked(worker, parked, false);
            return;
        }
        let by = AnsweredBy::Worker(worker);
        while let Some(index) = self.cache.next_parked(&mut parked) {
            let slot = self.slots.held(index);
            let answer = match outcome {
                // The owner already let the kernel cache it if it could.
                Ok(decision) => Answer::Decided {
                    decision,
                    origin: Origin::Coalesced,
                    cacheable: false,
                    epoch,
                },
                Err(reason) => Answer::Default(reason),
            };
            self.answer(by, slot, answer);
            self.slots.release(slot);
        }
    }

    /// Ends a charged evaluation of `principal`; deferred events that may now run go back on
    /// `worker`'s queue already charged (one whose deadline already passed is dropped here).
    fn release_principal(&self, worker: usize, principal: Option<Principal>) {
        let Some(p) = principal else { return };
        // Answering (the responder's I/O) must not run under the throttle's lock: events that
        // find the queue full are collected and answered after it (allocates only then).
        let mut full: Vec<u32> = Vec::new();
        let mut pushed = false;
        self.throttle.release(p, |index| {
            let slot = self.slots.held(index);
            if self.slots.is_answered(slot) {
                self.slots.release(slot);
                return false;
            }
            let item = index | ITEM_CHARGED | ITEM_RESTART;
            match self.queues[worker].push(item) {
                Ok(()) => {
                    pushed = true;
                    true
                }
                Err(_) => {
                    full.push(index);
                    false
                }
            }
        });
        if pushed {
            self.after_push(worker);
        }
        for index in full {
            let slot = self.slots.held(index);
            bump(&self.counters.core(worker).queue_full_defaults);
            self.answer(
                AnsweredBy::Worker(worker),
                slot,
                Answer::Default(DefaultReason::QueueFull),
            );
            self.slots.release(slot);
        }
    }

    fn process(&self, worker: usize, local: &mut E::Local, item: u32) {
        let counters = self.counters.core(worker);
        bump(&counters.events);
        let by = AnsweredBy::Worker(worker);
        let slot = self.slots.held(item & ITEM_INDEX);
        let event = self.slots.data(slot);
        let principal = self.source.principal(&event.payload);
        let charged = if item & ITEM_CHARGED != 0 {
            principal
        } else {
            None
        };
        if self.slots.is_answered(slot) {
            // The deadline came while it was deferred or queued: nothing left to decide.
            self.release_principal(worker, charged);
            self.slots.release(slot);
            return;
        }
        let stamp = if item & ITEM_RESTART != 0 {
            self.source.restamp(&event.payload).unwrap_or(event.stamp)
        } else {
            event.stamp
        };
        // Read before the lookup: a hit's entry is at least this epoch, so a flush between the
        // lookup and a kernel-cache placement always shows as a moved epoch (never the reverse).
        let epoch_before = self.cache.epoch();
        match self
            .cache
            .lookup(event.key, stamp, self.clock.now_ns(), slot.index)
        {
            Lookup::Hit(decision) => {
                bump(&counters.hits);
                self.release_principal(worker, charged);
                self.answer(
                    by,
                    slot,
                    Answer::Decided {
                        decision: &decision,
                        origin: Origin::Cache,
                        cacheable: true,
                        epoch: epoch_before,
                    },
                );
            }
            Lookup::Parked => {
                // The owner of the evaluation answers it and releases its reference.
                bump(&counters.waits);
                self.release_principal(worker, charged);
                return;
            }
            Lookup::Miss(ticket) => {
                if charged.is_none()
                    && let Some(p) = principal
                    && !self.throttle.admit(p, slot.index)
                {
                    // Deferred: our reference waits in the throttle; events parked on our
                    // placeholder meanwhile go round again (and wait behind us).
                    bump(&counters.deferred);
                    let parked = self.cache.abandon(ticket);
                    self.requeue_parked(worker, parked, false);
                    return;
                }
                bump(&counters.misses);
                bump(&counters.evaluations);
                let epoch = ticket.epoch();
                match catch_unwind(AssertUnwindSafe(|| {
                    self.evaluator.evaluate(local, &event.payload)
                })) {
                    Ok(evaluation) => {
                        let parked = self.cache.complete(
                            ticket,
                            &evaluation.decision,
                            evaluation.cacheability,
                            self.clock.now_ns(),
                        );
                        let answer = Answer::Decided {
                            decision: &evaluation.decision,
                            origin: Origin::Evaluated,
                            cacheable: evaluation.cacheability.is_cacheable(),
                            epoch,
                        };
                        self.answer(by, slot, answer);
                        self.deliver(worker, parked, Ok(&evaluation.decision), epoch);
                    }
                    Err(_) => {
                        bump(&counters.evaluator_panics);
                        let parked = self.cache.abandon(ticket);
                        self.answer(by, slot, Answer::Default(DefaultReason::EvaluationFailed));
                        self.deliver(worker, parked, Err(DefaultReason::EvaluationFailed), epoch);
                    }
                }
                // Charged now, by `admit` or before it was resumed.
                self.release_principal(worker, principal);
            }
        }
        self.slots.release(slot);
    }

    fn run_worker(&self, worker: usize) {
        let _ = self.worker_threads[worker].set(std::thread::current());
        let mut local = self.evaluator.local(worker);
        let mut spins = 0u32;
        loop {
            if let Some(item) = self.pop(worker) {
                // The evaluator and the responder catch their own panics; this is the net for
                // the rest of the path, so a bug costs one event (answered by the deadline
                // thread), never the worker.
                if catch_unwind(AssertUnwindSafe(|| self.process(worker, &mut local, item)))
                    .is_err()
                {
                    bump(&self.counters.core(worker).worker_panics);
                }
                spins = 0;
                continue;
            }
            if !self.running.load(Ordering::Acquire) {
                break;
            }
            if self.source.poll(worker, self) > 0 {
                continue;
            }
            if spins < self.idle_spins {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            self.sleeping[worker].store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.any_queued() && self.running.load(Ordering::Acquire) {
                self.source.wait(worker);
            }
            self.sleeping[worker].store(false, Ordering::SeqCst);
            spins = 0;
        }
    }

    fn expire_due(&self) -> u64 {
        let counters = self.counters.core(self.deadline_core());
        let now = self.clock.now_ns();
        self.slots.expire_due(now, |event| {
            bump(&counters.deadline_defaults);
            self.responder.respond(
                AnsweredBy::Deadline,
                &event.payload,
                Answer::Default(DefaultReason::Deadline),
            );
        })
    }

    fn run_deadline(&self) {
        while !self.deadline_stop.load(Ordering::Acquire) {
            self.next_wake.store(SCANNING, Ordering::SeqCst);
            let next = self.expire_due().max(SCANNING + 1);
            self.next_wake.store(next, Ordering::SeqCst);
            // Linux: a futex wait on CLOCK_MONOTONIC (std's park_timeout); macOS: park, then
            // mach_wait_until for the last millisecond. Either way an earlier deadline unparks it.
            self.clock.park_until_ns(next, DEADLINE_SLEEP_MAX);
        }
    }

    fn snapshot(&self) -> CountersSnapshot {
        let mut s = self.counters.snapshot();
        s.flushes = self.cache.flush_counts();
        s.invalidations = self.cache.invalidation_count();
        s
    }
}

impl<P, E, R, C, S> Submit<P> for Shared<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    fn submit(&self, core: usize, event: Event<P>) -> Submitted {
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
}

/// A running engine. Dropping it shuts it down (see [`Engine::shutdown`]).
pub struct Engine<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    shared: Arc<Shared<P, E, R, C, S>>,
    workers: Vec<JoinHandle<()>>,
    deadline: Option<JoinHandle<()>>,
}

/// A cheap, cloneable handle for outside threads: submit, flush, invalidate, read counters.
pub struct Handle<P, E, R, C, S>
where
    E: Evaluator<P>,
{
    shared: Arc<Shared<P, E, R, C, S>>,
}

impl<P, E: Evaluator<P>, R, C, S> Clone for Handle<P, E, R, C, S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<P, E: Evaluator<P>, R, C, S> std::fmt::Debug for Handle<P, E, R, C, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.shared.queues.len())
            .finish_non_exhaustive()
    }
}

impl<P, E, R, C, S> std::fmt::Debug for Engine<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

macro_rules! common_methods {
    () => {
        /// Submits an event from outside the workers (see [`Submit::submit`]).
        pub fn submit(&self, core: usize, event: Event<P>) -> Submitted {
            self.shared.submit_event(core, event)
        }

        /// The engine clock's now.
        pub fn now_ns(&self) -> u64 {
            self.shared.clock.now_ns()
        }

        /// Makes every cached decision invisible (rules, mode or scopes changed).
        pub fn flush(&self, reason: FlushReason) {
            self.shared.cache.flush(reason);
        }

        /// Forgets the cached decision about one file (it was written to); events parked on an
        /// evaluation of it are evaluated again.
        pub fn invalidate(&self, key: FileKey) {
            Submit::invalidate(&*self.shared, 0, key);
        }

        /// A view of the decision cache's flush epoch, for kernel-side caches (see
        /// [`Answer::Decided`]'s `epoch`).
        pub fn epoch(&self) -> Epoch {
            self.shared.cache.epoch_watch()
        }

        /// Events deferred right now by the per-principal bounds.
        pub fn deferred(&self) -> u64 {
            self.shared.throttle.deferred()
        }

        /// The cached decision a new exec of this file would get right now, if any; read-only
        /// (no LRU promotion, no placeholder): `santactl checkcache`.
        pub fn peek(&self, key: FileKey, stamp: FileStamp) -> Option<E::Decision> {
            self.shared
                .cache
                .peek(key, stamp, self.shared.clock.now_ns())
        }

        /// All counters, summed.
        pub fn counters(&self) -> CountersSnapshot {
            self.shared.snapshot()
        }

        /// Events held right now.
        pub fn in_flight(&self) -> usize {
            self.shared.slots.in_flight()
        }

        /// Entries in the decision cache (live, stale and dead).
        pub fn cache_len(&self) -> usize {
            self.shared.cache.len()
        }

        /// Number of workers.
        pub fn workers(&self) -> usize {
            self.shared.workers()
        }
    };
}

impl<P, E, R, C, S> Handle<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    common_methods!();
}

impl<P, E, R, C, S> Engine<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    /// Builds the engine and starts its workers (and deadline thread, if configured).
    pub fn start(
        config: EngineConfig,
        evaluator: E,
        responder: R,
        clock: C,
        source: S,
    ) -> std::io::Result<Self> {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            config.workers
        };
        // Queue items carry two flags above the slot index.
        let inflight_max = config.inflight_max.clamp(1, ITEM_INDEX as usize);
        let per_principal = match config.evaluations_per_principal_max {
            0 => workers.saturating_sub(1).max(1),
            n => n,
        };
        let shared = Arc::new(Shared {
            slots: Slots::new(inflight_max),
            queues: (0..workers)
                .map(|_| CachePadded::new(ArrayQueue::new(config.queue_depth_max.max(1))))
                .collect(),
            sleeping: (0..workers)
                .map(|_| CachePadded::new(AtomicBool::new(false)))
                .collect(),
            worker_threads: (0..workers).map(|_| OnceLock::new()).collect(),
            cache: DecisionCache::new(
                config.cache_capacity,
                config.cache_shards,
                config.deny_ttl_ms.saturating_mul(1_000_000),
                KeyHashBuilder::random(),
                inflight_max,
            ),
            throttle: Throttle::new(
                u32::try_from(per_principal).unwrap_or(u32::MAX),
                config.hash_bytes_per_principal_max,
                inflight_max,
            ),
            // workers, then the deadline thread, then outside submitters.
            counters: Counters::new(workers + 2),
            evaluator,
            responder,
            clock,
            source,
            idle_spins: config.idle_spins,
            running: CachePadded::new(AtomicBool::new(true)),
            next_wake: CachePadded::new(AtomicU64::new(SCANNING)),
            deadline_thread: OnceLock::new(),
            deadline_stop: AtomicBool::new(false),
        });
        let mut engine = Engine {
            shared: shared.clone(),
            workers: Vec::with_capacity(workers),
            deadline: None,
        };
        if config.deadline_thread {
            let s = shared.clone();
            let handle = std::thread::Builder::new()
                .name("santad-deadline".into())
                .spawn(move || s.run_deadline())?;
            let _ = shared.deadline_thread.set(handle.thread().clone());
            engine.deadline = Some(handle);
        }
        let cores = if config.pin_workers {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        for w in 0..workers {
            let s = shared.clone();
            let core = (!cores.is_empty()).then(|| cores[w % cores.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("santad-worker-{w}"))
                .spawn(move || {
                    if let Some(core) = core {
                        // Best effort: an unpinned worker is slower, not wrong.
                        core_affinity::set_for_current(core);
                    }
                    s.run_worker(w);
                })?;
            engine.workers.push(handle);
        }
        Ok(engine)
    }

    /// A handle for outside threads.
    pub fn handle(&self) -> Handle<P, E, R, C, S> {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Answers every pending event whose deadline has passed, with the default; returns the
    /// earliest deadline still pending. For tests that drive a simulated clock; the deadline
    /// thread does this on its own.
    pub fn expire_due(&self) -> u64 {
        self.shared.expire_due()
    }

    common_methods!();

    /// Stops taking events (new ones are answered with the default), lets the workers answer
    /// everything queued, and joins every thread. Nothing held is left unanswered.
    pub fn shutdown(self) {
        drop(self);
    }

    fn stop(&mut self) {
        let s = &self.shared;
        s.running.store(false, Ordering::SeqCst);
        for w in 0..s.workers() {
            s.sleeping[w].store(true, Ordering::SeqCst);
            s.wake(w);
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
        // A submitter that passed the running check just before it flipped may have queued
        // after the workers left.
        let shut = |index: u32| {
            let slot = s.slots.held(index & ITEM_INDEX);
            if s.slots.try_answer(slot) {
                bump(&s.counters.core(s.external_core()).shutdown_defaults);
                s.respond_guarded(
                    AnsweredBy::Submitter,
                    &s.slots.data(slot).payload,
                    Answer::Default(DefaultReason::ShuttingDown),
                );
            }
            s.slots.release(slot);
        };
        for q in s.queues.iter() {
            while let Some(item) = q.pop() {
                shut(item);
            }
        }
        s.throttle.drain(shut);
        s.deadline_stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.deadline.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl<P, E, R, C, S> Drop for Engine<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    fn drop(&mut self) {
        self.stop();
    }
}
