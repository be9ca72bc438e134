//! santa-sync: Santa's sync protocol (v1), so a santad host can be steered by the sync server a
//! Santa fleet already runs (Moroz, Rudolph, Zentral, Workshop): the server sets the host's mode
//! and rules and collects its events.
//!
//! Data flow of one sync ([`SyncClient::sync`], synchronous, on the caller's thread):
//!
//! 1. **preflight**: the host's facts, rule counts and [`rules_hash`] go up
//!    ([`proto::PreflightRequest`]); the server's settings come back
//!    ([`proto::PreflightResponse`] → [`ServerSettings`], with the sync type performed).
//! 2. **eventupload**, only when events wait and the sync is normal: batches of the server's
//!    `batch_size` from [`SyncHost::pending_events`] go up; each batch the server answers is
//!    acknowledged ([`SyncHost::acknowledge_events`]); a failed batch stays in the host's spool.
//! 3. **ruledownload**: every page, following `cursor`, is read and held; then the whole set goes
//!    to [`SyncHost::apply_rules`] at once, so the host applies it in one transaction and one
//!    snapshot swap. Nothing is applied if any page fails.
//! 4. **postflight**: rules received and processed, and the new [`rules_hash`], go up; then the
//!    settings go to [`SyncHost::apply_settings`] (the mode changes last, once the rules are in).
//!
//! Each request is a `POST <SyncBaseURL>/<stage>/<machine_id>` of protobuf-JSON, compressed as
//! `SyncClientContentEncoding` says, with Santa's retries, backoff and XSRF handling
//! (`transport.rs`). Every answer is untrusted: its size, time and shape are bounded ([`Limits`])
//! and each failure is a [`SyncError`] naming its stage, never a panic.
//!
//! Modules: [`proto`] (the messages and enums, field by field from northpolesec/protos
//! `sync/v1.proto`), `config` ([`SyncConfig`], [`Limits`], URL and header checks), `transport`
//! (HTTP, compression, retries, XSRF, XSSI), `client` (the stages and the [`SyncHost`] trait),
//! `hash` ([`rules_hash`]), `error`. With the `test-server` feature, [`testserver`]: a real HTTP
//! server on loopback that serves the server side from a Moroz-style TOML config, for tests and
//! demos.
#![forbid(unsafe_code)]

mod client;
mod config;
mod error;
mod hash;
mod post;
pub mod proto;
mod transport;

#[cfg(feature = "test-server")]
pub mod testserver;

pub use client::{
    DEFAULT_EVENT_BATCH_SIZE, EVENT_DETAIL_BUTTON_LABEL_CHARS_MAX, HostFacts,
    MINIMUM_FULL_SYNC_INTERVAL_SECS, PendingEvent, RuleCounts, RuleDownload, ServerSettings,
    SyncClient, SyncHost, SyncKind, SyncReport, SyncRule,
};
pub use config::{ContentEncoding, Limits, SyncConfig, TlsFiles};
pub use error::{ConfigError, HostError, RequestError, Stage, SyncError};
pub use hash::{HashedRule, SANTA_STATE_ALLOW_TRANSITIVE, rules_hash};
pub use post::{ANSWER_BYTES_MAX, JsonPoster, PostError};
pub use transport::{XSRF_HEADER_NAME_HEADER, XSRF_TOKEN_HEADER, strip_xssi};
