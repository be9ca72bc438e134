//! The engine's seams: what decides ([`Evaluator`]), what answers ([`Responder`]), where events
//! come from ([`Source`], [`ExternalSource`]) and how they get in ([`Submit`]).

use super::answer::{Answer, AnsweredBy, Submitted};
use crate::cache::Cacheability;
use crate::key::{FileKey, FileStamp};
use crate::slots::Event;
use crate::throttle::Principal;
use std::sync::Arc;
use std::time::Duration;

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
    /// Evaluates a file nobody is executing yet (it was just written), off every worker, so
    /// that its first exec finds the decision cached; an exec arriving meanwhile waits on
    /// this evaluation. The payload's responder call is an answer to nobody.
    fn prefetch(&self, _event: Event<P>) -> super::prefetch::Prefetched {
        super::prefetch::Prefetched::Off
    }
}

/// Where events come from, read by the workers themselves when they are idle.
///
/// On Linux every worker reads the fanotify fd and submits onto its own queue, so the common
/// path has no hand-off between threads. Sources fed from other threads (Endpoint Security's
/// callback, tests) use [`ExternalSource`] and a [`Handle`](super::Handle) (its [`Submit`]).
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
    /// Whether this payload was handed to [`Submit::prefetch`]: no exec waits for it, and
    /// workers never evaluate it.
    fn is_prefetch(&self, _payload: &P) -> bool {
        false
    }
    /// Whether a prefetch must be evaluated even if its file changed again before its turn
    /// (a compiler's output, whose evaluation makes its transitive rule: a chmod after the
    /// close, as `ld.bfd` does, must not cost it the rule).
    fn prefetch_must_run(&self, _payload: &P) -> bool {
        false
    }
}

/// A source that reads nothing itself: events come from other threads through
/// a [`Handle`](super::Handle) (its [`Submit`]); idle workers park.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExternalSource;

/// Longest a parked worker sleeps before re-checking: a safety net only, wake-ups are explicit.
const PARK_MAX: Duration = Duration::from_millis(100);

impl<P> Source<P> for ExternalSource {
    fn poll(&self, _worker: usize, _submit: &dyn Submit<P>) -> usize {
        0
    }
    fn wait(&self, _worker: usize) {
        std::thread::park_timeout(PARK_MAX);
    }
    fn wake(&self, _worker: usize) {}
}
