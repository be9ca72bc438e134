//! A server that is down, failing, slow, or answering garbage or huge bodies: the sync fails with
//! an error naming the stage, nothing the server sent is applied, and no event is lost.

mod common;

use common::*;
use santa_sync::testserver::Oversized;
use santa_sync::{ConfigError, RequestError, Stage, SyncClient, SyncError, SyncKind};
use std::time::{Duration, Instant};

fn assert_nothing_applied(host: &FakeHost) {
    assert!(host.applied.is_empty(), "rules were applied");
    assert!(host.settings.is_empty(), "settings were applied");
    assert!(host.rules.is_empty());
}

#[test]
fn a_server_that_is_down_fails_the_sync_after_five_tries() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut host = FakeHost::new().with_events(2);
    let started = Instant::now();
    let err = sync_with(
        &config_for(&format!("http://127.0.0.1:{port}/")),
        &mut host,
        SyncKind::Normal,
    )
    .unwrap_err();
    let (stage, source) = request_error(&err);
    assert_eq!(stage, Stage::Preflight);
    assert!(
        matches!(source, RequestError::Transport { tries: 5, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_nothing_applied(&host);
    assert_eq!(host.spool.len(), 2, "events kept");
}

#[test]
fn five_hundreds_are_retried_with_backoff_then_succeed() {
    let server = server_with(&global_toml("LOCKDOWN", "ALLOWLIST", 0..1));
    server.knobs(|k| k.fail_next = 2);
    let mut host = FakeHost::new();
    let mut config = config_for(&server.base_url());
    config.limits.backoff_first = Duration::from_millis(20);
    let started = Instant::now();
    sync_with(&config, &mut host, SyncKind::Normal).unwrap();
    // Waits of 20 ms then 40 ms before the second and third tries.
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(server.requests_for("preflight").len(), 3);
    assert_eq!(host.rules.len(), 1);
}

#[test]
fn a_server_failing_every_try_fails_the_sync_with_its_status() {
    let server = server_with(&global_toml("LOCKDOWN", "ALLOWLIST", 0..1));
    server.knobs(|k| k.fail_next = 1_000);
    let mut host = FakeHost::new().with_events(1);
    let err = sync(&server, &mut host, SyncKind::Normal).unwrap_err();
    let RequestError::Status {
        status,
        tries,
        detail,
    } = request_error(&err).1
    else {
        panic!("{err}");
    };
    assert_eq!((*status, *tries), (500, 5));
    assert!(detail.contains("injected failure"), "{detail}");
    assert_eq!(server.requests_for("preflight").len(), 5);
    assert_nothing_applied(&host);
}

#[test]
fn client_errors_are_not_retried_but_408_and_429_are() {
    for (status, expected_tries) in [(400, 1), (404, 1), (401, 1), (408, 2), (429, 2)] {
        let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..1));
        server.knobs(|k| {
            k.fail_next = 1;
            k.fail_status = status;
        });
        let mut host = FakeHost::new();
        let result = sync(&server, &mut host, SyncKind::Normal);
        assert_eq!(
            server.requests_for("preflight").len(),
            expected_tries,
            "HTTP {status}"
        );
        assert_eq!(result.is_ok(), expected_tries == 2, "HTTP {status}");
    }
}

#[test]
fn a_403_without_an_xsrf_token_fails_without_retrying_forever() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..1));
    server.knobs(|k| {
        k.fail_next = 100;
        k.fail_status = 403;
    });
    let mut host = FakeHost::new();
    let err = sync(&server, &mut host, SyncKind::Normal).unwrap_err();
    assert!(
        matches!(
            request_error(&err).1,
            RequestError::Status {
                status: 403,
                tries: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        server.requests_for("xsrf").len(),
        1,
        "one token fetch per sync"
    );
}

#[test]
fn a_garbage_answer_is_a_clear_error_and_nothing_is_applied() {
    for stage in ["preflight", "ruledownload"] {
        let server = server_with(&global_toml("LOCKDOWN", "ALLOWLIST", 0..1));
        server.knobs(|k| k.garbage = Some(stage.into()));
        let mut host = FakeHost::new();
        let err = sync(&server, &mut host, SyncKind::Normal).unwrap_err();
        assert_eq!(err.stage().path(), stage);
        assert!(
            matches!(request_error(&err).1, RequestError::Malformed { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("not a JSON object"), "{err}");
        assert_nothing_applied(&host);
    }
}

#[test]
fn an_oversized_answer_is_refused_unread() {
    for declare_length in [true, false] {
        let server = server_with(&global_toml("LOCKDOWN", "ALLOWLIST", 0..1));
        server.knobs(|k| {
            k.oversized = Some(Oversized {
                stage: "ruledownload".into(),
                bytes: 8 << 20,
                declare_length,
            })
        });
        let mut config = config_for(&server.base_url());
        config.limits.response_bytes_max = 1 << 20;
        let mut host = FakeHost::new();
        let err = sync_with(&config, &mut host, SyncKind::Normal).unwrap_err();
        assert!(
            matches!(
                request_error(&err),
                (
                    Stage::RuleDownload,
                    RequestError::TooLarge { limit: 1_048_576 }
                )
            ),
            "{err}"
        );
        assert_eq!(server.requests_for("ruledownload").len(), 1, "not retried");
        assert_nothing_applied(&host);
    }
}

#[test]
fn a_slow_server_times_out() {
    let server = server_with(&global_toml("LOCKDOWN", "ALLOWLIST", 0..1));
    server.knobs(|k| k.delay = Duration::from_millis(1_500));
    let mut config = config_for(&server.base_url());
    config.limits.request_timeout = Duration::from_millis(200);
    config.limits.tries_max = 1;
    let mut host = FakeHost::new();
    let started = Instant::now();
    let err = sync_with(&config, &mut host, SyncKind::Normal).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1_400),
        "{:?}",
        started.elapsed()
    );
    assert_no_answer(&err);
    assert_nothing_applied(&host);
}

#[test]
fn a_failed_second_page_applies_no_rule() {
    let server = server_with(&global_toml("LOCKDOWN", "ALLOWLIST", 0..4));
    server.knobs(|k| {
        k.page_size = Some(2);
        k.fail_only = Some("ruledownload".into());
        k.fail_skip = 1;
        k.fail_next = 1_000;
    });
    let mut host = FakeHost::new();
    let err = sync(&server, &mut host, SyncKind::Normal).unwrap_err();
    assert_eq!(err.stage(), Stage::RuleDownload, "{err}");
    let pages = server.requests_for("ruledownload");
    assert_eq!(
        pages.len(),
        6,
        "the first page, then five tries of the second"
    );
    assert!(pages[1..].iter().all(|p| p.body["cursor"] == "2"));
    assert_nothing_applied(&host);
}

#[test]
fn a_failed_second_event_batch_keeps_it_and_what_follows_and_the_sync_goes_on() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..1));
    server.knobs(|k| {
        k.fail_only = Some("eventupload".into());
        k.fail_skip = 1;
        k.fail_next = 1_000;
    });
    let mut host = FakeHost::new().with_events(5);
    let report = sync(&server, &mut host, SyncKind::Normal).unwrap();
    assert!(report.event_upload_error.is_some());
    assert_eq!(host.acknowledged, [1, 2], "the first batch of 2 was taken");
    let left: Vec<u64> = host.spool.iter().map(|e| e.id).collect();
    assert_eq!(left, [3, 4, 5]);
    assert_eq!(
        host.applied.len(),
        1,
        "the rules still came down, as in Santa"
    );
}

#[test]
fn a_failed_event_batch_stays_in_the_spool() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..1));
    let mut host = FakeHost::new().with_events(5);
    server.knobs(|k| k.garbage = Some("eventupload".into()));
    let report = sync(&server, &mut host, SyncKind::Normal).unwrap();
    assert!(report.event_upload_error.is_some());
    assert_eq!(host.spool.len(), 5);
    assert!(host.acknowledged.is_empty());
    // Events alone: the failure is the run's.
    let mut client = SyncClient::new(&config_for(&server.base_url())).unwrap();
    let err = client.upload_events(&mut host, 2).unwrap_err();
    assert_eq!(err.stage(), Stage::EventUpload);
    assert_eq!(host.spool.len(), 5);
}

#[test]
fn a_server_paging_forever_is_stopped() {
    let server = server_with(&global_toml("MONITOR", "ALLOWLIST", 0..50));
    server.knobs(|k| k.page_size = Some(1));
    let mut config = config_for(&server.base_url());
    config.limits.rule_pages_max = 10;
    let mut host = FakeHost::new();
    let err = sync_with(&config, &mut host, SyncKind::Normal).unwrap_err();
    assert!(matches!(err, SyncError::TooManyPages { max: 10 }), "{err}");
    config.limits.rule_pages_max = 1_000;
    config.limits.rules_max = 20;
    let err = sync_with(&config, &mut host, SyncKind::Normal).unwrap_err();
    assert!(matches!(err, SyncError::TooManyRules { max: 20 }), "{err}");
    assert_nothing_applied(&host);
}

#[test]
fn bad_settings_are_refused_before_any_request() {
    type Change = fn(&mut santa_sync::SyncConfig);
    let cases: [(&str, Change); 4] = [
        ("insecure", |c| {
            c.base_url = "http://sync.example.com/".into()
        }),
        ("machine", |c| c.machine_id = String::new()),
        ("ca", |c| {
            c.tls.ca_bundle = Some("/nonexistent/ca.pem".into())
        }),
        ("pair", |c| c.tls.client_cert = Some("/etc/hostname".into())),
    ];
    for (name, change) in cases {
        let mut config = config_for("https://sync.example.com/");
        change(&mut config);
        let err = SyncClient::new(&config).unwrap_err();
        let expected = match name {
            "insecure" => matches!(err, ConfigError::Insecure { .. }),
            "machine" => matches!(err, ConfigError::MachineId { .. }),
            "ca" => matches!(
                err,
                ConfigError::TlsFile {
                    what: "CA bundle",
                    ..
                }
            ),
            _ => matches!(err, ConfigError::ClientCertPair),
        };
        assert!(expected, "{name}: {err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let mut config = config_for("https://sync.example.com/");
    config.tls.ca_bundle = Some(not_pem);
    let err = SyncClient::new(&config).unwrap_err();
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}
