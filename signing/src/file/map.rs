//! The one place this crate maps memory, and the SIGBUS handler that makes a fault on a mapped
//! page harmless.
//!
//! # Contract
//!
//! A file's pages are mapped read-only and private. The mapping aliases the page cache, so a
//! writer can change the bytes while we read them: harmless, because every result built from
//! them is re-checked against the `fstat` stamp afterwards and reported as changed.
//!
//! If another process *truncates* the file while it is mapped (or the filesystem cannot supply
//! a page: an I/O error, a poisoned page), touching a page past the new end raises SIGBUS on
//! the touching thread. Left alone that kills santad, and on Linux fanotify then lets every exec
//! through — any user who can exec a file of their own could switch enforcement off. So the
//! first mapping installs a process-wide SIGBUS handler ([`install`]) and every mapping is
//! entered in a fixed table ([`REGISTRY`]) for as long as it lives. On a fault whose address
//! lies inside a registered mapping, the handler maps anonymous zero pages over the faulting
//! page and the rest of that mapping (`MAP_FIXED`), records the fault in the mapping's slot and
//! returns: the load is retried and reads zero. [`Mapping::faulted`] then says so, and
//! `FileBytes::unchanged` reports the file as changed whatever the stamp says, so the hash of
//! those bytes is neither trusted nor cached.
//!
//! Zeros from the faulting page to the end rather than one page: a truncation takes away every
//! later page too, and one signal per mapping (instead of one per page: 262 144 for a 1 GiB
//! file) keeps the number of VMAs and the cost of the attack flat. What was read before the
//! fault is left as it was. A reader that jumps backwards may fault again lower down; each fault
//! lowers the zeroed start, so a mapping faults at most once per page.
//!
//! A SIGBUS at any other address, or one sent by a process (`kill`, `sigqueue`: `si_code <= 0`,
//! where `si_addr` is not an address at all), is not ours: it goes to the disposition that was
//! in place before (see [`on_sigbus`]), so a real bug still crashes.
//!
//! Not covered: a SIGBUS handler installed *after* ours that does not chain to it replaces it
//! (nothing in santad or santactl installs one; Rust's own stack-overflow handler is installed
//! at startup, before, and is chained to). If the table is full or the handler could not be
//! installed, [`map_readonly`] refuses and the caller reads the file with `pread`.
//!
//! # Signal safety
//!
//! The handler touches only atomics, the fixed table and raw system calls (`mmap`, `sigaction`,
//! `raise`, which libc implements as the bare system call); it allocates nothing, takes no lock
//! and does no I/O. It saves and restores `errno`. The table is a seqlock per slot, so a handler
//! racing with a registration on another thread never acts on a half-written slot.

use std::cell::UnsafeCell;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::sync::Once;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicUsize, fence};

/// Slots in the registry: the most mappings this crate keeps at once. santad maps at most one
/// file per worker (one per core) plus the bundle task's, santactl one; 256 leaves two orders of
/// magnitude of headroom, and the handler's linear scan of 256 slots costs well under a
/// microsecond on the rare fault. A full table is not an error: the file is read instead.
pub(super) const REGISTRY_SLOTS: usize = 256;

/// One registered mapping. `seq` is odd while the slot's owner writes it; a reader that sees the
/// same even `seq` before and after reading `start`/`end` has a consistent pair. `start == 0`
/// means free. Cache-line aligned so two workers registering side by side do not share a line.
///
/// Orderings (a seqlock, as in the C++ `seqlock` papers): the writer makes `seq` odd, issues a
/// Release fence, writes the fields Relaxed and makes `seq` even with a Release store; the
/// reader loads `seq` Acquire, the fields Relaxed, issues an Acquire fence and loads `seq`
/// again. A reader that saw any field written after the writer's fence thus sees the odd (or a
/// later) `seq` the second time and discards what it read. Claiming is the only read-modify-write
/// (one CAS); on x86 everything else is a plain `mov`.
#[repr(align(64))]
struct Slot {
    seq: AtomicUsize,
    /// First byte of the mapping (page-aligned), 0 when the slot is free.
    start: AtomicUsize,
    /// One past the mapping's last page (page-aligned).
    end: AtomicUsize,
    /// Lowest address the handler replaced with zeros; `end` until the first fault.
    zeroed_from: AtomicUsize,
}

impl Slot {
    const fn free() -> Self {
        Self {
            seq: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            zeroed_from: AtomicUsize::new(0),
        }
    }
}

/// Every live mapping this crate made (see the module doc).
static REGISTRY: [Slot; REGISTRY_SLOTS] = [const { Slot::free() }; REGISTRY_SLOTS];

/// The page size, set once by [`install`] before the handler can run.
static PAGE_BYTES: AtomicUsize = AtomicUsize::new(0);

static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The SIGBUS disposition found when ours was installed, written once by [`install`] and read
/// by the handler only after [`OLD_ACTION_READY`] is seen set.
struct OldAction(UnsafeCell<MaybeUninit<libc::sigaction>>);

// SAFETY: the cell is written exactly once, inside `INSTALL.call_once`, before
// `OLD_ACTION_READY` is stored (SeqCst); every read happens after loading that flag as true, so
// no read races the write and no write happens after any read.
unsafe impl Sync for OldAction {}

static OLD_ACTION: OldAction = OldAction(UnsafeCell::new(MaybeUninit::uninit()));
static OLD_ACTION_READY: AtomicBool = AtomicBool::new(false);

/// A read-only private mapping of a whole file, registered with the SIGBUS handler.
pub(super) struct Mapping {
    // Field order matters only for clarity: `Drop` below unregisters before this field drops
    // (and unmaps the whole range, zero pages included).
    mmap: memmap2::Mmap,
    slot: &'static Slot,
    end: usize,
}

impl Mapping {
    /// Whether a page of this mapping faulted (and now reads as zeros).
    pub(super) fn faulted(&self) -> bool {
        // The handler runs on the faulting thread; a reader on another thread synchronised with
        // that thread's read of the bytes (it has to, to know the read is over).
        self.slot.zeroed_from.load(Acquire) < self.end
    }

    /// `madvise` passthrough.
    pub(super) fn advise(&self, advice: memmap2::Advice) -> io::Result<()> {
        self.mmap.advise(advice)
    }
}

impl Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.mmap
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Unregister first: once the range is unmapped the kernel may hand it to anyone, and a
        // fault there must not be taken for ours. No borrow of the bytes is alive (we have
        // `&mut self`), so nothing can fault in the window before the unmap.
        release(self.slot);
    }
}

/// Maps `len` bytes of `file` read-only and private, registered with the SIGBUS handler.
///
/// Fails (and the caller reads instead) if `len` does not fit, the handler is not installed,
/// the registry is full, or `mmap` fails.
pub(super) fn map_readonly(file: &File, len: u64) -> io::Result<Mapping> {
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
    INSTALL.call_once(install);
    if !INSTALLED.load(SeqCst) {
        return Err(io::Error::other("SIGBUS handler not installed"));
    }
    let page = PAGE_BYTES.load(Relaxed);
    let slot = claim().ok_or_else(|| io::Error::other("SIGBUS registry full"))?;
    // SAFETY: the map is read-only and private (we never create a `&mut` into it); the length
    // is the size fstat just reported. A truncation afterwards makes later pages fault, which
    // the handler turns into zero pages once the slot is published below, before anyone can
    // read the bytes (they are only reachable through the returned `Mapping`). The `Mmap` owns
    // the mapping and unmaps it on drop, after `Mapping::drop` unregistered it and after every
    // borrow of its bytes ended. Bytes changing under a shared borrow is the contract in the
    // module doc: results are re-checked against the stamp and the fault flag.
    let mmap = match unsafe { memmap2::MmapOptions::new().len(len).map(file) } {
        Ok(m) => m,
        Err(e) => {
            abandon(slot);
            return Err(e);
        }
    };
    let start = mmap.as_ptr() as usize;
    let end = start + len.div_ceil(page) * page;
    publish(slot, start, end);
    Ok(Mapping { mmap, slot, end })
}

/// Reserves a free slot (its `seq` left odd: the handler skips it), or `None` if all are taken.
fn claim() -> Option<&'static Slot> {
    REGISTRY.iter().find_map(|slot| {
        let seq = slot.seq.load(Acquire);
        // Acquire on `start`: a 0 written by `release` carries its odd `seq` with it, so the CAS
        // below fails against a slot being released instead of claiming it from under its owner.
        if seq & 1 == 1 || slot.start.load(Acquire) != 0 {
            return None;
        }
        slot.seq
            .compare_exchange(seq, seq.wrapping_add(1), Acquire, Relaxed)
            .ok()?;
        // The odd `seq` is ordered before the field writes that follow (see `Slot`).
        fence(Release);
        Some(slot)
    })
}

/// Makes a claimed slot describe `[start, end)` to the handler.
fn publish(slot: &Slot, start: usize, end: usize) {
    slot.start.store(start, Relaxed);
    slot.end.store(end, Relaxed);
    slot.zeroed_from.store(end, Relaxed);
    // Only the owner writes `seq` while it is odd.
    let odd = slot.seq.load(Relaxed);
    slot.seq.store(odd.wrapping_add(1), Release);
}

/// Gives back a claimed slot that was never published.
fn abandon(slot: &Slot) {
    let odd = slot.seq.load(Relaxed);
    slot.seq.store(odd.wrapping_add(1), Release);
}

/// Unregisters a published slot.
fn release(slot: &Slot) {
    // Only the owner writes a published slot (claimers skip it: `start != 0`, and see the odd
    // `seq` before they can see `start == 0`).
    let even = slot.seq.load(Relaxed);
    slot.seq.store(even.wrapping_add(1), Relaxed);
    fence(Release);
    slot.start.store(0, Release);
    slot.end.store(0, Relaxed);
    slot.zeroed_from.store(0, Relaxed);
    slot.seq.store(even.wrapping_add(2), Release);
}

/// The published slot whose range holds `addr`, with that range. Async-signal-safe.
fn lookup(addr: usize) -> Option<(&'static Slot, usize, usize)> {
    REGISTRY.iter().find_map(|slot| {
        let seq = slot.seq.load(Acquire);
        if seq & 1 == 1 {
            return None;
        }
        let start = slot.start.load(Relaxed);
        let end = slot.end.load(Relaxed);
        fence(Acquire);
        // A slot rewritten while we read it is not the faulting mapping: that one stays
        // published until its owner drops it, which cannot happen while a load into it is
        // pending.
        (slot.seq.load(Relaxed) == seq && start != 0 && start <= addr && addr < end)
            .then_some((slot, start, end))
    })
}

/// Installs [`on_sigbus`] for SIGBUS, remembering the disposition it replaces. Runs once.
fn install() {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let Ok(page) = usize::try_from(page) else {
        return;
    };
    if !page.is_power_of_two() {
        return;
    }
    PAGE_BYTES.store(page, SeqCst);
    // SAFETY: an all-zero `sigaction` is a valid value (SIG_DFL, empty mask, no flags); every
    // field the kernel reads is then set. `on_sigbus` has the three-argument signature that
    // SA_SIGINFO calls for. SA_ONSTACK: run on the thread's alternate stack if it has one (Rust
    // gives every thread one for its stack-overflow handler), so a fault near the end of a
    // thread's stack can still be handled; the handler needs a few hundred bytes. No
    // SA_NODEFER: SIGBUS stays blocked while the handler runs, and a synchronous SIGBUS raised
    // inside it (a bug in it) is then forced to its default action by the kernel — a crash,
    // which is right. No SA_RESETHAND: the handler must stay for the next fault.
    let old = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &action, &mut old) != 0 {
            return;
        }
        old
    };
    // SAFETY: the only write to the cell, before the flag that allows reads (see `OldAction`).
    // A foreign SIGBUS on another thread in the few instructions before the flag is set is
    // treated as if the old disposition were SIG_DFL: it still kills.
    unsafe { (*OLD_ACTION.0.get()).write(old) };
    OLD_ACTION_READY.store(true, SeqCst);
    INSTALLED.store(true, SeqCst);
}

/// The SIGBUS handler. Async-signal-safe (see the module doc).
///
/// A kernel-generated fault (`si_code > 0`, except `BUS_ADRALN`, which a fresh page would not
/// cure) at an address inside a registered mapping is made harmless: zero pages from the
/// faulting page to the end of that mapping, the slot's `zeroed_from` lowered, return. Anything
/// else goes to the previous disposition:
///
/// - a handler: called the way it asked to be (`SA_SIGINFO` or not; `SA_RESETHAND` honoured),
///   then we return — whatever it would have done alone, it does;
/// - `SIG_DFL` (or unknown): reset to `SIG_DFL`; a fault re-executes the load on return and the
///   kernel kills the process with the original siginfo; a sent signal is raised again, pending
///   until we return, and kills;
/// - `SIG_IGN`: the kernel never lets a synchronous fault be ignored, so a fault is handled as
///   `SIG_DFL`; a sent signal is ignored.
///
/// The old handler's `sa_mask` is not applied (SIGBUS itself stays blocked, as it would).
extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let saved_errno = errno_get();
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
        let code = unsafe { (*info).si_code };
        // SAFETY: as above; for SIGBUS with `si_code > 0` the union holds the fault fields.
        let addr = unsafe { (*info).si_addr() } as usize;
        if code > 0 && code != libc::BUS_ADRALN && zero_fill(addr) {
            errno_set(saved_errno);
            return;
        }
    }
    chain(sig, info, ctx);
    errno_set(saved_errno);
}

/// If `addr` lies in a registered mapping, maps zeros over the rest of it from `addr`'s page.
/// Returns whether the fault is now harmless.
fn zero_fill(addr: usize) -> bool {
    let Some((slot, _start, end)) = lookup(addr) else {
        return false;
    };
    let page = PAGE_BYTES.load(Relaxed);
    let from = addr & !page.wrapping_sub(1);
    // SAFETY: `[from, end)` lies inside a mapping this crate owns and that stays mapped until its
    // owner drops it, which cannot happen while this load into it is pending (see `lookup`);
    // replacing it with anonymous read-only pages changes only what its bytes read as, never
    // memory anything else uses. MAP_FIXED on a page-aligned address within an existing mapping
    // is the documented way to do that atomically.
    let p = unsafe {
        libc::mmap(
            from as *mut libc::c_void,
            end.wrapping_sub(from),
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        // Out of memory for the VMA: returning would fault again forever; crash instead.
        return false;
    }
    slot.zeroed_from.fetch_min(from, Release);
    true
}

/// Hands a SIGBUS that is not ours to the disposition found at install (see [`on_sigbus`]).
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: si_code is valid in any siginfo the kernel passes.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } > 0;
    let old = if OLD_ACTION_READY.load(SeqCst) {
        // SAFETY: written once before the flag was set (see `OldAction`); copied out by value.
        Some(unsafe { (*OLD_ACTION.0.get()).assume_init() })
    } else {
        None
    };
    match old {
        Some(old) if old.sa_sigaction == libc::SIG_IGN && !from_kernel => {}
        Some(old) if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN => {
            if old.sa_flags & libc::SA_RESETHAND != 0 {
                reset_to_default(sig);
            }
            if old.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the previous owner registered this value as an SA_SIGINFO handler, so
                // it is a function of this signature; we call it as the kernel would have.
                let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(old.sa_sigaction) };
                f(sig, info, ctx);
            } else {
                // SAFETY: registered without SA_SIGINFO, so it is a one-argument handler.
                let f: extern "C" fn(libc::c_int) =
                    unsafe { std::mem::transmute(old.sa_sigaction) };
                f(sig);
            }
        }
        _ => {
            reset_to_default(sig);
            if !from_kernel {
                // SAFETY: raise is async-signal-safe; `sig` is blocked until we return, then
                // delivered with the default action.
                unsafe { libc::raise(sig) };
            }
        }
    }
}

fn reset_to_default(sig: libc::c_int) {
    // SAFETY: an all-zero sigaction is SIG_DFL with an empty mask; sigaction is
    // async-signal-safe.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn errno_ptr() -> *mut libc::c_int {
    // SAFETY: no preconditions; returns this thread's errno.
    unsafe { libc::__errno_location() }
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
fn errno_ptr() -> *mut libc::c_int {
    // SAFETY: no preconditions; returns this thread's errno.
    unsafe { libc::__error() }
}

fn errno_get() -> libc::c_int {
    // SAFETY: `errno_ptr` points at this thread's errno, valid for the thread's life.
    unsafe { *errno_ptr() }
}

fn errno_set(v: libc::c_int) {
    // SAFETY: as in `errno_get`.
    unsafe { *errno_ptr() = v }
}

/// Process-level helpers for the tests in `file.rs`, which run some cases in a child process
/// because their expected outcome is death by SIGBUS.
#[cfg(test)]
pub(super) mod test_support {
    use super::*;
    use std::io::Write;

    /// Published slots right now.
    pub(in crate::file) fn live_slots() -> usize {
        REGISTRY
            .iter()
            .filter(|s| s.start.load(Relaxed) != 0)
            .count()
    }

    /// No core file from a child that is meant to die (core_pattern may be a plain `core`).
    pub(in crate::file) fn forbid_core_dumps() {
        #[cfg(target_os = "linux")]
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) only clears this process's dumpable flag.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        }
    }

    /// Sets SIGBUS to SIG_DFL (before the crate's handler is installed: "no previous handler").
    pub(in crate::file) fn set_sigbus_default() {
        reset_to_default(libc::SIGBUS);
    }

    /// Exit status of the process when [`install_exiting_handler`]'s handler runs.
    pub(in crate::file) const EXITING_HANDLER_STATUS: i32 = 42;

    extern "C" fn exit_42(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: _exit is async-signal-safe and ends the process.
        unsafe { libc::_exit(EXITING_HANDLER_STATUS) }
    }

    /// Installs an SA_SIGINFO SIGBUS handler that exits with [`EXITING_HANDLER_STATUS`], as a
    /// "previous handler" the crate's must chain to.
    pub(in crate::file) fn install_exiting_handler() {
        // SAFETY: as in `install`.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = exit_42 as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(
                libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()),
                0
            );
        }
    }

    /// Reads a page of a file that was truncated under a mapping this crate did NOT register
    /// (a plain memmap2 mapping): a real SIGBUS at an address outside the registry.
    pub(in crate::file) fn fault_outside_registry() -> u8 {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(&[0x5a; 8192]).expect("write");
        // SAFETY: a private read-only mapping of our own temp file; reading it after the
        // truncation raises SIGBUS, which is what this helper is for (the caller's process is
        // expected to die of it).
        let m = unsafe { memmap2::Mmap::map(&f) }.expect("map");
        f.set_len(0).expect("truncate");
        // SAFETY: in bounds of the 8192-byte mapping; volatile so the load happens.
        unsafe { std::ptr::read_volatile(m.as_ptr().add(4096)) }
    }

    /// Sends this thread a SIGBUS forged with `si_code = SI_USER` and `si_addr = addr`, as a
    /// process could with `rt_tgsigqueueinfo`: must not be taken for a fault even when `addr`
    /// is inside a registered mapping.
    #[cfg(target_os = "linux")]
    pub(in crate::file) fn send_forged_sigbus(addr: usize) {
        /// The head of the kernel's siginfo for SIGBUS (x86_64 and aarch64 layout: three ints,
        /// padding, then the address), padded to the kernel's 128 bytes.
        #[repr(C)]
        struct ForgedInfo {
            signo: libc::c_int,
            errno: libc::c_int,
            code: libc::c_int,
            _pad: libc::c_int,
            addr: usize,
            _rest: [u8; 104],
        }
        let info = ForgedInfo {
            signo: libc::SIGBUS,
            errno: 0,
            code: libc::SI_USER,
            _pad: 0,
            addr,
            _rest: [0; 104],
        };
        // SAFETY: getpid/gettid have no preconditions; rt_tgsigqueueinfo reads 128 bytes of
        // `info`, which is that size; a process may send itself any si_code.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                libc::getpid(),
                libc::gettid(),
                libc::SIGBUS,
                &info as *const ForgedInfo,
            )
        };
        assert_eq!(r, 0, "rt_tgsigqueueinfo: {}", io::Error::last_os_error());
    }
}
