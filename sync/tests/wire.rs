//! The client's JSON checked field by field against Santa's proto (northpolesec/protos
//! `sync/v1.proto`), not against this crate's structs: each expected key below is written by hand
//! from the proto — its `json_name` where it sets one, protobuf's lowerCamelCase name where it
//! does not — and each answer below is written by hand in the shapes real servers send.

mod common;

use common::*;
use santa_sync::proto::{self, Certificate, ClientMode, Decision, Entitlement, EntitlementInfo};
use santa_sync::proto::{Policy, RuleType, SigningStatus};
use santa_sync::{PendingEvent, RuleCounts, SyncKind};
use serde_json::Value;
use std::collections::BTreeSet;

/// `santa.sync.v1.PreflightRequest`: the JSON name of every field santad sets.
const PREFLIGHT_REQUEST: &[&str] = &[
    "serial_num",
    "hostname",
    "os_version",
    "os_build",
    "model_identifier",
    "santa_version",
    "primary_user",
    "primary_user_groups",
    "client_mode",
    "request_clean_sync",
    "binary_rule_count",
    "certificate_rule_count",
    "compiler_rule_count",
    "transitive_rule_count",
    "teamid_rule_count",
    "signingid_rule_count",
    "cdhash_rule_count",
    "machine_id",
    "rulesHash",
];

/// `santa.sync.v1.Event`: the JSON name of every field santad sets.
const EVENT: &[&str] = &[
    "file_sha256",
    "file_path",
    "file_name",
    "executing_user",
    "execution_time",
    "logged_in_users",
    "current_sessions",
    "decision",
    "file_bundle_id",
    "file_bundle_path",
    "file_bundle_executable_rel_path",
    "file_bundle_name",
    "file_bundle_version",
    "file_bundle_version_string",
    "file_bundle_hash",
    "file_bundle_hash_millis",
    "file_bundle_binary_count",
    "pid",
    "ppid",
    "parent_name",
    "team_id",
    "signing_id",
    "cdhash",
    "quarantine_data_url",
    "quarantine_referer_url",
    "quarantine_timestamp",
    "quarantine_agent_bundle_id",
    "signing_chain",
    "entitlementInfo",
    "csFlags",
    "signingStatus",
    "secureSigningTime",
    "signingTime",
    "static_rule",
];

/// `santa.sync.v1.PostflightRequest`: the JSON name of every field.
const POSTFLIGHT_REQUEST: &[&str] = &[
    "rules_received",
    "rules_processed",
    "machine_id",
    "syncType",
    "rulesHash",
];

/// Asserts `message` is a JSON object with exactly the keys `expected`.
fn assert_keys(message: &Value, expected: &[&str]) {
    let keys: BTreeSet<&str> = message
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, expected.iter().copied().collect(), "{message}");
}

/// An event with every field of `santa.sync.v1.Event` set.
fn full_event() -> proto::Event {
    proto::Event {
        file_sha256: "fb2c6a695f556367f141f0c069695078c5e35e9154de35cb0fbd017af5be194e".into(),
        file_path: "/usr/bin".into(),
        file_name: "yes".into(),
        executing_user: "foo".into(),
        execution_time: 1_751_111_111.5,
        logged_in_users: vec!["foo".into(), "bar".into()],
        current_sessions: vec!["foo@console".into()],
        decision: Decision::BlockBinary,
        file_bundle_id: "com.example.app".into(),
        file_bundle_path: "/Applications/Example.app".into(),
        file_bundle_executable_rel_path: "Contents/MacOS/Example".into(),
        file_bundle_name: "Example".into(),
        file_bundle_version: "12".into(),
        file_bundle_version_string: "1.2".into(),
        file_bundle_hash: "ab".repeat(32),
        file_bundle_hash_millis: 15,
        file_bundle_binary_count: 3,
        pid: 2222,
        ppid: 1,
        parent_name: "launchd".into(),
        team_id: "EQHXZ8M8AV".into(),
        signing_id: "EQHXZ8M8AV:com.example.app".into(),
        cdhash: "e6088e2df9163416c1d66a0c0bc74dfe34419fa7".into(),
        quarantine_data_url: "https://example.com/x.dmg".into(),
        quarantine_referer_url: "https://example.com/".into(),
        quarantine_timestamp: 1_700_000_000,
        quarantine_agent_bundle_id: "com.google.Chrome".into(),
        signing_chain: vec![Certificate {
            sha256: "d8".repeat(32),
            cn: "Software Signing".into(),
            org: "Apple Inc.".into(),
            ou: "Apple Software".into(),
            valid_from: 1_603_996_358,
            valid_until: 1_792_863_581,
        }],
        entitlement_info: Some(EntitlementInfo {
            entitlements_filtered: Some(false),
            entitlements: vec![Entitlement {
                key: Some("com.apple.security.get-task-allow".into()),
                value: Some("true".into()),
            }],
        }),
        cs_flags: 0x2200_0001,
        signing_status: SigningStatus::Production,
        secure_signing_time: 1_700_000_001,
        signing_time: 1_700_000_002,
        static_rule: true,
    }
}

#[test]
fn every_request_uses_santas_json_names() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..3));
    server.knobs(|k| k.page_size = Some(2));
    let mut host = FakeHost::new();
    host.spool.push(PendingEvent {
        id: 1,
        event: full_event(),
    });
    host.counts = Some(RuleCounts {
        binary: 1,
        certificate: 2,
        compiler: 3,
        transitive: 4,
        teamid: 5,
        signingid: 6,
        cdhash: 7,
    });
    let mut config = config_for(&server.base_url());
    config.upload_events_in_clean_sync = true;
    sync_with(&config, &mut host, SyncKind::Clean).unwrap();

    let preflight = &server.requests_for("preflight")[0].body;
    assert_keys(preflight, PREFLIGHT_REQUEST);
    assert_eq!(preflight["client_mode"], "MONITOR");
    assert_eq!(preflight["serial_num"], "QYGF4QM373");
    assert_eq!(preflight["cdhash_rule_count"], 7);
    assert_eq!(preflight["request_clean_sync"], true);
    assert_eq!(
        preflight["primary_user_groups"],
        serde_json::json!(["staff"])
    );
    assert_eq!(preflight["rulesHash"].as_str().unwrap().len(), 32);

    let upload = &server.requests_for("eventupload")[0].body;
    assert_keys(upload, &["events", "machine_id"]);
    let event = &upload["events"][0];
    assert_keys(event, EVENT);
    assert_eq!(event["decision"], "BLOCK_BINARY");
    assert_eq!(event["signingStatus"], "SIGNING_STATUS_PRODUCTION");
    assert_eq!(event["execution_time"], 1_751_111_111.5);
    assert_eq!(event["pid"], 2222);
    assert_keys(
        &event["signing_chain"][0],
        &["sha256", "cn", "org", "ou", "valid_from", "valid_until"],
    );
    assert_keys(
        &event["entitlementInfo"],
        &["entitlementsFiltered", "entitlements"],
    );
    assert_keys(
        &event["entitlementInfo"]["entitlements"][0],
        &["key", "value"],
    );

    let pages = server.requests_for("ruledownload");
    assert_keys(&pages[0].body, &["machine_id"]);
    assert_keys(&pages[1].body, &["cursor", "machine_id"]);

    let postflight = &server.requests_for("postflight")[0].body;
    assert_keys(postflight, POSTFLIGHT_REQUEST);
}

#[test]
fn fields_at_their_default_are_left_out_as_santa_leaves_them_out() {
    let server = server_with("client_mode = \"MONITOR\"\n");
    let mut host = FakeHost::new();
    host.facts = santa_sync::HostFacts::default();
    host.spool.push(PendingEvent {
        id: 1,
        event: proto::Event {
            file_sha256: "aa".repeat(32),
            decision: Decision::AllowUnknown,
            ..Default::default()
        },
    });
    sync(&server, &mut host, SyncKind::Normal).unwrap();
    // An empty rule set still has a hash (XXH3-128 of nothing).
    assert_keys(
        &server.requests_for("preflight")[0].body,
        &["machine_id", "rulesHash"],
    );
    assert_keys(
        &server.requests_for("eventupload")[0].body["events"][0],
        &["file_sha256", "decision"],
    );
    assert_keys(
        &server.requests_for("postflight")[0].body,
        &["machine_id", "syncType", "rulesHash"],
    );
}

#[test]
fn hand_written_answers_with_numbers_aliases_nulls_and_unknown_fields_are_read() {
    let server = server_with("");
    server.knobs(|k| {
        k.canned.insert(
            "preflight".into(),
            // lowerCamelCase as a protobuf server prints, enums as numbers, a number as a string,
            // a field this client has never heard of.
            r#"{"clientMode":2,"syncType":3,"batchSize":"10","enableBundles":true,
                "full_sync_interval":600,"blockedPathRegex":null,"pushToken":"",
                "removableMediaPolicy":{"block":true},"someFutureField":[1,{"x":2}]}"#
                .into(),
        );
        k.canned.insert(
            "ruledownload".into(),
            // The shapes of Santa's own fixtures: snake_case, deprecated `sha256`, old policy
            // names, a rule with an unknown policy that must be dropped.
            r#")]}'
{"rules":[
 {"rule_type":"BINARY","policy":"BLACKLIST","sha256":"ee382e199f7eda58863a93a7854b930ade35798bc6856ee8e6ab6ce9277f0eab","custom_msg":""},
 {"ruleType":2,"policy":1,"identifier":"46f8c706d0533a54554af5fc163eea704f10c08b30f8a5db12bfdc04fb382fc3"},
 {"rule_type":"SIGNINGID","policy":"SEATBELT","identifier":"platform:com.apple.yes"},
 {"rule_type":"TEAMID","policy":"WHITELIST_COMPILER","identifier":"AAAAAAAAAA","customMsg":"hi"}
],"cursor":""}"#
                .into(),
        );
        k.canned.insert("postflight".into(), r#"{"NoOp":{}}"#.into());
    });
    let mut host = FakeHost::new();
    let report = sync(&server, &mut host, SyncKind::Normal).unwrap();
    assert_eq!(host.facts.client_mode, ClientMode::Lockdown);
    assert_eq!(report.settings.sync_kind, SyncKind::CleanAll);
    assert_eq!(report.settings.batch_size, 10);
    assert_eq!(report.settings.full_sync_interval_secs, Some(600));
    assert_eq!(report.settings.enable_bundles, Some(true));
    assert_eq!(report.settings.blocked_path_regex, None);
    assert_eq!((report.rules_received, report.rules_dropped), (4, 1));
    let got: Vec<(RuleType, Policy)> = host.applied[0]
        .rules
        .iter()
        .map(|r| (r.rule_type, r.policy))
        .collect();
    assert_eq!(
        got,
        [
            (RuleType::Binary, Policy::Blocklist),
            (RuleType::Certificate, Policy::Allowlist),
            (RuleType::TeamId, Policy::AllowlistCompiler),
        ]
    );
    assert_eq!(
        server.requests_for("postflight")[0].body["rules_received"],
        4
    );
    assert_eq!(
        server.requests_for("postflight")[0].body["rules_processed"],
        3
    );
}

#[test]
fn an_empty_answer_body_is_the_default_message() {
    let server = server_with("");
    server.knobs(|k| {
        for stage in ["preflight", "ruledownload", "postflight"] {
            k.canned.insert(stage.into(), String::new());
        }
    });
    let mut host = FakeHost::new();
    let report = sync(&server, &mut host, SyncKind::Normal).unwrap();
    assert_eq!(report.settings.client_mode, None);
    assert_eq!(report.settings.batch_size, 50);
    assert!(!report.rules_applied);
}
