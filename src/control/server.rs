//! santad's side of the control socket (the protocol is `santa-control`): a listener thread and
//! a small fixed pool of handler threads.
//!
//! Why a pool of [`HANDLER_THREADS`] fed through bounded queues: requests take microseconds
//! to a few hundred milliseconds (an import), but a slow or hostile client can hold a handler
//! for up to its deadline. Nothing here is on the exec path: the workers never wait on it.
//!
//! Who gets a handler (the [`Dispatcher`]):
//! - **Root always finds one.** Non-root peers hold at most [`UNPRIVILEGED_HANDLERS_MAX`] =
//!   `HANDLER_THREADS - 1` handlers at once, and root's connections are taken before any
//!   waiting non-root one. So a request from uid 0 waits for no unprivileged client: it is
//!   served as soon as the root requests accepted before it are done (ordinarily none).
//! - **No user holds a handler for long.** A non-root peer must send its whole request
//!   within [`REQUEST_DEADLINE_UNPRIVILEGED`] and take the answer within
//!   [`REPLY_DEADLINE_UNPRIVILEGED`], however it paces its bytes (one byte at a time just
//!   inside [`IDLE_TIMEOUT`] included).
//! - **No user fills the queue.** One non-root uid holds at most [`HANDLERS_PER_UID_MAX`]
//!   handler and has at most [`CONNECTIONS_PER_UID_MAX`] connections inside santad (waiting
//!   or served); beyond that it is told "busy" at once, so other users still get in.
//!
//! The listener thread never waits on a peer: it accepts, reads `SO_PEERCRED`, queues or
//! refuses (one non-blocking write), so the kernel's backlog keeps draining under a flood.
//!
//! The socket (see `bind`): its directory is walked from `/` with `O_NOFOLLOW` (no symlink
//! anywhere, every directory root's and not writable by others), and it is bound relative to
//! that directory's fd with mode 0666 set by the umask of the binding thread alone (which
//! stops sharing its umask and cwd with the process first), so nothing is ever chmod'ed
//! through a path and santad's own umask never changes.

use crate::config::{Config, LogDestination, LogFormat};
use crate::eventlog::EventLog;
use santa_control::*;
use santa_hotpath::{CountersSnapshot, FileKey, FileStamp, FlushReason};
use santa_rules as rules;
use std::collections::BTreeMap;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsStr};
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::path::{Component, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Handler threads: two that unprivileged peers may use (so one slow user does not stall
/// every other user) and one more that only root can be sure of.
pub const HANDLER_THREADS: usize = 3;
/// Handlers non-root peers may hold at once, all uids together: every one but the one kept
/// for root.
pub const UNPRIVILEGED_HANDLERS_MAX: usize = HANDLER_THREADS - 1;
/// Handlers one non-root uid may hold at once: a user stalling its own requests holds one,
/// and the next user still finds the other.
pub const HANDLERS_PER_UID_MAX: usize = 1;
/// Connections one non-root uid may have inside santad at once, waiting or being served. A
/// santactl makes one at a time; four leave room for a few running side by side, and cap what
/// one user can make santad hold (fds, queue places) far below the queue's size.
pub const CONNECTIONS_PER_UID_MAX: usize = 4;
/// Non-root connections waiting for a handler, all uids together; beyond this a client is
/// told "busy".
pub const PENDING_CONNECTIONS_MAX: usize = 16;
/// Root connections waiting for a handler; beyond this root is told "busy" too (only root's
/// own clients can fill it).
pub const ROOT_PENDING_CONNECTIONS_MAX: usize = 16;
/// Longest a non-root peer may take to read its answer: the answers it can get (status,
/// metrics, checks) are a few KiB, which a socket buffer holds whole; this only matters to a
/// peer that stops reading.
pub const REPLY_DEADLINE_UNPRIVILEGED: Duration = IDLE_TIMEOUT;
/// Longest root may take to read its answer (an export of every rule, hundreds of MiB).
pub const REPLY_DEADLINE_ROOT: Duration = Duration::from_secs(60);
/// How long the listener waits in `poll` before re-checking the stop flag.
const ACCEPT_POLL_MS: i32 = 250;
/// How long santad tries to deliver an error to a client it is dropping (oversized, slow).
const ERROR_WRITE_TIMEOUT: Duration = Duration::from_millis(200);
/// Mode of the socket: anyone may connect; what they may do is decided per request by
/// `SO_PEERCRED`.
pub const SOCKET_MODE: u32 = 0o666;
/// Mode of a socket directory santad creates: anyone may reach the socket inside, only
/// root may add or remove entries.
pub const SOCKET_DIR_MODE: u32 = 0o755;

const _: () = assert!(
    UNPRIVILEGED_HANDLERS_MAX < HANDLER_THREADS,
    "one kept for root"
);
const _: () = assert!(HANDLERS_PER_UID_MAX <= UNPRIVILEGED_HANDLERS_MAX);
const _: () = assert!(CONNECTIONS_PER_UID_MAX <= PENDING_CONNECTIONS_MAX);

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
    /// Coverage and the backstop, where the platform has them.
    fn coverage(&self) -> Option<super::CoverageStatus> {
        None
    }
    /// Default answers the platform gave on its own, before the engine saw the event, by
    /// reason (names from [`PLATFORM_DEFAULT_REASONS`]). By default read from
    /// [`EngineControl::platform_metrics`] under the names in [`PLATFORM_DEFAULT_METRICS`];
    /// a reason whose counter the platform does not keep is left out.
    fn platform_defaults(&self) -> Vec<(&'static str, u64)> {
        let metrics = self.platform_metrics();
        PLATFORM_DEFAULT_METRICS
            .iter()
            .filter_map(|(metric, reason)| {
                metrics
                    .iter()
                    .find(|(k, _)| k == metric)
                    .map(|(_, v)| (*reason, *v))
            })
            .collect()
    }
}

/// Which platform counter counts which platform default reason: on Linux a permission event
/// whose file cannot be stat'ed is answered with the default at once (`src/linux/source.rs`).
pub const PLATFORM_DEFAULT_METRICS: [(&str, &str); 1] = [("fanotify.stat_failures", "stat_failed")];

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
    /// Connections turned away because the queue was full.
    pub busy: AtomicU64,
    /// Connections turned away because their uid already had [`CONNECTIONS_PER_UID_MAX`].
    pub uid_limited: AtomicU64,
    /// Requests whose handling panicked (a bug; the handler thread lives on).
    pub handler_panics: AtomicU64,
}

/// Everything the handlers share with the daemon.
pub struct ControlContext {
    engine: Arc<dyn EngineControl>,
    policy: Arc<rules::PolicyEngine>,
    log: Arc<EventLog>,
    config: Mutex<Arc<Config>>,
    rules: Mutex<RulesDb>,
    started: Instant,
    dispatcher: std::sync::OnceLock<Arc<Dispatcher<Connection>>>,
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
            dispatcher: std::sync::OnceLock::new(),
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

    /// How many connections wait and are being served now (once the server runs).
    fn load(&self) -> Option<DispatchLoad> {
        self.dispatcher.get().map(|d| d.load())
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
        let defaults_by_reason = defaults_by_reason(&c, &self.engine.platform_defaults());
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
                defaults_answered: defaults_by_reason.values().sum(),
                defaults_by_reason,
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
            coverage: self.engine.coverage(),
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
        put("control.uid_limited", get(&cc.uid_limited));
        put("control.handler_panics", get(&cc.handler_panics));
        if let Some(load) = self.load() {
            put("control.root_waiting", load.root_waiting as u64);
            put("control.unprivileged_waiting", load.users_waiting as u64);
            put("control.unprivileged_serving", load.users_serving as u64);
        }
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

    fn apply(&self, specs: &[RuleSpec], cleanup: CleanupSpec) -> Result<ApplyReply, ControlError> {
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

/// Default answers by reason: every engine reason and every platform reason, zero or not.
fn defaults_by_reason(
    c: &CountersSnapshot,
    platform: &[(&'static str, u64)],
) -> BTreeMap<String, u64> {
    use santa_hotpath::DefaultReason as R;
    let engine = [
        (R::Deadline, c.deadline_defaults),
        (R::QueueFull, c.queue_full_defaults),
        (R::SlotsFull, c.slots_full_defaults),
        (R::ShuttingDown, c.shutdown_defaults),
        (R::EvaluationFailed, c.evaluator_panics + c.responder_panics),
    ];
    let mut m: BTreeMap<String, u64> = engine
        .iter()
        .map(|(r, n)| (r.name().to_owned(), *n))
        .collect();
    for (reason, n) in platform {
        *m.entry((*reason).to_owned()).or_default() += n;
    }
    m
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

/// Writes all of `buf` by `deadline`, however slowly the peer reads (a peer taking one byte
/// at a time cannot stretch it: the timeout of each write is what is left of the deadline).
fn write_all_within(stream: &mut UnixStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not take the answer in time",
            ));
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `response` as one message, all of it by `deadline`. Serialised behind a reserved
/// header in one buffer (no copy of a large export), so a short answer is one write and
/// arrives whole.
fn send_within(stream: &mut UnixStream, response: &Response, deadline: Instant) -> io::Result<()> {
    let mut message = vec![0u8; FRAME_HEADER_BYTES];
    serde_json::to_writer(&mut message, response)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(message.len() - FRAME_HEADER_BYTES)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "answer over 4 GiB"))?;
    message[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
    write_all_within(stream, &message, deadline)
}

fn send_error(stream: &mut UnixStream, kind: ErrorKind, message: String) {
    let response: Response = Err(ControlError::new(kind, message));
    let _ = send_within(stream, &response, Instant::now() + ERROR_WRITE_TIMEOUT);
}

/// Tells a peer the listener turns away why, without ever waiting on it: one non-blocking
/// write (a fresh connection's socket buffer, over 100 KiB, holds a short error whole), then
/// the connection is closed.
fn refuse_now(stream: UnixStream, kind: ErrorKind, message: &str) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let response: Response = Err(ControlError::new(kind, message));
    let Ok(body) = serde_json::to_vec(&response) else {
        return;
    };
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    // A short error: its length fits in the header.
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    let _ = (&stream).write(&buf);
}

/// An accepted connection and who is on the other end.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    uid: u32,
    pid: i32,
}

/// Serves one connection: one request, one answer, within the peer's deadlines.
fn serve(ctx: &ControlContext, conn: Connection, stop: &AtomicBool) {
    let Connection {
        mut stream,
        uid,
        pid,
    } = conn;
    let (max, deadline, reply_deadline) = if uid == 0 {
        (
            REQUEST_BYTES_MAX_ROOT,
            REQUEST_DEADLINE_ROOT,
            REPLY_DEADLINE_ROOT,
        )
    } else {
        (
            REQUEST_BYTES_MAX_UNPRIVILEGED,
            REQUEST_DEADLINE_UNPRIVILEGED,
            REPLY_DEADLINE_UNPRIVILEGED,
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
    let response = match parse_request(&body) {
        Ok(request) => {
            log::debug!("control: {} from uid {uid} pid {pid}", request.name());
            ctx.handle(uid, request)
        }
        Err(e) => {
            ctx.counters.malformed.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    };
    if send_within(&mut stream, &response, Instant::now() + reply_deadline).is_err() {
        ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

// -----------------------------------------------------------------------------------------
// Who gets a handler
// -----------------------------------------------------------------------------------------

/// Connections waiting and being served, at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchLoad {
    /// Root connections waiting for a handler.
    pub root_waiting: usize,
    /// Non-root connections waiting for a handler.
    pub users_waiting: usize,
    /// Non-root connections being served (at most [`UNPRIVILEGED_HANDLERS_MAX`]).
    pub users_serving: usize,
}

/// Why [`Dispatcher::admit`] turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue for this kind of peer is full.
    QueueFull,
    /// This uid already has [`CONNECTIONS_PER_UID_MAX`] connections inside santad.
    UidLimit,
    /// The server is stopping.
    Stopping,
}

/// One non-root uid's connections inside santad.
#[derive(Debug, Default)]
struct UidLoad {
    /// Waiting or being served.
    inside: usize,
    /// Being served.
    serving: usize,
}

#[derive(Debug)]
struct DispatchState<T> {
    root: VecDeque<T>,
    users: VecDeque<(u32, T)>,
    users_serving: usize,
    /// Only uids with a connection inside: at most [`PENDING_CONNECTIONS_MAX`] +
    /// [`UNPRIVILEGED_HANDLERS_MAX`] entries.
    per_uid: HashMap<u32, UidLoad>,
    stopping: bool,
}

/// A connection handed to a handler. For a non-root peer it holds one of the unprivileged
/// places until [`Dispatcher::release`].
#[derive(Debug)]
pub struct Job<T> {
    /// The connection.
    pub conn: T,
    /// The peer's uid.
    pub uid: u32,
}

/// Hands accepted connections to the handlers under the rules in this module's doc: root
/// first and never behind non-root peers, at most [`UNPRIVILEGED_HANDLERS_MAX`] handlers for
/// non-root peers and [`HANDLERS_PER_UID_MAX`] for any one of them, at most
/// [`CONNECTIONS_PER_UID_MAX`] connections per non-root uid inside. Generic over the
/// connection so the rules are tested without sockets.
#[derive(Debug)]
pub struct Dispatcher<T> {
    state: Mutex<DispatchState<T>>,
    ready: Condvar,
}

impl<T> Default for Dispatcher<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Dispatcher<T> {
    /// Nothing queued.
    pub fn new() -> Dispatcher<T> {
        Dispatcher {
            state: Mutex::new(DispatchState {
                root: VecDeque::new(),
                users: VecDeque::new(),
                users_serving: 0,
                per_uid: HashMap::new(),
                stopping: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// Queues a connection from `uid`, or hands it back with the reason it may not wait.
    pub fn admit(&self, uid: u32, conn: T) -> Result<(), (T, Refusal)> {
        let mut st = lock(&self.state);
        if st.stopping {
            return Err((conn, Refusal::Stopping));
        }
        if uid == 0 {
            if st.root.len() >= ROOT_PENDING_CONNECTIONS_MAX {
                return Err((conn, Refusal::QueueFull));
            }
            st.root.push_back(conn);
        } else {
            if st.per_uid.get(&uid).map_or(0, |l| l.inside) >= CONNECTIONS_PER_UID_MAX {
                return Err((conn, Refusal::UidLimit));
            }
            if st.users.len() >= PENDING_CONNECTIONS_MAX {
                return Err((conn, Refusal::QueueFull));
            }
            st.users.push_back((uid, conn));
            st.per_uid.entry(uid).or_default().inside += 1;
        }
        drop(st);
        self.ready.notify_all();
        Ok(())
    }

    fn take_locked(st: &mut DispatchState<T>) -> Option<Job<T>> {
        if let Some(conn) = st.root.pop_front() {
            return Some(Job { conn, uid: 0 });
        }
        if st.users_serving >= UNPRIVILEGED_HANDLERS_MAX {
            return None;
        }
        let per_uid = &st.per_uid;
        let i = st.users.iter().position(|(uid, _)| {
            per_uid
                .get(uid)
                .is_none_or(|l| l.serving < HANDLERS_PER_UID_MAX)
        })?;
        let (uid, conn) = st.users.remove(i)?;
        st.users_serving += 1;
        st.per_uid.entry(uid).or_default().serving += 1;
        Some(Job { conn, uid })
    }

    /// The next connection a handler may serve now, if any (does not wait).
    pub fn try_take(&self) -> Option<Job<T>> {
        Self::take_locked(&mut lock(&self.state))
    }

    /// Waits for the next connection a handler may serve; `None` once stopping.
    pub fn take(&self) -> Option<Job<T>> {
        let mut st = lock(&self.state);
        loop {
            if st.stopping {
                return None;
            }
            if let Some(job) = Self::take_locked(&mut st) {
                return Some(job);
            }
            st = self.ready.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A handler is done with a [`Job`] of `uid`: its places are free again.
    pub fn release(&self, uid: u32) {
        if uid == 0 {
            return;
        }
        let mut st = lock(&self.state);
        st.users_serving = st.users_serving.saturating_sub(1);
        if let Some(l) = st.per_uid.get_mut(&uid) {
            l.serving = l.serving.saturating_sub(1);
            l.inside = l.inside.saturating_sub(1);
            if l.inside == 0 {
                st.per_uid.remove(&uid);
            }
        }
        drop(st);
        // A connection of this uid may be waiting, and an idle handler may take it.
        self.ready.notify_all();
    }

    /// Stops handing out connections: waiting ones are dropped (closed), waiting handlers
    /// return from [`Dispatcher::take`].
    pub fn stop(&self) {
        let mut st = lock(&self.state);
        st.stopping = true;
        st.root.clear();
        for (uid, _) in std::mem::take(&mut st.users) {
            if let Some(l) = st.per_uid.get_mut(&uid) {
                l.inside = l.inside.saturating_sub(1);
            }
        }
        drop(st);
        self.ready.notify_all();
    }

    /// What is waiting and being served now.
    pub fn load(&self) -> DispatchLoad {
        let st = lock(&self.state);
        DispatchLoad {
            root_waiting: st.root.len(),
            users_waiting: st.users.len(),
            users_serving: st.users_serving,
        }
    }
}

// -----------------------------------------------------------------------------------------
// The socket on disk
// -----------------------------------------------------------------------------------------

/// Why the control socket could not be set up.
#[derive(Debug)]
pub enum ServerError {
    /// The socket's directory could not be created or opened.
    Directory {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The socket's directory, or one above it, is a symlink, not a directory, not root's,
    /// or writable by others: whoever can change it could redirect the socket.
    UnsafeDirectory {
        /// The socket's directory.
        path: PathBuf,
        /// What is wrong, naming the path at fault.
        reason: String,
    },
    /// Something that is not a socket is in the way (a symlink included: it is neither
    /// followed nor removed); santad does not delete it.
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another santad answers on this socket.
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Binding or threads failed.
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
            Self::UnsafeDirectory { path, reason } => write!(
                f,
                "control socket directory {}: refused: {reason}",
                path.display()
            ),
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

/// `fstat`.
fn fstat_fd(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the duration of the call; `st` is a writable `stat`.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`: what is at `name` itself; `None` if nothing.
fn stat_at(dir: RawFd, name: &CString) -> io::Result<Option<libc::stat>> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is open for the duration of the call, `name` is NUL-terminated, `st` is
    // a writable `stat`.
    let rc = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(st))
}

fn file_type(st: &libc::stat) -> libc::mode_t {
    st.st_mode & libc::S_IFMT
}

/// Opens the directory `name` in `dir` without following a symlink (one fails with `ELOOP`).
fn open_dir_at(dir: RawFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is open (or AT_FDCWD) for the duration of the call and `name` is
    // NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether only root (or santad's own user) can change what `st`, a directory on the
/// socket's path, holds. Directories above the socket's may be sticky and writable by all
/// (`/tmp`): nobody can then move or replace another's entry. The socket's own directory may
/// not: anyone could plant a socket or symlink under the name before santad binds it.
fn check_dir(path: &Path, st: &libc::stat, socket_dir: bool, euid: u32) -> Result<(), String> {
    if file_type(st) != libc::S_IFDIR {
        return Err(format!("{} is not a directory", path.display()));
    }
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(format!(
            "{} belongs to uid {}, not to root",
            path.display(),
            st.st_uid
        ));
    }
    let writable_by_others = st.st_mode & 0o022 != 0;
    let sticky = st.st_mode & libc::S_ISVTX != 0;
    if writable_by_others && (socket_dir || !sticky) {
        return Err(format!(
            "{} is writable by users other than root (mode {:o})",
            path.display(),
            st.st_mode & 0o7777
        ));
    }
    Ok(())
}

/// Opens the socket's directory `dir` (absolute), walking from `/` one component at a time
/// with `O_NOFOLLOW`, creating missing components (mode [`SOCKET_DIR_MODE`] under the
/// caller's umask) and checking each with [`check_dir`]. No symlink is followed anywhere on
/// the way: give the real path.
fn open_socket_dir(dir: &Path) -> Result<OwnedFd, ServerError> {
    let unsafe_dir = |reason: String| ServerError::UnsafeDirectory {
        path: dir.to_owned(),
        reason,
    };
    let dir_err = |source| ServerError::Directory {
        path: dir.to_owned(),
        source,
    };
    if !dir.is_absolute() {
        return Err(unsafe_dir("not an absolute path".into()));
    }
    let mut names = Vec::new();
    for c in dir.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => names.push(name),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(unsafe_dir("a `..` in the path".into()));
            }
        }
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let root = CString::from(c"/");
    let mut fd = open_dir_at(libc::AT_FDCWD, &root).map_err(dir_err)?;
    let mut walked = PathBuf::from("/");
    check_dir(
        &walked,
        &fstat_fd(fd.as_raw_fd()).map_err(dir_err)?,
        names.is_empty(),
        euid,
    )
    .map_err(unsafe_dir)?;
    for (i, name) in names.iter().enumerate() {
        walked.push(name);
        let cname = CString::new(name.as_bytes())
            .map_err(|_| unsafe_dir("a NUL byte in the path".into()))?;
        let next = match open_dir_at(fd.as_raw_fd(), &cname) {
            Ok(next) => next,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: `fd` is an open directory and `cname` is NUL-terminated.
                let rc =
                    unsafe { libc::mkdirat(fd.as_raw_fd(), cname.as_ptr(), SOCKET_DIR_MODE as _) };
                if rc != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(dir_err(e));
                    }
                }
                open_dir_at(fd.as_raw_fd(), &cname).map_err(dir_err)?
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let symlink = stat_at(fd.as_raw_fd(), &cname)
                    .ok()
                    .flatten()
                    .is_some_and(|st| file_type(&st) == libc::S_IFLNK);
                return Err(unsafe_dir(if symlink {
                    format!("{} is a symbolic link", walked.display())
                } else {
                    format!("{} is not a directory", walked.display())
                }));
            }
            Err(e) => return Err(dir_err(e)),
        };
        let st = fstat_fd(next.as_raw_fd()).map_err(dir_err)?;
        check_dir(&walked, &st, i + 1 == names.len(), euid).map_err(unsafe_dir)?;
        fd = next;
    }
    Ok(fd)
}

/// A bound socket and where it is.
#[derive(Debug)]
struct Bound {
    listener: UnixListener,
    /// The socket's directory.
    dir: OwnedFd,
    /// The socket's name in it.
    name: CString,
    /// The socket's inode, so that shutdown removes only this socket.
    dev: u64,
    ino: u64,
}

/// Binds the socket at `path`: see [`bind_in_this_thread`], run on a thread of its own so
/// its umask and working directory never reach the rest of santad.
fn bind(path: &Path) -> Result<Bound, ServerError> {
    let owned = path.to_owned();
    let thread = std::thread::Builder::new()
        .name("santad-control-bind".into())
        .spawn(move || bind_in_this_thread(&owned))
        .map_err(|source| ServerError::Io {
            path: path.to_owned(),
            source,
        })?;
    thread.join().unwrap_or_else(|_| {
        Err(ServerError::Io {
            path: path.to_owned(),
            source: io::Error::other("the binding thread panicked"),
        })
    })
}

/// Binds the socket at `path` with mode [`SOCKET_MODE`] and no chmod: this thread stops
/// sharing its filesystem attributes (`unshare(CLONE_FS)`: umask, cwd), opens the directory
/// with [`open_socket_dir`], makes it its cwd, and binds the bare name under umask
/// `0o777 & !SOCKET_MODE`, so the kernel creates the socket with the mode and nothing later
/// goes through a path that could have changed. A stale socket is removed with `unlinkat` in
/// that directory; anything else at the name (a symlink included) is refused, untouched.
/// Call it only on a thread that ends afterwards (its cwd and umask stay changed).
fn bind_in_this_thread(path: &Path) -> Result<Bound, ServerError> {
    let io_err = |source| ServerError::Io {
        path: path.to_owned(),
        source,
    };
    let (Some(dir_path), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(ServerError::UnsafeDirectory {
            path: path.to_owned(),
            reason: "the socket path has no directory or no file name".into(),
        });
    };
    let cname = CString::new(name.as_bytes()).map_err(|_| ServerError::UnsafeDirectory {
        path: path.to_owned(),
        reason: "a NUL byte in the path".into(),
    })?;
    // SAFETY: unshare(CLONE_FS) gives this thread its own copy of the root, cwd and umask;
    // it touches no memory of ours and nothing else in the process.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(io_err(io::Error::last_os_error()));
    }
    // SAFETY: umask has no preconditions; after the unshare it is this thread's alone.
    unsafe { libc::umask(0o022) };
    let dir = open_socket_dir(dir_path)?;
    // SAFETY: `dir` is an open directory fd; the cwd changed is this thread's alone.
    if unsafe { libc::fchdir(dir.as_raw_fd()) } != 0 {
        return Err(io_err(io::Error::last_os_error()));
    }
    let here = Path::new(OsStr::from_bytes(cname.as_bytes()));
    match stat_at(dir.as_raw_fd(), &cname).map_err(io_err)? {
        None => {}
        Some(st) if file_type(&st) == libc::S_IFSOCK => {
            if UnixStream::connect(here).is_ok() {
                return Err(ServerError::InUse {
                    path: path.to_owned(),
                });
            }
            // A stale socket from a santad that died: the name in our directory, never
            // through a link.
            // SAFETY: `dir` is an open directory fd and `cname` is NUL-terminated.
            if unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) } != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ENOENT) {
                    return Err(io_err(e));
                }
            }
        }
        Some(_) => {
            return Err(ServerError::NotASocket {
                path: path.to_owned(),
            });
        }
    }
    // SAFETY: as above; the kernel creates the socket with 0o777 & !umask = SOCKET_MODE.
    unsafe { libc::umask((0o777 & !SOCKET_MODE) as libc::mode_t) };
    let listener = UnixListener::bind(here).map_err(io_err)?;
    let st = stat_at(dir.as_raw_fd(), &cname)
        .map_err(io_err)?
        .filter(|st| file_type(st) == libc::S_IFSOCK)
        .ok_or_else(|| io_err(io::Error::other("the socket vanished after bind")))?;
    if st.st_mode & 0o7777 != SOCKET_MODE as libc::mode_t {
        // A default ACL on the directory overrides the umask; the directory is root's.
        log::warn!(
            "control socket {}: mode {:o}, not {SOCKET_MODE:o} (a default ACL on its directory?)",
            path.display(),
            st.st_mode & 0o7777
        );
    }
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(Bound {
        listener,
        dir,
        name: cname,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

// -----------------------------------------------------------------------------------------
// Threads
// -----------------------------------------------------------------------------------------

/// The running control server. [`ControlServer::stop`] (or drop) stops its threads and
/// removes the socket.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    dir: OwnedFd,
    name: CString,
    dev: u64,
    ino: u64,
    stop: Arc<AtomicBool>,
    dispatcher: Arc<Dispatcher<Connection>>,
    threads: Vec<JoinHandle<()>>,
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

/// Accepts, identifies and queues; never waits on a peer.
fn accept_loop(
    ctx: &ControlContext,
    listener: &UnixListener,
    dispatcher: &Dispatcher<Connection>,
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
        let (uid, pid) = match peer_credentials(&stream) {
            Ok(c) => c,
            Err(e) => {
                // Without credentials nobody is authorised for anything.
                refuse_now(
                    stream,
                    ErrorKind::PermissionDenied,
                    &format!("peer credentials unavailable: {e}"),
                );
                continue;
            }
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        match dispatcher.admit(uid, Connection { stream, uid, pid }) {
            Ok(()) => {}
            Err((conn, Refusal::UidLimit)) => {
                ctx.counters.uid_limited.fetch_add(1, Ordering::Relaxed);
                refuse_now(
                    conn.stream,
                    ErrorKind::Busy,
                    "santad is busy with this user's other connections; try again",
                );
            }
            Err((conn, Refusal::QueueFull | Refusal::Stopping)) => {
                ctx.counters.busy.fetch_add(1, Ordering::Relaxed);
                refuse_now(conn.stream, ErrorKind::Busy, "santad is busy; try again");
            }
        }
    }
}

fn handler_loop(ctx: &ControlContext, dispatcher: &Dispatcher<Connection>, stop: &AtomicBool) {
    while let Some(job) = dispatcher.take() {
        let uid = job.uid;
        // A bug in one request's handling must not take a handler away for good (nor leave
        // its unprivileged place taken).
        let served =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(ctx, job.conn, stop)));
        dispatcher.release(uid);
        if served.is_err() {
            ctx.counters.handler_panics.fetch_add(1, Ordering::Relaxed);
            log::error!("control: handling a request from uid {uid} panicked");
        }
    }
}

impl ControlServer {
    /// Binds the socket at `path` and starts the listener and handler threads.
    pub fn start(ctx: Arc<ControlContext>, path: &Path) -> Result<ControlServer, ServerError> {
        let Bound {
            listener,
            dir,
            name,
            dev,
            ino,
        } = bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let dispatcher = Arc::new(Dispatcher::new());
        // A second server on the same context keeps reporting the first one's load.
        let _ = ctx.dispatcher.set(dispatcher.clone());
        let mut server = ControlServer {
            path: path.to_owned(),
            dir,
            name,
            dev,
            ino,
            stop: stop.clone(),
            dispatcher: dispatcher.clone(),
            threads: Vec::new(),
        };
        let spawn_err = |source| ServerError::Io {
            path: path.to_owned(),
            source,
        };
        for i in 0..HANDLER_THREADS {
            let (ctx, dispatcher, stop) = (ctx.clone(), dispatcher.clone(), stop.clone());
            let t = std::thread::Builder::new()
                .name(format!("santad-control-{i}"))
                .spawn(move || handler_loop(&ctx, &dispatcher, &stop))
                .map_err(spawn_err)?;
            server.threads.push(t);
        }
        let t = std::thread::Builder::new()
            .name("santad-control".into())
            .spawn(move || accept_loop(&ctx, &listener, &dispatcher, &stop))
            .map_err(spawn_err)?;
        server.threads.push(t);
        Ok(server)
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, lets the handlers finish (each within a fraction of a second: reads
    /// re-check the stop flag), joins them and removes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.dispatcher.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        remove_socket_if_ours(&self.dir, &self.name, self.dev, self.ino);
    }
}

/// Removes `name` in `dir` if it is still the socket `(dev, ino)` (another santad may have
/// replaced it meanwhile), by its name in that directory, never through a path.
fn remove_socket_if_ours(dir: &OwnedFd, name: &CString, dev: u64, ino: u64) {
    let ours = stat_at(dir.as_raw_fd(), name)
        .ok()
        .flatten()
        .is_some_and(|st| file_type(&st) == libc::S_IFSOCK && st.st_dev == dev && st.st_ino == ino);
    if ours {
        // SAFETY: `dir` is an open directory fd and `name` is NUL-terminated.
        unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    /// The process umask, read without changing it (`/proc/self/status`).
    fn process_umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .expect("a Umask line");
        u32::from_str_radix(line.trim(), 8).expect("octal")
    }

    #[test]
    fn root_is_served_while_unprivileged_peers_hold_every_handler_they_may() {
        let d = Dispatcher::new();
        // Two users each take a handler: every unprivileged place is held.
        for uid in [1000, 1001] {
            d.admit(uid, uid).expect("admitted");
            let job = d.try_take().expect("a handler for a user");
            assert_eq!(job.uid, uid);
        }
        d.admit(1002, 1002).expect("a third user may wait");
        assert!(
            d.try_take().is_none(),
            "the last handler is kept for root: no third user"
        );
        assert_eq!(
            d.load(),
            DispatchLoad {
                root_waiting: 0,
                users_waiting: 1,
                users_serving: UNPRIVILEGED_HANDLERS_MAX
            }
        );
        // Root arrives after the waiting user and is served first, at once.
        d.admit(0, 0).expect("root admitted");
        let job = d.try_take().expect("root finds a handler");
        assert_eq!(job.uid, 0);
        d.release(0);
        assert!(
            d.try_take().is_none(),
            "root's handler is not lent to users"
        );
        // A user's handler freed: the waiting user gets it.
        d.release(1000);
        assert_eq!(d.try_take().map(|j| j.uid), Some(1002));
    }

    #[test]
    fn one_user_holds_one_handler_and_a_few_connections_and_others_still_get_in() {
        let d = Dispatcher::new();
        for i in 0..CONNECTIONS_PER_UID_MAX {
            d.admit(1000, i).expect("within the uid's bound");
        }
        match d.admit(1000, 99) {
            Err((99, Refusal::UidLimit)) => {}
            other => panic!("the uid's fifth connection: {other:?}"),
        }
        assert_eq!(d.try_take().map(|j| j.uid), Some(1000));
        assert!(
            d.try_take().is_none(),
            "the uid's other connections wait for its one handler"
        );
        d.admit(2000, 2000).expect("another user gets in");
        assert_eq!(
            d.try_take().map(|j| (j.uid, j.conn)),
            Some((2000, 2000)),
            "and is served past the first user's waiting connections"
        );
        // The first user's connection done: its next one, and a fresh one fits again.
        d.release(1000);
        assert_eq!(d.try_take().map(|j| j.conn), Some(1));
        d.admit(1000, 100).expect("a place freed for the uid");
        assert!(matches!(d.admit(1000, 101), Err((101, Refusal::UidLimit))));
    }

    #[test]
    fn the_queues_are_bounded_and_stop_wakes_every_waiting_handler() {
        let d = Arc::new(Dispatcher::new());
        for uid in 1..=PENDING_CONNECTIONS_MAX as u32 {
            d.admit(uid, uid).expect("admitted");
        }
        assert!(matches!(
            d.admit(9999, 9999),
            Err((9999, Refusal::QueueFull))
        ));
        for i in 0..ROOT_PENDING_CONNECTIONS_MAX as u32 {
            d.admit(0, i).expect("root admitted");
        }
        assert!(matches!(d.admit(0, 77), Err((77, Refusal::QueueFull))));
        // Drain everything a handler may take, then park handlers on the empty queue.
        while d.try_take().is_some() {}
        let waiters: Vec<_> = (0..HANDLER_THREADS)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || d.take().map(|j| j.uid))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        d.stop();
        for w in waiters {
            assert_eq!(w.join().expect("joined"), None, "woken by stop");
        }
        assert!(matches!(d.admit(0, 1), Err((1, Refusal::Stopping))));
    }

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        dir
    }

    #[test]
    fn the_socket_is_created_mode_0666_and_santads_umask_never_changes() {
        let dir = private_dir();
        let path = dir.path().join("run/santad/santad.sock");
        let before = process_umask();
        let bound = bind(&path).expect("bound");
        assert_eq!(process_umask(), before, "the process umask is untouched");
        let m = std::fs::symlink_metadata(&path).expect("socket exists");
        assert!(m.file_type().is_socket());
        assert_eq!(m.mode() & 0o7777, SOCKET_MODE, "{:o}", m.mode());
        assert_eq!(m.ino(), bound.ino);
        for d in [dir.path().join("run"), dir.path().join("run/santad")] {
            let m = std::fs::symlink_metadata(&d).expect("created");
            assert!(m.is_dir());
            assert_eq!(m.mode() & 0o7777, SOCKET_DIR_MODE, "{}", d.display());
        }
        // It answers: a peer connects through the path.
        UnixStream::connect(&path).expect("connects");
        assert_eq!(bound.name.as_bytes(), b"santad.sock");
    }

    #[test]
    fn a_symlink_at_the_socket_path_is_neither_followed_nor_removed() {
        let dir = private_dir();
        let target = dir.path().join("precious");
        std::fs::write(&target, b"keep").expect("written");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let path = dir.path().join("santad.sock");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        assert!(matches!(bind(&path), Err(ServerError::NotASocket { .. })));
        let link = std::fs::symlink_metadata(&path).expect("still there");
        assert!(link.file_type().is_symlink(), "the link is not removed");
        let m = std::fs::metadata(&target).expect("target");
        assert_eq!(m.mode() & 0o7777, 0o600, "the target's mode is untouched");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep");
        // A dangling link (a stale socket's name pointing elsewhere) is not followed either:
        // nothing is created where it points.
        let elsewhere = dir.path().join("elsewhere.sock");
        let dangling = dir.path().join("dangling.sock");
        std::os::unix::fs::symlink(&elsewhere, &dangling).expect("symlink");
        assert!(matches!(
            bind(&dangling),
            Err(ServerError::NotASocket { .. })
        ));
        assert!(!elsewhere.exists(), "nothing bound through the link");
    }

    #[test]
    fn a_symlink_anywhere_on_the_directory_path_is_refused() {
        let dir = private_dir();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, dir.path().join("link")).expect("symlink");
        for path in [
            dir.path().join("link/santad.sock"),
            dir.path().join("link/sub/santad.sock"),
        ] {
            match bind(&path) {
                Err(ServerError::UnsafeDirectory { reason, .. }) => {
                    assert!(reason.contains("symbolic link"), "{reason}")
                }
                other => panic!("{}: {other:?}", path.display()),
            }
        }
        assert_eq!(
            std::fs::read_dir(&real).expect("read").count(),
            0,
            "nothing created through the link"
        );
    }

    #[test]
    fn a_socket_directory_others_can_write_is_refused() {
        for mode in [0o777, 0o1777, 0o775] {
            let dir = private_dir();
            let open = dir.path().join("open");
            std::fs::create_dir(&open).expect("mkdir");
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(mode)).expect("chmod");
            match bind(&open.join("santad.sock")) {
                Err(ServerError::UnsafeDirectory { reason, .. }) => {
                    assert!(reason.contains("writable"), "{mode:o}: {reason}")
                }
                other => panic!("{mode:o}: {other:?}"),
            }
            assert!(!open.join("santad.sock").exists());
            // Below a sticky shared directory (as a private directory in /tmp is) is fine.
            if mode == 0o1777 {
                let inner = open.join("inner");
                std::fs::create_dir(&inner).expect("mkdir");
                std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
                bind(&inner.join("santad.sock")).expect("a private directory in a sticky one");
            }
        }
    }

    #[test]
    fn a_socket_directory_of_another_user_is_refused() {
        if euid() != 0 {
            eprintln!("needs root to give a directory away; CI runs as root");
            return;
        }
        let dir = private_dir();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
        match bind(&theirs.join("santad.sock")) {
            Err(ServerError::UnsafeDirectory { reason, .. }) => {
                assert!(reason.contains("uid 65534"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stale_socket_is_replaced_a_live_one_is_in_use_and_shutdown_removes_only_ours() {
        let dir = private_dir();
        let path = dir.path().join("santad.sock");
        let first = bind(&path).expect("bound");
        assert!(matches!(bind(&path), Err(ServerError::InUse { .. })));
        drop(first.listener); // santad died: the socket file stays, nobody answers
        let second = bind(&path).expect("a stale socket is replaced");
        // Another santad's socket under the name (the second one's inode is still alive,
        // moved aside, so the third cannot reuse its number) is not ours to remove.
        std::fs::rename(&path, dir.path().join("moved.sock")).expect("renamed");
        let third = bind(&path).expect("bound again");
        remove_socket_if_ours(&second.dir, &second.name, second.dev, second.ino);
        assert!(path.exists(), "not the socket the second bind made");
        remove_socket_if_ours(&third.dir, &third.name, third.dev, third.ino);
        assert!(!path.exists(), "ours is removed");
    }
}
