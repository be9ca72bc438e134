//! The listeners under test ([`Config`]): starting each one beside the watched image, waiting
//! until it is ready, and stopping it by the pid we started.

use crate::fapolicyd;
use crate::harness::Harness;

/// A configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Config {
    None,
    MinResponder,
    SantadMonitor,
    SantadLockdown,
    SantadNoNotify,
    FapolicydPermissive,
    FapolicydEnforcing,
    FapolicydSha256,
}

impl Config {
    pub(crate) const ALL: [Config; 8] = [
        Config::None,
        Config::MinResponder,
        Config::SantadMonitor,
        Config::SantadLockdown,
        Config::SantadNoNotify,
        Config::FapolicydPermissive,
        Config::FapolicydEnforcing,
        Config::FapolicydSha256,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Config::None => "no listener",
            Config::MinResponder => "minimal responder",
            Config::SantadMonitor => "santad Monitor",
            Config::SantadLockdown => "santad Lockdown (allow rules)",
            Config::SantadNoNotify => "santad Monitor, LogExecNotifications off",
            Config::FapolicydPermissive => "fapolicyd permissive, integrity none",
            Config::FapolicydEnforcing => "fapolicyd enforcing, integrity none",
            Config::FapolicydSha256 => "fapolicyd enforcing, integrity sha256",
        }
    }

    pub(crate) fn key(self) -> &'static str {
        match self {
            Config::None => "none",
            Config::MinResponder => "min",
            Config::SantadMonitor => "santad-monitor",
            Config::SantadLockdown => "santad-lockdown",
            Config::SantadNoNotify => "santad-nonotify",
            Config::FapolicydPermissive => "fapolicyd-permissive",
            Config::FapolicydEnforcing => "fapolicyd-enforcing",
            Config::FapolicydSha256 => "fapolicyd-sha256",
        }
    }
}

// The guard, readiness and santad/min-responder starts are shared with the other exec
// benchmarks (santa_perf::listen).
pub(crate) use santa_perf::listen::Listener;
use santa_perf::listen::{SantadSetup, start_min_responder};

impl Harness {
    pub(crate) fn start(&self, config: Config) -> Result<Option<Listener>, String> {
        match config {
            Config::None => Ok(None),
            Config::MinResponder => start_min_responder(self.watched.path()).map(Some),
            Config::SantadMonitor | Config::SantadLockdown | Config::SantadNoNotify => {
                let dir = self.state.path().join(config.key());
                let setup = SantadSetup {
                    mode: if config == Config::SantadLockdown {
                        "LOCKDOWN"
                    } else {
                        "MONITOR"
                    },
                    watch: self.watched.path().to_path_buf(),
                    dir,
                    transitive: false,
                    log_exec_notifications: config != Config::SantadNoNotify,
                    // Every configuration shares the harness's allow rules for every watched
                    // binary.
                    rules_db: Some(self.rules_db.clone()),
                };
                setup.start().map(Some)
            }
            Config::FapolicydPermissive | Config::FapolicydEnforcing | Config::FapolicydSha256 => {
                fapolicyd::start(config, self.watched.path(), &self.bin_dir).map(Some)
            }
        }
    }
}
