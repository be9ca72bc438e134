//! End to end: a running santad's metrics, as `santactl metrics --format prometheus` prints them
//! and as santad exports them itself — the node_exporter text file (`MetricExportTextfile`) and
//! Santa's `rawjson` POSTed to `MetricURL` (a real HTTP server on loopback, in the test) — each
//! checked by Prometheus's `promtool check metrics` (which must be installed: `make deps`) or
//! against Santa's JSON shape; and a server that never answers, which must not stall santad.
//!
//! Safety: each santad watches only its own private tmpfs (the harness); the servers listen on
//! loopback only; santad is killed by its pid when the harness drops.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

mod common;

use common::ctl::{ctl, json, ok};
use common::{Santad, WAIT, run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// POSTs a loopback server received: when, path, body.
type Received = Arc<Mutex<Vec<(Instant, String, String)>>>;

/// An HTTP server on 127.0.0.1 that records every request and answers 200.
fn collector() -> (String, Received) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let received: Received = Arc::default();
    let store = received.clone();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = String::new();
            let _ = request.as_reader().read_to_string(&mut body);
            let what = format!("{} {}", request.method(), request.url());
            store.lock().unwrap().push((Instant::now(), what, body));
            let _ = request.respond(tiny_http::Response::from_string("ok"));
        }
    });
    (format!("http://127.0.0.1:{port}/submit"), received)
}

/// A directory only root can write (the text file's directory must be).
fn textfile_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "waited for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metrics_json(santad: &Santad) -> BTreeMap<String, u64> {
    serde_json::from_value(json(&ctl(&santad.socket_path, &["metrics", "--json"]))).unwrap()
}

fn promtool(what: &str, text: &str) {
    if let Err(e) = santa_testkit::promtool_check_metrics(text) {
        panic!("promtool check metrics on {what}: {e}\n{text}");
    }
}

/// Runs one unknown binary, so that decisions are counted.
fn exec_one(santad: &Santad, name: &str) {
    let bin = santad.binary(name, name);
    assert!(run(&bin).unwrap().success());
    wait_for("the decision in the metrics", || {
        (metrics_json(santad)
            .get("decisions.allow.unknown")
            .copied()
            .unwrap_or(0)
            >= 1)
            .then_some(())
    });
}

#[test]
fn every_key_a_running_santad_emits_is_in_the_table_and_prometheus_output_passes_promtool() {
    let santad = common::start("MONITOR", "");
    exec_one(&santad, "metrics-prom");
    let flat = metrics_json(&santad);
    let unknown: Vec<&String> = flat
        .keys()
        .filter(|k| santa_control::metrics::lookup(k).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "keys santad emits that santa-control's metric table does not name: {unknown:?}"
    );
    for key in [
        "rules.binary",
        "mode.monitor",
        "daemon.cpu_user_us",
        "export.url_failed",
    ] {
        assert!(flat.contains_key(key), "{key} missing: {flat:?}");
    }
    let text = ok(&ctl(
        &santad.socket_path,
        &["metrics", "--format", "prometheus"],
    ))
    .to_owned();
    promtool("santactl metrics --format prometheus", &text);
    for line in [
        "# TYPE santa_decisions_total counter\n",
        "santa_mode{mode=\"monitor\"} 1\n",
        "santa_mode{mode=\"lockdown\"} 0\n",
        "santa_rules{type=\"binary\"} 0\n",
        "# TYPE santa_cache_entries gauge\n",
        "# TYPE santa_uptime_seconds gauge\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(
        text.lines().any(|l| l
            .starts_with("santa_decisions_total{decision=\"allow\",reason=\"unknown\"} ")
            && !l.ends_with(" 0")),
        "{text}"
    );
    // --json is --format json; the text form is the old one.
    assert_eq!(
        json(&ctl(&santad.socket_path, &["metrics", "--format", "json"]))["mode.monitor"],
        1
    );
    assert!(ok(&ctl(&santad.socket_path, &["metrics"])).starts_with(">>> Metrics"));
    let bad = ctl(&santad.socket_path, &["metrics", "--format", "xml"]);
    assert_eq!(bad.code, 2, "a usage error: {}", bad.stderr);
}

fn export_config(url: &str, textfile: &Path, interval: u64) -> String {
    format!(
        "MetricURL = \"{url}\"\nMetricFormat = \"rawjson\"\nMetricExportInterval = {interval}\n\
         MetricExportTimeout = 2\nMetricExtraLabels = {{ site = \"roam\", service_name = \"\" }}\n\
         MetricExportTextfile = \"{}\"\n",
        textfile.display()
    )
}

fn is_santa_date(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    let b = s.as_bytes();
    s.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && s.ends_with('Z')
        && s.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit())
}

#[test]
fn santad_writes_the_textfile_and_posts_santas_rawjson_on_its_interval() {
    let (url, received) = collector();
    let dir = textfile_dir();
    let textfile = dir.path().join("santa.prom");
    let santad = common::start("MONITOR", &export_config(&url, &textfile, 1));
    exec_one(&santad, "metrics-export");

    // The text file: whole, 0644, what promtool accepts, no temporary left beside it.
    let text = wait_for("the text file with the decision", || {
        let t = std::fs::read_to_string(&textfile).ok()?;
        t.contains("santa_decisions_total{decision=\"allow\",reason=\"unknown\"} 1")
            .then_some(t)
    });
    promtool("MetricExportTextfile", &text);
    let meta = std::fs::metadata(&textfile).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!(meta.uid(), 0);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "santa.prom" || !n.ends_with(".prom")),
        "only santa.prom may end in .prom: {names:?}"
    );

    // MetricURL: POSTs every second, in Santa's rawjson shape.
    let posts = wait_for("four POSTs", || {
        let r = received.lock().unwrap();
        (r.len() >= 4).then(|| r.clone())
    });
    for pair in posts.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(700) && gap <= Duration::from_millis(2500),
            "MetricExportInterval = 1: POSTs {gap:?} apart"
        );
    }
    let (_, what, body) = posts.last().unwrap();
    assert_eq!(what, "POST /submit");
    let v: Value = serde_json::from_str(body).unwrap();
    let labels = v["root_labels"].as_object().unwrap();
    assert_eq!(labels["site"], "roam", "MetricExtraLabels added");
    assert!(
        !labels.contains_key("service_name"),
        "an empty value removes the label"
    );
    assert_eq!(labels["job_name"], "santad");
    assert_eq!(labels["username"], "root");
    assert!(labels["host_name"].as_str().is_some_and(|h| !h.is_empty()));
    let metrics = v["metrics"].as_object().unwrap();
    for (name, m) in metrics {
        assert!(name.starts_with('/'), "{name}");
        assert!(
            m["type"].as_u64().is_some_and(|t| (1..=9).contains(&t)),
            "{name}: {m}"
        );
        assert!(
            m["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{name}"
        );
        for (field, entries) in m["fields"].as_object().unwrap() {
            for e in entries.as_array().unwrap() {
                assert_eq!(
                    e["value"].as_str().unwrap().split(',').count(),
                    field.split(',').count(),
                    "{name}: one value per field name"
                );
                assert!(is_santa_date(&e["created"]), "{name}: {e}");
                assert!(is_santa_date(&e["last_updated"]), "{name}: {e}");
                assert!(!e["data"].is_null(), "{name}: {e}");
            }
        }
    }
    let events = &metrics["/santa/events"];
    assert_eq!(events["type"], 9);
    let allow_unknown = events["fields"]["action_response"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["value"] == "AllowUnknown")
        .unwrap_or_else(|| panic!("no AllowUnknown in {events}"));
    assert!(allow_unknown["data"].as_u64().unwrap() >= 1);
    assert_eq!(metrics["/santa/mode"]["type"], 6);
    assert_eq!(metrics["/santa/mode"]["fields"][""][0]["data"], "monitor");
    assert_eq!(metrics["/santa/rules"]["type"], 7);
    assert_eq!(metrics["/santa/log_type"]["fields"][""][0]["data"], "file");
    assert_eq!(metrics["/build/label"]["type"], 2);
    assert_eq!(metrics["/santa/rs/engine/cache_misses"]["type"], 9);
    let flat = metrics_json(&santad);
    assert!(
        flat["export.url_ok"] >= 4 && flat["export.textfile_ok"] >= 1,
        "{flat:?}"
    );
    assert_eq!(flat["export.url_failed"], 0);
}

#[test]
fn a_sighup_moves_the_textfile_and_changes_the_interval() {
    let (url, received) = collector();
    let dir = textfile_dir();
    let first = dir.path().join("first.prom");
    let mut santad = common::start("MONITOR", &export_config(&url, &first, 1));
    wait_for("the first file", || first.exists().then_some(()));
    let second = dir.path().join("second.prom");
    let config = std::fs::read_to_string(&santad.config_path).unwrap();
    let config = config
        .replace(&first.display().to_string(), &second.display().to_string())
        .replace("MetricExportInterval = 1", "MetricExportInterval = 3600");
    std::fs::write(&santad.config_path, config).unwrap();
    santad.reload();
    wait_for("the file the new config names", || {
        second.exists().then_some(())
    });
    // An hour between exports now: after the one the reload made due, no more POSTs.
    std::thread::sleep(Duration::from_millis(1500));
    let settled = received.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        received.lock().unwrap().len(),
        settled,
        "the new interval applies"
    );
    let _ = std::fs::remove_file(&first);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!first.exists(), "the old path is no longer written");
}

/// A server that accepts connections and never answers: every export times out, is counted and
/// waits for the next interval; santactl and executions are not held up.
#[test]
fn a_server_that_never_answers_does_not_stall_santad() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream); // read nothing, answer nothing
        }
    });
    let dir = textfile_dir();
    let textfile: PathBuf = dir.path().join("santa.prom");
    let extra = format!(
        "MetricURL = \"http://127.0.0.1:{port}/\"\nMetricFormat = \"rawjson\"\n\
         MetricExportInterval = 1\nMetricExportTimeout = 1\nMetricExportTextfile = \"{}\"\n",
        textfile.display()
    );
    let santad = common::start("MONITOR", &extra);
    let flat = wait_for("two failed exports", || {
        let m = metrics_json(&santad);
        (m["export.url_failed"] >= 2).then_some(m)
    });
    assert_eq!(flat["export.url_ok"], 0);
    assert!(
        flat["export.textfile_ok"] >= 1,
        "the text file is written regardless"
    );
    let start = Instant::now();
    exec_one(&santad, "metrics-stall");
    ok(&ctl(&santad.socket_path, &["status"]));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "an exec and santactl took {:?} while the server hung",
        start.elapsed()
    );
    let connections = held.lock().unwrap().len();
    assert!(
        connections <= flat["export.url_failed"] as usize + 2,
        "one connection per export, no retry loop: {connections} connections"
    );
}
