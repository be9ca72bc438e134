//! The listeners under test ([`Config`]): starting each one beside the watched image, waiting
//! until it is ready, and stopping it by the pid we started.

use crate::fapolicyd;
use crate::harness::Harness;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A running listener, stopped (SIGTERM, then SIGKILL) by the pid we started.
pub(crate) struct Listener {
    pub(crate) child: Option<Child>,
    pub(crate) cleanup: Option<Box<dyn FnOnce()>>,
}

impl Listener {
    pub(crate) fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The process whose CPU counts: the listener itself, or for a wrapper (`timeout`) its child.
    pub(crate) fn cpu_pid(&self) -> i32 {
        let pid = self.pid();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .filter(|_| self.cleanup.is_some())
            .unwrap_or(pid)
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a child we started and have not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Which piped stream of a listener says it is ready, and the text it prints there.
enum Ready {
    Stdout(&'static str),
    Stderr(&'static str),
}

/// Spawns `command` (its `ready` stream piped) as a listener and waits until it says it is ready.
fn spawn_ready(command: &mut Command, what: &str, ready: Ready) -> Result<Listener, String> {
    let mut child = command.spawn().map_err(|e| format!("{what}: {e}"))?;
    let (stream, needle): (Box<dyn std::io::Read + Send>, _) = match ready {
        Ready::Stdout(needle) => (Box::new(child.stdout.take().ok_or("no stdout")?), needle),
        Ready::Stderr(needle) => (Box::new(child.stderr.take().ok_or("no stderr")?), needle),
    };
    let listener = Listener {
        child: Some(child),
        cleanup: None,
    };
    wait_line(stream, needle)?;
    Ok(listener)
}

/// Waits until the child prints a line containing `needle` on the given stream.
pub(crate) fn wait_line(
    reader: impl std::io::Read + Send + 'static,
    needle: &'static str,
) -> Result<(), String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut signalled = false;
        for line in std::io::BufReader::new(reader)
            .lines()
            .map_while(Result::ok)
        {
            if !signalled && line.contains(needle) {
                let _ = tx.send(());
                signalled = true;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| format!("never printed {needle:?}"))
}

impl Harness {
    fn santad_binary(&self) -> PathBuf {
        sibling("santad")
    }

    pub(crate) fn start(&self, config: Config) -> Result<Option<Listener>, String> {
        match config {
            Config::None => Ok(None),
            Config::MinResponder => {
                let mut command = Command::new(sibling("min-responder"));
                command
                    .arg(self.watched.path())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit());
                spawn_ready(&mut command, "min-responder", Ready::Stdout("ready")).map(Some)
            }
            Config::SantadMonitor | Config::SantadLockdown | Config::SantadNoNotify => {
                let mode = if config == Config::SantadLockdown {
                    "LOCKDOWN"
                } else {
                    "MONITOR"
                };
                let notify = config != Config::SantadNoNotify;
                let dir = self.state.path().join(config.key());
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                let cfg = dir.join("santad.toml");
                std::fs::write(
                    &cfg,
                    format!(
                        "ClientMode = \"{mode}\"\nWatchPaths = [\"{}\"]\nEventLogType = \"file\"\nEventLogPath = \"{}\"\n\
                         RulesDbPath = \"{}\"\nControlSocketPath = \"{}\"\nLogExecNotifications = {notify}\n",
                        self.watched.path().display(),
                        dir.join("santa.log").display(),
                        self.rules_db.display(),
                        dir.join("santad.sock").display()
                    ),
                )
                .map_err(|e| e.to_string())?;
                let mut command = Command::new(self.santad_binary());
                command
                    .arg("--config")
                    .arg(&cfg)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                spawn_ready(&mut command, "santad", Ready::Stderr("santad running")).map(Some)
            }
            Config::FapolicydPermissive | Config::FapolicydEnforcing | Config::FapolicydSha256 => {
                fapolicyd::start(config, self.watched.path(), &self.bin_dir).map(Some)
            }
        }
    }
}

/// A binary built next to this one (target/<profile>/NAME).
pub(crate) fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}
