//! santad's engine: everything between "the kernel holds an exec" and "we answered it", with
//! no knowledge of fanotify, Mach-O or SQL.
//!
//! Data flows one way:
//!
//! 1. A [`Source`] (fanotify read in each worker, an Endpoint Security callback, a
//!    [`replay::ReplaySource`]) submits an [`Event`]: a payload (the kernel's handle), the file's
//!    [`FileKey`] and [`FileStamp`], and a deadline. The event takes a slot in the preallocated
//!    in-flight table (the private `slots` module) and its index goes on a per-core bounded queue; a full table or
//!    queue is answered with the default at once, counted.
//! 2. A pinned worker pops its queue (or steals from a busy one) and looks the file up in the
//!    sharded [`DecisionCache`]: a hit answers; a miss evaluates through the [`Evaluator`] and
//!    publishes the decision; an event for a file another worker is evaluating is parked on
//!    that evaluation (the worker goes on) and answered by its owner, never evaluated twice.
//!    Evaluations are bounded per [`Principal`] (the file's owner), so one user's slow files
//!    always leave a worker for everyone else.
//! 3. A deadline thread sleeps until the earliest pending deadline on the monotonic [`Clock`]
//!    and answers the default for anything still pending. One CAS per slot decides who answers.
//! 4. Every answer goes through the [`Responder`], exactly once per event.
//!
//! Once warm, the path of an event allocates nothing: slots, queues, cache nodes and
//! placeholders are all preallocated or reused.
//!
//! Where each step lives: [`engine`] (its `shared` state and queues, the `worker` loop, the
//! `deadline` thread, [`Engine`] and [`Handle`]), `slots` (the in-flight table), [`cache`],
//! `throttle` (the per-principal bounds), [`clock`], [`counters`], [`key`] (what identifies a
//! file), [`budget`] (an event's deadline from the kernel's), [`replay`] (a source with no kernel).

pub mod budget;
pub mod cache;
pub mod clock;
pub mod counters;
pub mod engine;
pub mod key;
pub mod replay;
mod slots;
mod throttle;

pub use cache::{Cacheability, DecisionCache, Epoch, Lookup, Parked};
pub use clock::{Clock, MonotonicClock, SimClock};
pub use counters::{CountersSnapshot, FlushReason};
pub use engine::{
    Answer, AnsweredBy, DefaultReason, Engine, EngineConfig, EngineView, Evaluation, Evaluator,
    ExternalSource, Handle, Origin, Prefetched, Responder, Source, Submit, Submitted,
};
pub use key::{FileKey, FileStamp, KeyHashBuilder};
pub use slots::Event;
pub use throttle::Principal;
