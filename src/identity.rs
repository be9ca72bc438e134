//! From an executed file to a decision: the evaluator the engine calls on a cache miss.
//!
//! Platform-neutral: it takes the file the kernel opened for us (so there is no race between the
//! path that was executed and the bytes we hash) and the path it was executed by. It reads the
//! file once (`signing::identify_file`: SHA-256 and, for Mach-O, the code signature), turns the
//! signing facts into the rules crate's identities, and runs the rules pipeline with the
//! worker's own evaluator (its own regex clones).

use crate::eventlog::{self, PATH_BYTES_MAX, Record, Text};
use santa_hotpath::{Cacheability, DefaultReason, Evaluation, Evaluator};
use santa_rules as rules;
use santa_signing as signing;
use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

/// What one event needs to be evaluated, whatever the platform.
pub trait Subject: Send + Sync + 'static {
    /// The executed file, opened by the kernel.
    fn file(&self) -> &File;
    /// Writes the path the file was executed by into `out`.
    fn path_into(&self, out: &mut Text<PATH_BYTES_MAX>);
    /// Keeps writers off the file from the evaluation until the answer reached the kernel (and
    /// the kernel's own write lock on the executable took over), where the platform can, so the
    /// bytes hashed are the bytes that run and a decision about them may be cached: a later
    /// change always moves the stamp. The hold ends with the event.
    fn hold_writers(&self) -> WriteHold {
        WriteHold::NotNeeded
    }
    /// Whether the path names the file as santad's own mount table does. A path through a
    /// mount only another mount namespace has (a user's own, made in a user namespace) is the
    /// user's choice: path rules (the failsafe paths, `AllowedPathRegex`, `BlockedPathRegex`)
    /// are not applied to it, and the decision is not cached.
    fn path_trusted(&self) -> bool {
        true
    }
    /// CEL's `euid`: the effective uid of the process executing.
    fn exec_euid(&self) -> Result<u32, &'static str> {
        Err(NOT_ON_THIS_PLATFORM)
    }
    /// CEL's `cwd`: its working directory.
    fn exec_cwd(&self) -> Result<String, &'static str> {
        Err(NOT_ON_THIS_PLATFORM)
    }
    /// CEL's `args`: the new program's arguments. Linux: not readable while the exec is held
    /// (the process still runs its old image, whose `cmdline` /proc shows).
    fn exec_args(&self) -> Result<Vec<String>, &'static str> {
        Err(ARGS_UNAVAILABLE)
    }
    /// CEL's `envs`: the new program's environment (Linux: as `args`).
    fn exec_envs(&self) -> Result<Vec<(String, String)>, &'static str> {
        Err(ARGS_UNAVAILABLE)
    }
    /// For a file being evaluated because a compiler just wrote it: the compiler's pid. Its
    /// SHA-256 then gets a transitive rule, if it is an executable, before the rules decide.
    fn transitive_writer(&self) -> Option<i32> {
        None
    }
    /// Whether the file's filesystem stamps every change after a stat with a new fine-grained
    /// ctime (Linux 6.13's multigrain timestamps: ext4, XFS, Btrfs, tmpfs), so a decision about
    /// a file changed moments ago may be cached (see [`STAMP_SETTLE_NS`]).
    fn stamps_fine_grained(&self) -> bool {
        false
    }
    /// Waits (bounded) while a transitive rule is being made for this exec's file (a compiler
    /// just wrote it, and its rule is not published yet); whether it waited. Called only when
    /// the rules would deny the exec, so an allowed exec never waits.
    fn wait_transitive(&self) -> bool {
        false
    }
}

const NOT_ON_THIS_PLATFORM: &str = "not supplied for this event";
const ARGS_UNAVAILABLE: &str =
    "the new program's arguments and environment cannot be read before the exec is answered";

/// A subject's execution facts, as the rules crate's CEL evaluation reads them.
struct SubjectFacts<'a, P: Subject>(&'a P);

impl<P: Subject> rules::ExecFacts for SubjectFacts<'_, P> {
    fn euid(&self) -> Result<u32, &'static str> {
        self.0.exec_euid()
    }
    fn cwd(&self) -> Result<String, &'static str> {
        self.0.exec_cwd()
    }
    fn args(&self) -> Result<Vec<String>, &'static str> {
        self.0.exec_args()
    }
    fn envs(&self) -> Result<Vec<(String, String)>, &'static str> {
        self.0.exec_envs()
    }
}

/// Whether nobody could change a file unseen while it was evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteHold {
    /// Writers are held off (Linux: a read lease, which the kernel grants only while nobody has
    /// the file open for writing, and which makes a new writer wait until it is released).
    Held,
    /// Nobody but root can write the file, or the platform reports every change itself.
    NotNeeded,
    /// Someone has it open for writing: a write through a mapping made before the evaluation
    /// would not move the stamp, so an allow is withdrawn (the mode decides) and nothing is
    /// cached.
    Failed,
    /// The filesystem (or the host) gives no way to hold writers off: the decision stands but
    /// is not cached.
    Unavailable,
}

/// Why an allow was not given to a file someone had open for writing while it was evaluated.
pub(crate) const OPEN_FOR_WRITING: &str = "file open for writing while it was evaluated";

/// The engine's decision for one file: the rules decision plus the identities the log and the
/// block message print. Cloned out of the cache on every hit: a few `Arc` increments at most.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The rules decision.
    pub decision: rules::Decision,
    /// The file's SHA-256; `None` when it could not be read (see `problem`).
    pub sha256: Option<[u8; 32]>,
    /// The leaf certificate's SHA-256 (Mach-O with a certificate).
    pub cert_sha256: Option<[u8; 32]>,
    /// The leaf certificate's common name.
    pub cert_cn: Option<Arc<str>>,
    /// Team ID.
    pub team_id: Option<Arc<str>>,
    /// Santa Signing ID (`TEAMID:ident` / `platform:ident`).
    pub signing_id: Option<Arc<str>>,
    /// CDHash.
    pub cdhash: Option<[u8; 20]>,
    /// How the file is signed, when it was read (uploaded to a sync server with its events).
    pub signing_status: Option<rules::SigningStatus>,
    /// Why the file could not be identified, when it could not; the decision is then the mode's.
    pub problem: Option<&'static str>,
}

impl Verdict {
    /// A verdict that is the rules decision alone: no identities, no problem.
    pub fn bare(decision: rules::Decision) -> Self {
        Self {
            decision,
            sha256: None,
            cert_sha256: None,
            cert_cn: None,
            team_id: None,
            signing_id: None,
            cdhash: None,
            signing_status: None,
            problem: None,
        }
    }

    /// The verdict on a file that was read: its hash and leaf certificate, and its signing
    /// identities as the platform has them (the file's signature on Linux, the kernel on macOS).
    pub(crate) fn identified(
        decision: rules::Decision,
        sha256: [u8; 32],
        leaf: Option<&signing::x509::Certificate>,
        team_id: Option<Arc<str>>,
        signing_id: Option<Arc<str>>,
        cdhash: Option<[u8; 20]>,
    ) -> Self {
        Self {
            sha256: Some(sha256),
            cert_sha256: leaf.map(|c| *c.sha256.as_bytes()),
            cert_cn: leaf
                .and_then(|c| c.subject.common_name.as_deref())
                .map(Arc::from),
            team_id,
            signing_id,
            cdhash,
            ..Self::bare(decision)
        }
    }
}

/// The evaluator: file → identity → rules decision.
#[derive(Debug)]
pub struct ExecEvaluator {
    policy: Arc<rules::PolicyEngine>,
    limits: signing::HashLimits,
    transitive: crate::transitive::SinkSlot,
}

impl ExecEvaluator {
    /// An evaluator over `policy`, reading at most `hash_bytes_max` bytes of any file.
    pub fn new(policy: Arc<rules::PolicyEngine>, hash_bytes_max: u64) -> Self {
        Self {
            policy,
            limits: hash_limits(hash_bytes_max),
            transitive: Default::default(),
        }
    }

    /// Hands compiler outputs to `slot`'s sink (filled once the rules database is served).
    pub fn with_transitive(mut self, slot: crate::transitive::SinkSlot) -> Self {
        self.transitive = slot;
        self
    }
}

/// Whether a file a compiler wrote is an executable, for a transitive rule: an exec bit, a
/// Mach-O, or an ELF executable or position-independent executable (`ET_EXEC`, `ET_DYN`; not
/// the objects, `ET_REL`, a compiler writes on its way).
pub(crate) fn is_executable_output(file: &File, format: signing::macho::FileFormat) -> bool {
    use std::os::unix::fs::{FileExt, PermissionsExt};
    if file
        .metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    {
        return true;
    }
    if matches!(
        format,
        signing::macho::FileFormat::MachO | signing::macho::FileFormat::FatMachO
    ) {
        return true;
    }
    let mut head = [0u8; 18];
    if file.read_exact_at(&mut head, 0).is_err() || &head[..4] != b"\x7fELF" {
        return false;
    }
    let e_type = match head[5] {
        1 => u16::from_le_bytes([head[16], head[17]]),
        2 => u16::from_be_bytes([head[16], head[17]]),
        _ => return false,
    };
    matches!(e_type, 2 | 3)
}

/// The hashing bounds of an evaluator: `MaxHashBytes`, and the signing crate's defaults.
pub(crate) fn hash_limits(hash_bytes_max: u64) -> signing::HashLimits {
    signing::HashLimits {
        hash_bytes_max,
        ..signing::HashLimits::default()
    }
}

/// Reads of a compiler's output that changed while it was read, before it goes without a
/// transitive rule.
const TRANSITIVE_HASH_TRIES: u32 = 3;

/// What an evaluation knows of its event beyond the file and the path rules see.
#[derive(Debug, Clone, Copy, Default)]
struct Context<'a> {
    /// A compiler wrote the file: its pid ([`Subject::transitive_writer`]).
    transitive_writer: Option<i32>,
    /// The file's path for the log (whatever the path rules were given).
    log_path: &'a [u8],
    /// [`Subject::stamps_fine_grained`].
    fine_grained: bool,
}

/// One worker's state: its rules evaluator and reusable buffers.
#[derive(Debug)]
pub struct WorkerState {
    rules: rules::Evaluator,
    scratch: Vec<u8>,
    path: Box<Text<PATH_BYTES_MAX>>,
}

/// How long after a file's last change a decision about it is not cached. Filesystems without
/// multigrain timestamps (ext2, vfat, and every filesystem before Linux 6.13) stamp ctime from a
/// coarse clock (one tick, 1–10 ms): a rewrite within the same tick as the change before it
/// keeps the old ctime, so a decision cached under that ctime would cover the new bytes too. A
/// change made after a decision was taken at least this long after the file's ctime always
/// gets a later ctime. 20 ms is two ticks at the slowest common clock (HZ = 100).
pub const STAMP_SETTLE_NS: i64 = 20_000_000;

/// Whether a stamp of `ctime_ns` is old enough at `now_ns` (both since the epoch) that a later
/// change is certain to move it (see [`STAMP_SETTLE_NS`]).
pub fn stamp_settled(ctime_ns: i64, now_ns: i64) -> bool {
    now_ns.saturating_sub(ctime_ns) >= STAMP_SETTLE_NS
}

fn now_realtime_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What a decision about a file that changed while it was evaluated says: the mode decides.
pub(crate) const CHANGED_WHILE_EVALUATED: &str = "file changed while it was evaluated";

/// How long a decision may be kept, from what it is and whether the file held still.
pub(crate) fn cacheability(decision: &rules::Decision, file_changed: bool) -> Cacheability {
    if file_changed {
        Cacheability::FileChanged
    } else if !decision.cacheable {
        // Only rules that depend on the execution (CEL reading `euid`, a seatbelt rule) make a
        // decision uncacheable: waiters are decided each for its own execution.
        Cacheability::PerExec
    } else if decision.action == rules::Action::Allow {
        Cacheability::UntilChanged
    } else {
        Cacheability::DenyTtl
    }
}

/// The decision for a file that could not be identified: the mode decides (Lockdown denies,
/// Monitor allows), so padding a binary past `MaxHashBytes` is no way around Lockdown.
pub(crate) fn unidentified(policy: &rules::PolicyEngine, problem: &'static str) -> Verdict {
    let mode = policy.policy().config().mode;
    let action = match mode {
        rules::ClientMode::Monitor => rules::Action::Allow,
        rules::ClientMode::Lockdown => rules::Action::Deny,
    };
    Verdict {
        problem: Some(problem),
        ..Verdict::bare(rules::Decision {
            action,
            reason: rules::Reason::Unknown,
            explain: Some(problem),
            matched: None,
            custom: Default::default(),
            silence: Default::default(),
            compiler: false,
            cacheable: false,
            mode,
            rules_generation: policy.snapshot().generation(),
        })
    }
}

pub(crate) fn problem_of(error: &signing::HashError) -> &'static str {
    match error {
        signing::HashError::TooLarge { .. } => "file larger than MaxHashBytes",
        signing::HashError::NotRegular { .. } => "not a regular file",
        _ => "file could not be read",
    }
}

impl ExecEvaluator {
    /// Evaluates `file`, executed by `path`, with a worker's state.
    pub fn evaluate_file(
        &self,
        local: &mut WorkerState,
        file: &File,
        path: &[u8],
    ) -> Evaluation<Verdict> {
        self.evaluate_with(
            &mut local.rules,
            &mut local.scratch,
            file,
            path,
            &rules::NoExec,
            Context::default(),
        )
    }

    /// The evaluation, over the two parts of a worker's state it uses (so the caller can lend
    /// the third, the path buffer, at the same time).
    fn evaluate_with(
        &self,
        rules_eval: &mut rules::Evaluator,
        scratch: &mut Vec<u8>,
        file: &File,
        path: &[u8],
        exec: &dyn rules::ExecFacts,
        context: Context<'_>,
    ) -> Evaluation<Verdict> {
        let id = match signing::identify_file(file, &self.limits, scratch) {
            Ok(id) => id,
            Err(e) => {
                let verdict = unidentified(&self.policy, problem_of(&e));
                return Evaluation {
                    decision: verdict,
                    cacheability: Cacheability::Never,
                };
            }
        };
        let sha256 = *id.hash.sha256.as_bytes();
        let signing = id.signing.as_ref();
        let status = signing.map_or(signing::SigningStatus::Unsigned, |s| s.status);
        let leaf = signing.and_then(|s| s.chain().first());
        let team_id = signing.and_then(|s| s.team_id());
        let signing_id = signing.and_then(|s| s.signing_id());
        let cdhash = signing.and_then(|s| s.cdhash());
        let platform = signing.is_some_and(|s| s.is_platform_binary());
        // The Signing ID's identifier part (after `TEAMID:` / `platform:`), as the rules match it.
        let ident = signing_id.map(rules::SigningId::ident);
        let identity = rules::FileIdentity {
            sha256: rules::Sha256(sha256),
            cdhash,
            signing_id: ident,
            team_id: team_id.copied(),
            cert_sha256: leaf.map(|c| c.sha256),
            signing_status: status,
            is_platform_binary: platform,
            path,
            signing_time: signing.and_then(|s| s.signing_time_unix()),
            secure_signing_time: signing.and_then(|s| s.secure_signing_time_unix()),
        };
        if id.hash.changed {
            // No version of the file that held still was read: neither trust nor cache it.
            return Evaluation {
                decision: unidentified(&self.policy, CHANGED_WHILE_EVALUATED),
                cacheability: Cacheability::FileChanged,
            };
        }
        if let Some(writer) = context.transitive_writer
            && let Some(sink) = self.transitive.get()
            && is_executable_output(file, id.format)
        {
            // Stored and published before the rules decide, so this very decision (and the
            // first exec waiting on it) sees the transitive rule.
            sink.compiler_output(sha256, context.log_path, writer);
        }
        let decision = rules_eval.decide_exec(&identity, exec);
        let mut cacheability = cacheability(&decision, false);
        if !context.fine_grained
            && !stamp_settled(id.hash.stamp.ctime_ns, now_realtime_ns())
            && cacheability.is_cacheable()
        {
            // Changed moments ago: a rewrite in the same clock tick could keep this stamp.
            cacheability = Cacheability::Never;
        }
        Evaluation {
            decision: Verdict {
                signing_status: Some(status),
                ..Verdict::identified(
                    decision,
                    sha256,
                    leaf,
                    team_id.map(|t| Arc::from(t.as_str())),
                    signing_id.map(|s| s.shared().clone()),
                    cdhash.map(|c| *c.as_bytes()),
                )
            },
            cacheability,
        }
    }
}

impl<P: Subject> Evaluator<P> for ExecEvaluator {
    /// Behind an `Arc`: the decision cache holds one per file, and a hit clones it (one
    /// reference-count increment) rather than copying ~300 bytes; an empty cache slot is small.
    type Decision = Arc<Verdict>;
    type Local = WorkerState;

    fn local(&self, _worker: usize) -> WorkerState {
        WorkerState {
            rules: self.policy.evaluator(),
            scratch: Vec::new(),
            path: Box::new(Text::new()),
        }
    }

    fn evaluate(&self, local: &mut WorkerState, payload: &P) -> Evaluation<Arc<Verdict>> {
        let WorkerState {
            rules,
            scratch,
            path,
        } = local;
        path.clear();
        payload.path_into(path);
        let hold = payload.hold_writers();
        let trusted = payload.path_trusted();
        let rules_path: &[u8] = if trusted { path.as_bytes() } else { b"" };
        let facts = SubjectFacts(payload);
        let context = Context {
            transitive_writer: payload.transitive_writer(),
            log_path: path.as_bytes(),
            fine_grained: payload.stamps_fine_grained(),
        };
        let mut evaluation =
            self.evaluate_with(rules, scratch, payload.file(), rules_path, &facts, context);
        // A compiler's output is hashed again if it changed while it was read: its rule is
        // made from a version that held still, and the change is usually the linker's own
        // chmod after the close (`ld.bfd`), not new bytes.
        let mut tries = 1;
        while evaluation.cacheability == Cacheability::FileChanged
            && context.transitive_writer.is_some()
            && tries < TRANSITIVE_HASH_TRIES
        {
            tries += 1;
            evaluation =
                self.evaluate_with(rules, scratch, payload.file(), rules_path, &facts, context);
        }
        if evaluation.decision.decision.action == santa_rules::Action::Deny
            && evaluation.decision.decision.reason == santa_rules::Reason::Unknown
            && evaluation.decision.sha256.is_some()
            && payload.wait_transitive()
        {
            // The exec raced the close of a compiler's output: decided again now that its
            // transitive rule is published (the file is hashed again; this is rare).
            evaluation =
                self.evaluate_with(rules, scratch, payload.file(), rules_path, &facts, context);
        }
        if !trusted && evaluation.cacheability != Cacheability::FileChanged {
            // Decided without the path rules: another exec of this file by a real path, cached
            // or waiting on this evaluation, must be decided with them.
            evaluation.cacheability = Cacheability::PerExec;
        }
        match hold {
            WriteHold::Held | WriteHold::NotNeeded => {}
            // Someone could write through a mapping made before the hash without moving the
            // stamp: the bytes hashed may not be the bytes that run. The mode decides.
            WriteHold::Failed => {
                if evaluation.decision.decision.action == rules::Action::Allow {
                    evaluation.decision = unidentified(&self.policy, OPEN_FOR_WRITING);
                }
                // A decision about this execution alone stays that (parked execs are decided
                // for their own).
                if evaluation.cacheability != Cacheability::PerExec {
                    evaluation.cacheability = Cacheability::Never;
                }
            }
            // Writers cannot be held off here: the decision stands, but is not kept.
            WriteHold::Unavailable => {
                if evaluation.cacheability.is_cacheable() {
                    evaluation.cacheability = Cacheability::Never;
                }
            }
        }
        Evaluation {
            decision: Arc::new(evaluation.decision),
            cacheability: evaluation.cacheability,
        }
    }
}

/// Fills the decision half of an EXEC record: action, time, decision, reason, mode, explain
/// and the file's identities — or, for a default answer, why it was one. Every platform's
/// responder calls it with the answer that reached the kernel (`applied`).
pub fn fill_decision(
    rec: &mut Record,
    applied: rules::Action,
    verdict: Option<&Verdict>,
    default: Option<DefaultReason>,
    policy: &rules::PolicyEngine,
) {
    rec.kind = eventlog::RecordKind::Exec;
    rec.time = SystemTime::now();
    rec.decision = Some(applied);
    match verdict {
        Some(v) => {
            rec.reason = v.decision.reason;
            rec.mode = v.decision.mode;
            if let Some(explain) = v.decision.explain {
                rec.explain.set(explain.as_bytes());
            }
            rec.sha256 = v.sha256;
            rec.cert_sha256 = v.cert_sha256;
            if let Some(cn) = &v.cert_cn {
                rec.cert_cn.set(cn.as_bytes());
            }
            if let Some(t) = &v.team_id {
                rec.team_id.set(t.as_bytes());
            }
            if let Some(s) = &v.signing_id {
                rec.signing_id.set(s.as_bytes());
            }
            rec.cdhash = v.cdhash;
            rec.signing_status = v.signing_status;
            rec.silence = v.decision.silence;
            rec.custom = v.decision.custom.clone();
        }
        None => {
            rec.reason = rules::Reason::Unknown;
            rec.mode = policy.policy().config().mode;
            rec.explain.set(b"default answer: ");
            rec.explain
                .push(default.map_or("unknown", DefaultReason::name).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn policy(mode: rules::ClientMode, rules_list: &[rules::Rule]) -> Arc<rules::PolicyEngine> {
        let config = rules::PolicyConfig {
            mode,
            ..rules::PolicyConfig::default()
        };
        policy_with(config, rules_list)
    }

    fn policy_with(
        config: rules::PolicyConfig,
        rules_list: &[rules::Rule],
    ) -> Arc<rules::PolicyEngine> {
        let mut b = rules::SnapshotBuilder::new(1);
        for r in rules_list {
            b.insert(r).unwrap();
        }
        Arc::new(rules::PolicyEngine::new(
            b.build(),
            rules::Policy::new(config).unwrap(),
        ))
    }

    /// What `rules_list` under `policy` decides about `file`, and why.
    fn decided(policy: Arc<rules::PolicyEngine>, file: &File) -> (rules::Action, rules::Reason) {
        let e = ExecEvaluator::new(policy, 1 << 30);
        let out = e.evaluate_file(&mut local(&e), file, b"/tmp/signed");
        (out.decision.decision.action, out.decision.decision.reason)
    }

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        // Past the settle time: a file changed moments ago is never cached (see
        // `STAMP_SETTLE_NS`; `a_file_changed_moments_ago_is_decided_but_not_cached`).
        std::thread::sleep(std::time::Duration::from_nanos(
            STAMP_SETTLE_NS as u64 + 5_000_000,
        ));
        let opened = File::open(f.path()).unwrap();
        (f, opened)
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn local(e: &ExecEvaluator) -> WorkerState {
        <ExecEvaluator as Evaluator<TestSubject>>::local(e, 0)
    }

    struct TestSubject;
    impl Subject for TestSubject {
        fn file(&self) -> &File {
            unreachable!("not used")
        }
        fn path_into(&self, _out: &mut Text<PATH_BYTES_MAX>) {}
    }

    #[test]
    fn binary_rule_blocks_and_is_cached_for_the_deny_ttl() {
        let content = b"#!/bin/sh\necho blocked\n";
        let rule = rules::Rule::new(
            rules::RuleIdentifier::parse(rules::RuleType::Binary, &sha256_hex(content)).unwrap(),
            rules::RuleState::Block,
        );
        let e = ExecEvaluator::new(policy(rules::ClientMode::Monitor, &[rule]), 1 << 20);
        let (_keep, file) = file_with(content);
        let out = e.evaluate_file(&mut local(&e), &file, b"/tmp/x");
        assert_eq!(out.decision.decision.action, rules::Action::Deny);
        assert_eq!(out.decision.decision.reason, rules::Reason::Binary);
        assert_eq!(out.cacheability, Cacheability::DenyTtl);
        assert_eq!(
            out.decision.sha256.map(|s| s.to_vec()),
            Some(
                ring::digest::digest(&ring::digest::SHA256, content)
                    .as_ref()
                    .to_vec()
            )
        );
    }

    #[test]
    fn a_file_changed_moments_ago_is_decided_but_not_cached() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"#!/bin/sh\nfresh\n").unwrap();
        let file = File::open(f.path()).unwrap();
        let e = ExecEvaluator::new(policy(rules::ClientMode::Monitor, &[]), 1 << 20);
        let out = e.evaluate_file(&mut local(&e), &file, b"/tmp/fresh");
        assert_eq!(out.decision.decision.action, rules::Action::Allow);
        assert_eq!(out.cacheability, Cacheability::Never);
        assert!(stamp_settled(0, STAMP_SETTLE_NS) && !stamp_settled(1, STAMP_SETTLE_NS));
    }

    #[test]
    fn unknown_file_follows_the_mode() {
        let (_keep, file) = file_with(b"\x7fELF not really");
        let monitor = ExecEvaluator::new(policy(rules::ClientMode::Monitor, &[]), 1 << 20);
        let out = monitor.evaluate_file(&mut local(&monitor), &file, b"/tmp/y");
        assert_eq!(out.decision.decision.action, rules::Action::Allow);
        assert_eq!(out.decision.decision.reason, rules::Reason::Unknown);
        assert_eq!(out.cacheability, Cacheability::UntilChanged);
        let lockdown = ExecEvaluator::new(policy(rules::ClientMode::Lockdown, &[]), 1 << 20);
        let out = lockdown.evaluate_file(&mut local(&lockdown), &file, b"/tmp/y");
        assert_eq!(out.decision.decision.action, rules::Action::Deny);
        assert_eq!(out.cacheability, Cacheability::DenyTtl);
    }

    #[test]
    fn too_large_file_is_decided_by_the_mode_with_a_reason_and_never_cached() {
        let (_keep, file) = file_with(&vec![0u8; 2 << 20]);
        let lockdown = ExecEvaluator::new(policy(rules::ClientMode::Lockdown, &[]), 1 << 20);
        let out = lockdown.evaluate_file(&mut local(&lockdown), &file, b"/tmp/big");
        assert_eq!(
            out.decision.decision.action,
            rules::Action::Deny,
            "no way around Lockdown"
        );
        assert_eq!(out.decision.problem, Some("file larger than MaxHashBytes"));
        assert_eq!(out.cacheability, Cacheability::Never);
        let monitor = ExecEvaluator::new(policy(rules::ClientMode::Monitor, &[]), 1 << 20);
        let out = monitor.evaluate_file(&mut local(&monitor), &file, b"/tmp/big");
        assert_eq!(out.decision.decision.action, rules::Action::Allow);
    }

    /// A binary signed under a root that is not Apple's is validly signed by a development
    /// certificate (Santa validates without a trusted anchor): its certificate and CDHash rules
    /// match, its Team ID rules do not (the Team ID is the signer's claim there).
    #[test]
    fn a_binary_signed_under_another_root_matches_certificate_and_cdhash_rules_only() {
        use rules::{Action, ClientMode, Reason, RuleState, RuleType};
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("signing/tests/fixtures/signed");
        let bytes = std::fs::read(dir.join("selfsigned_root.macho")).unwrap();
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let leaf = expected["selfsigned_root"]["leaf_cert_sha256"]
            .as_str()
            .unwrap();
        let cdhash = signing::FileSigning::from_bytes(&bytes, &Default::default())
            .unwrap()
            .cdhash()
            .unwrap()
            .to_string();
        let (_tmp, file) = file_with(&bytes);
        let rule = |t, id: &str, state| {
            rules::Rule::new(rules::RuleIdentifier::parse(t, id).unwrap(), state)
        };
        let team_block = rule(RuleType::TeamId, "ABCDE12345", RuleState::Block);
        let cert_allow = rule(RuleType::Certificate, leaf, RuleState::Allow);
        let cdhash_block = rule(RuleType::CdHash, &cdhash, RuleState::Block);
        let lockdown = policy(ClientMode::Lockdown, &[team_block.clone(), cert_allow]);
        assert_eq!(decided(lockdown, &file), (Action::Allow, Reason::Cert));
        let monitor = policy(ClientMode::Monitor, &[team_block.clone(), cdhash_block]);
        assert_eq!(decided(monitor, &file), (Action::Deny, Reason::CdHash));
        let monitor = policy(ClientMode::Monitor, &[team_block]);
        assert_eq!(decided(monitor, &file), (Action::Allow, Reason::Unknown));
    }

    /// A universal file whose slices are signed differently is invalid as a whole (Santa's
    /// all-architectures rule), so bad-signature protection blocks it, even in Monitor mode,
    /// and its signed slice's Team ID matches no rule.
    #[test]
    fn a_universal_file_with_slices_signed_differently_is_blocked_as_a_bad_signature() {
        let shared =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/macho");
        let devid = std::fs::read(
            shared.join("devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector"),
        )
        .expect("the shared Mach-O fixtures are beside the repo");
        let adhoc = std::fs::read(shared.join("linker_signed_arm64_exec.node-pty_spawn-helper"))
            .expect("the shared Mach-O fixtures are beside the repo");
        let junk = vec![0x5a; 4096];
        // A record of a CPU type no parser knows, over bytes that are no Mach-O.
        let unknown = santa_testkit::FatSlice {
            cpu_type: 0x0100_000f,
            cpu_subtype: 0,
            bytes: &junk,
        };
        let team = rules::TeamId::from_signature(b"S8XHQB96PW").unwrap();
        let allow_team =
            rules::Rule::new(rules::RuleIdentifier::TeamId(team), rules::RuleState::Allow);
        let protected = rules::PolicyConfig {
            mode: rules::ClientMode::Monitor,
            enable_bad_signature_protection: true,
            ..rules::PolicyConfig::default()
        };
        for slices in [
            [
                santa_testkit::slices_of(&devid)[0],
                santa_testkit::slices_of(&adhoc)[0],
            ],
            [unknown, santa_testkit::slices_of(&devid)[0]],
        ] {
            let (_tmp, file) = file_with(&santa_testkit::universal(&slices));
            let blocked = decided(
                policy_with(protected.clone(), std::slice::from_ref(&allow_team)),
                &file,
            );
            assert_eq!(blocked, (rules::Action::Deny, rules::Reason::Cert));
            // Without the protection it runs (Monitor), but not by the Team ID rule.
            let ran = decided(
                policy(
                    rules::ClientMode::Monitor,
                    std::slice::from_ref(&allow_team),
                ),
                &file,
            );
            assert_eq!(ran, (rules::Action::Allow, rules::Reason::Unknown));
        }
    }

    #[test]
    fn signed_mach_o_fixture_matches_a_team_id_rule() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/macho/devid_app/Mitmproxy Redirector.app/Contents/MacOS/Mitmproxy Redirector");
        let file = File::open(&fixture).expect("the shared Mach-O fixtures are beside the repo");
        let info = signing::file_info(&fixture, &Default::default()).unwrap();
        let team = *info.team_id().expect("the devid fixture has a Team ID");
        let rule = rules::Rule::new(rules::RuleIdentifier::TeamId(team), rules::RuleState::Block);
        let e = ExecEvaluator::new(policy(rules::ClientMode::Monitor, &[rule]), 1 << 30);
        let out = e.evaluate_file(
            &mut local(&e),
            &file,
            fixture.as_os_str().as_encoded_bytes(),
        );
        assert_eq!(
            out.decision.decision.reason,
            rules::Reason::TeamId,
            "{:?}",
            out.decision
        );
        assert_eq!(out.decision.decision.action, rules::Action::Deny);
        assert_eq!(out.decision.team_id.as_deref(), Some(team.as_str()));
        assert!(out.decision.cdhash.is_some() && out.decision.cert_sha256.is_some());
    }
}
