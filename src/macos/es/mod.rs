//! macOS Endpoint Security, the platform-neutral half: everything santad does with an ES message
//! except the calls into `EndpointSecurity.framework`, so that all of it is built and tested on
//! Linux. The one file of ES calls is [`crate::macos`] (compiled only for macOS).
//!
//! ```text
//!  ES callback (client.rs): retain message ─► EsMessage::view ─► intake()
//!     AUTH_EXEC    → Event { EsExec, key/stamp from ES's stat, deadline = Santa's budget }
//!     NOTIFY_EXEC  → Event (logged only; dropped if it follows our own allow)
//!     NOTIFY_CLOSE (modified), NOTIFY_UNLINK, NOTIFY_RENAME → invalidate the cached decision
//!  worker: EsEvaluator  open the executable by path, check it is the file ES described,
//!                       SHA-256 + certificate from the file, Team ID / Signing ID / CDHash /
//!                       signing status from the message (the kernel's view), rules decide
//!  EsResponder: answer (AuthPort → es_respond_auth_result), ES caches allows only, log line,
//!               block message on the terminal for a deny
//! ```
//!
//! The message is read through the [`EsMessage`] trait, whose one method turns whatever holds
//! the message (a retained `es_message_t` on macOS, plain values in tests) into a [`MessageView`]
//! of plain borrowed values. Every decision about the message is made on that view.

use crate::blockmsg::{BlockMessenger, BlockNotice};
use crate::eventlog::{ARGS_BYTES_MAX, EventLog, Record, Text};
use crate::identity::{Verdict, cacheability, problem_of};
use santa_hotpath::clock::MachTimebase;
use santa_hotpath::{
    Answer, AnsweredBy, Cacheability, Clock, DefaultReason, Engine, Evaluation, Evaluator, Event,
    FileKey, FileStamp, Handle, Responder, Source, Submitted, budget,
};
use santa_rules as rules;
use santa_signing as signing;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Code-signing flags of `es_process_t.codesigning_flags` (XNU `kern/cs_blobs.h`).
pub mod cs {
    /// The signature is valid (no invalid page has been loaded).
    pub const CS_VALID: u32 = 0x0000_0001;
    /// Ad-hoc signed (no certificate).
    pub const CS_ADHOC: u32 = 0x0000_0002;
    /// The kernel refuses to load invalid pages.
    pub const CS_HARD: u32 = 0x0000_0100;
    /// The kernel kills the process if it goes invalid.
    pub const CS_KILL: u32 = 0x0000_0200;
    /// The kernel killed the process for invalidity.
    pub const CS_KILLED: u32 = 0x0100_0000;
    /// The process has a signature (it may have gone invalid).
    pub const CS_SIGNED: u32 = 0x2000_0000;
    /// Signed with a development certificate.
    pub const CS_DEV_CODE: u32 = 0x4000_0000;
}

/// `CPU_TYPE_ARM64` (`mach/machine.h`: `CPU_TYPE_ARM | CPU_ARCH_ABI64`).
pub const CPU_TYPE_ARM64: i32 = 0x0100_000c;

/// Deadline of an exec notification (nobody waits on it): only bounds how long it may sit
/// queued before it is logged with the default.
pub const NOTIFICATION_DEADLINE_NS: u64 = 60_000_000_000;

/// Remembered allows for dropping the NOTIFY_EXEC that follows each of them. A notification
/// follows its AUTH answer within microseconds, so a small table suffices; a collision at worst
/// logs a line twice.
pub const RECENT_ALLOWS: usize = 4_096;

/// A file as Endpoint Security describes it (`es_file_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileView<'a> {
    /// Absolute path (bytes, not necessarily UTF-8).
    pub path: &'a [u8],
    /// ES truncated the path (it is then not the file's path and must not be opened).
    pub path_truncated: bool,
    /// `st_dev`, widened exactly as `std::os::unix::fs::MetadataExt::dev` widens it.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_ctime` in nanoseconds.
    pub ctime_ns: i64,
    /// `st_size`.
    pub size: u64,
}

impl FileView<'_> {
    /// The decision cache key.
    pub fn key(&self) -> FileKey {
        FileKey {
            dev: self.dev,
            ino: self.ino,
        }
    }

    /// What must still hold for a cached decision to apply.
    pub fn stamp(&self) -> FileStamp {
        FileStamp {
            ctime_ns: self.ctime_ns,
            size_bytes: self.size,
        }
    }
}

/// A process as Endpoint Security describes it (`es_process_t` plus its audit token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessView<'a> {
    /// pid (from the audit token).
    pub pid: i32,
    /// pidversion (from the audit token): tells apart two images run by one pid.
    pub pidversion: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// `CS_*` flags, see [`cs`].
    pub codesigning_flags: u32,
    /// The kernel says it is an Apple platform binary.
    pub is_platform_binary: bool,
    /// The process holds the Endpoint Security entitlement.
    pub is_es_client: bool,
    /// The code directory hash the kernel validated.
    pub cdhash: [u8; 20],
    /// Signing identifier (empty when unsigned).
    pub signing_id: &'a [u8],
    /// Team ID (empty for ad-hoc and platform binaries).
    pub team_id: &'a [u8],
    /// The executable file.
    pub executable: FileView<'a>,
    /// The controlling terminal's path, if any (message version ≥ 2).
    pub tty: Option<&'a [u8]>,
}

/// An exec, AUTH or NOTIFY (`es_event_exec_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecView<'a> {
    /// The new image.
    pub target: ProcessView<'a>,
    /// The image's CPU type (message version ≥ 6), for Santa's "the kernel will kill it" rule.
    pub image_cputype: Option<i32>,
}

/// The events santad subscribes to, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventView<'a> {
    /// `ES_EVENT_TYPE_AUTH_EXEC`: the exec waits for our answer.
    AuthExec(ExecView<'a>),
    /// `ES_EVENT_TYPE_NOTIFY_EXEC`: an exec happened (also those ES's cache allowed).
    NotifyExec(ExecView<'a>),
    /// `ES_EVENT_TYPE_NOTIFY_CLOSE`.
    NotifyClose {
        /// The file was written through a file descriptor.
        modified: bool,
        /// The file.
        target: FileView<'a>,
    },
    /// `ES_EVENT_TYPE_NOTIFY_UNLINK`.
    NotifyUnlink {
        /// The removed file.
        target: FileView<'a>,
    },
    /// `ES_EVENT_TYPE_NOTIFY_RENAME`.
    NotifyRename {
        /// The renamed file.
        source: FileView<'a>,
        /// The file it replaced, if it replaced one.
        destination: Option<FileView<'a>>,
    },
    /// Any other event type (its `es_event_type_t` number).
    Other(u32),
}

/// One ES message as plain values borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// `ES_ACTION_TYPE_AUTH`: the message must be answered before `deadline_ticks`.
    pub is_auth: bool,
    /// The kernel's deadline in `mach_absolute_time` ticks (AUTH only).
    pub deadline_ticks: u64,
    /// The process that acted (for an exec: the one calling exec).
    pub process: ProcessView<'a>,
    /// The event.
    pub event: EventView<'a>,
}

impl<'a> MessageView<'a> {
    /// The exec, for AUTH_EXEC and NOTIFY_EXEC.
    pub fn exec(&self) -> Option<&ExecView<'a>> {
        match &self.event {
            EventView::AuthExec(e) | EventView::NotifyExec(e) => Some(e),
            _ => None,
        }
    }
}

/// Whatever holds an ES message: a retained `es_message_t` on macOS, plain values in tests.
pub trait EsMessage: Send + Sync + 'static {
    /// The message as plain values (no copy: slices borrow the message).
    fn view(&self) -> MessageView<'_>;
    /// Writes the exec's arguments into `out`, each followed by NUL (exec messages only).
    fn exec_args_into(&self, out: &mut Text<ARGS_BYTES_MAX>);
}

/// What the intake does with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// An exec to decide: submit it to the engine.
    Decide {
        /// AUTH (answer the kernel) or NOTIFY (log only).
        kind: Kind,
        /// The executable's cache key.
        key: FileKey,
        /// The executable's stamp.
        stamp: FileStamp,
        /// When the engine must have answered, on the engine's clock.
        deadline_ns: u64,
    },
    /// Files whose cached decisions are no longer valid.
    Invalidate([Option<FileKey>; 2]),
    /// An AUTH message santad does not decide: allow it at once, uncached (ES kills a client
    /// that leaves an AUTH message unanswered).
    AllowUnknownAuth,
    /// Nothing to do.
    Ignore,
}

/// AUTH or NOTIFY exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `AUTH_EXEC`: the exec waits for our answer.
    Auth,
    /// `NOTIFY_EXEC`: only logged.
    Notify,
}

/// Translates one message into what the intake does with it. `now_ns` is the engine clock's
/// now, on the same time line as `mach_absolute_time` scaled by `timebase` (santad's
/// `MonotonicClock` on macOS), so the kernel deadline converts to the engine's clock directly.
///
/// - AUTH_EXEC: decide by Santa's budget, 80 % of the time left keeping 1–5 s of headroom
///   ([`budget::answer_by_ns`]); the key and stamp come from ES's own `stat` of the executable,
///   so the callback makes no system call.
/// - NOTIFY_EXEC: decide (for the log line) within [`NOTIFICATION_DEADLINE_NS`].
/// - NOTIFY_CLOSE of a modified file: its contents changed.
/// - NOTIFY_UNLINK: the inode number may be reused by another file.
/// - NOTIFY_RENAME: path rules (`AllowedPathRegex`, `BlockedPathRegex`) decided for the old
///   path; a replaced destination is gone, like an unlinked file.
pub fn translate(view: &MessageView<'_>, now_ns: u64, timebase: MachTimebase) -> Intake {
    match &view.event {
        EventView::AuthExec(exec) => {
            let file = &exec.target.executable;
            Intake::Decide {
                kind: Kind::Auth,
                key: file.key(),
                stamp: file.stamp(),
                deadline_ns: budget::answer_by_ns(
                    now_ns,
                    timebase.ticks_to_ns(view.deadline_ticks),
                ),
            }
        }
        EventView::NotifyExec(exec) => {
            let file = &exec.target.executable;
            Intake::Decide {
                kind: Kind::Notify,
                key: file.key(),
                stamp: file.stamp(),
                deadline_ns: now_ns.saturating_add(NOTIFICATION_DEADLINE_NS),
            }
        }
        _ if view.is_auth => Intake::AllowUnknownAuth,
        EventView::NotifyClose {
            modified: true,
            target,
        } => Intake::Invalidate([Some(target.key()), None]),
        EventView::NotifyUnlink { target } => Intake::Invalidate([Some(target.key()), None]),
        EventView::NotifyRename {
            source,
            destination,
        } => Intake::Invalidate([Some(source.key()), destination.map(|d| d.key())]),
        EventView::NotifyClose {
            modified: false, ..
        }
        | EventView::Other(_) => Intake::Ignore,
    }
}

/// Santa's `CdhashStrictlyEnforced`: the kernel refuses or kills on any page that does not
/// match its code directory slot, so the reported CDHash binds to what actually runs.
pub fn cdhash_strictly_enforced(flags: u32) -> bool {
    flags & cs::CS_VALID != 0 && flags & (cs::CS_HARD | cs::CS_KILL) != 0
}

/// Santa's `KernelWillKillForCodeSigning`: already killed, or native arm64 code with `CS_KILL`
/// that is not valid (arm64 code must be signed; x86_64 may run unsigned, also under Rosetta).
pub fn kernel_will_kill(flags: u32, image_cputype: Option<i32>) -> bool {
    flags & cs::CS_KILLED != 0
        || (image_cputype == Some(CPU_TYPE_ARM64)
            && flags & cs::CS_KILL != 0
            && flags & cs::CS_VALID == 0)
}

/// Santa's signing status from the kernel's flags (SNTPolicyProcessor's status callback).
pub fn signing_status(flags: u32, image_cputype: Option<i32>) -> rules::SigningStatus {
    if kernel_will_kill(flags, image_cputype) {
        rules::SigningStatus::Invalid
    } else if flags & cs::CS_SIGNED == 0 {
        rules::SigningStatus::Unsigned
    } else if flags & cs::CS_VALID == 0 {
        rules::SigningStatus::Invalid
    } else if flags & cs::CS_ADHOC != 0 {
        rules::SigningStatus::AdHoc
    } else if flags & cs::CS_DEV_CODE != 0 {
        rules::SigningStatus::Development
    } else {
        rules::SigningStatus::Production
    }
}

/// The identities the kernel vouches for, by Santa's rules (`decisionForFileInfo:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelIdentity<'a> {
    /// Signing status from the flags.
    pub status: rules::SigningStatus,
    /// Team ID: signed, valid, with a signing identifier and a Team ID.
    pub team_id: Option<rules::TeamId>,
    /// The raw signing identifier, when a Signing ID can be formed (`TEAMID:` or `platform:`).
    pub signing_ident: Option<&'a str>,
    /// CDHash, only when the kernel strictly enforces it.
    pub cdhash: Option<[u8; 20]>,
}

impl KernelIdentity<'_> {
    /// Santa's Signing ID text: `TEAMID:ident` or `platform:ident`.
    pub fn signing_id_text(&self) -> Option<String> {
        let ident = self.signing_ident?;
        Some(match &self.team_id {
            Some(team) => format!("{}:{ident}", String::from_utf8_lossy(team.as_bytes())),
            None => format!("platform:{ident}"),
        })
    }
}

/// The kernel's identities of `target`: Team and Signing IDs only for a signed, valid process
/// with a signing identifier (the Signing ID needs a Team ID or a platform binary); the CDHash
/// only when [`cdhash_strictly_enforced`].
pub fn kernel_identity<'a>(
    target: &ProcessView<'a>,
    image_cputype: Option<i32>,
) -> KernelIdentity<'a> {
    let flags = target.codesigning_flags;
    let mut id = KernelIdentity {
        status: signing_status(flags, image_cputype),
        team_id: None,
        signing_ident: None,
        cdhash: None,
    };
    let signed_valid = flags & cs::CS_SIGNED != 0 && flags & cs::CS_VALID != 0;
    if !signed_valid {
        return id;
    }
    let ident = std::str::from_utf8(target.signing_id)
        .ok()
        .filter(|s| !s.is_empty());
    if let Some(ident) = ident {
        if !target.team_id.is_empty() {
            // A Team ID the kernel reports but that is not ten upper-case alphanumerics is no
            // Team ID any rule could name: leave both IDs out rather than guess.
            if let Some(team) = rules::TeamId::from_signature(target.team_id) {
                id.team_id = Some(team);
                id.signing_ident = Some(ident);
            }
        } else if target.is_platform_binary {
            id.signing_ident = Some(ident);
        }
    }
    if cdhash_strictly_enforced(flags) {
        id.cdhash = Some(target.cdhash);
    }
    id
}

/// The engine's payload: one retained message and what the intake learned from it.
#[derive(Debug)]
pub struct EsExec<M> {
    msg: M,
    kind: Kind,
    key: FileKey,
}

impl<M: EsMessage> EsExec<M> {
    /// The message.
    pub fn message(&self) -> &M {
        &self.msg
    }

    /// AUTH or NOTIFY.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// Why an AUTH answer did not reach the kernel (`es_respond_result_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespondError {
    /// `ES_RESPOND_RESULT_ERR_INVALID_ARGUMENT`.
    InvalidArgument,
    /// `ES_RESPOND_RESULT_ERR_INTERNAL`: communication with ES failed.
    Internal,
    /// `ES_RESPOND_RESULT_NOT_FOUND`: the message is unknown (already past its deadline).
    NotFound,
    /// `ES_RESPOND_RESULT_ERR_DUPLICATE_RESPONSE`: answered twice (a bug: the engine answers
    /// exactly once).
    Duplicate,
    /// `ES_RESPOND_RESULT_ERR_EVENT_TYPE`: not an auth-result event.
    EventType,
    /// A value this build does not know.
    Unknown(u32),
}

impl RespondError {
    /// `es_respond_result_t` → `Ok` or the error (values from `ESTypes.h`).
    pub fn check(code: u32) -> Result<(), RespondError> {
        Err(match code {
            0 => return Ok(()),
            1 => Self::InvalidArgument,
            2 => Self::Internal,
            3 => Self::NotFound,
            4 => Self::Duplicate,
            5 => Self::EventType,
            other => Self::Unknown(other),
        })
    }
}

/// Why `es_new_client` refused santad: each a startup error an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewClientError {
    /// `ES_NEW_CLIENT_RESULT_ERR_INVALID_ARGUMENT`.
    InvalidArgument,
    /// `ES_NEW_CLIENT_RESULT_ERR_INTERNAL`.
    Internal,
    /// `ES_NEW_CLIENT_RESULT_ERR_NOT_ENTITLED`.
    NotEntitled,
    /// `ES_NEW_CLIENT_RESULT_ERR_NOT_PERMITTED`: no TCC (Full Disk Access) approval.
    NotPermitted,
    /// `ES_NEW_CLIENT_RESULT_ERR_NOT_PRIVILEGED`.
    NotPrivileged,
    /// `ES_NEW_CLIENT_RESULT_ERR_TOO_MANY_CLIENTS`.
    TooManyClients,
    /// A value this build does not know.
    Unknown(u32),
}

impl NewClientError {
    /// `es_new_client_result_t` → `Ok` or the error (values from `ESTypes.h`).
    pub fn check(code: u32) -> Result<(), NewClientError> {
        Err(match code {
            0 => return Ok(()),
            1 => Self::InvalidArgument,
            2 => Self::Internal,
            3 => Self::NotEntitled,
            4 => Self::NotPermitted,
            5 => Self::NotPrivileged,
            6 => Self::TooManyClients,
            other => Self::Unknown(other),
        })
    }
}

impl std::fmt::Display for NewClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotPrivileged => f.write_str("santad is not running as root"),
            Self::NotEntitled => f.write_str(
                "the santad binary lacks the com.apple.developer.endpoint-security.client \
                 entitlement (it must be signed with a provisioning profile that grants it)",
            ),
            Self::NotPermitted => f.write_str(
                "santad has no Full Disk Access (TCC): approve it in System Settings > Privacy \
                 & Security > Full Disk Access, or with an MDM PPPC profile",
            ),
            Self::TooManyClients => f.write_str(
                "too many Endpoint Security clients are connected (is another santad running?)",
            ),
            Self::InvalidArgument => f.write_str("invalid argument to es_new_client"),
            Self::Internal => f.write_str("Endpoint Security internal error"),
            Self::Unknown(code) => write!(f, "es_new_client returned unknown result {code}"),
        }
    }
}

impl std::error::Error for NewClientError {}

/// Why `es_clear_cache` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearCacheError {
    /// `ES_CLEAR_CACHE_RESULT_ERR_INTERNAL`.
    Internal,
    /// `ES_CLEAR_CACHE_RESULT_ERR_THROTTLE`: called too often (the cache is shared by every
    /// ES client, so the kernel rate-limits clearing it).
    Throttled,
    /// A value this build does not know.
    Unknown(u32),
}

impl ClearCacheError {
    /// `es_clear_cache_result_t` → `Ok` or the error.
    pub fn check(code: u32) -> Result<(), ClearCacheError> {
        Err(match code {
            0 => return Ok(()),
            1 => Self::Internal,
            2 => Self::Throttled,
            other => Self::Unknown(other),
        })
    }
}

/// Where AUTH answers go: `es_respond_auth_result` on macOS.
pub trait AuthPort<M>: Send + Sync + 'static {
    /// Answers `msg` with `action`; `cache` lets ES cache the answer for the file.
    fn respond(&self, msg: &M, action: rules::Action, cache: bool) -> Result<(), RespondError>;
}

/// The answer to give the kernel for one engine answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelAnswer {
    /// Allow or deny.
    pub action: rules::Action,
    /// Let ES cache it.
    pub cache: bool,
}

/// Santa's caching rule: ES caches an allow the engine marked cacheable, never a deny (Santa
/// flushes ES's cache only for new deny rules, so a cached deny would outlive a new allow rule)
/// and never a default answer (deadline, full queue, shutdown: no decision was made).
pub fn kernel_answer(answer: &Answer<'_, Arc<Verdict>>, default: rules::Action) -> KernelAnswer {
    match answer {
        Answer::Decided {
            decision,
            cacheable,
            ..
        } => {
            let action = decision.decision.action;
            KernelAnswer {
                action,
                cache: action == rules::Action::Allow && *cacheable,
            }
        }
        Answer::Default(_) => KernelAnswer {
            action: default,
            cache: false,
        },
    }
}

/// Recent allows by `(pid, file)`, to drop the NOTIFY_EXEC that follows each of our own.
#[derive(Debug)]
pub struct RecentAllows {
    tags: Box<[AtomicU64]>,
}

impl Default for RecentAllows {
    fn default() -> Self {
        Self {
            tags: (0..RECENT_ALLOWS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl RecentAllows {
    fn tag(pid: i32, key: FileKey) -> u64 {
        let mut h = (pid as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= key.ino.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= key.dev.rotate_left(29);
        h | 1
    }

    fn slot(&self, pid: i32) -> &AtomicU64 {
        &self.tags[pid as u32 as usize % self.tags.len()]
    }

    /// Remembers that we allowed `pid` to exec `key`.
    pub fn record(&self, pid: i32, key: FileKey) {
        self.slot(pid).store(Self::tag(pid, key), Ordering::Release);
    }

    /// True (and forgotten) if we just allowed this exec ourselves.
    pub fn take(&self, pid: i32, key: FileKey) -> bool {
        let tag = Self::tag(pid, key);
        self.slot(pid)
            .compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }
}

/// Counters of the ES side, for status and tests.
#[derive(Debug, Default)]
pub struct EsCounters {
    /// AUTH_EXEC messages taken.
    pub auth_execs: AtomicU64,
    /// NOTIFY_EXEC messages taken.
    pub notify_execs: AtomicU64,
    /// NOTIFY_EXEC messages dropped as following our own allow.
    pub notify_execs_deduplicated: AtomicU64,
    /// Cached decisions invalidated by close-modified, unlink and rename.
    pub invalidations: AtomicU64,
    /// AUTH messages of a type santad does not decide, allowed at once.
    pub unknown_auths: AtomicU64,
    /// AUTH messages that arrived before the engine was running (allowed at once, uncached).
    pub early_auths: AtomicU64,
    /// Answers ES refused.
    pub respond_errors: AtomicU64,
    /// `es_clear_cache` failures (throttled or internal).
    pub clear_cache_errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// How the intake reaches the engine: implemented by the engine's [`Handle`].
pub trait EngineIntake<P> {
    /// The engine clock's now.
    fn now_ns(&self) -> u64;
    /// Submits an event on behalf of `core` (see `Submit::submit`).
    fn submit(&self, core: usize, event: Event<P>) -> Submitted;
    /// Forgets the cached decision about one file.
    fn invalidate(&self, key: FileKey);
}

impl<P, E, R, C, S> EngineIntake<P> for Handle<P, E, R, C, S>
where
    P: Send + Sync + 'static,
    E: Evaluator<P>,
    R: Responder<P, E::Decision>,
    C: Clock,
    S: Source<P>,
{
    fn now_ns(&self) -> u64 {
        Handle::now_ns(self)
    }
    fn submit(&self, core: usize, event: Event<P>) -> Submitted {
        Handle::submit(self, core, event)
    }
    fn invalidate(&self, key: FileKey) {
        Handle::invalidate(self, key)
    }
}

/// What the ES callback shares with the responder.
#[derive(Debug)]
pub struct EsShared {
    /// Counters.
    pub counters: EsCounters,
    /// Our own recent allows (NOTIFY_EXEC deduplication).
    pub recent: RecentAllows,
    /// The Mach timebase of the engine's clock.
    pub timebase: MachTimebase,
    /// Log NOTIFY_EXEC for execs ES's cache allowed (`LogExecNotifications`).
    pub log_notifications: bool,
    next_core: AtomicU64,
}

impl EsShared {
    /// Shared state for an engine whose clock converts ticks with `timebase`.
    pub fn new(timebase: MachTimebase, log_notifications: bool) -> Arc<Self> {
        Arc::new(Self {
            counters: EsCounters::default(),
            recent: RecentAllows::default(),
            timebase,
            log_notifications,
            next_core: AtomicU64::new(0),
        })
    }

    /// Takes one message in ES's callback thread: submits, invalidates, or answers at once.
    /// `answer_now` answers an AUTH message santad does not decide (allow, uncached).
    ///
    /// The ES callback runs on a thread that is not a worker, so there is no core-local queue
    /// to prefer: messages go round-robin over the workers' queues (the engine wakes idle
    /// siblings to steal when one queue backs up).
    pub fn intake<M: EsMessage>(
        &self,
        engine: &dyn EngineIntake<EsExec<M>>,
        msg: M,
        answer_now: impl FnOnce(&M),
    ) -> Intake {
        let view = msg.view();
        let intake = translate(&view, engine.now_ns(), self.timebase);
        match intake {
            Intake::Decide {
                kind,
                key,
                stamp,
                deadline_ns,
            } => {
                if kind == Kind::Notify {
                    bump(&self.counters.notify_execs);
                    if !self.log_notifications {
                        return Intake::Ignore;
                    }
                    let pid = view.exec().map_or(0, |e| e.target.pid);
                    if self.recent.take(pid, key) {
                        bump(&self.counters.notify_execs_deduplicated);
                        return Intake::Ignore;
                    }
                } else {
                    bump(&self.counters.auth_execs);
                }
                let core = self.next_core.fetch_add(1, Ordering::Relaxed) as usize;
                engine.submit(
                    core,
                    Event {
                        payload: EsExec { msg, kind, key },
                        key,
                        stamp,
                        deadline_ns,
                    },
                );
            }
            Intake::Invalidate(keys) => {
                for key in keys.into_iter().flatten() {
                    bump(&self.counters.invalidations);
                    engine.invalidate(key);
                }
            }
            Intake::AllowUnknownAuth => {
                bump(&self.counters.unknown_auths);
                answer_now(&msg);
            }
            Intake::Ignore => {}
        }
        intake
    }
}

/// The evaluator for ES execs: the file by path, the signing identities from the kernel.
#[derive(Debug)]
pub struct EsEvaluator {
    policy: Arc<rules::PolicyEngine>,
    limits: signing::HashLimits,
}

/// One worker's state.
#[derive(Debug)]
pub struct EsWorker {
    rules: rules::Evaluator,
    scratch: Vec<u8>,
}

impl EsEvaluator {
    /// An evaluator over `policy`, reading at most `hash_bytes_max` bytes of any file.
    pub fn new(policy: Arc<rules::PolicyEngine>, hash_bytes_max: u64) -> Self {
        Self {
            policy,
            limits: signing::HashLimits {
                hash_bytes_max,
                ..signing::HashLimits::default()
            },
        }
    }

    /// A worker's state.
    pub fn worker(&self) -> EsWorker {
        EsWorker {
            rules: self.policy.evaluator(),
            scratch: Vec::new(),
        }
    }

    /// Decides one exec.
    pub fn evaluate_exec(&self, local: &mut EsWorker, exec: &ExecView<'_>) -> Evaluation<Verdict> {
        let executable = &exec.target.executable;
        let file = match open_executable(executable) {
            Ok(file) => file,
            Err(problem) => return self.unidentified(problem),
        };
        let id = match signing::identify_file(&file, &self.limits, &mut local.scratch) {
            Ok(id) => id,
            Err(e) => return self.unidentified(problem_of(&e)),
        };
        let kernel = kernel_identity(&exec.target, exec.image_cputype);
        let sha256 = *id.hash.sha256.as_bytes();
        // ES gives no certificate: the leaf comes from the file's own signature.
        let leaf = id.signing.as_ref().and_then(|s| s.chain().first());
        let identity = rules::FileIdentity {
            sha256: rules::Sha256(sha256),
            cdhash: kernel.cdhash.map(rules::CdHash),
            signing_id: kernel.signing_ident,
            team_id: kernel.team_id,
            cert_sha256: leaf.map(|c| rules::Sha256(*c.sha256.as_bytes())),
            signing_status: kernel.status,
            is_platform_binary: exec.target.is_platform_binary,
            path: executable.path,
        };
        let decision = local.rules.decide(&identity);
        let cacheability = cacheability(&decision, id.hash.changed);
        Evaluation {
            decision: Verdict {
                decision,
                sha256: Some(sha256),
                cert_sha256: leaf.map(|c| *c.sha256.as_bytes()),
                cert_cn: leaf
                    .and_then(|c| c.subject.common_name.as_deref())
                    .map(Arc::from),
                team_id: kernel
                    .team_id
                    .map(|t| Arc::from(String::from_utf8_lossy(t.as_bytes()).as_ref())),
                signing_id: kernel.signing_id_text().map(Arc::from),
                cdhash: kernel.cdhash,
                problem: None,
            },
            cacheability,
        }
    }

    /// The decision for a file that could not be identified: the mode decides (Lockdown denies,
    /// Monitor allows), never cached.
    fn unidentified(&self, problem: &'static str) -> Evaluation<Verdict> {
        Evaluation {
            decision: crate::identity::unidentified(&self.policy, problem),
            cacheability: Cacheability::Never,
        }
    }
}

/// Opens the executable ES described, by its path, and checks it is still that file: ES gives
/// a path and a `stat`, not a descriptor, and the path may have been replaced since the exec.
/// `O_NOFOLLOW`: ES's path is already resolved, so a symbolic link there now is a replacement.
pub fn open_executable(file: &FileView<'_>) -> Result<File, &'static str> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if file.path_truncated {
        return Err("path truncated by Endpoint Security");
    }
    let path = Path::new(std::ffi::OsStr::from_bytes(file.path));
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|_| "file could not be opened")?;
    let meta = opened.metadata().map_err(|_| "file could not be read")?;
    if meta.dev() != file.dev || meta.ino() != file.ino {
        return Err("file replaced since exec");
    }
    Ok(opened)
}

impl<M: EsMessage> Evaluator<EsExec<M>> for EsEvaluator {
    /// Behind an `Arc`, as on Linux (see `identity`).
    type Decision = Arc<Verdict>;
    type Local = EsWorker;

    fn local(&self, _worker: usize) -> EsWorker {
        self.worker()
    }

    fn evaluate(&self, local: &mut EsWorker, payload: &EsExec<M>) -> Evaluation<Arc<Verdict>> {
        let view = payload.msg.view();
        let evaluation = match view.exec() {
            Some(exec) => self.evaluate_exec(local, exec),
            // The intake submits exec messages only.
            None => self.unidentified("not an exec message"),
        };
        Evaluation {
            decision: Arc::new(evaluation.decision),
            cacheability: evaluation.cacheability,
        }
    }
}

/// The ES responder: answers AUTH messages through the [`AuthPort`], logs every exec.
#[derive(Debug)]
pub struct EsResponder<K> {
    port: K,
    shared: Arc<EsShared>,
    policy: Arc<rules::PolicyEngine>,
    log: Arc<EventLog>,
    blocks: Option<BlockMessenger>,
}

impl<K> EsResponder<K> {
    /// A responder answering through `port`.
    pub fn new(
        port: K,
        shared: Arc<EsShared>,
        policy: Arc<rules::PolicyEngine>,
        log: Arc<EventLog>,
        blocks: Option<BlockMessenger>,
    ) -> Self {
        Self {
            port,
            shared,
            policy,
            log,
            blocks,
        }
    }

    /// The port answers go through.
    pub fn port(&self) -> &K {
        &self.port
    }
}

impl<M: EsMessage, K: AuthPort<M>> Responder<EsExec<M>, Arc<Verdict>> for EsResponder<K> {
    fn respond(&self, _by: AnsweredBy, event: &EsExec<M>, answer: Answer<'_, Arc<Verdict>>) {
        let answered = kernel_answer(&answer, self.policy.policy().config().default_action());
        let allowed = answered.action == rules::Action::Allow;
        let (verdict, default) = match answer {
            Answer::Decided { decision, .. } => (Some(&**decision), None),
            Answer::Default(reason) => (None, Some(reason)),
        };
        let view = event.msg.view();
        if event.kind == Kind::Auth {
            if allowed
                && self.shared.log_notifications
                && let Some(exec) = view.exec()
            {
                // Before answering: the notification can only follow the answer.
                self.shared.recent.record(exec.target.pid, event.key);
            }
            if self
                .port
                .respond(&event.msg, answered.action, answered.cache)
                .is_err()
            {
                bump(&self.shared.counters.respond_errors);
            }
        }
        if let Some(mut rec) = self.log.acquire() {
            fill_record(
                &mut rec,
                &view,
                answered.action,
                verdict,
                default,
                &self.policy,
            );
            event.msg.exec_args_into(&mut rec.args);
            rec.commit();
        }
        if event.kind == Kind::Auth && !allowed {
            self.block_message(&view, verdict);
        }
    }
}

impl<K> EsResponder<K> {
    fn block_message(&self, view: &MessageView<'_>, verdict: Option<&Verdict>) {
        let Some(blocks) = &self.blocks else { return };
        if verdict.is_some_and(|v| v.decision.silence.tty) {
            return;
        }
        let Some(exec) = view.exec() else { return };
        let Some(tty) = exec.target.tty.filter(|t| !t.is_empty()) else {
            return;
        };
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let notice = BlockNotice {
            tty: PathBuf::from(std::ffi::OsStr::new(&*String::from_utf8_lossy(tty))),
            reason: Some(verdict.map_or(rules::Reason::Unknown, |v| v.decision.reason)),
            path: String::from_utf8_lossy(exec.target.executable.path).into_owned(),
            sha256: verdict.and_then(|v| v.sha256).map(|s| hex(&s)),
            team_id: verdict.and_then(|v| v.team_id.as_deref().map(str::to_string)),
            signing_id: verdict.and_then(|v| v.signing_id.as_deref().map(str::to_string)),
            cdhash: verdict.and_then(|v| v.cdhash).map(|c| hex(&c)),
            ppid: exec.target.ppid,
            custom_message: verdict
                .and_then(|v| v.decision.custom.msg.as_deref().map(str::to_string)),
            custom_url: verdict.and_then(|v| v.decision.custom.url.as_deref().map(str::to_string)),
            ..BlockNotice::default()
        };
        let _ = blocks.notify(Box::new(notice));
    }
}

/// Fills an EXEC record from the message and the answer.
fn fill_record(
    rec: &mut Record,
    view: &MessageView<'_>,
    applied: rules::Action,
    verdict: Option<&Verdict>,
    default: Option<DefaultReason>,
    policy: &rules::PolicyEngine,
) {
    crate::identity::fill_decision(rec, applied, verdict, default, policy);
    if let Some(exec) = view.exec() {
        let t = &exec.target;
        rec.pid = t.pid;
        rec.pidversion = t.pidversion as u32 as u64;
        rec.ppid = t.ppid;
        rec.uid = t.uid;
        rec.gid = t.gid;
        rec.path.set(t.executable.path);
    }
}

/// Where santad keeps its files on macOS, as Santa does (`/var/db/santa`).
pub mod paths {
    /// The launchd job's `--config` (also `config::DEFAULT_CONFIG_PATH`; `/etc` is
    /// `/private/etc` on macOS).
    pub const CONFIG_PATH: &str = "/etc/santa/santad.toml";
    /// The decision log, rotated by newsyslog (`dist/macos/com.northpolesec.santa.rs.newsyslog.conf`).
    pub const EVENT_LOG_PATH: &str = "/var/db/santa/santa.log";
    /// The rules database (also the config default).
    pub const RULES_DB_PATH: &str = "/var/db/santa/rules.db";
    /// santad's own diagnostics (launchd's `StandardErrorPath`).
    pub const DAEMON_LOG_PATH: &str = "/var/log/santad.log";
}

/// The engine santad runs on macOS, generic over the message holder and the answer port.
pub type EsEngine<M, K, C> =
    Engine<EsExec<M>, EsEvaluator, EsResponder<K>, C, santa_hotpath::ExternalSource>;

#[cfg(test)]
mod tests;
