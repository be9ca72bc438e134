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
//! - [`store`]: the SQLite store, Santa's migrations, and Santa's cache-flush rule.
//! - [`json`]: Santa's `santactl rule --import/--export` JSON.
#![forbid(unsafe_code)]

pub mod identity;
pub mod json;
pub mod model;
pub mod pipeline;
pub mod snapshot;
pub mod store;

pub use identity::{FileIdentity, RuleIdentifiers, SigningIdRef, SigningStatus};
pub use json::{
    ExportSummary, JsonError, JsonFileError, export_rules_json, parse_rules_json, read_rules_file,
    write_rules_file,
};
pub use model::{
    CdHash, IdentifierError, Rule, RuleChange, RuleIdentifier, RulePolicy, RuleState, RuleType,
    Sha256, SigningId, SigningIdPrefix, TeamId,
};
pub use pipeline::{
    Action, ClientMode, Decision, Evaluator, MatchedRule, PathScopes, Policy, PolicyConfig,
    PolicyEngine, PolicyError, Reason, Silence, decide,
};
pub use snapshot::{
    CustomText, RuleMatch, Snapshot, SnapshotBuilder, SnapshotCell, SnapshotError, SnapshotStats,
};
pub use store::{ApplyOutcome, Cleanup, LoadReport, RuleCounts, RuleStore, SkippedRow, StoreError};
