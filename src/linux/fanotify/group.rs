//! The fanotify group: marks (watches, ignore marks and their flush), waiting, reading and
//! answering permission events.

use super::{Error, EventBuffer, Events, INODE_MARK_MASK, WakeFd};
use santa_rules::Action;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

    /// Adds `mask` (e.g. [`MASK_OPEN_EXEC_PERM`](super::MASK_OPEN_EXEC_PERM) |
    /// [`MASK_OPEN_EXEC`](super::MASK_OPEN_EXEC) | [`MASK_CLOSE_WRITE`](super::MASK_CLOSE_WRITE))
    /// to a mount or filesystem mark on `path`.
    pub fn add_watch(&self, path: &Path, scope: MarkScope, mask: u64) -> Result<(), Error> {
        let call = match scope {
            MarkScope::Mount => "add mount mark",
            MarkScope::Filesystem => "add filesystem mark",
        };
        self.mark_path(libc::FAN_MARK_ADD | scope.flag(), mask, path, call)
    }

    /// Tells the kernel not to send `mask` events (normally
    /// [`MASK_OPEN_EXEC_PERM`](super::MASK_OPEN_EXEC_PERM)) for the file
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

pub(super) fn respond_raw(
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
