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
    let reply = read_frame(
        &mut stream,
        RESPONSE_BYTES_MAX,
        timeout,
        Instant::now() + timeout,
        &|| false,
    )
    .map_err(ClientError::Receive)?;
    serde_json::from_slice(&reply).map_err(|e| ClientError::BadReply(e.to_string()))
}

/// [`call`] with every failure as text: santad's refusal (its message) or no answer.
pub fn ask(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, String> {
    match call(socket, request, timeout) {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(e.message),
        Err(e) => Err(e.to_string()),
    }
}
