//! The events of one read: the caller's read buffer, each event with the fds it owns (closed
//! exactly once), and the iterator that answers the default to whatever it does not hand out.

use super::group::respond_raw;
use super::record::{info_well_formed, parse_info_header, read_i32};
use super::{Error, InfoRecord, RecordStep, walk_record};
use santa_rules::Action;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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

/// A caller-owned read buffer, allocated once per worker and reused for every read.
///
/// Parsing copies each field out of the bytes (`from_ne_bytes`), so the buffer needs no
/// alignment: the kernel packs events with info records at 4-byte multiples anyway.
#[derive(Debug)]
pub struct EventBuffer {
    pub(super) bytes: Box<[u8]>,
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

/// Takes ownership of an fd number the kernel handed us in an event.
fn own_fd(fd: i32) -> OwnedFd {
    // SAFETY: `fd` is non-negative and was installed in our fd table by the kernel for this event
    // only; each event's bytes are parsed once (the iterator's offset only moves forward), so no
    // other OwnedFd for this number exists.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The events of one read. Yields each event once; a malformed record yields an error (its
/// permission event, when it can be attributed, answered with the walk's default and its fd
/// closed) and the walk goes on. Dropping the iterator before the end answers the default to
/// the permission events it did not hand out and closes their fds, so no process is left
/// waiting.
#[derive(Debug)]
pub struct Events<'a> {
    pub(super) group: BorrowedFd<'a>,
    pub(super) bytes: &'a [u8],
    pub(super) offset: usize,
    pub(super) default: Action,
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
