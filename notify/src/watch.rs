//! The connection to santad: one [`santa_control::WatchStream`] at a time, reopened with
//! backoff when santad goes away (a restart, an upgrade) or turns the watch away (busy).

use santa_control::{BlockEvent, ClientError, ErrorKind, FrameError, WatchReply, watch_blocks};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

/// First wait before reconnecting; doubled after each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between two tries: santad restarted by systemd is back within seconds, and
/// a user's agent should not stay blind for long after it.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Events waiting for the desktop thread. When it falls behind, the watch thread stops
/// reading, and santad (whose queue for us is bounded too) drops and counts the rest.
const EVENTS_QUEUED_MAX: usize = 64;
/// How long santad may take to answer the watch request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the watch thread reports.
#[derive(Debug)]
pub enum Event {
    /// santad took the watch.
    Connected(WatchReply),
    /// A block.
    Block(Box<BlockEvent>),
    /// The watch ended or could not be opened; the next try is in `retry_in`.
    Lost {
        /// Why.
        why: String,
        /// When the next try is.
        retry_in: Duration,
    },
    /// santad refused for good (`--all-users` without root): the thread has ended.
    Refused(String),
}

/// The watch thread and what it sends.
#[derive(Debug)]
pub struct Watcher {
    /// The events, in order.
    pub events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

/// Sleeps `d` in short steps; false if `stop` was raised meanwhile.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !stop.load(Ordering::Relaxed)
}

fn run(socket: PathBuf, all_users: bool, stop: Arc<AtomicBool>, tx: SyncSender<Event>) {
    let mut backoff = BACKOFF_MIN;
    while !stop.load(Ordering::Relaxed) {
        let why = match watch_blocks(&socket, all_users, ANSWER_TIMEOUT) {
            Ok(mut stream) => {
                backoff = BACKOFF_MIN;
                if tx.send(Event::Connected(stream.reply.clone())).is_err() {
                    return;
                }
                loop {
                    match stream.next_event(&|| stop.load(Ordering::Relaxed)) {
                        Ok(event) => {
                            if tx.send(Event::Block(Box::new(event))).is_err() {
                                return;
                            }
                        }
                        Err(ClientError::Receive(FrameError::Truncated { received: 0 })) => {
                            break "santad closed the connection".to_owned();
                        }
                        Err(e) => break e.to_string(),
                    }
                }
            }
            Err(ClientError::Refused(e)) if e.kind == ErrorKind::PermissionDenied => {
                let _ = tx.send(Event::Refused(e.message));
                return;
            }
            Err(e) => e.to_string(),
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if tx
            .send(Event::Lost {
                why,
                retry_in: backoff,
            })
            .is_err()
        {
            return;
        }
        if !sleep_unless(&stop, backoff) {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

impl Watcher {
    /// Starts watching the santad at `socket` until `stop` is raised.
    pub fn spawn(
        socket: PathBuf,
        all_users: bool,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Watcher> {
        let (tx, events) = sync_channel(EVENTS_QUEUED_MAX);
        let thread = std::thread::Builder::new()
            .name("santa-notify-watch".into())
            .spawn(move || run(socket, all_users, stop, tx))?;
        Ok(Watcher {
            events,
            thread: Some(thread),
        })
    }

    /// Waits for the thread (after `stop` was raised; it notices within a quarter second).
    pub fn join(mut self) {
        // Unblocks a send on a full channel.
        drop(std::mem::replace(&mut self.events, sync_channel(1).1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
