//! The kernel allow cache, end to end: only files nobody but root can modify get an inode
//! ignore mark; an exec the kernel cache answered is logged with the decision that placed the
//! mark; a root-only file rewritten through a shared mapping (which the kernel does not count
//! as a modification of the mark) is an alert — logged, counted, the mark removed, and the
//! process killed in Lockdown. Each test on its own private tmpfs (see `common`).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::mapping::SharedMap;
use common::{body, field, is_eperm, run, sha256_hex};
use santa_rules::{RuleState, RuleType};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn metrics(socket: &Path) -> serde_json::Value {
    let out = Command::new(common::santactl_path())
        .arg("--socket")
        .arg(socket)
        .args(["metrics", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "santactl metrics: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn metric(socket: &Path, name: &str) -> u64 {
    metrics(socket)[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// Waits for a metric to reach `at_least`.
fn wait_metric(socket: &Path, name: &str, at_least: u64) -> u64 {
    let start = Instant::now();
    loop {
        let v = metric(socket, name);
        if v >= at_least || start.elapsed() > common::WAIT {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A copy of coreutils `sleep` on the mount (distinct by `salt`), so a killed run is visible.
fn sleeper(s: &common::Santad, name: &str, salt: &str) -> PathBuf {
    let path = s.mount.join(name);
    let mut bytes = std::fs::read("/usr/bin/sleep")
        .or_else(|_| std::fs::read("/bin/sleep"))
        .unwrap();
    bytes.extend_from_slice(format!("\nsalt:{salt}\n").as_bytes());
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    common::settle();
    path
}

/// Rewrites the last byte of `path` through a shared mapping (no `write()`: the kernel keeps
/// the ignore mark).
fn rewrite_through_mapping(path: &Path) {
    let mut map = SharedMap::new(path);
    // The salt's trailing newline becomes another byte.
    let last = map.len() - 1;
    map.write(last, b"!");
}

#[test]
fn a_root_only_file_rewritten_through_a_mapping_is_an_alert_and_killed_in_lockdown() {
    let mut s = common::start("LOCKDOWN", "");
    let tool = sleeper(&s, "tool", "alert");
    s.add_rule(RuleType::Binary, &sha256_hex(&tool), RuleState::Allow);
    s.reload();
    let sock = s.socket_path.clone();
    let quick = |p: &Path| {
        Command::new(p)
            .arg("0")
            .stdin(Stdio::null())
            .status()
            .map(|st| st.success())
    };
    // First exec: decided by santad, which gives it to the kernel cache (root-owned, tmpfs).
    assert!(quick(&tool).unwrap());
    assert_eq!(wait_metric(&sock, "fanotify.ignore_marks", 1), 1);
    // Second exec: the kernel answers; santad logs it with the decision that placed the mark.
    assert!(quick(&tool).unwrap());
    assert!(wait_metric(&sock, "fanotify.kernel_cached_execs", 1) >= 1);
    let path = tool.display().to_string();
    let lines = s.wait_log(2, |l| field(l, "path") == Some(path.as_str()));
    for l in &lines {
        assert_eq!(field(l, "decision"), Some("ALLOW"), "{}", body(l));
        assert_eq!(field(l, "reason"), Some("BINARY"), "{}", body(l));
    }

    // Root rewrites it through a mapping: the kernel keeps its mark and lets the next exec
    // run. That exec is an alert, and in Lockdown the process is killed.
    rewrite_through_mapping(&tool);
    let status = Command::new(&tool)
        .arg("30")
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the alerted exec was killed"
    );
    assert!(metric(&sock, "fanotify.kernel_cache_alerts") >= 1);
    assert!(metric(&sock, "fanotify.kernel_cache_kills") >= 1);
    let alert = s.wait_log(1, |l| {
        field(l, "path") == Some(path.as_str())
            && field(l, "explain").is_some_and(|e| e.starts_with("ALERT"))
    });
    assert_eq!(
        field(&alert[0], "decision"),
        Some("ALLOW"),
        "the log says what the kernel applied: {}",
        body(&alert[0])
    );
    // The mark is gone: the changed file is evaluated again, and has no rule.
    assert!(is_eperm(&run(&tool)), "the rewritten file must be denied");
    let denied = s.wait_log(1, |l| {
        field(l, "path") == Some(path.as_str()) && field(l, "decision") == Some("DENY")
    });
    assert_ne!(field(&denied[0], "sha256"), field(&lines[0], "sha256"));
}

#[test]
fn a_file_someone_else_can_modify_is_never_given_to_the_kernel_cache() {
    let mut s = common::start("LOCKDOWN", "");
    let mine = s.binary("mine", "user-owned");
    std::os::unix::fs::chown(&mine, Some(65534), Some(65534)).unwrap();
    let group_writable = s.binary("shared", "group-writable");
    std::os::unix::fs::chown(&group_writable, Some(0), Some(65534)).unwrap();
    std::fs::set_permissions(&group_writable, std::fs::Permissions::from_mode(0o775)).unwrap();
    common::settle();
    for b in [&mine, &group_writable] {
        s.add_rule(RuleType::Binary, &sha256_hex(b), RuleState::Allow);
    }
    s.reload();
    let sock = s.socket_path.clone();
    let before = metric(&sock, "fanotify.permission_events");
    let notifications_before = metric(&sock, "fanotify.notifications");
    for _ in 0..3 {
        assert!(run(&mine).unwrap().success());
        assert!(run(&group_writable).unwrap().success());
    }
    let m = metrics(&sock);
    assert_eq!(m["fanotify.ignore_marks"], 0, "{m}");
    assert!(
        m["fanotify.kernel_cache_refusals"].as_u64().unwrap() >= 2,
        "{m}"
    );
    assert_eq!(
        m["fanotify.permission_events"].as_u64().unwrap() - before,
        6,
        "every exec asked santad: {m}"
    );
    assert!(m["engine.cache_hits"].as_u64().unwrap() >= 4, "{m}");
    // Each of their execs is logged from its permission event; their exec notifications
    // (duplicates) are ignored in the kernel after the first answer.
    assert!(
        m["fanotify.notification_ignores"].as_u64().unwrap() >= 2,
        "{m}"
    );
    assert!(
        m["fanotify.notifications"].as_u64().unwrap() - notifications_before <= 2,
        "notifications still read for files that always ask santad: {m}"
    );
}
