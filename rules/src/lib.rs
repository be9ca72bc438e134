//! santad's policy: what to answer for one execution, and where the rules behind it live.
//!
//! Data flows one way:
//!
//! ```text
//!  santactl / sync ──► json (Santa's import format) ──► RuleChange list
//!                                                        │
//!                                   store::RuleStore::apply (one SQLite transaction,
//!                                   Santa's rules.db schema v16; says whether to flush caches)
//!                                                        │
//!      store::RuleStore::build_snapshot (start, cleanup) ─► snapshot::Snapshot (immutable index)
//!      or Snapshot::with_changes (same batch, no re-read)
//!                                                        │
//!                          pipeline::PolicyEngine::publish_snapshot (atomic arc-swap)
//!                                                        │
//!  worker: FileIdentity ──► pipeline::Evaluator::decide ─► Decision (allow/deny, reason, rule)
//! ```
//!
//! - [`model`]: rule types, states and identifiers, validated and normalised as Santa does.
//! - [`identity`]: a file's identities (plain values the daemon fills from its signing crate) and
//!   Santa's filtering of them by signing status.
//! - [`snapshot`]: the per-type hash index that answers "highest-precedence rule for these
//!   identifiers" without locks or allocation.
//! - [`pipeline`]: failsafe, rules, bad-signature protection, path scopes and mode, in Santa's order;
//!   one [`pipeline::Evaluator`] per worker holds its own regex clones.
//! - [`store`]: the SQLite store in Santa's `rules.db` format: its schema and Santa's migrations,
//!   reads (every rule, Santa's per-exec query, counts) and writes (one transaction per batch,
//!   with Santa's cache-flush rule).
//! - [`json`]: Santa's `santactl rule --import/--export` JSON.
//!
//! # Wiring
//!
//! ```
//! use std::sync::Arc;
//! use santa_rules::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Start-up: open (and migrate) the store, build the first snapshot, compile the policy.
//! let mut store = RuleStore::open_in_memory()?; // RuleStore::open(path) in the daemon
//! let (snapshot, report) = store.build_snapshot()?; // log report.skipped, if any
//! let policy = Policy::new(PolicyConfig {
//!     mode: ClientMode::Lockdown,
//!     blocked_path_regex: vec!["/tmp/".into()],
//!     ..PolicyConfig::default()
//! })?;
//! let engine = Arc::new(PolicyEngine::new(snapshot, policy));
//!
//! // Each pinned worker owns an evaluator (its own regex caches) for its whole life.
//! let mut evaluator = engine.evaluator();
//! let file = FileIdentity::unsigned(Sha256([7; 32]), b"/usr/local/bin/tool");
//! assert_eq!(evaluator.decide(&file).action, Action::Deny); // Lockdown, no rule
//!
//! // Control thread, on `santactl rule --import`: commit, then publish and maybe flush.
//! let changes = parse_rules_json(
//!     br#"{"rules":[{"identifier":"0707070707070707070707070707070707070707070707070707070707070707",
//!                    "policy":"ALLOWLIST","rule_type":"BINARY"}]}"#,
//! )?;
//! let outcome = store.apply(&changes, Cleanup::None)?;
//! let next = engine.snapshot().with_changes(store.generation(), &changes)?;
//! engine.publish_snapshot(next);
//! assert!(!outcome.flush_cache); // a plain new allow: cached denies simply expire
//!
//! let decision = evaluator.decide(&file);
//! assert_eq!((decision.action, decision.reason), (Action::Allow, Reason::Binary));
//! # let _ = report;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod cel;
pub mod identity;
pub mod json;
pub mod model;
pub mod pipeline;
pub mod snapshot;
pub mod store;

pub use cel::{CelError, CelOutcome, CelResult, CelRule, ExecFacts, NoExec};
pub use identity::{FileIdentity, RuleIdentifiers, SigningIdRef, SigningStatus};
pub use json::{
    ExportSummary, JsonError, JsonFileError, export_rules_json, parse_rule_object,
    parse_rules_json, read_rules_file, write_rules_file,
};
pub use model::{
    CdHash, IdentifierError, Rule, RuleChange, RuleIdentifier, RulePolicy, RuleState, RuleType,
    Sha256, SigningId, SigningIdPrefix, TeamId,
};
pub use pipeline::{
    Action, ClientMode, Decision, Evaluator, MatchedRule, PathScopes, Policy, PolicyConfig,
    PolicyEngine, PolicyError, Reason, Silence, decide, decide_exec,
};
pub use snapshot::{
    CustomText, RuleMatch, Snapshot, SnapshotBuilder, SnapshotCell, SnapshotError, SnapshotStats,
};
pub use store::{ApplyOutcome, Cleanup, LoadReport, RuleCounts, RuleStore, SkippedRow, StoreError};
