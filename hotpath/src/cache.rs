//! The decision cache: a sharded LRU of decisions with `Pending` placeholders.
//!
//! A lookup has three outcomes:
//! - [`Lookup::Hit`]: a decision for this file (same stamp, current epoch, not expired);
//! - [`Lookup::Miss`]: nobody is evaluating this file; the caller now owns a [`Ticket`], must
//!   evaluate and then call [`DecisionCache::complete`] or [`DecisionCache::abandon`];
//! - [`Lookup::Pending`]: another worker owns the evaluation; the caller waits on the shard's
//!   condvar with [`DecisionCache::wait`], bounded by its own deadline, and takes the owner's
//!   decision. A file is never evaluated twice at once.
//!
//! Placeholders live beside the LRU, in a per-shard map, so LRU eviction can never drop one.
//! A flush bumps an epoch: entries from an older epoch are invisible (O(1), no walk). Entries are
//! never popped on invalidation (that would free a node and allocate on the next insert): they
//! are marked dead and demoted, so a warm cache inserts by reusing the evicted node.

use crate::counters::FlushReason;
use crate::key::{FileKey, FileStamp, KeyHashBuilder};
use crossbeam_utils::CachePadded;
use lru::LruCache;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Placeholders preallocated per shard; more are possible but then the map allocates.
const PENDING_PER_SHARD_PREALLOC: usize = 16;

/// Device number of the dead entries a new cache is filled with. No filesystem reports it
/// (`st_dev` is a small major/minor pair), so a real file never matches one.
const DEAD_DEV: u64 = u64::MAX;

/// Dummy insertions per entry of capacity made at construction (bounded in total by
/// [`PREWARM_PUSHES_MAX`]). A full LRU churns its hash table (one remove and one insert per
/// eviction); hashbrown cannot rehash a table in place above half load, so each table grows
/// exactly once when its tombstones run out — after ~1–14 × capacity insertions, measured.
/// Doing that churn at start-up moves the one allocation per shard out of the exec path.
const PREWARM_PUSHES_PER_ENTRY: usize = 16;
/// At most this many dummy insertions in all (~0.3 s), for very large caches.
const PREWARM_PUSHES_MAX: usize = 4 << 20;

/// How an evaluation's decision may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cacheability {
    /// Until the file changes, the epoch moves or the LRU evicts it (allows).
    UntilChanged,
    /// For the cache's deny TTL only, so a new allow rule takes effect without a flush (denies).
    DenyTtl,
    /// Not at all (the file changed while being evaluated, a transient error, …).
    Never,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<D> {
    /// A decision that still applies.
    Hit(D),
    /// Nobody is evaluating this file: evaluate, then complete or abandon the ticket.
    Miss(Ticket),
    /// Another worker is evaluating this file: wait for it.
    Pending(Wait),
}

/// The right (and duty) to evaluate one file and publish the decision.
#[derive(Debug)]
#[must_use = "a ticket must be completed or abandoned, or waiters wait until their deadline"]
pub struct Ticket {
    key: FileKey,
    stamp: FileStamp,
    epoch: u64,
    seq: u64,
    /// False when a placeholder could not be inserted (an older one still has waiters):
    /// the evaluation then runs uncoalesced.
    placeholder: bool,
}

/// A place in the queue of waiters for another worker's evaluation.
#[derive(Debug)]
#[must_use = "a wait must be waited on, or the placeholder's waiter count never drops"]
pub struct Wait {
    key: FileKey,
    seq: u64,
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitOutcome<D> {
    /// The owner published this decision.
    Decided(D),
    /// The deadline came first.
    TimedOut,
    /// The owner gave up (its evaluation failed).
    Abandoned,
}

#[derive(Debug)]
struct Entry<D> {
    stamp: FileStamp,
    epoch: u64,
    expires_ns: u64,
    /// `None` once invalidated: kept as a dead node for reuse.
    decision: Option<D>,
}

#[derive(Debug)]
enum Outcome<D> {
    Running,
    /// The decision, and whether later lookups may reuse it.
    Done(D, bool),
    Abandoned,
}

#[derive(Debug)]
struct Placeholder<D> {
    seq: u64,
    stamp: FileStamp,
    waiters: u32,
    outcome: Outcome<D>,
}

#[derive(Debug)]
struct ShardInner<D> {
    lru: LruCache<FileKey, Entry<D>, KeyHashBuilder>,
    pending: HashMap<FileKey, Placeholder<D>, KeyHashBuilder>,
    next_seq: u64,
}

#[derive(Debug)]
struct Shard<D> {
    inner: Mutex<ShardInner<D>>,
    changed: Condvar,
}

/// The sharded decision cache. `D` is the evaluator's decision, cloned out on every hit.
#[derive(Debug)]
pub struct DecisionCache<D> {
    shards: Box<[CachePadded<Shard<D>>]>,
    shard_mask: u64,
    hasher: KeyHashBuilder,
    epoch: CachePadded<AtomicU64>,
    deny_ttl_ns: u64,
    flushes: [AtomicU64; 4],
    invalidations: AtomicU64,
}

/// A poisoned shard lock means a thread panicked while holding it; the shard's data is still
/// structurally sound (every mutation below is a single map operation), so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<D: Clone> DecisionCache<D> {
    /// A cache of about `capacity` decisions in `shards` shards (rounded up to a power of two),
    /// keeping deny decisions for `deny_ttl_ns`.
    pub fn new(capacity: usize, shards: usize, deny_ttl_ns: u64, hasher: KeyHashBuilder) -> Self {
        let shards = shards.clamp(1, 1 << 12).next_power_of_two();
        let per_shard =
            NonZeroUsize::new(capacity.div_ceil(shards).max(1)).unwrap_or(NonZeroUsize::MIN);
        let churn = (per_shard.get() * PREWARM_PUSHES_PER_ENTRY).min(PREWARM_PUSHES_MAX / shards);
        let shards_vec: Box<[CachePadded<Shard<D>>]> = (0..shards)
            .map(|_| {
                let mut lru = LruCache::with_hasher(per_shard, hasher);
                // Every node is allocated now, as a dead entry that real ones evict and reuse.
                for ino in 0..(per_shard.get() + churn) as u64 {
                    let dead = Entry {
                        stamp: FileStamp::default(),
                        epoch: 0,
                        expires_ns: 0,
                        decision: None,
                    };
                    lru.push(FileKey { dev: DEAD_DEV, ino }, dead);
                }
                CachePadded::new(Shard {
                    inner: Mutex::new(ShardInner {
                        lru,
                        pending: HashMap::with_capacity_and_hasher(
                            PENDING_PER_SHARD_PREALLOC,
                            hasher,
                        ),
                        next_seq: 0,
                    }),
                    changed: Condvar::new(),
                })
            })
            .collect();
        Self {
            shards: shards_vec,
            shard_mask: (shards - 1) as u64,
            hasher,
            epoch: CachePadded::new(AtomicU64::new(0)),
            deny_ttl_ns,
            flushes: Default::default(),
            invalidations: AtomicU64::new(0),
        }
    }

    #[inline]
    fn shard(&self, key: &FileKey) -> &Shard<D> {
        // Bits above those the hash maps use for buckets and control bytes.
        let h = self.hasher.hash_key(key);
        &self.shards[((h >> 20) & self.shard_mask) as usize]
    }

    /// The current epoch; decisions from older epochs are invisible.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Looks `key` up for an event whose file has `stamp`, at time `now_ns`.
    pub fn lookup(&self, key: FileKey, stamp: FileStamp, now_ns: u64) -> Lookup<D> {
        let shard = self.shard(&key);
        let mut inner = lock(&shard.inner);
        let epoch = self.epoch();
        let mut placeholder = true;
        if let Some(p) = inner.pending.get_mut(&key) {
            match &p.outcome {
                Outcome::Running if p.stamp == stamp => {
                    p.waiters += 1;
                    return Lookup::Pending(Wait { key, seq: p.seq });
                }
                Outcome::Done(d, true) if p.stamp == stamp => return Lookup::Hit(d.clone()),
                // A different version of the file, an uncacheable decision or a failed
                // evaluation whose waiters have not all left yet: evaluate without coalescing.
                _ => placeholder = false,
            }
        }
        if let Some(e) = inner.lru.get(&key)
            && let Some(d) = &e.decision
            && e.stamp == stamp
            && e.epoch == epoch
            && now_ns < e.expires_ns
        {
            return Lookup::Hit(d.clone());
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if placeholder {
            inner.pending.insert(
                key,
                Placeholder {
                    seq,
                    stamp,
                    waiters: 0,
                    outcome: Outcome::Running,
                },
            );
        }
        Lookup::Miss(Ticket {
            key,
            stamp,
            epoch,
            seq,
            placeholder,
        })
    }

    /// Publishes the decision of the evaluation `ticket` stands for: waiters take it, and it is
    /// cached as `cacheability` allows (under the epoch seen at lookup, so a flush during the
    /// evaluation makes it invisible).
    pub fn complete(&self, ticket: Ticket, decision: &D, cacheability: Cacheability, now_ns: u64) {
        let shard = self.shard(&ticket.key);
        let mut inner = lock(&shard.inner);
        let notify = ticket.placeholder
            && Self::resolve(
                &mut inner,
                &ticket,
                Outcome::Done(decision.clone(), cacheability != Cacheability::Never),
            );
        let expires_ns = match cacheability {
            Cacheability::UntilChanged => Some(u64::MAX),
            Cacheability::DenyTtl => Some(now_ns.saturating_add(self.deny_ttl_ns)),
            Cacheability::Never => None,
        };
        if let Some(expires_ns) = expires_ns {
            let entry = Entry {
                stamp: ticket.stamp,
                epoch: ticket.epoch,
                expires_ns,
                decision: Some(decision.clone()),
            };
            if let Some(existing) = inner.lru.get_mut(&ticket.key) {
                *existing = entry;
            } else {
                inner.lru.push(ticket.key, entry);
            }
        }
        drop(inner);
        if notify {
            shard.changed.notify_all();
        }
    }

    /// Gives up the evaluation `ticket` stands for: waiters are told, nothing is cached.
    pub fn abandon(&self, ticket: Ticket) {
        let shard = self.shard(&ticket.key);
        let mut inner = lock(&shard.inner);
        let notify = ticket.placeholder && Self::resolve(&mut inner, &ticket, Outcome::Abandoned);
        drop(inner);
        if notify {
            shard.changed.notify_all();
        }
    }

    /// Ends the placeholder of `ticket`; returns whether waiters must be woken.
    fn resolve(inner: &mut ShardInner<D>, ticket: &Ticket, outcome: Outcome<D>) -> bool {
        match inner.pending.get_mut(&ticket.key) {
            Some(p) if p.seq == ticket.seq => {
                if p.waiters == 0 {
                    inner.pending.remove(&ticket.key);
                    false
                } else {
                    p.outcome = outcome;
                    true
                }
            }
            // Only the ticket's owner removes a running placeholder, so it must be there.
            other => {
                debug_assert!(
                    other.is_none(),
                    "placeholder of {:?} replaced while running",
                    ticket.key
                );
                false
            }
        }
    }

    /// Waits for the owner of `wait`'s placeholder, until `deadline_ns` on `now_ns`'s clock.
    pub fn wait(&self, wait: Wait, deadline_ns: u64, now_ns: impl Fn() -> u64) -> WaitOutcome<D> {
        let shard = self.shard(&wait.key);
        let mut inner = lock(&shard.inner);
        loop {
            let Some(p) = inner
                .pending
                .get_mut(&wait.key)
                .filter(|p| p.seq == wait.seq)
            else {
                // Placeholders with waiters are only removed by their last waiter.
                debug_assert!(
                    false,
                    "placeholder of {:?} vanished under a waiter",
                    wait.key
                );
                return WaitOutcome::Abandoned;
            };
            let outcome = match &p.outcome {
                Outcome::Running => {
                    let now = now_ns();
                    if now >= deadline_ns {
                        Some(WaitOutcome::TimedOut)
                    } else {
                        None
                    }
                }
                Outcome::Done(d, _) => Some(WaitOutcome::Decided(d.clone())),
                Outcome::Abandoned => Some(WaitOutcome::Abandoned),
            };
            if let Some(outcome) = outcome {
                p.waiters -= 1;
                if p.waiters == 0 && !matches!(p.outcome, Outcome::Running) {
                    inner.pending.remove(&wait.key);
                }
                return outcome;
            }
            let left = Duration::from_nanos(deadline_ns.saturating_sub(now_ns()));
            inner = shard
                .changed
                .wait_timeout(inner, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The decision a lookup at `now_ns` would hit for this file, without touching the cache:
    /// no LRU promotion, no placeholder, no counters (`santactl checkcache`). A decision still
    /// being evaluated is not reported.
    pub fn peek(&self, key: FileKey, stamp: FileStamp, now_ns: u64) -> Option<D> {
        let shard = self.shard(&key);
        let inner = lock(&shard.inner);
        let epoch = self.epoch();
        inner
            .lru
            .peek(&key)
            .filter(|e| e.stamp == stamp && e.epoch == epoch && now_ns < e.expires_ns)
            .and_then(|e| e.decision.clone())
    }

    /// Makes every decision cached so far invisible, in O(1).
    pub fn flush(&self, reason: FlushReason) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.flushes[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets the decision about one file (it was written to).
    pub fn invalidate(&self, key: FileKey) {
        let shard = self.shard(&key);
        let mut inner = lock(&shard.inner);
        if let Some(e) = inner.lru.peek_mut(&key) {
            e.decision = None;
            inner.lru.demote(&key);
            self.invalidations.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Flushes so far, by reason (indexed as [`FlushReason::ALL`]).
    pub fn flush_counts(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.flushes[i].load(Ordering::Relaxed))
    }

    /// Single-file invalidations so far.
    pub fn invalidation_count(&self) -> u64 {
        self.invalidations.load(Ordering::Relaxed)
    }

    /// Live entries (holding a decision, possibly stale), summed over shards. Walks every
    /// shard: for status and tests, not the hot path.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                lock(&s.inner)
                    .lru
                    .iter()
                    .filter(|(_, e)| e.decision.is_some())
                    .count()
            })
            .sum()
    }

    /// Whether no live entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries the cache can hold (summed over shards).
    pub fn capacity(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(&s.inner).lru.cap().get())
            .sum()
    }

    /// Evaluations in progress or with waiters still to leave, summed over shards.
    pub fn pending_len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(&s.inner).pending.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    const STAMP: FileStamp = FileStamp {
        ctime_ns: 1,
        size: 10,
    };

    fn key(ino: u64) -> FileKey {
        FileKey { dev: 1, ino }
    }

    fn cache(capacity: usize, shards: usize) -> DecisionCache<u32> {
        DecisionCache::new(
            capacity,
            shards,
            1_500_000_000,
            KeyHashBuilder::with_seed(1),
        )
    }

    fn miss(c: &DecisionCache<u32>, k: FileKey, now: u64) -> Ticket {
        match c.lookup(k, STAMP, now) {
            Lookup::Miss(t) => t,
            other => panic!("expected a miss for {k:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_new_cache_is_full_of_dead_entries_that_never_hit() {
        let c = cache(64, 4);
        assert_eq!(c.capacity(), 64);
        assert!(c.is_empty(), "dead entries are not live");
        assert!(matches!(
            c.lookup(
                FileKey {
                    dev: DEAD_DEV,
                    ino: 0
                },
                FileStamp::default(),
                0
            ),
            Lookup::Miss(_)
        ));
    }

    #[test]
    fn miss_then_hit() {
        let c = cache(16, 2);
        let t = miss(&c, key(1), 0);
        c.complete(t, &7, Cacheability::UntilChanged, 0);
        assert!(matches!(c.lookup(key(1), STAMP, 10), Lookup::Hit(7)));
        assert_eq!(c.pending_len(), 0);
    }

    #[test]
    fn peek_reports_a_live_decision_without_promoting_or_claiming() {
        // One shard of two entries: peeking key 1 must not save it from eviction.
        let c = cache(2, 1);
        assert_eq!(c.peek(key(1), STAMP, 0), None, "nothing cached yet");
        assert_eq!(c.pending_len(), 0, "a peek never leaves a placeholder");
        for i in 1..=2 {
            let t = miss(&c, key(i), 0);
            c.complete(t, &(i as u32), Cacheability::UntilChanged, 0);
        }
        assert_eq!(c.peek(key(1), STAMP, 0), Some(1));
        let other = FileStamp {
            ctime_ns: 9,
            size: 10,
        };
        assert_eq!(
            c.peek(key(1), other, 0),
            None,
            "another version of the file"
        );
        let t = miss(&c, key(3), 0);
        c.complete(t, &3, Cacheability::UntilChanged, 0);
        assert_eq!(
            c.peek(key(1), STAMP, 0),
            None,
            "least recently used despite the peek"
        );
        assert_eq!(c.peek(key(2), STAMP, 0), Some(2));
        let t = miss(&c, key(4), 0);
        assert_eq!(c.peek(key(4), STAMP, 0), None, "still being evaluated");
        c.complete(t, &4, Cacheability::DenyTtl, 0);
        assert_eq!(c.peek(key(4), STAMP, 1), Some(4));
        assert_eq!(c.peek(key(4), STAMP, 1_500_000_000), None, "deny TTL over");
        c.flush(FlushReason::Operator);
        assert_eq!(c.peek(key(2), STAMP, 0), None, "flushed");
    }

    #[test]
    fn changed_stamp_misses() {
        let c = cache(16, 2);
        let t = miss(&c, key(1), 0);
        c.complete(t, &7, Cacheability::UntilChanged, 0);
        let newer = FileStamp {
            ctime_ns: 2,
            size: 10,
        };
        assert!(matches!(c.lookup(key(1), newer, 0), Lookup::Miss(_)));
    }

    #[test]
    fn deny_ttl_expiry() {
        let c = cache(16, 2);
        let t = miss(&c, key(1), 1_000);
        c.complete(t, &9, Cacheability::DenyTtl, 1_000);
        assert!(matches!(
            c.lookup(key(1), STAMP, 1_000 + 1_499_999_999),
            Lookup::Hit(9)
        ));
        assert!(matches!(
            c.lookup(key(1), STAMP, 1_000 + 1_500_000_000),
            Lookup::Miss(_)
        ));
    }

    #[test]
    fn never_cacheable_is_not_kept() {
        let c = cache(16, 2);
        let t = miss(&c, key(1), 0);
        c.complete(t, &9, Cacheability::Never, 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0), Lookup::Miss(_)));
    }

    #[test]
    fn flush_epoch_makes_old_decisions_invisible() {
        let c = cache(16, 2);
        for i in 0..8 {
            let t = miss(&c, key(i), 0);
            c.complete(t, &1, Cacheability::UntilChanged, 0);
        }
        c.flush(FlushReason::Rules);
        for i in 0..8 {
            assert!(
                matches!(c.lookup(key(i), STAMP, 0), Lookup::Miss(_)),
                "key {i} survived the flush"
            );
        }
        assert_eq!(c.flush_counts()[FlushReason::Rules.index()], 1);
    }

    #[test]
    fn flush_during_evaluation_hides_its_result() {
        let c = cache(16, 2);
        let t = miss(&c, key(1), 0);
        c.flush(FlushReason::Operator);
        c.complete(t, &1, Cacheability::UntilChanged, 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0), Lookup::Miss(_)));
    }

    #[test]
    fn invalidate_forgets_one_file() {
        let c = cache(16, 1);
        for i in 0..2 {
            let t = miss(&c, key(i), 0);
            c.complete(t, &1, Cacheability::UntilChanged, 0);
        }
        c.invalidate(key(0));
        assert!(matches!(c.lookup(key(0), STAMP, 0), Lookup::Miss(_)));
        assert!(matches!(c.lookup(key(1), STAMP, 0), Lookup::Hit(1)));
        assert_eq!(c.invalidation_count(), 1);
    }

    #[test]
    fn eviction_under_pressure_never_loses_a_pending() {
        // One shard of capacity 4; 64 evaluations in flight at once, plus 1,000 completed
        // decisions churning the LRU. Every placeholder must survive and serve its waiter.
        let c = cache(4, 1);
        let tickets: Vec<Ticket> = (0..64).map(|i| miss(&c, key(i), 0)).collect();
        let waits: Vec<Wait> = (0..64)
            .map(|i| match c.lookup(key(i), STAMP, 0) {
                Lookup::Pending(w) => w,
                other => panic!("key {i}: expected pending, got {other:?}"),
            })
            .collect();
        for i in 1_000..2_000 {
            let t = miss(&c, key(i), 0);
            c.complete(t, &0, Cacheability::UntilChanged, 0);
        }
        assert_eq!(c.len(), 4, "LRU stays at capacity");
        assert_eq!(c.pending_len(), 64, "no placeholder evicted");
        for (i, t) in tickets.into_iter().enumerate() {
            c.complete(t, &(i as u32), Cacheability::UntilChanged, 0);
        }
        for (i, w) in waits.into_iter().enumerate() {
            assert_eq!(c.wait(w, u64::MAX, || 0), WaitOutcome::Decided(i as u32));
        }
        assert_eq!(c.pending_len(), 0);
    }

    #[test]
    fn waiter_times_out_at_its_deadline() {
        let c = cache(16, 2);
        let _owner = miss(&c, key(1), 0);
        let Lookup::Pending(w) = c.lookup(key(1), STAMP, 0) else {
            panic!("expected pending")
        };
        assert_eq!(c.wait(w, 100, || 100), WaitOutcome::TimedOut);
    }

    #[test]
    fn abandoned_evaluation_tells_waiters() {
        let c = cache(16, 2);
        let owner = miss(&c, key(1), 0);
        let Lookup::Pending(w) = c.lookup(key(1), STAMP, 0) else {
            panic!("expected pending")
        };
        c.abandon(owner);
        assert_eq!(c.wait(w, u64::MAX, || 0), WaitOutcome::Abandoned);
        assert_eq!(c.pending_len(), 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0), Lookup::Miss(_)));
    }

    #[test]
    fn hundred_concurrent_lookups_one_evaluation() {
        let c = Arc::new(cache(64, 4));
        let evaluations = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(std::sync::Barrier::new(100));
        let handles: Vec<_> = (0..100)
            .map(|_| {
                let (c, evaluations, barrier) = (c.clone(), evaluations.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    match c.lookup(key(42), STAMP, 0) {
                        Lookup::Hit(d) => d,
                        Lookup::Miss(t) => {
                            evaluations.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            c.complete(t, &4242, Cacheability::UntilChanged, 0);
                            4242
                        }
                        Lookup::Pending(w) => match c.wait(w, u64::MAX, || 0) {
                            WaitOutcome::Decided(d) => d,
                            other => panic!("waiter got {other:?}"),
                        },
                    }
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 4242);
        }
        assert_eq!(evaluations.load(Ordering::SeqCst), 1);
        assert_eq!(c.pending_len(), 0);
    }
}
