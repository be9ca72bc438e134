//! The fleet: santad steered by a Santa sync server (`SyncBaseURL`), on its own threads, never
//! on an execution's path.
//!
//! - The **sync thread** ([`SyncService::start`]) runs a full sync ([`santa_sync::SyncClient`])
//!   at start, then every `FullSyncInterval` (the server may change it), and when `santactl sync`
//!   asks ([`SyncHandle::sync_now`]). A failed sync is tried again sooner (1, 2, 4, ... minutes,
//!   never later than the interval); nothing it downloaded is applied, so the last good rules
//!   stay in force.
//! - The host side of the protocol is [`host::DaemonHost`]: rules through the same path as
//!   `santactl rule` (one transaction, one snapshot swap), the server's settings into the sync
//!   state ([`state`]), which is laid over the config file, then a reload (SIGHUP's path) so the
//!   new mode and scopes take effect.
//! - The **spool** ([`spool`]) keeps the events to upload in SQLite, fed by the logger thread;
//!   [`event`] turns a log record into Santa's `Event`.
//!
//! Status for `santactl status` is kept in [`SyncHandle::status`].

pub mod decision;
pub mod event;
pub mod host;
pub mod spool;
pub mod state;

use crate::config::Config;
use crate::control::server::ControlContext;
use crate::control::{SyncReply, SyncStatus};
use santa_sync::{ContentEncoding, SyncClient, SyncConfig, SyncKind, SyncReport, TlsFiles};
use spool::{Spool, SpoolTap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The first retry after a failed sync; each further failure doubles it, up to the interval.
pub const RETRY_FIRST: Duration = Duration::from_secs(60);

/// Events stored between full syncs go up alone (Santa uploads a block at once) at most this
/// often, so a burst of blocks is one upload, not one each.
pub const EVENT_UPLOAD_GAP: Duration = Duration::from_secs(5);

/// How long a stored event waits before it goes up alone: long enough for the bundle task to
/// hash a blocked binary's bundle and give the event its bundle fields, and for a burst of blocks
/// to go up together.
pub const EVENT_UPLOAD_DELAY: Duration = Duration::from_secs(2);

/// How soon the sync after one that released bundle events runs (Santa uploads them in the
/// same sync; here the next one, a moment later, takes them).
pub const BUNDLE_FOLLOW_UP: Duration = Duration::from_secs(1);

/// Longest `santactl sync` waits for the sync it asked for; past it, the sync goes on and
/// `santactl status` tells how it ended.
pub const SYNC_NOW_WAIT: Duration = Duration::from_secs(600);

enum Command {
    Sync {
        kind: SyncKind,
        reply: mpsc::SyncSender<Result<SyncReply, String>>,
    },
    Reconfigure(Box<Config>),
    /// The spool stored new events: upload them soon, without waiting for the full sync.
    EventsStored,
    /// santad is stopping.
    Stop,
}

/// The side of the sync the control socket holds: ask for a sync, read the status.
#[derive(Debug)]
pub struct SyncHandle {
    tx: Mutex<mpsc::Sender<Command>>,
    status: Arc<Mutex<SyncStatus>>,
    spool: Option<Arc<Mutex<Spool>>>,
    tap: Arc<SpoolTap>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Sync { .. } => "Sync",
            Command::Reconfigure(_) => "Reconfigure",
            Command::EventsStored => "EventsStored",
            Command::Stop => "Stop",
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SyncHandle {
    /// Runs a sync now (`kind` is what the operator asks for; the server decides) and waits for
    /// its outcome, at most [`SYNC_NOW_WAIT`].
    pub fn sync_now(&self, kind: SyncKind) -> Result<SyncReply, String> {
        if let Some(why) = &lock(&self.status).disabled {
            return Err(format!("sync is disabled: {why}"));
        }
        let (reply, answer) = mpsc::sync_channel(1);
        lock(&self.tx)
            .send(Command::Sync { kind, reply })
            .map_err(|_| "the sync thread has stopped".to_owned())?;
        match answer.recv_timeout(SYNC_NOW_WAIT) {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no outcome within {} s; the sync goes on (see santactl status)",
                SYNC_NOW_WAIT.as_secs()
            )),
        }
    }

    /// The status now, with the spool's counts.
    pub fn status(&self) -> SyncStatus {
        let mut status = lock(&self.status).clone();
        if let Some(spool) = &self.spool {
            match lock(spool).counts() {
                Ok(c) => {
                    status.events_pending = c.waiting;
                    status.events_dropped = c.dropped_full;
                    status.events_uploaded = c.uploaded;
                }
                Err(e) => status.spool_error = Some(e.to_string()),
            }
        }
        status
    }

    /// The spool feed's counters: executions coalesced as repeats, events the queue had no room
    /// for.
    pub fn tap_counters(&self) -> [(&'static str, u64); 2] {
        [
            (
                "events_coalesced",
                self.tap.coalesced.load(Ordering::Relaxed),
            ),
            (
                "events_queue_overflows",
                self.tap.queue_overflows.load(Ordering::Relaxed),
            ),
        ]
    }

    /// Takes up a reloaded config: the server, the interval, the bounds.
    pub fn reconfigure(&self, config: &Config) {
        let _ = lock(&self.tx).send(Command::Reconfigure(Box::new(config.clone())));
    }
}

/// The running sync: its threads and what they share.
#[derive(Debug)]
pub struct SyncService {
    /// What the control socket uses.
    pub handle: Arc<SyncHandle>,
    tap: Arc<SpoolTap>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// The client's settings from santad's config; an error names the key that is wrong.
pub fn client_config(config: &Config) -> Result<SyncConfig, String> {
    let Some(url) = &config.sync.base_url else {
        return Err("no SyncBaseURL".into());
    };
    let machine_id = config
        .machine_id
        .clone()
        .or_else(host::default_machine_id)
        .ok_or("no MachineID, and /etc/machine-id is missing")?;
    let mut c = SyncConfig::new(url.clone(), machine_id);
    c.content_encoding = match config.sync.content_encoding {
        crate::config::SyncEncoding::Deflate => ContentEncoding::Deflate,
        crate::config::SyncEncoding::Gzip => ContentEncoding::Gzip,
        crate::config::SyncEncoding::None => ContentEncoding::None,
    };
    c.extra_headers = config.sync.extra_headers.clone();
    c.tls = TlsFiles {
        ca_bundle: config.sync.server_auth_roots_file.clone(),
        client_cert: config.sync.client_auth_certificate_file.clone(),
        client_key: config.sync.client_auth_key_file.clone(),
    };
    c.upload_events_in_clean_sync = config.sync.enable_clean_sync_event_upload;
    c.limits.tries_max = config.sync.request_tries as u32;
    Ok(c)
}

/// Which sync a `santactl sync` flag asks for.
pub fn requested_kind(clean: crate::control::CleanupSpec) -> SyncKind {
    match clean {
        crate::control::CleanupSpec::None => SyncKind::Normal,
        crate::control::CleanupSpec::NonTransitive => SyncKind::Clean,
        crate::control::CleanupSpec::All => SyncKind::CleanAll,
    }
}

fn kind_name(kind: SyncKind) -> &'static str {
    match kind {
        SyncKind::Normal => "normal",
        SyncKind::Clean => "clean",
        SyncKind::CleanAll => "clean_all",
    }
}

fn reply_of(server: &str, report: &SyncReport, apply: Duration) -> SyncReply {
    SyncReply {
        server: server.to_owned(),
        sync_type: kind_name(report.settings.sync_kind).to_owned(),
        events_uploaded: report.events_uploaded as u64,
        rules_received: u64::from(report.rules_received),
        rules_processed: u64::from(report.rules_processed),
        mode: report.settings.client_mode.map(|m| m.name().to_owned()),
        elapsed_ms: report.elapsed.as_millis() as u64,
        rules_apply_ms: apply.as_millis() as u64,
        postflight_error: report.postflight_error.as_ref().map(|e| e.to_string()),
    }
}

/// The sync thread's own state.
struct Worker {
    config: Config,
    client: Option<SyncClient>,
    host: host::DaemonHost,
    status: Arc<Mutex<SyncStatus>>,
    failures: u32,
    /// Bundle events the server asked for are waiting: sync again soon.
    bundles_released: bool,
    /// The last preflight's batch size, for uploads between syncs.
    batch_size: u32,
    /// When events were last uploaded on their own.
    last_event_upload: Option<Instant>,
}

impl Worker {
    /// (Re)builds the client from the config; a bad setting disables sync, with why.
    fn configure(&mut self, config: Config) {
        let built = client_config(&config).and_then(|c| {
            let server = c.base_url.clone();
            let machine_id = c.machine_id.clone();
            SyncClient::new(&c)
                .map(|client| (client, server, machine_id))
                .map_err(|e| e.to_string())
        });
        let mut status = lock(&self.status);
        status.full_sync_interval_secs = config.sync.full_sync_interval_secs;
        match built {
            Ok((client, server, machine_id)) => {
                status.server = server;
                status.machine_id = machine_id;
                status.disabled = None;
                self.client = Some(client);
            }
            Err(e) => {
                log::error!("sync disabled: {e}");
                status.server = config.sync.base_url.clone().unwrap_or_default();
                status.disabled = Some(e);
                self.client = None;
            }
        }
        drop(status);
        self.host.state_path = config.sync.sync_state_path.clone();
        if let Some(spool) = &self.host.spool {
            lock(spool).set_max_events(config.sync.event_spool_max_events);
        }
        self.config = config;
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.config.sync.full_sync_interval_secs.max(60))
    }

    /// What to ask the server for: the operator's `kind`, or a clean sync still owed (asked for
    /// earlier and not yet performed), or CLEAN_ALL on a host that never synced — as Santa asks.
    /// An operator's clean request is remembered until a server performs a clean sync.
    fn requested(&self, kind: SyncKind) -> SyncKind {
        let path = &self.host.state_path;
        let mut state = state::SyncState::load(path).unwrap_or_default();
        let asked = match kind {
            SyncKind::Normal => None,
            SyncKind::Clean => Some(state::CleanRequest::Clean),
            SyncKind::CleanAll => Some(state::CleanRequest::CleanAll),
        };
        if asked.is_some() && asked != state.clean_sync_required {
            state.clean_sync_required = asked.max(state.clean_sync_required);
            if let Err(e) = state.store(path) {
                log::warn!("{e}");
            }
        }
        match state.clean_sync_required {
            Some(state::CleanRequest::CleanAll) => SyncKind::CleanAll,
            Some(state::CleanRequest::Clean) => SyncKind::Clean,
            None if state.last_full_sync_unix.is_none() => SyncKind::CleanAll,
            None => SyncKind::Normal,
        }
    }

    /// One full sync; the status and the sync state say how it went.
    fn run(&mut self, kind: SyncKind) -> Result<SyncReply, String> {
        let kind = self.requested(kind);
        let Some(client) = self.client.as_mut() else {
            return Err(lock(&self.status)
                .disabled
                .clone()
                .unwrap_or_else(|| "sync is not configured".into()));
        };
        {
            let mut s = lock(&self.status);
            s.in_progress = true;
            s.last_attempt = Some(now_unix());
            s.clean_sync_requested = kind != SyncKind::Normal;
        }
        self.host.rules_apply = Duration::ZERO;
        // A bug in the client must not take the sync thread (and every later sync) with it.
        let host = &mut self.host;
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| client.sync(host, kind)))
                .unwrap_or_else(|_| {
                    Err(santa_sync::SyncError::Host {
                        stage: santa_sync::Stage::Preflight,
                        source: santa_sync::HostError::new(
                            "the sync panicked (a bug); see the log",
                        ),
                    })
                });
        let server = lock(&self.status).server.clone();
        let mut s = lock(&self.status);
        s.in_progress = false;
        match result {
            Ok(report) => {
                self.failures = 0;
                self.batch_size = report.settings.batch_size;
                s.syncs_ok += 1;
                s.last_error = None;
                let now = now_unix();
                s.last_successful_sync = Some(now);
                if report.rules_applied {
                    s.last_rule_sync = Some(now);
                }
                drop(s);
                self.record_success(now, report.rules_applied, report.settings.sync_kind);
                self.release_bundles(&report.bundle_binaries_requested);
                log::info!(
                    "sync: {} sync with {server} done: {} event(s) uploaded, {} rule(s) \
                     received, {} stored, in {} ms",
                    kind_name(report.settings.sync_kind),
                    report.events_uploaded,
                    report.rules_received,
                    report.rules_processed,
                    report.elapsed.as_millis()
                );
                Ok(reply_of(&server, &report, self.host.rules_apply))
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                s.syncs_failed += 1;
                let text = e.to_string();
                s.last_error = Some(text.clone());
                log::error!("sync with {server} failed: {text}; the rules in force stay");
                Err(text)
            }
        }
    }

    /// Uploads the waiting events alone (between full syncs). A failure is logged and left for
    /// the next full sync; the events stay in the spool.
    fn upload_events(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        self.last_event_upload = Some(Instant::now());
        match client.upload_events(&mut self.host, self.batch_size) {
            Ok(r) if r.events_uploaded > 0 => {
                log::info!("sync: {} event(s) uploaded", r.events_uploaded);
            }
            Ok(_) => {}
            Err(e) => {
                log::warn!("sync: uploading events failed ({e}); they wait for the next sync");
                lock(&self.status).last_error = Some(e.to_string());
            }
        }
    }

    /// The server asked for the binaries of these bundles (`event_upload_bundle_binaries`):
    /// their events go up with the next sync, which is brought forward.
    fn release_bundles(&mut self, hashes: &[String]) {
        let (Some(spool), false) = (&self.host.spool, hashes.is_empty()) else {
            return;
        };
        match lock(spool).release_bundles(hashes) {
            Ok(0) => {}
            Ok(n) => {
                log::info!("sync: the server asked for {n} bundle binary event(s)");
                self.bundles_released = true;
            }
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Keeps when the last sync succeeded in the sync state, across restarts.
    fn record_success(&self, now: u64, rules: bool, performed: SyncKind) {
        let path = &self.host.state_path;
        let mut state = match state::SyncState::load(path) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("{e}");
                return;
            }
        };
        state.last_full_sync_unix = Some(now);
        if performed != SyncKind::Normal {
            state.clean_sync_required = None;
        }
        if rules {
            state.last_rule_sync_unix = Some(now);
        }
        if let Err(e) = state.store(path) {
            log::warn!("{e}");
        }
    }

    /// When the next sync is due after the last outcome.
    fn next_after(&mut self) -> Duration {
        if std::mem::take(&mut self.bundles_released) && self.failures == 0 {
            return BUNDLE_FOLLOW_UP;
        }
        if self.failures == 0 {
            return self.interval();
        }
        let shift = (self.failures - 1).min(10);
        (RETRY_FIRST * (1u32 << shift)).min(self.interval())
    }
}

impl SyncService {
    /// Starts the spool and the sync thread for `config` (which has a `SyncBaseURL`), and hands
    /// the log's records to the spool. `reload` applies settings the server changed (santad
    /// passes a SIGHUP to itself). The first sync runs at once.
    pub fn start(
        config: &Config,
        control: Arc<ControlContext>,
        log: &crate::eventlog::EventLog,
        reload: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<SyncService> {
        let stop = Arc::new(AtomicBool::new(false));
        let tap = Arc::new(SpoolTap::new());
        tap.filter
            .all
            .store(config.sync.enable_all_event_upload, Ordering::Relaxed);
        tap.filter
            .no_unknown
            .store(config.sync.disable_unknown_event_upload, Ordering::Relaxed);
        let mut status = SyncStatus::default();
        if let Ok(s) = state::SyncState::load(&config.sync.sync_state_path) {
            status.last_successful_sync = s.last_full_sync_unix;
            status.last_rule_sync = s.last_rule_sync_unix;
        }
        let spool = match Spool::open(
            &config.sync.events_db_path,
            config.sync.event_spool_max_events,
        ) {
            Ok(s) => Some(Arc::new(Mutex::new(s))),
            Err(e) => {
                log::error!("{e}; events are not spooled (the file is left as it is)");
                status.spool_error = Some(e.to_string());
                None
            }
        };
        let status = Arc::new(Mutex::new(status));
        let mut threads = Vec::new();
        let (tx, rx) = mpsc::channel();
        if let Some(spool) = &spool {
            let stored = Mutex::new(tx.clone());
            threads.push(spool::spawn_writer(
                tap.clone(),
                spool.clone(),
                stop.clone(),
                move |_| {
                    let _ = lock(&stored).send(Command::EventsStored);
                },
            )?);
            if !log.add_tap(tap.clone()) {
                log::error!("sync: the event log has no room for the spool's tap");
            }
        }
        let mut worker = Worker {
            config: config.clone(),
            client: None,
            host: host::DaemonHost {
                control,
                spool: spool.clone(),
                state_path: config.sync.sync_state_path.clone(),
                reload,
                rules_refused: 0,
                rules_apply: Duration::ZERO,
            },
            status: status.clone(),
            failures: 0,
            bundles_released: false,
            batch_size: santa_sync::DEFAULT_EVENT_BATCH_SIZE,
            last_event_upload: None,
        };
        worker.configure(config.clone());
        let thread_stop = stop.clone();
        let thread_status = status.clone();
        threads.push(
            std::thread::Builder::new()
                .name("santad-sync".into())
                .spawn(move || sync_loop(worker, rx, thread_stop, thread_status))?,
        );
        Ok(SyncService {
            handle: Arc::new(SyncHandle {
                tx: Mutex::new(tx),
                status,
                spool,
                tap: tap.clone(),
            }),
            tap,
            stop,
            threads,
        })
    }

    /// Takes up a reloaded config (upload switches at once; the rest on the sync thread).
    pub fn reconfigure(&self, config: &Config) {
        self.tap
            .filter
            .all
            .store(config.sync.enable_all_event_upload, Ordering::Relaxed);
        self.tap
            .filter
            .no_unknown
            .store(config.sync.disable_unknown_event_upload, Ordering::Relaxed);
        self.handle.reconfigure(config);
    }

    /// Stops the threads: the spool writes what is queued; a sync in progress finishes its
    /// current request (bounded by the request timeout) first.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = lock(&self.handle.tx).send(Command::Stop);
        for t in &self.threads {
            t.thread().unpark();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Background work yields to the workers: on Linux, the calling thread's nice value is raised
/// to [`BACKGROUND_NICE`] (a per-thread setting there). Elsewhere nothing changes.
pub fn run_in_background() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority on our own thread id with a valid
    // `which` and value only changes this thread's scheduling weight.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE);
    }
}

/// The sync and spool threads' nice value: a sync of a large rule set (JSON, SQLite, the
/// snapshot) takes the CPU the workers answering execs would want.
pub const BACKGROUND_NICE: i32 = 10;

fn sync_loop(
    mut worker: Worker,
    rx: mpsc::Receiver<Command>,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<SyncStatus>>,
) {
    run_in_background();
    let mut due = Instant::now();
    let mut events_due: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let next = events_due.map_or(due, |e| e.min(due));
        lock(&status).next_sync_secs = Some(due.saturating_duration_since(now).as_secs());
        match rx.recv_timeout(next.saturating_duration_since(now)) {
            Ok(Command::Sync { kind, reply }) => {
                let result = worker.run(kind);
                due = Instant::now() + worker.next_after();
                events_due = None;
                let _ = reply.try_send(result);
            }
            Ok(Command::Reconfigure(config)) => {
                let interval_changed = config.sync.full_sync_interval_secs
                    != worker.config.sync.full_sync_interval_secs;
                worker.configure(*config);
                if interval_changed && worker.failures == 0 {
                    due = Instant::now() + worker.interval();
                }
            }
            Ok(Command::EventsStored) => {
                // Not while syncs fail (the full sync's retry takes them), and at most every
                // EVENT_UPLOAD_GAP.
                if events_due.is_none() && worker.failures == 0 {
                    let first = now + EVENT_UPLOAD_DELAY;
                    let at = worker
                        .last_event_upload
                        .map_or(first, |t| (t + EVENT_UPLOAD_GAP).max(first));
                    events_due = Some(at);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if events_due.is_some_and(|e| e <= Instant::now()) && due > Instant::now() {
                    events_due = None;
                    worker.upload_events();
                    continue;
                }
                if worker.client.is_some() {
                    let _ = worker.run(SyncKind::Normal);
                }
                due = Instant::now() + worker.next_after();
                events_due = None;
            }
            Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}
