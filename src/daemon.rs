//! All the wiring in one place: config → rules, log, fanotify, engine; then wait for signals.
//!
//! - SIGTERM / SIGINT: stop reading, let the workers answer everything in flight, close the
//!   group (the kernel releases anything still queued), flush the log, exit 0.
//! - SIGHUP: reload the config and the rules database, publish the new policy and snapshot,
//!   flush both caches (user space epoch and kernel ignore marks), reopen the log.
//! - The control socket (`santactl`) runs on its own threads ([`crate::control::server`]); rule
//!   changes it receives go to the rules database, a new snapshot is published and, when the
//!   store says so, both caches are flushed.
//!
//! If santad dies, the kernel releases every exec it held (fanotify fails open): a crash never
//! wedges the host, and systemd restarts the service.

use crate::blockmsg::BlockMessenger;
use crate::config::{BackstopMode, ClientMode, Config, WatchScope};
use crate::control::server::{ControlContext, EngineControl, named_counters};
use crate::identity::ExecEvaluator;
use crate::identity::Verdict;
use crate::linux::backstop::Backstop;
use crate::linux::coverage::{Coverage, Scope};
use crate::linux::fanotify::{self, Fanotify, InitOptions, MarkScope};
use crate::linux::{BundleTask, ExecEvent, FanotifyResponder, FanotifySource, LeaseLinger, Linux};
use crate::setup::{StartError, block_config, engine_config};
use crate::transitive::TransitiveRules;
use santa_hotpath::{Engine, EngineView, FlushReason, Handle, MonotonicClock};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of each worker's fanotify read buffer: ~40 events of 24 bytes; a read returns what is
/// pending, and a worker must not take more than it can answer quickly (others steal the rest).
const FANOTIFY_BUFFER_BYTES: usize = 1024;

/// Why santad could not start.
#[derive(Debug)]
pub enum DaemonError {
    /// The policy engine or the event log could not be started.
    Start(StartError),
    /// fanotify refused (not root, old kernel, a watch path that does not exist).
    Fanotify(fanotify::Error),
    /// A thread could not be started, or signals could not be set up.
    Io(std::io::Error),
    /// Coverage could not be set up: the mount table, a `LockdownScope` cgroup, or a required
    /// backstop.
    Coverage(String),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Start(e) => write!(f, "{e}"),
            Self::Fanotify(e) => write!(f, "fanotify: {e}"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Coverage(e) => write!(f, "coverage: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

fn watch_mask(config: &Config) -> u64 {
    let mut mask = fanotify::MASK_OPEN_EXEC_PERM | fanotify::MASK_CLOSE_WRITE;
    if config.log_exec_notifications {
        mask |= fanotify::MASK_OPEN_EXEC;
    }
    mask
}

type SantaEngine = Engine<ExecEvent, Arc<Verdict>>;
type SantaHandle = Handle<ExecEvent, Arc<Verdict>>;

/// What the control socket may do to the running engine and fanotify group.
struct DaemonControl {
    engine: SantaHandle,
    linux: Arc<Linux>,
    linger: Arc<LeaseLinger>,
    coverage: Arc<Coverage>,
    backstop: Option<Arc<Backstop>>,
    /// Why there is no backstop, when there is none.
    backstop_absent: String,
    scope: Option<String>,
    transitive: Arc<std::sync::OnceLock<Arc<TransitiveRules>>>,
}

/// What santad prefetches, from its configuration.
fn prefetch_settings(config: &Config) -> crate::linux::PrefetchSettings {
    crate::linux::PrefetchSettings {
        enabled: config.prefetch_new_executables,
        file_bytes_max: config.prefetch_file_bytes_max,
        bytes_per_second: config.prefetch_bytes_per_second,
    }
}

impl EngineControl for DaemonControl {
    fn engine(&self) -> &dyn EngineView<Arc<Verdict>> {
        &*self.engine
    }

    fn flush_platform(&self) -> Result<(), String> {
        self.linux
            .flush_kernel_cache()
            .map_err(|e| format!("flushing the kernel cache: {e}"))
    }

    fn coverage(&self) -> Option<crate::control::CoverageStatus> {
        use crate::control::{BackstopStatus, CoverageStatus, FilesystemStatus};
        use crate::linux::coverage::SbState;
        let report = self.coverage.report();
        let mut watched = Vec::new();
        let mut skipped = Vec::new();
        for sb in &report.superblocks {
            let entry = |reason: Option<String>, gap| FilesystemStatus {
                dev: format!("{}:{}", sb.dev.0, sb.dev.1),
                fs_type: sb.fs_type.clone(),
                mount_point: sb.mount_point.display().to_string(),
                reason,
                gap,
            };
            // A type that cannot hold executables (proc, sysfs, ...) is no gap.
            let typed = crate::linux::mountinfo::skip_reason(&sb.fs_type).is_some();
            match &sb.state {
                SbState::Watched => watched.push(entry(None, false)),
                SbState::Skipped(why) => skipped.push(entry(Some((*why).to_owned()), !typed)),
                SbState::Failed(e) => {
                    skipped.push(entry(Some(format!("mark failed: {e}")), true));
                }
            }
        }
        let backstop = match &self.backstop {
            Some(b) => BackstopStatus {
                state: "active".into(),
                detail: if b.lockdown() {
                    "Lockdown: kills execs from unwatched filesystems and direct loader runs \
                         (in scope)"
                        .into()
                } else {
                    "Monitor: reports execs from unwatched filesystems and direct loader runs"
                        .into()
                },
                counters: b.stats(),
            },
            None => BackstopStatus {
                state: "inactive".into(),
                detail: self.backstop_absent.clone(),
                ..BackstopStatus::default()
            },
        };
        Some(CoverageStatus {
            mode: if report.every_filesystem {
                "every filesystem".into()
            } else {
                "WatchPaths".into()
            },
            watched,
            skipped,
            mount_changes_followed: report.refreshes,
            loaders: report
                .loaders
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            loader_loads: self.linux.counters.loader_loads.load(Ordering::Relaxed),
            backstop,
            lockdown_scope: self.scope.clone(),
            unprivileged_userns: crate::linux::coverage::unprivileged_userns().into(),
            memfd_noexec: crate::linux::coverage::memfd_noexec(),
        })
    }

    fn platform_metrics(&self) -> Vec<(String, u64)> {
        let mut m = named_counters("fanotify", &self.linux.counters);
        m.extend(named_counters("compilers", &self.linux.compilers.counters));
        if let Some(t) = self.transitive.get() {
            m.extend(named_counters("transitive", &t.counters));
        }
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        m.extend([
            ("fanotify.leases_lingering".into(), self.linger.len() as u64),
            (
                "fanotify.lease_linger_overflows".into(),
                get(&self.linger.overflows),
            ),
            (
                "fanotify.lease_linger_kills".into(),
                get(&self.linger.kills),
            ),
            ("engine.deferred_now".into(), self.engine.deferred()),
        ]);
        m
    }
}

/// Runs santad until SIGTERM or SIGINT. `config_path` is re-read on SIGHUP.
pub fn run(config: Config, config_path: Option<PathBuf>) -> Result<(), DaemonError> {
    let started =
        crate::setup::start(&config, config_path.as_deref()).map_err(DaemonError::Start)?;
    let (policy_engine, log) = (started.policy_engine.clone(), started.log.clone());

    let every_filesystem = config.watch_paths.is_empty();
    let scope = config
        .lockdown_scope
        .as_ref()
        .map(Scope::resolve)
        .transpose()
        .map_err(DaemonError::Coverage)?;
    let lockdown = config.client_mode == ClientMode::Lockdown;
    // Loaded before the fanotify group exists, so its fds are the lower ones: if santad dies,
    // the kernel closes them first, and the backstop never outlives the marks it relies on.
    let (backstop, backstop_absent) = if config.backstop == BackstopMode::Off {
        (None, "off (Backstop = \"off\")".to_owned())
    } else if !every_filesystem && scope.is_none() {
        (
            None,
            "off: WatchPaths is set and LockdownScope is not (only the watched mounts are held)"
                .to_owned(),
        )
    } else {
        match Backstop::load(lockdown, &Scope::program_scope(scope.as_ref())) {
            Ok(b) => (Some(Arc::new(b)), String::new()),
            Err(e) if config.backstop == BackstopMode::Required => {
                return Err(DaemonError::Coverage(format!(
                    "Backstop = \"required\" and it cannot be loaded: {e}"
                )));
            }
            Err(e) => {
                log::warn!(
                    "the exec backstop cannot be loaded ({e}): running fanotify-only; execs from \
                     filesystems santad does not mark (user-namespace mounts, memfd) and direct \
                     runs of the dynamic loader are not stopped"
                );
                (None, format!("unavailable: {e}"))
            }
        }
    };
    if config.memfd_noexec && lockdown {
        match crate::linux::coverage::set_memfd_noexec() {
            Ok(()) => log::info!("vm.memfd_noexec = 2: no memfd can be executed"),
            Err(e) => log::warn!("MemfdNoexec: setting vm.memfd_noexec = 2: {e}"),
        }
    }

    let fan = Fanotify::new(InitOptions {
        report_pidfd: false,
        enable_audit: false,
    })
    .map_err(DaemonError::Fanotify)?;
    let mask = watch_mask(&config);
    for watch in &config.watch_paths {
        let scope = match watch.scope {
            WatchScope::Mount => MarkScope::Mount,
            WatchScope::Filesystem => MarkScope::Filesystem,
        };
        fan.add_watch(&watch.path, scope, mask)
            .map_err(DaemonError::Fanotify)?;
        if let Some(b) = &backstop {
            let marked = match watch.scope {
                WatchScope::Mount => {
                    crate::linux::mount_id_of_path(&watch.path).map(|id| b.add_mounts(&[id as i32]))
                }
                WatchScope::Filesystem => std::fs::metadata(&watch.path).ok().map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    b.set_superblocks(&[crate::linux::backstop::kernel_dev_of(m.dev())])
                }),
            };
            if !matches!(marked, Some(Ok(()))) {
                log::warn!(
                    "backstop: cannot tell it {} is watched: its execs are treated as unwatched",
                    watch.path.display()
                );
            }
        }
    }
    let linux = Linux::new(fan);
    let coverage = Coverage::start(
        linux.clone(),
        mask,
        config.ignore_mounts.clone(),
        every_filesystem,
        backstop.clone(),
    )
    .map_err(DaemonError::Coverage)?;

    let stop_bundles = Arc::new(AtomicBool::new(false));
    let (bundles, bundle_thread) =
        BundleTask::spawn(log.clone(), stop_bundles.clone()).map_err(DaemonError::Io)?;
    let bundles_on = bundles.switch();
    bundles_on.store(config.enable_bundles, Ordering::Relaxed);
    let blocks = BlockMessenger::spawn(block_config(&config)).map_err(DaemonError::Io)?;
    let block_settings = blocks.settings();

    let engine_cfg = engine_config(&config);
    let workers = engine_cfg.workers;
    if !crate::linux::leases_available() {
        log::warn!(
            "read leases are not available (fs.leases-enable = 0, or no CAP_LEASE): a file a \
             user can write could be changed between santad's decision and its exec; decisions \
             about such files are not cached"
        );
    }
    let linger = LeaseLinger::spawn(backstop.clone()).map_err(DaemonError::Io)?;
    let responder = Arc::new(FanotifyResponder::new(
        linux.clone(),
        policy_engine.clone(),
        log.clone(),
        workers,
        Some(blocks),
        Some(bundles),
        config.log_exec_notifications,
        linger.clone(),
        scope.clone(),
    ));
    let source = FanotifySource::new(
        linux.clone(),
        policy_engine.clone(),
        responder.clone(),
        workers,
        FANOTIFY_BUFFER_BYTES,
        config.deadline_ms.saturating_mul(1_000_000),
    )
    .map_err(DaemonError::Fanotify)?;
    linux.set_prefetch(prefetch_settings(&config));
    let evaluator = ExecEvaluator::new(policy_engine.clone(), config.max_hash_bytes)
        .with_transitive(linux.transitive.clone());
    let engine: SantaEngine = Engine::start(
        engine_cfg,
        evaluator,
        responder,
        MonotonicClock::new(),
        source,
    )
    .map_err(DaemonError::Io)?;
    linux.set_epoch(engine.epoch());
    let stop_coverage = Arc::new(AtomicBool::new(false));
    let follower = coverage
        .spawn_follower(stop_coverage.clone())
        .map_err(DaemonError::Io)?;
    let reporter = match &backstop {
        Some(b) => {
            let reporter = b
                .spawn_reporter(log.clone(), stop_coverage.clone())
                .map_err(DaemonError::Io)?;
            b.activate()
                .map_err(|e| DaemonError::Coverage(format!("activating the backstop: {e}")))?;
            Some(reporter)
        }
        None => None,
    };
    let transitive_slot = Arc::new(std::sync::OnceLock::new());
    let control = ControlContext::new(
        Arc::new(DaemonControl {
            engine: engine.handle(),
            linux: linux.clone(),
            linger: linger.clone(),
            coverage: coverage.clone(),
            backstop: backstop.clone(),
            backstop_absent,
            scope: scope.as_ref().map(Scope::describe),
            transitive: transitive_slot.clone(),
        }),
        policy_engine.clone(),
        log.clone(),
        config.clone(),
    );
    let transitive = TransitiveRules::new(control.clone(), log.clone(), config.max_hash_bytes);
    let _ = transitive_slot.set(transitive.clone());
    let _ = linux.transitive.set(transitive.clone());
    let stop_housekeeping = Arc::new(AtomicBool::new(false));
    let housekeeping = transitive
        .spawn_housekeeping(stop_housekeeping.clone())
        .map_err(DaemonError::Io)?;
    let reaper = linux
        .compilers
        .spawn_reaper(stop_housekeeping.clone())
        .map_err(DaemonError::Io)?;
    let control_server = crate::setup::start_control_server(&control, &config);
    let sync = crate::setup::start_sync(&config, &control, &log);
    let metric_export = crate::setup::start_metrics(&control);

    let report = coverage.report();
    log::info!(
        "santad running: {:?} mode{}, {} worker(s), watching {}; backstop {}",
        config.client_mode,
        scope
            .as_ref()
            .map_or(String::new(), |s| format!(" for {}", s.describe())),
        workers,
        if every_filesystem {
            format!(
                "every filesystem ({} marked, {} skipped)",
                report
                    .superblocks
                    .iter()
                    .filter(|s| s.state == crate::linux::coverage::SbState::Watched)
                    .count(),
                report
                    .superblocks
                    .iter()
                    .filter(|s| s.state != crate::linux::coverage::SbState::Watched)
                    .count()
            )
        } else {
            format!(
                "{:?}",
                config
                    .watch_paths
                    .iter()
                    .map(|w| w.path.display().to_string())
                    .collect::<Vec<_>>()
            )
        },
        if backstop.is_some() {
            "active"
        } else {
            "inactive"
        }
    );

    crate::setup::serve_signals(config, &started, &control, |next, current| {
        linux.set_prefetch(prefetch_settings(next));
        if let Err(e) = transitive.cull() {
            log::error!("reload: culling transitive rules: {e}");
        }
        reload(&engine, &linux, next, current);
        bundles_on.store(next.enable_bundles, Ordering::Relaxed);
        block_settings.set(block_config(next));
        if let Some(sync) = &sync {
            sync.reconfigure(next);
        }
        if let Some(b) = &backstop
            && let Err(e) = b.set_lockdown(next.client_mode == ClientMode::Lockdown)
        {
            log::error!("reload: backstop mode: {e}");
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
    engine.shutdown();
    stop_housekeeping.store(true, Ordering::Release);
    let _ = housekeeping.join();
    let _ = reaper.join();
    stop_bundles.store(true, Ordering::Release);
    let _ = bundle_thread.join();
    stop_coverage.store(true, Ordering::Release);
    let _ = follower.join();
    if let Some(r) = reporter {
        let _ = r.join();
    }
    // The backstop goes first: without the marks it relies on, it would take every exec for
    // unwatched. Then the last reference closes the group: the kernel releases what is queued.
    drop(control);
    drop(backstop);
    drop(coverage);
    drop(linux);
    let _ = started.logger.stop();
    Ok(())
}

/// SIGHUP: new config, rules and policy ([`crate::setup::reload`]); both caches flushed.
fn reload(engine: &SantaEngine, linux: &Linux, next: &Config, current: &Config) {
    if next.watch_paths != current.watch_paths {
        log::warn!("reload: WatchPaths take effect at the next start");
    }
    engine.flush(FlushReason::Config);
    if let Err(e) = linux.flush_kernel_cache() {
        log::error!("reload: flushing the kernel cache: {e}");
    }
}
