//! The decision pipeline: Santa's order over a file's identities, the rules snapshot, path scopes
//! and the client mode (`SNTPolicyProcessor decisionForFileInfo:`).
//!
//! 1. failsafe: the daemon's own binaries and configured critical paths are allowed;
//! 2. identities filtered by signing status ([`FileIdentity::rule_identifiers`]);
//! 3. the highest-precedence rule ([`Snapshot::lookup`]), if its type and state make a decision;
//! 4. bad-signature protection (when enabled): an invalid signature is denied;
//! 5. platform binaries are allowed;
//! 6. `BlockedPathRegex` denies, then `AllowedPathRegex` allows (SCOPE), in every mode;
//! 7. the client mode: Monitor allows, Lockdown denies (UNKNOWN).
//!
//! The hot path is [`Evaluator::decide`]: one atomic load to notice a new snapshot or policy, at
//! most five hash probes whose memory accesses overlap, two regex-set scans, no allocation.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use regex::bytes::{RegexSet, RegexSetBuilder};

use crate::cel::{CelOutcome, ExecFacts, NoExec};
use crate::identity::{FileIdentity, RuleIdentifiers, SigningStatus};
use crate::model::{Rule, RuleIdentifier, RuleState, RuleType, Sha256, shorten};
use crate::snapshot::{CustomText, RuleMatch, Snapshot, SnapshotCell, SnapshotError};

/// Bound on the compiled size of each path regex set. A path regex comes from configuration or a
/// sync server; this keeps a pathological pattern from costing hundreds of MiB per worker clone.
pub const PATH_REGEX_COMPILED_BYTES_MAX: usize = 8 << 20;

/// Most patterns in each of `AllowedPathRegex` and `BlockedPathRegex`. Santa takes one pattern;
/// we take a list (any match counts) and bound it to keep the per-exec scan short.
pub const PATH_REGEX_PATTERNS_MAX: usize = 256;

/// Most failsafe paths and failsafe hashes, each.
pub const FAILSAFE_ENTRIES_MAX: usize = 1024;

/// What happens to files no rule or scope decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientMode {
    /// Allow and log (Santa's `M`).
    Monitor,
    /// Deny (Santa's `L`).
    Lockdown,
}

impl ClientMode {
    /// Santa's one-letter log spelling.
    pub fn log_letter(self) -> &'static str {
        match self {
            ClientMode::Monitor => "M",
            ClientMode::Lockdown => "L",
        }
    }
}

/// Policy settings the daemon reads from its configuration (or a sync server) and passes in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Monitor or Lockdown.
    pub mode: ClientMode,
    /// `EnableBadSignatureProtection`: deny files whose signature fails to verify, in every mode,
    /// unless a rule decided first. Off by default, as in Santa.
    pub enable_bad_signature_protection: bool,
    /// `EnableTransitiveRules`: compiler rules mark processes as compilers and transitive rules
    /// count. Off: compiler rules are plain allows and transitive rules are ignored.
    pub enable_transitive_rules: bool,
    /// `FailClosed`: in Lockdown, a rule this crate cannot evaluate (CEL) denies instead of
    /// falling through. Santa applies FailClosed only in Lockdown.
    pub fail_closed: bool,
    /// `AllowedPathRegex` patterns; a pattern not starting with `^` gets one, as in Santa.
    pub allowed_path_regex: Vec<String>,
    /// `BlockedPathRegex` patterns; a pattern not starting with `^` gets one, as in Santa.
    pub blocked_path_regex: Vec<String>,
    /// Exact paths always allowed: the daemon's own binaries and critical system binaries.
    pub failsafe_paths: Vec<Vec<u8>>,
    /// File hashes always allowed (the daemon's own binaries, hashed at start).
    pub failsafe_sha256: Vec<Sha256>,
    /// `StaticRules`: rules from the configuration, consulted before the rules database (any
    /// static match wins over every stored rule, as in Santa's `executionRuleForIdentifiers:`).
    /// No sync or `santactl rule` can change them; a later duplicate replaces an earlier one.
    pub static_rules: Vec<Rule>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: ClientMode::Monitor,
            enable_bad_signature_protection: false,
            enable_transitive_rules: false,
            fail_closed: false,
            allowed_path_regex: Vec::new(),
            blocked_path_regex: Vec::new(),
            failsafe_paths: Vec::new(),
            failsafe_sha256: Vec::new(),
            static_rules: Vec::new(),
        }
    }
}

impl PolicyConfig {
    /// The answer when no decision could be made (a deadline passed, a queue was full, the
    /// daemon is stopping): allow, unless `FailClosed` in Lockdown (Santa's `failClosed` getter
    /// checks the mode too). Every platform's default answer starts here.
    pub fn default_action(&self) -> Action {
        if self.fail_closed && self.mode == ClientMode::Lockdown {
            Action::Deny
        } else {
            Action::Allow
        }
    }
}

/// Which setting a bad regex came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRegexKind {
    /// `AllowedPathRegex`.
    Allowed,
    /// `BlockedPathRegex`.
    Blocked,
}

impl fmt::Display for PathRegexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathRegexKind::Allowed => "AllowedPathRegex",
            PathRegexKind::Blocked => "BlockedPathRegex",
        })
    }
}

/// The policy configuration is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// A path pattern does not compile (or is too large once compiled).
    BadPathRegex {
        /// Which setting.
        kind: PathRegexKind,
        /// The pattern as configured.
        pattern: String,
        /// The regex engine's message.
        detail: String,
    },
    /// More patterns than [`PATH_REGEX_PATTERNS_MAX`].
    TooManyPathRegexes {
        /// Which setting.
        kind: PathRegexKind,
        /// How many were given.
        count: usize,
    },
    /// More failsafe entries than [`FAILSAFE_ENTRIES_MAX`].
    TooManyFailsafeEntries {
        /// How many were given.
        count: usize,
    },
    /// The static rules do not fit a snapshot.
    StaticRules(SnapshotError),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::BadPathRegex {
                kind,
                pattern,
                detail,
            } => write!(f, "{kind} pattern {pattern:?} does not compile: {detail}"),
            PolicyError::TooManyPathRegexes { kind, count } => write!(
                f,
                "{kind} has {count} patterns; at most {PATH_REGEX_PATTERNS_MAX} are allowed"
            ),
            PolicyError::TooManyFailsafeEntries { count } => write!(
                f,
                "{count} failsafe entries; at most {FAILSAFE_ENTRIES_MAX} are allowed"
            ),
            PolicyError::StaticRules(e) => write!(f, "StaticRules: {e}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Compiled path scopes. Each worker holds its own clone: a regex clone has its own match cache,
/// so workers never contend on it.
#[derive(Clone, Debug, Default)]
pub struct PathScopes {
    allowed: Option<RegexSet>,
    blocked: Option<RegexSet>,
}

fn compile_scope(
    kind: PathRegexKind,
    patterns: &[String],
) -> Result<Option<RegexSet>, PolicyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    if patterns.len() > PATH_REGEX_PATTERNS_MAX {
        return Err(PolicyError::TooManyPathRegexes {
            kind,
            count: patterns.len(),
        });
    }
    let anchored: Vec<String> = patterns
        .iter()
        .map(|p| {
            if p.starts_with('^') {
                p.clone()
            } else {
                format!("^{p}")
            }
        })
        .collect();
    // Compile one by one first so an error names the pattern at fault.
    for (p, a) in patterns.iter().zip(&anchored) {
        RegexSetBuilder::new([a])
            .size_limit(PATH_REGEX_COMPILED_BYTES_MAX)
            .build()
            .map_err(|e| PolicyError::BadPathRegex {
                kind,
                pattern: shorten(p),
                detail: e.to_string(),
            })?;
    }
    RegexSetBuilder::new(&anchored)
        .size_limit(PATH_REGEX_COMPILED_BYTES_MAX)
        .build()
        .map(Some)
        .map_err(|e| PolicyError::BadPathRegex {
            kind,
            pattern: format!("<all {} patterns together>", patterns.len()),
            detail: e.to_string(),
        })
}

impl PathScopes {
    /// Compiles both settings.
    pub fn new(allowed: &[String], blocked: &[String]) -> Result<PathScopes, PolicyError> {
        Ok(PathScopes {
            allowed: compile_scope(PathRegexKind::Allowed, allowed)?,
            blocked: compile_scope(PathRegexKind::Blocked, blocked)?,
        })
    }

    /// `BlockedPathRegex` matches the path.
    #[inline]
    pub fn is_blocked(&self, path: &[u8]) -> bool {
        self.blocked.as_ref().is_some_and(|r| r.is_match(path))
    }

    /// `AllowedPathRegex` matches the path.
    #[inline]
    pub fn is_allowed(&self, path: &[u8]) -> bool {
        self.allowed.as_ref().is_some_and(|r| r.is_match(path))
    }
}

/// A compiled, immutable policy configuration.
#[derive(Debug)]
pub struct Policy {
    config: PolicyConfig,
    scopes: PathScopes,
    failsafe_paths: HashSet<Box<[u8]>, foldhash::quality::RandomState>,
    failsafe_sha256: HashSet<Sha256, foldhash::quality::RandomState>,
    statics: Snapshot,
}

impl Policy {
    /// Validates and compiles a configuration.
    pub fn new(config: PolicyConfig) -> Result<Policy, PolicyError> {
        let count = config
            .failsafe_paths
            .len()
            .max(config.failsafe_sha256.len());
        if count > FAILSAFE_ENTRIES_MAX {
            return Err(PolicyError::TooManyFailsafeEntries { count });
        }
        let scopes = PathScopes::new(&config.allowed_path_regex, &config.blocked_path_regex)?;
        let failsafe_paths = config
            .failsafe_paths
            .iter()
            .map(|p| p.clone().into_boxed_slice())
            .collect();
        let failsafe_sha256 = config.failsafe_sha256.iter().copied().collect();
        let statics =
            Snapshot::from_rules(0, &config.static_rules).map_err(PolicyError::StaticRules)?;
        Ok(Policy {
            config,
            scopes,
            failsafe_paths,
            failsafe_sha256,
            statics,
        })
    }

    /// The rule that applies to `ids`: a static rule first (any type), then `snapshot`'s, each
    /// in Santa's precedence order. The flag says whether the match is static.
    #[inline]
    pub fn lookup<'s>(
        &'s self,
        snapshot: &'s Snapshot,
        ids: &RuleIdentifiers<'_>,
    ) -> Option<(RuleMatch<'s>, bool)> {
        if !self.statics.is_empty()
            && let Some(m) = self.statics.lookup(ids)
        {
            return Some((m, true));
        }
        snapshot.lookup(ids).map(|m| (m, false))
    }

    /// The static rule with exactly this identifier (and so this type), if any.
    pub fn static_rule(&self, id: &RuleIdentifier) -> Option<&Rule> {
        self.config
            .static_rules
            .iter()
            .rev()
            .find(|r| &r.identifier == id)
    }

    /// How many distinct static rules are in force.
    pub fn static_rule_count(&self) -> usize {
        self.statics.stats().rules()
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// A clone of the compiled scopes for one worker.
    pub fn scopes(&self) -> PathScopes {
        self.scopes.clone()
    }

    #[inline]
    fn failsafe(&self, file: &FileIdentity<'_>) -> Option<&'static str> {
        if !self.failsafe_sha256.is_empty() && self.failsafe_sha256.contains(&file.sha256) {
            return Some("failsafe binary");
        }
        if !self.failsafe_paths.is_empty() && self.failsafe_paths.contains(file.path) {
            return Some("failsafe path");
        }
        None
    }
}

/// Allow or deny: what the daemon answers the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the execution proceed.
    Allow,
    /// Refuse the execution.
    Deny,
}

/// Why: Santa's `reason=` values (`SNTEventState` as its logs spell them), plus `FAILSAFE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A Binary (SHA-256) rule, including compiler and local-binary allows.
    Binary,
    /// A Certificate rule, or bad-signature protection.
    Cert,
    /// A Team ID rule.
    TeamId,
    /// A Signing ID rule.
    SigningId,
    /// A CDHash rule.
    CdHash,
    /// A path scope (`BlockedPathRegex`, `AllowedPathRegex`).
    Scope,
    /// No rule or scope: the client mode decided.
    Unknown,
    /// A transitive Binary rule (file produced by a compiler).
    Transitive,
    /// A platform (Apple OS) binary.
    Platform,
    /// The failsafe list (our own binaries, critical paths). Santa reports its critical system
    /// binaries as SIGNINGID; on Linux there is no Signing ID, so this reason says what happened.
    Failsafe,
}

impl Reason {
    /// The log spelling (`reason=...`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Binary => "BINARY",
            Reason::Cert => "CERT",
            Reason::TeamId => "TEAMID",
            Reason::SigningId => "SIGNINGID",
            Reason::CdHash => "CDHASH",
            Reason::Scope => "SCOPE",
            Reason::Unknown => "UNKNOWN",
            Reason::Transitive => "TRANSITIVE",
            Reason::Platform => "PLATFORM",
            Reason::Failsafe => "FAILSAFE",
        }
    }

    fn for_type(t: RuleType) -> Reason {
        match t {
            RuleType::CdHash => Reason::CdHash,
            RuleType::Binary => Reason::Binary,
            RuleType::SigningId => Reason::SigningId,
            RuleType::Certificate => Reason::Cert,
            RuleType::TeamId => Reason::TeamId,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which user notifications a silent block suppresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Silence {
    /// No GUI notification.
    pub gui: bool,
    /// No message on the terminal.
    pub tty: bool,
}

/// The rule that decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedRule {
    /// Its identifier (and so its type).
    pub identifier: RuleIdentifier,
    /// Its state.
    pub state: RuleState,
    /// The sync server's rule id (0 when none).
    pub rule_id: i64,
    /// A `StaticRules` entry of the configuration, not a stored rule.
    pub is_static: bool,
}

/// The outcome for one file. Cloning costs at most a few reference-count increments (the custom
/// texts and a Signing ID are `Arc<str>`), so the engine can cache it and hand it to waiters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub action: Action,
    /// Why.
    pub reason: Reason,
    /// Extra words for the log (`explain=`), when the reason alone does not say enough.
    pub explain: Option<&'static str>,
    /// The rule that decided, if one did.
    pub matched: Option<MatchedRule>,
    /// The rule's custom message, URL and button label.
    pub custom: CustomText,
    /// Notifications to suppress (silent block rules).
    pub silence: Silence,
    /// The process becomes a compiler (an allow-compiler rule with transitive rules enabled).
    pub compiler: bool,
    /// The decision depends only on the file, so the daemon may cache it (and, for allows, ask
    /// the kernel to cache it).
    pub cacheable: bool,
    /// The client mode at the time of the decision (Santa logs it).
    pub mode: ClientMode,
    /// Generation of the rules snapshot that was consulted.
    pub rules_generation: u64,
}

impl Decision {
    fn new(action: Action, reason: Reason, mode: ClientMode, generation: u64) -> Decision {
        Decision {
            action,
            reason,
            explain: None,
            matched: None,
            custom: CustomText::default(),
            silence: Silence::default(),
            compiler: false,
            cacheable: true,
            mode,
            rules_generation: generation,
        }
    }

    fn explained(mut self, explain: &'static str) -> Decision {
        self.explain = Some(explain);
        self
    }

    /// Santa's `decision=` spelling: `ALLOW`, `ALLOW_COMPILER` or `DENY`.
    pub fn log_decision(&self) -> &'static str {
        match (self.action, self.compiler) {
            (Action::Allow, true) => "ALLOW_COMPILER",
            (Action::Allow, false) => "ALLOW",
            (Action::Deny, _) => "DENY",
        }
    }
}

/// The inputs of one decision beyond the snapshot and the policy.
struct Ask<'a> {
    policy: &'a Policy,
    generation: u64,
    file: &'a FileIdentity<'a>,
    exec: &'a dyn ExecFacts,
}

/// The decision a matched rule makes, or `None` when Santa treats the match as "no rule": an
/// invalid type/state pair, a transitive rule with transitive rules off, a CEL rule whose
/// evaluation failed (without FailClosed) or returned `UNSPECIFIED`. As in Santa, a
/// lower-precedence rule is then *not* consulted; the pipeline goes on to step 4. `cacheable`
/// is cleared when the outcome, rule or no rule, depended on the execution (a CEL rule that
/// read `args`, `euid`, ...).
fn rule_decision(
    m: &RuleMatch<'_>,
    is_static: bool,
    ask: &Ask<'_>,
    cacheable: &mut bool,
) -> Option<Decision> {
    let state = m.state();
    let mut d = match state {
        RuleState::Cel => {
            let Some(rule) = m.custom().cel.as_deref() else {
                return cel_failed(ask, "the CEL rule has no expression");
            };
            let result = rule.evaluate(ask.file, ask.exec);
            *cacheable &= result.cacheable;
            let mut d = match result.outcome {
                CelOutcome::State(s) => state_decision(m.rule_type(), s, ask)?,
                CelOutcome::Unspecified => return None,
                CelOutcome::Error(_) => {
                    // A failure that came from this execution (a field it could not supply)
                    // must not be cached or handed to another execution.
                    let mut d = cel_failed(ask, "CEL evaluation failed (FailClosed)")?;
                    d.cacheable &= *cacheable;
                    return Some(d);
                }
            };
            d.explain = Some("CEL rule");
            d
        }
        // CEL v2 is not evaluated here: Santa's "evaluator unavailable" path.
        RuleState::CelV2 => return cel_failed(ask, "CEL v2 rules are not evaluated (FailClosed)"),
        _ => state_decision(m.rule_type(), state, ask)?,
    };
    let identifier = m.identifier()?;
    d.matched = Some(MatchedRule {
        identifier,
        state,
        rule_id: m.rule_id(),
        is_static,
    });
    d.custom = m.custom().clone();
    if !*cacheable {
        d.cacheable = false;
    }
    Some(d)
}

/// A CEL rule that could not be evaluated: with FailClosed in Lockdown, blocked as unknown
/// (Santa's `SNTEventStateBlockUnknown`, no custom message); otherwise no rule.
fn cel_failed(ask: &Ask<'_>, why: &'static str) -> Option<Decision> {
    let cfg = &ask.policy.config;
    (cfg.fail_closed && cfg.mode == ClientMode::Lockdown).then(|| {
        Decision::new(Action::Deny, Reason::Unknown, cfg.mode, ask.generation).explained(why)
    })
}

/// What a rule of type `t` in `state` decides (Santa's type/state table), or `None` for a pair
/// Santa treats as no rule.
fn state_decision(t: RuleType, state: RuleState, ask: &Ask<'_>) -> Option<Decision> {
    let cfg = &ask.policy.config;
    let generation = ask.generation;
    let base_reason = Reason::for_type(t);
    let compiler_capable = matches!(t, RuleType::CdHash | RuleType::Binary | RuleType::SigningId);
    Some(match state {
        RuleState::Allow => Decision::new(Action::Allow, base_reason, cfg.mode, generation),
        RuleState::AllowCompiler if compiler_capable => {
            let mut d = Decision::new(Action::Allow, base_reason, cfg.mode, generation);
            d.compiler = cfg.enable_transitive_rules;
            d
        }
        RuleState::AllowTransitive if t == RuleType::Binary => {
            if !cfg.enable_transitive_rules {
                return None;
            }
            Decision::new(Action::Allow, Reason::Transitive, cfg.mode, generation)
        }
        RuleState::AllowLocalBinary if t == RuleType::Binary => {
            Decision::new(Action::Allow, Reason::Binary, cfg.mode, generation)
        }
        RuleState::AllowLocalSigningId if t == RuleType::SigningId => {
            Decision::new(Action::Allow, Reason::SigningId, cfg.mode, generation)
        }
        RuleState::Block => Decision::new(Action::Deny, base_reason, cfg.mode, generation),
        RuleState::SilentBlock | RuleState::SilentBlockGui | RuleState::SilentBlockTty => {
            let mut d = Decision::new(Action::Deny, base_reason, cfg.mode, generation);
            d.silence = Silence {
                gui: state != RuleState::SilentBlockTty,
                tty: state != RuleState::SilentBlockGui,
            };
            d
        }
        // Santa starts a seatbelt match as a block and flips it only after checking the sandbox
        // expectation; with no sandbox here the fail-safe outcome stands. Never cached: the
        // check is per execution.
        RuleState::Seatbelt => {
            let mut d = Decision::new(Action::Deny, base_reason, cfg.mode, generation)
                .explained("seatbelt sandbox rules cannot be enforced here");
            d.cacheable = false;
            d
        }
        // Evaluated by `rule_decision`; a CEL result is never CEL again.
        RuleState::Cel | RuleState::CelV2 => return None,
        // Invalid type/state pairs (e.g. a compiler Team ID rule): stale data or a bug; Santa
        // treats them as no rule.
        RuleState::AllowCompiler
        | RuleState::AllowTransitive
        | RuleState::AllowLocalBinary
        | RuleState::AllowLocalSigningId => return None,
    })
}

/// Runs the pipeline for one file against one snapshot and policy, with the caller's scopes
/// (normally a worker's own clone, see [`Evaluator`]), outside any execution: a CEL rule that
/// reads an execution field fails to evaluate (see [`decide_exec`]).
pub fn decide(
    snapshot: &Snapshot,
    policy: &Policy,
    scopes: &PathScopes,
    file: &FileIdentity<'_>,
) -> Decision {
    decide_exec(snapshot, policy, scopes, file, &NoExec)
}

/// Runs the pipeline for one execution of `file`: `exec` gives CEL rules what they read of the
/// execution.
pub fn decide_exec(
    snapshot: &Snapshot,
    policy: &Policy,
    scopes: &PathScopes,
    file: &FileIdentity<'_>,
    exec: &dyn ExecFacts,
) -> Decision {
    let cfg = &policy.config;
    let generation = snapshot.generation();
    let new = |action, reason| Decision::new(action, reason, cfg.mode, generation);

    if let Some(why) = policy.failsafe(file) {
        return new(Action::Allow, Reason::Failsafe).explained(why);
    }

    let ids = file.rule_identifiers();
    let mut cacheable = true;
    if let Some((m, is_static)) = policy.lookup(snapshot, &ids) {
        let ask = Ask {
            policy,
            generation,
            file,
            exec,
        };
        if let Some(d) = rule_decision(&m, is_static, &ask, &mut cacheable) {
            return d;
        }
    }
    let mut d = unruled(policy, scopes, file, generation);
    d.cacheable &= cacheable;
    d
}

/// Steps 4 on: what decides when no rule did.
fn unruled(
    policy: &Policy,
    scopes: &PathScopes,
    file: &FileIdentity<'_>,
    generation: u64,
) -> Decision {
    let cfg = &policy.config;
    let new = |action, reason| Decision::new(action, reason, cfg.mode, generation);
    if cfg.enable_bad_signature_protection && file.signing_status == SigningStatus::Invalid {
        return new(Action::Deny, Reason::Cert).explained("Blocked due to signature error");
    }

    if file.is_platform_binary {
        return new(Action::Allow, Reason::Platform).explained("Platform Binary");
    }

    if scopes.is_blocked(file.path) {
        return new(Action::Deny, Reason::Scope).explained("Blocked Path Regex");
    }
    if scopes.is_allowed(file.path) {
        return new(Action::Allow, Reason::Scope).explained("Allowed Path Regex");
    }

    match cfg.mode {
        ClientMode::Monitor => new(Action::Allow, Reason::Unknown),
        ClientMode::Lockdown => new(Action::Deny, Reason::Unknown),
    }
}

/// A counter on its own cache line: every worker reads it on every decision, the control thread
/// writes it only when it publishes, so it must not share a line with anything that changes.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PublishedVersion(AtomicU64);

/// The shared, swappable state every worker reads: the rules snapshot and the policy.
///
/// Publication is an `arc-swap` store followed by a version bump. A worker's [`Evaluator`] keeps
/// `Arc`s to what it last saw and compares one atomic counter per decision; only when it changed
/// does it load the new snapshot and policy. So the common path is one uncontended atomic load
/// and no reference counting at all.
#[derive(Debug)]
pub struct PolicyEngine {
    snapshot: SnapshotCell,
    policy: ArcSwap<Policy>,
    version: PublishedVersion,
}

impl PolicyEngine {
    /// Starts with a snapshot and a policy.
    pub fn new(snapshot: Snapshot, policy: Policy) -> PolicyEngine {
        PolicyEngine {
            snapshot: SnapshotCell::new(snapshot),
            policy: ArcSwap::from_pointee(policy),
            version: PublishedVersion::default(),
        }
    }

    /// Publishes a new rules snapshot; returns the one it replaced. The caller then bumps its
    /// decision-cache epoch if [`crate::store::ApplyOutcome::flush_cache`] said so.
    pub fn publish_snapshot(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let old = self.snapshot.publish(snapshot);
        self.version.0.fetch_add(1, Ordering::Release);
        old
    }

    /// Publishes a new policy (mode, scopes, flags). Workers clone the new regexes on their next
    /// decision. Any policy change invalidates cached decisions.
    pub fn set_policy(&self, policy: Policy) -> Arc<Policy> {
        let old = self.policy.swap(Arc::new(policy));
        self.version.0.fetch_add(1, Ordering::Release);
        old
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// A per-worker evaluator. Create one per worker thread and keep it for the thread's life.
    pub fn evaluator(self: &Arc<Self>) -> Evaluator {
        let version = self.version.0.load(Ordering::Acquire);
        let policy = self.policy.load_full();
        Evaluator {
            engine: Arc::clone(self),
            snapshot: self.snapshot.load_full(),
            scopes: policy.scopes(),
            policy,
            version,
        }
    }
}

/// One worker's view: the snapshot and policy it last saw, and its own regex clones.
///
/// It holds the previous snapshot alive until its next decision (or [`Evaluator::refresh`]); a
/// worker that idles for long should call `refresh` so a replaced snapshot's memory is freed.
#[derive(Debug)]
pub struct Evaluator {
    engine: Arc<PolicyEngine>,
    snapshot: Arc<Snapshot>,
    policy: Arc<Policy>,
    scopes: PathScopes,
    version: u64,
}

impl Evaluator {
    /// Decides for one file. Lock-free, no reference counting on the common path; allocates only
    /// on the first decision after a policy change (to clone that policy's regexes).
    #[inline]
    pub fn decide(&mut self, file: &FileIdentity<'_>) -> Decision {
        self.decide_exec(file, &NoExec)
    }

    /// Decides for one execution of a file ([`decide_exec`]).
    #[inline]
    pub fn decide_exec(&mut self, file: &FileIdentity<'_>, exec: &dyn ExecFacts) -> Decision {
        self.refresh();
        decide_exec(&self.snapshot, &self.policy, &self.scopes, file, exec)
    }

    /// Picks up a newly published snapshot or policy, if any.
    #[inline]
    pub fn refresh(&mut self) {
        let version = self.engine.version.0.load(Ordering::Acquire);
        if version != self.version {
            self.reload(version);
        }
    }

    #[cold]
    fn reload(&mut self, version: u64) {
        self.snapshot = self.engine.snapshot.load_full();
        let policy = self.engine.policy.load_full();
        if !Arc::ptr_eq(&policy, &self.policy) {
            self.scopes = policy.scopes();
            self.policy = policy;
        }
        self.version = version;
    }
}
