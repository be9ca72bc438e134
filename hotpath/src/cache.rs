//! The decision cache: a sharded LRU of decisions with `Pending` placeholders.
//!
//! A lookup has three outcomes:
//! - [`Lookup::Hit`]: a decision for this file (same stamp, current epoch, not expired);
//! - [`Lookup::Miss`]: nobody is evaluating this file; the caller now owns a [`Ticket`], must
//!   evaluate and then call [`DecisionCache::complete`] or [`DecisionCache::abandon`];
//! - [`Lookup::Parked`]: another worker owns the evaluation; the caller's event (an opaque
//!   `u32` token, the engine's slot index) is parked on the placeholder and the caller goes on
//!   with other work. The owner gets every parked token back from `complete`/`abandon` and
//!   answers them. A file is never evaluated twice at once, and a waiting event never holds a
//!   worker (a user exec'ing one slow file many times cannot pin every worker).
//!
//! Parked tokens form an intrusive list through a preallocated link array (one `u32` per
//! token), so parking allocates nothing. A write to the file while events are parked
//! ([`DecisionCache::invalidate`]) removes the placeholder and hands its tokens back for a
//! fresh evaluation; the owner's result is then neither cached nor given to them: no waiter
//! takes a decision made on content that has since changed.
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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Placeholders preallocated per shard; more are possible but then the map allocates.
const PENDING_PER_SHARD_PREALLOC: usize = 16;

/// Device number of the dead entries a new cache is filled with. No filesystem reports it
/// (`st_dev` is a small major/minor pair), so a real file never matches one.
const DEAD_DEV: u64 = u64::MAX;

/// End of a parked list.
const NO_TOKEN: u32 = u32::MAX;

/// Dummy insertions per entry of capacity made at construction (bounded in total by
/// [`PREWARM_PUSHES_MAX`]). A full LRU churns its hash table (one remove and one insert per
/// eviction); hashbrown cannot rehash a table in place above half load, so each table grows
/// exactly once when its tombstones run out — after ~1–14 × capacity insertions, measured.
/// Doing that churn at start-up moves the one allocation per shard out of the exec path.
const PREWARM_PUSHES_PER_ENTRY: usize = 16;
/// At most this many dummy insertions in all (~0.3 s), for very large caches.
const PREWARM_PUSHES_MAX: usize = 4 << 20;

/// A read-only view of the cache's flush epoch, for whoever places kernel-side cache entries:
/// an entry placed for a decision of an older epoch than [`Epoch::current`] must be withdrawn
/// (the epoch is bumped before the kernel cache is flushed, so a placement that raced a flush
/// sees the new epoch once it is placed).
#[derive(Debug, Clone)]
pub struct Epoch(Arc<CachePadded<AtomicU64>>);

impl Epoch {
    /// The epoch now.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How an evaluation's decision may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cacheability {
    /// Until the file changes, the epoch moves or the LRU evicts it (allows).
    UntilChanged,
    /// For the cache's deny TTL only, so a new allow rule takes effect without a flush (denies).
    DenyTtl,
    /// Not at all (a transient error, a file too large to hash, …); events parked on the
    /// evaluation take the same decision.
    Never,
    /// Not at all, because the file changed while it was evaluated: the decision describes no
    /// version of the file that held still, so events parked on the evaluation are handed back
    /// to be evaluated again instead of taking it.
    FileChanged,
    /// Not at all, because it depends on the execution, not only on the file (a CEL rule that
    /// read `euid` or `cwd`, a path through another mount namespace): events parked on the
    /// evaluation are handed back to be decided each with its own (the file is not re-stamped).
    PerExec,
}

impl Cacheability {
    /// Whether the decision may be kept (by this cache or the kernel's).
    pub fn is_cacheable(self) -> bool {
        matches!(self, Self::UntilChanged | Self::DenyTtl)
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<D> {
    /// A decision that still applies.
    Hit(D),
    /// Nobody is evaluating this file: evaluate, then complete or abandon the ticket.
    Miss(Ticket),
    /// Another worker is evaluating this file: the caller's token is parked on it and comes
    /// back to the owner from `complete` or `abandon` (or to whoever invalidates the file).
    Parked,
}

/// The right (and duty) to evaluate one file and publish the decision.
#[derive(Debug)]
#[must_use = "a ticket must be completed or abandoned, or parked events are never answered"]
pub struct Ticket {
    key: FileKey,
    stamp: FileStamp,
    epoch: u64,
    seq: u64,
    /// False when a placeholder could not be inserted (another version of the file is being
    /// evaluated): the evaluation then runs uncoalesced.
    placeholder: bool,
}

impl Ticket {
    /// The epoch the decision will be cached under: a kernel-side cache entry placed for it
    /// must be withdrawn if [`DecisionCache::epoch`] has moved on by then.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// Tokens handed back by `complete`, `abandon` or `invalidate`: walk them with
/// [`DecisionCache::next_parked`] (each exactly once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "parked tokens must be answered or re-queued"]
pub struct Parked {
    head: u32,
    /// The tokens must be evaluated again: the file changed while they waited.
    pub restart: bool,
    /// The tokens must be decided each on its own (the decision depended on the execution).
    pub requeue: bool,
}

impl Parked {
    /// No tokens.
    pub const NONE: Parked = Parked {
        head: NO_TOKEN,
        restart: false,
        requeue: false,
    };

    /// Whether there is no token.
    pub fn is_empty(&self) -> bool {
        self.head == NO_TOKEN
    }
}

#[derive(Debug)]
struct Entry<D> {
    stamp: FileStamp,
    epoch: u64,
    expires_ns: u64,
    /// `None` once invalidated: kept as a dead node for reuse.
    decision: Option<D>,
    /// No decision, but a mark that this version of the file is decided per execution (its
    /// last decision was [`Cacheability::PerExec`]): execs of it are evaluated side by side,
    /// not parked behind one another.
    per_exec: bool,
}

#[derive(Debug)]
struct Placeholder {
    seq: u64,
    stamp: FileStamp,
    /// Head of the parked tokens (most recent first), [`NO_TOKEN`] if none.
    parked: u32,
}

#[derive(Debug)]
struct ShardInner<D> {
    lru: LruCache<FileKey, Entry<D>, KeyHashBuilder>,
    pending: HashMap<FileKey, Placeholder, KeyHashBuilder>,
    next_seq: u64,
}

#[derive(Debug)]
struct Shard<D> {
    inner: Mutex<ShardInner<D>>,
}

/// The sharded decision cache. `D` is the evaluator's decision, cloned out on every hit.
#[derive(Debug)]
pub struct DecisionCache<D> {
    shards: Box<[CachePadded<Shard<D>>]>,
    shard_mask: u64,
    hasher: KeyHashBuilder,
    epoch: Epoch,
    deny_ttl_ns: u64,
    /// `links[t]`: the token parked after `t`. Written under the shard lock of the placeholder
    /// `t` is parked on; read by whoever took the list out (it is theirs alone by then).
    links: Box<[AtomicU32]>,
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
    /// keeping deny decisions for `deny_ttl_ns`; tokens parked on evaluations are below
    /// `tokens` (the engine's in-flight slots).
    pub fn new(
        capacity: usize,
        shards: usize,
        deny_ttl_ns: u64,
        hasher: KeyHashBuilder,
        tokens: usize,
    ) -> Self {
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
                        per_exec: false,
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
                })
            })
            .collect();
        Self {
            shards: shards_vec,
            shard_mask: (shards - 1) as u64,
            hasher,
            epoch: Epoch(Arc::new(CachePadded::new(AtomicU64::new(0)))),
            deny_ttl_ns,
            links: (0..tokens.min(NO_TOKEN as usize))
                .map(|_| AtomicU32::new(NO_TOKEN))
                .collect(),
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
        self.epoch.current()
    }

    /// A view of the epoch for kernel-side caches.
    pub fn epoch_watch(&self) -> Epoch {
        self.epoch.clone()
    }

    /// Looks `key` up for an event whose file has `stamp`, at time `now_ns`. If another worker
    /// is evaluating the same version of the file, `token` is parked on its placeholder
    /// ([`Lookup::Parked`]); `token` must be below the `tokens` the cache was built with and
    /// parked at most once at a time, or the lookup runs uncoalesced.
    pub fn lookup(&self, key: FileKey, stamp: FileStamp, now_ns: u64, token: u32) -> Lookup<D> {
        let shard = self.shard(&key);
        let mut inner = lock(&shard.inner);
        let epoch = self.epoch();
        // One probe of the LRU: a decision that still applies, or the mark that this version
        // is decided per execution (evaluated without a placeholder: one exec's evaluation
        // says nothing about another's, so none waits for another).
        let mut placeholder = true;
        if let Some(e) = inner.lru.get(&key)
            && e.stamp == stamp
            && e.epoch == epoch
        {
            if let Some(d) = &e.decision
                && now_ns < e.expires_ns
            {
                return Lookup::Hit(d.clone());
            }
            placeholder = !e.per_exec;
        }
        if placeholder && let Some(p) = inner.pending.get_mut(&key) {
            match self.links.get(token as usize) {
                Some(link) if p.stamp == stamp => {
                    link.store(p.parked, Ordering::Relaxed);
                    p.parked = token;
                    return Lookup::Parked;
                }
                // A different version of the file (or a token that cannot be parked): evaluate
                // without coalescing.
                _ => placeholder = false,
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if placeholder {
            inner.pending.insert(
                key,
                Placeholder {
                    seq,
                    stamp,
                    parked: NO_TOKEN,
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

    /// Publishes the decision of the evaluation `ticket` stands for, as `cacheability` allows
    /// (under the epoch seen at lookup, so a flush during the evaluation makes it invisible),
    /// and hands back the events parked on it: they take the decision, or — if the file changed
    /// meanwhile ([`Cacheability::FileChanged`], or it was invalidated) — are evaluated again.
    pub fn complete(
        &self,
        ticket: Ticket,
        decision: &D,
        cacheability: Cacheability,
        now_ns: u64,
    ) -> Parked {
        let shard = self.shard(&ticket.key);
        let mut inner = lock(&shard.inner);
        let (parked, invalidated) = Self::resolve(&mut inner, &ticket);
        let expires_ns = match cacheability {
            _ if invalidated => None,
            Cacheability::UntilChanged => Some(u64::MAX),
            Cacheability::DenyTtl => Some(now_ns.saturating_add(self.deny_ttl_ns)),
            Cacheability::Never | Cacheability::FileChanged | Cacheability::PerExec => None,
        };
        if let Some(expires_ns) = expires_ns {
            let entry = Entry {
                stamp: ticket.stamp,
                epoch: ticket.epoch,
                expires_ns,
                decision: Some(decision.clone()),
                per_exec: false,
            };
            if let Some(existing) = inner.lru.get_mut(&ticket.key) {
                *existing = entry;
            } else {
                inner.lru.push(ticket.key, entry);
            }
        } else if cacheability == Cacheability::PerExec && !invalidated {
            let mark = Entry {
                stamp: ticket.stamp,
                epoch: ticket.epoch,
                expires_ns: 0,
                decision: None,
                per_exec: true,
            };
            if let Some(existing) = inner.lru.get_mut(&ticket.key) {
                *existing = mark;
            } else {
                inner.lru.push(ticket.key, mark);
            }
        }
        Parked {
            head: parked,
            restart: cacheability == Cacheability::FileChanged,
            requeue: cacheability == Cacheability::PerExec,
        }
    }

    /// Gives up the evaluation `ticket` stands for: nothing is cached; the parked events are
    /// handed back (to be answered with the default, or re-queued).
    pub fn abandon(&self, ticket: Ticket) -> Parked {
        let shard = self.shard(&ticket.key);
        let mut inner = lock(&shard.inner);
        let (head, _) = Self::resolve(&mut inner, &ticket);
        Parked {
            head,
            restart: false,
            requeue: false,
        }
    }

    /// Ends the placeholder of `ticket`: its parked list, and whether it was invalidated (removed
    /// by [`Self::invalidate`]) while the evaluation ran.
    fn resolve(inner: &mut ShardInner<D>, ticket: &Ticket) -> (u32, bool) {
        if !ticket.placeholder {
            return (NO_TOKEN, false);
        }
        match inner.pending.get(&ticket.key) {
            Some(p) if p.seq == ticket.seq => {
                let head = p.parked;
                inner.pending.remove(&ticket.key);
                (head, false)
            }
            // Only the owner and `invalidate` remove a placeholder.
            _ => (NO_TOKEN, true),
        }
    }

    /// Takes the next token off a parked list handed back by this cache.
    pub fn next_parked(&self, parked: &mut Parked) -> Option<u32> {
        if parked.head == NO_TOKEN {
            return None;
        }
        let token = parked.head;
        parked.head = self
            .links
            .get(token as usize)
            .map_or(NO_TOKEN, |l| l.swap(NO_TOKEN, Ordering::Relaxed));
        Some(token)
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
        self.epoch.0.fetch_add(1, Ordering::SeqCst);
        self.flushes[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets the decision about one file (it was written to). An evaluation of it still
    /// running loses its placeholder: its result will not be cached, and the events parked on
    /// it are handed back here, to be evaluated again.
    pub fn invalidate(&self, key: FileKey) -> Parked {
        let shard = self.shard(&key);
        let mut inner = lock(&shard.inner);
        if let Some(e) = inner.lru.peek_mut(&key) {
            e.decision = None;
            e.per_exec = false;
            inner.lru.demote(&key);
            self.invalidations.fetch_add(1, Ordering::Relaxed);
        }
        match inner.pending.remove(&key) {
            Some(p) => Parked {
                head: p.parked,
                restart: true,
                requeue: false,
            },
            None => Parked::NONE,
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

    /// Evaluations in progress, summed over shards.
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
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    const STAMP: FileStamp = FileStamp {
        ctime_ns: 1,
        size_bytes: 10,
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
            4096,
        )
    }

    fn miss(c: &DecisionCache<u32>, k: FileKey, now: u64) -> Ticket {
        match c.lookup(k, STAMP, now, 0) {
            Lookup::Miss(t) => t,
            other => panic!("expected a miss for {k:?}, got {other:?}"),
        }
    }

    /// Caches decision `d` for `k` (a miss, then its completion), until the file changes.
    fn decide(c: &DecisionCache<u32>, k: FileKey, d: u32) {
        let t = miss(c, k, 0);
        assert!(c.complete(t, &d, Cacheability::UntilChanged, 0).is_empty());
    }

    /// A cache of 16 in `shards` shards holding decision 1 for inodes `inos`.
    fn filled(shards: usize, inos: std::ops::Range<u64>) -> DecisionCache<u32> {
        let c = cache(16, shards);
        for i in inos {
            decide(&c, key(i), 1);
        }
        c
    }

    fn drain(c: &DecisionCache<u32>, mut p: Parked) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(t) = c.next_parked(&mut p) {
            out.push(t);
        }
        out.sort_unstable();
        out
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
                0,
                0
            ),
            Lookup::Miss(_)
        ));
    }

    #[test]
    fn miss_then_hit() {
        let c = cache(16, 2);
        let t = miss(&c, key(1), 0);
        assert!(c.complete(t, &7, Cacheability::UntilChanged, 0).is_empty());
        assert!(matches!(c.lookup(key(1), STAMP, 10, 0), Lookup::Hit(7)));
        assert_eq!(c.pending_len(), 0);
    }

    #[test]
    fn peek_reports_a_live_decision_without_promoting_or_claiming() {
        // One shard of two entries: peeking key 1 must not save it from eviction.
        let c = cache(2, 1);
        assert_eq!(c.peek(key(1), STAMP, 0), None, "nothing cached yet");
        assert_eq!(c.pending_len(), 0, "a peek never leaves a placeholder");
        for i in 1..=2 {
            decide(&c, key(i), i as u32);
        }
        assert_eq!(c.peek(key(1), STAMP, 0), Some(1));
        let other = FileStamp {
            ctime_ns: 9,
            size_bytes: 10,
        };
        assert_eq!(
            c.peek(key(1), other, 0),
            None,
            "another version of the file"
        );
        decide(&c, key(3), 3);
        assert_eq!(
            c.peek(key(1), STAMP, 0),
            None,
            "least recently used despite the peek"
        );
        assert_eq!(c.peek(key(2), STAMP, 0), Some(2));
        let t = miss(&c, key(4), 0);
        assert_eq!(c.peek(key(4), STAMP, 0), None, "still being evaluated");
        let _ = c.complete(t, &4, Cacheability::DenyTtl, 0);
        assert_eq!(c.peek(key(4), STAMP, 1), Some(4));
        assert_eq!(c.peek(key(4), STAMP, 1_500_000_000), None, "deny TTL over");
        c.flush(FlushReason::Operator);
        assert_eq!(c.peek(key(2), STAMP, 0), None, "flushed");
    }

    #[test]
    fn changed_stamp_misses() {
        let c = cache(16, 2);
        decide(&c, key(1), 7);
        let newer = FileStamp {
            ctime_ns: 2,
            size_bytes: 10,
        };
        assert!(matches!(c.lookup(key(1), newer, 0, 0), Lookup::Miss(_)));
    }

    #[test]
    fn deny_ttl_expiry() {
        let c = cache(16, 2);
        let t = miss(&c, key(1), 1_000);
        let _ = c.complete(t, &9, Cacheability::DenyTtl, 1_000);
        assert!(matches!(
            c.lookup(key(1), STAMP, 1_000 + 1_499_999_999, 0),
            Lookup::Hit(9)
        ));
        assert!(matches!(
            c.lookup(key(1), STAMP, 1_000 + 1_500_000_000, 0),
            Lookup::Miss(_)
        ));
    }

    #[test]
    fn never_cacheable_is_not_kept() {
        for how in [Cacheability::Never, Cacheability::FileChanged] {
            let c = cache(16, 2);
            let t = miss(&c, key(1), 0);
            let _ = c.complete(t, &9, how, 0);
            assert!(matches!(c.lookup(key(1), STAMP, 0, 0), Lookup::Miss(_)));
        }
    }

    #[test]
    fn flush_epoch_makes_old_decisions_invisible() {
        let c = filled(2, 0..8);
        c.flush(FlushReason::Rules);
        for i in 0..8 {
            assert!(
                matches!(c.lookup(key(i), STAMP, 0, 0), Lookup::Miss(_)),
                "key {i} survived the flush"
            );
        }
        assert_eq!(c.flush_counts()[FlushReason::Rules.index()], 1);
    }

    #[test]
    fn flush_during_evaluation_hides_its_result() {
        let c = cache(16, 2);
        let t = miss(&c, key(1), 0);
        let epoch = t.epoch();
        c.flush(FlushReason::Operator);
        assert_ne!(
            c.epoch(),
            epoch,
            "a kernel mark placed for the ticket must go"
        );
        let _ = c.complete(t, &1, Cacheability::UntilChanged, 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0, 0), Lookup::Miss(_)));
    }

    #[test]
    fn invalidate_forgets_one_file() {
        let c = filled(1, 0..2);
        assert!(c.invalidate(key(0)).is_empty(), "nothing was parked");
        assert!(matches!(c.lookup(key(0), STAMP, 0, 0), Lookup::Miss(_)));
        assert!(matches!(c.lookup(key(1), STAMP, 0, 0), Lookup::Hit(1)));
        assert_eq!(c.invalidation_count(), 1);
    }

    #[test]
    fn parked_events_come_back_to_the_owner_with_its_decision() {
        let c = cache(16, 2);
        let owner = miss(&c, key(1), 0);
        for token in 1..=5 {
            assert!(matches!(c.lookup(key(1), STAMP, 0, token), Lookup::Parked));
        }
        let parked = c.complete(owner, &3, Cacheability::UntilChanged, 0);
        assert!(!parked.restart);
        assert_eq!(drain(&c, parked), vec![1, 2, 3, 4, 5]);
        assert_eq!(c.pending_len(), 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0, 9), Lookup::Hit(3)));
    }

    #[test]
    fn a_write_while_events_are_parked_restarts_them_and_the_result_is_not_cached() {
        let c = cache(16, 2);
        let owner = miss(&c, key(1), 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0, 7), Lookup::Parked));
        assert!(matches!(c.lookup(key(1), STAMP, 0, 8), Lookup::Parked));
        let parked = c.invalidate(key(1));
        assert!(parked.restart, "they must be evaluated again");
        assert_eq!(drain(&c, parked), vec![7, 8]);
        // The owner finishes on content that has since changed: nothing cached, nobody left.
        let rest = c.complete(owner, &1, Cacheability::UntilChanged, 0);
        assert!(rest.is_empty());
        assert!(matches!(c.lookup(key(1), STAMP, 0, 0), Lookup::Miss(_)));
    }

    #[test]
    fn a_per_exec_decision_is_not_cached_and_its_parked_events_are_decided_on_their_own() {
        let c = cache(16, 2);
        let owner = miss(&c, key(1), 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0, 4), Lookup::Parked));
        assert!(matches!(c.lookup(key(1), STAMP, 0, 5), Lookup::Parked));
        let parked = c.complete(owner, &1, Cacheability::PerExec, 0);
        assert!(
            parked.requeue && !parked.restart,
            "re-queued, not re-stamped"
        );
        assert_eq!(drain(&c, parked), vec![4, 5]);
        assert!(!Cacheability::PerExec.is_cacheable());
        // From now on execs of this version are evaluated side by side: no one parks.
        let Lookup::Miss(a) = c.lookup(key(1), STAMP, 0, 6) else {
            panic!("a miss")
        };
        let Lookup::Miss(b) = c.lookup(key(1), STAMP, 0, 7) else {
            panic!("a second miss, not parked")
        };
        assert_eq!(c.pending_len(), 0);
        assert!(c.complete(a, &1, Cacheability::PerExec, 0).is_empty());
        assert!(c.complete(b, &2, Cacheability::PerExec, 0).is_empty());
        // A new version of the file (or a flush) coalesces again.
        let other = FileStamp {
            ctime_ns: 99,
            ..STAMP
        };
        assert!(matches!(c.lookup(key(1), other, 0, 8), Lookup::Miss(_)));
        assert!(matches!(c.lookup(key(1), other, 0, 9), Lookup::Parked));
    }

    #[test]
    fn a_changed_file_hands_its_parked_events_back_for_a_new_evaluation() {
        let c = cache(16, 2);
        let owner = miss(&c, key(1), 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0, 3), Lookup::Parked));
        let parked = c.complete(owner, &1, Cacheability::FileChanged, 0);
        assert!(parked.restart);
        assert_eq!(drain(&c, parked), vec![3]);
    }

    #[test]
    fn another_version_of_the_file_is_evaluated_uncoalesced() {
        let c = cache(16, 2);
        let owner = miss(&c, key(1), 0);
        let newer = FileStamp {
            ctime_ns: 5,
            size_bytes: 10,
        };
        let Lookup::Miss(second) = c.lookup(key(1), newer, 0, 4) else {
            panic!("a different version must not park on the old one")
        };
        assert!(
            c.complete(second, &2, Cacheability::UntilChanged, 0)
                .is_empty()
        );
        assert!(
            c.complete(owner, &1, Cacheability::UntilChanged, 0)
                .is_empty()
        );
    }

    #[test]
    fn eviction_under_pressure_never_loses_a_pending() {
        // One shard of capacity 4; 64 evaluations in flight at once, each with a parked event,
        // plus 1,000 completed decisions churning the LRU. Every placeholder must survive.
        let c = cache(4, 1);
        let tickets: Vec<Ticket> = (0..64).map(|i| miss(&c, key(i), 0)).collect();
        for i in 0..64u32 {
            assert!(matches!(
                c.lookup(key(i as u64), STAMP, 0, 100 + i),
                Lookup::Parked
            ));
        }
        for i in 1_000..2_000 {
            decide(&c, key(i), 0);
        }
        assert_eq!(c.len(), 4, "LRU stays at capacity");
        assert_eq!(c.pending_len(), 64, "no placeholder evicted");
        for (i, t) in tickets.into_iter().enumerate() {
            let parked = c.complete(t, &(i as u32), Cacheability::UntilChanged, 0);
            assert_eq!(drain(&c, parked), vec![100 + i as u32]);
        }
        assert_eq!(c.pending_len(), 0);
    }

    #[test]
    fn abandoned_evaluation_hands_back_its_parked_events() {
        let c = cache(16, 2);
        let owner = miss(&c, key(1), 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0, 2), Lookup::Parked));
        let parked = c.abandon(owner);
        assert!(!parked.restart);
        assert_eq!(drain(&c, parked), vec![2]);
        assert_eq!(c.pending_len(), 0);
        assert!(matches!(c.lookup(key(1), STAMP, 0, 0), Lookup::Miss(_)));
    }

    #[test]
    fn hundred_concurrent_lookups_one_evaluation_every_event_answered_once() {
        let c = cache(64, 4);
        let evaluations = AtomicUsize::new(0);
        let delivered = Mutex::new(Vec::new());
        let barrier = std::sync::Barrier::new(100);
        std::thread::scope(|s| {
            for token in 0..100u32 {
                let (c, evaluations, barrier, delivered) = (&c, &evaluations, &barrier, &delivered);
                s.spawn(move || {
                    barrier.wait();
                    match c.lookup(key(42), STAMP, 0, token) {
                        Lookup::Hit(d) => lock(delivered).push((token, d)),
                        Lookup::Miss(t) => {
                            evaluations.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            let mut parked = c.complete(t, &4242, Cacheability::UntilChanged, 0);
                            let mut d = lock(delivered);
                            d.push((token, 4242));
                            while let Some(w) = c.next_parked(&mut parked) {
                                d.push((w, 4242));
                            }
                        }
                        Lookup::Parked => {}
                    }
                });
            }
        });
        assert_eq!(evaluations.load(Ordering::SeqCst), 1);
        let mut d = lock(&delivered).clone();
        d.sort_unstable();
        assert_eq!(d, (0..100).map(|t| (t, 4242)).collect::<Vec<_>>());
        assert_eq!(c.pending_len(), 0);
    }
}
