//! Santa's `Event` for one execution the log recorded: the record's facts under the sync
//! protocol's names, and what Santa adds at the time (the parent's name, who is logged in).

use crate::eventlog::Record;
use crate::sync::decision::event_decision;
use santa_rules::SigningStatus;
use santa_sync::proto;
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The parent's name, as the kernel has it now (`/proc/PPID/comm`), read only for spooled events.
fn parent_name(ppid: i32) -> String {
    if ppid <= 0 {
        return String::new();
    }
    std::fs::read(format!("/proc/{ppid}/comm"))
        .map(|b| text(b.strip_suffix(b"\n").unwrap_or(&b)))
        .unwrap_or_default()
}

/// Who is logged in, as Santa reports it with each event (from utmp: `USER_PROCESS` entries;
/// each user once, each session `user@host` for a remote one, else `user@line`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    /// `logged_in_users`.
    pub users: Vec<String>,
    /// `current_sessions`.
    pub sessions: Vec<String>,
}

/// Longest a utmp reading is reused: a login seconds ago may be missed, never a stale one kept
/// long.
const SESSIONS_TTL: Duration = Duration::from_secs(5);
/// At most this many sessions are reported (utmp is a local file any login adds to).
#[cfg(target_os = "linux")]
const SESSIONS_MAX: usize = 64;

impl Sessions {
    /// Reads utmp now. The utmpx functions keep static state: only the logger thread calls
    /// this, under the lock of [`sessions_now`].
    #[cfg(target_os = "linux")]
    fn read() -> Sessions {
        let field = |bytes: &[libc::c_char]| {
            let bytes: Vec<u8> = bytes
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let mut out = Sessions::default();
        // SAFETY: setutxent/getutxent/endutxent walk the system's utmp file; the returned
        // pointer is valid until the next call, and it is read before that.
        unsafe {
            libc::setutxent();
            loop {
                let entry = libc::getutxent();
                if entry.is_null() || out.sessions.len() >= SESSIONS_MAX {
                    break;
                }
                let e = &*entry;
                if e.ut_type != libc::USER_PROCESS {
                    continue;
                }
                let user = field(&e.ut_user);
                let host = field(&e.ut_host);
                let place = if host.is_empty() {
                    field(&e.ut_line)
                } else {
                    host
                };
                out.sessions.push(format!("{user}@{place}"));
                if !user.is_empty() && !out.users.contains(&user) {
                    out.users.push(user);
                }
            }
            libc::endutxent();
        }
        out
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Sessions {
        Sessions::default()
    }
}

/// The sessions, read at most every [`SESSIONS_TTL`].
fn sessions_now() -> Sessions {
    static CACHE: Mutex<Option<(Instant, Sessions)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    match &*cache {
        Some((at, s)) if at.elapsed() < SESSIONS_TTL => s.clone(),
        _ => {
            let s = Sessions::read();
            *cache = Some((Instant::now(), s.clone()));
            s
        }
    }
}

/// Santa's `Event` for one EXEC record.
pub fn event_of(rec: &Record) -> proto::Event {
    let sessions = sessions_now();
    let path = rec.path.as_bytes();
    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (&path[..1], &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    };
    let execution_time = rec
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut event = proto::Event {
        file_sha256: rec.sha256.map(|h| hex(&h)).unwrap_or_default(),
        file_path: text(dir),
        file_name: text(name),
        executing_user: text(rec.user.as_bytes()),
        execution_time,
        decision: event_decision(rec.decision, rec.reason),
        pid: rec.pid,
        ppid: rec.ppid,
        parent_name: parent_name(rec.ppid),
        team_id: text(rec.team_id.as_bytes()),
        signing_id: text(rec.signing_id.as_bytes()),
        cdhash: rec.cdhash.map(|h| hex(&h)).unwrap_or_default(),
        signing_status: match rec.signing_status {
            None => proto::SigningStatus::Unspecified,
            Some(SigningStatus::Unsigned) => proto::SigningStatus::Unsigned,
            Some(SigningStatus::Invalid) => proto::SigningStatus::Invalid,
            Some(SigningStatus::AdHoc) => proto::SigningStatus::Adhoc,
            Some(SigningStatus::Development) => proto::SigningStatus::Development,
            Some(SigningStatus::Production) => proto::SigningStatus::Production,
        },
        // Santa always sends it; santad reads no entitlements on Linux, so none, unfiltered.
        entitlement_info: Some(proto::EntitlementInfo {
            entitlements_filtered: Some(false),
            entitlements: Vec::new(),
        }),
        logged_in_users: sessions.users,
        current_sessions: sessions.sessions,
        ..proto::Event::default()
    };
    if let Some(cert) = rec.cert_sha256 {
        event.signing_chain.push(proto::Certificate {
            sha256: hex(&cert),
            cn: text(rec.cert_cn.as_bytes()),
            ..proto::Certificate::default()
        });
    }
    event
}
