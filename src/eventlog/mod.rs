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
//!
//! By job: `record` (the record and its bounds), `format` (the two line formats), `ring` (the
//! ring and the logger thread), `writer` (the file, stdout, reopening), `recent` (our own recent
//! allows, so the notification of each is not logged again).

mod format;
mod recent;
mod record;
mod ring;
mod writer;

pub use format::{decision_word, format_json, format_key_value, iso8601_utc_millis, sanitize_into};
pub use recent::{RECENT_ALLOWS, RecentAllows};
pub use record::{
    ARGS_BYTES_MAX, BUNDLE_PATH_BYTES_MAX, BUNDLE_TEXT_BYTES_MAX, CERT_CN_BYTES_MAX,
    EXPLAIN_BYTES_MAX, NAME_BYTES_MAX, PATH_BYTES_MAX, Record, RecordKind, SIGNING_ID_BYTES_MAX,
    TEAM_ID_BYTES_MAX, TRUNCATED_MARKER, Text,
};
pub use ring::{EventLog, LoggerHandle, REASONS, RecordSlot, RecordTap, TAPS_MAX, spawn_logger};
use writer::WRITE_BATCH_BYTES;
pub use writer::{LogWriter, OpenError, WriterConfig};

#[cfg(test)]
mod tests;
