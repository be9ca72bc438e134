//! The preallocated in-flight table: one slot per event held by the kernel.
//!
//! Each slot has one atomic state word, `generation:32 | refs:16 | phase:8`:
//! - `FREE → PENDING` by the submitter, who owns a free slot exclusively (it popped the index
//!   from the free list), with one reference: the worker's (or, if the queue was full, the
//!   submitter's own).
//! - `PENDING → ANSWERED` by compare-and-swap, by whoever answers first: the holder of the
//!   reference (refs stay 1) or the deadline thread (which takes a second reference, refs 2,
//!   for as long as it uses the payload). The CAS decides who answers: exactly one does.
//! - Each holder drops its reference when done; the last one drops the payload (closing the
//!   event's fd, for instance), bumps the generation and puts the index back on the free list.
//!   So the payload lives until both the worker and the deadline thread are done with it.
//!
//! The generation makes a stale view of a slot (the deadline thread's scan racing a reuse)
//! fail its CAS instead of answering someone else's event.

use crate::key::{FileKey, FileStamp};
use crossbeam_queue::ArrayQueue;
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};

const PHASE_MASK: u64 = 0xff;
const REF_SHIFT: u32 = 8;
const REF_ONE: u64 = 1 << REF_SHIFT;
const REF_MASK: u64 = 0xffff << REF_SHIFT;
const GEN_SHIFT: u32 = 32;

const FREE: u64 = 0;
const PENDING: u64 = 1;
const ANSWERED: u64 = 2;

#[inline]
const fn pack(generation: u32, refs: u64, phase: u64) -> u64 {
    ((generation as u64) << GEN_SHIFT) | (refs << REF_SHIFT) | phase
}

#[inline]
const fn generation(state: u64) -> u32 {
    (state >> GEN_SHIFT) as u32
}

#[inline]
const fn refs(state: u64) -> u64 {
    (state & REF_MASK) >> REF_SHIFT
}

/// What the submitter stores in a slot; read-only while the slot is in flight.
#[derive(Debug)]
pub struct Event<P> {
    /// The source's handle on the event (for fanotify: the event fd and pid).
    pub payload: P,
    /// The file's cache key.
    pub key: FileKey,
    /// The file's stamp when the event was read.
    pub stamp: FileStamp,
    /// When the event must be answered by.
    pub deadline_ns: u64,
}

struct Slot<P> {
    state: AtomicU64,
    /// A copy of `data.deadline_ns` the deadline thread can read without touching `data`.
    deadline_ns: AtomicU64,
    data: UnsafeCell<MaybeUninit<Event<P>>>,
}

/// A claimed, pending slot: its index and the generation it was claimed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef {
    /// Index into the table.
    pub index: u32,
    generation: u32,
}

/// The in-flight table.
pub struct Slots<P> {
    slots: Box<[Slot<P>]>,
    free: ArrayQueue<u32>,
}

// SAFETY: `data` is written only by the submitter that exclusively owns a FREE slot (popped from
// the free list) before the Release/SeqCst store that publishes PENDING, and dropped only by the
// last reference holder, after which nobody else can reach it (the generation moved on). Between
// those points every access is shared (`&Event<P>`), so `P: Sync` makes concurrent reads from
// the worker and the deadline thread sound, and `P: Send` lets the dropping thread differ from
// the writing one.
unsafe impl<P: Send + Sync> Sync for Slots<P> {}
// SAFETY: the table owns its payloads; moving it moves them, which `P: Send` allows.
unsafe impl<P: Send> Send for Slots<P> {}

impl<P> std::fmt::Debug for Slots<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("capacity", &self.slots.len())
            .field("free", &self.free.len())
            .finish()
    }
}

impl<P> Slots<P> {
    /// A table of `capacity` slots (at least 1), all free.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let free = ArrayQueue::new(capacity);
        for i in 0..capacity as u32 {
            // Cannot fail: the queue has room for every index.
            let _ = free.push(i);
        }
        let slots = (0..capacity)
            .map(|_| Slot {
                state: AtomicU64::new(pack(0, 0, FREE)),
                deadline_ns: AtomicU64::new(u64::MAX),
                data: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Self { slots, free }
    }

    /// Slots in flight right now.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Claims a free slot for `data` and publishes it as pending with one reference; hands the
    /// data back if every slot is taken.
    pub fn claim(&self, data: Event<P>) -> Result<SlotRef, Event<P>> {
        let Some(index) = self.free.pop() else {
            return Err(data);
        };
        let slot = &self.slots[index as usize];
        let state = slot.state.load(Ordering::Acquire);
        debug_assert_eq!(
            state & PHASE_MASK,
            FREE,
            "slot {index} on the free list but not free"
        );
        let generation = generation(state);
        slot.deadline_ns.store(data.deadline_ns, Ordering::Relaxed);
        // SAFETY: the index came off the free list, so this thread owns the slot exclusively
        // until the store below publishes it; the previous payload was dropped before the
        // index went back on the list.
        unsafe { (*slot.data.get()).write(data) };
        slot.state
            .store(pack(generation, 1, PENDING), Ordering::SeqCst);
        Ok(SlotRef { index, generation })
    }

    /// The reference to the pending slot at `index` for its reference holder (the worker that
    /// popped it from a queue).
    ///
    /// The caller must hold the slot's reference; asserted in debug builds.
    #[inline]
    pub fn held(&self, index: u32) -> SlotRef {
        let state = self.slots[index as usize].state.load(Ordering::Acquire);
        debug_assert!(
            refs(state) >= 1 && state & PHASE_MASK != FREE,
            "slot {index} is not held"
        );
        SlotRef {
            index,
            generation: generation(state),
        }
    }

    /// The data of a slot the caller holds a reference to.
    #[inline]
    pub fn data(&self, slot: SlotRef) -> &Event<P> {
        let s = &self.slots[slot.index as usize];
        debug_assert_eq!(generation(s.state.load(Ordering::Acquire)), slot.generation);
        // SAFETY: the caller holds a reference (it claimed the slot, popped it from a queue, or
        // won the deadline CAS), so the data was initialised before PENDING was published and
        // is not dropped until that reference is released.
        unsafe { (*s.data.get()).assume_init_ref() }
    }

    /// Marks the slot answered if nobody has; true if the caller won and must respond.
    /// Only the reference holder calls this (refs are exactly 1 while pending).
    #[inline]
    pub fn try_answer(&self, slot: SlotRef) -> bool {
        self.slots[slot.index as usize]
            .state
            .compare_exchange(
                pack(slot.generation, 1, PENDING),
                pack(slot.generation, 1, ANSWERED),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Whether the slot the caller holds has been answered (by anyone).
    #[inline]
    pub fn is_answered(&self, slot: SlotRef) -> bool {
        self.slots[slot.index as usize]
            .state
            .load(Ordering::Acquire)
            & PHASE_MASK
            == ANSWERED
    }

    /// Drops one reference; the last one frees the slot (dropping its payload).
    #[inline]
    pub fn release(&self, slot: SlotRef) {
        let s = &self.slots[slot.index as usize];
        let prev = s.state.fetch_sub(REF_ONE, Ordering::AcqRel);
        debug_assert_eq!(
            generation(prev),
            slot.generation,
            "release of a stale slot reference"
        );
        debug_assert!(refs(prev) >= 1, "release without a reference");
        if refs(prev) == 1 {
            debug_assert_eq!(
                prev & PHASE_MASK,
                ANSWERED,
                "slot released before it was answered"
            );
            // SAFETY: that was the last reference. Every holder answers (or loses the answer
            // CAS) before releasing, so the phase is ANSWERED and no new reference can be taken
            // (the deadline thread takes one only by a CAS from PENDING); nobody else can reach
            // the data, which was initialised by `claim` and not dropped since.
            unsafe { (*s.data.get()).assume_init_drop() };
            s.deadline_ns.store(u64::MAX, Ordering::Relaxed);
            s.state.store(
                pack(slot.generation.wrapping_add(1), 0, FREE),
                Ordering::Release,
            );
            // Cannot fail: every index is on the list at most once and the list holds them all.
            let pushed = self.free.push(slot.index);
            debug_assert!(pushed.is_ok(), "free list overflow");
        }
    }

    /// For the deadline thread: answers every pending slot whose deadline is at or before
    /// `now_ns` by calling `on_due` (which must respond with the default), and returns the
    /// earliest deadline still pending (`u64::MAX` if none).
    pub fn expire_due(&self, now_ns: u64, mut on_due: impl FnMut(&Event<P>)) -> u64 {
        let mut next = u64::MAX;
        for (index, s) in self.slots.iter().enumerate() {
            let state = s.state.load(Ordering::Acquire);
            if state & PHASE_MASK != PENDING {
                continue;
            }
            let deadline = s.deadline_ns.load(Ordering::Relaxed);
            if deadline > now_ns {
                next = next.min(deadline);
                continue;
            }
            // Take a second reference while answering, so the payload outlives our use of it
            // even if the worker finishes meanwhile. Fails if anyone answered or the slot was
            // reused since the load above.
            let generation = generation(state);
            if s.state
                .compare_exchange(
                    pack(generation, 1, PENDING),
                    pack(generation, 2, ANSWERED),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                let slot = SlotRef {
                    index: index as u32,
                    generation,
                };
                on_due(self.data(slot));
                self.release(slot);
            }
        }
        next
    }
}

impl<P> Drop for Slots<P> {
    fn drop(&mut self) {
        for s in self.slots.iter_mut() {
            if *s.state.get_mut() & PHASE_MASK != FREE {
                // SAFETY: `&mut self`: no other thread can reach the table; a non-free slot
                // holds initialised data that was never dropped.
                unsafe { s.data.get_mut().assume_init_drop() };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn data<P>(payload: P, deadline_ns: u64) -> Event<P> {
        Event {
            payload,
            key: FileKey { dev: 0, ino: 0 },
            stamp: FileStamp::default(),
            deadline_ns,
        }
    }

    /// Counts drops, to show every payload is dropped exactly once.
    #[derive(Debug)]
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn claim_answer_release_cycle_reuses_slots() {
        let slots = Slots::new(2);
        for round in 0..10u32 {
            let s = slots.claim(data(round, u64::MAX)).unwrap();
            assert_eq!(slots.data(s).payload, round);
            assert!(slots.try_answer(s));
            assert!(!slots.try_answer(s), "answered twice");
            slots.release(s);
        }
        assert_eq!(slots.in_flight(), 0);
    }

    #[test]
    fn full_table_hands_data_back() {
        let slots = Slots::new(1);
        let _held = slots.claim(data(1, u64::MAX)).unwrap();
        let back = slots.claim(data(2, u64::MAX)).unwrap_err();
        assert_eq!(back.payload, 2);
    }

    #[test]
    fn deadline_answers_and_worker_loses() {
        let drops = Arc::new(AtomicUsize::new(0));
        let slots = Slots::new(4);
        let s = slots.claim(data(Tracked(drops.clone()), 100)).unwrap();
        let mut answered = 0;
        assert_eq!(slots.expire_due(99, |_| answered += 1), 100);
        assert_eq!(answered, 0);
        assert_eq!(slots.expire_due(100, |_| answered += 1), u64::MAX);
        assert_eq!(answered, 1);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "payload still held by the worker"
        );
        assert!(
            !slots.try_answer(s),
            "the worker must lose after the deadline answered"
        );
        slots.release(s);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(slots.expire_due(1_000, |_| answered += 1), u64::MAX);
        assert_eq!(answered, 1, "a freed slot is never answered again");
    }

    #[test]
    fn worker_answers_and_deadline_skips() {
        let slots = Slots::new(4);
        let s = slots.claim(data(0u8, 100)).unwrap();
        assert!(slots.try_answer(s));
        let mut answered = 0;
        slots.expire_due(1_000, |_| answered += 1);
        assert_eq!(answered, 0);
        slots.release(s);
    }

    #[test]
    fn drop_of_table_drops_in_flight_payloads() {
        let drops = Arc::new(AtomicUsize::new(0));
        {
            let slots = Slots::new(4);
            let _a = slots.claim(data(Tracked(drops.clone()), 1)).unwrap();
            let b = slots.claim(data(Tracked(drops.clone()), 1)).unwrap();
            assert!(slots.try_answer(b));
            slots.release(b);
            assert_eq!(drops.load(Ordering::SeqCst), 1);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn racing_worker_and_deadline_answer_exactly_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let answers = Arc::new(AtomicUsize::new(0));
        let slots = Arc::new(Slots::new(64));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let scanner = {
            let (slots, answers, stop) = (slots.clone(), answers.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    slots.expire_due(u64::MAX - 1, |_| {
                        answers.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        };
        const N: usize = 200_000;
        for _ in 0..N {
            let s = loop {
                match slots.claim(data(Tracked(drops.clone()), 0)) {
                    Ok(s) => break s,
                    Err(_) => std::hint::spin_loop(),
                }
            };
            if slots.try_answer(s) {
                answers.fetch_add(1, Ordering::SeqCst);
            }
            slots.release(s);
        }
        stop.store(true, Ordering::SeqCst);
        scanner.join().unwrap();
        assert_eq!(
            answers.load(Ordering::SeqCst),
            N,
            "every event answered exactly once"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            N,
            "every payload dropped exactly once"
        );
        assert_eq!(slots.in_flight(), 0);
    }
}
