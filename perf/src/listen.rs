//! The listeners under test, shared by the exec benchmarks (`exec-storm`, `written-exec`,
//! `configure-bench`): a running listener held by the pid we started and stopped when its guard
//! drops (also on a panic or an early return), readiness read from a line it prints, santad and
//! the minimal responder started against a private mount, and a process's CPU time from /proc.
//!
//! Safety (DESIGN.md, "Safety in tests"): every listener started here is pointed at a mount the
//! benchmark created; none is ever given `/` or a mount of the host. Processes are stopped by
//! the pid we started, never by name.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a listener may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a listener may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running listener, stopped (SIGTERM, then SIGKILL) by the pid we started; then its cleanup
/// (fapolicyd: its configuration restored) runs. Both also on drop.
pub struct Listener {
    child: Option<Child>,
    cleanup: Option<Box<dyn FnOnce()>>,
    /// The child is a wrapper (`timeout`) whose own child is the listener.
    wrapped: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("pid", &self.pid())
            .field("wrapped", &self.wrapped)
            .field("cleanup", &self.cleanup.is_some())
            .finish()
    }
}

impl Listener {
    /// Holds `child` (the listener itself).
    pub fn new(child: Child) -> Listener {
        Listener {
            child: Some(child),
            cleanup: None,
            wrapped: false,
        }
    }

    /// Holds `child`, a wrapper (`timeout`) whose first child is the listener, and runs
    /// `cleanup` once it has stopped.
    pub fn wrapped(child: Child, cleanup: Box<dyn FnOnce()>) -> Listener {
        Listener {
            child: Some(child),
            cleanup: Some(cleanup),
            wrapped: true,
        }
    }

    /// The pid we started (0 once stopped).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The process whose CPU counts: the listener itself, or for a wrapper its child.
    pub fn cpu_pid(&self) -> i32 {
        let pid = self.pid();
        if !self.wrapped {
            return pid;
        }
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(pid)
    }

    /// Whether the listener has exited on its own (a crash, or a refusal to start).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL; then the cleanup. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a child we started and have not reaped (its pid is ours).
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < STOP_TIMEOUT {
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
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// A line on stdout containing this text.
    Stdout(&'static str),
    /// A line on stderr containing this text.
    Stderr(&'static str),
}

/// Spawns `command` (its `ready` stream piped) as a listener and waits until it says it is
/// ready; the stream is drained afterwards so the listener never blocks on a full pipe.
pub fn spawn_ready(command: &mut Command, what: &str, ready: Ready) -> Result<Listener, String> {
    let mut child = command.spawn().map_err(|e| format!("{what}: {e}"))?;
    let (stream, needle): (Box<dyn std::io::Read + Send>, _) = match ready {
        Ready::Stdout(needle) => (Box::new(child.stdout.take().ok_or("no stdout")?), needle),
        Ready::Stderr(needle) => (Box::new(child.stderr.take().ok_or("no stderr")?), needle),
    };
    // From here on the guard stops it, also when it never gets ready.
    let listener = Listener::new(child);
    wait_line(stream, needle).map_err(|e| format!("{what}: {e}"))?;
    Ok(listener)
}

/// Waits until `reader` yields a line containing `needle` (at most [`READY_TIMEOUT`]); a thread
/// keeps reading it to the end.
pub fn wait_line(
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
    rx.recv_timeout(READY_TIMEOUT)
        .map_err(|_| format!("never printed {needle:?}"))
}

/// A binary built next to the running one (`target/<profile>/NAME`).
pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The build directory the running binary lives in (`target/`, the parent of
/// `target/<profile>/`): where downloads are cached.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// Starts the minimal responder (`min-responder`, built beside this binary) on the mount at
/// `mount`: it answers allow to every `FAN_OPEN_EXEC_PERM` event there.
pub fn start_min_responder(mount: &Path) -> Result<Listener, String> {
    let mut command = Command::new(sibling("min-responder"));
    command
        .arg(mount)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    spawn_ready(&mut command, "min-responder", Ready::Stdout("ready"))
}

/// The santad settings a benchmark varies; everything else is santad's default.
#[derive(Debug, Clone)]
pub struct SantadSetup {
    /// `ClientMode`: `"MONITOR"` or `"LOCKDOWN"`.
    pub mode: &'static str,
    /// The only path watched (`WatchPaths`): a mount the benchmark created.
    pub watch: PathBuf,
    /// Where its config, log, rules database and control socket go.
    pub dir: PathBuf,
    /// `EnableTransitiveRules`.
    pub transitive: bool,
    /// `LogExecNotifications`.
    pub log_exec_notifications: bool,
    /// `RulesDbPath`, when not `rules.db` in [`SantadSetup::dir`].
    pub rules_db: Option<PathBuf>,
}

impl SantadSetup {
    /// The event log santad writes (`EventLogType = "file"`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("santa.log")
    }

    /// Its control socket, for `santactl --socket`.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("santad.sock")
    }

    /// Its rules database.
    pub fn rules_db(&self) -> PathBuf {
        self.rules_db
            .clone()
            .unwrap_or_else(|| self.dir.join("rules.db"))
    }

    /// The TOML config santad is started with.
    pub fn toml(&self) -> String {
        format!(
            "ClientMode = \"{}\"\nWatchPaths = [\"{}\"]\nEventLogType = \"file\"\nEventLogPath = \"{}\"\n\
             RulesDbPath = \"{}\"\nControlSocketPath = \"{}\"\nLogExecNotifications = {}\n\
             EnableTransitiveRules = {}\n",
            self.mode,
            self.watch.display(),
            self.log_path().display(),
            self.rules_db().display(),
            self.socket_path().display(),
            self.log_exec_notifications,
            self.transitive,
        )
    }

    /// Writes the config into [`SantadSetup::dir`] and starts santad (built beside this binary),
    /// waiting until it says it is running.
    pub fn start(&self) -> Result<Listener, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let config = self.dir.join("santad.toml");
        std::fs::write(&config, self.toml()).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut command = Command::new(sibling("santad"));
        command
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        spawn_ready(&mut command, "santad", Ready::Stderr("santad running"))
    }

    /// `santactl --socket <socket> ARGS...` against the running santad; its stdout, or why it
    /// failed.
    pub fn santactl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(sibling("santactl"))
            .arg("--socket")
            .arg(self.socket_path())
            .args(args)
            .output()
            .map_err(|e| format!("santactl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "santactl {}: {} {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// santad's counters whose names start with one of `prefixes` (`santactl metrics`, the text
/// table: `  name | value`), with their values; empty when santad cannot be asked.
pub fn santad_counters(
    setup: &SantadSetup,
    prefixes: &[&str],
) -> std::collections::BTreeMap<String, u64> {
    let text = setup.santactl(&["metrics"]).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (name, value) = l.split_once('|')?;
            let name = name.trim();
            let value: u64 = value.trim().parse().ok()?;
            prefixes
                .iter()
                .any(|p| name.starts_with(p))
                .then(|| (name.to_string(), value))
        })
        .collect()
}

/// A log line of santad's (`key=value|…`) summed up: `action=…` for anything but an exec, else
/// `decision=…|reason=…`.
pub fn santad_log_key(line: &str) -> String {
    let field = |k: &str| {
        line.split('|')
            .find_map(|f| f.split(' ').next_back().and_then(|f| f.strip_prefix(k)))
            .or_else(|| line.split('|').find_map(|f| f.strip_prefix(k)))
            .unwrap_or("?")
            .to_string()
    };
    let action = field("action=");
    if action == "EXEC" {
        format!(
            "decision={}|reason={}",
            field("decision="),
            field("reason=")
        )
    } else {
        format!("action={action}")
    }
}

/// A process's CPU time so far (all threads), from each task's schedstat, in nanoseconds.
pub fn cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// A process's user + system CPU time so far from /proc/PID/stat (`utime` + `stime`, all
/// threads), in milliseconds (clock-tick resolution, 10 ms here).
pub fn stat_cpu_ms(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 * 1000.0 / ticks as f64)
}
