//! The ES responder: the answer to give the kernel (and whether ES may cache it) through an
//! [`AuthPort`], the log line of every exec, the block message of a deny.

use super::{EsExec, EsMessage, EsShared, Kind, MessageView, RespondError, bump};
use crate::blockmsg::{BlockMessenger, BlockNotice};
use crate::bundles::BundleTask;
use crate::eventlog::{EventLog, Record};
use crate::identity::Verdict;
use santa_hotpath::{Answer, AnsweredBy, DefaultReason, Responder};
use santa_rules as rules;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

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

/// The ES responder: answers AUTH messages through the [`AuthPort`], logs every exec.
#[derive(Debug)]
pub struct EsResponder<K> {
    port: K,
    shared: Arc<EsShared>,
    policy: Arc<rules::PolicyEngine>,
    log: Arc<EventLog>,
    blocks: Option<BlockMessenger>,
    bundles: Option<BundleTask>,
}

impl<K> EsResponder<K> {
    /// A responder answering through `port` and logging to `log`.
    pub fn new(
        port: K,
        shared: Arc<EsShared>,
        policy: Arc<rules::PolicyEngine>,
        log: Arc<EventLog>,
    ) -> Self {
        Self {
            port,
            shared,
            policy,
            log,
            blocks: None,
            bundles: None,
        }
    }

    /// Block messages go to `blocks`; denied files to `bundles`, for `action=BUNDLE` lines.
    pub fn with_denial_handlers(mut self, blocks: BlockMessenger, bundles: BundleTask) -> Self {
        self.blocks = Some(blocks);
        self.bundles = Some(bundles);
        self
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
            self.hand_to_bundles(&view);
        }
    }
}

impl<K> EsResponder<K> {
    /// A denied file goes to the bundle task, which logs its bundle's executables if it is in
    /// one (as Santa logs the bundle of a blocked binary).
    fn hand_to_bundles(&self, view: &MessageView<'_>) {
        let (Some(bundles), Some(exec)) = (&self.bundles, view.exec()) else {
            return;
        };
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(exec.target.executable.path));
        if !bundles.submit(path) {
            bump(&self.shared.counters.bundle_drops);
        }
    }

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
pub(super) fn fill_record(
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
