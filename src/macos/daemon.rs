//! santad's wiring on macOS: the log, the block messenger, the bundle task, the Endpoint
//! Security client, the engine and its responder, the control socket, built from the config,
//! running until SIGTERM or SIGINT (SIGHUP reloads) — what `src/daemon.rs` is on Linux.
//!
//! Type-checked and linted for both Apple targets by `make check-macos`; never linked or run
//! here (see the README's macOS section).

use super::client::{EsClient, RetainedMessage, respond_raw};
use crate::blockmsg::BlockMessenger;
use crate::bundles::BundleTask;
use crate::config::Config;
use crate::control::server::{ControlContext, EngineControl, named_counters};
use crate::identity::Verdict;
use crate::macos::es::{
    self, EsEngine, EsEvaluator, EsMessage, EsResponder, EsShared, IntakeOptions, NewClientError,
};
use crate::setup::StartError;
use endpoint_sec_sys::es_event_type_t;
use santa_hotpath::{Engine, EngineView, ExternalSource, FlushReason, Handle, MonotonicClock};
use santa_rules as rules;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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

type MacEngine = EsEngine<RetainedMessage>;
type Exec = es::EsExec<RetainedMessage>;
type MacHandle = Handle<Exec, Arc<Verdict>>;

/// What the control socket may do to the running engine and Endpoint Security client.
struct MacControl {
    engine: MacHandle,
    client: Arc<EsClient>,
    shared: Arc<EsShared>,
}

impl EngineControl for MacControl {
    fn engine(&self) -> &dyn EngineView<Arc<Verdict>> {
        &*self.engine
    }

    fn flush_platform(&self) -> Result<(), String> {
        self.client.clear_cache().map_err(|e| {
            bump_clear_cache_errors(&self.shared);
            format!("es_clear_cache: {e:?}")
        })
    }

    fn platform_metrics(&self) -> Vec<(String, u64)> {
        named_counters("es", &self.shared.counters)
    }
}

fn bump_clear_cache_errors(shared: &EsShared) {
    shared
        .counters
        .clear_cache_errors
        .fetch_add(1, Ordering::Relaxed);
}

/// Runs santad on macOS until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP.
/// `WatchPaths` and `DeadlineMs` do not apply (ES watches every exec and sets each deadline).
pub fn run(config: Config, config_path: Option<PathBuf>) -> Result<(), MacError> {
    let started = crate::setup::start(&config, config_path.as_deref()).map_err(MacError::Start)?;
    let (policy_engine, log) = (started.policy_engine.clone(), started.log.clone());
    let blocks =
        BlockMessenger::spawn(crate::setup::block_config(&config)).map_err(MacError::Io)?;
    let block_settings = blocks.settings();
    let stop_bundles = Arc::new(AtomicBool::new(false));
    let (bundles, bundle_thread) =
        BundleTask::spawn(log.clone(), stop_bundles.clone()).map_err(MacError::Io)?;
    let bundles_on = bundles.switch();
    bundles_on.store(config.enable_bundles, Ordering::Relaxed);

    let clock = MonotonicClock::new();
    let shared = EsShared::new(
        clock.mach_timebase(),
        IntakeOptions {
            log_notifications: config.log_exec_notifications,
            ignore_other_es_clients: config.ignore_other_endpoint_security_clients,
        },
    );
    // Filled once the engine runs; nothing is subscribed before, so no exec waits on it.
    let handle: Arc<OnceLock<MacHandle>> = Arc::new(OnceLock::new());
    let client = {
        let handle = handle.clone();
        let shared = shared.clone();
        Arc::new(
            EsClient::new(move |client, msg| {
                let answer_now = |m: &RetainedMessage, cache: bool| {
                    if respond_raw(client, m, rules::Action::Allow, cache).is_err() {
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
                        answer_now(&msg, false);
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
    )
    .with_denial_handlers(blocks, bundles);
    let engine: MacEngine = Engine::start(
        crate::setup::engine_config(&config),
        EsEvaluator::new(policy_engine.clone(), config.max_hash_bytes),
        responder,
        clock,
        ExternalSource,
    )
    .map_err(MacError::Io)?;
    let _ = handle.set(engine.handle());
    let subscribed = client
        .mute_self()
        .and_then(|()| client.subscribe(&subscriptions(&config)));
    if let Err(e) = subscribed {
        engine.shutdown();
        client.delete();
        return Err(e);
    }
    if let Err(e) = client.clear_cache() {
        log::warn!("es_clear_cache at start: {e:?}");
    }
    let control = ControlContext::new(
        Arc::new(MacControl {
            engine: engine.handle(),
            client: client.clone(),
            shared: shared.clone(),
        }),
        policy_engine.clone(),
        log.clone(),
        config.clone(),
    );
    let control_server = crate::setup::start_control_server(&control, &config);
    let sync = crate::setup::start_sync(&config, &control, &log);
    let metric_export = crate::setup::start_metrics(&control);
    log::info!(
        "santad running on Endpoint Security: {:?} mode, {} worker(s)",
        config.client_mode,
        engine.workers()
    );

    crate::setup::serve_signals(config, &started, &control, |next, _| {
        bundles_on.store(next.enable_bundles, Ordering::Relaxed);
        block_settings.set(crate::setup::block_config(next));
        if let Some(sync) = &sync {
            sync.reconfigure(next);
        }
        // Both caches: the engine's epoch, then ES's own (allows it cached under the old rules
        // would outlive them).
        engine.flush(FlushReason::Config);
        if let Err(e) = client.clear_cache() {
            bump_clear_cache_errors(&shared);
            log::error!("reload: es_clear_cache: {e:?}");
        }
    });

    if let Some(server) = control_server {
        server.stop();
    }
    if let Some(sync) = sync {
        sync.stop();
    }
    if let Some(export) = metric_export {
        export.stop();
    }
    client.unsubscribe_all();
    engine.shutdown();
    stop_bundles.store(true, Ordering::Release);
    let _ = bundle_thread.join();
    drop(control);
    // Same thread as EsClient::new, after every answer: what es_delete_client requires.
    client.delete();
    let _ = started.logger.stop();
    Ok(())
}
