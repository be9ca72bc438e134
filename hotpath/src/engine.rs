//! The engine: sources submit events, pinned workers answer them, a deadline thread answers
//! whatever a worker could not answer in time.
//!
//! ```text
//!  Source::poll (in the worker, or any thread via a Handle, which is a Submit)
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
//!
//! Where each part lives:
//!
//! - `config`: [`EngineConfig`], every bound and knob with why it has its default.
//! - `answer`: what an event gets ([`Answer`], [`DefaultReason`], [`Origin`]), who gave it
//!   ([`AnsweredBy`]) and what a submission became ([`Submitted`]).
//! - `traits`: the engine's seams — [`Evaluator`], [`Responder`], [`Source`], [`Submit`].
//! - `shared`: the state every thread shares, submission onto the per-worker queues, waking,
//!   and answering exactly once.
//! - `worker`: a worker's loop, one event's path (cache, throttle, evaluation) and the
//!   delivery to events parked on an evaluation.
//! - `deadline`: the deadline thread, which answers the default for whatever is late.
//! - `prefetch`: files evaluated before their first exec, on a thread of their own.
//! - `api`: [`Engine`] (start, shutdown) and [`Handle`] (for outside threads).

mod answer;
mod api;
mod config;
mod deadline;
mod prefetch;
mod shared;
mod traits;
mod worker;

pub use answer::{Answer, AnsweredBy, DefaultReason, Origin, Submitted};
pub use api::{Engine, EngineView, Handle};
pub use config::EngineConfig;
pub use prefetch::Prefetched;
pub use traits::{Evaluation, Evaluator, ExternalSource, Responder, Source, Submit};
