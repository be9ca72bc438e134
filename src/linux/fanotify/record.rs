//! The walk over the bytes of one read: each record's header checked, malformed ones skipped
//! or resynchronised on, info records parsed. Pure: no fd is touched (the fuzz target drives
//! [`walk_record`]).

/// Size of `struct fanotify_event_metadata` as the kernel writes it (`FAN_EVENT_METADATA_LEN`).
pub const EVENT_METADATA_LEN: usize = 24;
/// Size of `struct fanotify_event_info_header`.
const INFO_HEADER_LEN: usize = 4;
/// Size of `struct fanotify_event_info_pidfd` (header + `__s32 pidfd`).
pub(super) const INFO_PIDFD_LEN: usize = 8;
/// The metadata version this parser understands (`FANOTIFY_METADATA_VERSION`).
pub(super) const METADATA_VERSION: u8 = libc::FANOTIFY_METADATA_VERSION;

/// One info record after the event header, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct InfoRecord<'a> {
    /// `info_type` (`FAN_EVENT_INFO_TYPE_*`).
    pub info_type: u8,
    /// The record's bytes after the 4-byte header.
    pub body: &'a [u8],
}

/// Parses the info record at `offset`; `None` at the end or on a malformed header.
pub(super) fn parse_info_header(bytes: &[u8], offset: usize) -> Option<(InfoRecord<'_>, usize)> {
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
pub(super) fn info_well_formed(bytes: &[u8]) -> bool {
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

pub(super) fn read_i32(bytes: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    i32::from_ne_bytes(b)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_ne_bytes(b)
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
