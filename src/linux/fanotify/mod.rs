//! A small fanotify wrapper over `libc`, made for a permission listener that must never lose an
//! event.
//!
//! Data flow: [`Fanotify::new`] opens a `FAN_CLASS_CONTENT` group; [`Fanotify::add_watch`] puts a
//! mount or filesystem mark on a path; each worker polls the group fd together with a [`WakeFd`]
//! ([`Fanotify::wait`]), then [`Fanotify::read`]s into its own preallocated [`EventBuffer`] and
//! walks the [`Events`] iterator. Every event owns its file descriptor ([`EventFd`], closed on drop,
//! exactly once) and, on kernels with `FAN_REPORT_PIDFD`, a pidfd of the process. A permission
//! event is answered with [`Fanotify::respond`]; a cacheable allow adds a kernel-side ignore mark
//! with [`Fanotify::ignore_inode`]; a policy change takes them off with
//! [`Fanotify::unignore_inode`], mark by mark (the real mask [`INODE_MARK_MASK`] that
//! [`Fanotify::ignore_inode`] adds beside the ignore bits keeps the mark from being destroyed).
//!
//! No allocation happens on the read → walk → respond path: the buffer is the caller's, parsing
//! copies fields out of the bytes, and the response is written from the stack.
//!
//! Kernel facts this module relies on (fanotify_mark(2), fanotify(7), verified on 6.18 by
//! `tests/fanotify_wrapper.rs`):
//! - `FAN_MARK_IGNORE` (Linux 6.0) on a non-directory inode mark without
//!   `FAN_MARK_IGNORED_SURV_MODIFY` is cleared by the kernel at the file's next modify event, so
//!   the kernel asks again after the file is written. On mount and filesystem marks the kernel
//!   requires the survive-modify flag, which is why the ignore marks here are always inode marks.
//!   Older kernels only know the legacy `FAN_MARK_IGNORED_MASK` with the same modify rule; it is
//!   used as a fallback when `FAN_MARK_IGNORE` is refused with `EINVAL`.
//! - `FAN_MARK_FLUSH` without `FAN_MARK_MOUNT`/`FAN_MARK_FILESYSTEM` removes the group's inode
//!   marks only; mount and filesystem marks stay, so watching goes on. Our only inode marks are
//!   the ignore marks, so a flush drops exactly the kernel allow cache — but it destroys marks,
//!   and a mark destroyed while a permission event for its file is queued lets that event (and
//!   every exec of the file until it is answered) pass unasked. santad does not use it.
//! - `FAN_MARK_EVICTABLE` (Linux 5.19) lets the kernel drop an inode mark together with the inode
//!   under memory pressure, instead of pinning every allowed inode in memory; a dropped ignore
//!   mark only means the kernel asks again. Used when available.
//! - A permission event that is never answered holds its process forever, until the group is
//!   closed (then the kernel allows everything pending: fail open). Hence [`Events`] answers
//!   `FAN_ALLOW` for every event its caller did not take before dropping the iterator.
//!
//! By job: `group` (the group, its marks, reads and responses), `events` (the read buffer, the
//! events and their fds), `record` (the pure walk over the bytes read), `wake` (the stop fd).

use record::METADATA_VERSION;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;

mod events;
mod group;
mod record;
mod wake;

pub use events::{
    EVENT_BUFFER_BYTES_DEFAULT, EVENT_BUFFER_BYTES_MAX, EVENT_BUFFER_BYTES_MIN, Event, EventBuffer,
    EventFd, Events, InfoRecords, PidFd,
};
pub use group::{Fanotify, IgnoreFlavor, InitOptions, MarkScope, Readiness};
pub use record::{EVENT_METADATA_LEN, InfoRecord, RecordStep, walk_record};
pub use wake::WakeFd;

/// The exec permission event: the kernel holds `execve` until we answer.
pub const MASK_OPEN_EXEC_PERM: u64 = libc::FAN_OPEN_EXEC_PERM;
/// The exec notification: sent after a successful exec open, including execs the kernel answered
/// from an ignore mark; it never holds the process.
pub const MASK_OPEN_EXEC: u64 = libc::FAN_OPEN_EXEC;
/// Sent when a file opened for writing is closed: user-space cache invalidation.
pub const MASK_CLOSE_WRITE: u64 = libc::FAN_CLOSE_WRITE;
/// The real (not ignore) mask every inode mark of ours carries, so that taking its ignore bits
/// off never destroys it: the kernel lets a permission event pass unasked when one of the
/// group's marks for the file is destroyed while that event is queued (see
/// `crate::linux::Linux::flush_kernel_cache`). `FAN_CLOSE_WRITE` is in every watch mark's
/// mask already, and a group gets one event per file operation however many of its marks
/// match, so it adds no events.
pub const INODE_MARK_MASK: u64 = libc::FAN_CLOSE_WRITE;
/// The kernel's queue overflowed; events were lost (only notifications can be lost: permission
/// events block their process instead).
pub const MASK_Q_OVERFLOW: u64 = libc::FAN_Q_OVERFLOW;

/// Everything that can fail in this module, with the call and its object.
#[derive(Debug)]
pub enum Error {
    /// `fanotify_init` failed (`EPERM`: no `CAP_SYS_ADMIN`; `EINVAL`: flags this kernel lacks).
    Init {
        /// The flags passed.
        flags: u32,
        /// The OS error.
        source: io::Error,
    },
    /// `fanotify_mark` on a watched path failed.
    Mark {
        /// What was attempted (`"add mount mark"`, ...).
        call: &'static str,
        /// The path marked.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A path given to `fanotify_mark` contains a NUL byte.
    PathNul {
        /// The offending path.
        path: PathBuf,
    },
    /// `fanotify_mark` on an event's file (ignore mark, flush) failed. `ENOSPC`: the group's mark
    /// limit (`/proc/sys/fs/fanotify/max_user_marks`) is reached; the caller simply does without
    /// the kernel cache for this file.
    InodeMark {
        /// What was attempted.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// `read` on the group failed (other than `EAGAIN`/`EINTR`, which read as "no events").
    Read {
        /// The OS error.
        source: io::Error,
    },
    /// Writing a `struct fanotify_response` failed (`ENOENT`: no pending permission event with
    /// that fd — it was already answered).
    Respond {
        /// The event fd answered.
        fd: RawFd,
        /// The OS error.
        source: io::Error,
    },
    /// `poll`, `eventfd` or writing to the eventfd failed.
    Wait {
        /// The call that failed.
        call: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel wrote a metadata version this parser does not know: nothing in the buffer can
    /// be trusted, and its fds cannot be found. The caller should close the group (which releases
    /// every held exec) and start over.
    Version {
        /// The version found.
        found: u8,
    },
    /// An event header breaks the layout rules (`event_len` shorter than the header or past the
    /// bytes read). Events after it cannot be found; same remedy as [`Error::Version`].
    Malformed {
        /// Which rule was broken.
        what: &'static str,
        /// Byte offset of the event in the buffer.
        offset: usize,
    },
    /// A requested buffer size is outside
    /// [`EVENT_BUFFER_BYTES_MIN`]..=[`EVENT_BUFFER_BYTES_MAX`].
    BufferSize {
        /// The size asked for.
        bytes: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Init { flags, source } => {
                write!(f, "fanotify_init(flags={flags:#x}) failed: {source}")
            }
            Error::Mark { call, path, source } => {
                write!(f, "fanotify_mark ({call}) on {}: {source}", path.display())
            }
            Error::PathNul { path } => {
                write!(f, "path contains a NUL byte: {}", path.display())
            }
            Error::InodeMark { call, source } => write!(f, "fanotify_mark ({call}): {source}"),
            Error::Read { source } => write!(f, "read from fanotify group: {source}"),
            Error::Respond { fd, source } => {
                write!(f, "writing fanotify response for fd {fd}: {source}")
            }
            Error::Wait { call, source } => write!(f, "{call}: {source}"),
            Error::Version { found } => write!(
                f,
                "fanotify metadata version {found}, expected {METADATA_VERSION}"
            ),
            Error::Malformed { what, offset } => {
                write!(f, "malformed fanotify event at byte {offset}: {what}")
            }
            Error::BufferSize { bytes } => write!(
                f,
                "event buffer of {bytes} bytes outside {EVENT_BUFFER_BYTES_MIN}..={EVENT_BUFFER_BYTES_MAX}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Init { source, .. }
            | Error::Mark { source, .. }
            | Error::InodeMark { source, .. }
            | Error::Read { source }
            | Error::Respond { source, .. }
            | Error::Wait { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
