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
//! The listener thread never waits on a peer: it accepts, reads the peer's credentials, queues or
//! refuses (one non-blocking write), so the kernel's backlog keeps draining under a flood.
//!
//! The socket (see `bind`): its directory is walked from `/` with `O_NOFOLLOW` (no symlink
//! anywhere, every directory root's and not writable by others), and it is bound relative to
//! that directory's fd with mode 0666 set by the umask of the binding thread alone (which
//! stops sharing its umask and cwd with the process first), so nothing is ever chmod'ed
//! through a path and santad's own umask never changes.

use crate::config::{Config, LogDestination, LogFormat};
use crate::eventlog::EventLog;
use crate::identity::Verdict;
use santa_control::*;
use santa_hotpath::{CountersSnapshot, EngineView, FileKey, FileStamp, FlushReason};
use santa_rules as rules;
use std::collections::BTreeMap;
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
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
/// the peer's credentials ([`peer_credentials`]).
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
    /// The running engine.
    fn engine(&self) -> &dyn EngineView<Arc<Verdict>>;
    /// Drops the platform's own cache of allows (the kernel's), after the engine's.
    fn flush_platform(&self) -> Result<(), String>;
    /// Drops every cached decision: the engine's (epoch bump, counted under `reason`) first, so
    /// a kernel mark being placed meanwhile sees it and withdraws itself, then the kernel's.
    fn flush(&self, reason: FlushReason) -> Result<(), String> {
        self.engine().flush(reason);
        self.flush_platform()
    }
    /// The engine's counters.
    fn counters(&self) -> CountersSnapshot {
        self.engine().counters()
    }
    /// Live entries in the decision cache.
    fn cache_entries(&self) -> usize {
        self.engine().cache_len()
    }
    /// Executions held right now.
    fn in_flight(&self) -> usize {
        self.engine().in_flight()
    }
    /// Worker threads.
    fn workers(&self) -> usize {
        self.engine().workers()
    }
    /// The cached decision for this file, read-only.
    fn peek(&self, key: FileKey, stamp: FileStamp) -> Option<rules::Decision> {
        self.engine().peek(key, stamp).map(|v| v.decision.clone())
    }
    /// Platform counters (fanotify), by name (see [`named_counters`]).
    fn platform_metrics(&self) -> Vec<(String, u64)>;
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

/// A struct of counters as metrics: `prefix.name` for each field, under its serde name (so
/// the field list is the metric list, written once). Fields that are not whole numbers are left
/// out.
pub fn named_counters(prefix: &str, counters: &impl serde::Serialize) -> Vec<(String, u64)> {
    match serde_json::to_value(counters) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(k, v)| Some((format!("{prefix}.{k}"), v.as_u64()?)))
            .collect(),
        _ => Vec::new(),
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
    /// Changes already in the published snapshot and not yet in the database (transitive rules,
    /// made on an exec's path: a commit costs milliseconds of fsync). Written by the next
    /// [`ControlContext::with_rules`], before anyone reads the database, or by the transitive
    /// housekeeping thread, which is woken for it.
    pending: Vec<rules::RuleChange>,
}

impl RulesDb {
    /// The database at `path` (not opened yet).
    pub fn new(path: PathBuf) -> RulesDb {
        RulesDb {
            path,
            store: None,
            pending: Vec::new(),
        }
    }

    /// Points at another file (a reload changed `RulesDbPath`).
    pub fn set_path(&mut self, path: &Path) {
        if self.path != path {
            // What was made for the old database goes there.
            let _ = self.write_pending();
            self.path = path.to_owned();
            self.store = None;
        }
    }

    /// Queues `change`, already published, for the database; returns the generation the
    /// snapshot with it should carry.
    pub fn defer(&mut self, change: rules::RuleChange) -> Result<u64, rules::StoreError> {
        let generation = self.store()?.generation() + self.pending.len() as u64 + 1;
        self.pending.push(change);
        Ok(generation)
    }

    /// Changes waiting for the database.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes the pending changes in one transaction; returns how many. On an error they are
    /// dropped (and the error returned, to be logged): they stay in force until the next
    /// snapshot is built from the database.
    pub fn write_pending(&mut self) -> Result<usize, rules::StoreError> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let pending = std::mem::take(&mut self.pending);
        self.store()?.apply(&pending, rules::Cleanup::None)?;
        Ok(pending.len())
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

/// Counters of the metric exports (`crate::metrics`): the node_exporter text file and
/// `MetricURL`.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Text files written.
    pub textfile_ok: AtomicU64,
    /// Text file writes that failed.
    pub textfile_failed: AtomicU64,
    /// Exports the `MetricURL` server answered with 200.
    pub url_ok: AtomicU64,
    /// Exports to `MetricURL` that failed (transport, timeout, another status).
    pub url_failed: AtomicU64,
}

/// Everything the handlers share with the daemon.
pub struct ControlContext {
    engine: Arc<dyn EngineControl>,
    policy: Arc<rules::PolicyEngine>,
    log: Arc<EventLog>,
    config: Mutex<Arc<Config>>,
    rules: Mutex<RulesDb>,
    started: Instant,
    started_at: std::time::SystemTime,
    /// The rules database's last integrity check for `doctor` (any user may ask; the check
    /// reads the whole file under the rules lock, so it runs at most once a minute).
    rules_checked: Mutex<Option<(Instant, Option<String>)>>,
    dispatcher: std::sync::OnceLock<Arc<Dispatcher<Connection>>>,
    sync: std::sync::OnceLock<Arc<crate::sync::SyncHandle>>,
    /// The block watchers (`santa-notify`); `None` if their wake socket could not be made.
    watchers: Option<Arc<BlockWatchers>>,
    /// The socket's counters.
    pub counters: ControlCounters,
    /// The metric exports' counters.
    pub exports: ExportCounters,
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
        let watchers = match BlockWatchers::new(crate::setup::block_config(&config)) {
            Ok(w) => {
                let w = Arc::new(w);
                if log.add_tap(w.clone()) {
                    Some(w)
                } else {
                    log::error!("control: the event log has no room for the block watchers");
                    None
                }
            }
            Err(e) => {
                log::error!("control: block watchers unavailable: {e}");
                None
            }
        };
        Arc::new(ControlContext {
            watchers,
            engine,
            policy,
            log,
            rules: Mutex::new(RulesDb::new(config.rules_db_path.clone())),
            config: Mutex::new(Arc::new(config)),
            started: Instant::now(),
            started_at: std::time::SystemTime::now(),
            rules_checked: Mutex::new(None),
            dispatcher: std::sync::OnceLock::new(),
            sync: std::sync::OnceLock::new(),
            counters: ControlCounters::default(),
            exports: ExportCounters::default(),
        })
    }

    /// The policy engine (rules snapshot and policy) the workers decide with.
    pub fn policy(&self) -> &Arc<rules::PolicyEngine> {
        &self.policy
    }

    /// Drops every cached decision, the engine's and the platform's.
    pub fn flush_engine(&self, reason: FlushReason) -> Result<(), String> {
        self.engine.flush(reason)
    }

    /// Forgets the engine's cached decision about one file.
    pub fn invalidate(&self, key: santa_hotpath::FileKey) {
        self.engine.engine().invalidate(key);
    }

    /// When santad started (wall clock).
    pub fn started_at(&self) -> std::time::SystemTime {
        self.started_at
    }

    /// Runs `f` with the rules database locked: every publisher of rules snapshots (the
    /// control handlers and santad's reload) goes through here, so a snapshot built from an
    /// older read of the database can never replace a newer one.
    pub fn with_rules<T>(&self, f: impl FnOnce(&mut RulesDb) -> T) -> T {
        let mut db = lock(&self.rules);
        if let Err(e) = db.write_pending() {
            log::error!("rules database: transitive rules not stored: {e}");
        }
        f(&mut db)
    }

    /// [`ControlContext::with_rules`] without writing what is pending first: for a change that
    /// is itself deferred ([`RulesDb::defer`]).
    pub fn with_rules_deferred<T>(&self, f: impl FnOnce(&mut RulesDb) -> T) -> T {
        f(&mut lock(&self.rules))
    }

    /// Connects the sync service (`santactl sync`, the sync status), once.
    pub fn set_sync(&self, sync: Arc<crate::sync::SyncHandle>) {
        let _ = self.sync.set(sync);
    }

    /// The configuration now in force (after a reload).
    pub fn set_config(&self, config: Config) {
        if let Some(w) = &self.watchers {
            w.set_config(crate::setup::block_config(&config));
        }
        *lock(&self.config) = Arc::new(config);
    }

    /// The block watchers, if santad has them.
    pub fn watchers(&self) -> Option<&Arc<BlockWatchers>> {
        self.watchers.as_ref()
    }

    /// The configuration now in force.
    pub fn config(&self) -> Arc<Config> {
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
            Request::Doctor => self.doctor().map(Reply::Doctor),
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
            Request::Sync { clean } => match self.sync.get() {
                Some(sync) => sync
                    .sync_now(crate::sync::requested_kind(clean))
                    .map(Reply::Synced)
                    .map_err(|e| ControlError::new(ErrorKind::Internal, format!("sync: {e}"))),
                None => Err(ControlError::new(
                    ErrorKind::InvalidRequest,
                    "sync: no sync server is configured (SyncBaseURL)",
                )),
            },
            // Served by the connection itself (`serve`), which keeps the socket.
            Request::WatchBlocks { .. } => Err(ControlError::new(
                ErrorKind::InvalidRequest,
                "watch-blocks: only on a connection of its own",
            )),
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
            .find(|(k, _)| k == "fanotify.ignore_marks")
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
                static_rules: self.policy.policy().static_rule_count() as u64,
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
            sync: self.sync.get().map(|s| s.status()),
        })
    }

    /// Every metric by name (`santactl metrics`, the exports): flat keys whose meaning, as
    /// Prometheus families and labels, is `santa_control::metrics::TABLE`.
    pub fn metrics(&self) -> BTreeMap<String, u64> {
        let c = self.engine.counters();
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: u64| {
            m.insert(k.to_owned(), v);
        };
        for action in [rules::Action::Allow, rules::Action::Deny] {
            for reason in crate::eventlog::REASONS {
                put(
                    &format!(
                        "decisions.{}.{}",
                        action_name(action),
                        reason.as_str().to_ascii_lowercase()
                    ),
                    self.log.decisions(action, reason),
                );
            }
        }
        let stats = self.policy.snapshot().stats();
        for (t, n) in rules::RuleType::ALL.iter().zip(stats.rules_by_type) {
            put(
                &format!("rules.{}", t.santa_name().to_ascii_lowercase()),
                n as u64,
            );
        }
        let mode = self.policy.policy().config().mode;
        for (name, m) in [
            ("monitor", rules::ClientMode::Monitor),
            ("lockdown", rules::ClientMode::Lockdown),
        ] {
            put(&format!("mode.{name}"), u64::from(mode == m));
        }
        for (k, v) in named_counters("engine", &c) {
            put(&k, v);
        }
        for reason in FlushReason::ALL {
            put(
                &format!("engine.flushes.{}", reason.name()),
                c.flushes_for(reason),
            );
        }
        put("engine.in_flight", self.engine.in_flight() as u64);
        put("engine.deferred_now", self.engine.engine().deferred());
        put("engine.cache_entries", self.engine.cache_entries() as u64);
        for (k, v) in self.engine.platform_metrics() {
            put(&k, v);
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
        if let Some(w) = &self.watchers {
            let wc = &w.counters;
            put("notify.watchers", w.active() as u64);
            put("notify.accepted", get(&wc.accepted));
            put("notify.refused", get(&wc.refused));
            put("notify.sent", get(&wc.sent));
            put("notify.dropped", get(&wc.dropped));
            put("notify.silenced", get(&wc.silenced));
            put("notify.closed", get(&wc.closed));
            put("notify.closed_stalled", get(&wc.closed_stalled));
        }
        if let Some(load) = self.load() {
            put("control.root_waiting", load.root_waiting as u64);
            put("control.unprivileged_waiting", load.users_waiting as u64);
            put("control.unprivileged_serving", load.users_serving as u64);
        }
        put("daemon.uptime_secs", self.started.elapsed().as_secs());
        put(
            "daemon.started_unix",
            self.started_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        for (k, v) in crate::metrics::process_usage() {
            put(k, v);
        }
        let ex = &self.exports;
        put("export.textfile_ok", get(&ex.textfile_ok));
        put("export.textfile_failed", get(&ex.textfile_failed));
        put("export.url_ok", get(&ex.url_ok));
        put("export.url_failed", get(&ex.url_failed));
        if let Some(sync) = self.sync.get() {
            let s = sync.status();
            put("sync.syncs_ok", s.syncs_ok);
            put("sync.syncs_failed", s.syncs_failed);
            put("sync.events_pending", s.events_pending);
            put("sync.events_dropped", s.events_dropped);
            put("sync.events_uploaded", s.events_uploaded);
            put(
                "sync.last_successful_sync_unix",
                s.last_successful_sync.unwrap_or(0),
            );
            for (k, v) in sync.tap_counters() {
                put(&format!("sync.{k}"), v);
            }
        }
        m
    }

    fn check_cache(&self, file: CacheKey) -> Option<CachedDecision> {
        let key = FileKey {
            dev: file.dev,
            ino: file.ino,
        };
        let stamp = FileStamp {
            ctime_ns: file.ctime_ns,
            size_bytes: file.size,
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
                let policy = self.policy.policy();
                let rule = policy.lookup(&snapshot, &ids).and_then(|(m, is_static)| {
                    m.identifier().map(|id| RuleView {
                        identifier: id.to_string(),
                        rule_type: m.rule_type().santa_name().to_owned(),
                        state: m.state().db_value(),
                        is_static,
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
                    signing_status: facts.signing_status,
                    is_platform_binary: facts.platform_binary,
                    path: facts.path.as_bytes(),
                    signing_time: None,
                    secure_signing_time: None,
                };
                let decision = self.policy.evaluator().decide(&identity);
                Ok(RuleCheckReply {
                    rule: decision.matched.as_ref().map(|m| RuleView {
                        identifier: m.identifier.to_string(),
                        rule_type: m.identifier.rule_type().santa_name().to_owned(),
                        state: m.state.db_value(),
                        is_static: m.is_static,
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
        // A static rule is the configuration's: santactl can neither replace nor remove it (a
        // stored rule with its identifier would be shadowed anyway, and a removal would appear to
        // succeed while the static rule goes on deciding).
        let policy = self.policy.policy();
        if let Some((i, c)) = changes
            .iter()
            .enumerate()
            .find(|(_, c)| policy.static_rule(c.identifier()).is_some())
        {
            return Err(ControlError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "rule {i}: {} {} is a static rule (StaticRules in santad's configuration); \
                     change the configuration to change it",
                    c.identifier().rule_type().santa_name(),
                    c.identifier()
                ),
            ));
        }
        let outcome = self
            .apply_changes(&changes, cleanup.into(), "control")
            .map_err(Self::store_error)?;
        Ok(ApplyReply {
            upserted: outcome.upserted as u64,
            removed: outcome.removed as u64,
            flushed: outcome.flush_cache,
        })
    }

    /// Stores `changes` (after `cleanup`) in one transaction, publishes the new snapshot, then
    /// flushes the decision caches if the store says the change needs it: the one path by which
    /// rules change while santad runs (`santactl rule`, a sync). `who` names it in the log.
    pub fn apply_changes(
        &self,
        changes: &[rules::RuleChange],
        cleanup: rules::Cleanup,
        who: &str,
    ) -> Result<rules::ApplyOutcome, rules::StoreError> {
        let outcome = self.with_rules(|db| -> Result<_, rules::StoreError> {
            let store = db.store()?;
            let outcome = store.apply(changes, cleanup)?;
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
        })?;
        if outcome.flush_cache
            && let Err(e) = self.engine.flush(FlushReason::Rules)
        {
            log::error!("{who}: flushing caches after a rule change: {e}");
        }
        log::info!(
            "{who}: rules changed ({} upserted, {} removed, cleanup {:?}, caches {})",
            outcome.upserted,
            outcome.removed,
            cleanup,
            if outcome.flush_cache {
                "flushed"
            } else {
                "kept"
            }
        );
        Ok(outcome)
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

mod connection;
mod dispatch;
mod doctor;
mod listener;
mod socket;
#[cfg(all(test, target_os = "linux"))]
mod tests;
mod watch;

pub use connection::{Connection, peer_credentials};
use connection::{refuse_now, serve};
pub use dispatch::{DispatchLoad, Dispatcher, Job, Refusal};
pub use listener::ControlServer;
pub use socket::ServerError;
pub(crate) use socket::open_root_dir;
use socket::{Bound, SocketEntry, bind};
pub use watch::{
    BlockWatchers, Place, WATCHER_QUEUE_DEPTH, WATCHER_STALL_MAX, WATCHERS_MAX,
    WATCHERS_PER_UID_MAX, WatchCounters, WatchRefusal, block_event,
};
