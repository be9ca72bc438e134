//! macOS: Endpoint Security, organised as `src/linux/` is for fanotify.
//!
//! - [`es`]: the platform-neutral half (message model, translation, kernel identities, ES
//!   cache rule, evaluator, responder), built and tested on Linux.
//! - `client` (macOS only): the one file of Endpoint Security calls: the client, retained
//!   messages read into `es`'s plain views, answers.
//! - `daemon` (macOS only): santad's wiring on macOS; its `run` is what `main` calls
//!   there.

pub mod es;

#[cfg(target_os = "macos")]
mod client;
#[cfg(target_os = "macos")]
mod daemon;

#[cfg(target_os = "macos")]
pub use client::{EsClient, RetainedMessage};
#[cfg(target_os = "macos")]
pub use daemon::{MacError, run};
