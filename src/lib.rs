//! santad: the daemon's library half (config, event sources, wiring, control protocol).
//!
//! Building blocks that do not depend on the engine or signing crates (they take the rules
//! crate's words for a decision, `rules::Action` and `rules::Reason`, and keep only their own
//! texts for them):
//! - [`linux::fanotify`]: the Linux event source (group, marks, reads, responses, kernel allow
//!   cache; inode marks are never destroyed, see `INODE_MARK_MASK`).
//! - [`eventlog`]: the decision log (Santa's line format, JSON lines, bounded ring, logger thread).
//! - [`linux::procinfo`]: process facts from /proc (ids, names, args, tty) into fixed-size
//!   records.
//! - [`blockmsg`]: Santa's block message on the blocked process's terminal (queue + thread).
//! - [`bundles`]: the bundle task: denied files whose bundle is hashed off the workers, for
//!   `action=BUNDLE` lines.
//! - [`config`]: the `santa-config` crate, re-exported: the TOML configuration with Santa's key
//!   names, read through serde and checked in one validation step (every error names its key).
//! - [`control`]: the control socket: the `santa-control` protocol and client (what `santactl`
//!   links), re-exported, and on Linux santad's server.
//! - [`linux::mountinfo`], [`linux::coverage`], [`linux::backstop`]: every filesystem watched
//!   and followed, the loaders, `LockdownScope`, and the BPF exec backstop for what fanotify
//!   cannot see.
//!
//! And the wiring over `santa-hotpath`, `santa-signing` and `santa-rules`:
//! - [`identity`]: the evaluator (file → SHA-256 and signing facts → rules decision), and the
//!   decision half of every log record (`fill_decision`, for every platform's responder).
//! - [`linux`]: the fanotify event source and responder for the engine.
//! - [`daemon`]: builds everything from the config and runs until a signal says stop.
//! - [`macos`]: Endpoint Security. Its platform-neutral half, [`macos::es`] (message model,
//!   translation, kernel identities, ES cache rule, evaluator, responder), is tested on Linux;
//!   the Endpoint Security calls and the macOS wiring are compiled for macOS only.

#[cfg(target_os = "linux")]
pub mod daemon;
#[cfg(target_os = "linux")]
pub mod linux;

pub mod macos;

pub mod blockmsg;
pub mod bundles;
pub use santa_config as config;
pub mod control;
pub mod eventlog;
mod fdwait;
pub mod identity;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub mod metrics;
pub mod setup;
pub mod stderr_logger;
pub mod sync;
pub mod transitive;
