//! The wake fd that stops every worker polling alongside the group.

use super::Error;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

impl AsRawFd for WakeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An eventfd that wakes every worker polling alongside the group. It stays readable once
/// signalled (nobody drains it), which is what a stop signal needs: every poller sees it.
#[derive(Debug)]
pub struct WakeFd {
    pub(super) fd: OwnedFd,
}

impl WakeFd {
    /// Creates the eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`).
    pub fn new() -> Result<WakeFd, Error> {
        // SAFETY: eventfd takes two integers and returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::Wait {
                call: "eventfd",
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: fd was just returned by the kernel and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(WakeFd { fd })
    }

    /// Signals every waiter, now and later.
    pub fn wake(&self) -> Result<(), Error> {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of a stack u64, as eventfd requires; the fd is valid.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
        if n != 8 {
            let source = io::Error::last_os_error();
            // EAGAIN: the counter is at its maximum, so it is signalled already.
            if source.raw_os_error() != Some(libc::EAGAIN) {
                return Err(Error::Wait {
                    call: "eventfd write",
                    source,
                });
            }
        }
        Ok(())
    }

    /// Consumes pending wake-ups, so the next wait blocks again (for a per-worker wake fd; a
    /// stop signal is simply never drained).
    pub fn drain(&self) {
        let mut value = 0u64;
        // SAFETY: reads at most 8 bytes into a valid, writable u64; the fd is a non-blocking
        // eventfd, so the call returns at once (EAGAIN when nothing is pending).
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut value).cast(), 8) };
    }
}
