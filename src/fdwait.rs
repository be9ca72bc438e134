//! Waiting on one file descriptor: the `poll(2)` every service thread here sleeps in (the
//! backstop's ring buffer, the mount table, the control listener, a blocked process's terminal).

use std::os::fd::RawFd;

/// Waits up to `timeout_ms` (negative: forever) for `events` on `fd`; returns the events that
/// came (`revents`), or 0 on timeout or error (`EINTR` included: callers loop and check their
/// stop flag or deadline anyway).
pub(crate) fn wait_for(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> libc::c_short {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call, and its count.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if rc > 0 { pfd.revents } else { 0 }
}
