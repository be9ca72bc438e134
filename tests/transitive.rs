//! Transitive rules end to end, in Lockdown with `EnableTransitiveRules`, each test on its own
//! private tmpfs (see `common`): the "compiler" is a copy of coreutils `cp` on the watched mount
//! with an `ALLOWLIST_COMPILER` rule, whose outputs get transitive rules.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ctl::{ctl, json, ok};
use common::{field, is_eperm, run, sha256_hex};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TRANSITIVE: &str = "EnableTransitiveRules = true";
const NO_RULE: &str =
    "No matching rule exists\nExpected Decision: Blocked (Unknown, Lockdown mode)\n";

/// coreutils `cp`.
fn cp_binary() -> &'static Path {
    for p in ["/usr/bin/cp", "/bin/cp"] {
        if Path::new(p).exists() {
            return Path::new(p);
        }
    }
    panic!("no `cp` on this machine");
}

/// A copy of `cp` on the watched mount with a compiler rule (added through santactl).
fn compiler(s: &common::Santad) -> PathBuf {
    let cc = s.mount.join("cc");
    std::fs::copy(cp_binary(), &cc).unwrap();
    common::settle();
    let added = ctl(
        &s.socket_path,
        &["rule", "--compiler", "--path", cc.to_str().unwrap()],
    );
    ok(&added);
    cc
}

/// A distinct small executable outside the watched mount, to be "compiled" onto it.
fn source(s: &common::Santad, salt: &str) -> PathBuf {
    let src = s.state.path().join(format!("src-{salt}"));
    let mut bytes = std::fs::read(common::true_binary()).unwrap();
    bytes.extend_from_slice(format!("\nsalt:{salt}\n").as_bytes());
    std::fs::write(&src, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    src
}

/// Runs the compiler: `cc SRC DEST` writes DEST (mode 0755, as a linker does).
fn compile(cc: &Path, src: &Path, dest: &Path) {
    let status = Command::new(cc)
        .arg(src)
        .arg(dest)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the compiler ran and wrote {}",
        dest.display()
    );
}

fn check(s: &common::Santad, path: &Path) -> String {
    ok(&ctl(
        &s.socket_path,
        &["rule", "--check", "--path", path.to_str().unwrap()],
    ))
    .to_owned()
}

fn metric(s: &common::Santad, name: &str) -> u64 {
    let m = json(&ctl(&s.socket_path, &["metrics", "--format", "json"]));
    let find = |v: &serde_json::Value| -> Option<u64> {
        v.as_object()?.iter().find_map(|(k, v)| {
            (k == name).then(|| v.as_u64()).flatten().or_else(|| {
                v.as_object()
                    .and_then(|o| o.get(name.rsplit_once('.')?.1))
                    .and_then(|v| v.as_u64())
                    .filter(|_| name.starts_with(k.as_str()))
            })
        })
    };
    find(&m).unwrap_or_else(|| panic!("no metric {name} in {m}"))
}

/// Waits until `santactl rule --check` on `path` says `want`.
fn wait_check(s: &common::Santad, path: &Path, want: &str) -> String {
    let start = Instant::now();
    loop {
        let got = check(s, path);
        if got.starts_with(want) {
            return got;
        }
        assert!(
            start.elapsed() < common::WAIT,
            "rule --check of {} still says {got:?}, waiting for {want:?}; metrics: {}",
            path.display(),
            ctl(&s.socket_path, &["metrics", "--format", "json"]).stdout
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a compiler writes runs, by a transitive rule that `santactl rule --check`, the status,
/// the metrics and the log all show; its first exec found the decision made in the background.
#[test]
fn a_file_a_compiler_wrote_runs_by_its_transitive_rule() {
    let s = common::start("LOCKDOWN", TRANSITIVE);
    let cc = compiler(&s);
    let src = source(&s, "built");
    let out = s.mount.join("built");
    compile(&cc, &src, &out);
    let sha = sha256_hex(&out);
    // Made on the close, before any exec.
    let checked = wait_check(&s, &out, "Allowed (Binary, Transitive)");
    assert!(checked.contains("Allowed by rule"), "{checked}");
    let evaluated_before = metric(&s, "engine.cache_misses");
    assert!(run(&out).unwrap().success(), "the compiler's output runs");
    assert_eq!(
        metric(&s, "engine.cache_misses"),
        evaluated_before,
        "the first exec was decided before it came (no evaluation on its path)"
    );
    assert!(metric(&s, "engine.prefetch_evaluations") >= 1);
    let exec = s.wait_log(1, |l| {
        field(l, "action") == Some("EXEC") && field(l, "path") == out.to_str()
    });
    assert_eq!(field(&exec[0], "decision"), Some("ALLOW"), "{}", exec[0]);
    assert_eq!(field(&exec[0], "reason"), Some("TRANSITIVE"), "{}", exec[0]);
    assert_eq!(field(&exec[0], "sha256"), Some(sha.as_str()));
    let made = s.wait_log(1, |l| field(l, "action") == Some("ALLOWLIST"));
    assert_eq!(field(&made[0], "sha256"), Some(sha.as_str()), "{}", made[0]);
    assert_eq!(field(&made[0], "path"), out.to_str(), "{}", made[0]);
    let status = json(&ctl(&s.socket_path, &["status", "--json"]));
    assert_eq!(status["transitive_allowlisting"]["enabled"], true);
    assert_eq!(status["transitive_allowlisting"]["transitive_rules"], 1);
    assert_eq!(status["transitive_allowlisting"]["compiler_rules"], 1);
    // Santa's export leaves transitive rules out.
    let exported = s.state.path().join("export.json");
    ok(&ctl(
        &s.socket_path,
        &["rule", "--export", exported.to_str().unwrap()],
    ));
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(!text.contains(&sha), "{text}");
}

/// The same bytes written by a process that is not a compiler stay unknown and are denied: by
/// the test itself, by `cp` from the unwatched root filesystem (no exec santad saw, so no
/// compiler), and by a compiler whose rule is off (transitive rules disabled).
#[test]
fn a_file_written_by_anything_else_is_denied() {
    let s = common::start("LOCKDOWN", TRANSITIVE);
    let _cc = compiler(&s);
    let src = source(&s, "other");
    let by_test = s.mount.join("by-test");
    std::fs::copy(&src, &by_test).unwrap();
    let by_host_cp = s.mount.join("by-host-cp");
    compile(cp_binary(), &src, &by_host_cp);
    common::settle();
    for f in [&by_test, &by_host_cp] {
        assert!(is_eperm(&run(f)), "{} is denied", f.display());
        assert_eq!(check(&s, f), NO_RULE);
    }
    let line = s.wait_log(1, |l| {
        field(l, "action") == Some("EXEC") && field(l, "path") == by_host_cp.to_str()
    });
    assert_eq!(field(&line[0], "decision"), Some("DENY"), "{}", line[0]);
    assert_eq!(field(&line[0], "reason"), Some("UNKNOWN"), "{}", line[0]);
}

/// A compiler rule with transitive rules off is a plain allow: its outputs get no rule.
#[test]
fn without_transitive_rules_a_compiler_makes_no_rules() {
    let s = common::start("LOCKDOWN", "");
    let cc = compiler(&s);
    let src = source(&s, "off");
    let out = s.mount.join("off");
    compile(&cc, &src, &out);
    common::settle();
    std::thread::sleep(Duration::from_millis(200));
    assert!(is_eperm(&run(&out)), "no transitive rule: denied");
    assert_eq!(check(&s, &out), NO_RULE);
}

/// A transitive rule unused for six 30-day months expires: santad removes it (here at SIGHUP,
/// after its timestamp is moved back in the database) and the file is denied again.
#[test]
fn a_transitive_rule_expires() {
    let mut s = common::start("LOCKDOWN", TRANSITIVE);
    let cc = compiler(&s);
    let src = source(&s, "old");
    let out = s.mount.join("old");
    compile(&cc, &src, &out);
    wait_check(&s, &out, "Allowed (Binary, Transitive)");
    assert!(run(&out).unwrap().success());
    let sha = sha256_hex(&out);
    {
        let db = rusqlite::Connection::open(&s.db_path).unwrap();
        // Written to the database by santad's housekeeping thread, moments after it is made.
        let start = Instant::now();
        let stamp: i64 = loop {
            match db.query_row(
                "SELECT timestamp FROM execution_rules WHERE identifier = ?1 AND state = 6",
                [&sha],
                |r| r.get(0),
            ) {
                Ok(stamp) => break stamp,
                Err(e) => {
                    assert!(start.elapsed() < common::WAIT, "not in the database: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        assert!(stamp > 0, "stamped when made");
        // Used 181 days ago, never since.
        let months_ago = stamp - 181 * 24 * 3600;
        db.execute(
            "UPDATE execution_rules SET timestamp = ?1 WHERE identifier = ?2",
            rusqlite::params![months_ago, sha],
        )
        .unwrap();
    }
    s.reload();
    assert!(is_eperm(&run(&out)), "expired: denied");
    assert_eq!(check(&s, &out), NO_RULE);
    assert_eq!(metric(&s, "transitive.expired"), 1);
    // A rule used within the six months stays.
    let fresh = s.mount.join("fresh");
    compile(&cc, &source(&s, "fresh"), &fresh);
    wait_check(&s, &fresh, "Allowed (Binary, Transitive)");
    s.reload();
    assert!(run(&fresh).unwrap().success(), "a recent rule survives");
}

/// A block rule on the hash wins over its transitive rule, made before or after it: one made
/// after it blocks; one made before it keeps the compiler from adding a transitive rule at all.
#[test]
fn a_block_rule_on_the_same_hash_wins() {
    let s = common::start("LOCKDOWN", TRANSITIVE);
    let cc = compiler(&s);
    let out = s.mount.join("blocked-later");
    compile(&cc, &source(&s, "later"), &out);
    wait_check(&s, &out, "Allowed (Binary, Transitive)");
    assert!(run(&out).unwrap().success());
    ok(&ctl(
        &s.socket_path,
        &["rule", "--block", "--sha256", &sha256_hex(&out)],
    ));
    assert!(is_eperm(&run(&out)), "the block rule wins");
    assert!(check(&s, &out).starts_with("Blocked (Binary)"));

    // Blocked before it is compiled: the block stays, no transitive rule is made.
    let src = source(&s, "earlier");
    ok(&ctl(
        &s.socket_path,
        &["rule", "--block", "--sha256", &sha256_hex(&src)],
    ));
    let out = s.mount.join("blocked-earlier");
    compile(&cc, &src, &out);
    std::thread::sleep(Duration::from_millis(300));
    assert!(is_eperm(&run(&out)), "blocked");
    assert!(check(&s, &out).starts_with("Blocked (Binary)"));
    assert!(metric(&s, "transitive.outputs_with_rules") >= 1);
    assert_eq!(metric(&s, "transitive.rules_added"), 1);
}

/// `ld.bfd` writes its output without an exec bit and adds it after closing the file: an ELF
/// executable is still a compiler's executable output, and the chmod (which moves the file's
/// stamp before the first exec) does not cost it its rule.
#[test]
fn an_elf_chmodded_after_its_close_runs_by_its_rule() {
    use std::os::unix::fs::PermissionsExt;
    let s = common::start("LOCKDOWN", TRANSITIVE);
    let cc = compiler(&s);
    let src = source(&s, "bfd");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.mount.join("bfd");
    compile(&cc, &src, &out);
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ran = run(&out);
    assert!(
        matches!(&ran, Ok(st) if st.success()),
        "the chmodded output runs: {ran:?}; {}; metrics: {}",
        check(&s, &out),
        ctl(&s.socket_path, &["metrics", "--format", "json"]).stdout
    );
    assert!(check(&s, &out).starts_with("Allowed (Binary, Transitive)"));
    // A plain file without an exec bit and without an executable format gets no rule.
    let text = s.state.path().join("notes.txt");
    std::fs::write(&text, b"#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&text, std::fs::Permissions::from_mode(0o644)).unwrap();
    let copied = s.mount.join("notes.txt");
    compile(&cc, &text, &copied);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::set_permissions(&copied, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        is_eperm(&run(&copied)),
        "no rule for a script written without an exec bit"
    );
}
