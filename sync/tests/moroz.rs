//! The client against a real sync server users run: Moroz, built from
//! `../shared/sync-servers/moroz` (its README: Debian's `golang-go`, vendored sources, no
//! network) into this build's target directory, started on loopback with a config folder of its
//! own. A machine that cannot build Moroz fails this test; it does not skip.

mod common;

use common::*;
use santa_sync::SyncKind;
use santa_sync::proto::{ClientMode, Policy, RuleType};
use santa_testkit::moroz::{Moroz, moroz_binary, moroz_events};
use std::path::Path;

/// Moroz, built once under this build's target directory.
fn moroz(configs: &Path, events: &Path) -> Moroz {
    let binary = moroz_binary(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("moroz"));
    Moroz::start(&binary, configs, events)
}

/// The event files Moroz wrote for this machine, parsed.
fn stored_events(dir: &Path) -> Vec<(String, serde_json::Value)> {
    moroz_events(dir, MACHINE)
        .into_iter()
        .map(|(sha, text)| {
            (
                sha,
                serde_json::from_str(&text).expect("Moroz's event file is JSON"),
            )
        })
        .collect()
}

#[test]
fn moroz_sets_mode_and_rules_and_takes_events() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    let events = dir.path().join("events");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(
        configs.join("global.toml"),
        format!(
            r#"client_mode = "LOCKDOWN"
batch_size = 2
enable_transitive_rules = true
full_sync_interval = 900
blocked_path_regex = "^/tmp/blocked/"

[[rules]]
rule_type = "BINARY"
policy = "BLOCKLIST"
identifier = "{}"
custom_msg = "blocked by the fleet"

[[rules]]
rule_type = "TEAMID"
policy = "ALLOWLIST"
identifier = "EQHXZ8M8AV"

[[rules]]
rule_type = "SIGNINGID"
policy = "ALLOWLIST_COMPILER"
identifier = "platform:com.apple.clang"
"#,
            binary(7)
        ),
    )
    .unwrap();
    let moroz = moroz(&configs, &events);
    let mut host = FakeHost::new().with_events(3);

    let report = sync_with(&config_for(&moroz.base_url()), &mut host, SyncKind::Normal)
        .expect("a sync against Moroz");

    assert_eq!(host.facts.client_mode, ClientMode::Lockdown);
    let rules: Vec<(RuleType, Policy, String)> = host.applied[0]
        .rules
        .iter()
        .map(|r| (r.rule_type, r.policy, r.identifier.clone()))
        .collect();
    assert_eq!(
        rules,
        [
            (RuleType::Binary, Policy::Blocklist, binary(7)),
            (RuleType::TeamId, Policy::Allowlist, "EQHXZ8M8AV".into()),
            (
                RuleType::SigningId,
                Policy::AllowlistCompiler,
                "platform:com.apple.clang".into()
            ),
        ]
    );
    assert_eq!(host.applied[0].rules[0].custom_msg, "blocked by the fleet");
    assert_eq!(host.applied[0].kind, SyncKind::Normal);
    let settings = &host.settings[0];
    assert_eq!(settings.batch_size, 2);
    assert_eq!(settings.full_sync_interval_secs, Some(900));
    assert_eq!(settings.enable_transitive_rules, Some(true));
    assert_eq!(
        settings.blocked_path_regex.as_deref(),
        Some("^/tmp/blocked/")
    );
    assert!(
        report.postflight_error.is_none(),
        "{:?}",
        report.postflight_error
    );
    assert_eq!((report.events_uploaded, report.event_batches), (3, 2));
    assert!(host.spool.is_empty());

    // Moroz parsed each event under Santa's names: it files them by file_sha256, and its record
    // carries the decision and the other fields it knows.
    let stored = stored_events(&events);
    assert_eq!(stored.len(), 3, "{stored:?}");
    for (id, (sha, event)) in (1u64..).zip(&stored) {
        assert_eq!(*sha, format!("{id:064x}"));
        assert_eq!(event["file_sha256"], *sha);
        assert_eq!(event["decision"], "BLOCK_UNKNOWN");
        assert_eq!(event["file_name"], format!("tool{id}"));
        assert_eq!(event["file_path"], "/tmp/work");
        assert_eq!(event["executing_user"], "alice");
        assert_eq!(event["pid"], 2222);
        assert_eq!(event["parent_name"], "bash");
    }
}

#[test]
fn moroz_per_machine_config_and_clean_sync() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(configs.join("global.toml"), "client_mode = \"LOCKDOWN\"\n").unwrap();
    std::fs::write(
        configs.join(format!("{MACHINE}.toml")),
        format!(
            "client_mode = \"MONITOR\"\nclean_sync = true\n\n[[rules]]\nrule_type = \"BINARY\"\npolicy = \"REMOVE\"\nidentifier = \"{}\"\n\n[[rules]]\nrule_type = \"CERTIFICATE\"\npolicy = \"BLOCKLIST\"\nidentifier = \"{}\"\n",
            binary(1),
            binary(2)
        ),
    )
    .unwrap();
    let moroz = moroz(&configs, &dir.path().join("events"));
    let mut host = FakeHost::new().with_events(1);
    host.facts.client_mode = ClientMode::Lockdown;

    let report = sync_with(&config_for(&moroz.base_url()), &mut host, SyncKind::Normal)
        .expect("a sync against Moroz");

    assert_eq!(
        host.facts.client_mode,
        ClientMode::Monitor,
        "per-machine file"
    );
    assert_eq!(
        report.settings.sync_kind,
        SyncKind::Clean,
        "Moroz's clean_sync"
    );
    assert_eq!(host.applied[0].kind, SyncKind::Clean);
    assert_eq!(
        host.rule_ids(),
        [binary(2)],
        "REMOVE removed, BLOCKLIST added"
    );
    assert!(report.events_deferred);
    assert_eq!(host.spool.len(), 1, "a clean sync keeps the events");
}
