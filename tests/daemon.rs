//! santad end to end, as root, each test on its own private tmpfs (see `common`).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::{body, field, is_eperm, run, sha256_hex};
use santa_rules::{RuleState, RuleType};

#[test]
fn lockdown_allows_by_rule_and_denies_unknown_and_blocked() {
    let s = common::start("LOCKDOWN", "");
    let allowed = s.binary("allowed", "a");
    let unknown = s.binary("unknown", "u");
    let blocked = s.binary("blocked", "b");
    s.add_rule(RuleType::Binary, &sha256_hex(&allowed), RuleState::Allow);
    s.add_rule(RuleType::Binary, &sha256_hex(&blocked), RuleState::Block);
    let mut s = s;
    s.reload();

    assert!(run(&allowed).unwrap().success(), "an allowed binary runs");
    assert!(
        is_eperm(&run(&unknown)),
        "Lockdown denies an unknown binary"
    );
    assert!(is_eperm(&run(&blocked)), "a Binary block rule denies");

    let path_of = |l: &str, p: &std::path::Path| field(l, "path") == Some(p.to_str().unwrap());
    let line = &s.wait_log(1, |l| path_of(l, &allowed))[0];
    assert_eq!(field(line, "action"), Some("EXEC"));
    assert_eq!(field(line, "decision"), Some("ALLOW"));
    assert_eq!(field(line, "reason"), Some("BINARY"));
    assert_eq!(field(line, "sha256"), Some(sha256_hex(&allowed).as_str()));
    assert_eq!(field(line, "mode"), Some("L"));
    assert_eq!(field(line, "uid"), Some("0"));
    assert_eq!(field(line, "user"), Some("root"));
    assert_eq!(
        field(line, "ppid"),
        Some(std::process::id().to_string().as_str())
    );

    let line = &s.wait_log(1, |l| path_of(l, &unknown))[0];
    assert_eq!(
        (
            field(line, "decision"),
            field(line, "reason"),
            field(line, "mode")
        ),
        (Some("DENY"), Some("UNKNOWN"), Some("L"))
    );
    assert_eq!(field(line, "sha256"), Some(sha256_hex(&unknown).as_str()));
    let line = &s.wait_log(1, |l| path_of(l, &blocked))[0];
    assert_eq!(
        (field(line, "decision"), field(line, "reason")),
        (Some("DENY"), Some("BINARY"))
    );
    let mut s = s;
    let status = s.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn monitor_allows_and_logs_an_unknown_binary() {
    let s = common::start("MONITOR", "");
    let unknown = s.binary("unknown", "m");
    assert!(run(&unknown).unwrap().success());
    let lines = s.wait_log(1, |l| field(l, "path") == Some(unknown.to_str().unwrap()));
    let line = &lines[0];
    eprintln!("{line}");
    assert!(
        line.starts_with('[')
            && body(line).starts_with("action=EXEC|decision=ALLOW|reason=UNKNOWN|sha256="),
        "Santa's field order: {line}"
    );
    assert_eq!(field(line, "mode"), Some("M"));
    assert_eq!(field(line, "sha256"), Some(sha256_hex(&unknown).as_str()));
}

#[test]
fn path_regexes_scope_decisions() {
    let s = common::start(
        "LOCKDOWN",
        "AllowedPathRegex = \".*/scoped-allow-.*\"\nBlockedPathRegex = \".*/scoped-block-.*\"",
    );
    let allowed = s.binary("scoped-allow-1", "x");
    let blocked = s.binary("scoped-block-1", "y");
    assert!(
        run(&allowed).unwrap().success(),
        "AllowedPathRegex allows in Lockdown"
    );
    assert!(is_eperm(&run(&blocked)), "BlockedPathRegex denies");
    let a = &s.wait_log(1, |l| field(l, "path") == Some(allowed.to_str().unwrap()))[0];
    assert_eq!(
        (field(a, "decision"), field(a, "reason")),
        (Some("ALLOW"), Some("SCOPE"))
    );
    let b = &s.wait_log(1, |l| field(l, "path") == Some(blocked.to_str().unwrap()))[0];
    assert_eq!(
        (field(b, "decision"), field(b, "reason")),
        (Some("DENY"), Some("SCOPE"))
    );
}

#[test]
fn a_file_modified_after_it_was_allowed_is_evaluated_again() {
    let s = common::start("LOCKDOWN", "");
    let bin = s.binary("changing", "v1");
    s.add_rule(RuleType::Binary, &sha256_hex(&bin), RuleState::Allow);
    let mut s = s;
    s.reload();
    assert!(run(&bin).unwrap().success());
    assert!(
        run(&bin).unwrap().success(),
        "second exec: answered by the caches"
    );
    // Rewrite in place (same inode): the kernel drops its ignore mark, santad its cache entry.
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes.extend_from_slice(b"v2");
    std::fs::write(&bin, &bytes).unwrap();
    assert!(
        is_eperm(&run(&bin)),
        "the new content has no allow rule: Lockdown denies"
    );
    let lines = s.wait_log(1, |l| {
        field(l, "decision") == Some("DENY") && field(l, "path") == Some(bin.to_str().unwrap())
    });
    assert_eq!(field(&lines[0], "sha256"), Some(sha256_hex(&bin).as_str()));
}

#[test]
fn a_rule_added_while_running_takes_effect_for_a_cached_binary() {
    let mut s = common::start("MONITOR", "");
    let bin = s.binary("soon-blocked", "r");
    assert!(run(&bin).unwrap().success());
    assert!(
        run(&bin).unwrap().success(),
        "cached allow (kernel ignore mark)"
    );
    s.add_rule(RuleType::Binary, &sha256_hex(&bin), RuleState::Block);
    s.reload();
    assert!(is_eperm(&run(&bin)), "the new block rule applies at once");
}

#[test]
fn a_denied_binary_inside_a_bundle_is_followed_by_bundle_lines() {
    let s = common::start("LOCKDOWN", "");
    let (app, exe, exe_sha) = common::devid_app_on(s.mount.path());
    let exe_sha = exe_sha.as_str();
    // Linux cannot run a Mach-O, but fanotify asks santad when the exec opens the file, before
    // the kernel looks at its format: Lockdown denies the unknown binary.
    assert!(is_eperm(&run(&exe)));
    let line = &s.wait_log(1, |l| field(l, "action") == Some("BUNDLE"))[0];
    // Santa's bundle hash: SHA-256 of the sorted, concatenated lowercase hex SHA-256s of the
    // bundle's executables — here the one executable, whose hash the manifest gives.
    let expected: String = ring::digest::digest(&ring::digest::SHA256, exe_sha.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(field(line, "bundlehash"), Some(expected.as_str()), "{line}");
    assert_eq!(field(line, "sha256"), Some(exe_sha));
    assert_eq!(
        field(line, "bundleid"),
        Some("org.mitmproxy.macos-redirector")
    );
    assert_eq!(field(line, "bundlename"), Some("Mitmproxy Redirector"));
    assert_eq!(field(line, "bundlepath"), Some(app.to_str().unwrap()));
    let deny = &s.wait_log(1, |l| {
        field(l, "action") == Some("EXEC") && field(l, "path") == Some(exe.to_str().unwrap())
    })[0];
    assert_eq!(field(deny, "decision"), Some("DENY"));
    assert!(
        field(deny, "teamid").is_some(),
        "a signed Mach-O's Team ID is logged: {deny}"
    );
}
