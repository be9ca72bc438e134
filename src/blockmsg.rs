//! Santa's block message on the blocked process's controlling terminal.
//!
//! Where it is called: a worker that answered `Deny` (after the response, never before) hands a
//! [`BlockNotice`] to [`BlockMessenger::notify`], which only pushes onto a bounded queue and
//! returns — a full queue drops the notice and counts it. One messenger thread renders the text
//! and writes it to the terminal with a non-blocking fd and a deadline
//! ([`TTY_WRITE_TIMEOUT`]), so a stuck terminal (flow control, a full pty nobody reads) costs
//! that thread at most the timeout and never a worker anything.
//!
//! Text, as santad's `SNTExecutionController` prints it for a blocked exec:
//! `\n\x1b[1mSanta\x1b[0m\n\n{message}\n\n` then `Reason:`, `Path:`, `Identifier:` (the SHA-256)
//! and `Parent:` lines with bold labels, then `More info:\n{url}\n` when there is a URL. The
//! message is the rule's custom message, else `UnknownBlockMessage` (no rule matched) or
//! `BannedBlockMessage` (a rule blocked), else Santa's defaults; HTML in it is reduced to text
//! as Santa's CLI path does (`<br />` → newline, other tags dropped). The URL is the rule's custom
//! URL, else `EventDetailURL`, with Santa's `%placeholders%` replaced by percent-encoded values;
//! `"null"` means none. Values that come from the process (path, parent name) have control
//! characters replaced with `?`, so a file name cannot send escape sequences to the terminal.

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use santa_rules as rules;

/// Notices waiting for the messenger thread. Denies are rare and each message is for a human;
/// 64 covers a burst (a script looping on a blocked tool) without holding memory for more.
pub const BLOCK_QUEUE_DEPTH: usize = 64;
/// Longest time spent writing one message to a terminal.
pub const TTY_WRITE_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest message written (custom messages are bounded by the config's string limit; this caps
/// the whole text).
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;
/// How long the messenger thread sleeps when idle before checking its stop flag.
const IDLE: Duration = Duration::from_millis(100);

/// Santa's default text for a block in Lockdown with no matching rule.
pub const DEFAULT_UNKNOWN_MESSAGE: &str = "The following application has been blocked from executing<br />because its trustworthiness cannot be determined";
/// Santa's default text for a block by a rule.
pub const DEFAULT_BANNED_MESSAGE: &str = "The following application has been blocked from<br />executing because it has been deemed malicious or against policy";

/// Santa's `Reason:` text for a block (`blockReasonForEvent`). A transitive rule is a Binary
/// rule to Santa; no rule (and the reasons that never deny: platform, failsafe) is "No matching
/// rule".
pub fn reason_text(reason: rules::Reason) -> &'static str {
    match reason {
        rules::Reason::Binary | rules::Reason::Transitive => "Binary rule",
        rules::Reason::Cert => "Certificate rule",
        rules::Reason::TeamId => "Team ID rule",
        rules::Reason::SigningId => "Signing ID rule",
        rules::Reason::CdHash => "CDHash rule",
        rules::Reason::Scope => "Blocked path regex",
        rules::Reason::Unknown | rules::Reason::Platform | rules::Reason::Failsafe => {
            "No matching rule"
        }
    }
}

/// The block had no rule behind it (Lockdown, unknown binary): Santa's `UnknownBlockMessage`
/// rather than its `BannedBlockMessage`.
fn no_matching_rule(reason: rules::Reason) -> bool {
    matches!(
        reason,
        rules::Reason::Unknown | rules::Reason::Platform | rules::Reason::Failsafe
    )
}

/// Everything the message needs about one blocked exec.
#[derive(Debug, Clone, Default)]
pub struct BlockNotice {
    /// The terminal to write to (from /proc/PID/stat's tty_nr; see `procinfo::tty_path`).
    pub tty: PathBuf,
    /// Why (the decision's reason; see [`reason_text`]).
    pub reason: Option<rules::Reason>,
    /// The blocked file's path.
    pub path: String,
    /// Its SHA-256, lowercase hex (the Identifier line and `%file_identifier%`).
    pub sha256: Option<String>,
    /// The bundle hash, when the file is in a bundle (`%bundle_or_file_identifier%`).
    pub bundle_hash: Option<String>,
    /// The bundle identifier (`%file_bundle_id%`).
    pub bundle_id: Option<String>,
    /// Team ID (`%team_id%`).
    pub team_id: Option<String>,
    /// Signing ID (`%signing_id%`).
    pub signing_id: Option<String>,
    /// CDHash (`%cdhash%`).
    pub cdhash: Option<String>,
    /// The executing user's name (`%username%`).
    pub username: Option<String>,
    /// The parent's command name.
    pub parent_name: String,
    /// The parent's pid.
    pub ppid: i32,
    /// The matched rule's custom message.
    pub custom_message: Option<String>,
    /// The matched rule's custom URL.
    pub custom_url: Option<String>,
}

/// Config and host values the message uses.
#[derive(Debug, Clone, Default)]
pub struct MessageConfig {
    /// `UnknownBlockMessage`.
    pub unknown_block_message: Option<String>,
    /// `BannedBlockMessage`.
    pub banned_block_message: Option<String>,
    /// `EventDetailURL`.
    pub event_detail_url: Option<String>,
    /// `EventDetailText`: the label of the desktop notice's "open the URL" action.
    pub event_detail_text: Option<String>,
    /// `EnableSilentMode`: no desktop notices at all.
    pub silent_gui: bool,
    /// `EnableSilentTTYMode`: no terminal messages at all.
    pub silent_tty: bool,
    /// `MachineID` (`%machine_id%`).
    pub machine_id: Option<String>,
    /// `%hostname%`.
    pub hostname: Option<String>,
    /// `%uuid%` (on Linux: the DMI product UUID when readable).
    pub uuid: Option<String>,
    /// `%serial%` (on Linux: the DMI product serial when readable).
    pub serial: Option<String>,
}

impl MessageConfig {
    /// Fills hostname, uuid and serial from this host (best effort; missing stays `None`).
    pub fn with_host_facts(mut self) -> MessageConfig {
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length; gethostname NUL-terminates within it or
        // truncates (then the last byte is left 0 because the buffer was zeroed and we pass
        // len - 1).
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            self.hostname = Some(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        self.uuid = read("/sys/class/dmi/id/product_uuid");
        self.serial = read("/sys/class/dmi/id/product_serial");
        self
    }
}

/// Percent-encodes all but RFC 3986 unreserved characters (as Santa does for template values,
/// which may sit in a URL path or query).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The "More info" URL: `custom_url` (the rule's) or the config's template; `None` when empty
/// or `"null"`. Placeholders with no value are left as they are (as Santa does).
pub fn detail_url(notice: &BlockNotice, config: &MessageConfig) -> Option<String> {
    let template = notice
        .custom_url
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(config.event_detail_url.as_deref())?;
    if template.is_empty() || template == "null" {
        return None;
    }
    let bundle_or_file = notice
        .sha256
        .as_ref()
        .map(|sha| notice.bundle_hash.as_ref().unwrap_or(sha));
    let mapping: [(&str, Option<&String>); 12] = [
        ("%file_sha%", bundle_or_file),
        ("%file_identifier%", notice.sha256.as_ref()),
        ("%bundle_or_file_identifier%", bundle_or_file),
        ("%username%", notice.username.as_ref()),
        ("%file_bundle_id%", notice.bundle_id.as_ref()),
        ("%team_id%", notice.team_id.as_ref()),
        ("%signing_id%", notice.signing_id.as_ref()),
        ("%cdhash%", notice.cdhash.as_ref()),
        ("%machine_id%", config.machine_id.as_ref()),
        ("%hostname%", config.hostname.as_ref()),
        ("%uuid%", config.uuid.as_ref()),
        ("%serial%", config.serial.as_ref()),
    ];
    let mut url = template.to_owned();
    for (key, value) in mapping {
        if let Some(value) = value {
            url = url.replace(key, &percent_encode(value));
        }
    }
    Some(url)
}

/// Reduces Santa's HTML-ish message to terminal text: `<br>`/`<br/>`/`<br />` → newline, other
/// tags and `<style>` contents dropped, a few entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut in_style = false;
    while let Some(start) = rest.find('<') {
        if !in_style {
            out.push_str(&rest[..start]);
        }
        let Some(end) = rest[start..].find('>') else {
            // An unterminated '<' is text.
            if !in_style {
                out.push_str(&rest[start..]);
            }
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        let name = tag
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("");
        match name {
            "br" if !in_style => out.push('\n'),
            "style" => in_style = !tag.starts_with('/'),
            _ => {}
        }
        rest = &rest[start + end + 1..];
    }
    if !in_style {
        out.push_str(rest);
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Replaces control characters (escape sequences, newlines) with `?`.
fn terminal_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Santa's block message for a block of `reason` (Santa's HTML-ish text, as configured): the
/// rule's custom message, else `UnknownBlockMessage` (no rule matched) or `BannedBlockMessage`
/// (a rule blocked), else Santa's default for the case.
pub fn block_message<'a>(
    reason: Option<rules::Reason>,
    custom_message: Option<&'a str>,
    config: &'a MessageConfig,
) -> &'a str {
    let unknown = reason.is_some_and(no_matching_rule);
    let fallback = if unknown {
        DEFAULT_UNKNOWN_MESSAGE
    } else {
        DEFAULT_BANNED_MESSAGE
    };
    let configured = if unknown {
        config.unknown_block_message.as_deref()
    } else {
        config.banned_block_message.as_deref()
    };
    custom_message
        .filter(|m| !m.is_empty())
        .or(configured.filter(|m| !m.is_empty()))
        .unwrap_or(fallback)
}

/// Renders the whole terminal text.
pub fn render(notice: &BlockNotice, config: &MessageConfig) -> String {
    let message = block_message(notice.reason, notice.custom_message.as_deref(), config);
    let mut text = String::with_capacity(1024);
    let _ = write!(
        text,
        "\n\x1b[1mSanta\x1b[0m\n\n{}\n\n",
        html_to_text(message)
    );
    let _ = write!(
        text,
        "\x1b[1mReason:    \x1b[0m {}\n\x1b[1mPath:      \x1b[0m {}\n\x1b[1mIdentifier:\x1b[0m {}\n\x1b[1mParent:    \x1b[0m {} ({})\n\n",
        notice.reason.map_or("Unknown", reason_text),
        terminal_safe(&notice.path),
        notice
            .sha256
            .as_deref()
            .map(terminal_safe)
            .unwrap_or_default(),
        terminal_safe(&notice.parent_name),
        notice.ppid
    );
    if let Some(url) = detail_url(notice, config) {
        let _ = write!(text, "More info:\n{}\n", terminal_safe(&url));
    }
    if text.len() > MESSAGE_BYTES_MAX {
        let mut cut = MESSAGE_BYTES_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('\n');
    }
    text
}

/// Why one message was not written.
#[derive(Debug)]
pub enum WriteError {
    /// Opening the terminal failed.
    Open(io::Error),
    /// Writing failed.
    Write(io::Error),
    /// The terminal did not take the whole text within [`TTY_WRITE_TIMEOUT`].
    Timeout {
        /// Bytes written before giving up.
        written: usize,
    },
}

/// Writes `text` to the terminal at `tty` (non-blocking, bounded by `timeout`).
pub fn write_to_tty(
    tty: &std::path::Path,
    text: &[u8],
    timeout: Duration,
) -> Result<(), WriteError> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(tty.as_os_str().as_bytes())
        .map_err(|_| WriteError::Open(io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: c_path is a valid NUL-terminated path. O_NOCTTY: never make the daemon this
    // terminal's controlling process.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(WriteError::Open(io::Error::last_os_error()));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let deadline = Instant::now() + timeout;
    let mut written = 0;
    while written < text.len() {
        let rest = &text[written..];
        // SAFETY: rest is a live byte slice; the fd is valid.
        let n = unsafe { libc::write(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            written += n as usize;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(WriteError::Timeout { written });
                }
                let left_ms = left.as_millis().min(i32::MAX as u128) as i32;
                crate::fdwait::wait_for(fd.as_raw_fd(), libc::POLLOUT, left_ms);
            }
            _ => return Err(WriteError::Write(err)),
        }
    }
    Ok(())
}

struct Shared {
    queue: ArrayQueue<Box<BlockNotice>>,
    /// The settings messages are written with; replaced on reload.
    config: std::sync::Mutex<Arc<MessageConfig>>,
    dropped: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

/// The messenger: a bounded queue and one thread that writes to terminals.
pub struct BlockMessenger {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BlockMessenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockMessenger")
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl BlockMessenger {
    /// Starts the thread.
    pub fn spawn(config: MessageConfig) -> io::Result<BlockMessenger> {
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(BLOCK_QUEUE_DEPTH),
            config: std::sync::Mutex::new(Arc::new(config)),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("santad-blockmsg".into())
            .spawn(move || {
                let shared = thread_shared;
                loop {
                    while let Some(notice) = shared.queue.pop() {
                        let config = shared
                            .config
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone();
                        if config.silent_tty {
                            // EnableSilentTTYMode: Santa's TTY writer is created silent.
                            continue;
                        }
                        let text = render(&notice, &config);
                        match write_to_tty(&notice.tty, text.as_bytes(), TTY_WRITE_TIMEOUT) {
                            Ok(()) => shared.written.fetch_add(1, Ordering::Relaxed),
                            Err(_) => shared.failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::park_timeout(IDLE);
                }
            })?;
        Ok(BlockMessenger {
            shared,
            thread: Some(thread),
        })
    }

    /// Where the settings can be replaced while the messenger runs (a reload, a sync server's
    /// event detail URL), after the messenger itself has gone to its responder.
    pub fn settings(&self) -> MessageSettings {
        MessageSettings(self.shared.clone())
    }

    /// Queues a notice; never blocks. A full queue hands the notice back and counts a drop.
    pub fn notify(&self, notice: Box<BlockNotice>) -> Result<(), Box<BlockNotice>> {
        match self.shared.queue.push(notice) {
            Ok(()) => {
                if let Some(t) = &self.thread {
                    t.thread().unpark();
                }
                Ok(())
            }
            Err(notice) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                Err(notice)
            }
        }
    }

    /// Notices dropped on a full queue.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Messages written in full.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Messages that could not be written (no such terminal, timeout, error).
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }
}

/// A handle on a running messenger's settings ([`BlockMessenger::settings`]).
#[derive(Clone)]
pub struct MessageSettings(Arc<Shared>);

impl std::fmt::Debug for MessageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageSettings")
    }
}

impl MessageSettings {
    /// Messages from now on are written with `config`.
    pub fn set(&self, config: MessageConfig) {
        *self.0.config.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
    }
}

impl Drop for BlockMessenger {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> BlockNotice {
        BlockNotice {
            reason: Some(rules::Reason::Unknown),
            path: "/tmp/evil".into(),
            sha256: Some("ab".repeat(32)),
            parent_name: "bash".into(),
            ppid: 42,
            username: Some("alice smith".into()),
            ..BlockNotice::default()
        }
    }

    #[test]
    fn default_unknown_message_matches_santa() {
        let text = render(&notice(), &MessageConfig::default());
        let want = format!(
            "\n\x1b[1mSanta\x1b[0m\n\nThe following application has been blocked from executing\nbecause its trustworthiness cannot be determined\n\n\x1b[1mReason:    \x1b[0m No matching rule\n\x1b[1mPath:      \x1b[0m /tmp/evil\n\x1b[1mIdentifier:\x1b[0m {}\n\x1b[1mParent:    \x1b[0m bash (42)\n\n",
            "ab".repeat(32)
        );
        assert_eq!(text, want);
    }

    #[test]
    fn message_precedence_rule_then_config_then_default() {
        let mut n = notice();
        n.reason = Some(rules::Reason::Binary);
        let config = MessageConfig {
            unknown_block_message: Some("unknown: ask IT".into()),
            banned_block_message: Some("banned:<br/>no".into()),
            ..MessageConfig::default()
        };
        assert!(render(&n, &config).contains("\n\nbanned:\nno\n\n"));
        assert!(
            render(&n, &MessageConfig::default()).contains("deemed malicious or against policy")
        );
        n.reason = Some(rules::Reason::Unknown);
        assert!(render(&n, &config).contains("\n\nunknown: ask IT\n\n"));
        n.custom_message = Some("<b>Rule</b> says no".into());
        assert!(render(&n, &config).contains("\n\nRule says no\n\n"));
    }

    #[test]
    fn detail_url_placeholders_are_encoded() {
        let mut n = notice();
        let config = MessageConfig {
            event_detail_url: Some(
                "https://x.example/b?s=%file_sha%&u=%username%&m=%machine_id%&t=%team_id%".into(),
            ),
            machine_id: Some("m/1".into()),
            ..MessageConfig::default()
        };
        let url = detail_url(&n, &config).expect("url");
        assert_eq!(
            url,
            format!(
                "https://x.example/b?s={}&u=alice%20smith&m=m%2F1&t=%team_id%",
                "ab".repeat(32)
            )
        );
        n.bundle_hash = Some("cd".repeat(32));
        assert!(
            detail_url(&n, &config)
                .expect("url")
                .contains(&format!("s={}", "cd".repeat(32)))
        );
        n.custom_url = Some("null".into());
        assert_eq!(
            detail_url(&n, &config),
            None,
            "a rule's \"null\" URL means none"
        );
        let text = render(&notice(), &config);
        assert!(text.ends_with(&format!("More info:\n{url}\n")), "{text}");
    }

    #[test]
    fn hostile_path_cannot_send_escapes() {
        let mut n = notice();
        n.path = "/tmp/\x1b]0;pwned\x07\nfake".into();
        let text = render(&n, &MessageConfig::default());
        assert!(text.contains("/tmp/?]0;pwned??fake"));
        assert_eq!(
            text.matches('\x1b').count(),
            10,
            "only our own bold on/off sequences"
        );
    }

    #[test]
    fn html_reduction() {
        assert_eq!(html_to_text("a<br />b<br>c<BR/>d"), "a\nb\nc\nd");
        assert_eq!(html_to_text("<style>p{}</style><p>x &amp; y</p>"), "x & y");
        assert_eq!(html_to_text("1 < 2"), "1 < 2");
    }

    /// A pty pair: (master fd, slave path).
    fn open_pty() -> (OwnedFd, PathBuf) {
        // SAFETY: posix_openpt returns a new fd or -1.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(master >= 0, "posix_openpt: {}", io::Error::last_os_error());
        // SAFETY: master is a fresh fd we own.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: master is a pty master; name is writable for its length (128 bytes, what
        // TIOCPTYGNAME writes on macOS).
        unsafe {
            assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
            assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
            #[cfg(target_os = "linux")]
            assert_eq!(
                libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
                0
            );
            // macOS has no ptsname_r: the slave's name comes from ioctl(TIOCPTYGNAME), which
            // libc does not define (<sys/ttycom.h>: _IOC(IOC_OUT, 't', 83, 128)).
            #[cfg(target_os = "macos")]
            assert_eq!(
                libc::ioctl(master.as_raw_fd(), 0x4080_7453, name.as_mut_ptr()),
                0
            );
        }
        // SAFETY: the call above NUL-terminated the name inside the buffer.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        (master, PathBuf::from(path))
    }

    fn read_master(master: &OwnedFd, want: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.len() < want && Instant::now() < deadline {
            if crate::fdwait::wait_for(master.as_raw_fd(), libc::POLLIN, 100) == 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            // SAFETY: buf is writable for its length.
            let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        out
    }

    #[test]
    fn messenger_writes_to_a_terminal() {
        let (master, slave) = open_pty();
        // Raw-ish: the line discipline would turn "\n" into "\r\n" (onlcr); compare without '\r'.
        let messenger = BlockMessenger::spawn(MessageConfig::default()).expect("spawn");
        let n = BlockNotice {
            tty: slave,
            ..notice()
        };
        let want = render(&n, &MessageConfig::default());
        messenger.notify(Box::new(n)).expect("queued");
        let got = read_master(&master, want.len() + want.matches('\n').count());
        let got: Vec<u8> = got.into_iter().filter(|&b| b != b'\r').collect();
        assert_eq!(String::from_utf8_lossy(&got), want);
        drop(messenger);
    }

    #[test]
    fn new_settings_apply_to_the_next_message() {
        let (master, slave) = open_pty();
        let messenger = BlockMessenger::spawn(MessageConfig::default()).expect("spawn");
        let config = MessageConfig {
            unknown_block_message: Some("Ask the fleet admins".into()),
            ..MessageConfig::default()
        };
        messenger.settings().set(config.clone());
        let n = BlockNotice {
            tty: slave,
            ..notice()
        };
        let want = render(&n, &config);
        assert!(want.contains("Ask the fleet admins"));
        messenger.notify(Box::new(n)).expect("queued");
        let got = read_master(&master, want.len() + want.matches('\n').count());
        let got: Vec<u8> = got.into_iter().filter(|&b| b != b'\r').collect();
        assert_eq!(String::from_utf8_lossy(&got), want);
    }

    #[test]
    fn stuck_terminal_times_out() {
        let (_master, slave) = open_pty();
        // Nobody reads the master: the pty buffer fills and the write must give up in time.
        let big = vec![b'x'; 1 << 20];
        let start = Instant::now();
        let result = write_to_tty(&slave, &big, Duration::from_millis(100));
        assert!(matches!(result, Err(WriteError::Timeout { written }) if written < big.len()));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn missing_terminal_fails_and_full_queue_drops() {
        assert!(matches!(
            write_to_tty(
                std::path::Path::new("/nonexistent/tty"),
                b"x",
                TTY_WRITE_TIMEOUT
            ),
            Err(WriteError::Open(_))
        ));
        let messenger = BlockMessenger::spawn(MessageConfig::default()).expect("spawn");
        let mut refused = 0;
        for _ in 0..(BLOCK_QUEUE_DEPTH * 4) {
            let n = BlockNotice {
                tty: "/nonexistent/tty".into(),
                ..notice()
            };
            if messenger.notify(Box::new(n)).is_err() {
                refused += 1;
            }
        }
        assert_eq!(messenger.dropped(), refused);
        let deadline = Instant::now() + Duration::from_secs(5);
        while messenger.failed() + messenger.dropped() < (BLOCK_QUEUE_DEPTH * 4) as u64 {
            assert!(Instant::now() < deadline, "messenger did not drain");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(messenger.written(), 0);
    }
}
