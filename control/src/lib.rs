//! santa-control: the protocol `santactl` speaks to santad over its control socket, and the
//! client half. santad's server (Linux) is in the daemon crate (`santad::control::server`); this
//! crate is all `santactl` needs, so the CLI builds without the daemon.
//!
//! Data flow: santactl builds a [`Request`], [`request`] frames it and sends it; santad's server
//! decodes it ([`decode_request`]), checks the peer's right to it ([`Request::needs_root`]),
//! handles it and frames a [`Reply`] back, which [`request`] decodes.
//!
//! Wire format: one request per connection. Each message is a 4-byte big-endian length followed
//! by that many bytes of JSON ([`Request`] one way, [`Response`] the other). The length is
//! checked against a cap before anything is read, and the body is read as it arrives (a client
//! announcing 256 MiB and sending nothing costs nothing).
//!
//! Authorization is by the peer's credentials (`SO_PEERCRED`), never by anything in the message:
//! anyone may read (version, status, metrics, rule checks, cache checks); only uid 0 may change
//! policy or caches (rule changes, import, export, flushcache). See [`Request::needs_root`].
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

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// What santactl asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// santad's version.
    Version,
    /// Mode, rule counts, cache, events, settings, uptime.
    Status,
    /// Every counter.
    Metrics,
    /// Drop every cached decision, in user space and in the kernel. Root only.
    FlushCache,
    /// What the decision cache holds for one file (read-only).
    CheckCache {
        /// The file.
        file: CacheKey,
    },
    /// Which rule applies, and (for a whole file) what santad would decide.
    RuleCheck {
        /// One identifier, or a file's identities.
        target: CheckTarget,
    },
    /// Add, replace or remove rules in one transaction, after an optional cleanup. Root only.
    ApplyRules {
        /// The changes, in order.
        rules: Vec<RuleSpec>,
        /// Rules to delete first.
        #[serde(default)]
        cleanup: CleanupSpec,
    },
    /// Every stored rule. Root only (the rule set is policy, as in Santa).
    ExportRules,
}

impl Request {
    /// Whether only uid 0 may send this request.
    pub fn needs_root(&self) -> bool {
        matches!(
            self,
            Request::FlushCache | Request::ApplyRules { .. } | Request::ExportRules
        )
    }

    /// The command's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Version => "version",
            Request::Status => "status",
            Request::Metrics => "metrics",
            Request::FlushCache => "flushcache",
            Request::CheckCache { .. } => "checkcache",
            Request::RuleCheck { .. } => "rule --check",
            Request::ApplyRules { .. } => "rule",
            Request::ExportRules => "rule --export",
        }
    }
}

/// A file as the decision cache knows it: `(dev, ino)` and the stamp `(ctime_ns, size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_ctime` in nanoseconds.
    pub ctime_ns: i64,
    /// `st_size`.
    pub size: u64,
}

/// What a rule check is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckTarget {
    /// One identifier of one type (`santactl rule --check --identifier ID [--teamid …]`).
    Identifier {
        /// Santa's type name (`BINARY`, `CERTIFICATE`, `TEAMID`, `SIGNINGID`, `CDHASH`).
        rule_type: String,
        /// The identifier.
        identifier: String,
    },
    /// Everything known about a file (`fileinfo`, `rule --check --path`): santad runs its full
    /// pipeline on it, path scopes and mode included.
    File {
        /// The file's identities, computed by santactl.
        facts: FileFacts,
    },
}

/// A file's identities, as santactl computes them with the signing crate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    /// Absolute path (path scopes match it).
    pub path: String,
    /// SHA-256 of the contents, 64 hex.
    pub sha256: String,
    /// CDHash, 40 hex.
    #[serde(default)]
    pub cdhash: Option<String>,
    /// Santa's Signing ID (`TEAMID:ident` or `platform:ident`).
    #[serde(default)]
    pub signing_id: Option<String>,
    /// Team ID.
    #[serde(default)]
    pub team_id: Option<String>,
    /// Leaf certificate SHA-256, 64 hex.
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// How the file is signed.
    pub signing_status: WireSigningStatus,
    /// A platform (Apple OS) binary.
    #[serde(default)]
    pub platform_binary: bool,
}

/// [`rules::SigningStatus`] on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireSigningStatus {
    /// No signature.
    Unsigned,
    /// A signature that does not verify.
    Invalid,
    /// Ad-hoc.
    AdHoc,
    /// Development certificate.
    Development,
    /// Production certificate.
    Production,
}

impl From<WireSigningStatus> for rules::SigningStatus {
    fn from(s: WireSigningStatus) -> Self {
        match s {
            WireSigningStatus::Unsigned => rules::SigningStatus::Unsigned,
            WireSigningStatus::Invalid => rules::SigningStatus::Invalid,
            WireSigningStatus::AdHoc => rules::SigningStatus::AdHoc,
            WireSigningStatus::Development => rules::SigningStatus::Development,
            WireSigningStatus::Production => rules::SigningStatus::Production,
        }
    }
}

/// One rule change on the wire: Santa's JSON fields, with the state as Santa's database value
/// (`4` = remove), so every stored state (transitive, CEL v2, …) round-trips.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// The identifier.
    pub identifier: String,
    /// Santa's type name (`BINARY`, …).
    pub rule_type: String,
    /// Santa's state value (`SNTRuleState`); [`rules::RuleState::REMOVE_DB_VALUE`] removes.
    pub state: i64,
    /// Custom block message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_msg: Option<String>,
    /// Custom block URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_url: Option<String>,
    /// Block dialog button label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_detail_button_text: Option<String>,
    /// Operator's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// CEL expression (CEL rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cel_expr: Option<String>,
    /// Sync server rule id.
    #[serde(default)]
    pub rule_id: i64,
    /// Transitive rules' last use (Apple reference seconds).
    #[serde(default)]
    pub timestamp: i64,
}

/// A [`RuleSpec`] that does not describe a valid rule change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleSpecError {
    /// `rule_type` is not one of Santa's type names.
    UnknownType(String),
    /// `state` is not one of Santa's state values.
    UnknownState(i64),
    /// The identifier is not valid for its type.
    Identifier(rules::IdentifierError),
}

impl fmt::Display for RuleSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(t) => write!(f, "unknown rule type {t:?}"),
            Self::UnknownState(s) => write!(f, "unknown rule state {s}"),
            Self::Identifier(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RuleSpecError {}

impl RuleSpec {
    /// The wire form of a stored rule.
    pub fn from_rule(r: &rules::Rule) -> RuleSpec {
        RuleSpec {
            identifier: r.identifier.to_string(),
            rule_type: r.rule_type().santa_name().to_owned(),
            state: r.state.db_value(),
            custom_msg: r.custom_msg.clone(),
            custom_url: r.custom_url.clone(),
            event_detail_button_text: r.event_detail_button_text.clone(),
            comment: r.comment.clone(),
            cel_expr: r.cel_expr.clone(),
            rule_id: r.rule_id,
            timestamp: r.timestamp,
        }
    }

    /// The wire form of a change.
    pub fn from_change(c: &rules::RuleChange) -> RuleSpec {
        match c {
            rules::RuleChange::Upsert(r) => RuleSpec::from_rule(r),
            rules::RuleChange::Remove(id) => RuleSpec {
                identifier: id.to_string(),
                rule_type: id.rule_type().santa_name().to_owned(),
                state: rules::RuleState::REMOVE_DB_VALUE,
                custom_msg: None,
                custom_url: None,
                event_detail_button_text: None,
                comment: None,
                cel_expr: None,
                rule_id: 0,
                timestamp: 0,
            },
        }
    }

    /// Validates and converts to a change (the daemon never trusts the client's validation).
    pub fn to_change(&self) -> Result<rules::RuleChange, RuleSpecError> {
        let rule_type = rules::RuleType::from_santa_name(&self.rule_type)
            .ok_or_else(|| RuleSpecError::UnknownType(shorten(&self.rule_type)))?;
        let identifier = rules::RuleIdentifier::parse(rule_type, &self.identifier)
            .map_err(RuleSpecError::Identifier)?;
        if self.state == rules::RuleState::REMOVE_DB_VALUE {
            return Ok(rules::RuleChange::Remove(identifier));
        }
        let state = rules::RuleState::from_db_value(self.state)
            .ok_or(RuleSpecError::UnknownState(self.state))?;
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Ok(rules::RuleChange::Upsert(rules::Rule {
            identifier,
            state,
            custom_msg: nonempty(&self.custom_msg),
            custom_url: nonempty(&self.custom_url),
            event_detail_button_text: nonempty(&self.event_detail_button_text),
            comment: nonempty(&self.comment),
            cel_expr: nonempty(&self.cel_expr),
            seatbelt_policy: None,
            rule_id: self.rule_id,
            timestamp: self.timestamp,
        }))
    }
}

/// Which rules to delete before applying changes (Santa's `--clean` / `--clean-all`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupSpec {
    /// Keep existing rules.
    #[default]
    None,
    /// Delete every rule except transitive ones.
    NonTransitive,
    /// Delete every rule.
    All,
}

impl From<CleanupSpec> for rules::Cleanup {
    fn from(c: CleanupSpec) -> Self {
        match c {
            CleanupSpec::None => rules::Cleanup::None,
            CleanupSpec::NonTransitive => rules::Cleanup::NonTransitive,
            CleanupSpec::All => rules::Cleanup::All,
        }
    }
}

/// santad's answer: a reply, or an error saying why not.
pub type Response = Result<Reply, ControlError>;

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// To [`Request::Version`].
    Version(VersionReply),
    /// To [`Request::Status`].
    Status(Box<StatusReply>),
    /// To [`Request::Metrics`]: every counter by name.
    Metrics(BTreeMap<String, u64>),
    /// To [`Request::FlushCache`].
    Flushed,
    /// To [`Request::CheckCache`]: the cached decision, if any.
    CacheState(Option<CachedDecision>),
    /// To [`Request::RuleCheck`].
    RuleCheck(RuleCheckReply),
    /// To [`Request::ApplyRules`].
    Applied(ApplyReply),
    /// To [`Request::ExportRules`].
    Rules(Vec<RuleSpec>),
}

/// Versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionReply {
    /// santad's package version.
    pub santad: String,
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
}

/// `santactl status`, grouped as Santa groups it (its JSON keys where the meaning is the same).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The daemon and its settings.
    pub daemon: DaemonStatus,
    /// The decision caches.
    pub cache: CacheStatus,
    /// Events and how the defaults were used.
    pub events: EventStatus,
    /// Rule counts by type.
    pub rule_types: RuleTypeCounts,
    /// Compiler and transitive rules.
    pub transitive_allowlisting: TransitiveStatus,
    /// What santad watches and the backstop (Linux).
    #[serde(default)]
    pub coverage: Option<CoverageStatus>,
}

/// What santad watches, the exec backstop and the host's hardening facts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageStatus {
    /// `every filesystem` or `WatchPaths`.
    pub mode: String,
    /// Filesystems marked.
    pub watched: Vec<FilesystemStatus>,
    /// Filesystems not marked, each with its reason.
    pub skipped: Vec<FilesystemStatus>,
    /// Mount-table changes followed since start.
    pub mount_changes_followed: u64,
    /// The dynamic loaders (their loads are part of the exec that asked for them).
    pub loaders: Vec<String>,
    /// Loader loads answered as part of their exec.
    pub loader_loads: u64,
    /// The BPF exec backstop.
    pub backstop: BackstopStatus,
    /// Who Lockdown applies to; `None`: everyone.
    pub lockdown_scope: Option<String>,
    /// `allowed` or `disabled`: whether unprivileged users can make user namespaces.
    pub unprivileged_userns: String,
    /// `vm.memfd_noexec`, if the kernel has it.
    pub memfd_noexec: Option<u8>,
}

/// One filesystem (superblock).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemStatus {
    /// `major:minor`.
    pub dev: String,
    /// Filesystem type.
    pub fs_type: String,
    /// A mount point of it.
    pub mount_point: String,
    /// Why it is skipped.
    pub reason: Option<String>,
}

/// The exec backstop's state and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackstopStatus {
    /// `active` or `inactive`.
    pub state: String,
    /// What it does, or why it is not there.
    pub detail: String,
    /// Execs it looked at.
    pub checked: u64,
    /// Execs it killed.
    pub denied: u64,
    /// Execs it reported and let run.
    pub reported: u64,
    /// Reports lost to a full ring buffer.
    pub dropped: u64,
    /// Execs whose entry point could not be looked up (reported, not killed).
    #[serde(default)]
    pub entry_unchecked: u64,
}

/// The daemon and its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// santad's version.
    pub version: String,
    /// `Monitor` or `Lockdown`.
    pub mode: String,
    /// `file`, `stdout` or `null`.
    pub log_type: String,
    /// Whether the decision log goes to a file.
    pub file_logging: bool,
    /// The decision log file, when it goes to one.
    pub log_path: Option<String>,
    /// `santa` (key=value lines) or `json`.
    pub log_format: String,
    /// The watched paths.
    pub watch_paths: Vec<String>,
    /// Worker threads.
    pub workers: u64,
    /// The rules database.
    pub rules_db: String,
    /// Seconds since santad started.
    pub uptime_secs: u64,
}

/// The decision caches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStatus {
    /// Entries holding a decision (some may be stale until reused).
    pub entries: u64,
    /// Entries the cache can hold.
    pub capacity: u64,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to evaluate.
    pub misses: u64,
    /// How long a deny is cached, in milliseconds.
    pub deny_ttl_ms: u64,
    /// Allows handed to the kernel's cache so far.
    pub kernel_allow_marks: u64,
}

/// Events and the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStatus {
    /// Executions answered by a worker.
    pub events_handled: u64,
    /// Executions held right now.
    pub in_flight: u64,
    /// How long an exec is held before the default answer, in milliseconds.
    pub deadline_ms: u64,
    /// The default answer (deadline passed, queue full): `allow`, or `deny` with `FailClosed` in
    /// Lockdown.
    pub default_decision: String,
    /// Answered with the default because the deadline came first.
    pub deadline_defaults: u64,
    /// Answered with the default because a queue was full.
    pub queue_full_defaults: u64,
    /// Depth of each worker's queue.
    pub queue_depth: u64,
    /// Every answer given with the default instead of a decision, all reasons together (the
    /// engine's and the platform's own).
    #[serde(default)]
    pub defaults_answered: u64,
    /// The same by reason, every reason listed, zero or not: the engine's ([`ENGINE_DEFAULT_REASONS`])
    /// and the platform's (on Linux `stat_failed`: a held exec whose file could not be stat'ed).
    #[serde(default)]
    pub defaults_by_reason: BTreeMap<String, u64>,
}

/// The engine's reasons for a default answer, as [`EventStatus::defaults_by_reason`] names them
/// (`santa_hotpath::DefaultReason::name`), each with why it happens.
pub const ENGINE_DEFAULT_REASONS: [(&str, &str); 5] = [
    ("deadline", "no decision before the deadline"),
    ("queue_full", "the worker's queue was full"),
    ("slots_full", "every in-flight slot was taken"),
    ("shutting_down", "santad was shutting down"),
    ("evaluation_failed", "the evaluation failed"),
];

/// The platform's own reasons for a default answer, given before the engine saw the event.
pub const PLATFORM_DEFAULT_REASONS: [(&str, &str); 1] =
    [("stat_failed", "the file could not be stat'ed")];

/// Why a default answer of this reason happens, for people; `None` for a reason this build does
/// not know (a newer santad).
pub fn default_reason_text(reason: &str) -> Option<&'static str> {
    ENGINE_DEFAULT_REASONS
        .iter()
        .chain(PLATFORM_DEFAULT_REASONS.iter())
        .find(|(name, _)| *name == reason)
        .map(|(_, why)| *why)
}

/// Rule counts by type (Santa's keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTypeCounts {
    /// Binary rules.
    pub binary_rules: i64,
    /// Certificate rules.
    pub certificate_rules: i64,
    /// Team ID rules.
    pub teamid_rules: i64,
    /// Signing ID rules.
    pub signingid_rules: i64,
    /// CDHash rules.
    pub cdhash_rules: i64,
    /// Every rule.
    pub total_rules: i64,
}

/// Transitive allowlisting (Santa's keys).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitiveStatus {
    /// `EnableTransitiveRules`.
    pub enabled: bool,
    /// Allow-compiler rules.
    pub compiler_rules: i64,
    /// Transitive rules.
    pub transitive_rules: i64,
}

/// A cached decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedDecision {
    /// `allow` or `deny`.
    pub action: String,
    /// Santa's reason (`BINARY`, `UNKNOWN`, …).
    pub reason: String,
}

/// A rule, as a check reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    /// The identifier.
    pub identifier: String,
    /// Santa's type name.
    pub rule_type: String,
    /// Santa's state value.
    pub state: i64,
}

impl RuleView {
    /// Santa's one-line description (`SNTRule stringifyWithColor:` without colour), e.g.
    /// `Blocked (Binary, Silent)`.
    pub fn santa_text(&self) -> String {
        rule_text(&self.rule_type, self.state)
    }
}

/// Santa's one-line description of a rule of this type and state.
pub fn rule_text(rule_type: &str, state: i64) -> String {
    use rules::RuleState as S;
    let state = S::from_db_value(state);
    let verdict = match state {
        Some(S::Allow | S::AllowCompiler | S::AllowTransitive)
        | Some(S::AllowLocalBinary | S::AllowLocalSigningId) => "Allowed",
        Some(S::Block | S::SilentBlock | S::SilentBlockGui | S::SilentBlockTty) => "Blocked",
        Some(S::Cel | S::CelV2) => "CEL",
        Some(S::Seatbelt) => "Seatbelt",
        None => return "None".to_owned(),
    };
    let kind = match rules::RuleType::from_santa_name(rule_type) {
        Some(rules::RuleType::CdHash) => "CDHash",
        Some(rules::RuleType::Binary) => "Binary",
        Some(rules::RuleType::SigningId) => "SigningID",
        Some(rules::RuleType::Certificate) => "Certificate",
        Some(rules::RuleType::TeamId) => "TeamID",
        None => "Unknown",
    };
    let extra = match state {
        Some(S::AllowCompiler) => ", Compiler",
        Some(S::AllowTransitive) => ", Transitive",
        Some(S::SilentBlock) => ", Silent",
        Some(S::SilentBlockGui) => ", Silent GUI",
        Some(S::SilentBlockTty) => ", Silent TTY",
        _ => "",
    };
    format!("{verdict} ({kind}{extra})")
}

/// The answer to a rule check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCheckReply {
    /// The rule that applies, if any.
    pub rule: Option<RuleView>,
    /// For a file: Santa's "Expected Decision" text (`Allowed by rule`, `Blocked (Regex)`, …).
    pub decision: Option<String>,
    /// For a file: `allow` or `deny`.
    pub action: Option<String>,
    /// For a file: Santa's reason (`BINARY`, `UNKNOWN`, …).
    pub reason: Option<String>,
}

/// What a rule change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReply {
    /// Rules inserted or replaced.
    pub upserted: u64,
    /// Rules deleted by removals.
    pub removed: u64,
    /// Whether the caches were flushed.
    pub flushed: bool,
}

/// Why santad did not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlError {
    /// The kind, for programs.
    pub kind: ErrorKind,
    /// The explanation, for people.
    pub message: String,
}

/// Kinds of [`ControlError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The message was not a valid request.
    Malformed,
    /// The message was larger than the peer may send.
    TooLarge,
    /// The peer was too slow.
    TimedOut,
    /// Only root may do this.
    PermissionDenied,
    /// The request was well-formed but its content is not valid (a bad identifier, …).
    InvalidRequest,
    /// The rules database failed.
    Store,
    /// Every handler is busy; try again.
    Busy,
    /// Something else went wrong inside santad.
    Internal,
}

impl ControlError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ControlError {
        ControlError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ControlError {}

/// Text for an error message: at most 96 characters of attacker-chosen input.
pub fn shorten(text: &str) -> String {
    const CHARS_MAX: usize = 96;
    if text.chars().count() <= CHARS_MAX {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(CHARS_MAX).collect();
    s.push('…');
    s
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

/// Why a message could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection before a whole message arrived.
    Truncated {
        /// Bytes of the message (header included) that did arrive.
        received: usize,
    },
    /// The announced length is over the cap.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// Nothing arrived for [`IDLE_TIMEOUT`], or the whole message took longer than allowed.
    TimedOut,
    /// The reader was asked to stop (santad is shutting down).
    Stopped,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { received } => {
                write!(f, "connection closed mid-message after {received} bytes")
            }
            Self::TooLarge { len, max } => {
                write!(f, "message of {len} bytes is over the {max}-byte limit")
            }
            Self::TimedOut => f.write_str("timed out"),
            Self::Stopped => f.write_str("santad is shutting down"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Bytes of a message's header: the body's length as a big-endian `u32`.
pub const FRAME_HEADER_BYTES: usize = 4;

/// The least a body buffer grows by: a 4 KiB path plus hashes fits in one step, and a client
/// announcing a large body and sending little makes santad hold at most this much more than it
/// sent (never more than it announced).
pub const BODY_GROWTH_MIN_BYTES: usize = 16 << 10;

/// Writes one message (length prefix and body) in a single buffer.
pub fn write_frame(stream: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    stream.write_all(&buf)?;
    stream.flush()
}

/// One message being decoded from bytes as they arrive: no I/O, so every reader (the socket
/// reader [`read_frame`], [`decode_frame`], the fuzz target) runs the same code.
///
/// Bounds: the announced length is checked against `max` as soon as the header is whole, before
/// any body byte is kept; the body buffer is never larger than the announced length, and never
/// larger than twice the body bytes received or [`BODY_GROWTH_MIN_BYTES`], whichever is more
/// ([`FrameDecoder::buffer_bytes`]).
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    header: [u8; FRAME_HEADER_BYTES],
    header_got: usize,
    body_len: Option<usize>,
    body: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder for one message whose body may be at most `max` bytes.
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            max,
            header: [0; FRAME_HEADER_BYTES],
            header_got: 0,
            body_len: None,
            body: Vec::new(),
        }
    }

    /// Bytes the message still needs: the rest of the header, then the rest of the body; 0 once
    /// complete. A reader asks for at most this many, so it never takes bytes past the message.
    pub fn wanted(&self) -> usize {
        match self.body_len {
            None => FRAME_HEADER_BYTES - self.header_got,
            Some(len) => len - self.body.len(),
        }
    }

    /// Whether the whole message has arrived.
    pub fn is_complete(&self) -> bool {
        self.body_len.is_some_and(|len| self.body.len() == len)
    }

    /// Bytes of the message (header included) taken so far.
    pub fn received(&self) -> usize {
        self.header_got + self.body.len()
    }

    /// Bytes the decoder holds allocated for the body.
    pub fn buffer_bytes(&self) -> usize {
        self.body.capacity()
    }

    /// Takes bytes from the front of `input`, at most [`FrameDecoder::wanted`]; returns how many
    /// it took. Fails, and keeps failing, once the header announces more than `max`.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, FrameError> {
        let mut used = 0;
        let len = match self.body_len {
            Some(len) => len,
            None => {
                let n = (FRAME_HEADER_BYTES - self.header_got).min(input.len());
                self.header[self.header_got..self.header_got + n].copy_from_slice(&input[..n]);
                self.header_got += n;
                used = n;
                if self.header_got < FRAME_HEADER_BYTES {
                    return Ok(used);
                }
                let len = u32::from_be_bytes(self.header);
                if u64::from(len) > self.max as u64 {
                    return Err(FrameError::TooLarge {
                        len: len.into(),
                        max: self.max,
                    });
                }
                // At most `max`, a usize: the conversion cannot truncate.
                let len = len as usize;
                self.body_len = Some(len);
                len
            }
        };
        let rest = &input[used..];
        let n = (len - self.body.len()).min(rest.len());
        if n > 0 {
            let need = self.body.len() + n;
            if need > self.body.capacity() {
                let target = need
                    .max(self.body.capacity().saturating_mul(2))
                    .max(BODY_GROWTH_MIN_BYTES)
                    .min(len);
                self.body.reserve_exact(target - self.body.len());
            }
            self.body.extend_from_slice(&rest[..n]);
        }
        Ok(used + n)
    }

    /// The body, if the whole message arrived.
    pub fn finish(self) -> Result<Vec<u8>, FrameError> {
        if self.is_complete() {
            Ok(self.body)
        } else {
            Err(FrameError::Truncated {
                received: self.received(),
            })
        }
    }
}

/// Decodes the message at the front of `bytes` (body at most `max` bytes): its body, and how
/// many bytes of `bytes` it took.
pub fn decode_frame(bytes: &[u8], max: usize) -> Result<(Vec<u8>, usize), FrameError> {
    let mut decoder = FrameDecoder::new(max);
    let used = decoder.feed(bytes)?;
    Ok((decoder.finish()?, used))
}

/// Parses a message body as a [`Request`]. Nesting is bounded by `serde_json`'s recursion limit
/// (128 levels), so a deeply nested body is an error, not a deep recursion; strings must be UTF-8.
pub fn parse_request(body: &[u8]) -> Result<Request, ControlError> {
    serde_json::from_slice::<Request>(body).map_err(|e| {
        ControlError::new(
            ErrorKind::Malformed,
            format!("not a request: {}", shorten(&e.to_string())),
        )
    })
}

/// Why [`decode_request`] found no request.
#[derive(Debug)]
pub enum DecodeError {
    /// The bytes are not one whole message within the cap.
    Frame(FrameError),
    /// The message is not a request.
    Request(ControlError),
}

/// What santad makes of the bytes a peer sent, without the socket: one message of at most `max`
/// bytes, parsed as a request (bytes after the message are not read: one request per connection).
pub fn decode_request(bytes: &[u8], max: usize) -> Result<Request, DecodeError> {
    let (body, _) = decode_frame(bytes, max).map_err(DecodeError::Frame)?;
    parse_request(&body).map_err(DecodeError::Request)
}

/// Reads one message of at most `max` bytes from `stream`, giving up when nothing arrives for
/// `idle`, when `deadline` passes, or when `stop()` says so. The body buffer grows with what
/// arrives, never with what the header announces ([`FrameDecoder`]).
///
/// A peer that sends a byte just often enough to beat `idle` is still cut off at `deadline`
/// (checked after every read; each wait is at most `READ_SLICE` and ends by the deadline).
pub fn read_frame(
    stream: &mut UnixStream,
    max: usize,
    idle: Duration,
    deadline: Instant,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<u8>, FrameError> {
    let mut decoder = FrameDecoder::new(max);
    let mut last_progress = Instant::now();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if decoder.is_complete() {
            return decoder.finish();
        }
        if stop() {
            return Err(FrameError::Stopped);
        }
        let now = Instant::now();
        if now >= deadline || now.duration_since(last_progress) >= idle {
            return Err(FrameError::TimedOut);
        }
        let slice = READ_SLICE
            .min(deadline.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(slice))
            .map_err(FrameError::Io)?;
        let want = decoder.wanted().min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(FrameError::Truncated {
                    received: decoder.received(),
                });
            }
            Ok(n) => {
                last_progress = Instant::now();
                decoder.feed(&chunk[..n])?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Why santactl got no answer.
#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be reached (santad not running, wrong path, no permission).
    Connect {
        /// The socket path.
        path: std::path::PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The request could not be sent.
    Send(io::Error),
    /// The answer could not be read.
    Receive(FrameError),
    /// The answer is not valid JSON of the expected shape.
    BadReply(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { path, source } => {
                write!(f, "cannot reach santad at {}: {source}", path.display())
            }
            Self::Send(e) => write!(f, "sending to santad: {e}"),
            Self::Receive(e) => write!(f, "reading santad's answer: {e}"),
            Self::BadReply(e) => write!(f, "santad's answer is not understood: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The bytes santactl sends for `request`: one message, header and JSON body (what
/// [`decode_request`] reads back).
pub fn encode_request(request: &Request) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(request).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// Sends one request to the santad listening at `socket` and waits up to `timeout` for its answer.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_owned(),
        source,
    })?;
    let message = encode_request(request).map_err(ClientError::Send)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(ClientError::Send)?;
    stream
        .write_all(&message)
        .and_then(|()| stream.flush())
        .map_err(ClientError::Send)?;
    let reply = read_frame(
        &mut stream,
        RESPONSE_BYTES_MAX,
        timeout,
        Instant::now() + timeout,
        &|| false,
    )
    .map_err(ClientError::Receive)?;
    serde_json::from_slice(&reply).map_err(|e| ClientError::BadReply(e.to_string()))
}

#[cfg(test)]
mod tests;
