//! A small fanotify wrapper over `libc`, made for a permission listener that must never lose an
//! event.
//!
//! Data flow: [`Fanotify::new`] opens a `FAN_CLASS_CONTENT` group; [`Fanotify::add_watch`] puts a
//! mount or filesystem mark on a path; each worker polls the group fd together with a [`WakeFd`]
//! ([`Fanotify::wait`]), then [`Fanotify::read`]s into its own preallocated [`EventBuffer`] and
//! walks the [`Events`] iterator. Every event owns its file descriptor ([`EventFd`], closed on drop,
//! exactly once) and, on kernels with `FAN_REPORT_PIDFD`, a pidfd of the process. A permission
//! event is answered with [`Fanotify::respond`]; a cacheable allow adds a kernel-side ignore mark
//! with [`Fanotify::ignore_inode`] (with the real mask [`INODE_MARK_MASK`] beside it, so the mark
//! is never destroyed); a policy change takes the ignore bits off mark by mark with
//! [`Fanotify::unignore_inode`].
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

use santa_rules::Action;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Size of `struct fanotify_event_metadata` as the kernel writes it (`FAN_EVENT_METADATA_LEN`).
pub const EVENT_METADATA_LEN: usize = 24;
/// Size of `struct fanotify_event_info_header`.
const INFO_HEADER_LEN: usize = 4;
/// Size of `struct fanotify_event_info_pidfd` (header + `__s32 pidfd`).
const INFO_PIDFD_LEN: usize = 8;
/// The real (not ignore) mask every inode mark of ours carries, so that taking its ignore bits
/// off never destroys it: the kernel lets a permission event pass unasked when one of the
/// group's marks for the file is destroyed while that event is queued (see
/// `crate::linux::Linux::flush_kernel_cache`). `FAN_CLOSE_WRITE` is in every watch mark's
/// mask already, and a group gets one event per file operation however many of its marks
/// match, so it adds no events.
pub const INODE_MARK_MASK: u64 = libc::FAN_CLOSE_WRITE;
/// The metadata version this parser understands (`FANOTIFY_METADATA_VERSION`).
const METADATA_VERSION: u8 = libc::FANOTIFY_METADATA_VERSION;

/// Smallest buffer [`EventBuffer::new`] accepts: one event with a pidfd record is 32 bytes and the
/// kernel fails a read with `EINVAL` when the first pending event does not fit; 256 bytes leaves
/// room for events with larger info records (file handles) should a group ever ask for them.
pub const EVENT_BUFFER_BYTES_MIN: usize = 256;
/// Largest buffer [`EventBuffer::new`] accepts. A worker that reads N events handles them one
/// after another while the other workers may be idle, so large reads trade latency for syscalls;
/// 64 KiB (2,048 exec events) is already far past the useful end.
pub const EVENT_BUFFER_BYTES_MAX: usize = 64 * 1024;
/// Default per-worker read buffer: 32 exec events with pidfd records. Small on purpose, so a
/// burst spreads across the workers that poll the same group instead of queueing behind one.
pub const EVENT_BUFFER_BYTES_DEFAULT: usize = 1024;

/// The exec permission event: the kernel holds `execve` until we answer.
pub const MASK_OPEN_EXEC_PERM: u64 = libc::FAN_OPEN_EXEC_PERM;
/// The exec notification: sent after a successful exec open, including execs the kernel answered
/// from an ignore mark; it never holds the process.
pub const MASK_OPEN_EXEC: u64 = libc::FAN_OPEN_EXEC;
/// Sent when a file opened for writing is closed: user-space cache invalidation.
pub const MASK_CLOSE_WRITE: u64 = libc::FAN_CLOSE_WRITE;
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

/// Which object a watch mark covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkScope {
    /// `FAN_MARK_MOUNT`: the mount the path is on. Files reached through another mount of the same
    /// filesystem (a bind mount) are not seen.
    Mount,
    /// `FAN_MARK_FILESYSTEM`: the whole filesystem, through every mount.
    Filesystem,
}

impl MarkScope {
    fn flag(self) -> u32 {
        match self {
            MarkScope::Mount => libc::FAN_MARK_MOUNT,
            MarkScope::Filesystem => libc::FAN_MARK_FILESYSTEM,
        }
    }
}

/// Options for [`Fanotify::new`].
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    /// Ask for `FAN_REPORT_PIDFD` (Linux 5.15); silently not used when the kernel refuses it.
    pub report_pidfd: bool,
    /// `FAN_ENABLE_AUDIT`: lets a response carry `FAN_AUDIT` (the kernel then writes an audit
    /// record). Needs `CAP_AUDIT_WRITE`.
    pub enable_audit: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            report_pidfd: true,
            enable_audit: false,
        }
    }
}

/// Which ignore-mark flavour the running kernel accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreFlavor {
    /// `FAN_MARK_IGNORE | FAN_MARK_EVICTABLE` (Linux 6.0+).
    IgnoreEvictable,
    /// `FAN_MARK_IGNORE` without eviction.
    Ignore,
    /// Legacy `FAN_MARK_IGNORED_MASK` (pre-6.0 kernels).
    LegacyIgnoredMask,
}

impl IgnoreFlavor {
    fn flags(self) -> u32 {
        match self {
            IgnoreFlavor::IgnoreEvictable => libc::FAN_MARK_IGNORE | libc::FAN_MARK_EVICTABLE,
            IgnoreFlavor::Ignore => libc::FAN_MARK_IGNORE,
            IgnoreFlavor::LegacyIgnoredMask => libc::FAN_MARK_IGNORED_MASK,
        }
    }
}

/// An fanotify group (`FAN_CLASS_CONTENT`, non-blocking, close-on-exec).
///
/// `FAN_NONBLOCK` is required by the design: several workers poll the same group fd, and all of
/// them wake for one event; with a blocking fd the losers would sit in `read` and miss their stop
/// signal. With it, they see `EAGAIN` and go back to [`Fanotify::wait`].
#[derive(Debug)]
pub struct Fanotify {
    fd: OwnedFd,
    pidfd_reported: bool,
    /// Index into [`IGNORE_FLAVORS`] of the first flavour not yet refused by the kernel.
    ignore_flavor: std::sync::atomic::AtomicU8,
}

const IGNORE_FLAVORS: [IgnoreFlavor; 3] = [
    IgnoreFlavor::IgnoreEvictable,
    IgnoreFlavor::Ignore,
    IgnoreFlavor::LegacyIgnoredMask,
];

impl Fanotify {
    /// Opens a group: `FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK` (+ `FAN_REPORT_PIDFD` when
    /// asked and supported), event fds opened `O_RDONLY | O_LARGEFILE | O_CLOEXEC`.
    pub fn new(options: InitOptions) -> Result<Fanotify, Error> {
        // An unlimited queue: when a bounded queue is full the kernel drops new permission
        // events and *allows* them (and a user can fill it with close-after-write events of
        // their own files). Unlimited marks: the kernel allow cache places one per binary.
        let mut base = libc::FAN_CLASS_CONTENT
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_UNLIMITED_QUEUE
            | libc::FAN_UNLIMITED_MARKS;
        if options.enable_audit {
            base |= libc::FAN_ENABLE_AUDIT;
        }
        // O_NONBLOCK: opening the event fd of a file a user holds a write lease on would
        // otherwise break the lease and wait `fs.lease-break-time` (45 s) in our read — a user
        // could wedge every worker. Non-blocking, the open fails and the kernel denies that
        // one permission event itself. (Reads of regular files ignore O_NONBLOCK.)
        let event_f_flags =
            (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC | libc::O_NONBLOCK) as u32;
        let attempt = |flags: u32| -> Result<OwnedFd, io::Error> {
            // SAFETY: fanotify_init takes two integers and returns a new fd or -1; no memory is
            // passed.
            let fd = unsafe { libc::fanotify_init(flags, event_f_flags) };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                // SAFETY: fd was just returned by the kernel, is valid and owned by nobody else.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        };
        if options.report_pidfd {
            let flags = base | libc::FAN_REPORT_PIDFD;
            match attempt(flags) {
                Ok(fd) => return Ok(Fanotify::from_fd(fd, true)),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(source) => return Err(Error::Init { flags, source }),
            }
        }
        attempt(base)
            .map(|fd| Fanotify::from_fd(fd, false))
            .map_err(|source| Error::Init {
                flags: base,
                source,
            })
    }

    fn from_fd(fd: OwnedFd, pidfd_reported: bool) -> Fanotify {
        Fanotify {
            fd,
            pidfd_reported,
            ignore_flavor: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// Whether events carry a pidfd record.
    pub fn reports_pidfd(&self) -> bool {
        self.pidfd_reported
    }

    /// The ignore-mark flavour in use (the first one this kernel has not refused).
    pub fn ignore_flavor(&self) -> IgnoreFlavor {
        let i = self
            .ignore_flavor
            .load(std::sync::atomic::Ordering::Relaxed) as usize;
        IGNORE_FLAVORS[i.min(IGNORE_FLAVORS.len() - 1)]
    }

    fn mark_path(
        &self,
        flags: u32,
        mask: u64,
        path: &Path,
        call: &'static str,
    ) -> Result<(), Error> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::PathNul {
            path: path.to_path_buf(),
        })?;
        // SAFETY: the group fd is valid for self's lifetime; c_path is a NUL-terminated string
        // that outlives the call; AT_FDCWD resolves a relative path against the cwd.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                flags,
                mask,
                libc::AT_FDCWD,
                c_path.as_ptr(),
            )
        };
        if rc < 0 {
            return Err(Error::Mark {
                call,
                path: path.to_path_buf(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Adds `mask` (e.g. [`MASK_OPEN_EXEC_PERM`] | [`MASK_OPEN_EXEC`] | [`MASK_CLOSE_WRITE`]) to a
    /// mount or filesystem mark on `path`.
    pub fn add_watch(&self, path: &Path, scope: MarkScope, mask: u64) -> Result<(), Error> {
        let call = match scope {
            MarkScope::Mount => "add mount mark",
            MarkScope::Filesystem => "add filesystem mark",
        };
        self.mark_path(libc::FAN_MARK_ADD | scope.flag(), mask, path, call)
    }

    /// Tells the kernel not to send `mask` events (normally [`MASK_OPEN_EXEC_PERM`]) for the file
    /// behind `file` until the file is modified: an inode ignore mark without survive-modify.
    ///
    /// Notifications outside `mask` (the exec notification, close-after-write) keep coming.
    /// Fails with `ENOSPC` inside [`Error::InodeMark`] when the group's mark limit is reached.
    pub fn ignore_inode(&self, file: BorrowedFd<'_>, mask: u64) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        loop {
            let index = self.ignore_flavor.load(Ordering::Relaxed) as usize;
            let flavor = IGNORE_FLAVORS[index.min(IGNORE_FLAVORS.len() - 1)];
            let flags = libc::FAN_MARK_ADD | flavor.flags();
            // The real mask first: a mark that has one outlives the removal of its ignore
            // bits (see INODE_MARK_MASK).
            let evictable = flavor.flags() & libc::FAN_MARK_EVICTABLE;
            let Err(source) = self
                .mark_object(
                    libc::FAN_MARK_ADD | evictable,
                    INODE_MARK_MASK,
                    file.as_raw_fd(),
                )
                .and_then(|()| self.mark_object(flags, mask, file.as_raw_fd()))
            else {
                return Ok(());
            };
            // EINVAL: this kernel does not know the flag; try the next flavour once, for all
            // threads (the index only moves forward).
            if source.raw_os_error() == Some(libc::EINVAL) && index + 1 < IGNORE_FLAVORS.len() {
                let _ = self.ignore_flavor.compare_exchange(
                    index as u8,
                    index as u8 + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                continue;
            }
            return Err(Error::InodeMark {
                call: "add inode ignore mark",
                source,
            });
        }
    }

    /// Removes the inode ignore mark [`Fanotify::ignore_inode`] placed on `file` (a cached allow
    /// that must not stand).
    pub fn unignore_inode(&self, file: BorrowedFd<'_>, mask: u64) -> Result<(), Error> {
        // Evictability is a property of an added mark; removal names only the ignore mask.
        let flags =
            libc::FAN_MARK_REMOVE | (self.ignore_flavor().flags() & !libc::FAN_MARK_EVICTABLE);
        self.mark_object(flags, mask, file.as_raw_fd())
            .map_err(|source| Error::InodeMark {
                call: "remove inode ignore mark",
                source,
            })
    }

    /// Not used by santad: destroying an inode mark while a permission event for its file is
    /// queued lets that exec pass unasked (see [`INODE_MARK_MASK`]).
    ///
    /// Drops every inode mark of the group — the kernel allow cache built by
    /// [`Fanotify::ignore_inode`] — and keeps the mount and filesystem watch marks
    /// (`FAN_MARK_FLUSH` without a mount/filesystem flag).
    pub fn flush_ignores(&self) -> Result<(), Error> {
        // FAN_MARK_FLUSH ignores mask, dirfd and path (since Linux 3.16 the path need not name
        // a valid object).
        self.mark_object(libc::FAN_MARK_FLUSH, 0, libc::AT_FDCWD)
            .map_err(|source| Error::InodeMark {
                call: "flush inode marks",
                source,
            })
    }

    /// `fanotify_mark(group, flags, mask, dirfd, NULL)`: marks the object `dirfd` is (or, for a
    /// flush, ignores it).
    fn mark_object(&self, flags: u32, mask: u64, dirfd: RawFd) -> io::Result<()> {
        // SAFETY: the group fd is valid for self's lifetime; `dirfd` is an fd the caller lends
        // for the call (or AT_FDCWD); a NULL path makes the kernel use the object `dirfd` refers
        // to and is never dereferenced.
        let rc = unsafe {
            libc::fanotify_mark(self.fd.as_raw_fd(), flags, mask, dirfd, std::ptr::null())
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits until the group has events or `wake` was signalled, at most `timeout_ms`
    /// (negative: forever). `EINTR` reads as a timeout.
    pub fn wait(&self, wake: &WakeFd, timeout_ms: i32) -> Result<Readiness, Error> {
        let mut fds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds points to two initialised pollfd structs that live across the call, and
        // the count passed matches the array length.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let source = io::Error::last_os_error();
            if source.raw_os_error() == Some(libc::EINTR) {
                return Ok(Readiness {
                    events: false,
                    woken: false,
                });
            }
            return Err(Error::Wait {
                call: "poll",
                source,
            });
        }
        Ok(Readiness {
            events: fds[0].revents != 0,
            woken: fds[1].revents != 0,
        })
    }

    /// Reads pending events into `buf` and returns an iterator over them. No events pending (the
    /// group is non-blocking) or an interrupted read gives an empty iterator.
    pub fn read<'a>(&'a self, buf: &'a mut EventBuffer) -> Result<Events<'a>, Error> {
        self.read_answering(buf, Action::Allow)
    }

    /// [`Fanotify::read`], answering `default` to permission events of malformed records and
    /// to those the iterator is dropped before handing out.
    pub fn read_answering<'a>(
        &'a self,
        buf: &'a mut EventBuffer,
        default: Action,
    ) -> Result<Events<'a>, Error> {
        // SAFETY: buf.bytes is an initialised, exclusively borrowed allocation of bytes.len()
        // bytes; the kernel writes at most that many.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.bytes.as_mut_ptr().cast(),
                buf.bytes.len(),
            )
        };
        let len = if n < 0 {
            let source = io::Error::last_os_error();
            match source.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => 0,
                _ => return Err(Error::Read { source }),
            }
        } else {
            n as usize
        };
        Ok(Events {
            group: self.fd.as_fd(),
            bytes: &buf.bytes[..len.min(buf.bytes.len())],
            offset: 0,
            default,
        })
    }

    /// Answers the permission event whose fd is `fd`. `audit` adds `FAN_AUDIT` (needs
    /// [`InitOptions::enable_audit`]).
    pub fn respond(&self, fd: BorrowedFd<'_>, response: Action, audit: bool) -> Result<(), Error> {
        respond_raw(self.fd.as_fd(), fd.as_raw_fd(), response, audit)
    }
}

impl AsFd for Fanotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn respond_raw(
    group: BorrowedFd<'_>,
    fd: RawFd,
    response: Action,
    audit: bool,
) -> Result<(), Error> {
    // The decision's one translation into fanotify's words: `FAN_DENY` makes `execve` fail
    // with `EPERM`.
    let mut code = match response {
        Action::Allow => libc::FAN_ALLOW,
        Action::Deny => libc::FAN_DENY,
    };
    if audit {
        code |= libc::FAN_AUDIT;
    }
    let msg = libc::fanotify_response { fd, response: code };
    let len = std::mem::size_of::<libc::fanotify_response>();
    // SAFETY: msg is a plain repr(C) struct on the stack, valid for `len` bytes for the duration
    // of the call; the group fd is valid.
    let n = unsafe { libc::write(group.as_raw_fd(), (&raw const msg).cast(), len) };
    if n < 0 {
        return Err(Error::Respond {
            fd,
            source: io::Error::last_os_error(),
        });
    }
    if n as usize != len {
        return Err(Error::Respond {
            fd,
            source: io::Error::from(io::ErrorKind::WriteZero),
        });
    }
    Ok(())
}

/// What [`Fanotify::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The group has events to read.
    pub events: bool,
    /// The wake fd was signalled (stop).
    pub woken: bool,
}

impl AsRawFd for WakeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An eventfd that wakes every worker polling alongside the group. It stays readable once
/// signalled (nobody drains it), which is what a stop signal needs: every poller sees it.
#[derive(Debug)]
pub struct WakeFd {
    fd: OwnedFd,
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

/// A caller-owned read buffer, allocated once per worker and reused for every read.
///
/// Parsing copies each field out of the bytes (`from_ne_bytes`), so the buffer needs no
/// alignment: the kernel packs events with info records at 4-byte multiples anyway.
#[derive(Debug)]
pub struct EventBuffer {
    bytes: Box<[u8]>,
}

impl EventBuffer {
    /// A buffer of `bytes` bytes, within [`EVENT_BUFFER_BYTES_MIN`]..=[`EVENT_BUFFER_BYTES_MAX`].
    pub fn new(bytes: usize) -> Result<EventBuffer, Error> {
        if !(EVENT_BUFFER_BYTES_MIN..=EVENT_BUFFER_BYTES_MAX).contains(&bytes) {
            return Err(Error::BufferSize { bytes });
        }
        Ok(EventBuffer {
            bytes: vec![0u8; bytes].into_boxed_slice(),
        })
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.bytes.len()
    }
}

/// An event's file descriptor: owned, closed exactly once when dropped.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// The raw fd number, as written in a response.
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Gives up the typed wrapper (e.g. to park the fd in an in-flight slot).
    pub fn into_owned(self) -> OwnedFd {
        self.0
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The process's pidfd from a `FAN_EVENT_INFO_TYPE_PIDFD` record, or why there is none.
#[derive(Debug)]
pub enum PidFd {
    /// A pidfd owned by this event (closed on drop).
    Fd(OwnedFd),
    /// `FAN_NOPIDFD`: the process had exited by the time the event was read.
    Exited,
    /// `FAN_EPIDFD` or another negative value: the kernel could not make a pidfd.
    Error(i32),
}

/// One info record after the event header, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct InfoRecord<'a> {
    /// `info_type` (`FAN_EVENT_INFO_TYPE_*`).
    pub info_type: u8,
    /// The record's bytes after the 4-byte header.
    pub body: &'a [u8],
}

/// One event, borrowed from the read buffer.
#[derive(Debug)]
pub struct Event<'a> {
    /// The event mask (`FAN_OPEN_EXEC_PERM`, `FAN_OPEN_EXEC`, `FAN_CLOSE_WRITE`, `FAN_Q_OVERFLOW`).
    pub mask: u64,
    /// The file, opened by the kernel for us; `None` for `FAN_Q_OVERFLOW` (`FAN_NOFD`).
    pub fd: Option<EventFd>,
    /// The pid (thread-group id) of the process that caused the event.
    pub pid: i32,
    /// The pidfd record, when the group reports pidfds and the event had one.
    pub pidfd: Option<PidFd>,
    /// An info record broke the layout rules: the records were skipped (the event itself is
    /// still delivered so that it can be answered and its fd closed).
    pub info_malformed: bool,
    info: &'a [u8],
}

impl<'a> Event<'a> {
    /// Whether the kernel holds the process until this event is answered.
    pub fn is_permission(&self) -> bool {
        self.mask & (libc::FAN_OPEN_EXEC_PERM | libc::FAN_OPEN_PERM | libc::FAN_ACCESS_PERM) != 0
    }

    /// The raw info records (already parsed for pidfd); empty when malformed.
    pub fn info_records(&self) -> InfoRecords<'a> {
        InfoRecords {
            bytes: if self.info_malformed { &[] } else { self.info },
            offset: 0,
        }
    }
}

/// Iterator over the info records of one event.
#[derive(Debug)]
pub struct InfoRecords<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for InfoRecords<'a> {
    type Item = InfoRecord<'a>;
    fn next(&mut self) -> Option<InfoRecord<'a>> {
        let (record, len) = parse_info_header(self.bytes, self.offset)?;
        self.offset += len;
        Some(record)
    }
}

/// Parses the info record at `offset`; `None` at the end or on a malformed header.
fn parse_info_header(bytes: &[u8], offset: usize) -> Option<(InfoRecord<'_>, usize)> {
    let header = bytes.get(offset..offset.checked_add(INFO_HEADER_LEN)?)?;
    let info_type = header[0];
    let len = u16::from_ne_bytes([header[2], header[3]]) as usize;
    if len < INFO_HEADER_LEN {
        return None;
    }
    let body = bytes.get(offset + INFO_HEADER_LEN..offset.checked_add(len)?)?;
    Some((InfoRecord { info_type, body }, len))
}

/// Checks that the info area is a sequence of well-formed records covering it exactly.
fn info_well_formed(bytes: &[u8]) -> bool {
    let mut offset = 0;
    while offset < bytes.len() {
        match parse_info_header(bytes, offset) {
            Some((record, len)) => {
                if record.info_type == libc::FAN_EVENT_INFO_TYPE_PIDFD && len != INFO_PIDFD_LEN {
                    return false;
                }
                offset += len;
            }
            None => return false,
        }
    }
    true
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(b)
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    i32::from_ne_bytes(b)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_ne_bytes(b)
}

/// Takes ownership of an fd number the kernel handed us in an event.
fn own_fd(fd: i32) -> OwnedFd {
    // SAFETY: `fd` is non-negative and was installed in our fd table by the kernel for this event
    // only; each event's bytes are parsed once (the iterator's offset only moves forward), so no
    // other OwnedFd for this number exists.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Mask bits of the events the kernel holds until they are answered.
const PERMISSION_MASK: u64 = libc::FAN_OPEN_EXEC_PERM | libc::FAN_OPEN_PERM | libc::FAN_ACCESS_PERM;

/// One step of the walk over a read buffer ([`walk_record`]): pure, no fd is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStep {
    /// A well-formed event header at `start`, `len` bytes long, its info records from
    /// `info_at`.
    Event {
        /// Offset of the record.
        start: usize,
        /// `event_len`.
        len: usize,
        /// Offset of the info records (`start + metadata_len`).
        info_at: usize,
        /// Mask.
        mask: u64,
        /// The fd field (negative: none).
        fd: i32,
        /// The pid field.
        pid: i32,
    },
    /// A malformed record at `start`; the walk goes on at `next`. `fd` is the record's fd when
    /// its length could be trusted (so the fd belongs to it and must be answered and closed).
    Malformed {
        /// Offset of the record.
        start: usize,
        /// Where the next record starts (resynchronised on a plausible header if the length
        /// could not be trusted).
        next: usize,
        /// The record's fd and whether its mask says the kernel waits for an answer.
        fd: Option<(i32, bool)>,
        /// What was wrong.
        what: &'static str,
    },
}

/// Whether `bytes[at..]` starts like a header the kernel writes: our metadata version, a
/// 24-byte metadata length, a zero reserved byte and a length that fits.
fn plausible_header(bytes: &[u8], at: usize) -> bool {
    let Some(rest) = bytes.get(at..) else {
        return false;
    };
    if rest.len() < EVENT_METADATA_LEN {
        return false;
    }
    let event_len = read_u32(rest, 0) as usize;
    rest[4] == METADATA_VERSION
        && rest[5] == 0
        && u16::from_ne_bytes([rest[6], rest[7]]) as usize == EVENT_METADATA_LEN
        && (EVENT_METADATA_LEN..=rest.len()).contains(&event_len)
}

/// The record at `offset` of a read buffer, or `None` at the end. Never panics, never loops:
/// every step moves forward. A malformed record whose length can be trusted is skipped
/// exactly (its fd reported, to be answered and closed); otherwise the walk resynchronises on
/// the next plausible header, 4-byte aligned (info records keep that alignment), and a
/// trailing fragment too short for a header ends it.
pub fn walk_record(bytes: &[u8], offset: usize) -> Option<RecordStep> {
    let rest = bytes.get(offset..).filter(|r| !r.is_empty())?;
    if rest.len() < EVENT_METADATA_LEN {
        return Some(RecordStep::Malformed {
            start: offset,
            next: bytes.len(),
            fd: None,
            what: "truncated event header",
        });
    }
    let event_len = read_u32(rest, 0) as usize;
    let version = rest[4];
    let metadata_len = u16::from_ne_bytes([rest[6], rest[7]]) as usize;
    let mask = read_u64(rest, 8);
    let fd = read_i32(rest, 16);
    let pid = read_i32(rest, 20);
    let len_ok = (EVENT_METADATA_LEN..=rest.len()).contains(&event_len);
    if len_ok
        && version == METADATA_VERSION
        && (EVENT_METADATA_LEN..=event_len).contains(&metadata_len)
    {
        return Some(RecordStep::Event {
            start: offset,
            len: event_len,
            info_at: offset + metadata_len,
            mask,
            fd,
            pid,
        });
    }
    let what = if version != METADATA_VERSION {
        "unknown metadata version"
    } else if !len_ok {
        "event_len too small or past the bytes read"
    } else {
        "metadata_len out of range"
    };
    if len_ok && version == METADATA_VERSION {
        // The layout is ours and the length fits: the fd field is this record's.
        return Some(RecordStep::Malformed {
            start: offset,
            next: offset + event_len,
            fd: (fd >= 0).then_some((fd, mask & PERMISSION_MASK != 0)),
            what,
        });
    }
    // The length cannot be trusted, and neither can the fd field (closing a number that is not
    // this event's could close one of ours). Find the next header that looks like the kernel's.
    let mut next = offset + 4;
    while next < bytes.len() && !plausible_header(bytes, next) {
        next += 4;
    }
    Some(RecordStep::Malformed {
        start: offset,
        next: next.min(bytes.len()),
        fd: None,
        what,
    })
}

/// The events of one read. Yields each event once; a malformed record yields an error (its
/// permission event, when it can be attributed, answered with the walk's default and its fd
/// closed) and the walk goes on. Dropping the iterator before the end answers the default to
/// the permission events it did not hand out and closes their fds, so no process is left
/// waiting.
#[derive(Debug)]
pub struct Events<'a> {
    group: BorrowedFd<'a>,
    bytes: &'a [u8],
    offset: usize,
    default: Action,
}

impl<'a> Events<'a> {
    /// Bytes the kernel wrote in this read.
    pub fn bytes_read(&self) -> usize {
        self.bytes.len()
    }

    fn parse_next(&mut self) -> Option<Result<Event<'a>, Error>> {
        match walk_record(self.bytes, self.offset)? {
            RecordStep::Malformed {
                start,
                next,
                fd,
                what,
            } => {
                self.offset = next.max(start + 1);
                if let Some((fd, permission)) = fd {
                    let fd = own_fd(fd);
                    if permission {
                        let _ = respond_raw(self.group, fd.as_raw_fd(), self.default, false);
                    }
                    drop(fd);
                }
                if what == "unknown metadata version" {
                    let found = self.bytes.get(start + 4).copied().unwrap_or(0);
                    return Some(Err(Error::Version { found }));
                }
                Some(Err(Error::Malformed {
                    what,
                    offset: start,
                }))
            }
            RecordStep::Event {
                start,
                len,
                info_at,
                mask,
                fd,
                pid,
            } => {
                self.offset = start + len;
                let info = &self.bytes[info_at..start + len];
                Some(Ok(self.own_event(mask, fd, pid, info)))
            }
        }
    }

    fn own_event(&self, mask: u64, fd: i32, pid: i32, info: &'a [u8]) -> Event<'a> {
        let fd = if fd >= 0 {
            Some(EventFd(own_fd(fd)))
        } else {
            None
        };
        let info_malformed = !info_well_formed(info);
        let mut pidfd = None;
        if !info_malformed {
            let mut records = InfoRecords {
                bytes: info,
                offset: 0,
            };
            for record in &mut records {
                if record.info_type == libc::FAN_EVENT_INFO_TYPE_PIDFD {
                    let value = read_i32(record.body, 0);
                    let parsed = if value >= 0 {
                        PidFd::Fd(own_fd(value))
                    } else if value == libc::FAN_NOPIDFD {
                        PidFd::Exited
                    } else {
                        PidFd::Error(value)
                    };
                    // A second pidfd record would be a kernel bug; the first one wins and any
                    // later fd is still owned, so it is closed right here.
                    if pidfd.is_none() {
                        pidfd = Some(parsed);
                    }
                }
            }
        }
        Event {
            mask,
            fd,
            pid,
            pidfd,
            info_malformed,
            info,
        }
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, Error>;
    fn next(&mut self) -> Option<Self::Item> {
        self.parse_next()
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        while let Some(item) = self.parse_next() {
            if let Ok(event) = item
                && event.is_permission()
                && let Some(fd) = &event.fd
            {
                // Nobody took this event: answer the default rather than hold it forever.
                let _ = respond_raw(self.group, fd.raw(), self.default, false);
            }
        }
    }
}

#[cfg(test)]
mod tests;
