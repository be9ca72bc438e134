//! Framing: a 4-byte big-endian length, then that many bytes of JSON, read against a cap.

use super::*;

/// Why a message could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection before a whole message arrived.
    Truncated {
        /// Bytes of the message (header included) that did arrive.
        received: usize,
    },
    /// The announced length is over the cap.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// Nothing arrived for [`IDLE_TIMEOUT`], or the whole message took longer than allowed.
    TimedOut,
    /// The reader was asked to stop (santad is shutting down).
    Stopped,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { received } => {
                write!(f, "connection closed mid-message after {received} bytes")
            }
            Self::TooLarge { len, max } => {
                write!(f, "message of {len} bytes is over the {max}-byte limit")
            }
            Self::TimedOut => f.write_str("timed out"),
            Self::Stopped => f.write_str("santad is shutting down"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Bytes of a message's header: the body's length as a big-endian `u32`.
pub const FRAME_HEADER_BYTES: usize = 4;

/// The least a body buffer grows by: a 4 KiB path plus hashes fits in one step, and a client
/// announcing a large body and sending little makes santad hold at most this much more than it
/// sent (never more than it announced).
pub const BODY_GROWTH_MIN_BYTES: usize = 16 << 10;

/// Writes one message (length prefix and body) in a single buffer.
pub fn write_frame(stream: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
    stream.write_all(&buf)?;
    stream.flush()
}

/// One message being decoded from bytes as they arrive: no I/O, so every reader (the socket
/// reader [`read_frame`], [`decode_frame`], the fuzz target) runs the same code.
///
/// Bounds: the announced length is checked against `max` as soon as the header is whole, before
/// any body byte is kept; the body buffer is never larger than the announced length, and never
/// larger than twice the body bytes received or [`BODY_GROWTH_MIN_BYTES`], whichever is more
/// ([`FrameDecoder::buffer_bytes`]).
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    header: [u8; FRAME_HEADER_BYTES],
    header_got: usize,
    body_len: Option<usize>,
    body: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder for one message whose body may be at most `max` bytes.
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            max,
            header: [0; FRAME_HEADER_BYTES],
            header_got: 0,
            body_len: None,
            body: Vec::new(),
        }
    }

    /// Bytes the message still needs: the rest of the header, then the rest of the body; 0 once
    /// complete. A reader asks for at most this many, so it never takes bytes past the message.
    pub fn wanted(&self) -> usize {
        match self.body_len {
            None => FRAME_HEADER_BYTES - self.header_got,
            Some(len) => len - self.body.len(),
        }
    }

    /// Whether the whole message has arrived.
    pub fn is_complete(&self) -> bool {
        self.body_len.is_some_and(|len| self.body.len() == len)
    }

    /// Bytes of the message (header included) taken so far.
    pub fn received(&self) -> usize {
        self.header_got + self.body.len()
    }

    /// Bytes the decoder holds allocated for the body.
    pub fn buffer_bytes(&self) -> usize {
        self.body.capacity()
    }

    /// Takes bytes from the front of `input`, at most [`FrameDecoder::wanted`]; returns how many
    /// it took. Fails, and keeps failing, once the header announces more than `max`.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, FrameError> {
        let mut used = 0;
        let len = match self.body_len {
            Some(len) => len,
            None => {
                let n = (FRAME_HEADER_BYTES - self.header_got).min(input.len());
                self.header[self.header_got..self.header_got + n].copy_from_slice(&input[..n]);
                self.header_got += n;
                used = n;
                if self.header_got < FRAME_HEADER_BYTES {
                    return Ok(used);
                }
                let len = u32::from_be_bytes(self.header);
                if u64::from(len) > self.max as u64 {
                    return Err(FrameError::TooLarge {
                        len: len.into(),
                        max: self.max,
                    });
                }
                // At most `max`, a usize: the conversion cannot truncate.
                let len = len as usize;
                self.body_len = Some(len);
                len
            }
        };
        let rest = &input[used..];
        let n = (len - self.body.len()).min(rest.len());
        if n > 0 {
            let need = self.body.len() + n;
            if need > self.body.capacity() {
                let target = need
                    .max(self.body.capacity().saturating_mul(2))
                    .max(BODY_GROWTH_MIN_BYTES)
                    .min(len);
                self.body.reserve_exact(target - self.body.len());
            }
            self.body.extend_from_slice(&rest[..n]);
        }
        Ok(used + n)
    }

    /// The body, if the whole message arrived.
    pub fn finish(self) -> Result<Vec<u8>, FrameError> {
        if self.is_complete() {
            Ok(self.body)
        } else {
            Err(FrameError::Truncated {
                received: self.received(),
            })
        }
    }
}

/// Decodes the message at the front of `bytes` (body at most `max` bytes): its body, and how
/// many bytes of `bytes` it took.
pub fn decode_frame(bytes: &[u8], max: usize) -> Result<(Vec<u8>, usize), FrameError> {
    let mut decoder = FrameDecoder::new(max);
    let used = decoder.feed(bytes)?;
    Ok((decoder.finish()?, used))
}

/// Parses a message body as a [`Request`]. Nesting is bounded by `serde_json`'s recursion limit
/// (128 levels), so a deeply nested body is an error, not a deep recursion; strings must be UTF-8.
pub fn parse_request(body: &[u8]) -> Result<Request, ControlError> {
    serde_json::from_slice::<Request>(body).map_err(|e| {
        ControlError::new(
            ErrorKind::Malformed,
            format!("not a request: {}", shorten(&e.to_string())),
        )
    })
}

/// Why [`decode_request`] found no request.
#[derive(Debug)]
pub enum DecodeError {
    /// The bytes are not one whole message within the cap.
    Frame(FrameError),
    /// The message is not a request.
    Request(ControlError),
}

/// What santad makes of the bytes a peer sent, without the socket: one message of at most `max`
/// bytes, parsed as a request (bytes after the message are not read: one request per connection).
pub fn decode_request(bytes: &[u8], max: usize) -> Result<Request, DecodeError> {
    let (body, _) = decode_frame(bytes, max).map_err(DecodeError::Frame)?;
    parse_request(&body).map_err(DecodeError::Request)
}

/// Reads one message of at most `max` bytes from `stream`, giving up when nothing arrives for
/// `idle`, when `deadline` passes, or when `stop()` says so. The body buffer grows with what
/// arrives, never with what the header announces ([`FrameDecoder`]).
///
/// A peer that sends a byte just often enough to beat `idle` is still cut off at `deadline`
/// (checked after every read; each wait is at most `READ_SLICE` and ends by the deadline).
pub fn read_frame(
    stream: &mut UnixStream,
    max: usize,
    idle: Duration,
    deadline: Instant,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<u8>, FrameError> {
    read_rest(stream, FrameDecoder::new(max), idle, deadline, stop)
}

/// The rest of a message `decoder` has begun (or not): [`read_frame`]'s loop.
fn read_rest(
    stream: &mut UnixStream,
    mut decoder: FrameDecoder,
    idle: Duration,
    deadline: Instant,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<u8>, FrameError> {
    let mut last_progress = Instant::now();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if decoder.is_complete() {
            return decoder.finish();
        }
        if stop() {
            return Err(FrameError::Stopped);
        }
        let now = Instant::now();
        if now >= deadline || now.duration_since(last_progress) >= idle {
            return Err(FrameError::TimedOut);
        }
        let slice = READ_SLICE
            .min(deadline.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(slice))
            .map_err(FrameError::Io)?;
        let want = decoder.wanted().min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => {
                return Err(FrameError::Truncated {
                    received: decoder.received(),
                });
            }
            Ok(n) => {
                last_progress = Instant::now();
                decoder.feed(&chunk[..n])?;
            }
            Err(e) if is_retryable(&e) => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
}

/// Reads one message of at most `max` bytes from `stream` that may be a long time coming (a
/// stream of notices, quiet for days): waits for its first byte for as long as it takes, checking
/// `stop()` every `READ_SLICE`, then reads the rest within `idle` between bytes and `idle` times
/// [`STREAM_MESSAGE_IDLE_PERIODS`] in all, as [`read_frame`] does.
pub fn read_frame_waiting(
    stream: &mut UnixStream,
    max: usize,
    idle: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<u8>, FrameError> {
    let mut decoder = FrameDecoder::new(max);
    let mut first = [0u8; 1];
    stream
        .set_read_timeout(Some(READ_SLICE))
        .map_err(FrameError::Io)?;
    loop {
        if stop() {
            return Err(FrameError::Stopped);
        }
        match stream.read(&mut first) {
            Ok(0) => return Err(FrameError::Truncated { received: 0 }),
            Ok(_) => break,
            Err(e) if is_retryable(&e) => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    decoder.feed(&first)?;
    let deadline = Instant::now() + idle * STREAM_MESSAGE_IDLE_PERIODS;
    read_rest(stream, decoder, idle, deadline, stop)
}

/// A streamed message, once begun, must arrive whole within this many idle periods.
pub const STREAM_MESSAGE_IDLE_PERIODS: u32 = 4;

/// True for the errors of a socket read or write under a timeout that only say "not yet": no
/// data, this one call's timeout, a signal. The caller tries again until its own deadline.
pub fn is_retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
