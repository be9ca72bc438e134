//! The bounded ring of preallocated records workers fill without blocking, and the logger
//! thread that drains it into a [`LogWriter`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use super::{LogWriter, Record, RecordKind, WRITE_BATCH_BYTES};
use santa_rules as rules;

/// How long the logger sleeps when idle before looking again; the first line after an idle spell
/// wakes it at once.
const LOGGER_IDLE: Duration = Duration::from_millis(100);
/// While lines keep coming, the logger drains every this often instead of being woken for each
/// line: one wake-up, one `write` per batch rather than per exec (a wake-up across CPUs costs
/// ~55 µs here). A line waits at most this long; a ring filling up wakes the logger early.
const LOGGER_BATCH: Duration = Duration::from_millis(20);
/// How often the logger checks whether its file was rotated away (a `stat` of the path).
const ROTATION_CHECK: Duration = Duration::from_secs(1);

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
    /// See every record the logger writes (the sync event spool, the block watchers), in the
    /// order they were added; filled once each, read without a lock.
    taps: [std::sync::OnceLock<Arc<dyn RecordTap>>; TAPS_MAX],
    /// EXEC records the logger took, by decision (allow, deny) and reason ([`REASONS`] order).
    decisions: [[AtomicU64; REASONS.len()]; 2],
}

/// Every decision reason, in the order of [`EventLog::decisions`].
pub const REASONS: [rules::Reason; 10] = [
    rules::Reason::Binary,
    rules::Reason::Cert,
    rules::Reason::TeamId,
    rules::Reason::SigningId,
    rules::Reason::CdHash,
    rules::Reason::Scope,
    rules::Reason::Unknown,
    rules::Reason::Transitive,
    rules::Reason::Platform,
    rules::Reason::Failsafe,
];

/// The index of `reason` in [`REASONS`] (a match, so a new reason does not compile until it
/// has a place).
fn reason_index(reason: rules::Reason) -> usize {
    use rules::Reason as R;
    match reason {
        R::Binary => 0,
        R::Cert => 1,
        R::TeamId => 2,
        R::SigningId => 3,
        R::CdHash => 4,
        R::Scope => 5,
        R::Unknown => 6,
        R::Transitive => 7,
        R::Platform => 8,
        R::Failsafe => 9,
    }
}

/// Taps one log can have: santad has two (the sync event spool, the desktop block notices).
pub const TAPS_MAX: usize = 4;

/// Something that sees each record as the logger thread writes it (off the workers' path): the
/// sync event spool, the block watchers. It must not block for long: the ring fills behind it.
pub trait RecordTap: Send + Sync + std::fmt::Debug {
    /// One record, just formatted.
    fn offer(&self, rec: &Record);
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
            taps: std::array::from_fn(|_| std::sync::OnceLock::new()),
            decisions: Default::default(),
        })
    }

    /// EXEC records logged with decision `action` and `reason`: every execution the log saw
    /// (held ones and those the kernel cache answered), as it was applied. Records dropped
    /// because the ring was full are in [`EventLog::dropped`] instead.
    pub fn decisions(&self, action: rules::Action, reason: rules::Reason) -> u64 {
        let row = match action {
            rules::Action::Allow => 0,
            rules::Action::Deny => 1,
        };
        self.decisions[row][reason_index(reason)].load(Ordering::Relaxed)
    }

    /// Counts one record taken off the ring (the logger thread).
    fn count_decision(&self, rec: &Record) {
        if rec.kind != RecordKind::Exec {
            return;
        }
        let row = match rec.decision {
            Some(rules::Action::Allow) => 0,
            Some(rules::Action::Deny) => 1,
            None => return,
        };
        self.decisions[row][reason_index(rec.reason)].fetch_add(1, Ordering::Relaxed);
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

    /// Adds a tap that sees every record the logger writes, after those added before it;
    /// refused (false) once [`TAPS_MAX`] are set.
    pub fn add_tap(&self, tap: Arc<dyn RecordTap>) -> bool {
        let mut tap = Some(tap);
        for slot in &self.taps {
            let Some(t) = tap.take() else { break };
            // `set` hands the tap back when the slot is taken (by us before, or a racing add).
            if let Err(t) = slot.set(t) {
                tap = Some(t);
            } else {
                return true;
            }
        }
        false
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
                    log.count_decision(&rec);
                    for tap in log.taps.iter().map_while(std::sync::OnceLock::get) {
                        tap.offer(&rec);
                    }
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
