//! The messages: what santactl asks ([`Request`]) and what santad answers ([`Reply`]).

use super::*;

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
    /// Whether this host is protected, and why not: one check per concern (`santactl doctor`).
    Doctor,
    /// Sync with the sync server now and wait for the outcome. Root only (as Santa's
    /// `santactl sync`).
    Sync {
        /// `non_transitive` asks the server for a clean sync, `all` for a clean-all sync.
        #[serde(default)]
        clean: CleanupSpec,
    },
    /// Stream block notices (`santa-notify`): santad answers [`Reply::Watching`], keeps the
    /// connection, and sends one [`BlockEvent`] message per blocked execution of the peer's own
    /// uid (every uid's with `all_users`, which only root may ask for) until either side closes
    /// it. The peer sends nothing more: anything it sends closes the stream. Silent blocks
    /// (silent rules, `EnableSilentMode`) are not sent.
    WatchBlocks {
        /// Every user's blocks, not only the peer's own. Root only.
        #[serde(default)]
        all_users: bool,
    },
}

impl Request {
    /// Whether only uid 0 may send this request.
    pub fn needs_root(&self) -> bool {
        matches!(
            self,
            Request::FlushCache
                | Request::ApplyRules { .. }
                | Request::ExportRules
                | Request::Sync { .. }
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
            Request::Sync { .. } => "sync",
            Request::Doctor => "doctor",
            Request::WatchBlocks { .. } => "watch-blocks",
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
    /// How the file is signed (santactl and santad ship together, so the wire carries the
    /// signing crate's status itself: `"unsigned"`, `"invalid"`, `"ad_hoc"`, `"development"`,
    /// `"production"`).
    pub signing_status: rules::SigningStatus,
    /// A platform (Apple OS) binary.
    #[serde(default)]
    pub platform_binary: bool,
}

/// One rule change on the wire: Santa's JSON fields, with the state as Santa's database value
/// (`4` = remove), so every stored state (transitive, CEL v2, …) round-trips.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A CEL rule's expression is missing or does not compile.
    Cel(rules::CelError),
}

impl fmt::Display for RuleSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownType(t) => write!(f, "unknown rule type {t:?}"),
            Self::UnknownState(s) => write!(f, "unknown rule state {s}"),
            Self::Identifier(e) => write!(f, "{e}"),
            Self::Cel(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RuleSpecError {}

impl RuleSpec {
    /// A rule of `rule_type` (Santa's name) in `state` (Santa's value), with no custom text.
    pub fn new(identifier: String, rule_type: String, state: i64) -> RuleSpec {
        RuleSpec {
            identifier,
            rule_type,
            state,
            ..RuleSpec::default()
        }
    }

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
            rules::RuleChange::Remove(id) => RuleSpec::new(
                id.to_string(),
                id.rule_type().santa_name().to_owned(),
                rules::RuleState::REMOVE_DB_VALUE,
            ),
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
        let rule = rules::Rule {
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
        };
        rule.check().map_err(RuleSpecError::Cel)?;
        Ok(rules::RuleChange::Upsert(rule))
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
    /// To [`Request::Sync`].
    Synced(SyncReply),
    /// The checks of `santactl doctor`.
    Doctor(DoctorReply),
    /// To [`Request::WatchBlocks`]: the stream of [`BlockEvent`]s follows.
    Watching(WatchReply),
}

/// What a block watcher gets ([`Request::WatchBlocks`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchReply {
    /// Whose blocks are sent: the peer's uid, or `None` for every user's.
    pub uid: Option<u32>,
    /// Notices santad holds for this watcher while it is not reading; past them, notices are
    /// dropped (and counted in santad's metrics, `notify.dropped`).
    pub queue_depth: u32,
}

/// Largest [`BlockEvent`] message santad sends: a path of 4 KiB, a message and a URL of at most
/// [`BLOCK_TEXT_BYTES_MAX`] each, and a few hashes, in JSON (escaping can grow text up to six
/// times for control characters; santad cuts the texts before encoding).
pub const BLOCK_EVENT_BYTES_MAX: usize = 128 << 10;

/// Longest block message or URL in a [`BlockEvent`] (santad cuts longer ones).
pub const BLOCK_TEXT_BYTES_MAX: usize = 4096;

/// One blocked execution, for the desktop notice of the user who ran it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEvent {
    /// When it was decided, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The process that tried to execute.
    pub pid: i32,
    /// Its parent.
    pub ppid: i32,
    /// Its real uid.
    pub uid: u32,
    /// Its user's name, when known.
    #[serde(default)]
    pub user: Option<String>,
    /// The blocked file.
    pub path: String,
    /// Its SHA-256, lowercase hex (Santa's "Identifier"), when it could be read.
    #[serde(default)]
    pub identifier: Option<String>,
    /// Team ID, when signed.
    #[serde(default)]
    pub team_id: Option<String>,
    /// Signing ID, when signed.
    #[serde(default)]
    pub signing_id: Option<String>,
    /// Santa's reason (`BINARY`, `UNKNOWN`, `SCOPE`, …).
    pub reason: String,
    /// Santa's words for it (`Binary rule`, `No matching rule`, …).
    pub reason_text: String,
    /// Santa's block message as plain text: the rule's custom message, else the configured
    /// `BannedBlockMessage` / `UnknownBlockMessage`, else Santa's default.
    pub message: String,
    /// The event detail URL with its placeholders filled (the rule's custom URL, else
    /// `EventDetailURL`), if there is one.
    #[serde(default)]
    pub url: Option<String>,
    /// The label for opening the URL (the rule's button text, else `EventDetailText`, else
    /// `Open`).
    pub url_label: String,
}

/// What one sync did (`santactl sync`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReply {
    /// The server.
    pub server: String,
    /// The sync performed: `normal`, `clean` or `clean_all` (the server decides).
    pub sync_type: String,
    /// Events the server took.
    pub events_uploaded: u64,
    /// Rules in every page the server sent.
    pub rules_received: u64,
    /// Rules stored.
    pub rules_processed: u64,
    /// The mode the server set, if it set one.
    pub mode: Option<String>,
    /// Milliseconds the sync took.
    pub elapsed_ms: u64,
    /// Milliseconds santad took to apply the downloaded rules (one transaction, the snapshot
    /// rebuilt and swapped, the caches flushed if needed).
    #[serde(default)]
    pub rules_apply_ms: u64,
    /// A postflight that failed (the sync still counts, as in Santa).
    pub postflight_error: Option<String>,
}

/// The sync server and the event spool (`santactl status`, Santa's "Sync" section).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// `SyncBaseURL`.
    pub server: String,
    /// The machine ID sent to it.
    pub machine_id: String,
    /// Why santad does not sync (a bad setting), if it does not.
    pub disabled: Option<String>,
    /// A sync is running now.
    pub in_progress: bool,
    /// When the last full sync succeeded (Unix seconds).
    pub last_successful_sync: Option<u64>,
    /// When the last sync that brought rules succeeded (Unix seconds).
    pub last_rule_sync: Option<u64>,
    /// When the last sync was tried (Unix seconds).
    pub last_attempt: Option<u64>,
    /// The last sync asked the server for a clean sync (asked for by the operator and not yet
    /// performed, or the host's first sync): Santa's "Clean Sync Required".
    #[serde(default)]
    pub clean_sync_requested: bool,
    /// What went wrong in the last sync, if it failed.
    pub last_error: Option<String>,
    /// Seconds until the next sync.
    pub next_sync_secs: Option<u64>,
    /// Seconds between full syncs.
    pub full_sync_interval_secs: u64,
    /// Syncs that succeeded since santad started.
    pub syncs_ok: u64,
    /// Syncs that failed since santad started.
    pub syncs_failed: u64,
    /// Events waiting in the spool for the server.
    pub events_pending: u64,
    /// Events dropped because the spool was full (oldest first), ever.
    pub events_dropped: u64,
    /// Events the server took, ever.
    pub events_uploaded: u64,
    /// Why the spool cannot be used, if it cannot.
    pub spool_error: Option<String>,
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
    /// The sync server, when one is configured.
    #[serde(default)]
    pub sync: Option<SyncStatus>,
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
    /// Skipped although it can hold executables (outside `WatchPaths`, in `IgnoreMounts`, or
    /// its mark failed): an exec from it is not held.
    #[serde(default)]
    pub gap: bool,
}

/// The exec backstop's state and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackstopStatus {
    /// `active` or `inactive`.
    pub state: String,
    /// What it does, or why it is not there.
    pub detail: String,
    /// The BPF program's counters (zero when inactive), as fields of this object on the wire.
    #[serde(flatten)]
    pub counters: BackstopCounters,
}

/// The exec backstop program's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackstopCounters {
    /// Execs it looked at.
    pub checked: u64,
    /// Execs it killed (Lockdown, in scope).
    pub denied: u64,
    /// Execs it reported and let run.
    pub reported: u64,
    /// Reports lost to a full ring buffer (the kill happened regardless).
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
    /// `StaticRules` in force (Santa's `static_rules`).
    #[serde(default)]
    pub static_rules: u64,
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

/// How one doctor check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// As it should be.
    Ok,
    /// Worth knowing; the host is still protected.
    Warn,
    /// The host is not protected as configured (or a part of santad is broken).
    Fail,
}

/// One doctor check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorCheck {
    /// What was checked (`coverage`, `backstop`, `mode`, `fail_closed`, `defaults`, `rules_db`,
    /// `spool_db`, `log`, `sync`, `clock`).
    pub name: String,
    /// The outcome.
    pub state: CheckState,
    /// What was found, and what to do.
    pub detail: String,
}

/// `santactl doctor`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorReply {
    /// No check failed.
    pub protected: bool,
    /// Every check, in a fixed order.
    pub checks: Vec<DoctorCheck>,
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
    /// A `StaticRules` entry of santad's configuration, not a stored rule.
    #[serde(default)]
    pub is_static: bool,
}

impl RuleView {
    /// Santa's one-line description (`SNTRule stringifyWithColor:` without colour), e.g.
    /// `Blocked (Binary, Silent)`, `Blocked (Binary, Static)`.
    pub fn santa_text(&self) -> String {
        let text = rule_text(&self.rule_type, self.state);
        match text.strip_suffix(')') {
            Some(open) if self.is_static => format!("{open}, Static)"),
            _ => text,
        }
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
