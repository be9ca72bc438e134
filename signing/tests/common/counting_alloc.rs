//! A counting global allocator, the one of every crate here that counts heap use: the signing
//! tests' peak-heap assertions, the fuzz targets (`fuzz/src/lib.rs`), the hot path's
//! no-allocation test (`hotpath/tests/alloc.rs`) and the benchmarks (`perf/src/lib.rs`) include
//! this file by `#[path]`, so it depends on nothing but `std`.
//!
//! It keeps two figures, both in atomics, forwarding every call unchanged to `System`:
//! - [`allocations`]: allocations and reallocations by every thread of the process, for "no
//!   allocation per event" checks over worker threads;
//! - [`peak_during`]: the peak heap (bytes) the calling thread holds while it runs a closure. Only
//!   that thread's allocations count, and one thread at a time measures (a lock): other tests of
//!   the same binary generate their inputs meanwhile, and their allocations must not be taken for
//!   the code under test's.
//!
//! The includer installs it: `#[global_allocator] static GLOBAL: Counting = Counting;` (a library
//! must not: the fuzz targets each install it themselves).
#![allow(dead_code)] // each includer uses part of it

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Forwards to `System`, counting allocations and the measured thread's bytes in use.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static MEASURING: Mutex<()> = Mutex::new(());

thread_local! {
    /// This thread is the one being measured (const-initialised: reading it never allocates).
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn grew(bytes: usize) {
    if COUNTED.with(Cell::get) {
        let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

fn shrank(bytes: usize) {
    if COUNTED.with(Cell::get) {
        // Memory allocated before the measurement may be freed during it: floor at zero.
        let _ = CURRENT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
            Some(c.saturating_sub(bytes))
        });
    }
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping is atomics and a
// const-initialised thread-local `Cell`, none of which allocates or re-enters the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds `new_size`'s rules.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// Allocations and reallocations so far, by every thread (when [`Counting`] is installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Runs `f` and returns its result with the peak heap the calling thread held during it beyond
/// what was in use before (its result included).
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    CURRENT.store(0, Ordering::Relaxed);
    PEAK.store(0, Ordering::Relaxed);
    COUNTED.with(|c| c.set(true));
    let out = f();
    COUNTED.with(|c| c.set(false));
    (out, PEAK.load(Ordering::Relaxed))
}
