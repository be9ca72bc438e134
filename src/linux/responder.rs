//! The fanotify responder: the answer, the kernel allow cache, scope, the log record, the block
//! message.

use super::linger::{exe_of, is_execve_check};
use super::*;

/// The fanotify responder.
#[derive(Debug)]
pub struct FanotifyResponder {
    /// Leases of answered execs kept until the exec holds its own write lock.
    pub linger: Arc<LeaseLinger>,
    linux: Arc<Linux>,
    policy: Arc<rules::PolicyEngine>,
    log: Arc<EventLog>,
    /// One name cache per answering thread (workers, then deadline thread, then submitters).
    names: Box<[Mutex<NameCache>]>,
    blocks: Option<BlockMessenger>,
    bundles: Option<BundleTask>,
    log_notifications: bool,
    /// Who Lockdown applies to (`None`: everyone).
    scope: Option<crate::linux::coverage::Scope>,
}

impl FanotifyResponder {
    /// A responder for `workers` workers.
    #[allow(clippy::too_many_arguments)] // the wiring's own pieces, each stored once
    pub fn new(
        linux: Arc<Linux>,
        policy: Arc<rules::PolicyEngine>,
        log: Arc<EventLog>,
        workers: usize,
        blocks: Option<BlockMessenger>,
        bundles: Option<BundleTask>,
        log_notifications: bool,
        linger: Arc<LeaseLinger>,
        scope: Option<crate::linux::coverage::Scope>,
    ) -> Self {
        Self {
            scope,
            linger,
            linux,
            policy,
            log,
            names: (0..workers + 2)
                .map(|_| Mutex::new(NameCache::new()))
                .collect(),
            blocks,
            bundles,
            log_notifications,
        }
    }

    fn names(&self, by: AnsweredBy) -> &Mutex<NameCache> {
        let n = self.names.len();
        let index = match by {
            AnsweredBy::Worker(w) => w.min(n - 3),
            AnsweredBy::Deadline => n - 2,
            AnsweredBy::Submitter => n - 1,
        };
        &self.names[index]
    }

    /// Takes a log record and fills the process half (pid, ppid, ids, names). Called for a
    /// permission event *before* answering: while the exec is held, `/proc/PID` is certain to
    /// exist; once answered, a short-lived process may be gone before we look.
    fn begin_record(&self, by: AnsweredBy, event: &ExecEvent) -> Option<eventlog::RecordSlot<'_>> {
        let mut rec = self.log.acquire()?;
        let mut names = self
            .names(by)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = procinfo::fill_process_fast(event.pid, &mut rec, &mut names);
        // The path as it is while the exec is held: once answered, a rename over the file (or
        // its removal) would make it read "... (deleted)" or name another file.
        event.path_into(&mut rec.path);
        Some(rec)
    }

    /// Fills the decision half of a record and hands it to the logger.
    fn finish_record(
        &self,
        rec: &mut Record,
        event: &ExecEvent,
        response: rules::Action,
        verdict: Option<&Verdict>,
        default: Option<DefaultReason>,
    ) {
        fill_record(rec, event, response, verdict, default, &self.policy);
        if rec.path.is_empty() {
            event.path_into(&mut rec.path);
        }
        if !event.path_trusted() {
            // The path is the one the exec'ing process's own mounts give: its choice. Name the
            // file as santad's mounts show it, and say what it was exec'd as.
            let mut own = Text::<{ eventlog::PATH_BYTES_MAX }>::new();
            if !rec.explain.is_empty() {
                rec.explain.push(b"; ");
            }
            rec.explain.push(b"exec'd as ");
            rec.explain.push(rec.path.as_bytes());
            rec.explain
                .push(b" in another mount namespace (path rules not applied)");
            if own_path_into(&event.file, &mut own) {
                rec.path.set(own.as_bytes());
            }
        }
        if procinfo::exec_completed(event.pid, event.key.dev, event.key.ino) {
            let _ = procinfo::read_cmdline_into(event.pid, &mut rec.args);
        }
    }

    /// Hands Santa's block message to its thread. `rec` is the exec's filled log record: path,
    /// ppid and user name come from it rather than from /proc again.
    fn block_message(&self, event: &ExecEvent, verdict: Option<&Verdict>, rec: &Record) {
        let Some(blocks) = &self.blocks else { return };
        if verdict.is_some_and(|v| v.decision.silence.tty) {
            return;
        }
        // The tty is the one fact the record does not carry.
        let Ok(stat) = procinfo::read_stat(event.pid) else {
            return;
        };
        let Some(tty) = procinfo::tty_path(stat.tty_nr) else {
            return;
        };
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let parent_name = std::fs::read_to_string(format!("/proc/{}/comm", stat.ppid))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let username = (!rec.user.is_empty())
            .then(|| String::from_utf8_lossy(rec.user.as_bytes()).into_owned());
        let notice = BlockNotice {
            tty: tty.as_path().to_path_buf(),
            reason: Some(verdict.map_or(rules::Reason::Unknown, |v| v.decision.reason)),
            path: String::from_utf8_lossy(rec.path.as_bytes()).into_owned(),
            sha256: verdict.and_then(|v| v.sha256).map(|s| hex(&s)),
            team_id: verdict.and_then(|v| v.team_id.as_deref().map(str::to_string)),
            signing_id: verdict.and_then(|v| v.signing_id.as_deref().map(str::to_string)),
            cdhash: verdict.and_then(|v| v.cdhash).map(|c| hex(&c)),
            username,
            parent_name,
            ppid: stat.ppid,
            custom_message: verdict
                .and_then(|v| v.decision.custom.msg.as_deref().map(str::to_string)),
            custom_url: verdict.and_then(|v| v.decision.custom.url.as_deref().map(str::to_string)),
            ..BlockNotice::default()
        };
        let _ = blocks.notify(Box::new(notice));
    }
}

/// Fills the decision half of an EXEC record (the process half comes from /proc).
fn fill_record(
    rec: &mut Record,
    event: &ExecEvent,
    response: rules::Action,
    verdict: Option<&Verdict>,
    default: Option<DefaultReason>,
    policy: &rules::PolicyEngine,
) {
    crate::identity::fill_decision(rec, response, verdict, default, policy);
    rec.pid = event.pid;
}

impl FanotifyResponder {
    /// Logs an exec the kernel cache answered (a `FAN_OPEN_EXEC` notification with no
    /// permission event before it) as the allow the kernel applied, with the decision that
    /// placed the mark. If the file no longer has the stamp it had then, that is an alert: the
    /// mark goes and, in Lockdown, the process is killed.
    ///
    /// Gives the event back when no mark is remembered for its file: the kernel did not ask
    /// and had nothing cached (see [`Kind::Unasked`]).
    pub fn kernel_cached(&self, worker: usize, event: ExecEvent) -> Result<(), ExecEvent> {
        let counters = &self.linux.counters;
        let Some(mark) = self.linux.mark_of(event.key) else {
            return Err(event);
        };
        let event = &event;
        let record = self.begin_record(AnsweredBy::Worker(worker), event);
        let changed = mark.stamp != event.facts.stamp;
        let mut killed = false;
        if changed {
            bump(&counters.kernel_cache_alerts);
            self.linux.withdraw_mark(event.file.as_fd(), event.key);
            if self.policy.policy().config().mode == rules::ClientMode::Lockdown {
                killed = procinfo::kill_process(event.pid);
                if killed {
                    bump(&counters.kernel_cache_kills);
                }
            }
            log::warn!(
                "ALERT: the kernel cache let pid {} execute a file changed since it was allowed{}",
                event.pid,
                if killed { "; process killed" } else { "" }
            );
        } else {
            bump(&counters.kernel_cached_execs);
            if mark.verdict.decision.reason == rules::Reason::Transitive
                && let Some(sha) = mark.verdict.sha256
                && let Some(sink) = self.linux.transitive.get()
            {
                // Used, whoever answered: its timestamp is renewed (at most hourly).
                sink.used(sha);
            }
        }
        if let Some(mut rec) = record {
            self.finish_record(
                &mut rec,
                event,
                rules::Action::Allow,
                Some(&mark.verdict),
                None,
            );
            if changed {
                rec.explain
                    .set(b"ALERT: kernel cache allowed a file changed since its decision");
                if killed {
                    rec.explain.push(b"; process killed");
                }
            }
            rec.commit();
        }
        Ok(())
    }
}

impl Responder<ExecEvent, Arc<Verdict>> for FanotifyResponder {
    fn respond(&self, by: AnsweredBy, event: &ExecEvent, answer: Answer<'_, Arc<Verdict>>) {
        if event.kind == Kind::Prefetch {
            // Decided before any exec: nobody to answer, nothing to log; its decision waits in
            // the cache for the first exec. Not given to the kernel cache yet: tools change a
            // file's mode or times after closing it (`install`, `ld.bfd`), which leaves a
            // kernel mark in place but moves the stamp it was placed for, and the first exec
            // would then be taken for a root rewrite behind the mark (an alert, a kill in
            // Lockdown). The first exec's answer places the mark, as for any file.
            return;
        }
        let (verdict, cacheable, default, epoch) = match answer {
            Answer::Decided {
                decision,
                cacheable,
                epoch,
                ..
            } => (Some(decision), cacheable, None, epoch),
            Answer::Default(reason) => (None, false, Some(reason), 0),
        };
        let lockdown = self.policy.policy().config().mode == rules::ClientMode::Lockdown;
        // An exec the kernel ran without asking: decided like a held one, nothing written to
        // the kernel, and a deny is a kill.
        let unasked = event.kind == Kind::Unasked;
        // Lockdown's own denies (no rule, a default, a withdrawn allow) hold only for processes
        // in scope; outside it the answer is Monitor's. Looked up only when it matters.
        let mut in_scope_memo: Option<bool> = None;
        let mut in_scope = |pid: i32| {
            *in_scope_memo
                .get_or_insert_with(|| self.scope.as_ref().is_none_or(|s| s.contains(pid)))
        };
        let mut scoped_out = false;
        let mut response = match verdict {
            Some(v) if v.decision.action == rules::Action::Deny => {
                if lockdown
                    && v.decision.reason == rules::Reason::Unknown
                    && v.decision.mode == rules::ClientMode::Lockdown
                    && !in_scope(event.pid)
                {
                    scoped_out = true;
                    rules::Action::Allow
                } else {
                    rules::Action::Deny
                }
            }
            Some(_) => rules::Action::Allow,
            None => match default_for(&self.policy, &event.facts) {
                rules::Action::Deny if lockdown && !in_scope(event.pid) => {
                    scoped_out = true;
                    default_response(&self.policy)
                }
                r => r,
            },
        };
        // An allow holds only if the bytes decided on are the bytes that will run.
        let root_only = response == rules::Action::Allow
            && verdict.is_some()
            && !scoped_out
            && only_root_can_modify(&event.file, &event.facts);
        let mut withdrawn = match response {
            rules::Action::Allow if verdict.is_some() && !scoped_out => {
                event.allow_withdrawn(root_only, &self.linux.counters)
            }
            _ => None,
        };
        if response == rules::Action::Allow
            && verdict.is_some()
            && !scoped_out
            && !root_only
            && withdrawn.is_none()
            && !unasked
            && event.leased.load(Ordering::Acquire)
            && !self.linger.hold(
                event,
                exe_of(event.pid),
                self.policy.policy().config().mode == rules::ClientMode::Lockdown,
            )
        {
            withdrawn = Some("allow withdrawn: too many answered execs of this owner's files");
        }
        if withdrawn.is_some() {
            bump(&self.linux.counters.allows_withdrawn);
            // The mode decides, as for a file that changed while it was evaluated.
            if lockdown && in_scope(event.pid) {
                response = rules::Action::Deny;
            }
        }
        let mut record = self.begin_record(by, event);
        if response == rules::Action::Allow && self.log_notifications && !unasked {
            // Before answering: the notification can only follow the answer.
            self.linux.recent.record(event.pid, event.key);
            if !root_only {
                // This file never gets the kernel allow cache, so each of its execs asks us
                // and is logged here: its exec notification would only be read and dropped
                // (~35 us of santad per exec). Ignore notifications for it (an evictable inode
                // mark on FAN_OPEN_EXEC alone, dropped by the kernel when the file is written).
                match self
                    .linux
                    .fan
                    .ignore_inode(event.file.as_fd(), fanotify::MASK_OPEN_EXEC)
                {
                    Ok(()) => bump(&self.linux.counters.notification_ignores),
                    Err(_) => bump(&self.linux.counters.ignore_mark_errors),
                }
            }
        }
        // A compiler's exec: registered while it is held, so its first write is already its
        // own. Never given to the kernel cache: each exec of a compiler must reach us.
        let compiler = response == rules::Action::Allow
            && !unasked
            && withdrawn.is_none()
            && verdict.is_some_and(|v| v.decision.compiler);
        if compiler {
            self.linux
                .compilers
                .register(event.pid, event.key, event.read);
        }
        if response == rules::Action::Allow
            && let Some(v) = verdict
            && v.decision.reason == rules::Reason::Transitive
            && let Some(sha) = v.sha256
            && let Some(sink) = self.linux.transitive.get()
        {
            sink.used(sha);
        }
        if response == rules::Action::Allow
            && cacheable
            && !compiler
            && !scoped_out
            && !unasked
            && withdrawn.is_none()
            && let Some(v) = verdict
        {
            // Before the answer: placed, re-checked, withdrawn if the file or epoch moved.
            self.linux.place_mark(event, v, epoch, root_only);
        }
        // A deny of an execveat(AT_EXECVE_CHECK) refuses a check, not an execution: no block
        // message, and the line says so (read while the process is still held).
        let check = !unasked && response == rules::Action::Deny && is_execve_check(event.pid);
        let mut killed = false;
        if unasked {
            if response == rules::Action::Deny {
                killed = procinfo::kill_process(event.pid);
                if killed {
                    bump(&self.linux.counters.unasked_kills);
                }
                log::warn!(
                    "ALERT: the kernel ran pid {}'s exec of {} without asking santad; the \
                     decision is a deny{}",
                    event.pid,
                    {
                        let mut path = Text::<{ eventlog::PATH_BYTES_MAX }>::new();
                        event.path_into(&mut path);
                        String::from_utf8_lossy(path.as_bytes()).into_owned()
                    },
                    if killed {
                        ": process killed"
                    } else {
                        " and the process is gone"
                    }
                );
            }
        } else if self
            .linux
            .fan
            .respond(event.file.as_fd(), response, false)
            .is_err()
        {
            bump(&self.linux.counters.respond_errors);
        }
        let verdict = verdict.map(|v| &**v);
        // Without a log record (ring full) a deny still gets its message and bundle lines: fill
        // a scratch record for it then.
        let mut scratch: Option<Box<Record>> = None;
        let rec: Option<&mut Record> = match record.as_deref_mut() {
            Some(rec) => Some(rec),
            None if response == rules::Action::Deny => {
                Some(&mut **scratch.insert(Box::new(Record::new())))
            }
            None => None,
        };
        if let Some(rec) = rec {
            self.finish_record(rec, event, response, verdict, default);
            if let Some(why) = withdrawn {
                rec.explain.set(why.as_bytes());
            }
            if scoped_out {
                // Monitor's answer for a process outside LockdownScope.
                rec.mode = crate::config::ClientMode::Monitor;
                if rec.explain.is_empty() {
                    rec.explain.set(b"outside LockdownScope");
                } else {
                    rec.explain.push(b"; outside LockdownScope");
                }
            }
            if unasked {
                if !rec.explain.is_empty() {
                    rec.explain.push(b"; ");
                }
                rec.explain
                    .push(b"ALERT: the kernel ran this exec without asking santad");
                if response == rules::Action::Deny {
                    rec.explain.push(if killed {
                        b"; process killed".as_slice()
                    } else {
                        b"; the process was gone before it could be killed".as_slice()
                    });
                }
            }
            if check {
                if !rec.explain.is_empty() {
                    rec.explain.push(b"; ");
                }
                rec.explain
                    .push(b"execveat AT_EXECVE_CHECK: a check, nothing was executed");
                // Nothing ran, so nobody is told of a block: no terminal message, no notice.
                rec.silence = rules::Silence {
                    gui: true,
                    tty: true,
                };
            } else if response == rules::Action::Deny {
                self.block_message(event, verdict, rec);
                if let Some(bundles) = &self.bundles {
                    let path = PathBuf::from(std::ffi::OsStr::from_bytes(rec.path.as_bytes()));
                    if !bundles.submit(path) {
                        bump(&self.linux.counters.bundle_drops);
                    }
                }
            }
        }
        if let Some(rec) = record {
            rec.commit();
        }
    }

    /// `respond` panicked: write the default (if the answer already reached the kernel, the
    /// kernel refuses this second one, harmlessly).
    fn respond_failed(&self, _by: AnsweredBy, event: &ExecEvent) {
        if event.kind == Kind::Permission {
            let _ = self.linux.fan.respond(
                event.file.as_fd(),
                default_for(&self.policy, &event.facts),
                false,
            );
        }
    }
}
