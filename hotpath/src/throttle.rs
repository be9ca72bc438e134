//! Per-principal bounds on evaluations, so one user's slow files cannot delay everyone else.
//!
//! An evaluation (hashing and parsing a file nobody has decided yet) is the one slow thing a
//! worker does, and its cost is chosen by whoever owns the file: a local user can exec a few
//! huge sparse files and pin every worker for as long as they take to hash. Every evaluation
//! therefore names a [`Principal`] (on Linux: the file's owner) and its cost in bytes. A
//! principal may have at most `evaluations_max` evaluations and `bytes_max` bytes being
//! hashed at once — with one exception, so a single file larger than the byte bound is still
//! evaluated: a principal with nothing in flight is always admitted. An event over its
//! principal's bound is *deferred*: its token waits in the principal's FIFO (an intrusive list
//! through a preallocated link array: no allocation) and is handed back when one of that
//! principal's evaluations ends. Cache hits are never throttled: a user's cached binaries run
//! at full speed whatever another user is doing.
//!
//! Deferred events keep their deadline: if it comes first, the deadline thread answers them
//! with the default (the attacker's own execs pay for the attacker's files).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

const NO_TOKEN: u32 = u32::MAX;
/// Principals with something in flight, preallocated; more make the map allocate.
const PRINCIPALS_PREALLOC: usize = 64;

/// Who pays for an evaluation, and how much it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The principal (a uid on Linux).
    pub id: u32,
    /// Bytes the evaluation will read (the file's size).
    pub cost_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    evaluations: u32,
    bytes: u64,
    head: u32,
    tail: u32,
}

impl Account {
    const EMPTY: Account = Account {
        evaluations: 0,
        bytes: 0,
        head: NO_TOKEN,
        tail: NO_TOKEN,
    };

    fn charge(&mut self, cost_bytes: u64) {
        self.evaluations += 1;
        self.bytes = self.bytes.saturating_add(cost_bytes);
    }

    fn refund(&mut self, cost_bytes: u64) {
        self.evaluations = self.evaluations.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(cost_bytes);
    }
}

/// The bounds and the deferred lists. Invariant: every token `admit` returned true for, and
/// every token handed to `release`'s `resume` that it accepted, is charged once and must be
/// released once.
#[derive(Debug)]
pub(crate) struct Throttle {
    inner: Mutex<HashMap<u32, Account>>,
    /// `links[t]`: the token deferred after `t`.
    links: Box<[AtomicU32]>,
    /// `costs[t]`: the cost of deferred token `t`, charged when it is resumed.
    costs: Box<[AtomicU64]>,
    evaluations_max: u32,
    bytes_max: u64,
    deferred: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Throttle {
    /// Bounds per principal; tokens are below `tokens`.
    pub(crate) fn new(evaluations_max: u32, bytes_max: u64, tokens: usize) -> Self {
        let tokens = tokens.min(NO_TOKEN as usize);
        Self {
            inner: Mutex::new(HashMap::with_capacity(PRINCIPALS_PREALLOC)),
            links: (0..tokens).map(|_| AtomicU32::new(NO_TOKEN)).collect(),
            costs: (0..tokens).map(|_| AtomicU64::new(0)).collect(),
            evaluations_max: evaluations_max.max(1),
            bytes_max,
            deferred: AtomicU64::new(0),
        }
    }

    /// Charges `p` for one evaluation and returns true, or — if `p` is at its bound or others
    /// of `p` already wait — defers `token` at the end of `p`'s list and returns false.
    pub(crate) fn admit(&self, p: Principal, token: u32) -> bool {
        let mut inner = lock(&self.inner);
        let a = inner.entry(p.id).or_insert(Account::EMPTY);
        let fits = a.evaluations == 0
            || (a.evaluations < self.evaluations_max
                && a.bytes.saturating_add(p.cost_bytes) <= self.bytes_max);
        let (Some(link), Some(cost)) = (
            self.links.get(token as usize),
            self.costs.get(token as usize),
        ) else {
            // A token that cannot be deferred runs rather than being lost.
            a.charge(p.cost_bytes);
            return true;
        };
        // Nothing of `p` running means nobody waits either (`release` empties the list before
        // the count can reach zero), so no release would ever wake a deferred token.
        if a.evaluations == 0 || (fits && a.head == NO_TOKEN) {
            a.charge(p.cost_bytes);
            return true;
        }
        link.store(NO_TOKEN, Ordering::Relaxed);
        cost.store(p.cost_bytes, Ordering::Relaxed);
        match self.links.get(a.tail as usize) {
            Some(prev) => prev.store(token, Ordering::Relaxed),
            None => a.head = token,
        }
        a.tail = token;
        self.deferred.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Pops `a`'s head, charges it and stores it in `out`.
    fn pop_into(&self, a: &mut Account, out: &mut u32) {
        let token = a.head;
        let next = self
            .links
            .get(token as usize)
            .map_or(NO_TOKEN, |l| l.swap(NO_TOKEN, Ordering::Relaxed));
        a.head = next;
        if next == NO_TOKEN {
            a.tail = NO_TOKEN;
        }
        let cost = self
            .costs
            .get(token as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed));
        a.charge(cost);
        self.deferred.fetch_sub(1, Ordering::Relaxed);
        *out = token;
    }

    /// Ends one of `p`'s evaluations (or refunds a charged token that did not evaluate).
    /// Deferred events of `p` that may now run are charged and passed to `resume`, which
    /// re-queues them and returns true, or returns false if it could not (it answered or
    /// dropped the event itself): the charge is then refunded and the next one tried.
    pub(crate) fn release(&self, p: Principal, mut resume: impl FnMut(u32) -> bool) {
        let mut inner = lock(&self.inner);
        let Some(a) = inner.get_mut(&p.id) else {
            debug_assert!(false, "release of principal {} without admit", p.id);
            return;
        };
        a.refund(p.cost_bytes);
        while a.head != NO_TOKEN
            && (a.evaluations == 0
                || (a.evaluations < self.evaluations_max
                    && a.bytes.saturating_add(
                        self.costs
                            .get(a.head as usize)
                            .map_or(0, |c| c.load(Ordering::Relaxed)),
                    ) <= self.bytes_max))
        {
            let mut token = NO_TOKEN;
            self.pop_into(a, &mut token);
            if !resume(token) {
                let cost = self
                    .costs
                    .get(token as usize)
                    .map_or(0, |c| c.load(Ordering::Relaxed));
                a.refund(cost);
            }
        }
        if a.evaluations == 0 && a.head == NO_TOKEN {
            inner.remove(&p.id);
        }
    }

    /// Every deferred token (shutdown): passed to `f`, the lists emptied.
    pub(crate) fn drain(&self, mut f: impl FnMut(u32)) {
        let mut inner = lock(&self.inner);
        for a in inner.values_mut() {
            while a.head != NO_TOKEN {
                let token = a.head;
                a.head = self
                    .links
                    .get(token as usize)
                    .map_or(NO_TOKEN, |l| l.swap(NO_TOKEN, Ordering::Relaxed));
                self.deferred.fetch_sub(1, Ordering::Relaxed);
                f(token);
            }
            a.tail = NO_TOKEN;
        }
    }

    /// Events deferred right now (status).
    pub(crate) fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u32, cost_bytes: u64) -> Principal {
        Principal { id, cost_bytes }
    }

    #[test]
    fn one_principal_is_held_to_its_bound_and_others_are_not() {
        let t = Throttle::new(1, u64::MAX, 16);
        assert!(t.admit(p(1000, 10), 0));
        assert!(!t.admit(p(1000, 10), 1), "second evaluation of 1000 waits");
        assert!(!t.admit(p(1000, 10), 2));
        assert!(t.admit(p(2000, 10), 3), "another user is not held up");
        assert_eq!(t.deferred(), 2);
        let mut resumed = Vec::new();
        t.release(p(1000, 10), |tok| {
            resumed.push(tok);
            true
        });
        assert_eq!(
            resumed,
            vec![1],
            "FIFO, one per freed evaluation, already charged"
        );
        assert!(!t.admit(p(1000, 10), 4), "the resumed one holds the charge");
        let mut resumed = Vec::new();
        t.release(p(1000, 10), |tok| {
            resumed.push(tok);
            // Could not re-queue it: refunded, and the next one goes.
            tok != 2
        });
        assert_eq!(resumed, vec![2, 4]);
        t.release(p(1000, 10), |_| panic!("nothing left"));
        t.release(p(2000, 10), |_| panic!("nothing deferred"));
        assert_eq!(t.deferred(), 0);
        assert!(
            lock(&t.inner).is_empty(),
            "accounts with nothing in flight go"
        );
    }

    #[test]
    fn a_file_larger_than_the_byte_bound_still_runs_alone() {
        let t = Throttle::new(4, 100, 16);
        assert!(t.admit(p(7, 1_000), 0), "nothing in flight: admitted");
        assert!(!t.admit(p(7, 1), 1), "over the byte bound while it runs");
        assert!(!t.admit(p(7, 1), 2));
        let mut resumed = Vec::new();
        t.release(p(7, 1_000), |tok| {
            resumed.push(tok);
            true
        });
        assert_eq!(resumed, vec![1, 2], "small ones fit beside each other");
    }

    #[test]
    fn drain_hands_back_every_deferred_token() {
        let t = Throttle::new(1, u64::MAX, 16);
        assert!(t.admit(p(1, 0), 0));
        for tok in 1..5u32 {
            assert!(!t.admit(p(1, 0), tok));
        }
        let mut got = Vec::new();
        t.drain(|tok| got.push(tok));
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert_eq!(t.deferred(), 0);
    }
}
