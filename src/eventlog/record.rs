//! One log record: the fixed-capacity texts it is made of ([`Text`]), the bounds on each field,
//! and which line it becomes ([`RecordKind`]).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::ClientMode;
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
pub enum RecordKind {
    /// `action=EXEC`.
    Exec,
    /// `action=BUNDLE` (bundle hash of a denied binary's bundle).
    Bundle,
    /// `action=ALLOWLIST`: a transitive rule was added for a file a compiler wrote (Santa's
    /// `LogAllowlist`: the writer's pid, the file's path and SHA-256).
    Allowlist,
}

/// One log record: fixed size, preallocated, reused. A worker fills what it knows; empty texts
/// and `None`s are left out of the line where Santa leaves them out.
#[derive(Debug, Clone)]
pub struct Record {
    /// EXEC or BUNDLE.
    pub kind: RecordKind,
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
    /// How the file is signed (not in the log lines: for the sync server's events).
    pub signing_status: Option<rules::SigningStatus>,
    /// The user notices this decision suppresses (a silent block rule; a refused
    /// `AT_EXECVE_CHECK`, which ran nothing). Not in the log lines: for the desktop notices.
    pub silence: rules::Silence,
    /// The matched rule's custom block message, URL and button label (not in the log lines: for
    /// the desktop notices). Shared with the rules snapshot: setting it copies reference counts
    /// and never allocates.
    pub custom: rules::CustomText,
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
            kind: RecordKind::Exec,
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
            signing_status: None,
            silence: rules::Silence::default(),
            custom: rules::CustomText::default(),
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
        self.kind = RecordKind::Exec;
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
        self.signing_status = None;
        self.silence = rules::Silence::default();
        self.custom = rules::CustomText::default();
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
