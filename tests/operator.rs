//! Operator features end to end, each test on its own private tmpfs (see `common`): static rules
//! from the configuration, CEL rules, and `santactl doctor`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

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
