//! What every platform's wiring builds the same way from the config: the rules policy, the
//! engine's bounds, the rules snapshot, the event log, the block messages, and the failsafe list
//! of santad's own binaries.

use crate::blockmsg::MessageConfig;
use crate::config::Config;
#[cfg(any(target_os = "linux", target_os = "macos"))]
use crate::control::server::{ControlContext, ControlServer};
use crate::eventlog::{self, EventLog, LoggerHandle};
use santa_hotpath::EngineConfig;
use santa_rules as rules;
use std::path::Path;
use std::sync::Arc;

/// Cache shards: enough that 2–64 workers rarely meet on one lock.
pub const CACHE_SHARDS: usize = 64;

/// santad's own binaries (santad and santactl beside it): always allowed, the failsafe, so a bad
/// rule cannot lock out the tool that would fix it.
pub fn own_binaries() -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            paths.push(dir.join("santactl").into_os_string().into_encoded_bytes());
        }
        paths.push(exe.into_os_string().into_encoded_bytes());
    }
    paths
}

/// The rules crate's policy from the config, with santad's own binaries as the failsafe.
pub fn policy_config(config: &Config) -> rules::PolicyConfig {
    rules::PolicyConfig {
        mode: config.client_mode,
        enable_bad_signature_protection: config.enable_bad_signature_protection,
        fail_closed: config.fail_closed,
        enable_transitive_rules: config.enable_transitive_rules,
        allowed_path_regex: config.allowed_path_regex.iter().cloned().collect(),
        blocked_path_regex: config.blocked_path_regex.iter().cloned().collect(),
        failsafe_paths: own_binaries(),
        static_rules: config.static_rules.clone(),
        ..rules::PolicyConfig::default()
    }
}

/// The engine's bounds from the config.
pub fn engine_config(config: &Config) -> EngineConfig {
    EngineConfig {
        workers: config.worker_count_resolved(),
        pin_workers: true,
        inflight_max: config.in_flight_slots as usize,
        queue_depth_max: config.queue_depth as usize,
        cache_capacity: config.cache_capacity as usize,
        cache_shards: CACHE_SHARDS,
        deny_ttl_ms: config.deny_cache_ttl_ms,
        idle_spins: 0,
        deadline_thread: true,
        prefetch_queue_depth: config.prefetch_queue_depth as usize,
        // One user's files: at most workers - 1 evaluations and 256 MiB hashed at once.
        ..EngineConfig::default()
    }
}

/// What every platform starts first, in this order: the signals santad handles blocked (before
/// any thread exists, so every thread inherits the mask), the policy engine on the first rules
/// snapshot, then the event log ring and its writer thread.
#[derive(Debug)]
pub struct Started {
    /// Rules, policy and snapshot, published anew on SIGHUP and by the control socket.
    pub policy_engine: Arc<rules::PolicyEngine>,
    /// The ring that responders write decision records into.
    pub log: Arc<EventLog>,
    /// The writer thread draining the ring: reopened on SIGHUP, stopped last.
    pub logger: LoggerHandle,
    /// The configuration file re-read on SIGHUP (`None`: the default lookup).
    pub config_path: Option<std::path::PathBuf>,
    /// SIGTERM, SIGINT and SIGHUP, blocked in every thread and waited for by [`serve_signals`].
    #[cfg(unix)]
    signals: libc::sigset_t,
}

/// Why [`start`] failed.
#[derive(Debug)]
pub enum StartError {
    /// The policy settings do not compile (a bad path regex).
    Policy(rules::PolicyError),
    /// The log file cannot be opened.
    Log(eventlog::OpenError),
    /// The log writer thread could not be started.
    Io(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Policy(e) => write!(f, "policy: {e}"),
            Self::Log(e) => write!(f, "event log {}: {}", e.path.display(), e.source),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Blocks the signals santad handles, then starts the policy engine and the event log from the
/// config (see [`Started`]). `config_path` is the file SIGHUP re-reads.
pub fn start(config: &Config, config_path: Option<&Path>) -> Result<Started, StartError> {
    #[cfg(unix)]
    let signals = block_signals().map_err(StartError::Io)?;
    let policy_engine = Arc::new(rules::PolicyEngine::new(
        load_snapshot(&config.rules_db_path, 1),
        rules::Policy::new(policy_config(config)).map_err(StartError::Policy)?,
    ));
    let log = EventLog::new(config.event_log_ring_size as usize);
    let writer = eventlog::LogWriter::new(eventlog::WriterConfig {
        format: config.event_log_format,
        destination: config.event_log_destination.clone(),
        machine_id: config
            .enable_machine_id_decoration
            .then(|| config.machine_id.clone())
            .flatten(),
    })
    .map_err(StartError::Log)?;
    let logger = eventlog::spawn_logger(log.clone(), writer).map_err(StartError::Io)?;
    Ok(Started {
        policy_engine,
        log,
        logger,
        config_path: config_path.map(Path::to_path_buf),
        #[cfg(unix)]
        signals,
    })
}

/// The block messages' settings from the config, with this host's facts.
pub fn block_config(config: &Config) -> MessageConfig {
    MessageConfig {
        unknown_block_message: config.unknown_block_message.clone(),
        banned_block_message: config.banned_block_message.clone(),
        event_detail_url: config.event_detail_url.clone(),
        event_detail_text: config.event_detail_text.clone(),
        silent_gui: config.enable_silent_mode,
        silent_tty: config.enable_silent_tty_mode,
        machine_id: config.machine_id.clone(),
        ..MessageConfig::default()
    }
    .with_host_facts()
}

/// The main loop once everything runs, until SIGTERM or SIGINT. Each SIGHUP runs [`reload`]
/// (generation 2, 3, …), then `flush_platform(new, old)`, which drops the platform's caches and
/// applies what only it knows of; santad then runs on the new config.
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub fn serve_signals(
    config: Config,
    started: &Started,
    control: &ControlContext,
    mut flush_platform: impl FnMut(&Config, &Config),
) {
    let mut current = config;
    let mut generation = 1;
    loop {
        match wait_signal(&started.signals) {
            Some(libc::SIGHUP) => {
                generation += 1;
                let next = reload(
                    &started.policy_engine,
                    &started.logger,
                    control,
                    &current,
                    started.config_path.as_deref(),
                    generation,
                );
                flush_platform(&next, &current);
                current = next;
            }
            Some(libc::SIGTERM | libc::SIGINT) => break,
            _ => {}
        }
    }
    log::info!("santad stopping: answering everything in flight");
}

/// Waits up to a second for one of the blocked signals; `None` on timeout.
#[cfg(target_os = "linux")]
fn wait_signal(set: &libc::sigset_t) -> Option<i32> {
    let timeout = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    // SAFETY: `set` is an initialised sigset_t; a null siginfo pointer is allowed; `timeout` is
    // a valid timespec for the duration of the call.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
    (sig > 0).then_some(sig)
}

/// Waits for one of the blocked signals (macOS has no `sigtimedwait`; `sigwait` suffices, the
/// loop has nothing else to do).
#[cfg(target_os = "macos")]
fn wait_signal(set: &libc::sigset_t) -> Option<i32> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised; `sig` is a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    (rc == 0).then_some(sig)
}

/// The configuration santad runs on: the file at `path` (or the default lookup, see
/// [`crate::config::load`]) with what a sync server set laid over it
/// ([`crate::sync::state::effective`]).
pub fn load_config(
    path: Option<&Path>,
) -> Result<(Config, crate::config::ConfigSource), crate::config::ConfigError> {
    let (config, source) = crate::config::load(path)?;
    Ok((crate::sync::state::effective(config), source))
}

/// SIGHUP: the config at `path` (or the default lookup), or — if it is bad — the running one,
/// so a typo never stops enforcement.
pub fn reread_config(current: &Config, path: Option<&Path>) -> Config {
    match load_config(path) {
        Ok((next, _)) => next,
        Err(e) => {
            log::error!("reload: {e}; keeping the running configuration");
            current.clone()
        }
    }
}

/// SIGHUP: publishes the policy of `config` (mode, scopes, flags), or keeps the running one if it
/// does not compile.
pub fn publish_policy(policy_engine: &rules::PolicyEngine, config: &Config) {
    match rules::Policy::new(policy_config(config)) {
        Ok(policy) => {
            policy_engine.set_policy(policy);
        }
        Err(e) => log::error!("reload: {e}; keeping the running policy"),
    }
}

/// Loads the rules snapshot; a missing database is created, a corrupt or newer one is reported
/// and left untouched, and santad runs on its configured policy with no rules (never a wipe).
pub fn load_snapshot(path: &Path, generation: u64) -> rules::Snapshot {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match rules::RuleStore::open(path).and_then(|store| store.build_snapshot()) {
        Ok((snapshot, report)) => {
            if report.skipped_count > 0 {
                log::warn!(
                    "rules database {}: {} rows skipped",
                    path.display(),
                    report.skipped_count
                );
            }
            snapshot
        }
        Err(e) => {
            log::error!(
                "rules database {}: {e}; running on the configured mode with no rules",
                path.display()
            );
            rules::Snapshot::empty(generation)
        }
    }
}

/// Starts the control socket for `control` at the configured path. Without it santad still
/// enforces (a control-plane failure must not open the host), so a failure is logged and gives
/// `None`.
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub fn start_control_server(
    control: &Arc<ControlContext>,
    config: &Config,
) -> Option<ControlServer> {
    match ControlServer::start(control.clone(), &config.control_socket_path) {
        Ok(server) => Some(server),
        Err(e) => {
            log::error!("{e}; santactl cannot reach this santad");
            None
        }
    }
}

/// Starts the sync service when `SyncBaseURL` is set, connected to the control socket; the
/// settings a server changes are applied by a SIGHUP santad sends itself (the reload path, which
/// lays the sync state over the config file). Without it santad still enforces, so a failure is
/// logged and gives `None`.
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub fn start_sync(
    config: &Config,
    control: &Arc<ControlContext>,
    log: &EventLog,
) -> Option<crate::sync::SyncService> {
    config.sync.base_url.as_ref()?;
    let reload: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {
        // SAFETY: kill with our own pid and a valid signal number; SIGHUP is blocked in every
        // thread, so it stays pending until the signal loop takes it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGHUP);
        }
    });
    match crate::sync::SyncService::start(config, control.clone(), log, reload) {
        Ok(sync) => {
            control.set_sync(sync.handle.clone());
            Some(sync)
        }
        Err(e) => {
            log::error!("the sync service cannot start: {e}; santad runs without a sync server");
            None
        }
    }
}

/// Starts the metric export thread (`MetricURL`, `MetricExportTextfile`). It idles while
/// neither is set and follows the config in force, so a SIGHUP can turn it on or off. Without
/// it santad still enforces, so a failure is logged and gives `None`.
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub fn start_metrics(control: &Arc<ControlContext>) -> Option<crate::metrics::MetricExport> {
    match crate::metrics::MetricExport::start(control.clone()) {
        Ok(export) => Some(export),
        Err(e) => {
            log::error!("the metric export thread cannot start: {e}; no metrics are exported");
            None
        }
    }
}

/// SIGHUP's steps on every platform: the log reopened; the config re-read (the running one kept
/// if the file is bad); the policy published; the rules snapshot published under the control
/// socket's rules lock, so a concurrent `santactl rule` cannot publish an older snapshot after
/// it (or this one after a newer one). Returns the new config; the platform then flushes its
/// caches (the engine's and the kernel's).
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub fn reload(
    policy_engine: &rules::PolicyEngine,
    logger: &LoggerHandle,
    control: &ControlContext,
    current: &Config,
    config_path: Option<&Path>,
    generation: u64,
) -> Config {
    logger.request_reopen();
    let next = reread_config(current, config_path);
    if next.worker_count != current.worker_count
        || next.control_socket_path != current.control_socket_path
    {
        log::warn!("reload: WorkerCount and ControlSocketPath take effect at the next start");
    }
    publish_policy(policy_engine, &next);
    control.with_rules(|db| {
        db.set_path(&next.rules_db_path);
        policy_engine.publish_snapshot(load_snapshot(&next.rules_db_path, generation));
    });
    control.set_config(next.clone());
    next
}

/// Blocks the signals santad handles (SIGTERM, SIGINT, SIGHUP) in the calling thread — and so
/// in every thread it starts afterwards — and ignores SIGPIPE; returns the set to wait on.
#[cfg(unix)]
fn block_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: `set` is a valid sigset_t, initialised by sigemptyset before use; pthread_sigmask
    // reads it and writes no old mask (null).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        // A closed stdout (the log) must be an error to handle, not a killing signal.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // A writer opening a file while an evaluation holds a read lease on it breaks the
        // lease, which signals the holder with SIGIO (default: terminate). The lease is
        // dropped when the evaluation ends; the signal carries nothing we need.
        libc::signal(libc::SIGIO, libc::SIG_IGN);
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_database_gives_an_empty_snapshot_and_is_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rules.db");
        const GARBAGE: &[u8] = b"this is not an SQLite database, and must not be wiped";
        std::fs::write(&db, GARBAGE).unwrap();
        let snapshot = load_snapshot(&db, 7);
        assert_eq!(snapshot.generation(), 7);
        assert_eq!(snapshot.stats().rules(), 0);
        assert_eq!(std::fs::read(&db).unwrap(), GARBAGE);
    }

    #[test]
    fn policy_follows_the_config() {
        let config = Config {
            client_mode: rules::ClientMode::Lockdown,
            fail_closed: true,
            ..Config::default()
        };
        let p = policy_config(&config);
        assert_eq!(p.mode, rules::ClientMode::Lockdown);
        assert!(p.fail_closed);
        assert!(
            !p.failsafe_paths.is_empty(),
            "santad's own binaries are always allowed"
        );
    }
}
