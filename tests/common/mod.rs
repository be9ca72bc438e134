//! A running santad for end-to-end tests, on a private tmpfs it alone watches.
//!
//! Safety: santad's config names only the test's own tmpfs in `WatchPaths`. Dropping the
//! harness kills the santad it started (by that pid, never by name) before the mount guard
//! unmounts; a santad that dies releases every exec it held, so nothing on the host can wedge.
#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries; a failed unwrap is a failed test

pub mod ctl;
pub mod mapping;

use santa_testkit::{PrivateMount, TmpfsOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// How long a test waits for santad to come up or for a log line before failing.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "santad end-to-end tests need root (fanotify permission events); CI runs them as root"
    );
}

/// A santad process watching a private tmpfs.
pub struct Santad {
    child: Option<Child>,
    /// The watched tmpfs: binaries to execute go here.
    pub mount: PrivateMount,
    /// Config, rules database, log and socket live here (not watched).
    pub state: tempfile::TempDir,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub db_path: PathBuf,
    pub socket_path: PathBuf,
    stderr: Receiver<String>,
}

/// Extra TOML lines for the config (after the ones the harness writes).
pub fn start(mode: &str, extra: &str) -> Santad {
    start_with(mode, extra, |_| {})
}

/// santad in Monitor answering with the default after `deadline_ms`, hashing files up to 1 GiB
/// (so a big file is slow to hash rather than refused).
pub fn start_with_deadline(deadline_ms: u64) -> Santad {
    start(
        "MONITOR",
        &format!("DeadlineMs = {deadline_ms}\nMaxHashBytes = 1073741824"),
    )
}

/// Like [`start`], with a chance to prepare the state directory (e.g. a rules database) first.
pub fn start_with(mode: &str, extra: &str, prepare: impl FnOnce(&Path)) -> Santad {
    start_inner(mode, extra, prepare, true)
}

/// santad with its default coverage: every filesystem of the host marked, the backstop loaded.
/// Safety: `extra` must scope Lockdown (`LockdownScope`) to a user only the test's own
/// processes run as; every other exec of the host is answered as in Monitor (allowed unless a
/// block rule, which only the test's own files have), and santad is killed by its pid when the
/// harness drops.
pub fn start_covering(mode: &str, extra: &str) -> Santad {
    assert!(
        mode != "LOCKDOWN" || extra.contains("LockdownScope"),
        "a whole-host Lockdown test must scope Lockdown to its own user"
    );
    start_inner(mode, extra, |_| {}, false)
}

fn start_inner(mode: &str, extra: &str, prepare: impl FnOnce(&Path), watch_paths: bool) -> Santad {
    require_root();
    let mount = PrivateMount::tmpfs(TmpfsOptions {
        size_bytes: 512 << 20,
        exec: true,
    })
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let log_path = state.path().join("santa.log");
    let db_path = state.path().join("rules.db");
    let socket_path = state.path().join("santad.sock");
    let config_path = state.path().join("santad.toml");
    prepare(state.path());
    let watch = if watch_paths {
        format!("WatchPaths = [\"{}\"]\n", mount.path().display())
    } else {
        String::new()
    };
    let config = format!(
        "ClientMode = \"{mode}\"\n{watch}EventLogType = \"file\"\nEventLogPath = \"{}\"\n\
         RulesDbPath = \"{}\"\nControlSocketPath = \"{}\"\nWorkerCount = 2\n{extra}\n",
        log_path.display(),
        db_path.display(),
        socket_path.display()
    );
    std::fs::write(&config_path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_santad"))
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, stderr) = channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            eprintln!("[santad] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut santad = Santad {
        child: Some(child),
        mount,
        state,
        config_path,
        log_path,
        db_path,
        socket_path,
        stderr,
    };
    santad.wait_stderr("santad running");
    santad
}

impl Santad {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let left = WAIT
                .checked_sub(start.elapsed())
                .unwrap_or_else(|| panic!("santad never said {needle:?}"));
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    let status = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    panic!("santad never said {needle:?} (exit status: {status:?})");
                }
            }
        }
    }

    /// The decision log's lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until `count` log lines satisfy `pred`; returns them.
    pub fn wait_log(&self, count: usize, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let start = Instant::now();
        loop {
            let found: Vec<String> = self.log_lines().into_iter().filter(|l| pred(l)).collect();
            if found.len() >= count {
                return found;
            }
            assert!(
                start.elapsed() < WAIT,
                "waited for {count} matching log lines, found {}; log:\n{}",
                found.len(),
                self.log_lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal to our santad.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill with the pid of a child we started and have not reaped yet.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// SIGHUP, then waits until santad has reloaded (a fresh probe exec is logged).
    pub fn reload(&mut self) {
        self.signal(libc::SIGHUP);
        self.wait_stderr_quiet_period();
    }

    fn wait_stderr_quiet_period(&self) {
        // The reload runs on santad's main thread right after the signal; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// SIGTERM and wait for the exit status (the mount stays until the harness drops).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < WAIT, "santad did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Entries in santad's fd table.
    pub fn fd_count(&self) -> usize {
        self.fds().len()
    }

    /// santad's open fds once the table has held still for 200 ms (events still being
    /// processed hold an fd each, so a single sample can catch one in flight).
    pub fn settled_fds(&self) -> Vec<String> {
        let start = Instant::now();
        let mut last = self.fds();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.fds();
            if now == last || start.elapsed() > WAIT {
                return now;
            }
            last = now;
        }
    }

    /// santad's open fds and what they point to.
    pub fn fds(&self) -> Vec<String> {
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| {
                let target = std::fs::read_link(e.path())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                format!("{} -> {target}", e.file_name().to_string_lossy())
            })
            .collect();
        fds.sort();
        fds
    }

    /// Copies an executable onto the watched mount, made distinct by `salt` (appended bytes
    /// change the SHA-256 but not how the ELF runs).
    pub fn binary(&self, name: &str, salt: &str) -> PathBuf {
        let path = self.mount.join(name);
        let mut bytes = std::fs::read(true_binary()).unwrap();
        bytes.extend_from_slice(format!("\nsalt:{salt}\n").as_bytes());
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        settle();
        path
    }

    /// Waits for the log line of process `pid`'s exec with this decision; returns it.
    pub fn logged(&self, pid: i32, decision: &str) -> String {
        let pid = pid.to_string();
        self.wait_log(1, |l| {
            field(l, "pid") == Some(pid.as_str()) && field(l, "decision") == Some(decision)
        })
        .remove(0)
    }

    /// Allows `path`'s current content with a Binary rule in the database, and reloads.
    pub fn allow_binary(&mut self, path: &Path) {
        self.add_rule(
            santa_rules::RuleType::Binary,
            &sha256_hex(path),
            santa_rules::RuleState::Allow,
        );
        self.reload();
    }

    /// Writes a rule into the rules database (santad picks it up on SIGHUP).
    pub fn add_rule(
        &self,
        rule_type: santa_rules::RuleType,
        identifier: &str,
        state: santa_rules::RuleState,
    ) {
        add_rule(&self.db_path, rule_type, identifier, state);
    }
}

impl Drop for Santad {
    fn drop(&mut self) {
        // Before the mount guard unmounts: our santad only, by its pid.
        self.kill9();
    }
}

pub fn add_rule(
    db: &Path,
    rule_type: santa_rules::RuleType,
    identifier: &str,
    state: santa_rules::RuleState,
) {
    let mut store = santa_rules::RuleStore::open(db).unwrap();
    let id = santa_rules::RuleIdentifier::parse(rule_type, identifier).unwrap();
    store
        .apply(
            &[santa_rules::RuleChange::Upsert(santa_rules::Rule::new(
                id, state,
            ))],
            santa_rules::Cleanup::None,
        )
        .unwrap();
}

/// Waits until files changed just now are old enough for santad to cache a decision about them
/// (it never caches one about a file changed within `STAMP_SETTLE_NS`: a rewrite in the same
/// clock tick could keep the stamp).
pub fn settle() {
    std::thread::sleep(Duration::from_nanos(
        santad::identity::STAMP_SETTLE_NS as u64 + 5_000_000,
    ));
}

/// The santactl binary, another package's, found beside santad in the same target directory.
pub fn santactl_path() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_santad")).with_file_name("santactl");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build --bins` (or test with -p santactl too)",
        p.display()
    );
    p
}

/// A small executable that exits 0 (coreutils `true`).
pub fn true_binary() -> &'static Path {
    for p in ["/usr/bin/true", "/bin/true"] {
        if Path::new(p).exists() {
            return Path::new(p);
        }
    }
    panic!("no `true` binary on this machine");
}

pub fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `path`; `Ok(status)` if it ran, `Err` with the OS error if exec was refused.
pub fn run(path: &Path) -> std::io::Result<ExitStatus> {
    Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}

/// Whether `result` is an exec refused with EPERM.
pub fn is_eperm(result: &std::io::Result<ExitStatus>) -> bool {
    matches!(result, Err(e) if e.raw_os_error() == Some(libc::EPERM))
}

/// A log line without Santa's file prefix (`[2024-01-01T00:00:00.000Z] I santad: `).
pub fn body(line: &str) -> &str {
    line.split_once("] I santad: ")
        .map_or(line, |(_, body)| body)
}

/// The value of `key` in a `key=value|…` line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    body(line)
        .split('|')
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// Copies a directory tree (a bundle fixture onto the watched mount).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The devid_app fixture (a real signed app bundle) copied onto `mount`: the bundle and its
/// executable (mode 0755), and the executable's SHA-256 from the fixtures' manifest.
pub fn devid_app_on(mount: &Path) -> (PathBuf, PathBuf, String) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/macho");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest["fixtures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["file"]
                .as_str()
                .is_some_and(|p| p.starts_with("devid_app/"))
        })
        .expect("the manifest lists the devid_app executable");
    let app = mount.join("Mitmproxy Redirector.app");
    copy_tree(&fixtures.join("devid_app/Mitmproxy Redirector.app"), &app);
    let exe = app.join("Contents/MacOS/Mitmproxy Redirector");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    (app, exe, entry["sha256"].as_str().unwrap().to_owned())
}
