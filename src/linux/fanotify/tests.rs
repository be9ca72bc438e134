use super::*;
use record::INFO_PIDFD_LEN;
use santa_rules::Action;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

fn header(event_len: u32, version: u8, metadata_len: u16, mask: u64, fd: i32, pid: i32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&event_len.to_ne_bytes());
    v.push(version);
    v.push(0);
    v.extend_from_slice(&metadata_len.to_ne_bytes());
    v.extend_from_slice(&mask.to_ne_bytes());
    v.extend_from_slice(&fd.to_ne_bytes());
    v.extend_from_slice(&pid.to_ne_bytes());
    v
}

/// A queue-overflow event of our version: `event_len` bytes announced, no fd.
fn overflow(event_len: u32, pid: i32) -> Vec<u8> {
    header(
        event_len,
        METADATA_VERSION,
        24,
        MASK_Q_OVERFLOW,
        libc::FAN_NOFD,
        pid,
    )
}

fn pidfd_record(value: i32) -> Vec<u8> {
    let mut v = vec![libc::FAN_EVENT_INFO_TYPE_PIDFD, 0];
    v.extend_from_slice(&(INFO_PIDFD_LEN as u16).to_ne_bytes());
    v.extend_from_slice(&value.to_ne_bytes());
    v
}

/// Stands in for the group fd in parsing tests: a response written to /dev/null goes
/// nowhere, so the tests need no privileges and no kernel events.
fn group() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null")
}

fn events_of<'a>(group: &'a std::fs::File, bytes: &'a [u8]) -> Events<'a> {
    Events {
        group: group.as_fd(),
        bytes,
        offset: 0,
        default: Action::Allow,
    }
}

#[test]
fn parses_overflow_event_with_nofd_and_pidfd_records() {
    let g = group();
    let mut bytes = overflow(32, 0);
    bytes.extend(pidfd_record(libc::FAN_NOPIDFD));
    bytes.extend(overflow(24, 7));
    let mut events = events_of(&g, &bytes);
    let first = events.next().expect("one").expect("ok");
    assert_eq!(first.mask, MASK_Q_OVERFLOW);
    assert!(first.fd.is_none());
    assert!(matches!(first.pidfd, Some(PidFd::Exited)));
    assert!(!first.info_malformed);
    assert_eq!(first.info_records().count(), 1);
    let second = events.next().expect("two").expect("ok");
    assert_eq!(second.pid, 7);
    assert!(second.pidfd.is_none());
    assert!(events.next().is_none());
}

#[test]
fn rejects_wrong_version_once() {
    let g = group();
    let bytes = header(24, 2, 24, MASK_Q_OVERFLOW, libc::FAN_NOFD, 0);
    let mut events = events_of(&g, &bytes);
    assert!(matches!(
        events.next(),
        Some(Err(Error::Version { found: 2 }))
    ));
    assert!(events.next().is_none());
}

#[test]
fn rejects_event_len_past_buffer_and_too_small() {
    let g = group();
    let bytes = overflow(4096, 0);
    let mut events = events_of(&g, &bytes);
    assert!(matches!(
        events.next(),
        Some(Err(Error::Malformed { offset: 0, .. }))
    ));
    assert!(events.next().is_none());

    let bytes = overflow(8, 0);
    assert!(matches!(
        events_of(&g, &bytes).next(),
        Some(Err(Error::Malformed { .. }))
    ));

    let bytes = overflow(24, 0);
    assert!(matches!(
        events_of(&g, &bytes[..20]).next(),
        Some(Err(Error::Malformed { .. }))
    ));
}

#[test]
fn malformed_info_record_still_delivers_event() {
    let g = group();
    // A record claiming 200 bytes inside a 32-byte event.
    let mut bytes = overflow(32, 3);
    bytes.extend([libc::FAN_EVENT_INFO_TYPE_PIDFD, 0, 200, 0, 0, 0, 0, 0]);
    let event = events_of(&g, &bytes).next().expect("one").expect("ok");
    assert!(event.info_malformed);
    assert!(event.pidfd.is_none());
    assert_eq!(event.info_records().count(), 0);

    // A zero-length record would loop forever if accepted.
    let mut bytes = overflow(32, 3);
    bytes.extend([9, 0, 0, 0, 0, 0, 0, 0]);
    let event = events_of(&g, &bytes).next().expect("one").expect("ok");
    assert!(event.info_malformed);
}

#[test]
fn event_fd_and_pidfd_are_owned_and_closed_on_drop() {
    let g = group();
    let (read_a, write_a) = pipe();
    let (read_b, write_b) = pipe();
    let mut bytes = header(32, METADATA_VERSION, 24, libc::FAN_CLOSE_WRITE, read_a, 1);
    bytes.extend(pidfd_record(read_b));
    {
        let event = events_of(&g, &bytes).next().expect("one").expect("ok");
        assert_eq!(event.fd.as_ref().map(EventFd::raw), Some(read_a));
        assert!(matches!(event.pidfd, Some(PidFd::Fd(_))));
        assert!(
            write_ok(&write_a) && write_ok(&write_b),
            "read ends still open"
        );
    }
    // With both read ends closed, writes fail with EPIPE: both fds were closed on drop.
    assert!(
        !write_ok(&write_a),
        "event fd must be closed when the event is dropped"
    );
    assert!(
        !write_ok(&write_b),
        "pidfd must be closed when the event is dropped"
    );
}

#[test]
fn a_malformed_record_is_answered_and_closed_and_the_walk_goes_on() {
    // Record 1: our version and a length that fits, but metadata_len past event_len — its
    // fd is its own, so it is answered and closed. Record 2: a length that cannot be
    // trusted — the walk resynchronises on record 3, a good permission event.
    let g = group();
    let (read_a, write_a) = pipe();
    let (read_c, write_c) = pipe();
    let mut bytes = header(
        24,
        METADATA_VERSION,
        200,
        libc::FAN_OPEN_EXEC_PERM,
        read_a,
        1,
    );
    bytes.extend(header(
        1 << 20,
        METADATA_VERSION,
        24,
        libc::FAN_OPEN_EXEC_PERM,
        9_999,
        2,
    ));
    bytes.extend(header(
        24,
        METADATA_VERSION,
        24,
        libc::FAN_OPEN_EXEC_PERM,
        read_c,
        3,
    ));
    let mut events = events_of(&g, &bytes);
    assert!(matches!(
        events.next(),
        Some(Err(Error::Malformed { offset: 0, .. }))
    ));
    assert!(!write_ok(&write_a), "the malformed record's fd was closed");
    assert!(matches!(
        events.next(),
        Some(Err(Error::Malformed { offset: 24, .. }))
    ));
    let good = events.next().expect("the walk goes on").expect("record 3");
    assert_eq!(
        (good.pid, good.fd.as_ref().map(EventFd::raw)),
        (3, Some(read_c))
    );
    assert!(events.next().is_none());
    drop(good);
    assert!(!write_ok(&write_c));
}

#[test]
fn an_unknown_version_is_never_trusted_with_an_fd() {
    // A layout we do not know: its fd field may not be an fd the kernel gave us, so it is
    // left alone (closing it could close one of ours); the walk looks for our version.
    let g = group();
    let (read_a, write_a) = pipe();
    let mut bytes = header(24, 2, 24, libc::FAN_OPEN_EXEC_PERM, read_a, 0);
    bytes.extend(overflow(24, 0));
    let mut events = events_of(&g, &bytes);
    assert!(matches!(
        events.next(),
        Some(Err(Error::Version { found: 2 }))
    ));
    assert!(matches!(events.next(), Some(Ok(e)) if e.mask == MASK_Q_OVERFLOW));
    assert!(events.next().is_none());
    assert!(write_ok(&write_a), "an fd we cannot attribute stays open");
    // SAFETY: closing the read end this test opened, once.
    unsafe { libc::close(read_a) };
}

fn pipe() -> (RawFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a two-element array as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: fds[1] was just created and is owned by nobody else.
    (fds[0], unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

fn write_ok(fd: &OwnedFd) -> bool {
    // SAFETY: writes one byte from a stack array to a valid fd.
    unsafe { libc::write(fd.as_raw_fd(), [0u8].as_ptr().cast(), 1) == 1 }
}

#[test]
fn buffer_bounds() {
    assert!(matches!(
        EventBuffer::new(10),
        Err(Error::BufferSize { bytes: 10 })
    ));
    assert!(EventBuffer::new(EVENT_BUFFER_BYTES_MAX + 1).is_err());
    assert_eq!(
        EventBuffer::new(EVENT_BUFFER_BYTES_DEFAULT)
            .map(|b| b.capacity())
            .ok(),
        Some(1024)
    );
}
