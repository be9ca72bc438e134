//! Santa's `rawjson` metric format (`SNTMetricRawJSONFormat`, over `SNTMetricSet export`): one
//! JSON object per export,
//!
//! ```json
//! { "root_labels": { "host_name": "...", "username": "...", "job_name": "santad",
//!                    "service_name": "santa", ...MetricExtraLabels },
//!   "metrics": { "/santa/events": { "type": 9, "description": "...",
//!                                   "fields": { "action_response": [
//!                                     { "value": "BlockBinary", "created": "2021-09-16T21:07:34.826Z",
//!                                       "last_updated": "...", "data": 1 } ] } }, ... } }
//! ```
//!
//! `type` is Santa's `SNTMetricType` number; `fields` maps the field names joined by `,` (`""`
//! for none) to one entry per field value, `value` being the field values joined by `,`; dates
//! are `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` in UTC. `created` is when santad started (its counters
//! start then), `last_updated` the export's time.
//!
//! Santa's own metric names where Santa has the metric ([`SANTA_NAMES`] in the README's table);
//! every other key under `/santa/rs/` with its dots as slashes (`engine.cache_hits` →
//! `/santa/rs/engine/cache_hits`), a counter or an int64 gauge as the metric table says.

use santa_control::metrics::{self, Kind};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Santa's `SNTMetricType` numbers.
pub mod metric_type {
    /// `SNTMetricTypeConstantString`.
    pub const CONSTANT_STRING: u64 = 2;
    /// `SNTMetricTypeConstantInt64`.
    pub const CONSTANT_INT64: u64 = 3;
    /// `SNTMetricTypeGaugeString`.
    pub const GAUGE_STRING: u64 = 6;
    /// `SNTMetricTypeGaugeInt64`.
    pub const GAUGE_INT64: u64 = 7;
    /// `SNTMetricTypeGaugeDouble`.
    pub const GAUGE_DOUBLE: u64 = 8;
    /// `SNTMetricTypeCounter`.
    pub const COUNTER: u64 = 9;
}

/// What the export knows beside the flat metrics.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Root labels, extra labels already applied.
    pub root_labels: &'a [(String, String)],
    /// santad's start (`created`, `/proc/birth_timestamp`).
    pub started: SystemTime,
    /// This export's time (`last_updated`).
    pub now: SystemTime,
    /// `/santa/log_type`: `file`, `json`, `syslog` or `null`.
    pub log_type: &'a str,
    /// `/build/label`.
    pub version: &'a str,
}

/// Santa's root labels (`RegisterHostnameAndUsernameLabels`): `host_name`, `username` (the
/// daemon's user), `job_name = santad`, `service_name = santa`; then each extra label sets or
/// overrides one, and an empty value removes it.
pub fn root_labels(
    host_name: &str,
    username: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut labels: BTreeMap<String, String> = [
        ("host_name", host_name),
        ("username", username),
        ("job_name", "santad"),
        ("service_name", "santa"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        if v.is_empty() {
            labels.remove(k);
        } else {
            labels.insert(k.clone(), v.clone());
        }
    }
    labels.into_iter().collect()
}

/// `decisions.<action>.<reason>` as Santa's `/santa/events` `action_response` value
/// (`SNTExecutionController.h`: `BlockBinary`, `AllowCertificate`, ...). `AllowFailsafe` is ours
/// (santad's own binaries; Santa has no such state).
fn action_response(action: &str, reason: &str) -> Option<String> {
    let verb = match action {
        "allow" => "Allow",
        "deny" => "Block",
        _ => return None,
    };
    let what = match reason {
        "binary" => "Binary",
        "cert" => "Certificate",
        "teamid" => "TeamID",
        "signingid" => "SigningID",
        "cdhash" => "CDHash",
        "scope" => "Scope",
        "unknown" => "Unknown",
        "transitive" if verb == "Allow" => "Transitive",
        "platform" if verb == "Allow" => "Platform",
        "failsafe" if verb == "Allow" => "Failsafe",
        _ => return None,
    };
    Some(format!("{verb}{what}"))
}

/// Santa's `/santa/flush_count` `Reason` values (`AuthResultCache.mm`) for ours.
fn flush_reason(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "rules" => "RulesChanged",
        "mode" => "ClientModeChanged",
        "config" => "PathRegexChanged",
        "operator" => "ExplicitCommand",
        _ => return None,
    })
}

/// Santa's names for the metrics both have, as the README documents them.
pub const SANTA_NAMES: &[(&str, &str)] = &[
    ("decisions.*.*", "/santa/events"),
    ("rules.*", "/santa/rules"),
    ("mode.*", "/santa/mode"),
    ("engine.flushes.*", "/santa/flush_count"),
    ("daemon.started_unix", "/proc/birth_timestamp"),
    ("daemon.resident_bytes", "/proc/memory/resident_size"),
    ("daemon.virtual_bytes", "/proc/memory/virtual_size"),
    (
        "daemon.cpu_user_us, daemon.cpu_system_us",
        "/proc/cpu_usage",
    ),
];

struct Builder {
    metrics: Map<String, Value>,
    created: String,
    updated: String,
}

impl Builder {
    /// One metric with one entry per `(field value, data)`.
    fn metric(
        &mut self,
        name: &str,
        kind: u64,
        description: &str,
        field: &str,
        values: Vec<(String, Value)>,
    ) {
        let entries: Vec<Value> = values
            .into_iter()
            .map(|(value, data)| {
                json!({
                    "value": value,
                    "created": self.created,
                    "last_updated": self.updated,
                    "data": data,
                })
            })
            .collect();
        let mut fields = Map::new();
        fields.insert(field.to_owned(), Value::Array(entries));
        self.metrics.insert(
            name.to_owned(),
            json!({ "type": kind, "description": description, "fields": fields }),
        );
    }

    fn single(&mut self, name: &str, kind: u64, description: &str, data: Value) {
        self.metric(name, kind, description, "", vec![(String::new(), data)]);
    }
}

fn date(t: SystemTime) -> String {
    String::from_utf8_lossy(&crate::eventlog::iso8601_utc_millis(t)).into_owned()
}

/// The export of `flat` (santad's metrics by key) in Santa's rawjson shape.
pub fn render(flat: &BTreeMap<String, u64>, cx: &Context<'_>) -> Value {
    let mut b = Builder {
        metrics: Map::new(),
        created: date(cx.started),
        updated: date(cx.now),
    };
    let mut events = Vec::new();
    let mut rules = Vec::new();
    let mut flushes = Vec::new();
    let mut cpu = Vec::new();
    let mut mode = None;
    for (key, &v) in flat {
        let segments: Vec<&str> = key.split('.').collect();
        match segments.as_slice() {
            ["decisions", action, reason] => {
                if let Some(name) = action_response(action, reason) {
                    if v > 0 {
                        events.push((name, json!(v)));
                    }
                    continue;
                }
            }
            ["rules", t] => {
                rules.push(((*t).to_owned(), json!(v)));
                continue;
            }
            ["mode", m] => {
                if v == 1 {
                    mode = Some((*m).to_owned());
                }
                continue;
            }
            ["engine", "flushes", reason] => {
                if let Some(name) = flush_reason(reason) {
                    flushes.push((name.to_owned(), json!(v)));
                    continue;
                }
            }
            ["daemon", "cpu_user_us"] => {
                cpu.push(("user".to_owned(), json!(v as f64 / 1e6)));
                continue;
            }
            ["daemon", "cpu_system_us"] => {
                cpu.push(("system".to_owned(), json!(v as f64 / 1e6)));
                continue;
            }
            ["daemon", "started_unix"] => continue, // /proc/birth_timestamp, below
            ["daemon", "resident_bytes"] => {
                b.single(
                    "/proc/memory/resident_size",
                    metric_type::GAUGE_INT64,
                    "The resident set size of this process",
                    json!(v),
                );
                continue;
            }
            ["daemon", "virtual_bytes"] => {
                b.single(
                    "/proc/memory/virtual_size",
                    metric_type::GAUGE_INT64,
                    "The virtual memory size of this process",
                    json!(v),
                );
                continue;
            }
            _ => {}
        }
        let s = metrics::sample(key, v);
        let kind = match s.kind {
            Some(Kind::Counter) => metric_type::COUNTER,
            _ => metric_type::GAUGE_INT64,
        };
        b.single(
            &format!("/santa/rs/{}", key.replace('.', "/")),
            kind,
            &s.help,
            json!(v),
        );
    }
    b.metric(
        "/santa/events",
        metric_type::COUNTER,
        "Events processed by Santa per response",
        "action_response",
        events,
    );
    b.metric(
        "/santa/rules",
        metric_type::GAUGE_INT64,
        "Number of rules",
        "rule_type",
        rules,
    );
    if !flushes.is_empty() {
        b.metric(
            "/santa/flush_count",
            metric_type::COUNTER,
            "Count of times the auth result cache is flushed by reason",
            "Reason",
            flushes,
        );
    }
    if !cpu.is_empty() {
        b.metric(
            "/proc/cpu_usage",
            metric_type::GAUGE_DOUBLE,
            "CPU time consumed by this process, in seconds",
            "mode",
            cpu,
        );
    }
    if let Some(mode) = mode {
        b.single(
            "/santa/mode",
            metric_type::GAUGE_STRING,
            "Santa's operating mode",
            json!(mode),
        );
    }
    b.single(
        "/santa/log_type",
        metric_type::GAUGE_STRING,
        "Santa's log type",
        json!(cx.log_type),
    );
    b.single(
        "/build/label",
        metric_type::CONSTANT_STRING,
        "Version of the binary",
        json!(cx.version),
    );
    let birth_us = cx
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    b.single(
        "/proc/birth_timestamp",
        metric_type::CONSTANT_INT64,
        "Start time of Santad, in microseconds since epoch",
        json!(birth_us),
    );
    let labels: Map<String, Value> = cx
        .root_labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({ "root_labels": labels, "metrics": b.metrics })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_export_has_santas_shape_names_and_dates() {
        let mut flat = BTreeMap::new();
        flat.insert("decisions.deny.binary".to_owned(), 2);
        flat.insert("decisions.allow.cert".to_owned(), 1);
        flat.insert("decisions.allow.scope".to_owned(), 0);
        flat.insert("rules.binary".to_owned(), 3);
        flat.insert("rules.certificate".to_owned(), 0);
        flat.insert("mode.lockdown".to_owned(), 1);
        flat.insert("mode.monitor".to_owned(), 0);
        flat.insert("engine.cache_hits".to_owned(), 7);
        flat.insert("engine.cache_entries".to_owned(), 4);
        flat.insert("engine.flushes.operator".to_owned(), 1);
        flat.insert("daemon.cpu_user_us".to_owned(), 1_500_000);
        let labels = root_labels(
            "host-1",
            "root",
            &[
                ("site".to_owned(), "roam".to_owned()),
                ("job_name".to_owned(), "edr".to_owned()),
                ("service_name".to_owned(), String::new()),
            ],
        );
        let cx = Context {
            root_labels: &labels,
            started: UNIX_EPOCH + Duration::from_millis(1_631_826_454_826),
            now: UNIX_EPOCH + Duration::from_millis(1_631_826_464_000),
            log_type: "file",
            version: "0.1.0",
        };
        let v = render(&flat, &cx);
        assert_eq!(
            v["root_labels"],
            json!({"host_name": "host-1", "username": "root", "job_name": "edr", "site": "roam"})
        );
        let m = &v["metrics"];
        assert_eq!(m["/santa/events"]["type"], 9);
        let events = &m["/santa/events"]["fields"]["action_response"];
        assert_eq!(
            *events,
            json!([
                {"value": "AllowCertificate", "created": "2021-09-16T21:07:34.826Z",
                 "last_updated": "2021-09-16T21:07:44.000Z", "data": 1},
                {"value": "BlockBinary", "created": "2021-09-16T21:07:34.826Z",
                 "last_updated": "2021-09-16T21:07:44.000Z", "data": 2},
            ])
        );
        assert_eq!(m["/santa/rules"]["type"], 7);
        assert_eq!(
            m["/santa/rules"]["fields"]["rule_type"][0]["value"],
            "binary"
        );
        assert_eq!(m["/santa/rules"]["fields"]["rule_type"][0]["data"], 3);
        assert_eq!(m["/santa/mode"]["type"], 6);
        assert_eq!(m["/santa/mode"]["fields"][""][0]["data"], "lockdown");
        assert_eq!(m["/santa/mode"]["fields"][""][0]["value"], "");
        assert_eq!(m["/santa/log_type"]["fields"][""][0]["data"], "file");
        assert_eq!(m["/build/label"]["type"], 2);
        assert_eq!(
            m["/proc/birth_timestamp"]["fields"][""][0]["data"],
            1_631_826_454_826_000u64
        );
        assert_eq!(
            m["/santa/flush_count"]["fields"]["Reason"][0]["value"],
            "ExplicitCommand"
        );
        assert_eq!(m["/proc/cpu_usage"]["type"], 8);
        assert_eq!(m["/proc/cpu_usage"]["fields"]["mode"][0]["data"], 1.5);
        let hits = &m["/santa/rs/engine/cache_hits"];
        assert_eq!(hits["type"], 9);
        assert_eq!(hits["fields"][""][0]["data"], 7);
        assert!(hits["description"].as_str().unwrap().contains("cache"));
        assert_eq!(m["/santa/rs/engine/cache_entries"]["type"], 7);
        assert!(m.get("/santa/rs/decisions/allow/cert").is_none());
    }
}
