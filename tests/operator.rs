//! Operator features end to end, each test on its own private tmpfs (see `common`): static rules
//! from the configuration, CEL rules, and `santactl doctor`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "common/attacker.rs"]
mod attacker;
mod common;
#[path = "common/fork.rs"]
mod fork;

use common::ctl::{ctl, json, ok};
use common::{is_eperm, run, sha256_hex};
use std::io::Write;

/// Appends TOML to santad's configuration file (a table goes last, so nothing follows it).
fn append_config(s: &common::Santad, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&s.config_path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A static block rule decides before the database, shows as static, and neither `santactl rule
/// --remove` nor an allow can change it; taking it out of the configuration (SIGHUP) does.
#[test]
fn a_static_block_rule_cannot_be_removed_with_santactl() {
    let mut s = common::start("MONITOR", "");
    let sock = s.socket_path.clone();
    let bin = s.binary("static-target", "st");
    let path = bin.to_str().unwrap();
    assert!(run(&bin).unwrap().success(), "Monitor, no rule: allowed");
    let original = std::fs::read_to_string(&s.config_path).unwrap();
    append_config(
        &s,
        &format!(
            "\n[[StaticRules]]\nidentifier = \"{}\"\nrule_type = \"BINARY\"\npolicy = \"BLOCKLIST\"\n\
             custom_msg = \"static rule says no\"\n",
            sha256_hex(&bin)
        ),
    );
    s.reload();
    assert!(
        is_eperm(&run(&bin)),
        "the static block applies after SIGHUP"
    );
    let status = json(&ctl(&sock, &["status", "--json"]));
    assert_eq!(status["daemon"]["static_rules"], 1);
    let check = ctl(&sock, &["rule", "--check", "--path", path]);
    assert_eq!(
        ok(&check),
        "Blocked (Binary, Static)\nExpected Decision: Denied by rule\n"
    );

    let removed = ctl(&sock, &["rule", "--remove", "--path", path]);
    assert_ne!(removed.code, 0, "removal refused: {}", removed.stdout);
    assert!(removed.stderr.contains("static rule"), "{}", removed.stderr);
    let allowed = ctl(&sock, &["rule", "--allow", "--path", path]);
    assert_ne!(
        allowed.code, 0,
        "an allow over it refused: {}",
        allowed.stdout
    );
    assert!(allowed.stderr.contains("StaticRules"), "{}", allowed.stderr);
    assert!(is_eperm(&run(&bin)), "still blocked after both attempts");
    // Nothing reached the rules database.
    let exported = s.state.path().join("export.json");
    let export = ctl(&sock, &["rule", "--export", exported.to_str().unwrap()]);
    assert!(
        export.stderr.contains("No rules to export"),
        "{}",
        export.stderr
    );

    std::fs::write(&s.config_path, original).unwrap();
    s.reload();
    assert!(
        run(&bin).unwrap().success(),
        "allowed once the config drops it"
    );
    let status = json(&ctl(&sock, &["status", "--json"]));
    assert_eq!(status["daemon"]["static_rules"], 0);
}

/// Runs `path` as uid/gid `id`.
fn run_as(id: u32, path: &std::path::Path) -> std::io::Result<std::process::ExitStatus> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(path)
        .uid(id)
        .gid(id)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
}

const NOBODY: u32 = 65534;

fn checkcache(sock: &std::path::Path, path: &std::path::Path) -> String {
    ok(&ctl(sock, &["checkcache", path.to_str().unwrap()]))
        .trim()
        .to_owned()
}

/// CEL rules decide by path and by euid, per execution: one file (one inode, two hard links)
/// is allowed by one path and blocked by the other, and by root but not by nobody; such a
/// result is never cached.
#[test]
fn cel_rules_allow_and_block_by_path_and_by_euid_per_execution() {
    let s = common::start("LOCKDOWN", "");
    let sock = &s.socket_path;
    let bin = s.binary("cel-path", "cp");
    std::fs::create_dir(s.mount.join("ok")).unwrap();
    let good = s.mount.join("ok").join("tool");
    std::fs::hard_link(&bin, &good).unwrap();
    let expr = format!(
        "path.startsWith('{}/') ? ALLOWLIST : BLOCKLIST",
        s.mount.join("ok").display()
    );
    let added = ctl(
        sock,
        &["rule", "--cel", &expr, "--path", bin.to_str().unwrap()],
    );
    assert_eq!(
        ok(&added).trim(),
        format!("Added rule for SHA-256: {}.", sha256_hex(&bin))
    );
    for _ in 0..2 {
        assert!(run(&good).unwrap().success(), "allowed by its path");
        assert!(
            is_eperm(&run(&bin)),
            "the same inode, blocked by the other path"
        );
    }
    assert_eq!(checkcache(sock, &bin), "File does not exist in cache");
    let line = s.wait_log(1, |l| {
        l.contains("decision=ALLOW") && l.contains("/ok/tool")
    });
    assert!(line[0].contains("reason=BINARY"), "{}", line[0]);
    let check = ctl(sock, &["rule", "--check", "--sha256", &sha256_hex(&bin)]);
    assert_eq!(ok(&check).trim(), "CEL (Binary)");

    // By euid: root runs it, nobody does not.
    let by_uid = s.binary("cel-euid", "ce");
    ok(&ctl(
        sock,
        &[
            "rule",
            "--cel",
            "euid == 0 ? ALLOWLIST : BLOCKLIST",
            "--path",
            by_uid.to_str().unwrap(),
        ],
    ));
    for _ in 0..2 {
        assert!(run(&by_uid).unwrap().success(), "root");
        assert!(is_eperm(&run_as(NOBODY, &by_uid)), "nobody");
    }
    assert_eq!(checkcache(sock, &by_uid), "File does not exist in cache");
}

/// A result that read only `target` is cached like any rule's; one that read `args` is not
/// (and on Linux `args` cannot be read for a held exec: the evaluation fails, Santa's error
/// path, so the mode decides — Monitor here — and a FailClosed Lockdown would deny).
#[test]
fn a_target_result_is_cached_and_an_args_result_is_not() {
    let s = common::start("MONITOR", "");
    let sock = &s.socket_path;
    let on_target = s.binary("cel-target", "ct");
    ok(&ctl(
        sock,
        &[
            "rule",
            "--cel",
            "target.team_id == '' && !target.is_platform_binary ? BLOCKLIST : ALLOWLIST",
            "--path",
            on_target.to_str().unwrap(),
        ],
    ));
    assert!(is_eperm(&run(&on_target)), "an ELF has no Team ID: blocked");
    assert_eq!(
        checkcache(sock, &on_target),
        "File exists in [blocklist] cache"
    );

    let on_args = s.binary("cel-args", "ca");
    ok(&ctl(
        sock,
        &[
            "rule",
            "--cel",
            "args.exists(a, a == '--evil') ? BLOCKLIST : ALLOWLIST",
            "--path",
            on_args.to_str().unwrap(),
        ],
    ));
    assert!(
        run(&on_args).unwrap().success(),
        "Monitor: no rule, allowed"
    );
    assert_eq!(checkcache(sock, &on_args), "File does not exist in cache");
    let line = s.wait_log(1, |l| {
        l.contains("cel-args") && l.contains("decision=ALLOW")
    });
    assert!(line[0].contains("reason=UNKNOWN"), "{}", line[0]);
}

/// An expression that does not compile is refused when the rule is added, by santactl and, for
/// a client that skips santactl's check, by santad; nothing is stored.
#[test]
fn an_invalid_cel_expression_is_refused_when_added() {
    let s = common::start("MONITOR", "");
    let sock = &s.socket_path;
    let bin = s.binary("cel-bad", "cb");
    for bad in ["this is not CEL", "nosuchvar == 1", "target.nope == 'x'"] {
        let out = ctl(
            sock,
            &["rule", "--cel", bad, "--path", bin.to_str().unwrap()],
        );
        assert_eq!(out.code, 2, "{bad}: {}", out.stderr);
        assert!(
            out.stderr.contains("invalid CEL expression"),
            "{}",
            out.stderr
        );
    }
    // Straight to the socket, as a client that does not check.
    let spec = santa_control::RuleSpec {
        cel_expr: Some("nosuchvar == 1".into()),
        ..santa_control::RuleSpec::new(
            sha256_hex(&bin),
            "BINARY".into(),
            santa_rules::RuleState::Cel.db_value(),
        )
    };
    let reply = santa_control::ask(
        sock,
        &santa_control::Request::ApplyRules {
            rules: vec![spec],
            cleanup: santa_control::CleanupSpec::None,
        },
        std::time::Duration::from_secs(10),
    );
    let err = reply.expect_err("refused");
    assert!(err.contains("invalid CEL expression"), "{err}");
    let export = ctl(
        sock,
        &[
            "rule",
            "--export",
            s.state.path().join("x.json").to_str().unwrap(),
        ],
    );
    assert!(
        export.stderr.contains("No rules to export"),
        "{}",
        export.stderr
    );
}

/// `santactl doctor` as a script sees it: exit status and JSON.
fn doctor(sock: &std::path::Path) -> (i32, serde_json::Value, String) {
    let out = ctl(sock, &["doctor", "--json"]);
    let v = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", out.stdout, out.stderr));
    let text = ctl(sock, &["doctor"]);
    (out.code, v, text.stdout + &text.stderr)
}

fn state_of<'v>(v: &'v serde_json::Value, name: &str) -> &'v str {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {v}"))["state"]
        .as_str()
        .unwrap()
}

/// A Lockdown santad that watches only its test tmpfs leaves every other filesystem uncovered:
/// doctor fails, names the gap, and exits 1.
#[test]
fn doctor_fails_on_a_host_with_a_coverage_gap() {
    let s = common::start("LOCKDOWN", "FailClosed = true");
    let (code, v, text) = doctor(&s.socket_path);
    eprintln!("{text}");
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["protected"], false);
    assert_eq!(state_of(&v, "coverage"), "fail", "{v}");
    assert_eq!(state_of(&v, "backstop"), "fail", "{v}");
    assert!(
        text.contains("every filesystem outside WatchPaths"),
        "{text}"
    );
    assert!(text.contains("not protected"), "{text}");
    assert!(text.contains("FAIL  coverage"), "{text}");
    for fine in [
        "fail_closed",
        "rules_db",
        "log",
        "sync",
        "clock",
        "defaults",
        "mode",
    ] {
        assert_eq!(state_of(&v, fine), "ok", "{fine}: {v}");
    }
}

/// Every filesystem watched and the backstop loaded (Lockdown scoped to a test-only user, so
/// nothing else on the host is held): doctor passes, exit 0, with the scope as a warning.
#[test]
fn doctor_passes_on_a_covered_host() {
    let s = common::start_covering(
        "LOCKDOWN",
        "FailClosed = true\nLockdownScope = { Users = [64713] }",
    );
    let (code, v, text) = doctor(&s.socket_path);
    eprintln!("{text}");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["protected"], true);
    // A filesystem whose every mount point another mount covers cannot be marked; the
    // backstop kills its execs, which doctor reports as a warning, not a failure.
    assert_ne!(state_of(&v, "coverage"), "fail", "{v}");
    assert_eq!(state_of(&v, "backstop"), "ok", "{v}");
    assert_eq!(state_of(&v, "lockdown_scope"), "warn");
    assert!(
        text.contains("This host is protected as configured."),
        "{text}"
    );
}

/// `cwd` is read only for a process in santad's mount namespace: in a namespace of its own a
/// process (a user, with a user namespace) can mount a directory where a rule expects one, and
/// `/proc/PID/cwd` would name it. There the evaluation fails (Santa's error path: no rule).
/// Every filesystem is watched (a mount namespace's copies of the test's tmpfs included), in
/// Monitor, so only the log tells the outcomes apart.
#[test]
fn cel_cwd_from_another_mount_namespace_is_not_believed() {
    use fork::{bind, cstr, enter_userns, execve, fork_attempt_after, mount_tmpfs};
    let s = common::start_covering("MONITOR", "");
    let sock = &s.socket_path;
    let bin = s.binary("cel-cwd", "cw");
    let trusted = s.mount.join("ci");
    let fake = s.mount.join("fake");
    std::fs::create_dir(&trusted).unwrap();
    std::fs::create_dir(&fake).unwrap();
    let expr = format!("cwd == '{}' ? ALLOWLIST : BLOCKLIST", trusted.display());
    ok(&ctl(
        sock,
        &["rule", "--cel", &expr, "--path", bin.to_str().unwrap()],
    ));
    let mut from_trusted = std::process::Command::new(&bin)
        .current_dir(&trusted)
        .spawn()
        .unwrap();
    let pid = from_trusted.id() as i32;
    assert!(from_trusted.wait().unwrap().success());
    assert!(s.logged(pid, "ALLOW").contains("reason=BINARY"));
    assert!(
        is_eperm(&run(&bin)),
        "from another directory the rule blocks"
    );

    let (bin_c, fake_c, trusted_c) = (cstr(&bin), cstr(&fake), cstr(&trusted));
    let (attempt, pid) = fork_attempt_after(
        || {
            enter_userns("0 0 1")?;
            mount_tmpfs(&fake_c, 6)?;
            bind(&fake_c, &trusted_c, 7)?;
            // SAFETY: chdir with a valid C string, in the single-threaded child.
            if unsafe { libc::chdir(trusted_c.as_ptr()) } != 0 {
                return Err((8, fork::errno()));
            }
            Ok(())
        },
        || execve(&bin_c, &[], 9),
    );
    assert!(matches!(attempt, fork::Attempt::Ran(0)), "{attempt:?}");
    let line = s.logged(pid, "ALLOW");
    assert!(
        line.contains("reason=UNKNOWN"),
        "the rule must not have matched the faked cwd: {line}"
    );
}
