//! The engine's public face: [`Engine`] starts the threads and shuts them down; [`Handle`] lets
//! outside threads submit, flush, invalidate and read counters.

use super::EngineConfig;
use super::answer::{Answer, AnsweredBy, DefaultReason, Submitted};
use super::deadline::SCANNING;
use super::shared::{ITEM_INDEX, Shared};
use super::traits::{Evaluator, Responder, Source, Submit};
use crate::cache::{DecisionCache, Epoch};
use crate::clock::Clock;
use crate::counters::{Counters, CountersSnapshot, FlushReason, bump};
use crate::key::{FileKey, FileStamp, KeyHashBuilder};
use crate::slots::{Event, Slots};
use crate::throttle::Throttle;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// The state an engine and its handles share; its parameters travel as one tuple (see `Types`).
type SharedArc<P, E, R, C, S> = Arc<Shared<(P, E, R, C, S)>>;

/// A running engine. Dropping it shuts it down (see [`Engine::shutdown`]).
pub struct Engine<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    shared: SharedArc<P, E, R, C, S>,
    workers: Vec<JoinHandle<()>>,
    deadline: Option<JoinHandle<()>>,
}

/// A cheap, cloneable handle for outside threads: submit, flush, invalidate, read counters.
pub struct Handle<P, E, R, C, S>
where
    E: Evaluator<P>,
{
    shared: SharedArc<P, E, R, C, S>,
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

/// What outside threads read of and do to a running engine, whatever its parameters: a
/// [`Handle`] as a trait object, for holders that must not name the engine's types (the
/// control socket). `D` is the evaluator's decision.
pub trait EngineView<D>: Send + Sync {
    /// See [`Handle::flush`].
    fn flush(&self, reason: FlushReason);
    /// See [`Handle::counters`].
    fn counters(&self) -> CountersSnapshot;
    /// See [`Handle::cache_len`].
    fn cache_len(&self) -> usize;
    /// See [`Handle::in_flight`].
    fn in_flight(&self) -> usize;
    /// See [`Handle::workers`].
    fn workers(&self) -> usize;
    /// See [`Handle::deferred`].
    fn deferred(&self) -> u64;
    /// See [`Handle::peek`].
    fn peek(&self, key: FileKey, stamp: FileStamp) -> Option<D>;
}

impl<P, E, R, C, S> EngineView<E::Decision> for Handle<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
    Self: Send + Sync,
{
    fn flush(&self, reason: FlushReason) {
        Handle::flush(self, reason);
    }
    fn counters(&self) -> CountersSnapshot {
        Handle::counters(self)
    }
    fn cache_len(&self) -> usize {
        Handle::cache_len(self)
    }
    fn in_flight(&self) -> usize {
        Handle::in_flight(self)
    }
    fn workers(&self) -> usize {
        Handle::workers(self)
    }
    fn deferred(&self) -> u64 {
        Handle::deferred(self)
    }
    fn peek(&self, key: FileKey, stamp: FileStamp) -> Option<E::Decision> {
        Handle::peek(self, key, stamp)
    }
}

/// A handle is how threads outside the engine submit (Endpoint Security's callback): the same
/// interface the engine gives its sources.
impl<P, E, R, C, S> Submit<P> for Handle<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    fn submit(&self, core: usize, event: Event<P>) -> Submitted {
        self.shared.submit_event(core, event)
    }

    fn now_ns(&self) -> u64 {
        self.shared.clock.now_ns()
    }

    fn invalidate(&self, core: usize, key: FileKey) {
        Submit::invalidate(&*self.shared, core, key);
    }
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
