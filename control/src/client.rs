//! The client half: one request per connection, with a deadline.

use super::*;

/// Why santactl got no answer.
#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be reached (santad not running, wrong path, no permission).
    Connect {
        /// The socket path.
        path: std::path::PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The request could not be sent.
    Send(io::Error),
    /// The answer could not be read.
    Receive(FrameError),
    /// The answer is not valid JSON of the expected shape.
    BadReply(String),
    /// santad refused the request (its reason).
    Refused(ControlError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { path, source } => {
                write!(f, "cannot reach santad at {}: {source}", path.display())
            }
            Self::Send(e) => write!(f, "sending to santad: {e}"),
            Self::Receive(e) => write!(f, "reading santad's answer: {e}"),
            Self::BadReply(e) => write!(f, "santad's answer is not understood: {e}"),
            Self::Refused(e) => write!(f, "santad refused: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The bytes santactl sends for `request`: one message, header and JSON body (what
/// [`decode_request`] reads back).
pub fn encode_request(request: &Request) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(request).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message over 4 GiB"))?;
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    Ok(buf)
}

/// Sends one request to the santad listening at `socket` and waits up to `timeout` for its answer.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let (_, response) = exchange(socket, request, RESPONSE_BYTES_MAX, timeout)?;
    Ok(response)
}

/// Connects, sends `request` and reads santad's first answer (at most `max` bytes), each step
/// within `timeout`; the stream stays open for what may follow.
fn exchange(
    socket: &Path,
    request: &Request,
    max: usize,
    timeout: Duration,
) -> Result<(UnixStream, Response), ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_owned(),
        source,
    })?;
    let message = encode_request(request).map_err(ClientError::Send)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(ClientError::Send)?;
    stream
        .write_all(&message)
        .and_then(|()| stream.flush())
        .map_err(ClientError::Send)?;
    let body = read_frame(&mut stream, max, timeout, Instant::now() + timeout, &|| {
        false
    })
    .map_err(ClientError::Receive)?;
    let response =
        serde_json::from_slice(&body).map_err(|e| ClientError::BadReply(e.to_string()))?;
    Ok((stream, response))
}

/// [`call`] with every failure as text: santad's refusal (its message) or no answer.
pub fn ask(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, String> {
    match call(socket, request, timeout) {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}

/// A stream of block notices from santad ([`Request::WatchBlocks`]), opened by [`watch_blocks`].
#[derive(Debug)]
pub struct WatchStream {
    stream: UnixStream,
    /// What santad said when it took the watch.
    pub reply: WatchReply,
}

/// Asks the santad at `socket` for block notices (the peer's own, or every user's with
/// `all_users`, root only) and waits up to `timeout` for its answer.
pub fn watch_blocks(
    socket: &Path,
    all_users: bool,
    timeout: Duration,
) -> Result<WatchStream, ClientError> {
    let request = Request::WatchBlocks { all_users };
    let (stream, response) = exchange(socket, &request, BLOCK_EVENT_BYTES_MAX, timeout)?;
    match response {
        Ok(Reply::Watching(reply)) => Ok(WatchStream { stream, reply }),
        Ok(other) => Err(ClientError::BadReply(format!(
            "expected a watch reply, got {other:?}"
        ))),
        Err(e) => Err(ClientError::Refused(e)),
    }
}

impl WatchStream {
    /// The next block notice, waiting as long as it takes (checking `stop()` a few times a
    /// second). An error ends the stream: santad went away, sent something that is not a
    /// notice, or `stop()` said so ([`FrameError::Stopped`]).
    pub fn next_event(&mut self, stop: &dyn Fn() -> bool) -> Result<BlockEvent, ClientError> {
        let body = read_frame_waiting(&mut self.stream, BLOCK_EVENT_BYTES_MAX, IDLE_TIMEOUT, stop)
            .map_err(ClientError::Receive)?;
        serde_json::from_slice(&body).map_err(|e| ClientError::BadReply(shorten(&e.to_string())))
    }
}
