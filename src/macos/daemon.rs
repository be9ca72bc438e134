//! santad's wiring on macOS: the log, the block messenger, the Endpoint Security client, the
//! engine and its responder, built from the config, running until SIGTERM or SIGINT (SIGHUP
//! reloads) — what `src/daemon.rs` is on Linux.
//!
//! NEVER COMPILED on the machines this project is built on (Linux, no Apple target): checked by
//! hand, as `client.rs` is (see the README's macOS section).

use super::client::{EsClient, RetainedMessage, respond_raw};
use crate::blockmsg::BlockMessenger;
use crate::config::Config;
use crate::eventlog::LoggerHandle;
use crate::macos::es::{
    self, EsEngine, EsEvaluator, EsMessage, EsResponder, EsShared, NewClientError,
};
use crate::setup::{StartError, Started};
use endpoint_sec_sys::es_event_type_t;
use santa_hotpath::{Engine, ExternalSource, FlushReason, Handle, MonotonicClock};
use santa_rules as rules;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// Why santad could not start on macOS.
#[derive(Debug)]
pub enum MacError {
    /// `es_new_client` refused (not root, not entitled, no Full Disk Access, too many clients).
    NewClient(NewClientError),
    /// santad's own audit token could not be read (a `kern_return_t`).
    AuditToken(i32),
    /// `es_mute_process` on santad itself failed.
    Mute,
    /// `es_subscribe` failed.
    Subscribe,
    /// The policy engine or the event log could not be started.
    Start(StartError),
    /// A thread could not be started, or signals could not be set up.
    Io(std::io::Error),
}

impl std::fmt::Display for MacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NewClient(e) => write!(f, "Endpoint Security: {e}"),
            Self::AuditToken(kr) => write!(f, "task_info(TASK_AUDIT_TOKEN) failed: {kr}"),
            Self::Mute => f.write_str("Endpoint Security: could not mute santad itself"),
            Self::Subscribe => f.write_str("Endpoint Security: subscribing failed"),
            Self::Start(e) => write!(f, "{e}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for MacError {}

/// The events santad subscribes to: AUTH_EXEC to decide; CLOSE, UNLINK and RENAME to keep the
/// decision cache honest; NOTIFY_EXEC to log execs ES's own cache let through.
fn subscriptions(config: &Config) -> Vec<es_event_type_t> {
    let mut events = vec![
        es_event_type_t::ES_EVENT_TYPE_AUTH_EXEC,
        es_event_type_t::ES_EVENT_TYPE_NOTIFY_CLOSE,
        es_event_type_t::ES_EVENT_TYPE_NOTIFY_UNLINK,
        es_event_type_t::ES_EVENT_TYPE_NOTIFY_RENAME,
    ];
    if config.log_exec_notifications {
        events.push(es_event_type_t::ES_EVENT_TYPE_NOTIFY_EXEC);
    }
    events
}

/// Waits for one of the blocked signals (macOS has no `sigtimedwait`; `sigwait` suffices, the
/// loop has nothing else to do).
fn wait_signal(set: &libc::sigset_t) -> Option<i32> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised; `sig` is a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    (rc == 0).then_some(sig)
}

type MacEngine = EsEngine<RetainedMessage, Arc<EsClient>, MonotonicClock>;
type MacHandle = Handle<
    es::EsExec<RetainedMessage>,
    EsEvaluator,
    EsResponder<Arc<EsClient>>,
    MonotonicClock,
    ExternalSource,
>;

/// Runs santad on macOS until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP.
/// `WatchPaths` and `DeadlineMs` do not apply (ES watches every exec and sets each deadline).
pub fn run(config: Config, config_path: Option<PathBuf>) -> Result<(), MacError> {
    let signals = crate::setup::block_signals().map_err(MacError::Io)?;
    let Started {
        policy_engine,
        log,
        logger,
    } = crate::setup::start(&config).map_err(MacError::Start)?;
    let blocks =
        BlockMessenger::spawn(crate::setup::block_config(&config)).map_err(MacError::Io)?;

    let clock = MonotonicClock::new();
    let shared = EsShared::new(clock.mach_timebase(), config.log_exec_notifications);
    // Filled once the engine runs; nothing is subscribed before, so no exec waits on it.
    let handle: Arc<OnceLock<MacHandle>> = Arc::new(OnceLock::new());
    let client = {
        let handle = handle.clone();
        let shared = shared.clone();
        Arc::new(
            EsClient::new(move |client, msg| {
                let answer_now = |m: &RetainedMessage| {
                    if respond_raw(client, m, rules::Action::Allow, false).is_err() {
                        shared
                            .counters
                            .respond_errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                };
                match handle.get() {
                    Some(h) => {
                        shared.intake(h, msg, answer_now);
                    }
                    None if msg.view().is_auth => {
                        shared.counters.early_auths.fetch_add(1, Ordering::Relaxed);
                        answer_now(&msg);
                    }
                    None => {}
                }
            })
            .map_err(MacError::NewClient)?,
        )
    };
    let responder = EsResponder::new(
        client.clone(),
        shared.clone(),
        policy_engine.clone(),
        log.clone(),
        Some(blocks),
    );
    let engine: MacEngine = Engine::start(
        crate::setup::engine_config(&config),
        EsEvaluator::new(policy_engine.clone(), config.max_hash_bytes),
        responder,
        clock,
        ExternalSource,
    )
    .map_err(MacError::Io)?;
    let _ = handle.set(engine.handle());
    let started = client
        .mute_self()
        .and_then(|()| client.subscribe(&subscriptions(&config)));
    if let Err(e) = started {
        engine.shutdown();
        client.delete();
        return Err(e);
    }
    if let Err(e) = client.clear_cache() {
        log::warn!("es_clear_cache at start: {e:?}");
    }
    log::info!(
        "santad running on Endpoint Security: {:?} mode, {} worker(s)",
        config.client_mode,
        engine.workers()
    );

    crate::setup::serve_signals(
        config,
        || wait_signal(&signals),
        |current, generation| {
            reload(
                &engine,
                &policy_engine,
                &client,
                &shared,
                &logger,
                current,
                config_path.as_deref(),
                generation,
            )
        },
    );

    client.unsubscribe_all();
    engine.shutdown();
    // Same thread as EsClient::new, after every answer: what es_delete_client requires.
    client.delete();
    let _ = logger.stop();
    Ok(())
}

/// SIGHUP: new config, rules and policy; both caches flushed (engine epoch, ES cache); log
/// reopened.
#[allow(clippy::too_many_arguments)]
fn reload(
    engine: &MacEngine,
    policy_engine: &rules::PolicyEngine,
    client: &EsClient,
    shared: &EsShared,
    logger: &LoggerHandle,
    current: Config,
    config_path: Option<&Path>,
    generation: u64,
) -> Config {
    logger.request_reopen();
    let next = crate::setup::reread_config(&current, config_path);
    crate::setup::publish_policy(policy_engine, &next);
    policy_engine.publish_snapshot(crate::setup::load_snapshot(&next.rules_db_path, generation));
    engine.flush(FlushReason::Config);
    if let Err(e) = client.clear_cache() {
        shared
            .counters
            .clear_cache_errors
            .fetch_add(1, Ordering::Relaxed);
        log::error!("reload: es_clear_cache: {e:?}");
    }
    next
}
