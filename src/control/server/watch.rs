//! Block watchers (`santa-notify`, [`Request::WatchBlocks`]): the connections that get a
//! [`BlockEvent`] for each blocked execution of their user, and the one thread that writes to
//! them.
//!
//! Data flow: the logger thread hands every record to [`BlockWatchers`] (a
//! [`crate::eventlog::RecordTap`], after the line is formatted, never on a worker). For a
//! notifiable block — an EXEC deny that no silent rule or `EnableSilentMode` keeps quiet, of a
//! uid someone watches — it renders the notice once (Santa's message and URL, as
//! [`crate::blockmsg`] computes them for the terminal), encodes it as one message, and pushes a
//! reference to it onto the bounded queue of each watcher that may see it. A full queue drops
//! the notice for that watcher and counts it (`notify.dropped`): the logger never waits. The
//! writer thread takes queued messages and writes them with non-blocking writes, sleeping in
//! one `poll` over every watcher's socket and its wake socket.
//!
//! Bounds, each against a local user who controls the client:
//! - Watchers do not hold a control handler: a handler reads the request, takes a place here,
//!   answers, and hands the socket over; the dispatcher's slots are free again at once.
//! - At most [`WATCHERS_PER_UID_MAX`] per uid and [`WATCHERS_MAX`] for all non-root uids;
//!   root has its own [`WATCHERS_PER_UID_MAX`] beside them, so users cannot lock root out.
//! - Per watcher, [`WATCHER_QUEUE_DEPTH`] notices; one that takes none of the bytes of a
//!   pending notice for [`WATCHER_STALL_MAX`] is closed (`notify.closed_stalled`), freeing its
//!   place. A quiet watcher with nothing pending is never closed.
//! - A watcher sends nothing after its request: any byte it sends, or its hang-up, closes it.
//!
//! Who sees what: a watcher sees the blocks of execs whose real uid is its own (the kernel's
//! record of the peer, `SO_PEERCRED`), root included: an agent in root's desktop session is
//! told of root's blocks, not of every user's. Root may ask for every user's (`all_users`): the
//! decision log it can read holds them anyway; nobody else may.

use super::*;
use crate::blockmsg::{self, BlockNotice, MessageConfig};
use crate::eventlog::{Record, RecordKind, RecordTap};
use crossbeam_queue::ArrayQueue;
use std::io::Read;
use std::sync::atomic::AtomicUsize;

/// Watchers one uid may have at once: an agent per graphical session; four leave room for a
/// user logged in on a few seats, and bound what one user makes santad hold.
pub const WATCHERS_PER_UID_MAX: usize = 4;
/// Watchers all non-root uids together may have: a shared host's desktop sessions; each costs
/// an fd and at most a queue of references. Root's own places are beside these.
pub const WATCHERS_MAX: usize = 64;
/// Notices held for one watcher that is not reading (or between two of the writer's passes):
/// a burst of blocks (a script looping on a blocked tool) is more than anyone reads anyway.
pub const WATCHER_QUEUE_DEPTH: usize = 32;
/// A watcher that takes none of a pending notice's bytes for this long is closed: it does not
/// read, and its place is better given to an agent that does.
pub const WATCHER_STALL_MAX: Duration = Duration::from_secs(30);
/// How long the writer sleeps in `poll` when nothing wakes it (stop flag and stall checks).
const WRITER_POLL_MS: i32 = 500;

/// Counters of the block watchers (`notify.*` in `santactl metrics`).
#[derive(Debug, Default)]
pub struct WatchCounters {
    /// Watches taken.
    pub accepted: AtomicU64,
    /// Watches refused: a place limit, or `all_users` from a non-root peer.
    pub refused: AtomicU64,
    /// Notices written whole to a watcher.
    pub sent: AtomicU64,
    /// Notices dropped because a watcher's queue was full.
    pub dropped: AtomicU64,
    /// Blocks no notice was made for because they were silent (a silent rule, a refused
    /// `AT_EXECVE_CHECK`, `EnableSilentMode`) while someone watched.
    pub silenced: AtomicU64,
    /// Watchers closed (hang-up, input, a write error, stall, shutdown).
    pub closed: AtomicU64,
    /// Of those, closed for not reading ([`WATCHER_STALL_MAX`]).
    pub closed_stalled: AtomicU64,
}

/// One watcher, as the tap sees it.
#[derive(Debug)]
struct Watcher {
    /// The peer's uid.
    uid: u32,
    /// Every user's blocks (root only).
    all_users: bool,
    /// Encoded messages (header and JSON), shared by every watcher they are for.
    queue: ArrayQueue<Arc<[u8]>>,
}

impl Watcher {
    fn wants(&self, uid: u32) -> bool {
        self.all_users || self.uid == uid
    }
}

/// A watcher's connection, as the writer thread holds it.
#[derive(Debug)]
struct Conn {
    watcher: Arc<Watcher>,
    stream: UnixStream,
    /// The message being written and how much of it is out.
    partial: Option<(Arc<[u8]>, usize)>,
    /// Since when a pending message has made no progress.
    stalled_since: Option<Instant>,
}

/// Places taken, by uid (reserved at the request, given back when the connection closes).
#[derive(Debug, Default)]
struct Places {
    per_uid: HashMap<u32, usize>,
    /// Non-root places taken.
    users: usize,
}

/// Why a watch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchRefusal {
    /// This uid already has [`WATCHERS_PER_UID_MAX`].
    UidLimit,
    /// Non-root uids together have [`WATCHERS_MAX`].
    Full,
    /// santad is stopping.
    Stopping,
}

impl fmt::Display for WatchRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UidLimit => write!(
                f,
                "this user already has {WATCHERS_PER_UID_MAX} block watchers; close one first"
            ),
            Self::Full => write!(
                f,
                "santad has {WATCHERS_MAX} block watchers; try again later"
            ),
            Self::Stopping => f.write_str("santad is shutting down"),
        }
    }
}

/// The block watchers: the tap, the places and the hand-over to the writer thread.
pub struct BlockWatchers {
    /// Active watchers (the tap's list). Locked by the logger for one block at a time and by
    /// the writer when a watcher comes or goes.
    watchers: Mutex<Vec<Arc<Watcher>>>,
    /// `watchers.len()`, read without the lock: no watcher, no work for the logger.
    active: AtomicUsize,
    places: Mutex<Places>,
    /// Connections handed over, for the writer to take.
    incoming: Mutex<Vec<Conn>>,
    /// The writer's wake-up: a byte written here ends its `poll`.
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    config: Mutex<Arc<MessageConfig>>,
    stopping: AtomicBool,
    /// A writer thread runs (one per set of watchers).
    writer_claimed: AtomicBool,
    /// [`WATCHER_STALL_MAX`], shorter in tests.
    stall_max: Duration,
    /// The counters.
    pub counters: WatchCounters,
}

impl fmt::Debug for BlockWatchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockWatchers")
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A place taken for a watcher that is being answered; given back on drop unless the
/// connection is handed to the writer ([`Place::start`]).
#[derive(Debug)]
pub struct Place<'a> {
    watchers: &'a BlockWatchers,
    uid: u32,
    all_users: bool,
    taken: bool,
}

impl Place<'_> {
    /// Hands the answered connection to the writer thread, which keeps the place until it
    /// closes the connection.
    pub fn start(mut self, stream: UnixStream) {
        self.taken = false;
        let watcher = Arc::new(Watcher {
            uid: self.uid,
            all_users: self.all_users,
            queue: ArrayQueue::new(WATCHER_QUEUE_DEPTH),
        });
        if stream.set_nonblocking(true).is_err() {
            self.watchers.release(self.uid);
            self.watchers
                .counters
                .closed
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Listed for the tap now, so no block between the answer and the writer's next pass is
        // missed; the writer sends what queued meanwhile.
        {
            let mut list = lock(&self.watchers.watchers);
            list.push(watcher.clone());
            self.watchers.active.store(list.len(), Ordering::Relaxed);
        }
        lock(&self.watchers.incoming).push(Conn {
            watcher,
            stream,
            partial: None,
            stalled_since: None,
        });
        self.watchers.wake();
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.taken {
            self.watchers.release(self.uid);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The notice for a blocked exec's record, with Santa's message and URL under `config`.
pub fn block_event(rec: &Record, config: &MessageConfig) -> BlockEvent {
    let sha256 = rec.sha256.map(|s| hex(&s));
    let user = (!rec.user.is_empty()).then(|| lossy(rec.user.as_bytes()));
    let notice = BlockNotice {
        reason: Some(rec.reason),
        path: lossy(rec.path.as_bytes()),
        sha256: sha256.clone(),
        team_id: (!rec.team_id.is_empty()).then(|| lossy(rec.team_id.as_bytes())),
        signing_id: (!rec.signing_id.is_empty()).then(|| lossy(rec.signing_id.as_bytes())),
        cdhash: rec.cdhash.map(|c| hex(&c)),
        username: user.clone(),
        ppid: rec.ppid,
        custom_message: rec.custom.msg.as_deref().map(str::to_owned),
        custom_url: rec.custom.url.as_deref().map(str::to_owned),
        ..BlockNotice::default()
    };
    let message = blockmsg::html_to_text(blockmsg::block_message(
        notice.reason,
        notice.custom_message.as_deref(),
        config,
    ));
    let url = blockmsg::detail_url(&notice, config).map(|u| cut(u, BLOCK_TEXT_BYTES_MAX));
    let url_label = rec
        .custom
        .button
        .as_deref()
        .or(config.event_detail_text.as_deref())
        .filter(|t| !t.is_empty())
        .unwrap_or("Open");
    BlockEvent {
        time_ms: rec
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        pid: rec.pid,
        ppid: rec.ppid,
        uid: rec.uid,
        user,
        path: notice.path,
        identifier: sha256,
        team_id: notice.team_id,
        signing_id: notice.signing_id,
        reason: rec.reason.as_str().to_owned(),
        reason_text: blockmsg::reason_text(rec.reason).to_owned(),
        message: cut(message, BLOCK_TEXT_BYTES_MAX),
        url,
        url_label: cut(url_label.to_owned(), BLOCK_TEXT_BYTES_MAX),
    }
}

/// One message: the header and the JSON body, as the client reads it.
fn encode(event: &BlockEvent) -> Option<Arc<[u8]>> {
    let mut message = vec![0u8; FRAME_HEADER_BYTES];
    serde_json::to_writer(&mut message, event).ok()?;
    let len = message.len() - FRAME_HEADER_BYTES;
    if len > BLOCK_EVENT_BYTES_MAX {
        // The texts are cut before encoding, so this is a bug, not an input.
        debug_assert!(false, "block event of {len} bytes");
        return None;
    }
    message[..FRAME_HEADER_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Some(message.into())
}

impl BlockWatchers {
    /// No watchers yet; notices are made under `config`.
    pub fn new(config: MessageConfig) -> io::Result<BlockWatchers> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(BlockWatchers {
            watchers: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            places: Mutex::new(Places::default()),
            incoming: Mutex::new(Vec::new()),
            wake_tx,
            wake_rx,
            config: Mutex::new(Arc::new(config)),
            stopping: AtomicBool::new(false),
            writer_claimed: AtomicBool::new(false),
            stall_max: WATCHER_STALL_MAX,
            counters: WatchCounters::default(),
        })
    }

    /// New block-message settings (a reload).
    pub fn set_config(&self, config: MessageConfig) {
        *lock(&self.config) = Arc::new(config);
    }

    /// Watchers connected now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes a place for a watcher of `uid`, or says why not.
    pub fn reserve(&self, uid: u32, all_users: bool) -> Result<Place<'_>, WatchRefusal> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(WatchRefusal::Stopping);
        }
        let mut places = lock(&self.places);
        if places.per_uid.get(&uid).copied().unwrap_or(0) >= WATCHERS_PER_UID_MAX {
            return Err(WatchRefusal::UidLimit);
        }
        if uid != 0 {
            if places.users >= WATCHERS_MAX {
                return Err(WatchRefusal::Full);
            }
            places.users += 1;
        }
        *places.per_uid.entry(uid).or_default() += 1;
        Ok(Place {
            watchers: self,
            uid,
            all_users,
            taken: true,
        })
    }

    fn release(&self, uid: u32) {
        let mut places = lock(&self.places);
        if uid != 0 {
            places.users = places.users.saturating_sub(1);
        }
        if let Some(n) = places.per_uid.get_mut(&uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                places.per_uid.remove(&uid);
            }
        }
    }

    /// Ends the writer's `poll` (a full wake socket already holds a wake-up: nothing lost).
    pub fn wake(&self) {
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Whether the caller is the one to run the writer thread (the first to ask).
    pub fn claim_writer(&self) -> bool {
        !self.writer_claimed.swap(true, Ordering::SeqCst)
    }

    /// The writer thread's loop, until `stop`: closes every watcher on the way out.
    pub fn run_writer(&self, stop: &AtomicBool) {
        let mut conns: Vec<Conn> = Vec::new();
        let mut pollfds: Vec<libc::pollfd> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            conns.append(&mut lock(&self.incoming));
            let now = Instant::now();
            let mut dead = vec![false; conns.len()];
            for (i, conn) in conns.iter_mut().enumerate() {
                match self.flush(conn) {
                    Ok(()) => {}
                    Err(()) => dead[i] = true,
                }
                if let Some(since) = conn.stalled_since
                    && now.duration_since(since) >= self.stall_max
                {
                    self.counters.closed_stalled.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "block watcher of uid {} closed: it read nothing for {} s",
                        conn.watcher.uid,
                        self.stall_max.as_secs()
                    );
                    dead[i] = true;
                }
            }
            self.close_dead(&mut conns, &dead);
            pollfds.clear();
            pollfds.push(libc::pollfd {
                fd: self.wake_rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            for conn in &conns {
                let mut events = libc::POLLIN;
                if conn.partial.is_some() {
                    events |= libc::POLLOUT;
                }
                pollfds.push(libc::pollfd {
                    fd: conn.stream.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
            // SAFETY: `pollfds` is a live, initialised array of that many pollfds for the
            // duration of the call; every fd in it is owned by `self` or `conns`.
            let rc = unsafe {
                libc::poll(
                    pollfds.as_mut_ptr(),
                    pollfds.len() as libc::nfds_t,
                    WRITER_POLL_MS,
                )
            };
            if rc <= 0 {
                continue;
            }
            if pollfds[0].revents != 0 {
                let mut sink = [0u8; 64];
                while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
            }
            let mut dead = vec![false; conns.len()];
            for (i, conn) in conns.iter_mut().enumerate() {
                let revents = pollfds[i + 1].revents;
                if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                    dead[i] = true;
                } else if revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                    // A hang-up, or bytes a watcher has no business sending: either closes it.
                    let mut byte = [0u8; 1];
                    match conn.stream.read(&mut byte) {
                        Err(e) if is_retryable(&e) => {}
                        _ => dead[i] = true,
                    }
                }
            }
            self.close_dead(&mut conns, &dead);
        }
        let all = vec![true; conns.len()];
        self.close_dead(&mut conns, &all);
        // Connections handed over after the last pass.
        let mut late = std::mem::take(&mut *lock(&self.incoming));
        let all = vec![true; late.len()];
        self.close_dead(&mut late, &all);
    }

    /// Writes what is queued for `conn` until the socket takes no more; `Err` when the
    /// connection is broken.
    fn flush(&self, conn: &mut Conn) -> Result<(), ()> {
        loop {
            let (message, offset) = match conn.partial.take() {
                Some(p) => p,
                None => match conn.watcher.queue.pop() {
                    Some(m) => (m, 0),
                    None => {
                        conn.stalled_since = None;
                        return Ok(());
                    }
                },
            };
            match conn.stream.write(&message[offset..]) {
                Ok(0) => return Err(()),
                Ok(n) if offset + n == message.len() => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    conn.stalled_since = None;
                }
                Ok(n) => {
                    conn.partial = Some((message, offset + n));
                    conn.stalled_since = None;
                }
                Err(e) if is_retryable(&e) => {
                    conn.partial = Some((message, offset));
                    conn.stalled_since.get_or_insert_with(Instant::now);
                    return Ok(());
                }
                Err(_) => return Err(()),
            }
        }
    }

    /// Drops the connections marked in `dead` (closing them), unlisting their watchers and
    /// giving back their places.
    fn close_dead(&self, conns: &mut Vec<Conn>, dead: &[bool]) {
        if !dead.iter().any(|&d| d) {
            return;
        }
        let mut i = 0;
        conns.retain(|conn| {
            let keep = !dead[i];
            i += 1;
            if !keep {
                let mut list = lock(&self.watchers);
                list.retain(|w| !Arc::ptr_eq(w, &conn.watcher));
                self.active.store(list.len(), Ordering::Relaxed);
                drop(list);
                self.release(conn.watcher.uid);
                self.counters.closed.fetch_add(1, Ordering::Relaxed);
            }
            keep
        });
    }

    /// No more watches; the writer closes the ones it has.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.wake();
    }
}

impl RecordTap for BlockWatchers {
    fn offer(&self, rec: &Record) {
        if self.active.load(Ordering::Relaxed) == 0
            || rec.kind != RecordKind::Exec
            || rec.decision != Some(rules::Action::Deny)
        {
            return;
        }
        let list = lock(&self.watchers);
        if !list.iter().any(|w| w.wants(rec.uid)) {
            return;
        }
        let config = lock(&self.config).clone();
        if rec.silence.gui || config.silent_gui {
            self.counters.silenced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(message) = encode(&block_event(rec, &config)) else {
            return;
        };
        for w in list.iter().filter(|w| w.wants(rec.uid)) {
            if w.queue.push(message.clone()).is_err() {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(list);
        self.wake();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn deny(uid: u32, sha: u8) -> Record {
        let mut rec = Record::new();
        rec.kind = RecordKind::Exec;
        rec.decision = Some(rules::Action::Deny);
        rec.reason = rules::Reason::Binary;
        rec.uid = uid;
        rec.pid = 4242;
        rec.ppid = 7;
        rec.sha256 = Some([sha; 32]);
        rec.user.set(b"alice");
        rec.path.set(b"/opt/tool & <b>x</b>");
        rec.time = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        rec
    }

    fn config() -> MessageConfig {
        MessageConfig {
            banned_block_message: Some("Ask <i>IT</i>,<br />please".into()),
            event_detail_url: Some("https://santa.example/%file_identifier%?u=%username%".into()),
            event_detail_text: Some("Details".into()),
            ..MessageConfig::default()
        }
    }

    fn watchers(stall_max: Duration) -> (Arc<BlockWatchers>, Arc<AtomicBool>, JoinHandle<()>) {
        let mut w = BlockWatchers::new(config()).unwrap();
        w.stall_max = stall_max;
        let w = Arc::new(w);
        let stop = Arc::new(AtomicBool::new(false));
        let (w2, stop2) = (w.clone(), stop.clone());
        let t = std::thread::spawn(move || w2.run_writer(&stop2));
        (w, stop, t)
    }

    fn watch(w: &BlockWatchers, uid: u32, all_users: bool) -> UnixStream {
        let (ours, theirs) = UnixStream::pair().unwrap();
        w.reserve(uid, all_users).unwrap().start(theirs);
        ours
    }

    fn next(stream: &mut UnixStream) -> BlockEvent {
        let body = read_frame(
            stream,
            BLOCK_EVENT_BYTES_MAX,
            Duration::from_secs(5),
            Instant::now() + Duration::from_secs(5),
            &|| false,
        )
        .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn nothing_more(stream: &mut UnixStream) {
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        let r = stream.read(&mut b);
        assert!(matches!(&r, Err(e) if is_retryable(e)), "{r:?}");
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "waited for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn notice_has_santas_message_url_and_label() {
        let mut rec = deny(1000, 0xab);
        let e = block_event(&rec, &config());
        assert_eq!(e.message, "Ask IT,\nplease");
        assert_eq!(e.reason, "BINARY");
        assert_eq!(e.reason_text, "Binary rule");
        assert_eq!(e.identifier.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(
            e.url.as_deref(),
            Some(format!("https://santa.example/{}?u=alice", "ab".repeat(32)).as_str())
        );
        assert_eq!(e.url_label, "Details");
        assert_eq!((e.pid, e.ppid, e.uid), (4242, 7, 1000));
        assert_eq!(e.time_ms, 1_700_000_000_123);
        assert_eq!(e.path, "/opt/tool & <b>x</b>");
        // A rule's own texts win; no rule is Santa's unknown-block case.
        rec.custom = rules::CustomText {
            msg: Some("not on this host".into()),
            url: Some("null".into()),
            button: Some("Why?".into()),
            cel: None,
        };
        let e = block_event(&rec, &config());
        assert_eq!(e.message, "not on this host");
        assert_eq!(e.url, None, "a rule's \"null\" URL means none");
        assert_eq!(e.url_label, "Why?");
        rec.custom = rules::CustomText::default();
        rec.reason = rules::Reason::Unknown;
        let e = block_event(&rec, &MessageConfig::default());
        assert_eq!(
            e.message,
            blockmsg::html_to_text(blockmsg::DEFAULT_UNKNOWN_MESSAGE)
        );
        assert_eq!((e.url, e.url_label.as_str()), (None, "Open"));
        // Texts are cut to their bound, so a message always fits its frame.
        let long = MessageConfig {
            banned_block_message: Some("é".repeat(BLOCK_TEXT_BYTES_MAX)),
            ..config()
        };
        let mut rec = deny(1000, 1);
        rec.path.set(&[b'\x01'; crate::eventlog::PATH_BYTES_MAX]);
        let e = block_event(&rec, &long);
        assert!(e.message.len() <= BLOCK_TEXT_BYTES_MAX);
        assert!(encode(&e).is_some());
    }

    #[test]
    fn each_watcher_gets_its_own_uids_blocks_and_silent_ones_are_not_sent() {
        let (w, stop, t) = watchers(WATCHER_STALL_MAX);
        let mut alice = watch(&w, 1000, false);
        let mut bob = watch(&w, 1001, false);
        let mut root = watch(&w, 0, false);
        let mut all = watch(&w, 0, true);
        assert_eq!(w.active(), 4);
        w.offer(&deny(1000, 1));
        let mut silent = deny(1000, 2);
        silent.silence.gui = true;
        w.offer(&silent);
        let mut tty_only = deny(1000, 3);
        tty_only.silence.tty = true;
        w.offer(&tty_only);
        let mut allow = deny(1000, 4);
        allow.decision = Some(rules::Action::Allow);
        w.offer(&allow);
        w.offer(&deny(1001, 5));
        let got = |e: BlockEvent| e.identifier.unwrap()[..2].to_owned();
        assert_eq!(got(next(&mut alice)), "01");
        assert_eq!(
            got(next(&mut alice)),
            "03",
            "a TTY-silent rule still shows the notice"
        );
        assert_eq!(got(next(&mut bob)), "05");
        assert_eq!(got(next(&mut all)), "01");
        assert_eq!(got(next(&mut all)), "03");
        assert_eq!(got(next(&mut all)), "05");
        nothing_more(&mut alice);
        nothing_more(&mut bob);
        nothing_more(&mut root);
        nothing_more(&mut all);
        assert_eq!(w.counters.silenced.load(Ordering::Relaxed), 1);
        assert_eq!(w.counters.sent.load(Ordering::Relaxed), 6);
        // EnableSilentMode: nobody is told.
        w.set_config(MessageConfig {
            silent_gui: true,
            ..config()
        });
        w.offer(&deny(1000, 6));
        nothing_more(&mut alice);
        // A hang-up gives the place back.
        drop(bob);
        wait_until("bob's watcher closed", || w.active() == 3);
        stop.store(true, Ordering::Relaxed);
        w.wake();
        t.join().unwrap();
        assert_eq!(
            w.active(),
            0,
            "the writer closes every watcher when it stops"
        );
    }

    #[test]
    fn places_are_bounded_per_uid_and_for_all_users_with_roots_own_beside_them() {
        let w = BlockWatchers::new(config()).unwrap();
        let mut places = Vec::new();
        for _ in 0..WATCHERS_PER_UID_MAX {
            places.push(w.reserve(1000, false).unwrap());
        }
        assert_eq!(w.reserve(1000, false).unwrap_err(), WatchRefusal::UidLimit);
        places.pop();
        places.push(w.reserve(1000, false).expect("a place given back is free"));
        let mut uid = 2000;
        while places.len() < WATCHERS_MAX {
            if let Ok(p) = w.reserve(uid, false) {
                places.push(p);
            } else {
                uid += 1;
            }
        }
        assert_eq!(w.reserve(5000, false).unwrap_err(), WatchRefusal::Full);
        for _ in 0..WATCHERS_PER_UID_MAX {
            places.push(w.reserve(0, false).expect("root's places are its own"));
        }
        assert_eq!(w.reserve(0, true).unwrap_err(), WatchRefusal::UidLimit);
        w.stop();
        places.clear();
        assert_eq!(w.reserve(0, false).unwrap_err(), WatchRefusal::Stopping);
    }

    #[test]
    fn a_watcher_that_never_reads_loses_notices_and_is_closed_never_blocking_the_logger() {
        let stall = Duration::from_millis(300);
        let (w, stop, t) = watchers(stall);
        let _stuck = watch(&w, 1000, false);
        let mut reader = watch(&w, 1001, false);
        let start = Instant::now();
        let offered = 5000;
        for i in 0..offered {
            w.offer(&deny(1000, (i % 251) as u8));
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "offering took {:?}",
            start.elapsed()
        );
        wait_until("the stuck watcher closed", || {
            w.counters.closed_stalled.load(Ordering::Relaxed) == 1
        });
        let (sent, dropped) = (
            w.counters.sent.load(Ordering::Relaxed),
            w.counters.dropped.load(Ordering::Relaxed),
        );
        assert!(dropped > 0, "sent {sent}, dropped {dropped}");
        assert!(sent + dropped <= offered);
        assert_eq!(w.active(), 1);
        // The other watcher is served all along.
        w.offer(&deny(1001, 9));
        assert_eq!(next(&mut reader).uid, 1001);
        // The stuck one's place is free again.
        let places: Vec<_> = (0..WATCHERS_PER_UID_MAX)
            .map(|_| w.reserve(1000, false).unwrap())
            .collect();
        drop(places);
        stop.store(true, Ordering::Relaxed);
        w.wake();
        t.join().unwrap();
    }

    #[test]
    fn a_watcher_that_sends_anything_is_closed() {
        let (w, stop, t) = watchers(WATCHER_STALL_MAX);
        let mut chatty = watch(&w, 1000, false);
        wait_until("the watcher is listed", || w.active() == 1);
        chatty.write_all(b"\x00\x00\x00\x02{}").unwrap();
        wait_until("the chatty watcher closed", || w.active() == 0);
        let mut b = [0u8; 1];
        chatty
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // Closed with our bytes unread: an end of stream or a reset.
        let r = chatty.read(&mut b);
        assert!(
            matches!(&r, Ok(0))
                || matches!(&r, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
            "{r:?}"
        );
        stop.store(true, Ordering::Relaxed);
        w.wake();
        t.join().unwrap();
    }
}
