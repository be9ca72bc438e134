//! End to end: a santad steered by a sync server — the repo's test server (`santa-sync`'s
//! `testserver`, a real HTTP server on loopback) — taking its mode and rules, uploading its
//! blocked executions, and surviving a server that is down or answers garbage.
//!
//! Safety: each santad watches only its own private tmpfs (the harness); the server listens on
//! loopback only; santad is killed by its pid when the harness drops.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use common::ctl::{Out, ctl, json, ok};
use common::{Santad, WAIT, is_eperm, run, sha256_hex};
use santa_sync::testserver::{Oversized, ServerConfig, TestServer};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const MACHINE: &str = "santad-e2e-machine";

/// santad in `mode`, pointed at `url`, its sync files in `dir`; the server's settings then
/// decide. `SyncRequestTries = 1`: a down server fails the sync at once (the client's retries
/// and backoff are tested in santa-sync).
fn santad_synced(mode: &str, url: &str, dir: &Path) -> Santad {
    let extra = format!(
        "SyncBaseURL = \"{url}\"\nMachineID = \"{MACHINE}\"\nMachineOwner = \"alice\"\n\
         EventsDbPath = \"{}\"\nSyncStatePath = \"{}\"\nSyncRequestTries = 1\n",
        dir.join("events.db").display(),
        dir.join("sync-state.json").display()
    );
    common::start(mode, &extra)
}

/// Waits until `events()` holds at least `n` events; returns them.
fn wait_events<T>(events: impl Fn() -> Vec<T>, n: usize) -> Vec<T> {
    let start = Instant::now();
    loop {
        let got = events();
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < WAIT,
            "waited for {n} events, have {}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(santad: &Santad) -> Value {
    json(&ctl(&santad.socket_path, &["status", "--json"]))
}

/// Waits until `pred` holds for `santactl status --json`.
fn wait_status(santad: &Santad, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = status(santad);
        if pred(&s) {
            return s;
        }
        assert!(start.elapsed() < WAIT, "waited for {what}; status: {s:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sync(santad: &Santad, args: &[&str]) -> Out {
    let mut all = vec!["sync", "--json"];
    all.extend_from_slice(args);
    ctl(&santad.socket_path, &all)
}

fn global(mode: &str, rules: &[(&str, &str)]) -> String {
    global_with(mode, "", rules)
}

/// [`global`] with more keys of the server's config (`sync_type = "CLEAN"`).
fn global_with(mode: &str, keys: &str, rules: &[(&str, &str)]) -> String {
    let mut text = format!("client_mode = \"{mode}\"\nbatch_size = 2\n{keys}\n");
    for (policy, sha) in rules {
        text.push_str(&format!(
            "\n[[rules]]\nrule_type = \"BINARY\"\npolicy = \"{policy}\"\nidentifier = \"{sha}\"\n\
             custom_msg = \"from the server\"\n"
        ));
    }
    text
}

fn rule_state(santad: &Santad, sha: &str) -> Option<i64> {
    let out = json(&ctl(
        &santad.socket_path,
        &["rule", "--check", "--sha256", sha, "--json"],
    ));
    out.get("rule")
        .and_then(|r| r.get("state"))
        .and_then(Value::as_i64)
}

#[test]
fn mode_and_rules_come_from_the_server_and_blocks_are_uploaded_with_santas_names() {
    let dir = tempfile::tempdir().unwrap();
    // The server's rule needs the file's hash: make the files first on a santad-less path,
    // then copy them onto the watched mount.
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let santad = santad_synced("MONITOR", &server.base_url(), dir.path());
    let blocked = santad.binary("blocked-tool", "sync-block");
    let unknown = santad.binary("unknown-tool", "sync-unknown");
    let allowed = santad.binary("allowed-tool", "sync-allow");
    let (b, a) = (sha256_hex(&blocked), sha256_hex(&allowed));
    server.set_config(
        ServerConfig::from_global_toml(&global(
            "LOCKDOWN",
            &[("BLOCKLIST", &b), ("ALLOWLIST", &a)],
        ))
        .unwrap(),
    );
    let reply = json(&sync(&santad, &[]));
    assert_eq!(reply["rules_received"], 2, "{reply:#}");
    assert_eq!(reply["rules_processed"], 2);
    assert_eq!(reply["mode"], "LOCKDOWN");
    // The mode arrives through a reload.
    wait_status(&santad, "Lockdown from the server", |s| {
        s["daemon"]["mode"] == "Lockdown"
    });
    assert_eq!(rule_state(&santad, &b), Some(2), "the block rule is stored");
    assert_eq!(rule_state(&santad, &a), Some(1), "the allow rule is stored");

    assert!(run(&allowed).unwrap().success());
    assert!(is_eperm(&run(&blocked)), "blocked by the server's rule");
    assert!(is_eperm(&run(&unknown)), "Lockdown from the server");
    santad.wait_log(1, |l| {
        l.contains("decision=DENY") && l.contains("unknown-tool")
    });
    // The blocks go up on their own, a moment after they are spooled, with no full sync.
    let preflights = server.requests_for("preflight").len();
    let events = wait_events(|| server.events(), 2);
    assert_eq!(
        server.requests_for("preflight").len(),
        preflights,
        "events alone, no preflight"
    );
    let find = |name: &str| {
        events
            .iter()
            .find(|e| e["file_name"] == name)
            .unwrap_or_else(|| panic!("no event for {name}: {events:#?}"))
            .clone()
    };
    let e = find("blocked-tool");
    assert_eq!(e["decision"], "BLOCK_BINARY");
    assert_eq!(e["file_sha256"], b.as_str());
    assert_eq!(e["file_path"], santad.mount.path().display().to_string());
    assert_eq!(e["executing_user"], "root");
    assert!(e["pid"].as_i64() > Some(0) && e["ppid"].as_i64() > Some(0));
    assert!(e["execution_time"].as_f64() > Some(1.6e9));
    // No json_name in sync/v1.proto: lowerCamelCase.
    assert_eq!(e["signingStatus"], "SIGNING_STATUS_UNSIGNED", "an ELF");
    assert_eq!(find("unknown-tool")["decision"], "BLOCK_UNKNOWN");
    assert!(
        events.iter().all(|e| e["file_name"] != "allowed-tool"),
        "an allow by rule is not uploaded"
    );
    // Santa's request shapes, as the server received them, in a sync now that the host runs in
    // the server's mode with its rules.
    ok(&sync(&santad, &[]));
    let preflights = server.requests_for("preflight");
    assert_eq!(
        preflights[0].body["request_clean_sync"], true,
        "a host that never synced asks for a clean sync, as Santa's does"
    );
    let preflight = preflights.last().unwrap().clone();
    assert_eq!(preflight.machine_id, MACHINE);
    let body = &preflight.body;
    assert_eq!(body["machine_id"], MACHINE);
    assert_eq!(body["primary_user"], "alice");
    assert_eq!(body["client_mode"], "LOCKDOWN");
    assert_eq!(body["binary_rule_count"], 2);
    // `rules_hash` has no json_name in sync/v1.proto: protobuf JSON spells it lowerCamelCase.
    assert_eq!(body["rulesHash"].as_str().map(str::len), Some(32));
    assert_eq!(preflight.header("content-encoding"), Some("deflate"));
    assert!(
        body.get("request_clean_sync").is_none(),
        "not once it has synced"
    );
    let postflight = server.requests_for("postflight").pop().unwrap();
    assert_eq!(postflight.body["rules_received"], 2);
    assert_eq!(postflight.body["rules_processed"], 2);
    let s = wait_status(&santad, "the events acknowledged", |s| {
        s["sync"]["events_pending"] == 0
    });
    assert!(s["sync"]["last_successful_sync"].as_u64().is_some());
    let m = json(&ctl(&santad.socket_path, &["metrics", "--json"]));
    assert!(m["sync.events_uploaded"].as_u64() >= Some(2), "{m:#}");
    assert!(m["sync.syncs_ok"].as_u64() >= Some(2));
    assert_eq!(s["sync"]["server"], server.base_url());
}

#[test]
fn rule_pages_remove_and_clean_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let santad = santad_synced("MONITOR", &server.base_url(), dir.path());
    let shas: Vec<String> = (0..3).map(|i| format!("{:064x}", i + 1)).collect();
    server.knobs(|k| k.page_size = Some(1));
    let rules: Vec<(&str, &str)> = shas.iter().map(|s| ("BLOCKLIST", s.as_str())).collect();
    server.set_config(ServerConfig::from_global_toml(&global("MONITOR", &rules)).unwrap());
    let reply = json(&sync(&santad, &[]));
    assert_eq!(reply["rules_processed"], 3);
    assert!(
        server.requests_for("ruledownload").len() >= 3,
        "one page per rule"
    );
    for sha in &shas {
        assert_eq!(rule_state(&santad, sha), Some(2));
    }
    // REMOVE removes.
    server.set_config(
        ServerConfig::from_global_toml(&global("MONITOR", &[("REMOVE", &shas[0])])).unwrap(),
    );
    ok(&sync(&santad, &[]));
    assert_eq!(rule_state(&santad, &shas[0]), None);
    assert_eq!(rule_state(&santad, &shas[1]), Some(2));
    // A clean sync (the server decides; santactl asks) replaces every rule with the server's.
    let clean = "sync_type = \"CLEAN\"";
    server.set_config(
        ServerConfig::from_global_toml(&global_with("MONITOR", clean, &[("ALLOWLIST", &shas[2])]))
            .unwrap(),
    );
    let reply = json(&sync(&santad, &["--clean"]));
    assert_eq!(reply["sync_type"], "clean", "{reply:#}");
    assert_eq!(rule_state(&santad, &shas[1]), None);
    assert_eq!(rule_state(&santad, &shas[2]), Some(1));
    // A clean sync that brings no rule leaves the rules alone (Santa's behaviour).
    server.set_config(ServerConfig::from_global_toml(&global_with("MONITOR", clean, &[])).unwrap());
    let reply = json(&sync(&santad, &["--clean-all"]));
    assert_eq!(reply["sync_type"], "clean_all", "{reply:#}");
    assert_eq!(rule_state(&santad, &shas[2]), Some(1));
}

#[test]
fn xsrf_a_down_server_and_garbage_leave_rules_and_events_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(ServerConfig::default()).unwrap();
    let addr = server.addr().to_string();
    let url = server.base_url();
    server.knobs(|k| k.xsrf_token = Some("e2e-token".into()));
    let mut santad = santad_synced("MONITOR", &url, dir.path());
    let blocked = santad.binary("blocked", "sync-down");
    let sha = sha256_hex(&blocked);
    server.set_config(
        ServerConfig::from_global_toml(&global("MONITOR", &[("BLOCKLIST", &sha)])).unwrap(),
    );
    ok(&sync(&santad, &[]));
    assert!(
        server
            .requests_for("preflight")
            .iter()
            .any(|r| r.header("X-XSRF-TOKEN") == Some("e2e-token")),
        "the XSRF token was fetched and sent"
    );
    // Garbage and an oversized answer: a clear error, the rules and santad stay.
    server.knobs(|k| k.garbage = Some("ruledownload".into()));
    let out = sync(&santad, &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("ruledownload"), "{}", out.stderr);
    server.knobs(|k| {
        k.garbage = None;
        k.oversized = Some(Oversized {
            stage: "preflight".into(),
            bytes: 80 << 20,
            declare_length: false,
        });
    });
    let out = sync(&santad, &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("preflight"), "{}", out.stderr);
    assert_eq!(rule_state(&santad, &sha), Some(2));
    // The server goes away; a block is spooled and kept.
    drop(server);
    assert!(is_eperm(&run(&blocked)));
    wait_status(&santad, "the block spooled", |s| {
        s["sync"]["events_pending"].as_u64() >= Some(1)
    });
    let out = sync(&santad, &[]);
    assert_ne!(out.code, 0, "the server is down");
    let s = status(&santad);
    assert!(s["sync"]["last_error"].as_str().is_some(), "{s:#}");
    assert_eq!(s["sync"]["events_pending"], 1);
    assert!(
        is_eperm(&run(&blocked)),
        "the last good rules stay in force"
    );
    // The server comes back and santad restarts with the event still spooled: its first sync
    // (at start) uploads it.
    assert!(santad.stop().success());
    let server = TestServer::start_on(&addr, ServerConfig::default()).unwrap();
    server.set_config(
        ServerConfig::from_global_toml(&global("MONITOR", &[("BLOCKLIST", &sha)])).unwrap(),
    );
    let santad = santad_synced("MONITOR", &url, dir.path());
    wait_status(&santad, "the spooled event uploaded", |s| {
        s["sync"]["events_pending"] == 0 && s["sync"]["last_error"].is_null()
    });
    assert!(
        server
            .events()
            .iter()
            .any(|e| e["file_sha256"] == sha.as_str()),
        "the event spooled before the restart reached the server"
    );
}

#[test]
fn a_bad_sync_setting_disables_sync_and_santad_still_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let santad = santad_synced("LOCKDOWN", "http://sync.example.com/", dir.path());
    let s = status(&santad);
    let why = s["sync"]["disabled"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("http"), "{s:#}");
    let out = sync(&santad, &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("disabled"), "{}", out.stderr);
    let text = ok(&ctl(&santad.socket_path, &["status"])).to_owned();
    for row in [
        ">>> Sync",
        "Sync Server",
        "Disabled",
        "Events Pending Upload",
    ] {
        assert!(text.contains(row), "{row} not in:\n{text}");
    }
    let tool = santad.binary("tool", "sync-disabled");
    assert!(is_eperm(&run(&tool)), "Lockdown still holds");
}

/// The SHA-256 of what [`Santad::binary`] writes for `salt`, known before santad runs.
fn binary_sha(salt: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy");
    let mut bytes = std::fs::read(common::true_binary()).unwrap();
    bytes.extend_from_slice(format!("\nsalt:{salt}\n").as_bytes());
    std::fs::write(&path, bytes).unwrap();
    sha256_hex(&path)
}

#[test]
fn moroz_sets_santads_mode_and_rules_and_receives_its_blocks() {
    use santa_testkit::moroz::{Moroz, moroz_binary, moroz_events};
    let dir = tempfile::tempdir().unwrap();
    let (configs, events) = (dir.path().join("configs"), dir.path().join("events"));
    std::fs::create_dir_all(&configs).unwrap();
    let blocked = binary_sha("moroz-block");
    std::fs::write(
        configs.join("global.toml"),
        format!(
            "client_mode = \"LOCKDOWN\"\nbatch_size = 10\nfull_sync_interval = 600\n\n\
             [[rules]]\nrule_type = \"BINARY\"\npolicy = \"BLOCKLIST\"\nidentifier = \"{blocked}\"\n\
             custom_msg = \"blocked by the fleet\"\n"
        ),
    )
    .unwrap();
    let moroz = Moroz::start(
        &moroz_binary(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("moroz")),
        &configs,
        &events,
    );
    let santad = santad_synced("MONITOR", &moroz.base_url(), dir.path());
    wait_status(&santad, "Lockdown from Moroz", |s| {
        s["daemon"]["mode"] == "Lockdown"
    });
    assert_eq!(rule_state(&santad, &blocked), Some(2));
    let tool = santad.binary("tool", "moroz-block");
    assert_eq!(sha256_hex(&tool), blocked);
    assert!(is_eperm(&run(&tool)), "blocked by Moroz's rule");
    let unknown = santad.binary("other", "moroz-unknown");
    assert!(is_eperm(&run(&unknown)), "Lockdown from Moroz");
    let stored = wait_events(|| moroz_events(&events, MACHINE), 2);
    let event = |sha: &str| -> Value {
        let (_, text) = stored
            .iter()
            .find(|(s, _)| s == sha)
            .unwrap_or_else(|| panic!("Moroz stored no event for {sha}: {stored:?}"));
        serde_json::from_str(text).unwrap()
    };
    let e = event(&blocked);
    assert_eq!(e["decision"], "BLOCK_BINARY");
    assert_eq!(e["file_name"], "tool");
    assert_eq!(e["executing_user"], "root");
    assert_eq!(event(&sha256_hex(&unknown))["decision"], "BLOCK_UNKNOWN");
    wait_status(&santad, "the events acknowledged", |s| {
        s["sync"]["events_pending"] == 0
    });
}

#[test]
fn a_blocked_bundle_binary_goes_up_with_its_bundle_and_the_server_can_ask_for_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start(ServerConfig::from_global_toml("client_mode = \"LOCKDOWN\"\n").unwrap())
            .unwrap();
    let santad = santad_synced("MONITOR", &server.base_url(), dir.path());
    wait_status(&santad, "Lockdown from the server", |s| {
        s["daemon"]["mode"] == "Lockdown"
    });
    let (app, exe, exe_sha) = common::devid_app_on(santad.mount.path());
    assert!(is_eperm(&run(&exe)));
    let bundle_line = santad.wait_log(1, |l| common::field(l, "action") == Some("BUNDLE"));
    let bundle_hash = common::field(&bundle_line[0], "bundlehash")
        .unwrap()
        .to_owned();
    wait_status(&santad, "the block spooled", |s| {
        s["sync"]["events_pending"].as_u64() >= Some(1)
    });
    // The BUNDLE record reached the spool thread with the log line; it writes every 250 ms.
    std::thread::sleep(Duration::from_millis(750));
    // The server asks for the bundle's binaries in its eventupload answer.
    server.set_config(
        ServerConfig::from_global_toml(&format!(
            "client_mode = \"LOCKDOWN\"\nevent_upload_bundle_binaries = [\"{bundle_hash}\"]\n"
        ))
        .unwrap(),
    );
    ok(&sync(&santad, &[]));
    let start = Instant::now();
    let events = loop {
        let events = server.events();
        if events.iter().any(|e| e["decision"] == "BUNDLE_BINARY") {
            break events;
        }
        assert!(
            start.elapsed() < WAIT,
            "no BUNDLE_BINARY event: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let blocked = events
        .iter()
        .find(|e| e["decision"] == "BLOCK_UNKNOWN")
        .expect("the blocked execution");
    assert_eq!(blocked["file_sha256"], exe_sha.as_str());
    assert_eq!(blocked["file_bundle_hash"], bundle_hash.as_str());
    assert_eq!(blocked["file_bundle_id"], "org.mitmproxy.macos-redirector");
    assert_eq!(blocked["file_bundle_path"], app.to_str().unwrap());
    let binary = events
        .iter()
        .find(|e| e["decision"] == "BUNDLE_BINARY")
        .unwrap();
    assert_eq!(binary["file_sha256"], exe_sha.as_str());
    assert_eq!(binary["file_bundle_hash"], bundle_hash.as_str());
}

#[test]
fn the_servers_bundle_and_transitive_switches_apply() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(
        ServerConfig::from_global_toml(
            "client_mode = \"LOCKDOWN\"\nenable_bundles = false\nenable_transitive_rules = true\n",
        )
        .unwrap(),
    )
    .unwrap();
    let santad = santad_synced("MONITOR", &server.base_url(), dir.path());
    let s = wait_status(&santad, "Lockdown from the server", |s| {
        s["daemon"]["mode"] == "Lockdown"
    });
    assert_eq!(s["transitive_allowlisting"]["enabled"], true, "{s:#}");
    let (_, exe, _) = common::devid_app_on(santad.mount.path());
    assert!(is_eperm(&run(&exe)));
    santad.wait_log(1, |l| {
        common::field(l, "action") == Some("EXEC") && common::field(l, "decision") == Some("DENY")
    });
    // The bundle task would have logged within a second or so; with bundles off, nothing.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        santad
            .log_lines()
            .iter()
            .all(|l| common::field(l, "action") != Some("BUNDLE")),
        "EnableBundles off from the server: no bundle hashing"
    );
}
