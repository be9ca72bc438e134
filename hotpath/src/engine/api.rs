//! The engine's public face: [`Engine`] starts the threads and shuts them down; [`Handle`] lets
//! outside threads submit, flush, invalidate and read counters.

use super::EngineConfig;
use super::answer::{Answer, AnsweredBy, DefaultReason, Submitted};
use super::deadline::SCANNING;
use super::shared::{Decision, ITEM_INDEX, Parts, Shared};
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

/// A running engine. Dropping it shuts it down (see [`Engine::shutdown`]). `P` is what an event
/// carries, `D` the evaluator's decision; the evaluator, responder, clock and source are chosen
/// by [`Engine::start`] and live behind the engine's shared state, so holders never name them.
pub struct Engine<P, D> {
    handle: Handle<P, D>,
    life: Arc<dyn Lifecycle>,
    workers: Vec<JoinHandle<()>>,
    deadline: Option<JoinHandle<()>>,
    prefetcher: Option<JoinHandle<()>>,
}

/// A cheap, cloneable handle for outside threads: submit (through [`Submit`]), and through
/// [`EngineView`] flush, invalidate and read counters.
pub struct Handle<P, D> {
    view: Arc<dyn EngineView<D>>,
    submit: Arc<dyn Submit<P> + Send + Sync>,
}

impl<P, D> Clone for Handle<P, D> {
    fn clone(&self) -> Self {
        Self {
            view: self.view.clone(),
            submit: self.submit.clone(),
        }
    }
}

impl<P, D> std::fmt::Debug for Handle<P, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.view.workers())
            .finish_non_exhaustive()
    }
}

impl<P, D> std::fmt::Debug for Engine<P, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// What outside threads read of and do to a running engine, whatever its parameters: what a
/// [`Handle`] dereferences to, and what holders that must not name the event type hold (the
/// control socket). `D` is the evaluator's decision.
pub trait EngineView<D>: Send + Sync {
    /// Makes every cached decision invisible (rules, mode or scopes changed).
    fn flush(&self, reason: FlushReason);
    /// Forgets the cached decision about one file (it was written to); events parked on an
    /// evaluation of it are evaluated again.
    fn invalidate(&self, key: FileKey);
    /// A view of the decision cache's flush epoch, for kernel-side caches (see
    /// [`Answer::Decided`]'s `epoch`).
    fn epoch(&self) -> Epoch;
    /// All counters, summed.
    fn counters(&self) -> CountersSnapshot;
    /// Entries in the decision cache (live, stale and dead).
    fn cache_len(&self) -> usize;
    /// Events held right now.
    fn in_flight(&self) -> usize;
    /// Number of workers.
    fn workers(&self) -> usize;
    /// Events deferred right now by the per-principal bounds.
    fn deferred(&self) -> u64;
    /// The cached decision a new exec of this file would get right now, if any; read-only
    /// (no LRU promotion, no placeholder): `santactl checkcache`.
    fn peek(&self, key: FileKey, stamp: FileStamp) -> Option<D>;
}

impl<K: Parts> EngineView<Decision<K>> for Shared<K>
where
    Self: Send + Sync,
{
    fn flush(&self, reason: FlushReason) {
        self.cache.flush(reason);
    }
    fn invalidate(&self, key: FileKey) {
        Submit::invalidate(self, 0, key);
    }
    fn epoch(&self) -> Epoch {
        self.cache.epoch_watch()
    }
    fn counters(&self) -> CountersSnapshot {
        self.snapshot()
    }
    fn cache_len(&self) -> usize {
        self.cache.len()
    }
    fn in_flight(&self) -> usize {
        self.slots.in_flight()
    }
    fn workers(&self) -> usize {
        Shared::workers(self)
    }
    fn deferred(&self) -> u64 {
        self.throttle.deferred()
    }
    fn peek(&self, key: FileKey, stamp: FileStamp) -> Option<Decision<K>> {
        self.cache.peek(key, stamp, self.clock.now_ns())
    }
}

impl<P, D> std::ops::Deref for Handle<P, D> {
    type Target = dyn EngineView<D>;
    fn deref(&self) -> &Self::Target {
        &*self.view
    }
}

impl<P, D> std::ops::Deref for Engine<P, D> {
    type Target = Handle<P, D>;
    fn deref(&self) -> &Handle<P, D> {
        &self.handle
    }
}

/// A handle is how threads outside the engine submit (Endpoint Security's callback): the same
/// interface the engine gives its sources.
impl<P, D> Submit<P> for Handle<P, D> {
    fn submit(&self, core: usize, event: Event<P>) -> Submitted {
        self.submit.submit(core, event)
    }
    fn now_ns(&self) -> u64 {
        self.submit.now_ns()
    }
    fn invalidate(&self, core: usize, key: FileKey) {
        self.submit.invalidate(core, key);
    }
    fn prefetch(&self, event: Event<P>) -> super::prefetch::Prefetched {
        self.submit.prefetch(event)
    }
}

/// What the engine itself does to its shared state on its way down and for tests, with the
/// shared state's parameters out of sight.
trait Lifecycle: Send + Sync {
    /// See [`Engine::expire_due`].
    fn expire_due(&self) -> u64;
    /// Stops taking events and wakes every worker so that it drains its queue and leaves.
    fn stop_taking(&self);
    /// After the workers left: answers what was queued behind their backs, then lets the
    /// deadline thread go.
    fn drain(&self);
    /// Wakes the prefetch thread so that it sees the engine stopping.
    fn wake_prefetcher(&self);
}

impl<K: Parts> Lifecycle for Shared<K>
where
    Self: Send + Sync,
{
    fn expire_due(&self) -> u64 {
        Shared::expire_due(self)
    }

    fn stop_taking(&self) {
        self.running.store(false, Ordering::SeqCst);
        for w in 0..self.workers() {
            self.sleeping[w].store(true, Ordering::SeqCst);
            self.wake(w);
        }
    }

    fn wake_prefetcher(&self) {
        if let Some(t) = self.prefetch.as_ref().and_then(|l| l.thread()) {
            t.unpark();
        }
    }

    fn drain(&self) {
        // Queued prefetches first: their parked execs go onto the queues drained next.
        self.drain_prefetch();
        // A submitter that passed the running check just before it flipped may have queued
        // after the workers left.
        let shut = |index: u32| {
            let slot = self.slots.held(index & ITEM_INDEX);
            if self.slots.try_answer(slot) {
                bump(&self.counters.core(self.external_core()).shutdown_defaults);
                self.respond_guarded(
                    AnsweredBy::Submitter,
                    &self.slots.data(slot).payload,
                    Answer::Default(DefaultReason::ShuttingDown),
                );
            }
            self.slots.release(slot);
        };
        for q in self.queues.iter() {
            while let Some(item) = q.pop() {
                shut(item);
            }
        }
        self.throttle.drain(shut);
        self.deadline_stop.store(true, Ordering::SeqCst);
    }
}

impl<P: Send + Sync + 'static, D: Clone + Send + Sync + 'static> Engine<P, D> {
    /// Builds the engine and starts its workers (and deadline thread, if configured).
    pub fn start<E, R, C, S>(
        config: EngineConfig,
        evaluator: E,
        responder: R,
        clock: C,
        source: S,
    ) -> std::io::Result<Self>
    where
        E: Evaluator<P, Decision = D>,
        R: Responder<P, D>,
        C: Clock,
        S: Source<P>,
    {
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
        let shared = Arc::new(Shared::<(P, E, R, C, S)> {
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
            // workers, then the deadline thread, outside submitters, the prefetch thread.
            counters: Counters::new(workers + 3),
            evaluator,
            responder,
            clock,
            source,
            idle_spins: config.idle_spins,
            running: CachePadded::new(AtomicBool::new(true)),
            next_wake: CachePadded::new(AtomicU64::new(SCANNING)),
            deadline_thread: OnceLock::new(),
            deadline_stop: AtomicBool::new(false),
            last_default_ns: CachePadded::new(AtomicU64::new(0)),
            prefetch: super::prefetch::PrefetchLane::new(config.prefetch_queue_depth),
        });
        let mut engine = Engine {
            handle: Handle {
                view: shared.clone(),
                submit: shared.clone(),
            },
            life: shared.clone(),
            workers: Vec::with_capacity(workers),
            deadline: None,
            prefetcher: None,
        };
        if config.deadline_thread {
            let s = shared.clone();
            let handle = std::thread::Builder::new()
                .name("santad-deadline".into())
                .spawn(move || s.run_deadline())?;
            let _ = shared.deadline_thread.set(handle.thread().clone());
            engine.deadline = Some(handle);
        }
        if shared.prefetch.is_some() {
            let s = shared.clone();
            // Not pinned: it must not take a worker's core when the scheduler has another.
            let handle = std::thread::Builder::new()
                .name("santad-prefetch".into())
                .spawn(move || s.run_prefetcher())?;
            engine.prefetcher = Some(handle);
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
    pub fn handle(&self) -> Handle<P, D> {
        self.handle.clone()
    }
}

impl<P, D> Engine<P, D> {
    /// Answers every pending event whose deadline has passed, with the default; returns the
    /// earliest deadline still pending. For tests that drive a simulated clock; the deadline
    /// thread does this on its own.
    pub fn expire_due(&self) -> u64 {
        self.life.expire_due()
    }

    /// Stops taking events (new ones are answered with the default), lets the workers answer
    /// everything queued, and joins every thread. Nothing held is left unanswered.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl<P, D> Drop for Engine<P, D> {
    fn drop(&mut self) {
        self.life.stop_taking();
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
        self.life.wake_prefetcher();
        if let Some(handle) = self.prefetcher.take() {
            let _ = handle.join();
        }
        self.life.drain();
        if let Some(handle) = self.deadline.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}
