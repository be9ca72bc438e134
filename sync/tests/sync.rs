//! Whole syncs against the test server: mode and rules applied, pages, clean syncs, REMOVE,
//! events uploaded in batches and acknowledged, XSRF, the server's encodings and prefixes.

mod common;

use common::*;
use santa_sync::proto::{ClientMode, Policy, RuleType};
use santa_sync::testserver::ServerConfig;
use santa_sync::{ContentEncoding, SyncClient, SyncKind};

#[test]
fn a_full_sync_applies_mode_and_rules_and_uploads_events() {
    let server = server_with(&global_toml("LOCKDOWN", "BLOCKLIST", 0..3));
    let mut host = FakeHost::new().with_events(3);
    let mut client = SyncClient::new(&config_for(&server.base_url())).unwrap();

    let report = client.sync(&mut host, SyncKind::Normal).unwrap();

    let stages: Vec<String> = server.requests().into_iter().map(|r| r.stage).collect();
    assert_eq!(
        stages,
        [
            "preflight",
            "eventupload",
            "eventupload",
            "ruledownload",
            "postflight"
        ]
    );
    assert!(server.requests().iter().all(|r| r.machine_id == MACHINE));
    assert_eq!(host.facts.client_mode, ClientMode::Lockdown);
    assert_eq!(host.rule_ids(), [binary(0), binary(1), binary(2)]);
    assert_eq!(host.applied.len(), 1, "one application for the whole set");
    let rule = host.rules.values().next().unwrap();
    assert_eq!(
        (rule.policy, rule.rule_type),
        (Policy::Blocklist, RuleType::Binary)
    );
    assert_eq!(rule.custom_msg, "rule 0");
    assert!(host.spool.is_empty());
    assert_eq!(host.acknowledged, [1, 2, 3]);
    assert_eq!(server.events().len(), 3);
    assert_eq!(server.events()[0]["decision"], "BLOCK_UNKNOWN");
    assert_eq!(
        (report.events_uploaded, report.event_batches),
        (3, 2),
        "batch_size 2"
    );
    assert_eq!((report.rules_received, report.rules_processed), (3, 3));
    let post = &server.requests_for("postflight")[0].body;
    assert_eq!(post["rules_received"], 3);
    assert_eq!(post["rules_processed"], 3);
    assert_eq!(post["syncType"], "NORMAL");
    let mut hash_host = FakeHost::new();
    hash_host.rules = host.rules.clone();
    assert_eq!(
        post["rulesHash"],
        santa_sync::SyncHost::rules_hash(&mut hash_host).unwrap()
    );
    assert!(report.postflight_error.is_none());
}

#[test]
fn no_events_no_eventupload() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..1));
    let mut host = FakeHost::new();
    sync(&server, &mut host, SyncKind::Normal).unwrap();
    assert!(server.requests_for("eventupload").is_empty());
}

#[test]
fn two_rule_pages_are_applied_as_one_set() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..3));
    server.knobs(|k| k.page_size = Some(2));
    let mut host = FakeHost::new();
    let report = sync(&server, &mut host, SyncKind::Normal).unwrap();

    let pages = server.requests_for("ruledownload");
    assert_eq!(pages.len(), 2);
    assert!(pages[0].body.get("cursor").is_none(), "no cursor at first");
    assert_eq!(pages[1].body["cursor"], "2");
    assert_eq!(host.applied.len(), 1);
    assert_eq!(host.applied[0].rules.len(), 3);
    assert_eq!(report.rule_pages, 2);
    assert_eq!(
        server.requests_for("postflight")[0].body["rules_received"],
        3
    );
}

#[test]
fn a_clean_sync_replaces_the_rules_and_keeps_the_events() {
    let server = server_with(&global_toml_with(
        "MONITOR",
        "sync_type = \"CLEAN\"\n",
        "ALLOWLIST",
        5..6,
    ));
    let mut host = FakeHost::new().with_events(2);
    host.add_rule(RuleType::Binary, Policy::Blocklist, binary(99));
    let report = sync(&server, &mut host, SyncKind::Clean).unwrap();

    assert_eq!(
        server.requests_for("preflight")[0].body["request_clean_sync"],
        true
    );
    assert_eq!(host.applied[0].kind, SyncKind::Clean);
    assert_eq!(host.rule_ids(), [binary(5)]);
    assert_eq!(report.settings.sync_kind, SyncKind::Clean);
    assert!(report.events_deferred);
    assert!(server.requests_for("eventupload").is_empty());
    assert_eq!(host.spool.len(), 2, "events wait for a normal sync");
    assert_eq!(
        server.requests_for("postflight")[0].body["syncType"],
        "CLEAN"
    );
}

#[test]
fn a_clean_sync_with_no_rules_leaves_the_rules_alone() {
    let server = server_with("client_mode = \"MONITOR\"\nclean_sync = true\n");
    let mut host = FakeHost::new();
    host.add_rule(RuleType::TeamId, Policy::Allowlist, "EQHXZ8M8AV".into());
    let report = sync(&server, &mut host, SyncKind::Normal).unwrap();
    assert_eq!(report.settings.sync_kind, SyncKind::Clean);
    assert!(host.applied.is_empty());
    assert_eq!(host.rule_ids(), ["EQHXZ8M8AV"]);
}

#[test]
fn clean_all_requested_by_the_host_wins_over_the_servers_clean() {
    let server = server_with(&global_toml_with(
        "MONITOR",
        "sync_type = \"CLEAN\"\n",
        "ALLOWLIST",
        0..1,
    ));
    let mut host = FakeHost::new();
    sync(&server, &mut host, SyncKind::CleanAll).unwrap();
    assert_eq!(host.applied[0].kind, SyncKind::CleanAll);
    assert_eq!(
        server.requests_for("postflight")[0].body["syncType"],
        "CLEAN_ALL"
    );
}

#[test]
fn remove_rules_remove() {
    let server = server_with(&global_toml("MONITOR", "BLOCKLIST", 0..3));
    let mut host = FakeHost::new();
    let mut client = SyncClient::new(&config_for(&server.base_url())).unwrap();
    client.sync(&mut host, SyncKind::Normal).unwrap();
    assert_eq!(host.rules.len(), 3);

    server.set_config(
        ServerConfig::from_global_toml(&global_toml("MONITOR", "REMOVE", 1..2)).unwrap(),
    );
    client.sync(&mut host, SyncKind::Normal).unwrap();
    assert_eq!(host.rule_ids(), [binary(0), binary(2)]);
}

#[test]
fn xsrf_403_fetches_a_token_and_tries_again() {
    let server = server_with(&global_toml("LOCKDOWN", "ALLOWLIST", 0..1));
    server.knobs(|k| k.xsrf_token = Some("tok-123".into()));
    let mut host = FakeHost::new();
    let mut client = SyncClient::new(&config_for(&server.base_url())).unwrap();
    client.sync(&mut host, SyncKind::Normal).unwrap();

    let stages: Vec<String> = server.requests().into_iter().map(|r| r.stage).collect();
    assert_eq!(
        stages,
        [
            "preflight",
            "xsrf",
            "preflight",
            "ruledownload",
            "postflight"
        ]
    );
    let requests = server.requests();
    assert_eq!(requests[0].header("X-XSRF-TOKEN"), None);
    assert_eq!(requests[2].header("X-XSRF-TOKEN"), Some("tok-123"));
    assert_eq!(requests[4].header("X-XSRF-TOKEN"), Some("tok-123"));
    assert_eq!(host.facts.client_mode, ClientMode::Lockdown);

    // The token is kept for the next sync.
    server.clear_requests();
    client.sync(&mut host, SyncKind::Normal).unwrap();
    assert!(server.requests_for("xsrf").is_empty());
}

#[test]
fn xsrf_token_goes_in_the_header_the_server_names() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..1));
    server.knobs(|k| {
        k.xsrf_token = Some("t".into());
        k.xsrf_header_name = Some("X-Fleet-Token".into());
    });
    let mut host = FakeHost::new();
    sync(&server, &mut host, SyncKind::Normal).unwrap();
    let last = server.requests().pop().unwrap();
    assert_eq!(last.header("X-Fleet-Token"), Some("t"));
}

#[test]
fn answers_with_xssi_prefix_enum_numbers_and_proto_names_are_read() {
    let server = server_with(&global_toml_with(
        "LOCKDOWN",
        "sync_type = \"CLEAN_ALL\"\n",
        "SILENT_BLOCKLIST",
        0..2,
    ));
    server.knobs(|k| {
        k.xssi = true;
        k.enum_numbers = true;
        k.snake_case = true;
    });
    let mut host = FakeHost::new();
    sync(&server, &mut host, SyncKind::Normal).unwrap();
    assert_eq!(host.facts.client_mode, ClientMode::Lockdown);
    assert_eq!(host.applied[0].kind, SyncKind::CleanAll);
    assert!(
        host.rules
            .values()
            .all(|r| r.policy == Policy::SilentBlocklist)
    );
}

#[test]
fn each_content_encoding_arrives_as_santa_sends_it() {
    for (encoding, header) in [
        (ContentEncoding::Deflate, Some("deflate")),
        (ContentEncoding::Gzip, Some("gzip")),
        (ContentEncoding::None, None),
    ] {
        let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..1));
        let mut config = config_for(&server.base_url());
        config.content_encoding = encoding;
        let mut host = FakeHost::new().with_events(1);
        sync_with(&config, &mut host, SyncKind::Normal).unwrap();
        for request in server.requests() {
            assert_eq!(request.header("Content-Encoding"), header, "{encoding:?}");
            assert_eq!(request.header("Content-Type"), Some("application/json"));
            assert_eq!(request.body_error, None);
            assert_eq!(request.body["machine_id"], MACHINE);
        }
    }
}

#[test]
fn extra_headers_go_with_every_request_but_restricted_ones_do_not() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..1));
    let mut config = config_for(&server.base_url());
    config.extra_headers = vec![
        ("X-Fleet".into(), "blue".into()),
        ("Content-Type".into(), "text/plain".into()),
    ];
    let mut host = FakeHost::new();
    sync_with(&config, &mut host, SyncKind::Normal).unwrap();
    for request in server.requests() {
        assert_eq!(request.header("X-Fleet"), Some("blue"));
        assert_eq!(request.header("Content-Type"), Some("application/json"));
    }
}

#[test]
fn the_servers_settings_reach_the_host_after_postflight() {
    let server = server_with(
        r#"
client_mode = "LOCKDOWN"
batch_size = 7
full_sync_interval = 30
enable_bundles = true
enable_transitive_rules = false
allowed_path_regex = "^/opt/tools/"
blocked_path_regex = "^/tmp/"
event_detail_url = "https://fleet.example.com/e/%file_sha%"
event_detail_text = "Details"
event_upload_bundle_binaries = ["bundle-hash-1"]
"#,
    );
    let mut host = FakeHost::new().with_events(1);
    let report = sync(&server, &mut host, SyncKind::Normal).unwrap();
    let s = &host.settings[0];
    assert_eq!(s.client_mode, Some(ClientMode::Lockdown));
    assert_eq!(s.batch_size, 7);
    assert_eq!(
        s.full_sync_interval_secs,
        Some(60),
        "raised to Santa's minimum"
    );
    assert_eq!(s.enable_bundles, Some(true));
    assert_eq!(s.enable_transitive_rules, Some(false));
    assert_eq!(s.allowed_path_regex.as_deref(), Some("^/opt/tools/"));
    assert_eq!(s.blocked_path_regex.as_deref(), Some("^/tmp/"));
    assert_eq!(s.event_detail_text.as_deref(), Some("Details"));
    assert_eq!(report.bundle_binaries_requested, ["bundle-hash-1"]);
}

#[test]
fn a_single_page_of_100k_rules_fits_the_default_bounds() {
    // Moroz and others send every rule in one page: 100,000 Binary rules are about 13 MB.
    let machine = santa_sync::testserver::MachineConfig {
        rules: (0..100_000)
            .map(|n| santa_sync::testserver::RuleConfig {
                identifier: binary(n),
                policy: Policy::Allowlist,
                rule_type: RuleType::Binary,
                custom_msg: String::new(),
                custom_url: String::new(),
            })
            .collect(),
        ..Default::default()
    };
    let server = santa_sync::testserver::TestServer::start(ServerConfig {
        global: machine,
        ..ServerConfig::default()
    })
    .unwrap();
    let mut host = FakeHost::new();
    let started = std::time::Instant::now();
    let report = sync(&server, &mut host, SyncKind::Normal).unwrap();
    eprintln!(
        "100k rules downloaded and applied in {:?}",
        started.elapsed()
    );
    assert_eq!(report.rules_received, 100_000);
    assert_eq!(host.applied[0].rules.len(), 100_000);
}

#[test]
fn events_alone_go_up_without_a_preflight() {
    let server = server_with(&global_toml("LOCKDOWN", "ALLOWLIST", 0..1));
    let mut host = FakeHost::new().with_events(5);
    let mut client = SyncClient::new(&config_for(&server.base_url())).unwrap();
    let report = client.upload_events(&mut host, 2).unwrap();
    assert_eq!((report.events_uploaded, report.event_batches), (5, 3));
    let stages: Vec<String> = server.requests().into_iter().map(|r| r.stage).collect();
    assert_eq!(stages, ["eventupload", "eventupload", "eventupload"]);
    assert!(host.spool.is_empty());
    assert!(
        host.applied.is_empty() && host.settings.is_empty(),
        "nothing else changes"
    );
}
