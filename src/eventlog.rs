//! The decision log: Santa's `key=value|…` lines (or JSON lines), written by one logger thread
//! from a bounded ring of preallocated records.
//!
//! Data flow: a worker calls [`EventLog::acquire`], which pops a free, preallocated
//! [`Record`] (no allocation); it fills the record's fixed-capacity fields (too-long text is cut
//! and marked `<truncated>`) and calls [`RecordSlot::commit`]. When no record is free the line is
//! dropped and counted ([`EventLog::dropped`]) — a worker never blocks on the log. The logger
//! thread ([`spawn_logger`]) pops committed records, formats them into one reused buffer, writes,
//! and returns the records to the free list.
//!
//! The file is reopened on request ([`LoggerHandle::request_reopen`], wired to SIGHUP) and when
//! the path no longer names the open file — checked after each batch by comparing `(dev, ino)`,
//! so a `mv santa.log santa.log.1` (log rotation) is followed by a fresh `santa.log`.
//!
//! Line format, as Santa's `BasicString` serializer writes it (Source/santad/Logs/
//! EndpointSecurity/Serializers/BasicString.mm):
//! `action=EXEC|decision=ALLOW|reason=BINARY[|explain=…][|sha256=…][|cert_sha256=…|cert_cn=…]
//! [|teamid=…]|pid=…|pidversion=…|ppid=…|uid=…|user=…|gid=…|group=…|mode=M|path=…[|args=…]
//! [|machineid=…]`, and `action=BUNDLE|sha256=…|bundlehash=…|bundlename=…|bundleid=…|bundlepath=…
//! |path=…[|machineid=…]`. Values that come from outside (paths, arguments, names) are
//! sanitized as Santa's `SanitizableString` does: `|` → `<pipe>`, newline → `\n`, carriage
//! return → `\r`. Santa writes `explain` unsanitized; here it is sanitized too, since a line must
//! stay one line. A missing user or group name is written `(null)`, as Santa does. File logs
//! are prefixed `[2024-01-01T00:00:00.000Z] I santad: `; syslog-style lines are not.
//!
//! Linux has no pid version (macOS audit tokens have one); `pidversion` carries the process's
//! start time in clock ticks since boot (field 22 of /proc/PID/stat), which likewise tells a
//! reused pid apart.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;

use crate::config::{ClientMode, LogDestination, LogFormat};
use santa_rules as rules;

/// Longest path logged: `PATH_MAX` on Linux, the longest path `execve` accepts.
pub const PATH_BYTES_MAX: usize = 4096;
/// Most argument bytes logged (NUL-separated, as /proc/PID/cmdline holds them). Santa logs every
/// argument; a command line can reach megabytes, so it is cut here to keep records fixed-size.
pub const ARGS_BYTES_MAX: usize = 4096;
/// Longest explanation (a short sentence from the evaluator).
pub const EXPLAIN_BYTES_MAX: usize = 256;
/// Longest certificate common name (X.509 allows 64 characters; UTF-8 may take 4 bytes each).
pub const CERT_CN_BYTES_MAX: usize = 256;
/// Longest Team ID (Apple's are 10 characters).
pub const TEAM_ID_BYTES_MAX: usize = 32;
/// Longest Signing ID (a reverse-DNS identifier).
pub const SIGNING_ID_BYTES_MAX: usize = 256;
/// Longest user or group name (`LOGIN_NAME_MAX` is 256, real names are far shorter; a longer
/// one is cut and marked).
pub const NAME_BYTES_MAX: usize = 64;
/// Longest bundle name or bundle identifier.
pub const BUNDLE_TEXT_BYTES_MAX: usize = 256;
/// Longest bundle path logged in a BUNDLE line.
pub const BUNDLE_PATH_BYTES_MAX: usize = 1024;
/// Written after a value that was cut to its field's capacity.
pub const TRUNCATED_MARKER: &str = "<truncated>";
/// The logger writes when its batch buffer passes this size, so one write carries many lines
/// without the buffer growing without bound.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// How long the logger sleeps when idle before looking again; the first line after an idle spell
/// wakes it at once.
const LOGGER_IDLE: Duration = Duration::from_millis(100);
/// While lines keep coming, the logger drains every this often instead of being woken for each
/// line: one wake-up, one `write` per batch rather than per exec (a wake-up across CPUs costs
/// ~55 µs here). A line waits at most this long; a ring filling up wakes the logger early.
const LOGGER_BATCH: Duration = Duration::from_millis(20);
/// How often the logger checks whether its file was rotated away (a `stat` of the path).
const ROTATION_CHECK: Duration = Duration::from_secs(1);

/// A fixed-capacity byte string: set or appended to without allocation; what does not fit is cut
/// and remembered as truncated.
#[derive(Clone)]
pub struct Text<const N: usize> {
    len: usize,
    truncated: bool,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    /// An empty text.
    pub fn new() -> Self {
        Text {
            len: 0,
            truncated: false,
            bytes: [0; N],
        }
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }

    /// Replaces the contents.
    pub fn set(&mut self, value: &[u8]) {
        self.clear();
        self.push(value);
    }

    /// Appends, cutting at capacity.
    pub fn push(&mut self, value: &[u8]) {
        let room = N - self.len;
        let take = value.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&value[..take]);
        self.len += take;
        if take < value.len() {
            self.truncated = true;
        }
    }

    /// The contents.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether something was cut.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Marks the contents as cut (for a filler that could not read everything).
    pub fn mark_truncated(&mut self) {
        self.truncated = true;
    }

    /// The unused capacity, for filling in place (e.g. `read` straight into it); follow with
    /// [`Text::advance`].
    pub fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.len..]
    }

    /// Counts `n` more bytes of [`Text::spare_mut`] as contents.
    pub fn advance(&mut self, n: usize) {
        self.len = (self.len + n).min(N);
    }

    /// Keeps only the first `n` bytes.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))?;
        if self.truncated {
            write!(f, "{TRUNCATED_MARKER}")?;
        }
        Ok(())
    }
}

/// Which line a record becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `action=EXEC`.
    Exec,
    /// `action=BUNDLE` (bundle hash of a denied binary's bundle).
    Bundle,
}

/// Santa's word for a decision (`decision=`); a record no decision was filled in is `UNKNOWN`.
pub fn decision_word(decision: Option<rules::Action>) -> &'static str {
    match decision {
        Some(rules::Action::Allow) => "ALLOW",
        Some(rules::Action::Deny) => "DENY",
        None => "UNKNOWN",
    }
}

/// One log record: fixed size, preallocated, reused. A worker fills what it knows; empty texts
/// and `None`s are left out of the line where Santa leaves them out.
#[derive(Debug, Clone)]
pub struct Record {
    /// EXEC or BUNDLE.
    pub action: Action,
    /// When the event happened (taken by the producer; a vDSO call, no syscall).
    pub time: SystemTime,
    /// The decision that reached the kernel; `None` (never filled in) is logged `UNKNOWN`.
    pub decision: Option<rules::Action>,
    /// Why, in Santa's words ([`rules::Reason::as_str`], `GetReasonString`).
    pub reason: rules::Reason,
    /// The client mode at decision time (`mode=M`/`L`).
    pub mode: ClientMode,
    /// Free text from the evaluator (`explain=`), left out when empty.
    pub explain: Text<EXPLAIN_BYTES_MAX>,
    /// The file's SHA-256.
    pub sha256: Option<[u8; 32]>,
    /// The leaf certificate's SHA-256; `cert_cn` is written with it.
    pub cert_sha256: Option<[u8; 32]>,
    /// The leaf certificate's common name.
    pub cert_cn: Text<CERT_CN_BYTES_MAX>,
    /// Team ID, left out when empty.
    pub team_id: Text<TEAM_ID_BYTES_MAX>,
    /// Signing ID (JSON only: Santa's EXEC line has no such field).
    pub signing_id: Text<SIGNING_ID_BYTES_MAX>,
    /// CDHash (JSON only, as `signing_id`).
    pub cdhash: Option<[u8; 20]>,
    /// Process id.
    pub pid: i32,
    /// Process start time in clock ticks (Linux stand-in for Santa's pidversion).
    pub pidversion: u64,
    /// Parent process id.
    pub ppid: i32,
    /// Real user id.
    pub uid: u32,
    /// User name (`(null)` when empty).
    pub user: Text<NAME_BYTES_MAX>,
    /// Real group id.
    pub gid: u32,
    /// Group name (`(null)` when empty).
    pub group: Text<NAME_BYTES_MAX>,
    /// The executable's path.
    pub path: Text<PATH_BYTES_MAX>,
    /// Arguments, NUL-separated (each argument ends with NUL, as in /proc/PID/cmdline).
    pub args: Text<ARGS_BYTES_MAX>,
    /// BUNDLE: the bundle hash.
    pub bundle_hash: Option<[u8; 32]>,
    /// BUNDLE: the bundle's name.
    pub bundle_name: Text<BUNDLE_TEXT_BYTES_MAX>,
    /// BUNDLE: the bundle's identifier.
    pub bundle_id: Text<BUNDLE_TEXT_BYTES_MAX>,
    /// BUNDLE: the bundle's path.
    pub bundle_path: Text<BUNDLE_PATH_BYTES_MAX>,
}

impl Record {
    /// An empty EXEC record.
    pub fn new() -> Record {
        Record {
            action: Action::Exec,
            time: UNIX_EPOCH,
            decision: None,
            reason: rules::Reason::Unknown,
            mode: ClientMode::Monitor,
            explain: Text::new(),
            sha256: None,
            cert_sha256: None,
            cert_cn: Text::new(),
            team_id: Text::new(),
            signing_id: Text::new(),
            cdhash: None,
            pid: 0,
            pidversion: 0,
            ppid: 0,
            uid: 0,
            user: Text::new(),
            gid: 0,
            group: Text::new(),
            path: Text::new(),
            args: Text::new(),
            bundle_hash: None,
            bundle_name: Text::new(),
            bundle_id: Text::new(),
            bundle_path: Text::new(),
        }
    }

    /// Resets every field, keeping the buffers.
    pub fn clear(&mut self) {
        self.action = Action::Exec;
        self.time = UNIX_EPOCH;
        self.decision = None;
        self.reason = rules::Reason::Unknown;
        self.mode = ClientMode::Monitor;
        self.explain.clear();
        self.sha256 = None;
        self.cert_sha256 = None;
        self.cert_cn.clear();
        self.team_id.clear();
        self.signing_id.clear();
        self.cdhash = None;
        self.pid = 0;
        self.pidversion = 0;
        self.ppid = 0;
        self.uid = 0;
        self.user.clear();
        self.gid = 0;
        self.group.clear();
        self.path.clear();
        self.args.clear();
        self.bundle_hash = None;
        self.bundle_name.clear();
        self.bundle_id.clear();
        self.bundle_path.clear();
    }
}

impl Default for Record {
    fn default() -> Self {
        Record::new()
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

/// The shared ring: free records, committed records, counters.
#[derive(Debug)]
pub struct EventLog {
    free: ArrayQueue<Box<Record>>,
    ready: ArrayQueue<Box<Record>>,
    dropped: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
    reopen: AtomicBool,
    stop: AtomicBool,
    logger: std::sync::OnceLock<std::thread::Thread>,
    /// The logger is in its long idle sleep: the next commit wakes it.
    logger_idle: AtomicBool,
    /// Ready records at which a commit wakes a batching logger early (a quarter of the ring).
    wake_threshold: usize,
}

impl EventLog {
    /// A ring of `capacity` preallocated records (all allocation happens here).
    pub fn new(capacity: usize) -> Arc<EventLog> {
        let capacity = capacity.max(1);
        let free = ArrayQueue::new(capacity);
        for _ in 0..capacity {
            // Cannot fail: exactly `capacity` pushes into a queue of that capacity.
            let _ = free.push(Box::new(Record::new()));
        }
        Arc::new(EventLog {
            free,
            ready: ArrayQueue::new(capacity),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            logger: std::sync::OnceLock::new(),
            logger_idle: AtomicBool::new(true),
            wake_threshold: (capacity / 4).max(1),
        })
    }

    /// Takes a free record, cleared, or — when the ring is full — counts a drop and returns
    /// `None`. Never blocks, never allocates.
    pub fn acquire(&self) -> Option<RecordSlot<'_>> {
        match self.free.pop() {
            Some(mut rec) => {
                rec.clear();
                Some(RecordSlot {
                    log: self,
                    rec: Some(rec),
                })
            }
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Lines dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines written.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Failed writes (e.g. disk full); their lines are lost.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    fn wake_logger(&self) {
        if let Some(t) = self.logger.get() {
            t.unpark();
        }
    }
}

/// A record being filled; [`RecordSlot::commit`] queues it, dropping it returns it unused.
#[derive(Debug)]
pub struct RecordSlot<'a> {
    log: &'a EventLog,
    rec: Option<Box<Record>>,
}

impl RecordSlot<'_> {
    /// Hands the record to the logger thread.
    pub fn commit(mut self) {
        if let Some(rec) = self.rec.take() {
            // Cannot fail: at most `capacity` records exist, so `ready` always has room; were it
            // to fail, the record goes back to the free list and the line is counted as dropped.
            if let Err(rec) = self.log.ready.push(rec) {
                let _ = self.log.free.push(rec);
                self.log.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // Wake the logger only if it sleeps long or the ring is filling; otherwise its next
            // batch picks this line up within LOGGER_BATCH.
            if self.log.logger_idle.swap(false, Ordering::SeqCst)
                || self.log.ready.len() >= self.log.wake_threshold
            {
                self.log.wake_logger();
            }
        }
    }
}

impl std::ops::Deref for RecordSlot<'_> {
    type Target = Record;
    fn deref(&self) -> &Record {
        // The Option is only None after commit, which consumes self.
        self.rec
            .as_deref()
            .unwrap_or_else(|| unreachable!("record slot used after commit"))
    }
}

impl std::ops::DerefMut for RecordSlot<'_> {
    fn deref_mut(&mut self) -> &mut Record {
        self.rec
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("record slot used after commit"))
    }
}

impl Drop for RecordSlot<'_> {
    fn drop(&mut self) {
        if let Some(rec) = self.rec.take() {
            let _ = self.log.free.push(rec);
        }
    }
}

/// What the logger writes and where.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Line format.
    pub format: LogFormat,
    /// Destination.
    pub destination: LogDestination,
    /// Appended as `machineid=` when set (`EnableMachineIDDecoration`).
    pub machine_id: Option<String>,
}

/// Errors opening the log file.
#[derive(Debug)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "opening event log {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The logger side: formats and writes.
#[derive(Debug)]
pub struct LogWriter {
    config: WriterConfig,
    file: Option<(File, u64, u64)>,
    buf: Vec<u8>,
}

fn open_append(path: &PathBuf) -> Result<(File, u64, u64), OpenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| OpenError {
            path: path.clone(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| OpenError {
        path: path.clone(),
        source,
    })?;
    Ok((file, meta.dev(), meta.ino()))
}

impl LogWriter {
    /// Opens the destination (a file is created if missing, appended to otherwise).
    pub fn new(config: WriterConfig) -> Result<LogWriter, OpenError> {
        let file = match &config.destination {
            LogDestination::File(path) => Some(open_append(path)?),
            _ => None,
        };
        Ok(LogWriter {
            config,
            file,
            buf: Vec::with_capacity(WRITE_BATCH_BYTES * 2),
        })
    }

    /// Reopens the file (after rotation or on SIGHUP). On failure the old handle stays.
    pub fn reopen(&mut self) -> Result<(), OpenError> {
        if let LogDestination::File(path) = &self.config.destination {
            self.file = Some(open_append(path)?);
        }
        Ok(())
    }

    /// Reopens when the path no longer names the open file (renamed or deleted away).
    pub fn reopen_if_rotated(&mut self) -> Result<bool, OpenError> {
        let LogDestination::File(path) = &self.config.destination else {
            return Ok(false);
        };
        let current = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let open = self.file.as_ref().map(|(_, dev, ino)| (*dev, *ino));
        if current.is_some() && current == open {
            return Ok(false);
        }
        self.reopen()?;
        Ok(true)
    }

    /// Formats one record into the batch buffer.
    pub fn format(&mut self, rec: &Record) {
        let machine_id = self.config.machine_id.as_deref();
        match self.config.format {
            LogFormat::KeyValue { timestamp_prefix } => {
                format_key_value(&mut self.buf, rec, timestamp_prefix, machine_id)
            }
            LogFormat::Json => format_json(&mut self.buf, rec, machine_id),
        }
    }

    /// Bytes waiting in the batch buffer.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Writes the batch buffer out.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = match (&self.config.destination, &mut self.file) {
            (LogDestination::Null, _) => Ok(()),
            (LogDestination::Stdout, _) => {
                let mut out = io::stdout().lock();
                out.write_all(&self.buf).and_then(|_| out.flush())
            }
            (LogDestination::File(_), Some((file, _, _))) => file.write_all(&self.buf),
            (LogDestination::File(_), None) => Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        self.buf.clear();
        result
    }
}

/// Controls the logger thread.
#[derive(Debug)]
pub struct LoggerHandle {
    log: Arc<EventLog>,
    thread: Option<JoinHandle<LogWriter>>,
}

impl LoggerHandle {
    /// Asks the logger to reopen its file (SIGHUP). Safe to call from any thread.
    pub fn request_reopen(&self) {
        self.log.reopen.store(true, Ordering::SeqCst);
        self.log.wake_logger();
    }

    /// Writes everything committed so far, stops the thread, and gives the writer back.
    pub fn stop(mut self) -> Option<LogWriter> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Option<LogWriter> {
        self.log.stop.store(true, Ordering::SeqCst);
        self.log.wake_logger();
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for LoggerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts the logger thread draining `log` into `writer`.
pub fn spawn_logger(log: Arc<EventLog>, mut writer: LogWriter) -> io::Result<LoggerHandle> {
    let thread_log = log.clone();
    let thread = std::thread::Builder::new()
        .name("santad-logger".into())
        .spawn(move || {
            let log = thread_log;
            let mut rotation_checked = std::time::Instant::now();
            loop {
                let stopping = log.stop.load(Ordering::SeqCst);
                let mut lines = 0u64;
                let mut drained = 0u64;
                while let Some(mut rec) = log.ready.pop() {
                    writer.format(&rec);
                    rec.clear();
                    let _ = log.free.push(rec);
                    lines += 1;
                    drained += 1;
                    if writer.pending_bytes() >= WRITE_BATCH_BYTES {
                        record_flush(&log, &mut writer, &mut lines);
                    }
                }
                record_flush(&log, &mut writer, &mut lines);
                if log.reopen.swap(false, Ordering::SeqCst) {
                    let _ = writer.reopen();
                    rotation_checked = std::time::Instant::now();
                } else if rotation_checked.elapsed() >= ROTATION_CHECK {
                    let _ = writer.reopen_if_rotated();
                    rotation_checked = std::time::Instant::now();
                }
                if stopping {
                    return writer;
                }
                if drained > 0 {
                    // Lines are coming: batch.
                    std::thread::park_timeout(LOGGER_BATCH);
                } else {
                    // Quiet: sleep long, and let the next commit wake us. Re-check after raising
                    // the flag, so a line committed just before is not left waiting.
                    log.logger_idle.store(true, Ordering::SeqCst);
                    if log.ready.is_empty()
                        && !log.stop.load(Ordering::SeqCst)
                        && !log.reopen.load(Ordering::SeqCst)
                    {
                        std::thread::park_timeout(LOGGER_IDLE);
                    }
                }
            }
        })?;
    let _ = log.logger.set(thread.thread().clone());
    Ok(LoggerHandle {
        log,
        thread: Some(thread),
    })
}

fn record_flush(log: &EventLog, writer: &mut LogWriter, lines: &mut u64) {
    if *lines == 0 && writer.pending_bytes() == 0 {
        return;
    }
    match writer.flush() {
        Ok(()) => log.written.fetch_add(*lines, Ordering::Relaxed),
        Err(_) => log.write_errors.fetch_add(*lines, Ordering::Relaxed),
    };
    *lines = 0;
}

#[cfg(test)]
mod tests;
