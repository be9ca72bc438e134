//! macOS Endpoint Security, the platform-neutral half: everything santad does with an ES message
//! except the calls into `EndpointSecurity.framework`, so that all of it is built and tested on
//! Linux. The one file of ES calls is [`crate::macos`] (compiled only for macOS).
//!
//! ```text
//!  ES callback (client.rs): retain message ─► EsMessage::view ─► intake()
//!     AUTH_EXEC    → Event { EsExec, key/stamp from ES's stat, deadline = Santa's budget }
//!     NOTIFY_EXEC  → Event (logged only; dropped if it follows our own allow)
//!     NOTIFY_CLOSE (modified), NOTIFY_UNLINK, NOTIFY_RENAME → invalidate the cached decision
//!  worker: EsEvaluator  open the executable by path, check it is the file ES described,
//!                       SHA-256 + certificate from the file, Team ID / Signing ID / CDHash /
//!                       signing status from the message (the kernel's view), rules decide
//!  EsResponder: answer (AuthPort → es_respond_auth_result), ES caches allows only, log line,
//!               block message on the terminal for a deny
//! ```
//!
//! The message is read through the [`EsMessage`] trait, whose one method turns whatever holds
//! the message (a retained `es_message_t` on macOS, plain values in tests) into a [`MessageView`]
//! of plain borrowed values. Every decision about the message is made on that view.
//!
//! By job: `message` (the message model), `translate` (a message → what the intake does),
//! `kernel` (the identities the kernel vouches for), `intake` (the callback's side: counters,
//! recent allows), `evaluator`, `responder` (ES's cache rule, the log line, the block message)
//! and `errors` (ES's result codes).

use crate::identity::Verdict;
use santa_hotpath::Engine;
use std::sync::Arc;

mod errors;
mod evaluator;
mod intake;
mod kernel;
mod message;
mod responder;
mod translate;

pub use errors::{ClearCacheError, NewClientError, RespondError};
pub use evaluator::{EsEvaluator, EsWorker, open_executable};
use intake::bump;
pub use intake::{EsCounters, EsShared, IntakeOptions};
pub use kernel::{
    CPU_TYPE_ARM64, KernelIdentity, cdhash_strictly_enforced, cs, kernel_identity,
    kernel_will_kill, signing_status,
};
pub use message::{
    EsExec, EsMessage, EventView, ExecView, FileView, Kind, MessageView, ProcessView,
};
#[cfg(test)]
use responder::fill_record;
pub use responder::{AuthPort, EsResponder, KernelAnswer, kernel_answer};
pub use translate::{Intake, NOTIFICATION_DEADLINE_NS, translate};

/// Where santad keeps its files on macOS, as Santa does (`/var/db/santa`).
pub mod paths {
    /// The launchd job's `--config` (also `config::DEFAULT_CONFIG_PATH`; `/etc` is
    /// `/private/etc` on macOS).
    pub const CONFIG_PATH: &str = "/etc/santa/santad.toml";
    /// The decision log, rotated by newsyslog (`dist/macos/com.northpolesec.santa.rs.newsyslog.conf`).
    pub const EVENT_LOG_PATH: &str = "/var/db/santa/santa.log";
    /// The rules database (also the config default).
    pub const RULES_DB_PATH: &str = "/var/db/santa/rules.db";
    /// santad's own diagnostics (launchd's `StandardErrorPath`).
    pub const DAEMON_LOG_PATH: &str = "/var/log/santad.log";
}

/// The engine santad runs on macOS, generic over the message holder.
pub type EsEngine<M> = Engine<EsExec<M>, Arc<Verdict>>;

#[cfg(test)]
mod tests;
