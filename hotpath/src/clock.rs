//! Time for the engine, behind a trait so deadline logic runs on a simulated clock in tests.
//!
//! All engine times are nanoseconds on one monotonic time line that starts at an arbitrary
//! point: `CLOCK_MONOTONIC` on Linux, `mach_absolute_time` scaled by the timebase on macOS.
//! Nothing here ever reads wall-clock time, so a clock step (NTP, an operator) cannot make a
//! deadline fire early or never.
//!
//! Waiting: [`Clock::park_until_ns`] is how a thread sleeps until a deadline on this clock while
//! staying wakeable by [`std::thread::Thread::unpark`] (the deadline thread must wake for an
//! earlier deadline). Its default is `park_timeout` (a futex wait on `CLOCK_MONOTONIC` on Linux,
//! unchanged); on macOS [`MonotonicClock`] parks until shortly before the deadline and spends
//! the last [`MACH_WAIT_TAIL_NS`] in `mach_wait_until` on `mach_absolute_time`, which is exact
//! on the clock the deadline was computed on but cannot be interrupted by `unpark`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic source of "now" in nanoseconds.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since an arbitrary fixed origin; never decreases.
    fn now_ns(&self) -> u64;

    /// Blocks the calling thread until this clock reads `deadline_ns`, `max` has passed, or
    /// another thread unparks it, whichever comes first. Early (spurious) returns are allowed:
    /// callers re-read the clock and loop.
    fn park_until_ns(&self, deadline_ns: u64, max: Duration) {
        let now = self.now_ns();
        if deadline_ns > now {
            std::thread::park_timeout(Duration::from_nanos(deadline_ns - now).min(max));
        }
    }
}

/// How long before a deadline the macOS clock stops parking and waits in `mach_wait_until`.
/// An `unpark` arriving in that stretch is seen at most this late (the token stays set, so the
/// next park returns at once); against Endpoint Security budgets of seconds, 1 ms is nothing.
pub const MACH_WAIT_TAIL_NS: u64 = 1_000_000;

/// The Mach timebase: `mach_absolute_time` ticks × `numer` / `denom` = nanoseconds (1/1 on
/// Intel Macs, 125/3 on Apple silicon's 24 MHz counter). Endpoint Security gives each AUTH
/// message's deadline in these ticks. Platform-neutral so the conversion is tested everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachTimebase {
    /// Numerator.
    pub numer: u32,
    /// Denominator (never 0: [`MachTimebase::new`] falls back to 1/1).
    pub denom: u32,
}

impl MachTimebase {
    /// A timebase; a zero numerator or denominator (a failed `mach_timebase_info`) means 1/1.
    pub fn new(numer: u32, denom: u32) -> Self {
        if numer == 0 || denom == 0 {
            Self { numer: 1, denom: 1 }
        } else {
            Self { numer, denom }
        }
    }

    /// Ticks to nanoseconds, saturating.
    #[inline]
    pub fn ticks_to_ns(self, ticks: u64) -> u64 {
        let ns = ticks as u128 * self.numer as u128 / self.denom as u128;
        ns.min(u64::MAX as u128) as u64
    }

    /// Nanoseconds to ticks, rounded up (a wait until the returned tick never ends before
    /// `ns`), saturating.
    #[inline]
    pub fn ns_to_ticks(self, ns: u64) -> u64 {
        let ticks = (ns as u128 * self.denom as u128).div_ceil(self.numer as u128);
        ticks.min(u64::MAX as u128) as u64
    }
}

impl Default for MachTimebase {
    fn default() -> Self {
        Self::new(1, 1)
    }
}

/// The host's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock {
    #[cfg(target_os = "macos")]
    timebase: MachTimebase,
}

impl MonotonicClock {
    /// Creates the host clock (on macOS, reads the Mach timebase once).
    pub fn new() -> Self {
        #[cfg(target_os = "macos")]
        {
            let mut info = mach2::mach_time::mach_timebase_info { numer: 0, denom: 0 };
            // SAFETY: `info` is a valid, writable `mach_timebase_info` for the duration of the
            // call; the function only writes to it.
            let kr = unsafe { mach2::mach_time::mach_timebase_info(&mut info) };
            let timebase = if kr == mach2::kern_return::KERN_SUCCESS {
                MachTimebase::new(info.numer, info.denom)
            } else {
                MachTimebase::default()
            };
            Self { timebase }
        }
        #[cfg(not(target_os = "macos"))]
        {
            Self {}
        }
    }
}

#[cfg(target_os = "macos")]
impl MonotonicClock {
    /// The timebase `now_ns` scales `mach_absolute_time` by: Endpoint Security deadlines (in
    /// ticks) convert to this clock's nanoseconds with it.
    pub fn mach_timebase(&self) -> MachTimebase {
        self.timebase
    }
}

#[cfg(target_os = "linux")]
impl Clock for MonotonicClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, and
        // the call goes through the vDSO (no syscall).
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail");
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }
}

#[cfg(target_os = "macos")]
impl Clock for MonotonicClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        // SAFETY: mach_absolute_time has no preconditions.
        let ticks = unsafe { mach2::mach_time::mach_absolute_time() };
        self.timebase.ticks_to_ns(ticks)
    }

    fn park_until_ns(&self, deadline_ns: u64, max: Duration) {
        let now = self.now_ns();
        if deadline_ns <= now {
            return;
        }
        let left = deadline_ns - now;
        if left > MACH_WAIT_TAIL_NS {
            // Wakeable part: an earlier deadline unparks us; the caller then re-scans.
            std::thread::park_timeout(Duration::from_nanos(left - MACH_WAIT_TAIL_NS).min(max));
            return;
        }
        let ticks = self.timebase.ns_to_ticks(deadline_ns);
        // SAFETY: mach_wait_until takes a plain absolute tick count and only blocks the calling
        // thread; it returns early with KERN_ABORTED if the thread is aborted, which the caller's
        // loop treats like any early return.
        let _ = unsafe { mach2::mach_time::mach_wait_until(ticks) };
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// A clock that only moves when told to: deadline tests advance it instead of sleeping.
#[derive(Debug, Default)]
pub struct SimClock {
    now_ns: AtomicU64,
}

impl SimClock {
    /// A simulated clock reading `start_ns`.
    pub fn new(start_ns: u64) -> Self {
        Self {
            now_ns: AtomicU64::new(start_ns),
        }
    }

    /// Moves the clock forward by `delta_ns`.
    pub fn advance(&self, delta_ns: u64) {
        self.now_ns.fetch_add(delta_ns, Ordering::SeqCst);
    }

    /// Sets the clock to `now_ns` if that is not earlier than the current reading.
    pub fn set(&self, now_ns: u64) {
        self.now_ns.fetch_max(now_ns, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now_ns(&self) -> u64 {
        (**self).now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_never_goes_back() {
        let clock = MonotonicClock::new();
        let mut last = clock.now_ns();
        for _ in 0..10_000 {
            let now = clock.now_ns();
            assert!(now >= last, "{now} < {last}");
            last = now;
        }
    }

    #[test]
    fn mach_timebase_converts_both_ways() {
        let intel = MachTimebase::new(1, 1);
        assert_eq!(intel.ticks_to_ns(12_345), 12_345);
        assert_eq!(intel.ns_to_ticks(12_345), 12_345);
        // Apple silicon: 24 MHz, 125/3 ns per tick.
        let arm = MachTimebase::new(125, 3);
        assert_eq!(
            arm.ticks_to_ns(24_000_000),
            1_000_000_000,
            "one second of ticks"
        );
        assert_eq!(arm.ns_to_ticks(1_000_000_000), 24_000_000);
        assert_eq!(
            arm.ns_to_ticks(1),
            1,
            "rounded up: never wake before the deadline"
        );
        assert!(arm.ticks_to_ns(arm.ns_to_ticks(999)) >= 999);
        assert_eq!(arm.ticks_to_ns(u64::MAX), u64::MAX, "saturates");
        assert_eq!(MachTimebase::new(0, 0), MachTimebase::new(1, 1));
        assert_eq!(MachTimebase::new(125, 0), MachTimebase::default());
    }

    #[test]
    fn park_until_waits_for_the_deadline_and_wakes_on_unpark() {
        let clock = MonotonicClock::new();
        let start = clock.now_ns();
        let deadline = start + 20_000_000;
        while clock.now_ns() < deadline {
            clock.park_until_ns(deadline, Duration::from_secs(1));
        }
        assert!(clock.now_ns() >= deadline);

        // A far deadline: only the unpark (or the bound) ends the wait.
        let waiter = std::thread::spawn(move || {
            let clock = MonotonicClock::new();
            let start = clock.now_ns();
            clock.park_until_ns(start + 60_000_000_000, Duration::from_secs(30));
            clock.now_ns() - start
        });
        std::thread::sleep(Duration::from_millis(50));
        waiter.thread().unpark();
        let waited_ns = waiter.join().unwrap();
        assert!(
            waited_ns < 10_000_000_000,
            "unpark must end the wait, waited {waited_ns} ns"
        );
    }

    #[test]
    fn park_until_a_past_deadline_returns_at_once() {
        let clock = SimClock::new(1_000);
        // A simulated clock already past the deadline must not park at all.
        let start = std::time::Instant::now();
        clock.park_until_ns(10, Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn sim_clock_moves_only_forward_when_told() {
        let clock = SimClock::new(100);
        assert_eq!(clock.now_ns(), 100);
        clock.advance(50);
        assert_eq!(clock.now_ns(), 150);
        clock.set(120);
        assert_eq!(clock.now_ns(), 150, "set() never moves the clock back");
        clock.set(1_000);
        assert_eq!(clock.now_ns(), 1_000);
    }
}
