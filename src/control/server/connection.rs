//! One control connection: who is on the other end (the kernel's record of the peer), reading
//! its one request within the peer's deadlines, and writing the answer (or an error) without
//! letting a slow reader hold the handler.

use super::*;

/// `getsockopt` of a fixed-size value: `init` overwritten by the kernel's answer, which must fill
/// it exactly.
fn socket_option<T>(stream: &UnixStream, level: i32, name: i32, mut value: T) -> io::Result<T> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the fd is a connected Unix socket we own for the duration of the call; `value`
    // is a properly aligned T of `len` bytes, which getsockopt writes at most. Every T used
    // here is plain C data, valid whatever bytes the kernel writes.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<T>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("short getsockopt answer for option {name}"),
        ));
    }
    Ok(value)
}

/// The peer's uid and pid (`SO_PEERCRED`: what the kernel recorded at `connect`, which the
/// peer cannot forge).
#[cfg(target_os = "linux")]
pub fn peer_credentials(stream: &UnixStream) -> io::Result<(u32, i32)> {
    let unknown = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let cred = socket_option(stream, libc::SOL_SOCKET, libc::SO_PEERCRED, unknown)?;
    Ok((cred.uid, cred.pid))
}

/// The peer's uid and pid on macOS: `getpeereid` (the effective uid the kernel recorded at
/// `connect`, as `SO_PEERCRED` gives on Linux) and `LOCAL_PEERPID`.
#[cfg(target_os = "macos")]
pub fn peer_credentials(stream: &UnixStream) -> io::Result<(u32, i32)> {
    let (mut uid, mut gid): (libc::uid_t, libc::gid_t) = (libc::uid_t::MAX, libc::gid_t::MAX);
    // SAFETY: the fd is a connected Unix socket we own for the duration of the call; both out
    // pointers refer to live locals.
    if unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let pid: libc::pid_t = socket_option(stream, libc::SOL_LOCAL, libc::LOCAL_PEERPID, 0)?;
    Ok((uid, pid))
}

/// Writes all of `buf` by `deadline`, however slowly the peer reads (a peer taking one byte
/// at a time cannot stretch it: the timeout of each write is what is left of the deadline).
fn write_all_within(stream: &mut UnixStream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not take the answer in time",
            ));
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if is_retryable(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `response` as one message, all of it by `deadline`. Serialised behind a reserved
/// header in one buffer (no copy of a large export), so a short answer is one write and
/// arrives whole.
fn send_within(stream: &mut UnixStream, response: &Response, deadline: Instant) -> io::Result<()> {
    let mut message = vec![0u8; FRAME_HEADER_BYTES];
    serde_json::to_writer(&mut message, response)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(message.len() - FRAME_HEADER_BYTES)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "answer over 4 GiB"))?;
    message[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
    write_all_within(stream, &message, deadline)
}

fn send_error(stream: &mut UnixStream, kind: ErrorKind, message: String) {
    let response: Response = Err(ControlError::new(kind, message));
    let _ = send_within(stream, &response, Instant::now() + ERROR_WRITE_TIMEOUT);
}

/// Tells a peer the listener turns away why, without ever waiting on it: one non-blocking
/// write (a fresh connection's socket buffer, over 100 KiB, holds a short error whole), then
/// the connection is closed.
pub(super) fn refuse_now(stream: UnixStream, kind: ErrorKind, message: &str) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let response: Response = Err(ControlError::new(kind, message));
    let Ok(body) = serde_json::to_vec(&response) else {
        return;
    };
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    // A short error: its length fits in the header.
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    let _ = (&stream).write(&buf);
}

/// An accepted connection and who is on the other end.
#[derive(Debug)]
pub struct Connection {
    pub(super) stream: UnixStream,
    pub(super) uid: u32,
    pub(super) pid: i32,
}

/// Serves one connection: one request, one answer, within the peer's deadlines.
pub(super) fn serve(ctx: &ControlContext, conn: Connection, stop: &AtomicBool) {
    let Connection {
        mut stream,
        uid,
        pid,
    } = conn;
    let (max, deadline, reply_deadline) = if uid == 0 {
        (
            REQUEST_BYTES_MAX_ROOT,
            REQUEST_DEADLINE_ROOT,
            REPLY_DEADLINE_ROOT,
        )
    } else {
        (
            REQUEST_BYTES_MAX_UNPRIVILEGED,
            REQUEST_DEADLINE_UNPRIVILEGED,
            REPLY_DEADLINE_UNPRIVILEGED,
        )
    };
    let body = match read_frame(
        &mut stream,
        max,
        IDLE_TIMEOUT,
        Instant::now() + deadline,
        &|| stop.load(Ordering::Relaxed),
    ) {
        Ok(body) => body,
        Err(FrameError::TooLarge { len, max }) => {
            ctx.counters.too_large.fetch_add(1, Ordering::Relaxed);
            send_error(
                &mut stream,
                ErrorKind::TooLarge,
                format!("request of {len} bytes is over the {max}-byte limit for uid {uid}"),
            );
            return;
        }
        Err(FrameError::TimedOut) => {
            ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
            send_error(&mut stream, ErrorKind::TimedOut, "request timed out".into());
            return;
        }
        Err(_) => {
            ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let response = match parse_request(&body) {
        Ok(Request::WatchBlocks { all_users }) => {
            log::debug!("control: watch-blocks from uid {uid} pid {pid}");
            return watch(ctx, stream, uid, all_users, reply_deadline);
        }
        Ok(request) => {
            log::debug!("control: {} from uid {uid} pid {pid}", request.name());
            ctx.handle(uid, request)
        }
        Err(e) => {
            ctx.counters.malformed.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
    };
    if send_within(&mut stream, &response, Instant::now() + reply_deadline).is_err() {
        ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes a block watch: a place (or a refusal), the answer, then the socket goes to the
/// watchers' writer thread and this handler is free again.
fn watch(
    ctx: &ControlContext,
    mut stream: UnixStream,
    uid: u32,
    all_users: bool,
    reply_deadline: Duration,
) {
    let refuse = |stream: &mut UnixStream, kind: ErrorKind, message: String| {
        if let Some(w) = ctx.watchers() {
            w.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        log::info!("control: watch-blocks from uid {uid} refused: {message}");
        let response: Response = Err(ControlError::new(kind, message));
        let _ = send_within(stream, &response, Instant::now() + reply_deadline);
    };
    let Some(watchers) = ctx.watchers() else {
        return refuse(
            &mut stream,
            ErrorKind::Internal,
            "watch-blocks: santad has no block watchers (see its log)".into(),
        );
    };
    if all_users && uid != 0 {
        ctx.counters.refused.fetch_add(1, Ordering::Relaxed);
        return refuse(
            &mut stream,
            ErrorKind::PermissionDenied,
            "watch-blocks --all-users: permission denied (only root may watch every user's blocks)"
                .into(),
        );
    }
    let place = match watchers.reserve(uid, all_users) {
        Ok(place) => place,
        Err(why) => return refuse(&mut stream, ErrorKind::Busy, format!("watch-blocks: {why}")),
    };
    let response: Response = Ok(Reply::Watching(WatchReply {
        uid: (!all_users).then_some(uid),
        queue_depth: WATCHER_QUEUE_DEPTH as u32,
    }));
    if send_within(&mut stream, &response, Instant::now() + reply_deadline).is_err() {
        ctx.counters.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    watchers.counters.accepted.fetch_add(1, Ordering::Relaxed);
    ctx.counters.replies.fetch_add(1, Ordering::Relaxed);
    place.start(stream);
}
