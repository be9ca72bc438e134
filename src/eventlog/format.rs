//! The two line formats: Santa's `key=value|…` line and JSON lines, with Santa's sanitizing of
//! values from outside and its spelling of each field.

use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Action, Record, TRUNCATED_MARKER, Text};
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

fn name_into<const N: usize>(out: &mut Vec<u8>, text: &Text<N>) {
    if text.is_empty() {
        out.extend_from_slice(b"(null)");
    } else {
        text_into(out, text);
    }
}

/// Splits NUL-separated arguments (a trailing NUL ends the last one).
fn args_of(args: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = args.strip_suffix(b"\0").unwrap_or(args);
    trimmed.split(|&b| b == 0).filter(move |_| !args.is_empty())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC (proleptic Gregorian; civil-from-days after H. Hinnant).
pub fn iso8601_utc_millis(time: SystemTime) -> [u8; 24] {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
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
    match rec.action {
        Action::Exec => {
            out.extend_from_slice(b"action=EXEC|decision=");
            out.extend_from_slice(decision_word(rec.decision).as_bytes());
            out.extend_from_slice(b"|reason=");
            out.extend_from_slice(rec.reason.as_str().as_bytes());
            if !rec.explain.is_empty() {
                out.extend_from_slice(b"|explain=");
                text_into(out, &rec.explain);
            }
            if let Some(sha) = &rec.sha256 {
                out.extend_from_slice(b"|sha256=");
                hex_into(out, sha);
            }
            if let Some(cert) = &rec.cert_sha256 {
                out.extend_from_slice(b"|cert_sha256=");
                hex_into(out, cert);
                out.extend_from_slice(b"|cert_cn=");
                text_into(out, &rec.cert_cn);
            }
            if !rec.team_id.is_empty() {
                out.extend_from_slice(b"|teamid=");
                text_into(out, &rec.team_id);
            }
            out.extend_from_slice(b"|pid=");
            num_into(out, rec.pid);
            out.extend_from_slice(b"|pidversion=");
            num_into(out, rec.pidversion);
            out.extend_from_slice(b"|ppid=");
            num_into(out, rec.ppid);
            out.extend_from_slice(b"|uid=");
            num_into(out, rec.uid);
            out.extend_from_slice(b"|user=");
            name_into(out, &rec.user);
            out.extend_from_slice(b"|gid=");
            num_into(out, rec.gid);
            out.extend_from_slice(b"|group=");
            name_into(out, &rec.group);
            out.extend_from_slice(b"|mode=");
            out.extend_from_slice(rec.mode.log_letter().as_bytes());
            out.extend_from_slice(b"|path=");
            text_into(out, &rec.path);
            if !rec.args.is_empty() {
                out.extend_from_slice(b"|args=");
                for (i, arg) in args_of(rec.args.as_bytes()).enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    sanitize_into(out, arg);
                }
                if rec.args.is_truncated() {
                    out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
                }
            }
        }
        Action::Bundle => {
            out.extend_from_slice(b"action=BUNDLE|sha256=");
            if let Some(sha) = &rec.sha256 {
                hex_into(out, sha);
            }
            out.extend_from_slice(b"|bundlehash=");
            if let Some(hash) = &rec.bundle_hash {
                hex_into(out, hash);
            }
            out.extend_from_slice(b"|bundlename=");
            text_into(out, &rec.bundle_name);
            out.extend_from_slice(b"|bundleid=");
            text_into(out, &rec.bundle_id);
            out.extend_from_slice(b"|bundlepath=");
            text_into(out, &rec.bundle_path);
            out.extend_from_slice(b"|path=");
            text_into(out, &rec.path);
        }
    }
    if let Some(id) = machine_id {
        out.extend_from_slice(b"|machineid=");
        sanitize_into(out, id.as_bytes());
    }
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

fn json_key(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn json_text<const N: usize>(out: &mut Vec<u8>, key: &str, text: &Text<N>) {
    json_key(out, key);
    json_str_into(out, text.as_bytes(), text.is_truncated());
}

fn json_hex(out: &mut Vec<u8>, key: &str, bytes: &[u8]) {
    json_key(out, key);
    out.push(b'"');
    hex_into(out, bytes);
    out.push(b'"');
}

/// Formats one record as a JSON object line: the same keys as the Santa line, plus `time`,
/// `signingid` and `cdhash`; args as an array.
pub fn format_json(out: &mut Vec<u8>, rec: &Record, machine_id: Option<&str>) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(&iso8601_utc_millis(rec.time));
    out.push(b'"');
    match rec.action {
        Action::Exec => {
            out.extend_from_slice(b",\"action\":\"EXEC\",\"decision\":\"");
            out.extend_from_slice(decision_word(rec.decision).as_bytes());
            out.extend_from_slice(b"\",\"reason\":\"");
            out.extend_from_slice(rec.reason.as_str().as_bytes());
            out.push(b'"');
            if !rec.explain.is_empty() {
                json_text(out, "explain", &rec.explain);
            }
            if let Some(sha) = &rec.sha256 {
                json_hex(out, "sha256", sha);
            }
            if let Some(cert) = &rec.cert_sha256 {
                json_hex(out, "cert_sha256", cert);
                json_text(out, "cert_cn", &rec.cert_cn);
            }
            if !rec.team_id.is_empty() {
                json_text(out, "teamid", &rec.team_id);
            }
            if !rec.signing_id.is_empty() {
                json_text(out, "signingid", &rec.signing_id);
            }
            if let Some(cdhash) = &rec.cdhash {
                json_hex(out, "cdhash", cdhash);
            }
            let _ = write!(
                out,
                ",\"pid\":{},\"pidversion\":{},\"ppid\":{},\"uid\":{}",
                rec.pid, rec.pidversion, rec.ppid, rec.uid
            );
            json_key(out, "user");
            if rec.user.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                json_str_into(out, rec.user.as_bytes(), rec.user.is_truncated());
            }
            let _ = write!(out, ",\"gid\":{}", rec.gid);
            json_key(out, "group");
            if rec.group.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                json_str_into(out, rec.group.as_bytes(), rec.group.is_truncated());
            }
            let _ = write!(out, ",\"mode\":\"{}\"", rec.mode.log_letter());
            json_text(out, "path", &rec.path);
            json_key(out, "args");
            out.push(b'[');
            for (i, arg) in args_of(rec.args.as_bytes()).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str_into(out, arg, false);
            }
            out.push(b']');
            if rec.args.is_truncated() {
                out.extend_from_slice(b",\"args_truncated\":true");
            }
        }
        Action::Bundle => {
            out.extend_from_slice(b",\"action\":\"BUNDLE\"");
            if let Some(sha) = &rec.sha256 {
                json_hex(out, "sha256", sha);
            }
            if let Some(hash) = &rec.bundle_hash {
                json_hex(out, "bundlehash", hash);
            }
            json_text(out, "bundlename", &rec.bundle_name);
            json_text(out, "bundleid", &rec.bundle_id);
            json_text(out, "bundlepath", &rec.bundle_path);
            json_text(out, "path", &rec.path);
        }
    }
    if let Some(id) = machine_id {
        json_key(out, "machineid");
        json_str_into(out, id.as_bytes(), false);
    }
    out.extend_from_slice(b"}\n");
}
