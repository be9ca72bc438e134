use super::*;
use crate::eventlog::{ARGS_BYTES_MAX, EventLog, Record, Text};
use crate::identity::Verdict;
use santa_hotpath::clock::MachTimebase;
use santa_hotpath::{
    Answer, AnsweredBy, Cacheability, DefaultReason, EngineConfig, Evaluator, FileKey, FileStamp,
    FlushReason, Origin, Responder, Submit,
};
use santa_rules as rules;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const MS: u64 = 1_000_000;

/// What the daemon passes by default: NOTIFY_EXEC logged, other ES clients decided as anyone.
const LOG_NOTIFICATIONS: IntakeOptions = IntakeOptions {
    log_notifications: true,
    ignore_other_es_clients: false,
};

/// An ES message as owned plain values: what the kernel would have sent.
#[derive(Debug, Clone)]
struct PlainMessage {
    is_auth: bool,
    deadline_ticks: u64,
    kind: PlainKind,
    path: Vec<u8>,
    dev: u64,
    ino: u64,
    ctime_ns: i64,
    size: u64,
    pid: i32,
    flags: u32,
    platform: bool,
    cdhash: [u8; 20],
    signing_id: Vec<u8>,
    team_id: Vec<u8>,
    cputype: Option<i32>,
    dest: Option<(u64, u64)>,
    args: Vec<u8>,
    /// The acting process holds the Endpoint Security entitlement.
    es_client: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PlainKind {
    AuthExec,
    NotifyExec,
    Close { modified: bool },
    Unlink,
    Rename,
    AuthOther,
}

impl PlainMessage {
    /// This message as the engine's payload: an AUTH of its file.
    fn auth(&self) -> EsExec<PlainMessage> {
        EsExec {
            key: self.file().key(),
            msg: self.clone(),
            kind: Kind::Auth,
        }
    }

    /// An AUTH_EXEC of `path`, after writing `contents` there.
    fn exec_of_written(path: &Path, contents: &[u8]) -> Self {
        std::fs::write(path, contents).unwrap();
        Self::exec_of(path)
    }

    fn exec_of(path: &Path) -> Self {
        let m = std::fs::metadata(path).unwrap();
        PlainMessage {
            is_auth: true,
            deadline_ticks: 0,
            kind: PlainKind::AuthExec,
            path: path.as_os_str().as_encoded_bytes().to_vec(),
            dev: m.dev(),
            ino: m.ino(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            size: m.size(),
            pid: 4242,
            flags: 0,
            platform: false,
            cdhash: [0xcd; 20],
            signing_id: Vec::new(),
            team_id: Vec::new(),
            cputype: Some(CPU_TYPE_ARM64),
            dest: None,
            args: b"tool\0--flag\0".to_vec(),
            es_client: false,
        }
    }

    fn file(&self) -> FileView<'_> {
        FileView {
            path: &self.path,
            path_truncated: false,
            dev: self.dev,
            ino: self.ino,
            ctime_ns: self.ctime_ns,
            size: self.size,
        }
    }

    fn process(&self) -> ProcessView<'_> {
        ProcessView {
            pid: self.pid,
            pidversion: 7,
            ppid: 1,
            uid: 501,
            gid: 20,
            codesigning_flags: self.flags,
            is_platform_binary: self.platform,
            is_es_client: self.es_client,
            cdhash: self.cdhash,
            signing_id: &self.signing_id,
            team_id: &self.team_id,
            executable: self.file(),
            tty: None,
        }
    }
}

impl EsMessage for PlainMessage {
    fn view(&self) -> MessageView<'_> {
        let exec = ExecView {
            target: self.process(),
            image_cputype: self.cputype,
        };
        let event = match self.kind {
            PlainKind::AuthExec => EventView::AuthExec(exec),
            PlainKind::NotifyExec => EventView::NotifyExec(exec),
            PlainKind::Close { modified } => EventView::NotifyClose {
                modified,
                target: self.file(),
            },
            PlainKind::Unlink => EventView::NotifyUnlink {
                target: self.file(),
            },
            PlainKind::Rename => EventView::NotifyRename {
                source: self.file(),
                destination: self.dest.map(|(dev, ino)| FileView {
                    dev,
                    ino,
                    ..self.file()
                }),
            },
            PlainKind::AuthOther => EventView::Other(1),
        };
        MessageView {
            is_auth: self.is_auth,
            deadline_ticks: self.deadline_ticks,
            process: self.process(),
            event,
        }
    }

    fn exec_args_into(&self, out: &mut Text<ARGS_BYTES_MAX>) {
        out.set(&self.args);
    }
}

fn plain_file(path: &[u8], dev: u64, ino: u64) -> PlainMessage {
    PlainMessage {
        is_auth: false,
        deadline_ticks: 0,
        kind: PlainKind::Unlink,
        path: path.to_vec(),
        dev,
        ino,
        ctime_ns: 5,
        size: 9,
        pid: 1,
        flags: 0,
        platform: false,
        cdhash: [0; 20],
        signing_id: Vec::new(),
        team_id: Vec::new(),
        cputype: None,
        dest: None,
        args: Vec::new(),
        es_client: false,
    }
}

#[test]
fn auth_exec_deadline_follows_santas_budget_in_mach_ticks() {
    // Apple silicon: 24 MHz ticks. Message at now = 100 s, kernel deadline 15 s later.
    let timebase = MachTimebase::new(125, 3);
    let now_ns = 100_000 * MS;
    for (left_ms, budget_ms) in [(45_000, 40_000), (15_000, 12_000), (3_500, 2_500)] {
        let mut m = plain_file(b"/bin/x", 1, 2);
        m.kind = PlainKind::AuthExec;
        m.is_auth = true;
        m.deadline_ticks = timebase.ns_to_ticks(now_ns + left_ms * MS);
        match translate(&m.view(), now_ns, timebase) {
            Intake::Decide {
                kind: Kind::Auth,
                key,
                stamp,
                deadline_ns,
            } => {
                assert_eq!(deadline_ns, now_ns + budget_ms * MS, "{left_ms} ms left");
                assert_eq!(key, FileKey { dev: 1, ino: 2 });
                assert_eq!(
                    stamp,
                    FileStamp {
                        ctime_ns: 5,
                        size_bytes: 9
                    }
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // A deadline already past: answer at once.
    let mut m = plain_file(b"/bin/x", 1, 2);
    m.kind = PlainKind::AuthExec;
    m.is_auth = true;
    m.deadline_ticks = timebase.ns_to_ticks(now_ns - 1_000 * MS);
    assert!(matches!(
        translate(&m.view(), now_ns, timebase),
        Intake::Decide { deadline_ns, .. } if deadline_ns == now_ns
    ));
}

#[test]
fn notify_events_translate_to_invalidations_or_nothing() {
    let tb = MachTimebase::default();
    let mut m = plain_file(b"/bin/x", 3, 4);
    m.kind = PlainKind::Close { modified: true };
    assert_eq!(
        translate(&m.view(), 0, tb),
        Intake::Invalidate([Some(FileKey { dev: 3, ino: 4 }), None])
    );
    m.kind = PlainKind::Close { modified: false };
    assert_eq!(
        translate(&m.view(), 0, tb),
        Intake::Ignore,
        "read-only close"
    );
    m.kind = PlainKind::Unlink;
    assert_eq!(
        translate(&m.view(), 0, tb),
        Intake::Invalidate([Some(FileKey { dev: 3, ino: 4 }), None])
    );
    m.kind = PlainKind::Rename;
    assert_eq!(
        translate(&m.view(), 0, tb),
        Intake::Invalidate([Some(FileKey { dev: 3, ino: 4 }), None]),
        "rename to a new path"
    );
    m.dest = Some((3, 99));
    assert_eq!(
        translate(&m.view(), 0, tb),
        Intake::Invalidate([
            Some(FileKey { dev: 3, ino: 4 }),
            Some(FileKey { dev: 3, ino: 99 })
        ]),
        "rename over an existing file"
    );
    m.kind = PlainKind::NotifyExec;
    assert!(matches!(
        translate(&m.view(), 10, tb),
        Intake::Decide { kind: Kind::Notify, deadline_ns, .. }
            if deadline_ns == 10 + NOTIFICATION_DEADLINE_NS
    ));
    m.kind = PlainKind::AuthOther;
    m.is_auth = true;
    assert_eq!(translate(&m.view(), 0, tb), Intake::AllowUnknownAuth);
    m.is_auth = false;
    assert_eq!(translate(&m.view(), 0, tb), Intake::Ignore);
}

#[test]
fn signing_status_follows_santas_flag_order() {
    use cs::*;
    use rules::SigningStatus as S;
    let arm = Some(CPU_TYPE_ARM64);
    let x86 = Some(0x0100_0007);
    assert_eq!(signing_status(0, x86), S::Unsigned);
    assert_eq!(
        signing_status(CS_SIGNED, x86),
        S::Invalid,
        "signed, not valid"
    );
    assert_eq!(
        signing_status(CS_SIGNED | CS_VALID | CS_ADHOC, x86),
        S::AdHoc
    );
    assert_eq!(
        signing_status(CS_SIGNED | CS_VALID | CS_DEV_CODE, x86),
        S::Development
    );
    assert_eq!(signing_status(CS_SIGNED | CS_VALID, x86), S::Production);
    assert_eq!(
        signing_status(CS_SIGNED | CS_VALID | CS_KILLED, x86),
        S::Invalid,
        "killed wins"
    );
    // CS_KILL without CS_VALID: terminal on native arm64 only.
    assert_eq!(signing_status(CS_KILL, arm), S::Invalid);
    assert_eq!(signing_status(CS_KILL, x86), S::Unsigned);
    assert_eq!(
        signing_status(CS_KILL, None),
        S::Unsigned,
        "unknown CPU type"
    );
    assert_eq!(
        signing_status(CS_KILL | CS_VALID | CS_SIGNED, arm),
        S::Production
    );
}

#[test]
fn cdhash_only_when_the_kernel_enforces_it() {
    use cs::*;
    let mut m = plain_file(b"/bin/x", 1, 2);
    m.signing_id = b"com.example.tool".to_vec();
    m.team_id = b"ABCDE12345".to_vec();
    for (flags, enforced) in [
        (CS_SIGNED | CS_VALID, false),
        (CS_SIGNED | CS_VALID | CS_HARD, true),
        (CS_SIGNED | CS_VALID | CS_KILL, true),
        (CS_SIGNED | CS_HARD | CS_KILL, false),
    ] {
        m.flags = flags;
        let id = kernel_identity(&m.process(), None);
        assert_eq!(id.cdhash.is_some(), enforced, "flags {flags:#x}");
        assert_eq!(cdhash_strictly_enforced(flags), enforced);
    }
}

#[test]
fn team_and_signing_ids_only_for_signed_valid_processes() {
    use cs::*;
    let mut m = plain_file(b"/bin/x", 1, 2);
    m.signing_id = b"com.example.tool".to_vec();
    m.team_id = b"ABCDE12345".to_vec();
    m.flags = CS_SIGNED | CS_VALID;
    let id = kernel_identity(&m.process(), None);
    assert_eq!(id.team_id, rules::TeamId::from_signature(b"ABCDE12345"));
    assert_eq!(
        id.signing_id_text().as_deref(),
        Some("ABCDE12345:com.example.tool")
    );

    m.flags = CS_SIGNED;
    let id = kernel_identity(&m.process(), None);
    assert!(
        id.team_id.is_none() && id.signing_ident.is_none(),
        "not valid"
    );

    m.flags = CS_SIGNED | CS_VALID;
    m.team_id.clear();
    assert!(
        kernel_identity(&m.process(), None).signing_ident.is_none(),
        "no team, not platform"
    );
    m.platform = true;
    let id = kernel_identity(&m.process(), None);
    assert_eq!(
        id.signing_id_text().as_deref(),
        Some("platform:com.example.tool")
    );

    m.team_id = b"bad team".to_vec();
    let id = kernel_identity(&m.process(), None);
    assert!(
        id.team_id.is_none() && id.signing_ident.is_none(),
        "malformed team id"
    );
}

fn verdict(action: rules::Action) -> Verdict {
    Verdict::bare(rules::Decision {
        action,
        reason: rules::Reason::Binary,
        explain: None,
        matched: None,
        custom: Default::default(),
        silence: Default::default(),
        compiler: false,
        cacheable: true,
        mode: rules::ClientMode::Lockdown,
        rules_generation: 1,
    })
}

#[test]
fn es_caches_allows_only_never_denies_or_defaults() {
    let allow = Arc::new(verdict(rules::Action::Allow));
    let deny = Arc::new(verdict(rules::Action::Deny));
    let decided = |v, cacheable| Answer::Decided {
        decision: v,
        origin: Origin::Evaluated,
        cacheable,
        epoch: 0,
    };
    assert_eq!(
        kernel_answer(&decided(&allow, true), rules::Action::Allow),
        KernelAnswer {
            action: rules::Action::Allow,
            cache: true
        }
    );
    assert_eq!(
        kernel_answer(&decided(&allow, false), rules::Action::Allow),
        KernelAnswer {
            action: rules::Action::Allow,
            cache: false
        },
        "an allow the engine may not cache (file changed while hashed)"
    );
    assert_eq!(
        kernel_answer(&decided(&deny, true), rules::Action::Allow),
        KernelAnswer {
            action: rules::Action::Deny,
            cache: false
        }
    );
    for reason in [
        DefaultReason::Deadline,
        DefaultReason::QueueFull,
        DefaultReason::SlotsFull,
        DefaultReason::ShuttingDown,
        DefaultReason::EvaluationFailed,
    ] {
        for default in [rules::Action::Allow, rules::Action::Deny] {
            assert_eq!(
                kernel_answer(&Answer::Default(reason), default),
                KernelAnswer {
                    action: default,
                    cache: false
                },
                "{reason:?}"
            );
        }
    }
}

#[test]
fn open_executable_refuses_a_replaced_or_truncated_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tool");
    let m = PlainMessage::exec_of_written(&path, b"#!/bin/sh\n");
    assert!(open_executable(&m.file()).is_ok());

    let mut truncated = m.clone();
    let mut f = truncated.file();
    f.path_truncated = true;
    assert_eq!(
        open_executable(&f).err(),
        Some("path truncated by Endpoint Security")
    );
    truncated.ino += 1;
    assert_eq!(
        open_executable(&truncated.file()).err(),
        Some("file replaced since exec")
    );

    // Replaced by a symbolic link to another file after the exec.
    let other = dir.path().join("other");
    std::fs::write(&other, b"#!/bin/sh\n").unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&other, &path).unwrap();
    assert!(open_executable(&m.file()).is_err(), "O_NOFOLLOW");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        open_executable(&m.file()).err(),
        Some("file could not be opened")
    );
}

fn policy(mode: rules::ClientMode, list: &[rules::Rule]) -> Arc<rules::PolicyEngine> {
    let mut b = rules::SnapshotBuilder::new(1);
    for r in list {
        b.insert(r).unwrap();
    }
    Arc::new(rules::PolicyEngine::new(
        b.build(),
        rules::Policy::new(rules::PolicyConfig {
            mode,
            ..rules::PolicyConfig::default()
        })
        .unwrap(),
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn kernel_identities_decide_rules_and_file_bytes_give_the_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tool");
    std::fs::write(&path, b"\x7fELF pretend").unwrap();
    let team_rule = rules::Rule::new(
        rules::RuleIdentifier::parse(rules::RuleType::TeamId, "ABCDE12345").unwrap(),
        rules::RuleState::Block,
    );
    let cdhash_rule = rules::Rule::new(
        rules::RuleIdentifier::parse(rules::RuleType::CdHash, &hex(&[0xcd; 20])).unwrap(),
        rules::RuleState::Allow,
    );
    let e = EsEvaluator::new(
        policy(rules::ClientMode::Monitor, &[team_rule, cdhash_rule]),
        1 << 20,
    );
    let mut w = e.worker();
    let mut m = PlainMessage::exec_of(&path);
    m.signing_id = b"com.example.tool".to_vec();
    m.team_id = b"ABCDE12345".to_vec();

    // Production-signed, CDHash not enforced: the Team ID rule applies.
    m.flags = cs::CS_SIGNED | cs::CS_VALID;
    let out = e.evaluate(&mut w, &m.auth());
    let v = &out.decision;
    assert_eq!(v.decision.reason, rules::Reason::TeamId, "{v:?}");
    assert_eq!(v.decision.action, rules::Action::Deny);
    assert_eq!(out.cacheability, Cacheability::DenyTtl);
    assert_eq!(v.cdhash, None);
    assert_eq!(v.signing_id.as_deref(), Some("ABCDE12345:com.example.tool"));
    let sha = ring::digest::digest(&ring::digest::SHA256, b"\x7fELF pretend");
    assert_eq!(v.sha256.map(|s| s.to_vec()), Some(sha.as_ref().to_vec()));

    // Hardened runtime: the CDHash counts, and a CDHash rule outranks the Team ID rule.
    m.flags = cs::CS_SIGNED | cs::CS_VALID | cs::CS_HARD | cs::CS_KILL;
    let out = e.evaluate(&mut w, &m.auth());
    assert_eq!(out.decision.decision.reason, rules::Reason::CdHash);
    assert_eq!(out.decision.decision.action, rules::Action::Allow);
    assert_eq!(out.cacheability, Cacheability::UntilChanged);
    assert_eq!(out.decision.cdhash, Some([0xcd; 20]));

    // A path that no longer is the file ES saw: the mode decides, never cached.
    m.ino += 1;
    let out = e.evaluate(&mut w, &m.auth());
    assert_eq!(out.decision.problem, Some("file replaced since exec"));
    assert_eq!(
        out.decision.decision.action,
        rules::Action::Allow,
        "Monitor"
    );
    assert_eq!(out.cacheability, Cacheability::Never);
}

/// The kernel's side of the answers: what `es_respond_auth_result` would have received.
#[derive(Debug, Default)]
struct Answers(Mutex<Vec<(i32, rules::Action, bool)>>);

impl AuthPort<PlainMessage> for Arc<Answers> {
    fn respond(
        &self,
        msg: &PlainMessage,
        action: rules::Action,
        cache: bool,
    ) -> Result<(), RespondError> {
        self.0.lock().unwrap().push((msg.pid, action, cache));
        Ok(())
    }
}

fn wait_for(answers: &Answers, n: usize) -> Vec<(i32, rules::Action, bool)> {
    let start = Instant::now();
    loop {
        let got = answers.0.lock().unwrap().clone();
        if got.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn engine_answers_es_messages_once_and_lets_es_cache_only_allows() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    let blocked = dir.path().join("blocked");
    std::fs::write(&allowed, b"allowed contents").unwrap();
    std::fs::write(&blocked, b"blocked contents").unwrap();
    let block = rules::Rule::new(
        rules::RuleIdentifier::parse(
            rules::RuleType::Binary,
            &hex(ring::digest::digest(&ring::digest::SHA256, b"blocked contents").as_ref()),
        )
        .unwrap(),
        rules::RuleState::Block,
    );
    let policy = policy(rules::ClientMode::Monitor, &[block]);
    let log = EventLog::new(64);
    let answers = Arc::new(Answers::default());
    let shared = EsShared::new(MachTimebase::new(125, 3), LOG_NOTIFICATIONS);
    let engine: EsEngine<PlainMessage> = Engine::start(
        EngineConfig {
            workers: 2,
            pin_workers: false,
            ..EngineConfig::default()
        },
        EsEvaluator::new(policy.clone(), 1 << 20),
        EsResponder::new(answers.clone(), shared.clone(), policy, log.clone()),
        santa_hotpath::MonotonicClock::new(),
        santa_hotpath::ExternalSource,
    )
    .unwrap();
    let handle = engine.handle();
    let now_ticks = shared.timebase.ns_to_ticks(handle.now_ns());
    let deadline_ticks = now_ticks + shared.timebase.ns_to_ticks(30_000 * MS);
    let mut a = PlainMessage::exec_of(&allowed);
    a.pid = 100;
    a.deadline_ticks = deadline_ticks;
    let mut b = PlainMessage::exec_of(&blocked);
    b.pid = 200;
    b.deadline_ticks = deadline_ticks;
    let mut never_answered_now = true;
    for m in [a.clone(), b.clone()] {
        shared.intake(&handle, m, |_, _| never_answered_now = false);
    }
    let mut got = wait_for(&answers, 2);
    got.sort_by_key(|(pid, _, _)| *pid);
    assert_eq!(
        got,
        vec![
            (100, rules::Action::Allow, true),
            (200, rules::Action::Deny, false)
        ]
    );
    assert!(never_answered_now);

    // The NOTIFY_EXEC that follows our own allow is dropped; one ES's cache let through is
    // decided (from the engine's cache) and logged, never answered.
    let mut notify = a.clone();
    notify.kind = PlainKind::NotifyExec;
    notify.is_auth = false;
    assert_eq!(
        shared.intake(&handle, notify.clone(), |_, _| {}),
        Intake::Ignore
    );
    assert!(matches!(
        shared.intake(&handle, notify, |_, _| {}),
        Intake::Decide {
            kind: Kind::Notify,
            ..
        }
    ));
    let start = Instant::now();
    while handle.counters().hits < 1 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(handle.counters().hits, 1, "the notification hit the cache");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        answers.0.lock().unwrap().len(),
        2,
        "notifications are never answered"
    );
    assert_eq!(shared.counters.notify_execs.load(Ordering::Relaxed), 2);
    assert_eq!(
        shared
            .counters
            .notify_execs_deduplicated
            .load(Ordering::Relaxed),
        1
    );

    // A write (close-modified) forgets the cached allow: the next exec is evaluated again.
    let evaluations = handle.counters().evaluations;
    let mut close = a.clone();
    close.kind = PlainKind::Close { modified: true };
    close.is_auth = false;
    shared.intake(&handle, close, |_, _| {});
    shared.intake(&handle, a.clone(), |_, _| {});
    wait_for(&answers, 3);
    assert_eq!(handle.counters().evaluations, evaluations + 1);

    // An AUTH type santad does not decide is answered at once by the caller.
    let mut other = a.clone();
    other.kind = PlainKind::AuthOther;
    let mut answered_now = false;
    assert_eq!(
        shared.intake(&handle, other, |_, _| answered_now = true),
        Intake::AllowUnknownAuth
    );
    assert!(answered_now);
    handle.flush(FlushReason::Config);
    engine.shutdown();
}

/// `IgnoreOtherEndpointSecurityClients`: an exec by another ES client is allowed at once with
/// ES caching allowed, its other events ignored; without the setting it is decided as any.
#[test]
fn other_endpoint_security_clients_are_left_alone_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut exec = PlainMessage::exec_of_written(&dir.path().join("tool"), b"contents");
    exec.es_client = true;
    exec.deadline_ticks = u64::MAX / 2;
    let mut close = exec.clone();
    close.kind = PlainKind::Close { modified: true };
    close.is_auth = false;
    let submitted = Mutex::new(Vec::new());
    let engine = RecordingIntake(&submitted);
    let ignoring = EsShared::new(
        MachTimebase::default(),
        IntakeOptions {
            ignore_other_es_clients: true,
            ..LOG_NOTIFICATIONS
        },
    );
    let mut answered = None;
    let got = ignoring.intake(&engine, exec.clone(), |_, cache| answered = Some(cache));
    assert_eq!(got, Intake::OtherEsClient);
    assert_eq!(
        answered,
        Some(true),
        "allowed at once, cacheable, as Santa does"
    );
    assert_eq!(
        ignoring.intake(&engine, close.clone(), |_, _| panic!("nothing to answer")),
        Intake::OtherEsClient
    );
    assert!(lock(&submitted).is_empty(), "nothing reached the engine");
    assert_eq!(
        ignoring
            .counters
            .other_es_client_auths
            .load(Ordering::Relaxed),
        1
    );

    let deciding = EsShared::new(MachTimebase::default(), LOG_NOTIFICATIONS);
    let got = deciding.intake(&engine, exec, |_, _| {
        panic!("decided, not answered at once")
    });
    assert!(
        matches!(
            got,
            Intake::Decide {
                kind: Kind::Auth,
                ..
            }
        ),
        "{got:?}"
    );
    assert!(matches!(
        deciding.intake(&engine, close, |_, _| {}),
        Intake::Invalidate(_)
    ));
    assert_eq!(lock(&submitted).len(), 1);
}

/// An engine stand-in that records what the intake hands it.
struct RecordingIntake<'a>(&'a Mutex<Vec<FileKey>>);

impl santa_hotpath::Submit<EsExec<PlainMessage>> for RecordingIntake<'_> {
    fn now_ns(&self) -> u64 {
        0
    }
    fn submit(
        &self,
        _core: usize,
        event: santa_hotpath::Event<EsExec<PlainMessage>>,
    ) -> santa_hotpath::Submitted {
        lock(self.0).push(event.key);
        santa_hotpath::Submitted::Queued
    }
    fn invalidate(&self, _core: usize, _key: FileKey) {}
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn default_answers_reach_es_uncached_and_fail_closed_only_in_lockdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow");
    let m = PlainMessage::exec_of_written(&path, b"x");
    let payload = m.auth();
    let fail_closed = |mode| {
        Arc::new(rules::PolicyEngine::new(
            rules::SnapshotBuilder::new(1).build(),
            rules::Policy::new(rules::PolicyConfig {
                mode,
                fail_closed: true,
                ..rules::PolicyConfig::default()
            })
            .unwrap(),
        ))
    };
    for (mode, action) in [
        (rules::ClientMode::Monitor, rules::Action::Allow),
        (rules::ClientMode::Lockdown, rules::Action::Deny),
    ] {
        let answers = Arc::new(Answers::default());
        let responder = EsResponder::new(
            answers.clone(),
            EsShared::new(MachTimebase::default(), LOG_NOTIFICATIONS),
            fail_closed(mode),
            EventLog::new(64),
        );
        responder.respond(
            AnsweredBy::Deadline,
            &payload,
            Answer::Default(DefaultReason::Deadline),
        );
        assert_eq!(
            *answers.0.lock().unwrap(),
            vec![(4242, action, false)],
            "{mode:?}"
        );
    }
    // A notification is logged, never answered.
    let answers = Arc::new(Answers::default());
    let responder = EsResponder::new(
        answers.clone(),
        EsShared::new(MachTimebase::default(), LOG_NOTIFICATIONS),
        fail_closed(rules::ClientMode::Monitor),
        EventLog::new(64),
    );
    let notify = EsExec {
        kind: Kind::Notify,
        ..payload
    };
    responder.respond(
        AnsweredBy::Worker(0),
        &notify,
        Answer::Default(DefaultReason::Deadline),
    );
    assert!(answers.0.lock().unwrap().is_empty());
}

#[test]
fn log_record_carries_the_process_and_the_default_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"t")
        .unwrap();
    let m = PlainMessage::exec_of(&path);
    let policy = policy(rules::ClientMode::Lockdown, &[]);
    let mut rec = Record::new();
    fill_record(
        &mut rec,
        &m.view(),
        rules::Action::Allow,
        None,
        Some(DefaultReason::Deadline),
        &policy,
    );
    assert_eq!(rec.pid, 4242);
    assert_eq!(rec.pidversion, 7);
    assert_eq!(rec.uid, 501);
    assert_eq!(rec.path.as_bytes(), m.path.as_slice());
    assert_eq!(rec.explain.as_bytes(), b"default answer: deadline");
    assert_eq!(rec.decision, Some(rules::Action::Allow));
}

#[test]
fn es_result_codes_become_clear_errors() {
    assert_eq!(NewClientError::check(0), Ok(()));
    assert_eq!(NewClientError::check(4), Err(NewClientError::NotPermitted));
    assert_eq!(
        NewClientError::check(6),
        Err(NewClientError::TooManyClients)
    );
    assert_eq!(NewClientError::check(99), Err(NewClientError::Unknown(99)));
    assert!(NewClientError::NotPrivileged.to_string().contains("root"));
    assert!(
        NewClientError::NotEntitled
            .to_string()
            .contains("endpoint-security.client")
    );
    assert!(
        NewClientError::NotPermitted
            .to_string()
            .contains("Full Disk Access")
    );
    assert_eq!(RespondError::check(0), Ok(()));
    assert_eq!(RespondError::check(4), Err(RespondError::Duplicate));
    assert_eq!(ClearCacheError::check(2), Err(ClearCacheError::Throttled));
    assert_eq!(ClearCacheError::check(0), Ok(()));
}
