//! The two line formats: Santa's `key=value|…` line and JSON lines, with Santa's sanitizing of
//! values from outside and its spelling of each field.

use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ARGS_BYTES_MAX, Record, RecordKind, TRUNCATED_MARKER, Text};
use santa_rules as rules;

/// Santa's word for a decision (`decision=`); a record no decision was filled in is `UNKNOWN`.
pub fn decision_word(decision: Option<rules::Action>) -> &'static str {
    match decision {
        Some(rules::Action::Allow) => "ALLOW",
        Some(rules::Action::Deny) => "DENY",
        None => "UNKNOWN",
    }
}

/// Appends `value` sanitized as Santa's `SanitizableString`: `|` → `<pipe>`, `\n` → `\\n`,
/// `\r` → `\\r`; everything else verbatim.
pub fn sanitize_into(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        match b {
            b'|' => out.extend_from_slice(b"<pipe>"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

fn text_into<const N: usize>(out: &mut Vec<u8>, text: &Text<N>) {
    sanitize_into(out, text.as_bytes());
    if text.is_truncated() {
        out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
    }
}

fn hex_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

fn num_into(out: &mut Vec<u8>, n: impl fmt::Display) {
    // Writing into a Vec<u8> cannot fail.
    let _ = write!(out, "{n}");
}

/// Splits NUL-separated arguments (a trailing NUL ends the last one).
fn args_of(args: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = args.strip_suffix(b"\0").unwrap_or(args);
    trimmed.split(|&b| b == 0).filter(move |_| !args.is_empty())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC (proleptic Gregorian).
pub fn iso8601_utc_millis(time: SystemTime) -> [u8; 24] {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (year, month, day) = santa_signing::civil_from_days(days);
    let mut out = [0u8; 24];
    let mut cursor = io::Cursor::new(&mut out[..]);
    let _ = write!(
        cursor,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        year.clamp(0, 9999),
        month,
        day,
        hour,
        minute,
        second,
        millis
    );
    out
}

/// One record's fields in the order both formats write them; a [`Syntax`] spells each one.
/// Santa's field order and its omissions (no `explain=` when empty, `cert_cn` only with a
/// certificate) live here once.
fn write_fields<W: Syntax>(w: &mut W, rec: &Record, machine_id: Option<&str>) {
    match rec.kind {
        RecordKind::Exec => {
            w.word("action", "EXEC");
            w.word("decision", decision_word(rec.decision));
            w.word("reason", rec.reason.as_str());
            if !rec.explain.is_empty() {
                w.text("explain", &rec.explain);
            }
            if let Some(sha) = &rec.sha256 {
                w.hex("sha256", Some(sha));
            }
            if let Some(cert) = &rec.cert_sha256 {
                w.hex("cert_sha256", Some(cert));
                w.text("cert_cn", &rec.cert_cn);
            }
            if !rec.team_id.is_empty() {
                w.text("teamid", &rec.team_id);
            }
            if W::SIGNING_FIELDS {
                if !rec.signing_id.is_empty() {
                    w.text("signingid", &rec.signing_id);
                }
                if let Some(cdhash) = &rec.cdhash {
                    w.hex("cdhash", Some(cdhash));
                }
            }
            w.num("pid", rec.pid);
            w.num("pidversion", rec.pidversion);
            w.num("ppid", rec.ppid);
            w.num("uid", rec.uid);
            w.name("user", &rec.user);
            w.num("gid", rec.gid);
            w.name("group", &rec.group);
            w.word("mode", rec.mode.log_letter());
            w.text("path", &rec.path);
            w.args("args", &rec.args);
        }
        RecordKind::Bundle => {
            w.word("action", "BUNDLE");
            w.hex("sha256", rec.sha256.as_ref().map(|h| &h[..]));
            w.hex("bundlehash", rec.bundle_hash.as_ref().map(|h| &h[..]));
            w.text("bundlename", &rec.bundle_name);
            w.text("bundleid", &rec.bundle_id);
            w.text("bundlepath", &rec.bundle_path);
            w.text("path", &rec.path);
        }
        RecordKind::Allowlist => {
            w.word("action", "ALLOWLIST");
            w.num("pid", rec.pid);
            w.text("path", &rec.path);
            w.hex("sha256", rec.sha256.as_ref().map(|h| &h[..]));
        }
    }
    if let Some(id) = machine_id {
        w.str("machineid", id.as_bytes());
    }
}

/// How one format spells a field. Values from outside arrive as bytes and are escaped by the
/// format; `word`s are santad's own ASCII.
trait Syntax {
    /// Whether the format carries `signingid` and `cdhash` (JSON does; Santa's line does not).
    const SIGNING_FIELDS: bool;
    fn key(&mut self, key: &str);
    fn word(&mut self, key: &str, word: &str);
    fn str(&mut self, key: &str, value: &[u8]);
    fn text<const N: usize>(&mut self, key: &str, text: &Text<N>);
    /// A hash: Santa's line writes an absent one as an empty value, JSON leaves it out.
    fn hex(&mut self, key: &str, bytes: Option<&[u8]>);
    fn num(&mut self, key: &str, n: impl fmt::Display);
    /// A user or group name: Santa's `(null)` or JSON's `null` when unknown.
    fn name<const N: usize>(&mut self, key: &str, text: &Text<N>);
    fn args(&mut self, key: &str, args: &Text<ARGS_BYTES_MAX>);
}

/// Santa's `key=value|…` line.
struct KeyValue<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Syntax for KeyValue<'_> {
    const SIGNING_FIELDS: bool = false;
    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b'|');
        }
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
    }
    fn word(&mut self, key: &str, word: &str) {
        self.key(key);
        self.out.extend_from_slice(word.as_bytes());
    }
    fn str(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        sanitize_into(self.out, value);
    }
    fn text<const N: usize>(&mut self, key: &str, text: &Text<N>) {
        self.key(key);
        text_into(self.out, text);
    }
    fn hex(&mut self, key: &str, bytes: Option<&[u8]>) {
        self.key(key);
        if let Some(bytes) = bytes {
            hex_into(self.out, bytes);
        }
    }
    fn num(&mut self, key: &str, n: impl fmt::Display) {
        self.key(key);
        num_into(self.out, n);
    }
    fn name<const N: usize>(&mut self, key: &str, text: &Text<N>) {
        self.key(key);
        if text.is_empty() {
            self.out.extend_from_slice(b"(null)");
        } else {
            text_into(self.out, text);
        }
    }
    fn args(&mut self, key: &str, args: &Text<ARGS_BYTES_MAX>) {
        if args.is_empty() {
            return;
        }
        self.key(key);
        for (i, arg) in args_of(args.as_bytes()).enumerate() {
            if i > 0 {
                self.out.push(b' ');
            }
            sanitize_into(self.out, arg);
        }
        if args.is_truncated() {
            self.out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
        }
    }
}

/// Formats one record as a Santa `key=value|…` line (with newline) into `out`.
pub fn format_key_value(
    out: &mut Vec<u8>,
    rec: &Record,
    timestamp_prefix: bool,
    machine_id: Option<&str>,
) {
    if timestamp_prefix {
        out.push(b'[');
        out.extend_from_slice(&iso8601_utc_millis(rec.time));
        out.extend_from_slice(b"] I santad: ");
    }
    write_fields(&mut KeyValue { out, first: true }, rec, machine_id);
    out.push(b'\n');
}

/// Appends a JSON string literal (invalid UTF-8 replaced by U+FFFD).
fn json_str_into(out: &mut Vec<u8>, bytes: &[u8], truncated: bool) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    if truncated {
        out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
    }
    out.push(b'"');
}

/// JSON lines: the same keys, plus `time`, `signingid` and `cdhash`; args as an array.
struct Json<'a> {
    out: &'a mut Vec<u8>,
}

impl Syntax for Json<'_> {
    const SIGNING_FIELDS: bool = true;
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }
    fn word(&mut self, key: &str, word: &str) {
        self.str(key, word.as_bytes());
    }
    fn str(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        json_str_into(self.out, value, false);
    }
    fn text<const N: usize>(&mut self, key: &str, text: &Text<N>) {
        self.key(key);
        json_str_into(self.out, text.as_bytes(), text.is_truncated());
    }
    fn hex(&mut self, key: &str, bytes: Option<&[u8]>) {
        if let Some(bytes) = bytes {
            self.key(key);
            self.out.push(b'"');
            hex_into(self.out, bytes);
            self.out.push(b'"');
        }
    }
    fn num(&mut self, key: &str, n: impl fmt::Display) {
        self.key(key);
        num_into(self.out, n);
    }
    fn name<const N: usize>(&mut self, key: &str, text: &Text<N>) {
        if text.is_empty() {
            self.key(key);
            self.out.extend_from_slice(b"null");
        } else {
            self.text(key, text);
        }
    }
    fn args(&mut self, key: &str, args: &Text<ARGS_BYTES_MAX>) {
        self.key(key);
        self.out.push(b'[');
        for (i, arg) in args_of(args.as_bytes()).enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            json_str_into(self.out, arg, false);
        }
        self.out.push(b']');
        if args.is_truncated() {
            self.out.extend_from_slice(b",\"args_truncated\":true");
        }
    }
}

/// Formats one record as a JSON object line: the same keys as the Santa line, plus `time`,
/// `signingid` and `cdhash`; args as an array.
pub fn format_json(out: &mut Vec<u8>, rec: &Record, machine_id: Option<&str>) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(&iso8601_utc_millis(rec.time));
    out.push(b'"');
    write_fields(&mut Json { out }, rec, machine_id);
    out.extend_from_slice(b"}\n");
}
