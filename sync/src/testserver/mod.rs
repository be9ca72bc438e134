//! A real sync server on loopback, for tests and demos (feature `test-server`): the server side
//! of the same protocol, serving what a Moroz-style TOML config says ([`ServerConfig`]).
//!
//! It answers `POST <prefix>/{preflight,eventupload,ruledownload,postflight,xsrf}/<machine_id>`
//! under any path prefix, decompresses bodies as their `Content-Encoding` says (deflate is zlib;
//! no header means plain JSON), records every request it receives (decoded JSON, headers) for
//! assertions, and keeps the uploaded events. Its answers are written as Santa's protobuf-based
//! servers write them (lowerCamelCase JSON names, enums by name) unless a knob says otherwise.
//!
//! [`Knobs`] make it misbehave on purpose: rule pages of N rules with a cursor, an XSRF token
//! required, the next K requests failed with a status, garbage or oversized answers, an XSSI
//! prefix, enums as numbers, snake_case names, a delay before answering.
//!
//! Not for production: plain HTTP, one request at a time, trusts its config.

mod config;

pub use config::{ConfigError, MachineConfig, RuleConfig, ServerConfig};

use crate::proto::{self, ClientMode, Policy, RuleType, SyncType};
use serde_json::Value;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request body read, compressed or not.
const REQUEST_BYTES_MAX: u64 = 64 << 20;

/// An answer far larger than it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oversized {
    /// The stage that answers it (`preflight`, ...).
    pub stage: String,
    /// Bytes of body.
    pub bytes: u64,
    /// Send `Content-Length` (else the body is chunked and its size unknown until read).
    pub declare_length: bool,
}

/// Ways to make the server misbehave. All off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Knobs {
    /// Rules per ruledownload page; the cursor is the offset of the next page. `None`: one page.
    pub page_size: Option<usize>,
    /// Require this XSRF token (403 without it); `POST .../xsrf/<machine>` hands it out.
    pub xsrf_token: Option<String>,
    /// The header the token must come in, announced in `X-XSRF-TOKEN-HEADER`.
    pub xsrf_header_name: Option<String>,
    /// Fail this many of the next stage requests with `fail_status`.
    pub fail_next: u32,
    /// The status for `fail_next` (500 when 0).
    pub fail_status: u16,
    /// Only this stage's requests count for `fail_next` (all stages when `None`).
    pub fail_only: Option<String>,
    /// Let this many counted requests through before `fail_next` starts failing them.
    pub fail_skip: u32,
    /// This stage answers 200 with a body that is not JSON.
    pub garbage: Option<String>,
    /// This stage answers 200 with a huge body.
    pub oversized: Option<Oversized>,
    /// Prefix every answer with Santa's XSSI guard `)]}'\n`.
    pub xssi: bool,
    /// Write enums as numbers.
    pub enum_numbers: bool,
    /// Write proto field names (snake_case), as Moroz does, instead of JSON names.
    pub snake_case: bool,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer these stages with this exact body (status 200), whatever the config says.
    pub canned: std::collections::BTreeMap<String, String>,
}

/// One request the server received.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// The stage (`preflight`, `eventupload`, `ruledownload`, `postflight`, `xsrf`, or the
    /// unknown path component).
    pub stage: String,
    /// The last path component.
    pub machine_id: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON: `Null` when empty; `Null` with `body_error` when undecodable.
    pub body: Value,
    /// Why the body could not be decoded.
    pub body_error: Option<String>,
}

impl RecordedRequest {
    /// A header's value (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Default)]
struct State {
    config: ServerConfig,
    knobs: Knobs,
    requests: Vec<RecordedRequest>,
    events: Vec<Value>,
}

/// A running test server; stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TestServer {
    /// Starts on a free port of 127.0.0.1.
    pub fn start(config: ServerConfig) -> std::io::Result<TestServer> {
        TestServer::start_on("127.0.0.1:0", config)
    }

    /// Starts on `addr` (keep it on loopback).
    pub fn start_on(addr: &str, config: ServerConfig) -> std::io::Result<TestServer> {
        let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State {
            config,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, state, stop) = (server.clone(), state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sync-testserver".into())
                .spawn(move || serve(&server, &state, &stop))?
        };
        Ok(TestServer {
            addr,
            state,
            server,
            stop,
            thread: Some(thread),
        })
    }

    /// The `SyncBaseURL` to give a client: `http://127.0.0.1:PORT/v1/santa/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1/santa/", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the knobs.
    pub fn knobs(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut lock(&self.state).knobs);
    }

    /// Replaces the configuration (new rules or mode for the next sync).
    pub fn set_config(&self, config: ServerConfig) {
        lock(&self.state).config = config;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// The requests received for one stage.
    pub fn requests_for(&self, stage: &str) -> Vec<RecordedRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.stage == stage)
            .cloned()
            .collect()
    }

    /// Forgets the recorded requests (not the events).
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// Every event uploaded and answered 200, in order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.state).events.clone()
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server, state: &Mutex<State>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(request)) => handle(request, state),
            Ok(None) => {}
            Err(_) => break,
        }
    }
}

type Answer = tiny_http::Response<Box<dyn Read + Send>>;

fn answer(status: u16, headers: Vec<(&str, String)>, body: Vec<u8>) -> Answer {
    let length = body.len();
    answer_from(
        status,
        headers,
        Box::new(std::io::Cursor::new(body)),
        Some(length),
    )
}

fn answer_from(
    status: u16,
    headers: Vec<(&str, String)>,
    body: Box<dyn Read + Send>,
    length: Option<usize>,
) -> Answer {
    let headers = headers
        .into_iter()
        .filter_map(|(n, v)| tiny_http::Header::from_bytes(n.as_bytes(), v.as_bytes()).ok())
        .collect();
    tiny_http::Response::new(tiny_http::StatusCode(status), headers, body, length, None)
}

fn handle(mut request: tiny_http::Request, state: &Mutex<State>) {
    let url = request.url().to_owned();
    let mut parts = url.trim_end_matches('/').rsplit('/');
    let machine_id = parts.next().unwrap_or_default().to_owned();
    let stage = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let encoding = headers
        .iter()
        .find(|(n, _)| n == "content-encoding")
        .map(|(_, v)| v.clone());
    let (body, body_error) = match read_body(request.as_reader(), encoding.as_deref()) {
        Ok(body) => (body, None),
        Err(e) => (Value::Null, Some(e)),
    };
    let recorded = RecordedRequest {
        stage,
        machine_id,
        headers,
        body,
        body_error,
    };
    let delay = {
        let mut s = lock(state);
        s.requests.push(recorded.clone());
        s.knobs.delay
    };
    std::thread::sleep(delay);
    let response = respond(&recorded, &mut lock(state));
    // The client may have hung up (a refused oversized body, a timeout): nothing to do.
    let _ = request.respond(response);
}

fn read_body(reader: &mut dyn Read, encoding: Option<&str>) -> Result<Value, String> {
    let mut raw = Vec::new();
    reader
        .take(REQUEST_BYTES_MAX)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    let mut json = Vec::new();
    let decoded = match encoding {
        Some("deflate") => flate2::read::ZlibDecoder::new(&raw[..])
            .take(REQUEST_BYTES_MAX)
            .read_to_end(&mut json),
        Some("gzip") => flate2::read::GzDecoder::new(&raw[..])
            .take(REQUEST_BYTES_MAX)
            .read_to_end(&mut json),
        None => {
            json = raw;
            Ok(0)
        }
        Some(other) => return Err(format!("unknown Content-Encoding {other}")),
    };
    decoded.map_err(|e| format!("cannot decompress: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("not JSON: {e}"))
}

fn respond(request: &RecordedRequest, state: &mut State) -> Answer {
    let knobs = state.knobs.clone();
    let stage = request.stage.as_str();
    if stage == "xsrf" {
        let mut headers = Vec::new();
        if let Some(token) = &knobs.xsrf_token {
            headers.push((crate::XSRF_TOKEN_HEADER, token.clone()));
        }
        if let Some(name) = &knobs.xsrf_header_name {
            headers.push((crate::XSRF_HEADER_NAME_HEADER, name.clone()));
        }
        return answer(200, headers, Vec::new());
    }
    if !matches!(
        stage,
        "preflight" | "eventupload" | "ruledownload" | "postflight"
    ) {
        return answer(404, Vec::new(), b"{\"error\":\"no such stage\"}".to_vec());
    }
    if let Some(token) = &knobs.xsrf_token {
        let header = knobs.xsrf_header_name.as_deref().unwrap_or("X-XSRF-TOKEN");
        if request.header(header) != Some(token.as_str()) {
            return answer(403, Vec::new(), b"{\"error\":\"XSRF token\"}".to_vec());
        }
    }
    let counted = knobs.fail_only.as_deref().is_none_or(|only| only == stage);
    if counted && state.knobs.fail_next > 0 && state.knobs.fail_skip > 0 {
        state.knobs.fail_skip -= 1;
    } else if counted && state.knobs.fail_next > 0 {
        state.knobs.fail_next -= 1;
        let status = if knobs.fail_status == 0 {
            500
        } else {
            knobs.fail_status
        };
        return answer(
            status,
            Vec::new(),
            b"{\"error\":\"injected failure\"}".to_vec(),
        );
    }
    if knobs.garbage.as_deref() == Some(stage) {
        return answer(200, Vec::new(), b"<html><body>502 Bad Gateway".to_vec());
    }
    if let Some(big) = knobs.oversized.as_ref().filter(|o| o.stage == stage) {
        let body = Box::new(b"{\"rules\":[".chain(std::io::repeat(b' ').take(big.bytes)));
        let length = big
            .declare_length
            .then(|| usize::try_from(big.bytes + 10).unwrap_or(usize::MAX));
        return answer_from(200, Vec::new(), body, length);
    }
    if let Some(body) = knobs.canned.get(stage) {
        return answer(200, Vec::new(), body.clone().into_bytes());
    }
    if let Some(error) = &request.body_error {
        return answer(
            400,
            Vec::new(),
            format!("{{\"error\":{error:?}}}").into_bytes(),
        );
    }
    let machine = state.config.for_machine(&request.machine_id).clone();
    let reply = match stage {
        "preflight" => to_value(&machine.preflight),
        "eventupload" => {
            if let Some(events) = request.body.get("events").and_then(Value::as_array) {
                state.events.extend(events.iter().cloned());
            }
            to_value(&proto::EventUploadResponse {
                event_upload_bundle_binaries: machine.event_upload_bundle_binaries.clone(),
            })
        }
        "ruledownload" => {
            let cursor = request
                .body
                .get("cursor")
                .and_then(Value::as_str)
                .unwrap_or_default();
            to_value(&rule_page(&machine, cursor, knobs.page_size))
        }
        _ => to_value(&proto::PostflightResponse {}),
    };
    let mut reply = reply;
    rewrite(&mut reply, &knobs);
    let mut body = if knobs.xssi {
        b")]}'\n".to_vec()
    } else {
        Vec::new()
    };
    body.extend(serde_json::to_vec(&reply).unwrap_or_default());
    answer(
        200,
        vec![("Content-Type", "application/json".to_owned())],
        body,
    )
}

fn to_value<T: serde::Serialize>(message: &T) -> Value {
    serde_json::to_value(message).unwrap_or(Value::Null)
}

/// One page of rules: the cursor is the offset of the page.
fn rule_page(
    machine: &MachineConfig,
    cursor: &str,
    page_size: Option<usize>,
) -> proto::RuleDownloadResponse {
    let rules = machine.wire_rules();
    let start = cursor.parse::<usize>().unwrap_or(0).min(rules.len());
    let end = match page_size {
        Some(n) => start.saturating_add(n.max(1)).min(rules.len()),
        None => rules.len(),
    };
    proto::RuleDownloadResponse {
        rules: rules[start..end].to_vec(),
        cursor: if end < rules.len() {
            end.to_string()
        } else {
            String::new()
        },
    }
}

/// Applies the `enum_numbers` and `snake_case` knobs to an answer.
fn rewrite(value: &mut Value, knobs: &Knobs) {
    match value {
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut v) in entries {
                if knobs.enum_numbers
                    && let Some(n) = v.as_str().and_then(|name| enum_number(&key, name))
                {
                    v = Value::from(n);
                }
                rewrite(&mut v, knobs);
                let key = if knobs.snake_case {
                    snake_case(&key)
                } else {
                    key
                };
                map.insert(key, v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, knobs)),
        _ => {}
    }
}

fn enum_number(key: &str, name: &str) -> Option<i32> {
    match key {
        "clientMode" => ClientMode::from_name(name).map(ClientMode::number),
        "syncType" => SyncType::from_name(name).map(SyncType::number),
        "policy" => Policy::from_name(name).map(Policy::number),
        "ruleType" => RuleType::from_name(name).map(RuleType::number),
        _ => None,
    }
}

fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_offset_cursor() {
        let mut machine = MachineConfig::default();
        for i in 0..5 {
            machine.rules.push(RuleConfig {
                identifier: format!("{i}"),
                policy: Policy::Allowlist,
                rule_type: RuleType::Binary,
                custom_msg: String::new(),
                custom_url: String::new(),
            });
        }
        let first = rule_page(&machine, "", Some(2));
        assert_eq!((first.rules.len(), first.cursor.as_str()), (2, "2"));
        let last = rule_page(&machine, "4", Some(2));
        assert_eq!((last.rules.len(), last.cursor.as_str()), (1, ""));
        assert_eq!(rule_page(&machine, "99", Some(2)).rules.len(), 0);
        assert_eq!(rule_page(&machine, "", None).rules.len(), 5);
    }

    #[test]
    fn knobs_rewrite_names_and_enums() {
        let mut v = serde_json::json!({"clientMode":"LOCKDOWN","rules":[{"ruleType":"TEAMID"}]});
        rewrite(
            &mut v,
            &Knobs {
                enum_numbers: true,
                snake_case: true,
                ..Knobs::default()
            },
        );
        assert_eq!(
            v,
            serde_json::json!({"client_mode":2,"rules":[{"rule_type":3}]})
        );
    }
}
