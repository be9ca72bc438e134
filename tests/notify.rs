//! End to end: santad's block notices reach a real notification server through `santa-notify`.
//! A private session bus (`dbus-daemon` with its own config and socket), a real X server
//! (`Xvfb`) and a real notification server on it (`dunst`), the agent watching root's blocks;
//! `dunstctl` says what dunst showed and `dbus-monitor` what crossed the bus.
//!
//! Needs Debian's `dbus-daemon`, `dbus-bin` (dbus-monitor, dbus-send), `xvfb` and `dunst`
//! (`make deps` installs them): without them the tests fail, saying so.
//!
//! Safety: santad watches only its own private tmpfs (the harness) and holds only the execs
//! these tests make there; every process a test starts is killed by its pid when its guard
//! drops (testkit's `KillOnDrop`), never by name.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

#[path = "common/attacker.rs"]
mod attacker;
mod common;

use attacker::{NOBODY, as_user, exec, user_dir};
use common::ctl::{ctl, ok};
use common::{Santad, WAIT, field, sha256_hex};
use santa_testkit::{KillOnDrop, built_binary};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// Fails the test, saying which package to install, if `program` is not on PATH.
fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
    assert!(
        found,
        "{program} is missing: the desktop-notice tests need Debian's {package} \
         (`make deps` installs it: apt-get install -y dbus-daemon dbus-bin xvfb dunst)"
    );
}

/// Lines of a child's stream, read on a thread (so the pipe never fills) and echoed.
fn lines_of(stream: impl Read + Send + 'static, tag: &'static str) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            eprintln!("[{tag}] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it.
fn wait_line(rx: &Receiver<String>, needle: &str, what: &str) -> String {
    let start = Instant::now();
    loop {
        let left = WAIT
            .checked_sub(start.elapsed())
            .unwrap_or_else(|| panic!("{what} never said {needle:?}"));
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("{what} never said {needle:?} ({e})"),
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "waited for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A desktop session of our own: bus, X server, notification server, bus monitor.
struct Session {
    dir: tempfile::TempDir,
    address: String,
    display: String,
    monitor_log: PathBuf,
    // Dropped in reverse order of start: the monitor, dunst, Xvfb, then the bus.
    _monitor: KillOnDrop,
    _dunst: KillOnDrop,
    _xvfb: KillOnDrop,
    _bus: KillOnDrop,
}

impl Session {
    fn start() -> Session {
        for (program, package) in [
            ("dbus-daemon", "dbus-daemon"),
            ("dbus-monitor", "dbus-bin"),
            ("dbus-send", "dbus-bin"),
            ("Xvfb", "xvfb"),
            ("dunst", "dunst"),
            ("dunstctl", "dunst"),
            ("busctl", "systemd (busctl, which dunstctl history uses)"),
        ] {
            require(program, package);
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        // A session bus for this test alone: its own socket, anyone (root and the user the
        // tests drop to) may talk and own names, and root may monitor.
        std::fs::write(
            &conf,
            format!(
                "<busconfig><type>session</type><listen>unix:path={}</listen>\
                 <auth>EXTERNAL</auth><policy context=\"default\">\
                 <allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>\
                 <allow own=\"*\"/></policy></busconfig>",
                socket.display()
            ),
        )
        .unwrap();
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let bus_lines = lines_of(bus.stdout.take().unwrap(), "dbus-daemon");
        let bus = KillOnDrop(bus);
        let address = wait_line(&bus_lines, "unix:path=", "dbus-daemon");
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "800x600x24",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let x_lines = lines_of(xvfb.stdout.take().unwrap(), "Xvfb");
        let xvfb = KillOnDrop(xvfb);
        let display = format!(":{}", wait_line(&x_lines, "", "Xvfb").trim());
        let dunstrc = dir.path().join("dunstrc");
        // dunst's defaults, but notices stay until closed, so the test decides when they go.
        std::fs::write(&dunstrc, "[urgency_normal]\ntimeout = 0\n").unwrap();
        let dunst = KillOnDrop(
            Command::new("dunst")
                .arg("-conf")
                .arg(&dunstrc)
                .env("DISPLAY", &display)
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let monitor_log = dir.path().join("monitor.log");
        let monitor = KillOnDrop(
            Command::new("dbus-monitor")
                .arg("--address")
                .arg(&address)
                .arg("interface='org.freedesktop.Notifications'")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&monitor_log).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let session = Session {
            dir,
            address,
            display,
            monitor_log,
            _monitor: monitor,
            _dunst: dunst,
            _xvfb: xvfb,
            _bus: bus,
        };
        wait_until("dunst on the bus", || {
            session.dunstctl(&["count", "displayed"]).is_some()
        });
        session
    }

    /// `dunstctl ARGS` on our bus: its stdout, or `None` if it failed.
    fn dunstctl(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("dunstctl")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// How many notices dunst shows now plus how many it showed and closed.
    fn shown(&self) -> usize {
        let count = |which| {
            self.dunstctl(&["count", which])
                .and_then(|s| s.trim().parse::<usize>().ok())
                .unwrap_or(0)
        };
        count("displayed") + count("history")
    }

    /// Closes every displayed notice and returns dunst's history: (summary, body) of each.
    fn history(&self) -> Vec<(String, String)> {
        self.dunstctl(&["close-all"]).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let text = self.dunstctl(&["history"]).expect("dunstctl history");
        let v: Value = serde_json::from_str(&text).unwrap();
        let items = v["data"][0].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .map(|n| {
                let s = |k: &str| n[k]["data"].as_str().unwrap_or_default().to_owned();
                (s("summary"), s("body"))
            })
            .collect()
    }

    /// What dbus-monitor saw so far.
    fn monitored(&self) -> String {
        std::fs::read_to_string(&self.monitor_log).unwrap_or_default()
    }
}

/// A running santa-notify on `session`'s bus, watching root's blocks at santad's socket; URLs
/// it opens are appended to `opened`.
struct Agent {
    lines: Receiver<String>,
    opened: PathBuf,
    _child: KillOnDrop,
}

impl Agent {
    fn start(session: &Session, santad: &Santad) -> Agent {
        let program = built_binary("santa-notify", "test").unwrap_or_else(|e| {
            panic!("{e} (santa-notify is built by `cargo build --bins`, which `make test` runs)")
        });
        let opened = session.dir.path().join("opened");
        let opener = session.dir.path().join("opener");
        std::fs::write(
            &opener,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
                opened.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = Command::new(program)
            .arg("--socket")
            .arg(&santad.socket_path)
            .arg("--opener")
            .arg(&opener)
            .arg("--verbose")
            .env("DBUS_SESSION_BUS_ADDRESS", &session.address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stderr.take().unwrap(), "santa-notify");
        let agent = Agent {
            lines,
            opened,
            _child: KillOnDrop(child),
        };
        wait_line(&agent.lines, "watching uid 0's blocks", "santa-notify");
        agent
    }
}

fn metric(santad: &Santad, name: &str) -> u64 {
    let out = ctl(&santad.socket_path, &["metrics", "--json"]);
    let v: Value = serde_json::from_str(ok(&out)).unwrap();
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no metric {name}: {v:#}"))
}

/// Execs `path` as the calling thread's user and asserts santad denied it.
fn blocked(path: &Path) -> i32 {
    let (outcome, pid) = exec(path);
    assert!(
        outcome.is_eperm(),
        "{} was not blocked: {outcome:?}",
        path.display()
    );
    pid
}

#[test]
fn a_block_reaches_the_notification_server_with_santas_message_and_its_url_opens() {
    let session = Session::start();
    let santad = common::start(
        "LOCKDOWN",
        "UnknownBlockMessage = \"Ask the <b>e2e</b> admins,<br />please\"\n\
         EventDetailURL = \"https://santa.example/blocked/%file_identifier%?user=%username%\"\n\
         EventDetailText = \"Details\"",
    );
    let agent = Agent::start(&session, &santad);
    let tool = santad.binary("unknown-tool", "notify-e2e");
    let sha = sha256_hex(&tool);
    let pid = blocked(&tool);
    let line = santad.logged(pid, "DENY");
    assert_eq!(field(&line, "reason"), Some("UNKNOWN"));
    wait_line(&agent.lines, "shown as notification", "santa-notify");
    wait_until("dunst to show the notice", || session.shown() == 1);
    // The notification server holds a notice whose body is Santa's message (HTML reduced to
    // text), with the file and the reason.
    // Clicking it (dunst's default action) makes the agent open the filled-in URL.
    session.dunstctl(&["action", "0"]).expect("dunstctl action");
    let want_url = format!("https://santa.example/blocked/{sha}?user=root");
    wait_until("the agent to open the URL", || {
        std::fs::read_to_string(&agent.opened).is_ok_and(|s| s.lines().any(|l| l == want_url))
    });
    let history = session.history();
    assert_eq!(history.len(), 1, "{history:?}");
    let (summary, body) = &history[0];
    assert_eq!(summary, "Santa blocked unknown-tool");
    assert!(
        body.starts_with("Ask the e2e admins,\nplease\n\n"),
        "the body is Santa's message: {body:?}"
    );
    assert!(
        body.contains(&format!("Path: {}", tool.display())),
        "{body:?}"
    );
    assert!(body.contains("Reason: No matching rule"), "{body:?}");
    assert!(body.contains(&format!("Identifier: {sha}")), "{body:?}");
    assert!(body.contains(&format!("Process: {pid} ")), "{body:?}");
    // The second witness: the Notify call and the click on the bus.
    let monitored = session.monitored();
    assert!(monitored.contains("member=Notify"), "{monitored}");
    assert!(monitored.contains("Ask the e2e admins,"), "{monitored}");
    assert!(monitored.contains("member=ActionInvoked"), "{monitored}");
    assert!(metric(&santad, "notify.sent") >= 1);
    assert_eq!(metric(&santad, "notify.watchers"), 1);
}

#[test]
fn silent_blocks_and_other_users_blocks_send_no_notice_and_a_restart_is_followed() {
    let session = Session::start();
    let mut santad = common::start("LOCKDOWN", "");
    let agent = Agent::start(&session, &santad);
    // A silent block rule, with a message that must never show.
    let silent = santad.binary("silent-tool", "notify-silent");
    ok(&ctl(
        &santad.socket_path,
        &[
            "rule",
            "--silent-block",
            "--sha256",
            &sha256_hex(&silent),
            "--message",
            "SILENT-MUST-NOT-SHOW",
        ],
    ));
    blocked(&silent);
    // Another user's block (nobody's exec of its own file), with a custom message.
    let dir = user_dir(santad.mount.path(), "nobody", NOBODY);
    let theirs = as_user(NOBODY, || attacker::exe(&dir, "their-tool", "notify-other"));
    ok(&ctl(
        &santad.socket_path,
        &[
            "rule",
            "--block",
            "--sha256",
            &sha256_hex(&theirs),
            "--message",
            "OTHER-USER-MUST-NOT-SHOW",
        ],
    ));
    let their_pid = as_user(NOBODY, || blocked(&theirs));
    let line = santad.logged(their_pid, "DENY");
    assert_eq!(field(&line, "uid"), Some("65534"));
    // Then root's own block: notices arrive in order, so once this one is shown, the two
    // before it would have been too.
    let mine = santad.binary("root-tool", "notify-sentinel");
    ok(&ctl(
        &santad.socket_path,
        &[
            "rule",
            "--block",
            "--sha256",
            &sha256_hex(&mine),
            "--message",
            "root's own block",
        ],
    ));
    blocked(&mine);
    wait_line(&agent.lines, "shown as notification", "santa-notify");
    wait_until("dunst to show the notice", || session.shown() >= 1);
    std::thread::sleep(Duration::from_millis(500));
    let history = session.history();
    assert_eq!(
        history.len(),
        1,
        "only root's own, unsilenced block: {history:?}"
    );
    assert!(
        history[0].1.starts_with("root's own block\n"),
        "{history:?}"
    );
    let monitored = session.monitored();
    assert!(!monitored.contains("MUST-NOT-SHOW"), "{monitored}");
    assert!(metric(&santad, "notify.silenced") >= 1);

    // santad restarts (a new process on the same socket path): the agent reconnects.
    let config = santad.config_path.clone();
    santad.stop();
    wait_line(&agent.lines, "trying again in", "santa-notify");
    let mut child = Command::new(env!("CARGO_BIN_EXE_santad"))
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let santad_lines = lines_of(child.stderr.take().unwrap(), "santad 2");
    let _second = KillOnDrop(child);
    wait_line(&santad_lines, "santad running", "the second santad");
    wait_line(&agent.lines, "watching uid 0's blocks", "santa-notify");
    let again = santad.binary("root-tool-2", "notify-after-restart");
    blocked(&again);
    wait_until("the notice after the restart", || session.shown() >= 2);
    let history = session.history();
    assert!(
        history
            .iter()
            .any(|(s, _)| s == "Santa blocked root-tool-2"),
        "{history:?}"
    );
}

#[test]
fn a_watcher_that_never_reads_loses_notices_but_stalls_nothing_and_users_are_capped() {
    let santad = common::start("LOCKDOWN", "");
    // The state folder (the socket's) reachable by the unprivileged user; the socket is 0666.
    std::fs::set_permissions(santad.state.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's watcher that never reads a byte after the answer.
    let stuck = santa_control::watch_blocks(&santad.socket_path, false, Duration::from_secs(5))
        .expect("watch");
    assert_eq!(stuck.reply.uid, Some(0));
    // An unprivileged user may not watch everyone, and has a few places only.
    let refused = as_user(NOBODY, || {
        santa_control::watch_blocks(&santad.socket_path, true, Duration::from_secs(5))
    });
    assert!(
        matches!(&refused, Err(santa_control::ClientError::Refused(e))
            if e.kind == santa_control::ErrorKind::PermissionDenied),
        "{refused:?}"
    );
    let socket = santad.socket_path.clone();
    let (theirs, fifth) = as_user(NOBODY, move || {
        let theirs: Vec<_> = (0..santad::control::server::WATCHERS_PER_UID_MAX)
            .map(|_| santa_control::watch_blocks(&socket, false, Duration::from_secs(5)).unwrap())
            .collect();
        (
            theirs,
            santa_control::watch_blocks(&socket, false, Duration::from_secs(5)),
        )
    });
    assert!(
        matches!(&fifth, Err(santa_control::ClientError::Refused(e))
            if e.kind == santa_control::ErrorKind::Busy),
        "{fifth:?}"
    );
    // The watchers hold no control handler: santactl is still answered at once.
    let started = Instant::now();
    let _ = ok(&ctl(&santad.socket_path, &["status"]));
    assert!(started.elapsed() < Duration::from_secs(2));

    // Many blocks of root's: more than the socket buffer and the queue hold.
    let tool = santad.binary("looped-tool", "notify-flood");
    let execs = 1500;
    let started = Instant::now();
    for _ in 0..execs {
        blocked(&tool);
    }
    let flood = started.elapsed();
    santad.wait_log(execs, |l| {
        field(l, "decision") == Some("DENY") && l.contains("looped-tool")
    });
    wait_until("notices dropped for the stuck watcher", || {
        metric(&santad, "notify.dropped") > 0
    });
    // Other execs are still answered at once, and a watcher that reads still gets its notices.
    let mut reader =
        santa_control::watch_blocks(&santad.socket_path, false, Duration::from_secs(5)).unwrap();
    let allowed = santad.binary("allowed-tool", "notify-allowed");
    ok(&ctl(
        &santad.socket_path,
        &["rule", "--allow", "--sha256", &sha256_hex(&allowed)],
    ));
    let started = Instant::now();
    let (outcome, _) = exec(&allowed);
    assert!(outcome.ran(), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let last = santad.binary("last-tool", "notify-last");
    blocked(&last);
    let event = reader
        .next_event(&|| false)
        .expect("a notice for the reading watcher");
    assert_eq!(event.path, last.display().to_string());
    assert_eq!(event.uid, 0);
    eprintln!(
        "{execs} blocked execs in {flood:?}; sent {}, dropped {}",
        metric(&santad, "notify.sent"),
        metric(&santad, "notify.dropped")
    );
    assert_eq!(metric(&santad, "log.dropped"), 0, "the logger kept up");
    drop((stuck, theirs));
}
