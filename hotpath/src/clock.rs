//! Time for the engine, behind a trait so deadline logic runs on a simulated clock in tests.
//!
//! All engine times are nanoseconds on one monotonic time line that starts at an arbitrary
//! point: `CLOCK_MONOTONIC` on Linux, `mach_absolute_time` scaled by the timebase on macOS.
//! Nothing here ever reads wall-clock time, so a clock step (NTP, an operator) cannot make a
//! deadline fire early or never.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic source of "now" in nanoseconds.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since an arbitrary fixed origin; never decreases.
    fn now_ns(&self) -> u64;
}

/// The host's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock {
    #[cfg(target_os = "macos")]
    timebase: (u32, u32),
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
            let timebase = if kr == 0 && info.denom != 0 {
                (info.numer, info.denom)
            } else {
                (1, 1)
            };
            Self { timebase }
        }
        #[cfg(not(target_os = "macos"))]
        {
            Self {}
        }
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
        let (numer, denom) = self.timebase;
        ((ticks as u128 * numer as u128) / denom as u128) as u64
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
