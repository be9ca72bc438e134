//! santa-control: the protocol `santactl` speaks to santad over its control socket, and the
//! client half. santad's server (Linux) is in the daemon crate (`santad::control::server`); this
//! crate is all `santactl` needs, so the CLI builds without the daemon.
//!
//! Data flow: santactl builds a [`Request`], [`request`] frames it and sends it; santad's server
//! decodes it ([`decode_request`]), checks the peer's right to it ([`Request::needs_root`]),
//! handles it and frames a [`Reply`] back, which [`request`] decodes.
//!
//! Wire format: one request per connection (a block watch, [`Request::WatchBlocks`], then
//! keeps it: [`Reply::Watching`], then one [`BlockEvent`] message per block). Each message is a 4-byte big-endian length followed
//! by that many bytes of JSON ([`Request`] one way, [`Response`] the other). The length is
//! checked against a cap before anything is read, and the body is read as it arrives (a client
//! announcing 256 MiB and sending nothing costs nothing).
//!
//! Authorization is by the peer's credentials (`SO_PEERCRED` on Linux, `getpeereid` on macOS),
//! never by anything in the message: anyone may read (version, status, metrics, rule checks,
//! cache checks, a watch of their own blocks); only uid 0 may change policy or caches (rule
//! changes, import, export, flushcache) or watch every user's blocks. See
//! [`Request::needs_root`].
//!
//! Everything here is platform-neutral, so `santactl` builds everywhere.

use santa_rules as rules;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Version of this protocol; bumped when a message changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest request from a non-root peer. Their requests are a command and at most one file's
/// identity (a path of at most 4 KiB and a few hashes); 64 KiB leaves room and keeps what an
/// unprivileged client can make santad buffer small.
pub const REQUEST_BYTES_MAX_UNPRIVILEGED: usize = 64 << 10;

/// Largest request from root: an import of up to a million rules in the compact wire form
/// (about 150 bytes a rule) — the rules crate's own import bound is of the same order.
pub const REQUEST_BYTES_MAX_ROOT: usize = 256 << 20;

/// Largest response santactl accepts: an export of every rule (the biggest reply there is).
pub const RESPONSE_BYTES_MAX: usize = 512 << 20;

/// A peer that sends or takes nothing for this long is dropped (a slow client must not hold a
/// handler thread).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a non-root peer may take to send its whole request.
pub const REQUEST_DEADLINE_UNPRIVILEGED: Duration = Duration::from_secs(5);

/// Longest root may take to send its whole request (a large import over a local socket takes a
/// second or two; this leaves a wide margin without letting a stuck client hold a thread forever).
pub const REQUEST_DEADLINE_ROOT: Duration = Duration::from_secs(60);

/// How long santactl waits for santad's answer. An import of a million rules commits in SQLite
/// and rebuilds the snapshot; everything else answers in milliseconds.
pub const CLIENT_REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Granularity of blocking reads: how often a reader re-checks its deadlines and the stop flag.
const READ_SLICE: Duration = Duration::from_millis(250);

mod client;
mod framing;
mod messages;
pub mod metrics;

pub use client::*;
pub use framing::*;
pub use messages::*;

#[cfg(test)]
mod tests;
