//! The control socket: the protocol `santactl` speaks to santad, and (on Linux) santad's server.
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
//! The protocol half of this module is platform-neutral so `santactl` builds everywhere; the
//! server half ([`server`]) is Linux-only.

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
fn shorten(text: &str) -> String {
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

/// Writes one message (length prefix and body) in a single buffer.
pub fn write_frame(stream: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    stream.write_all(&buf)?;
    stream.flush()
}

/// Reads one message of at most `max` bytes from `stream`, giving up when nothing arrives for
/// `idle`, when `deadline` passes, or when `stop()` says so. The body buffer grows with what
/// arrives, never with what the header announces.
pub fn read_frame(
    stream: &mut UnixStream,
    max: usize,
    idle: Duration,
    deadline: Instant,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0usize;
    let mut body = Vec::new();
    let mut last_progress = Instant::now();
    let mut chunk = [0u8; 16 << 10];
    let mut body_len: Option<usize> = None;
    loop {
        if let Some(len) = body_len
            && body.len() == len
        {
            return Ok(body);
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
        let want = match body_len {
            None => &mut header[got..],
            Some(len) => {
                let left = (len - body.len()).min(chunk.len());
                &mut chunk[..left]
            }
        };
        match stream.read(want) {
            Ok(0) => {
                return Err(FrameError::Truncated {
                    received: got + body.len(),
                });
            }
            Ok(n) => {
                last_progress = Instant::now();
                match body_len {
                    None => {
                        got += n;
                        if got == header.len() {
                            let len = u32::from_be_bytes(header);
                            if len as u64 > max as u64 {
                                return Err(FrameError::TooLarge {
                                    len: len.into(),
                                    max,
                                });
                            }
                            body_len = Some(len as usize);
                        }
                    }
                    Some(_) => body.extend_from_slice(&chunk[..n]),
                }
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

/// Sends one request to the santad listening at `socket` and waits up to `timeout` for its answer.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_owned(),
        source,
    })?;
    let body = serde_json::to_vec(request).map_err(|e| ClientError::BadReply(e.to_string()))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(ClientError::Send)?;
    write_frame(&mut stream, &body).map_err(ClientError::Send)?;
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

#[cfg(target_os = "linux")]
pub mod server {
    //! santad's side: a listener thread and a small fixed pool of handler threads.
    //!
    //! Why a pool of [`HANDLER_THREADS`] fed through a bounded queue: requests take microseconds
    //! to a few hundred milliseconds (an import), but a slow or hostile client can hold a handler
    //! for up to its deadline. With two handlers, one such client cannot stall everyone; with a
    //! bounded queue (and "busy" answered when it is full) a flood of connections costs a fixed
    //! number of threads and fds. Nothing here is on the exec path: the workers never wait on it.

    use super::*;
    use crate::config::{Config, LogDestination, LogFormat};
    use crate::eventlog::EventLog;
    use santa_hotpath::{CountersSnapshot, FileKey, FileStamp, FlushReason};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
    use std::thread::JoinHandle;

    /// Handler threads.
    pub const HANDLER_THREADS: usize = 2;
    /// Accepted connections waiting for a handler; beyond this a client is told "busy".
    pub const PENDING_CONNECTIONS_MAX: usize = 16;
    /// How long the listener waits in `poll` before re-checking the stop flag.
    const ACCEPT_POLL_MS: i32 = 250;
    /// How long santad tries to deliver an error to a client it is dropping (busy, oversized).
    const ERROR_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

    /// What the control server needs from the engine and the platform, kept behind a trait so
    /// this module knows nothing of fanotify or the engine's type parameters.
    pub trait EngineControl: Send + Sync + 'static {
        /// Drops every cached decision: the engine's (epoch bump, counted under `reason`) and the
        /// kernel's allow cache.
        fn flush(&self, reason: FlushReason) -> Result<(), String>;
        /// The engine's counters.
        fn counters(&self) -> CountersSnapshot;
        /// Live entries in the decision cache.
        fn cache_entries(&self) -> usize;
        /// Executions held right now.
        fn in_flight(&self) -> usize;
        /// Worker threads.
        fn workers(&self) -> usize;
        /// The cached decision for this file, read-only.
        fn peek(&self, key: FileKey, stamp: FileStamp) -> Option<rules::Decision>;
        /// Platform counters (fanotify), by name.
        fn platform_metrics(&self) -> Vec<(&'static str, u64)>;
    }

    /// The rules database, opened by the first control request that needs it.
    #[derive(Debug)]
    pub struct RulesDb {
        path: PathBuf,
        store: Option<rules::RuleStore>,
    }

    impl RulesDb {
        /// The database at `path` (not opened yet).
        pub fn new(path: PathBuf) -> RulesDb {
            RulesDb { path, store: None }
        }

        /// Points at another file (a reload changed `RulesDbPath`).
        pub fn set_path(&mut self, path: &Path) {
            if self.path != path {
                self.path = path.to_owned();
                self.store = None;
            }
        }

        /// The open store.
        pub fn store(&mut self) -> Result<&mut rules::RuleStore, rules::StoreError> {
            let store = match self.store.take() {
                Some(store) => store,
                None => {
                    if let Some(dir) = self.path.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    rules::RuleStore::open(&self.path)?
                }
            };
            Ok(self.store.insert(store))
        }

        /// The database path.
        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    /// Counters of the control socket.
    #[derive(Debug, Default)]
    pub struct ControlCounters {
        /// Connections accepted.
        pub connections: AtomicU64,
        /// Requests answered with a reply.
        pub replies: AtomicU64,
        /// Requests refused because the peer is not root.
        pub refused: AtomicU64,
        /// Messages that were not valid requests.
        pub malformed: AtomicU64,
        /// Messages over the cap.
        pub too_large: AtomicU64,
        /// Peers dropped for slowness or mid-message disconnects.
        pub dropped: AtomicU64,
        /// Connections turned away because every handler was busy.
        pub busy: AtomicU64,
    }

    /// Everything the handlers share with the daemon.
    pub struct ControlContext {
        engine: Arc<dyn EngineControl>,
        policy: Arc<rules::PolicyEngine>,
        log: Arc<EventLog>,
        config: Mutex<Arc<Config>>,
        rules: Mutex<RulesDb>,
        started: Instant,
        /// The socket's counters.
        pub counters: ControlCounters,
    }

    impl fmt::Debug for ControlContext {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ControlContext").finish_non_exhaustive()
        }
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        // A handler that panicked cannot leave these half-updated (single assignments).
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    impl ControlContext {
        /// The shared state, for the running daemon.
        pub fn new(
            engine: Arc<dyn EngineControl>,
            policy: Arc<rules::PolicyEngine>,
            log: Arc<EventLog>,
            config: Config,
        ) -> Arc<ControlContext> {
            Arc::new(ControlContext {
                engine,
                policy,
                log,
                rules: Mutex::new(RulesDb::new(config.rules_db_path.clone())),
                config: Mutex::new(Arc::new(config)),
                started: Instant::now(),
                counters: ControlCounters::default(),
            })
        }

        /// Runs `f` with the rules database locked: every publisher of rules snapshots (the
        /// control handlers and santad's reload) goes through here, so a snapshot built from an
        /// older read of the database can never replace a newer one.
        pub fn with_rules<T>(&self, f: impl FnOnce(&mut RulesDb) -> T) -> T {
            f(&mut lock(&self.rules))
        }

        /// The configuration now in force (after a reload).
        pub fn set_config(&self, config: Config) {
            *lock(&self.config) = Arc::new(config);
        }

        fn config(&self) -> Arc<Config> {
            lock(&self.config).clone()
        }

        /// Answers one request from a peer with uid `uid`.
        pub fn handle(&self, uid: u32, request: Request) -> Response {
            if request.needs_root() && uid != 0 {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "control: refused {} from uid {uid}: only root may change policy",
                    request.name()
                );
                return Err(ControlError::new(
                    ErrorKind::PermissionDenied,
                    format!(
                        "{}: permission denied (only root may do this)",
                        request.name()
                    ),
                ));
            }
            let reply = match request {
                Request::Version => Ok(Reply::Version(VersionReply {
                    santad: env!("CARGO_PKG_VERSION").to_owned(),
                    protocol: PROTOCOL_VERSION,
                })),
                Request::Status => self.status().map(|s| Reply::Status(Box::new(s))),
                Request::Metrics => Ok(Reply::Metrics(self.metrics())),
                Request::FlushCache => self
                    .engine
                    .flush(FlushReason::Operator)
                    .map(|()| Reply::Flushed)
                    .map_err(|e| ControlError::new(ErrorKind::Internal, e)),
                Request::CheckCache { file } => Ok(Reply::CacheState(self.check_cache(file))),
                Request::RuleCheck { target } => self.rule_check(&target).map(Reply::RuleCheck),
                Request::ApplyRules { rules, cleanup } => {
                    self.apply(&rules, cleanup).map(Reply::Applied)
                }
                Request::ExportRules => self.export().map(Reply::Rules),
            };
            if reply.is_ok() {
                self.counters.replies.fetch_add(1, Ordering::Relaxed);
            }
            reply
        }

        fn store_error(e: rules::StoreError) -> ControlError {
            ControlError::new(ErrorKind::Store, e.to_string())
        }

        fn status(&self) -> Result<StatusReply, ControlError> {
            let config = self.config();
            let counts = self
                .with_rules(|db| db.store().and_then(|s| s.counts()))
                .map_err(Self::store_error)?;
            let c = self.engine.counters();
            let policy = self.policy.policy();
            let pc = policy.config();
            let by = |t: rules::RuleType| {
                rules::RuleType::ALL
                    .iter()
                    .position(|&x| x == t)
                    .map_or(0, |i| counts.by_type[i])
            };
            let (log_type, log_path) = match &config.event_log_destination {
                LogDestination::Stdout => ("stdout", None),
                LogDestination::File(p) => ("file", Some(p.display().to_string())),
                LogDestination::Null => ("null", None),
            };
            let kernel_marks = self
                .engine
                .platform_metrics()
                .into_iter()
                .find(|(k, _)| *k == "fanotify.ignore_marks")
                .map_or(0, |(_, v)| v);
            Ok(StatusReply {
                daemon: DaemonStatus {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    mode: match pc.mode {
                        rules::ClientMode::Monitor => "Monitor",
                        rules::ClientMode::Lockdown => "Lockdown",
                    }
                    .to_owned(),
                    log_type: log_type.to_owned(),
                    file_logging: log_path.is_some(),
                    log_path,
                    log_format: match config.event_log_format {
                        LogFormat::KeyValue { .. } => "santa",
                        LogFormat::Json => "json",
                    }
                    .to_owned(),
                    watch_paths: config
                        .watch_paths
                        .iter()
                        .map(|w| w.path.display().to_string())
                        .collect(),
                    workers: self.engine.workers() as u64,
                    rules_db: self.with_rules(|db| db.path().display().to_string()),
                    uptime_secs: self.started.elapsed().as_secs(),
                },
                cache: CacheStatus {
                    entries: self.engine.cache_entries() as u64,
                    capacity: config.cache_capacity,
                    hits: c.hits,
                    misses: c.misses,
                    deny_ttl_ms: config.deny_cache_ttl_ms,
                    kernel_allow_marks: kernel_marks,
                },
                events: EventStatus {
                    events_handled: c.events,
                    in_flight: self.engine.in_flight() as u64,
                    deadline_ms: config.deadline_ms,
                    default_decision: if pc.fail_closed && pc.mode == rules::ClientMode::Lockdown {
                        "deny"
                    } else {
                        "allow"
                    }
                    .to_owned(),
                    deadline_defaults: c.deadline_defaults,
                    queue_full_defaults: c.queue_full_defaults,
                    queue_depth: config.queue_depth,
                },
                rule_types: RuleTypeCounts {
                    binary_rules: by(rules::RuleType::Binary),
                    certificate_rules: by(rules::RuleType::Certificate),
                    teamid_rules: by(rules::RuleType::TeamId),
                    signingid_rules: by(rules::RuleType::SigningId),
                    cdhash_rules: by(rules::RuleType::CdHash),
                    total_rules: counts.total,
                },
                transitive_allowlisting: TransitiveStatus {
                    enabled: pc.enable_transitive_rules,
                    compiler_rules: counts.compiler,
                    transitive_rules: counts.transitive,
                },
            })
        }

        fn metrics(&self) -> BTreeMap<String, u64> {
            let c = self.engine.counters();
            let mut m = BTreeMap::new();
            let mut put = |k: &str, v: u64| {
                m.insert(k.to_owned(), v);
            };
            put("engine.events", c.events);
            put("engine.cache_hits", c.hits);
            put("engine.cache_misses", c.misses);
            put("engine.cache_waits", c.waits);
            put("engine.evaluations", c.evaluations);
            put("engine.evaluator_panics", c.evaluator_panics);
            put("engine.deadline_defaults", c.deadline_defaults);
            put("engine.queue_full_defaults", c.queue_full_defaults);
            put("engine.slots_full_defaults", c.slots_full_defaults);
            put("engine.shutdown_defaults", c.shutdown_defaults);
            put("engine.steals", c.steals);
            put("engine.wakeups", c.wakeups);
            put("engine.invalidations", c.invalidations);
            for reason in FlushReason::ALL {
                put(
                    &format!("engine.flushes.{}", reason.name()),
                    c.flushes_for(reason),
                );
            }
            put("engine.in_flight", self.engine.in_flight() as u64);
            put("engine.cache_entries", self.engine.cache_entries() as u64);
            for (k, v) in self.engine.platform_metrics() {
                put(k, v);
            }
            put("log.written", self.log.written());
            put("log.dropped", self.log.dropped());
            put("log.write_errors", self.log.write_errors());
            let cc = &self.counters;
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            put("control.connections", get(&cc.connections));
            put("control.replies", get(&cc.replies));
            put("control.refused", get(&cc.refused));
            put("control.malformed", get(&cc.malformed));
            put("control.too_large", get(&cc.too_large));
            put("control.dropped", get(&cc.dropped));
            put("control.busy", get(&cc.busy));
            put("daemon.uptime_secs", self.started.elapsed().as_secs());
            m
        }

        fn check_cache(&self, file: CacheKey) -> Option<CachedDecision> {
            let key = FileKey {
                dev: file.dev,
                ino: file.ino,
            };
            let stamp = FileStamp {
                ctime_ns: file.ctime_ns,
                size: file.size,
            };
            self.engine.peek(key, stamp).map(|d| CachedDecision {
                action: action_name(d.action).to_owned(),
                reason: d.reason.as_str().to_owned(),
            })
        }

        fn rule_check(&self, target: &CheckTarget) -> Result<RuleCheckReply, ControlError> {
            let invalid = |m: String| ControlError::new(ErrorKind::InvalidRequest, m);
            match target {
                CheckTarget::Identifier {
                    rule_type,
                    identifier,
                } => {
                    let t = rules::RuleType::from_santa_name(rule_type).ok_or_else(|| {
                        invalid(format!("unknown rule type {:?}", shorten(rule_type)))
                    })?;
                    let id = rules::RuleIdentifier::parse(t, identifier)
                        .map_err(|e| invalid(e.to_string()))?;
                    let mut ids = rules::RuleIdentifiers::default();
                    match &id {
                        rules::RuleIdentifier::CdHash(h) => ids.cdhash = Some(*h),
                        rules::RuleIdentifier::Binary(h) => ids.binary = Some(*h),
                        rules::RuleIdentifier::Certificate(h) => ids.certificate = Some(*h),
                        rules::RuleIdentifier::TeamId(t) => ids.team_id = Some(*t),
                        rules::RuleIdentifier::SigningId(s) => {
                            ids.signing_id = Some(rules::SigningIdRef {
                                prefix: s.prefix(),
                                ident: s.ident(),
                            });
                        }
                    }
                    let snapshot = self.policy.snapshot();
                    let rule = snapshot.lookup(&ids).and_then(|m| {
                        m.identifier().map(|id| RuleView {
                            identifier: id.to_string(),
                            rule_type: m.rule_type().santa_name().to_owned(),
                            state: m.state().db_value(),
                        })
                    });
                    Ok(RuleCheckReply {
                        rule,
                        decision: None,
                        action: None,
                        reason: None,
                    })
                }
                CheckTarget::File { facts } => {
                    let hex32 = |what: &str, s: &str| {
                        rules::Sha256::from_hex(s).ok_or_else(|| {
                            invalid(format!("{what}: expected 64 hexadecimal characters"))
                        })
                    };
                    let sha256 = hex32("sha256", &facts.sha256)?;
                    let cert = facts
                        .cert_sha256
                        .as_deref()
                        .map(|c| hex32("cert_sha256", c))
                        .transpose()?;
                    let cdhash = facts
                        .cdhash
                        .as_deref()
                        .map(|c| {
                            rules::CdHash::from_hex(c).ok_or_else(|| {
                                invalid("cdhash: expected 40 hexadecimal characters".into())
                            })
                        })
                        .transpose()?;
                    let team_id = match facts.team_id.as_deref() {
                        Some(t) => Some(rules::TeamId::parse_rule(t).ok_or_else(|| {
                            invalid(format!("team_id {:?} is not a Team ID", shorten(t)))
                        })?),
                        None => None,
                    };
                    // The rules crate matches the raw identifier; Santa's Signing ID carries a
                    // `TEAMID:` or `platform:` prefix.
                    let ident = facts
                        .signing_id
                        .as_deref()
                        .map(|s| s.split_once(':').map_or(s, |(_, ident)| ident));
                    let identity = rules::FileIdentity {
                        sha256,
                        cdhash,
                        signing_id: ident,
                        team_id,
                        cert_sha256: cert,
                        signing_status: facts.signing_status.into(),
                        is_platform_binary: facts.platform_binary,
                        path: facts.path.as_bytes(),
                    };
                    let decision = self.policy.evaluator().decide(&identity);
                    Ok(RuleCheckReply {
                        rule: decision.matched.as_ref().map(|m| RuleView {
                            identifier: m.identifier.to_string(),
                            rule_type: m.identifier.rule_type().santa_name().to_owned(),
                            state: m.state.db_value(),
                        }),
                        decision: Some(decision_text(&decision)),
                        action: Some(action_name(decision.action).to_owned()),
                        reason: Some(decision.reason.as_str().to_owned()),
                    })
                }
            }
        }

        fn apply(
            &self,
            specs: &[RuleSpec],
            cleanup: CleanupSpec,
        ) -> Result<ApplyReply, ControlError> {
            let changes = specs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    s.to_change().map_err(|e| {
                        ControlError::new(ErrorKind::InvalidRequest, format!("rule {i}: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if changes.is_empty() && cleanup == CleanupSpec::None {
                return Err(ControlError::new(
                    ErrorKind::InvalidRequest,
                    "no rules to add or remove",
                ));
            }
            let outcome = self.with_rules(|db| -> Result<_, rules::StoreError> {
                let store = db.store()?;
                let outcome = store.apply(&changes, cleanup.into())?;
                let (snapshot, report) = store.build_snapshot()?;
                if report.skipped_count > 0 {
                    log::warn!(
                        "rules database {}: {} rows skipped",
                        db.path().display(),
                        report.skipped_count
                    );
                }
                // Publish first, then flush: a decision made on the old snapshot after the flush
                // would otherwise be cached under the new epoch.
                self.policy.publish_snapshot(snapshot);
                Ok(outcome)
            });
            let outcome = outcome.map_err(Self::store_error)?;
            if outcome.flush_cache
                && let Err(e) = self.engine.flush(FlushReason::Rules)
            {
                log::error!("control: flushing caches after a rule change: {e}");
            }
            log::info!(
                "control: rules changed ({} upserted, {} removed, cleanup {:?}, caches {})",
                outcome.upserted,
                outcome.removed,
                cleanup,
                if outcome.flush_cache {
                    "flushed"
                } else {
                    "kept"
                }
            );
            Ok(ApplyReply {
                upserted: outcome.upserted as u64,
                removed: outcome.removed as u64,
                flushed: outcome.flush_cache,
            })
        }

        fn export(&self) -> Result<Vec<RuleSpec>, ControlError> {
            let (list, _) = self
                .with_rules(|db| db.store().and_then(|s| s.rules()))
                .map_err(Self::store_error)?;
            Ok(list.iter().map(RuleSpec::from_rule).collect())
        }
    }

    fn action_name(a: rules::Action) -> &'static str {
        match a {
            rules::Action::Allow => "allow",
            rules::Action::Deny => "deny",
        }
    }

    /// Santa's "Expected Decision" wording (`staticDecisionForFilePath:`), extended with the
    /// reasons only this pipeline has (failsafe, bad signature).
    pub fn decision_text(d: &rules::Decision) -> String {
        let verb = |a| match a {
            rules::Action::Allow => "Allowed",
            rules::Action::Deny => "Blocked",
        };
        if d.matched.is_some() {
            return match d.action {
                rules::Action::Allow => "Allowed by rule",
                rules::Action::Deny => "Denied by rule",
            }
            .to_owned();
        }
        match d.reason {
            rules::Reason::Platform => "Allowlist".to_owned(),
            rules::Reason::Scope => format!("{} (Regex)", verb(d.action)),
            rules::Reason::Unknown => {
                let mode = match d.mode {
                    rules::ClientMode::Monitor => "Monitor",
                    rules::ClientMode::Lockdown => "Lockdown",
                };
                format!("{} (Unknown, {mode} mode)", verb(d.action))
            }
            rules::Reason::Failsafe => "Allowed (Failsafe)".to_owned(),
            rules::Reason::Cert => format!("{} (Bad signature)", verb(d.action)),
            other => format!("{} ({})", verb(d.action), other.as_str()),
        }
    }

    /// The peer's uid and pid (`SO_PEERCRED`: what the kernel recorded at `connect`, which the
    /// peer cannot forge).
    pub fn peer_credentials(stream: &UnixStream) -> io::Result<(u32, i32)> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: u32::MAX,
            gid: u32::MAX,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: the fd is a connected Unix socket we own for the duration of the call; `cred`
        // is a properly aligned ucred of `len` bytes, which getsockopt writes at most.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if len as usize != std::mem::size_of::<libc::ucred>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "short SO_PEERCRED answer",
            ));
        }
        Ok((cred.uid, cred.pid))
    }

    fn send(stream: &mut UnixStream, response: &Response) -> io::Result<()> {
        let body = serde_json::to_vec(response)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        write_frame(stream, &body)
    }

    fn send_error(stream: &mut UnixStream, kind: ErrorKind, message: String) {
        let _ = stream.set_write_timeout(Some(ERROR_WRITE_TIMEOUT));
        let _ = send(stream, &Err(ControlError::new(kind, message)));
    }

    /// Serves one connection: one request, one answer.
    fn serve(ctx: &ControlContext, mut stream: UnixStream, stop: &AtomicBool) {
        let (uid, pid) = match peer_credentials(&stream) {
            Ok(c) => c,
            Err(e) => {
                // Without credentials nobody is authorised for anything.
                send_error(
                    &mut stream,
                    ErrorKind::PermissionDenied,
                    format!("peer credentials unavailable: {e}"),
                );
                return;
            }
        };
        let (max, deadline) = if uid == 0 {
            (REQUEST_BYTES_MAX_ROOT, REQUEST_DEADLINE_ROOT)
        } else {
            (
                REQUEST_BYTES_MAX_UNPRIVILEGED,
                REQUEST_DEADLINE_UNPRIVILEGED,
            )
        };
        let body = match read_frame(
            &mut stream,
            max,
            IDLE_TIMEOUT,
            Instant::now() + deadline,
            &|| stop.load(Ordering::Relaxed),
        ) {
            Ok(body) => body,
            Err(FrameError::TooLarge { len, max }) => {
                ctx.counters.too_large.fetch_add(1, Ordering::Relaxed);
                send_error(
                    &mut stream,
                    ErrorKind::TooLarge,
                    format!("request of {len} bytes is over the {max}-byte limit for uid {uid}"),
                );
                return;
            }
            Err(FrameError::TimedOut) => {
                ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
                send_error(&mut stream, ErrorKind::TimedOut, "request timed out".into());
                return;
            }
            Err(_) => {
                ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let response = match serde_json::from_slice::<Request>(&body) {
            Ok(request) => {
                log::debug!("control: {} from uid {uid} pid {pid}", request.name());
                ctx.handle(uid, request)
            }
            Err(e) => {
                ctx.counters.malformed.fetch_add(1, Ordering::Relaxed);
                Err(ControlError::new(
                    ErrorKind::Malformed,
                    format!("not a request: {}", shorten(&e.to_string())),
                ))
            }
        };
        let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
        if send(&mut stream, &response).is_err() {
            ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Why the control socket could not be set up.
    #[derive(Debug)]
    pub enum ServerError {
        /// The socket's directory could not be created or set up.
        Directory {
            /// The directory.
            path: PathBuf,
            /// The OS error.
            source: io::Error,
        },
        /// Something that is not a socket is in the way; santad does not delete it.
        NotASocket {
            /// The path.
            path: PathBuf,
        },
        /// Another santad answers on this socket.
        InUse {
            /// The path.
            path: PathBuf,
        },
        /// Binding, permissions or threads failed.
        Io {
            /// The socket path.
            path: PathBuf,
            /// The OS error.
            source: io::Error,
        },
    }

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::Directory { path, source } => {
                    write!(f, "control socket directory {}: {source}", path.display())
                }
                Self::NotASocket { path } => write!(
                    f,
                    "control socket {}: something that is not a socket is in the way",
                    path.display()
                ),
                Self::InUse { path } => write!(
                    f,
                    "control socket {}: another santad is answering on it",
                    path.display()
                ),
                Self::Io { path, source } => {
                    write!(f, "control socket {}: {source}", path.display())
                }
            }
        }
    }

    impl std::error::Error for ServerError {}

    /// The running control server. [`ControlServer::stop`] (or drop) stops its threads and
    /// removes the socket.
    #[derive(Debug)]
    pub struct ControlServer {
        path: PathBuf,
        inode: u64,
        stop: Arc<AtomicBool>,
        threads: Vec<JoinHandle<()>>,
    }

    fn bind(path: &Path) -> Result<(UnixListener, u64), ServerError> {
        let io_err = |source| ServerError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.exists()
        {
            let dir_err = |source| ServerError::Directory {
                path: dir.to_owned(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(dir_err)?;
            // Only a directory santad created is given its permissions: an existing one (say
            // /tmp) belongs to someone else. 0755: anyone may reach the socket inside.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(dir_err)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(ServerError::InUse {
                        path: path.to_owned(),
                    });
                }
                // A stale socket from a santad that died.
                std::fs::remove_file(path).map_err(io_err)?;
            }
            Ok(_) => {
                return Err(ServerError::NotASocket {
                    path: path.to_owned(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let listener = UnixListener::bind(path).map_err(io_err)?;
        // 0666: anyone may connect; what they may do is decided per request by SO_PEERCRED.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(io_err)?;
        listener.set_nonblocking(true).map_err(io_err)?;
        let inode = std::fs::symlink_metadata(path).map_err(io_err)?.ino();
        Ok((listener, inode))
    }

    fn poll_readable(fd: i32, timeout_ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call; the fd stays open (the
        // listener outlives this call).
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        rc > 0
    }

    fn accept_loop(
        ctx: &ControlContext,
        listener: &UnixListener,
        queue: &SyncSender<UnixStream>,
        stop: &AtomicBool,
    ) {
        while !stop.load(Ordering::Relaxed) {
            if !poll_readable(listener.as_raw_fd(), ACCEPT_POLL_MS) {
                continue;
            }
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::error!("control: accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            ctx.counters.connections.fetch_add(1, Ordering::Relaxed);
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            match queue.try_send(stream) {
                Ok(()) => {}
                Err(TrySendError::Full(mut stream)) => {
                    ctx.counters.busy.fetch_add(1, Ordering::Relaxed);
                    send_error(
                        &mut stream,
                        ErrorKind::Busy,
                        "santad is busy; try again".into(),
                    );
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }

    fn handler_loop(ctx: &ControlContext, queue: &Mutex<Receiver<UnixStream>>, stop: &AtomicBool) {
        loop {
            let next = lock(queue).recv_timeout(Duration::from_millis(ACCEPT_POLL_MS as u64));
            match next {
                Ok(stream) => serve(ctx, stream, stop),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    impl ControlServer {
        /// Binds the socket at `path` and starts the listener and handler threads.
        pub fn start(ctx: Arc<ControlContext>, path: &Path) -> Result<ControlServer, ServerError> {
            let (listener, inode) = bind(path)?;
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = std::sync::mpsc::sync_channel(PENDING_CONNECTIONS_MAX);
            let rx = Arc::new(Mutex::new(rx));
            let mut server = ControlServer {
                path: path.to_owned(),
                inode,
                stop: stop.clone(),
                threads: Vec::new(),
            };
            let spawn_err = |source| ServerError::Io {
                path: path.to_owned(),
                source,
            };
            for i in 0..HANDLER_THREADS {
                let (ctx, rx, stop) = (ctx.clone(), rx.clone(), stop.clone());
                let t = std::thread::Builder::new()
                    .name(format!("santad-control-{i}"))
                    .spawn(move || handler_loop(&ctx, &rx, &stop))
                    .map_err(spawn_err)?;
                server.threads.push(t);
            }
            let t = std::thread::Builder::new()
                .name("santad-control".into())
                .spawn(move || accept_loop(&ctx, &listener, &tx, &stop))
                .map_err(spawn_err)?;
            server.threads.push(t);
            Ok(server)
        }

        /// Stops accepting, lets the handlers finish (each within a fraction of a second: reads
        /// re-check the stop flag), joins them and removes the socket.
        pub fn stop(mut self) {
            self.shutdown();
        }

        fn shutdown(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
            // Only our socket: another santad may have replaced it meanwhile.
            if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    impl Drop for ControlServer {
        fn drop(&mut self) {
            if !self.threads.is_empty() {
                self.shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_specs_round_trip_every_stored_state_and_removal() {
        let id = rules::RuleIdentifier::parse(rules::RuleType::TeamId, "abcde12345")
            .expect("a valid Team ID");
        for state in rules::RuleState::ALL {
            let mut rule = rules::Rule::new(id.clone(), state);
            rule.comment = Some("c".into());
            let change = rules::RuleChange::Upsert(rule);
            let wire = RuleSpec::from_change(&change);
            assert_eq!(wire.identifier, "ABCDE12345", "normalised");
            assert_eq!(wire.to_change(), Ok(change));
        }
        let remove = rules::RuleChange::Remove(id);
        assert_eq!(RuleSpec::from_change(&remove).to_change(), Ok(remove));
    }

    #[test]
    fn rule_specs_with_bad_fields_are_refused_with_the_reason() {
        let spec = |t: &str, id: &str, state: i64| RuleSpec {
            identifier: id.into(),
            rule_type: t.into(),
            state,
            custom_msg: None,
            custom_url: None,
            event_detail_button_text: None,
            comment: None,
            cel_expr: None,
            rule_id: 0,
            timestamp: 0,
        };
        assert!(matches!(
            spec("BINARY", "xyz", 1).to_change(),
            Err(RuleSpecError::Identifier(_))
        ));
        assert!(matches!(
            spec("NOPE", "xyz", 1).to_change(),
            Err(RuleSpecError::UnknownType(_))
        ));
        assert_eq!(
            spec("TEAMID", "ABCDE12345", 99).to_change(),
            Err(RuleSpecError::UnknownState(99))
        );
    }

    #[test]
    fn santa_rule_text() {
        assert_eq!(rule_text("BINARY", 2), "Blocked (Binary)");
        assert_eq!(rule_text("TEAMID", 1), "Allowed (TeamID)");
        assert_eq!(rule_text("SIGNINGID", 3), "Blocked (SigningID, Silent)");
        assert_eq!(
            rule_text("CERTIFICATE", 5),
            "Allowed (Certificate, Compiler)"
        );
        assert_eq!(rule_text("CDHASH", 13), "Blocked (CDHash, Silent TTY)");
    }

    #[test]
    fn requests_serialise_with_a_command_tag() {
        let text = serde_json::to_string(&Request::Status).expect("serialises");
        assert_eq!(text, r#"{"command":"status"}"#);
        let back: Request = serde_json::from_str(r#"{"command":"flush_cache"}"#).expect("parses");
        assert_eq!(back, Request::FlushCache);
        assert!(back.needs_root());
        assert!(!Request::Status.needs_root());
        assert!(serde_json::from_str::<Request>(r#"{"command":"format_disk"}"#).is_err());
    }

    #[test]
    fn frames_are_length_prefixed_and_capped() {
        let (mut a, mut b) = UnixStream::pair().expect("socketpair");
        write_frame(&mut a, b"{}").expect("written");
        let got = read_frame(
            &mut b,
            16,
            IDLE_TIMEOUT,
            Instant::now() + IDLE_TIMEOUT,
            &|| false,
        )
        .expect("read");
        assert_eq!(got, b"{}");
        a.write_all(&1000u32.to_be_bytes()).expect("written");
        let err = read_frame(
            &mut b,
            16,
            IDLE_TIMEOUT,
            Instant::now() + IDLE_TIMEOUT,
            &|| false,
        );
        assert!(
            matches!(err, Err(FrameError::TooLarge { len: 1000, .. })),
            "{err:?}"
        );
        a.write_all(&[0, 0, 0, 9, b'x']).expect("written");
        let start = Instant::now();
        let err = read_frame(
            &mut b,
            16,
            Duration::from_millis(300),
            Instant::now() + IDLE_TIMEOUT,
            &|| false,
        );
        assert!(matches!(err, Err(FrameError::TimedOut)), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the idle timeout applies"
        );
        drop(a);
        let err = read_frame(
            &mut b,
            16,
            IDLE_TIMEOUT,
            Instant::now() + IDLE_TIMEOUT,
            &|| false,
        );
        assert!(matches!(err, Err(FrameError::Truncated { .. })), "{err:?}");
    }
}
