//! A replay source: drives the engine from a recorded or synthetic stream of exec events, the
//! way the fanotify source does — each worker reads the next events itself and submits them to
//! its own queue — so tests and benchmarks exercise the same path without a kernel.
//!
//! Recorded traces are text, one event a line: `dev ino ctime_ns size`; `#` starts a comment.

use crate::engine::{Source, Submit};
use crate::key::{FileKey, FileStamp};
use crate::slots::Event;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Most events a trace may hold (64 M events, 1.5 GiB): a bound on memory for a bad input.
pub const TRACE_EVENTS_MAX: usize = 64 << 20;

/// One exec of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEvent {
    /// The executed file.
    pub key: FileKey,
    /// Its stamp at the time.
    pub stamp: FileStamp,
}

/// Why a recorded trace could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// A line does not have four unsigned numbers.
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// More than [`TRACE_EVENTS_MAX`] events.
    TooLong,
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadLine { line, reason } => write!(
                f,
                "trace line {line}: {reason} (want `dev ino ctime_ns size`)"
            ),
            Self::TooLong => write!(f, "trace has more than {TRACE_EVENTS_MAX} events"),
        }
    }
}

impl std::error::Error for TraceError {}

/// A synthetic workload.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic {
    /// Events in the trace.
    pub events: usize,
    /// Files that repeat (the hot set), executed uniformly at random.
    pub hot_files: u64,
    /// Percentage of events (0–100) that execute a file never seen before.
    pub new_percent: u8,
    /// Seed of the generator (printed by whoever reports results, for reruns).
    pub seed: u64,
}

/// A stream of exec events.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    events: Vec<TraceEvent>,
}

/// First inode number used for never-seen files, far above the hot set; each seed gets its own
/// range of 2^24 inodes above it, so traces with different seeds never share a "new" file.
const NEW_INO_BASE: u64 = 1 << 40;

impl Trace {
    /// Parses a recorded trace.
    pub fn parse(text: &str) -> Result<Self, TraceError> {
        let mut events = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason| TraceError::BadLine {
                line: i + 1,
                reason,
            };
            let mut fields = line.split_ascii_whitespace();
            let mut next = || -> Result<u64, TraceError> {
                fields
                    .next()
                    .ok_or(bad("too few fields"))?
                    .parse::<u64>()
                    .map_err(|_| bad("not an unsigned number"))
            };
            let (dev, ino, ctime_ns, size) = (next()?, next()?, next()?, next()?);
            if fields.next().is_some() {
                return Err(bad("too many fields"));
            }
            let ctime_ns = i64::try_from(ctime_ns).map_err(|_| bad("ctime_ns out of range"))?;
            if events.len() == TRACE_EVENTS_MAX {
                return Err(TraceError::TooLong);
            }
            events.push(TraceEvent {
                key: FileKey { dev, ino },
                stamp: FileStamp {
                    ctime_ns,
                    size_bytes: size,
                },
            });
        }
        Ok(Self { events })
    }

    /// Generates a synthetic trace (deterministic for a seed).
    pub fn synthetic(spec: &Synthetic) -> Self {
        let mut rng = SplitMix64(spec.seed);
        let mut next_new = NEW_INO_BASE + ((spec.seed & 0xff_ffff) << 24);
        let events = (0..spec.events.min(TRACE_EVENTS_MAX))
            .map(|_| {
                let new = spec.hot_files == 0 || rng.next_u64() % 100 < u64::from(spec.new_percent);
                let ino = if new {
                    next_new += 1;
                    next_new
                } else {
                    rng.next_u64() % spec.hot_files
                };
                TraceEvent {
                    key: FileKey { dev: 1, ino },
                    stamp: FileStamp {
                        ctime_ns: 1,
                        size_bytes: 4096,
                    },
                }
            })
            .collect();
        Self { events }
    }

    /// `copies` events of one file, in a row: the duplicate burst.
    pub fn burst(key: FileKey, copies: usize) -> Self {
        let event = TraceEvent {
            key,
            stamp: FileStamp {
                ctime_ns: 1,
                size_bytes: 4096,
            },
        };
        Self {
            events: vec![event; copies.min(TRACE_EVENTS_MAX)],
        }
    }

    /// One event per hot file (inodes `0..hot_files`, as [`Trace::synthetic`] uses), to warm a
    /// cache before measuring hits.
    pub fn warmup(hot_files: u64) -> Self {
        Self::default().extended((0..hot_files.min(TRACE_EVENTS_MAX as u64)).map(|ino| {
            TraceEvent {
                key: FileKey { dev: 1, ino },
                stamp: FileStamp {
                    ctime_ns: 1,
                    size_bytes: 4096,
                },
            }
        }))
    }

    /// This trace followed by `events` (up to [`TRACE_EVENTS_MAX`] in all).
    pub fn extended(mut self, events: impl IntoIterator<Item = TraceEvent>) -> Self {
        let room = TRACE_EVENTS_MAX - self.events.len();
        self.events.extend(events.into_iter().take(room));
        self
    }

    /// The events.
    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the trace is empty.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// A tiny deterministic generator (SplitMix64); good enough to pick files.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Feeds a [`Trace`] to the engine from inside the workers: each idle worker claims the next
/// `batch` events and submits them to its own queue with a deadline `deadline_ns` from now.
/// `make_payload` turns a trace event and the submit time into the engine's payload.
pub struct ReplaySource<P, F> {
    trace: Trace,
    cursor: AtomicUsize,
    batch: usize,
    deadline_ns: u64,
    make_payload: F,
    _payload: std::marker::PhantomData<fn() -> P>,
}

impl<P, F> std::fmt::Debug for ReplaySource<P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplaySource")
            .field("events", &self.trace.len())
            .field("cursor", &self.cursor.load(Ordering::Relaxed))
            .field("batch", &self.batch)
            .finish()
    }
}

impl<P, F> ReplaySource<P, F>
where
    F: Fn(&TraceEvent, u64) -> P + Send + Sync + 'static,
{
    /// A source replaying `trace` in batches of `batch` (at least 1).
    pub fn new(trace: Trace, batch: usize, deadline_ns: u64, make_payload: F) -> Self {
        Self {
            trace,
            cursor: AtomicUsize::new(0),
            batch: batch.max(1),
            deadline_ns,
            make_payload,
            _payload: std::marker::PhantomData,
        }
    }

    /// Events submitted so far.
    pub fn submitted(&self) -> usize {
        self.cursor.load(Ordering::Acquire).min(self.trace.len())
    }

    /// Whether every event has been submitted.
    pub fn finished(&self) -> bool {
        self.submitted() == self.trace.len()
    }
}

impl<P, F> Source<P> for ReplaySource<P, F>
where
    P: 'static,
    F: Fn(&TraceEvent, u64) -> P + Send + Sync + 'static,
{
    fn poll(&self, worker: usize, submit: &dyn Submit<P>) -> usize {
        let total = self.trace.len();
        if self.cursor.load(Ordering::Relaxed) >= total {
            return 0;
        }
        let start = self.cursor.fetch_add(self.batch, Ordering::AcqRel);
        let end = start.saturating_add(self.batch).min(total);
        for event in self.trace.events().get(start..end).unwrap_or_default() {
            let now = submit.now_ns();
            let payload = (self.make_payload)(event, now);
            submit.submit(
                worker,
                Event {
                    payload,
                    key: event.key,
                    stamp: event.stamp,
                    deadline_ns: now.saturating_add(self.deadline_ns),
                },
            );
        }
        end.saturating_sub(start)
    }

    fn wait(&self, _worker: usize) {
        // Only reached once the trace is exhausted; events from elsewhere still wake us.
        std::thread::park_timeout(Duration::from_millis(100));
    }

    fn wake(&self, _worker: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recorded_trace() {
        let t = Trace::parse("# dev ino ctime size\n1 2 3 4\n\n5 6 7 8 # trailing\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.events()[1].key, FileKey { dev: 5, ino: 6 });
        assert_eq!(
            t.events()[1].stamp,
            FileStamp {
                ctime_ns: 7,
                size_bytes: 8
            }
        );
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        assert_eq!(
            Trace::parse("1 2 3\n").unwrap_err(),
            TraceError::BadLine {
                line: 1,
                reason: "too few fields"
            }
        );
        assert_eq!(
            Trace::parse("1 2 3 4\n1 2 x 4\n").unwrap_err(),
            TraceError::BadLine {
                line: 2,
                reason: "not an unsigned number"
            }
        );
        assert_eq!(
            Trace::parse("1 2 3 4 5").unwrap_err(),
            TraceError::BadLine {
                line: 1,
                reason: "too many fields"
            }
        );
        assert!(matches!(
            Trace::parse("1 2 18446744073709551615 4"),
            Err(TraceError::BadLine { .. })
        ));
    }

    #[test]
    fn different_seeds_never_share_new_files() {
        let a = Trace::synthetic(&Synthetic {
            events: 1_000,
            hot_files: 0,
            new_percent: 100,
            seed: 1,
        });
        let b = Trace::synthetic(&Synthetic {
            events: 1_000,
            hot_files: 0,
            new_percent: 100,
            seed: 2,
        });
        let a: std::collections::HashSet<_> = a.events().iter().map(|e| e.key).collect();
        assert_eq!(a.len(), 1_000);
        assert!(b.events().iter().all(|e| !a.contains(&e.key)));
    }

    #[test]
    fn synthetic_mix_has_the_asked_share_of_new_files() {
        let t = Trace::synthetic(&Synthetic {
            events: 100_000,
            hot_files: 100,
            new_percent: 10,
            seed: 42,
        });
        let new = t
            .events()
            .iter()
            .filter(|e| e.key.ino >= NEW_INO_BASE)
            .count();
        assert!((9_000..11_000).contains(&new), "{new} new files of 100000");
        let again = Trace::synthetic(&Synthetic {
            events: 100_000,
            hot_files: 100,
            new_percent: 10,
            seed: 42,
        });
        assert_eq!(t.events(), again.events(), "same seed, same trace");
    }
}
