//! The event spool: executions the sync server should hear about, kept in SQLite beside the rules
//! (`EventsDbPath`) until a server has acknowledged them, across restarts.
//!
//! Data flow: the logger thread hands each record it writes to [`SpoolTap::offer`], which keeps
//! those Santa uploads — blocks, allows of unknown files (unless `DisableUnknownEventUpload`),
//! or every decision with `EnableAllEventUpload` — turns each into Santa's `Event` and queues it
//! (a bounded lock-free queue: a full queue drops and counts, the logger never waits). The
//! spool thread inserts what is queued in one transaction per batch. The sync thread reads the
//! oldest events ([`Spool::pending`]) and deletes the ones the server answered 200 to
//! ([`Spool::acknowledge`]).
//!
//! Bounded: at most `EventSpoolMaxEvents` rows; past it, the oldest go first and are counted in
//! the file (`dropped_full`), so the count survives restarts. The same execution repeated (the
//! same file, path, user and decision within [`COALESCE_WINDOW`]) is stored once and counted
//! (`coalesced`): a user running a blocked binary in a loop cannot push everyone else's events
//! out of the spool. A `BUNDLE` record fills the bundle fields of the waiting events of its file.

use crate::eventlog::{Record, RecordKind, RecordTap};
use crate::sync::decision::{event_decision, is_uploaded};
use crate::sync::event::{event_of, hex, text};
use crossbeam_queue::ArrayQueue;
use rusqlite::{Connection, params};
use santa_sync::{PendingEvent, proto};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Events waiting between the logger and the spool thread. A burst beyond it is dropped and
/// counted (`queue_overflows`); the spool thread drains it every [`SPOOL_FLUSH`].
pub const SPOOL_QUEUE_EVENTS: usize = 4096;
/// How often the spool thread writes what is queued (it is also woken by a full batch).
pub const SPOOL_FLUSH: Duration = Duration::from_millis(250);
/// The same execution repeated within this window is spooled once.
pub const COALESCE_WINDOW: Duration = Duration::from_secs(60);
/// Executions remembered for coalescing; the table is cleared when it reaches this size.
const COALESCE_ENTRIES_MAX: usize = 4096;
/// Largest stored event read back: one event is a few KiB; a larger row is not ours and is
/// skipped (and deleted, counted as unreadable).
const EVENT_BYTES_MAX: usize = 256 * 1024;

/// Why the spool could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("event spool {location}: {what}: {source}")]
pub struct SpoolError {
    location: String,
    what: &'static str,
    #[source]
    source: rusqlite::Error,
}

fn sql<'a>(
    location: &'a str,
    what: &'static str,
) -> impl FnOnce(rusqlite::Error) -> SpoolError + 'a {
    move |source| SpoolError {
        location: location.to_owned(),
        what,
        source,
    }
}

/// The spool's SQLite file.
#[derive(Debug)]
pub struct Spool {
    conn: Connection,
    location: String,
    max_events: u64,
}

/// The spool's counts, for `santactl status` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolCounts {
    /// Events waiting for a server.
    pub waiting: u64,
    /// Events dropped because the spool was full (oldest first), ever.
    pub dropped_full: u64,
    /// Events acknowledged by a server, ever.
    pub uploaded: u64,
    /// Stored rows that could not be read back (deleted).
    pub unreadable: u64,
}

impl Spool {
    /// Opens (creating if absent) the spool at `path`, holding at most `max_events`.
    pub fn open(path: &Path, max_events: u64) -> Result<Spool, SpoolError> {
        let location = path.display().to_string();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(sql(&location, "opening"))?;
        let spool = Spool::init(conn, location, max_events)?;
        // Other users' executions are in it: root only, as the rules database's directory is.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(spool)
    }

    /// A private in-memory spool (tests).
    pub fn open_in_memory(max_events: u64) -> Result<Spool, SpoolError> {
        let conn = Connection::open_in_memory().map_err(sql(":memory:", "opening"))?;
        Spool::init(conn, ":memory:".into(), max_events)
    }

    fn init(conn: Connection, location: String, max_events: u64) -> Result<Spool, SpoolError> {
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sql(&location, "setting the busy timeout"))?;
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(sql(&location, "checking the file"))?;
        if check != "ok" {
            return Err(SpoolError {
                location,
                what: "checking the file",
                source: rusqlite::Error::InvalidParameterName(check),
            });
        }
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 sha256 TEXT NOT NULL,
                 created_unix INTEGER NOT NULL,
                 event TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS events_sha256 ON events (sha256);
             CREATE TABLE IF NOT EXISTS bundle_events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 bundle_hash TEXT NOT NULL,
                 sha256 TEXT NOT NULL,
                 event TEXT NOT NULL,
                 UNIQUE (bundle_hash, sha256));
             CREATE TABLE IF NOT EXISTS counters (
                 name TEXT PRIMARY KEY,
                 value INTEGER NOT NULL);",
        )
        .map_err(sql(&location, "creating the tables"))?;
        Ok(Spool {
            conn,
            location,
            max_events: max_events.max(1),
        })
    }

    /// Changes the bound (a reload); the next insert trims to it.
    pub fn set_max_events(&mut self, max_events: u64) {
        self.max_events = max_events.max(1);
    }

    /// Stores `events` in one transaction, then drops the oldest beyond the bound (counted).
    /// Returns how many were dropped.
    pub fn insert(&mut self, events: &[proto::Event]) -> Result<u64, SpoolError> {
        let location = self.location.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&location, "beginning a transaction"))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (sha256, created_unix, event) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql(&location, "preparing the insert"))?;
            for event in events {
                let json = serde_json::to_string(event).unwrap_or_default();
                insert
                    .execute(params![
                        event.file_sha256,
                        event.execution_time as i64,
                        json
                    ])
                    .map_err(sql(&location, "inserting an event"))?;
            }
        }
        let count: i64 = tx
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .map_err(sql(&location, "counting events"))?;
        let excess = (count as u64).saturating_sub(self.max_events);
        if excess > 0 {
            tx.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?1)",
                [excess as i64],
            )
            .map_err(sql(&location, "dropping the oldest events"))?;
            add_counter(&tx, "dropped_full", excess).map_err(sql(&location, "counting"))?;
        }
        tx.commit().map_err(sql(&location, "committing events"))?;
        Ok(excess)
    }

    /// Fills the bundle fields of every waiting event of the file `sha256` that has none.
    pub fn attach_bundle(&mut self, sha256: &str, bundle: &BundleFields) -> Result<(), SpoolError> {
        let location = self.location.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&location, "beginning a transaction"))?;
        let rows: Vec<(i64, String)> = {
            let mut q = tx
                .prepare_cached("SELECT id, event FROM events WHERE sha256 = ?1")
                .map_err(sql(&location, "preparing the bundle query"))?;
            q.query_map([sha256], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(sql(&location, "reading events"))?
        };
        for (id, json) in rows {
            let Ok(mut event) = serde_json::from_str::<proto::Event>(&json) else {
                continue;
            };
            if !event.file_bundle_hash.is_empty() {
                continue;
            }
            bundle.fill(&mut event);
            let json = serde_json::to_string(&event).unwrap_or(json);
            tx.execute(
                "UPDATE events SET event = ?1 WHERE id = ?2",
                params![json, id],
            )
            .map_err(sql(&location, "updating an event"))?;
        }
        tx.commit()
            .map_err(sql(&location, "committing bundle fields"))
    }

    /// Keeps the event of one binary of a hashed bundle (decision `BUNDLE_BINARY`) until a
    /// server asks for its bundle (`event_upload_bundle_binaries`); at most as many as the
    /// spool's bound, the oldest dropped first.
    pub fn keep_bundle_binary(
        &mut self,
        bundle_hash: &str,
        event: &proto::Event,
    ) -> Result<(), SpoolError> {
        let location = self.location.clone();
        let json = serde_json::to_string(event).unwrap_or_default();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&location, "beginning a transaction"))?;
        tx.execute(
            "INSERT OR REPLACE INTO bundle_events (bundle_hash, sha256, event) VALUES (?1, ?2, ?3)",
            params![bundle_hash, event.file_sha256, json],
        )
        .map_err(sql(&location, "keeping a bundle event"))?;
        tx.execute(
            "DELETE FROM bundle_events WHERE id <= (SELECT MAX(id) FROM bundle_events) - ?1",
            [self.max_events as i64],
        )
        .map_err(sql(&location, "bounding the bundle events"))?;
        tx.commit().map_err(sql(&location, "committing"))
    }

    /// The server asked for the binaries of these bundles: their kept events join the events
    /// to upload. Returns how many did.
    pub fn release_bundles(&mut self, bundle_hashes: &[String]) -> Result<usize, SpoolError> {
        let location = self.location.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&location, "beginning a transaction"))?;
        let mut moved = 0;
        for hash in bundle_hashes {
            moved += tx
                .execute(
                    "INSERT INTO events (sha256, created_unix, event)
                     SELECT sha256, CAST(strftime('%s','now') AS INTEGER), event
                     FROM bundle_events WHERE bundle_hash = ?1 ORDER BY id",
                    [hash],
                )
                .map_err(sql(&location, "releasing bundle events"))?;
            tx.execute("DELETE FROM bundle_events WHERE bundle_hash = ?1", [hash])
                .map_err(sql(&location, "releasing bundle events"))?;
        }
        tx.commit().map_err(sql(&location, "committing"))?;
        Ok(moved)
    }

    /// Up to `max` waiting events, oldest first. A row that cannot be read back is deleted and
    /// counted, so one bad row cannot stall the upload forever.
    pub fn pending(&mut self, max: usize) -> Result<Vec<PendingEvent>, SpoolError> {
        let location = self.location.clone();
        let rows: Vec<(i64, String)> = {
            let mut q = self
                .conn
                .prepare_cached("SELECT id, event FROM events ORDER BY id LIMIT ?1")
                .map_err(sql(&location, "preparing the read"))?;
            q.query_map([max as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(sql(&location, "reading events"))?
        };
        let mut out = Vec::with_capacity(rows.len());
        let mut bad = Vec::new();
        for (id, json) in rows {
            let event = (json.len() <= EVENT_BYTES_MAX)
                .then(|| serde_json::from_str::<proto::Event>(&json).ok())
                .flatten();
            match event {
                Some(event) => out.push(PendingEvent {
                    id: id as u64,
                    event,
                }),
                None => bad.push(id as u64),
            }
        }
        if !bad.is_empty() {
            log::warn!(
                "event spool {location}: {} unreadable event(s) deleted",
                bad.len()
            );
            self.delete(&bad, "unreadable")?;
        }
        Ok(out)
    }

    /// The server took these events: they go, and are counted as uploaded.
    pub fn acknowledge(&mut self, ids: &[u64]) -> Result<(), SpoolError> {
        self.delete(ids, "uploaded")
    }

    fn delete(&mut self, ids: &[u64], counter: &str) -> Result<(), SpoolError> {
        let location = self.location.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql(&location, "beginning a transaction"))?;
        let mut deleted = 0;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM events WHERE id = ?1")
                .map_err(sql(&location, "preparing the delete"))?;
            for id in ids {
                deleted += delete
                    .execute([*id as i64])
                    .map_err(sql(&location, "deleting an event"))?;
            }
        }
        add_counter(&tx, counter, deleted as u64).map_err(sql(&location, "counting"))?;
        tx.commit().map_err(sql(&location, "committing"))
    }

    /// The counts.
    pub fn counts(&self) -> Result<SpoolCounts, SpoolError> {
        let location = &self.location;
        let waiting: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .map_err(sql(location, "counting events"))?;
        let counter = |name: &str| -> Result<u64, SpoolError> {
            self.conn
                .query_row(
                    "SELECT COALESCE((SELECT value FROM counters WHERE name = ?1), 0)",
                    [name],
                    |r| r.get::<_, i64>(0),
                )
                .map(|v| v.max(0) as u64)
                .map_err(sql(location, "reading a counter"))
        };
        Ok(SpoolCounts {
            waiting: waiting.max(0) as u64,
            dropped_full: counter("dropped_full")?,
            uploaded: counter("uploaded")?,
            unreadable: counter("unreadable")?,
        })
    }
}

fn add_counter(tx: &rusqlite::Transaction<'_>, name: &str, n: u64) -> rusqlite::Result<()> {
    if n == 0 {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = value + ?2",
        params![name, n as i64],
    )
    .map(drop)
}

/// A bundle's facts, from a `BUNDLE` record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BundleFields {
    /// The bundle hash.
    pub hash: String,
    /// The bundle's name.
    pub name: String,
    /// The bundle identifier.
    pub id: String,
    /// The bundle's path.
    pub path: String,
}

impl BundleFields {
    /// Writes them into an event.
    fn fill(&self, event: &mut proto::Event) {
        event.file_bundle_hash = self.hash.clone();
        event.file_bundle_name = self.name.clone();
        event.file_bundle_id = self.id.clone();
        event.file_bundle_path = self.path.clone();
    }
}

/// What the tap queues for the spool thread.
#[derive(Debug)]
enum Item {
    Event(Box<proto::Event>),
    Bundle {
        sha256: String,
        bundle: BundleFields,
        binary: Box<proto::Event>,
    },
}

/// Which decisions are spooled (from the effective config; changed on reload).
#[derive(Debug, Default)]
pub struct UploadFilter {
    /// `EnableAllEventUpload`.
    pub all: AtomicBool,
    /// `DisableUnknownEventUpload`.
    pub no_unknown: AtomicBool,
}

/// The logger's side of the spool: filters, converts and queues; never blocks.
#[derive(Debug)]
pub struct SpoolTap {
    queue: ArrayQueue<Item>,
    /// Which decisions are kept.
    pub filter: UploadFilter,
    /// Events the queue had no room for.
    pub queue_overflows: AtomicU64,
    /// Repeats of an execution already spooled within [`COALESCE_WINDOW`].
    pub coalesced: AtomicU64,
    recent: Mutex<HashMap<Vec<u8>, Instant>>,
    thread: OnceLock<std::thread::Thread>,
}

impl SpoolTap {
    /// An empty tap.
    pub fn new() -> SpoolTap {
        SpoolTap {
            queue: ArrayQueue::new(SPOOL_QUEUE_EVENTS),
            filter: UploadFilter::default(),
            queue_overflows: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            recent: Mutex::new(HashMap::new()),
            thread: OnceLock::new(),
        }
    }

    fn push(&self, item: Item) {
        if self.queue.push(item).is_err() {
            self.queue_overflows.fetch_add(1, Ordering::Relaxed);
        }
        if self.queue.len() >= SPOOL_QUEUE_EVENTS / 2
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    /// True if the same execution was spooled within the window (and remembers this one).
    fn repeated(&self, key: Vec<u8>) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(at) = recent.get(&key)
            && now.duration_since(*at) < COALESCE_WINDOW
        {
            return true;
        }
        if recent.len() >= COALESCE_ENTRIES_MAX {
            recent.retain(|_, at| now.duration_since(*at) < COALESCE_WINDOW);
            if recent.len() >= COALESCE_ENTRIES_MAX {
                recent.clear();
            }
        }
        recent.insert(key, now);
        false
    }
}

impl Default for SpoolTap {
    fn default() -> Self {
        SpoolTap::new()
    }
}

impl RecordTap for SpoolTap {
    fn offer(&self, rec: &Record) {
        match rec.kind {
            RecordKind::Exec => {
                let all = self.filter.all.load(Ordering::Relaxed);
                let unknown = !self.filter.no_unknown.load(Ordering::Relaxed);
                if !is_uploaded(rec.decision, rec.reason, all, unknown) {
                    return;
                }
                // The repeat check comes first: a blocked binary run in a loop costs one
                // lookup per run, not an event (and a /proc read for its parent's name).
                let mut key = Vec::with_capacity(64 + rec.path.as_bytes().len());
                key.extend_from_slice(&rec.sha256.unwrap_or_default());
                key.extend_from_slice(rec.path.as_bytes());
                key.push(0);
                key.extend_from_slice(rec.user.as_bytes());
                key.push(0);
                key.push(event_decision(rec.decision, rec.reason).number() as u8);
                if self.repeated(key) {
                    self.coalesced.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let event = event_of(rec);
                self.push(Item::Event(Box::new(event)));
            }
            // A rule santad made itself: Santa uploads no event for it.
            RecordKind::Allowlist => {}
            RecordKind::Bundle => {
                let (Some(sha), Some(bundle_hash)) = (rec.sha256, rec.bundle_hash) else {
                    return;
                };
                let bundle = BundleFields {
                    hash: hex(&bundle_hash),
                    name: text(rec.bundle_name.as_bytes()),
                    id: text(rec.bundle_id.as_bytes()),
                    path: text(rec.bundle_path.as_bytes()),
                };
                // Santa's bundle binary event: no execution, so no time, process or session.
                let mut binary = event_of(rec);
                binary.decision = proto::Decision::BundleBinary;
                binary.execution_time = 0.0;
                binary.parent_name.clear();
                binary.pid = 0;
                binary.ppid = 0;
                binary.logged_in_users.clear();
                binary.current_sessions.clear();
                bundle.fill(&mut binary);
                self.push(Item::Bundle {
                    sha256: hex(&sha),
                    bundle,
                    binary: Box::new(binary),
                });
            }
        }
    }
}

/// The spool thread: writes what the tap queued, every [`SPOOL_FLUSH`] or when woken, until
/// `stop`; `on_stored` is told after each batch that stored blocks, how many (the sync thread
/// uploads them at once). A write that fails keeps the batch for the next try; after three tries it is logged
/// and dropped (counted), so a broken disk does not grow memory without bound.
pub fn spawn_writer(
    tap: Arc<SpoolTap>,
    spool: Arc<Mutex<Spool>>,
    stop: Arc<AtomicBool>,
    on_stored: impl Fn(usize) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("santad-spool".into())
        .spawn(move || {
            let _ = tap.thread.set(std::thread::current());
            crate::sync::run_in_background();
            let mut events: Vec<proto::Event> = Vec::new();
            let mut failures = 0;
            loop {
                let stopping = stop.load(Ordering::Acquire);
                let mut bundles = Vec::new();
                while let Some(item) = tap.queue.pop() {
                    match item {
                        Item::Event(e) => events.push(*e),
                        Item::Bundle {
                            sha256,
                            bundle,
                            binary,
                        } => bundles.push((sha256, bundle, binary)),
                    }
                }
                if !events.is_empty() || !bundles.is_empty() {
                    let mut spool = spool.lock().unwrap_or_else(|e| e.into_inner());
                    match spool.insert(&events) {
                        Ok(_) => {
                            failures = 0;
                            // Blocks go up at once (Santa: "so the server has something to show
                            // the user straight away"); the rest wait for the full sync.
                            let stored = events
                                .iter()
                                .filter(|e| e.decision.name().starts_with("BLOCK_"))
                                .count();
                            events.clear();
                            for (sha, bundle, binary) in &bundles {
                                let kept = spool
                                    .attach_bundle(sha, bundle)
                                    .and_then(|()| spool.keep_bundle_binary(&bundle.hash, binary));
                                if let Err(e) = kept {
                                    log::warn!("{e}");
                                }
                            }
                            drop(spool);
                            if stored > 0 {
                                on_stored(stored);
                            }
                        }
                        Err(e) => {
                            failures += 1;
                            log::error!("{e}");
                            if failures >= 3 {
                                tap.queue_overflows
                                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                                events.clear();
                                failures = 0;
                            }
                        }
                    }
                }
                if stopping {
                    return;
                }
                std::thread::park_timeout(SPOOL_FLUSH);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sha: &str) -> proto::Event {
        proto::Event {
            file_sha256: sha.into(),
            file_name: "tool".into(),
            decision: proto::Decision::BlockUnknown,
            ..proto::Event::default()
        }
    }

    #[test]
    fn events_wait_until_acknowledged_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let mut spool = Spool::open(&path, 100).unwrap();
        spool.insert(&[event("a"), event("b"), event("c")]).unwrap();
        let first = spool.pending(2).unwrap();
        assert_eq!(
            first
                .iter()
                .map(|p| p.event.file_sha256.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        spool.acknowledge(&[first[0].id]).unwrap();
        drop(spool);
        let mut spool = Spool::open(&path, 100).unwrap();
        let left = spool.pending(10).unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(left[0].event, event("b"));
        let c = spool.counts().unwrap();
        assert_eq!((c.waiting, c.uploaded, c.dropped_full), (2, 1, 0));
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_counts_them() {
        let mut spool = Spool::open_in_memory(3).unwrap();
        let batch: Vec<_> = (0..5).map(|i| event(&i.to_string())).collect();
        assert_eq!(spool.insert(&batch).unwrap(), 2);
        let left = spool.pending(10).unwrap();
        assert_eq!(
            left.iter()
                .map(|p| p.event.file_sha256.as_str())
                .collect::<Vec<_>>(),
            ["2", "3", "4"]
        );
        assert_eq!(spool.counts().unwrap().dropped_full, 2);
    }

    #[test]
    fn an_unreadable_row_is_deleted_not_repeated_forever() {
        let mut spool = Spool::open_in_memory(10).unwrap();
        spool.insert(&[event("a")]).unwrap();
        spool
            .conn
            .execute(
                "INSERT INTO events (sha256, created_unix, event) VALUES ('x', 0, 'garbage')",
                [],
            )
            .unwrap();
        assert_eq!(spool.pending(10).unwrap().len(), 1);
        assert_eq!(spool.counts().unwrap().unreadable, 1);
        assert_eq!(spool.counts().unwrap().waiting, 1);
    }

    #[test]
    fn a_bundle_record_fills_the_waiting_events_of_its_file() {
        let mut spool = Spool::open_in_memory(10).unwrap();
        spool.insert(&[event("a"), event("b")]).unwrap();
        let bundle = BundleFields {
            hash: "bh".into(),
            name: "Tool".into(),
            id: "com.example.tool".into(),
            path: "/Applications/Tool.app".into(),
        };
        spool.attach_bundle("a", &bundle).unwrap();
        let p = spool.pending(10).unwrap();
        assert_eq!(p[0].event.file_bundle_hash, "bh");
        assert_eq!(p[0].event.file_bundle_id, "com.example.tool");
        assert_eq!(p[1].event.file_bundle_hash, "");
    }

    #[test]
    fn bundle_binaries_wait_until_the_server_asks_for_their_bundle() {
        let mut spool = Spool::open_in_memory(10).unwrap();
        let binary = |sha: &str| proto::Event {
            decision: proto::Decision::BundleBinary,
            ..event(sha)
        };
        spool.keep_bundle_binary("b1", &binary("x")).unwrap();
        spool.keep_bundle_binary("b1", &binary("y")).unwrap();
        spool.keep_bundle_binary("b2", &binary("z")).unwrap();
        assert!(spool.pending(10).unwrap().is_empty());
        assert_eq!(spool.release_bundles(&["b1".into()]).unwrap(), 2);
        let p = spool.pending(10).unwrap();
        assert_eq!(
            p.iter()
                .map(|e| e.event.file_sha256.as_str())
                .collect::<Vec<_>>(),
            ["x", "y"]
        );
        assert_eq!(p[0].event.decision, proto::Decision::BundleBinary);
        assert_eq!(
            spool.release_bundles(&["b1".into()]).unwrap(),
            0,
            "released once"
        );
    }

    #[test]
    fn a_repeated_execution_is_spooled_once() {
        let tap = SpoolTap::new();
        let mut rec = Record::new();
        rec.decision = Some(santa_rules::Action::Deny);
        rec.reason = santa_rules::Reason::Unknown;
        rec.sha256 = Some([1; 32]);
        rec.path.set(b"/tmp/blocked");
        tap.offer(&rec);
        tap.offer(&rec);
        assert_eq!(tap.queue.len(), 1);
        assert_eq!(tap.coalesced.load(Ordering::Relaxed), 1);
        rec.decision = Some(santa_rules::Action::Allow);
        rec.reason = santa_rules::Reason::Binary;
        tap.offer(&rec);
        assert_eq!(tap.queue.len(), 1, "an allow by rule is not uploaded");
        let Some(Item::Event(e)) = tap.queue.pop() else {
            panic!("an event")
        };
        assert_eq!(
            (e.file_path.as_str(), e.file_name.as_str()),
            ("/tmp", "blocked")
        );
        assert_eq!(e.decision, proto::Decision::BlockUnknown);
    }
}
