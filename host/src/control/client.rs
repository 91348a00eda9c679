//! The CLI's side of the control socket: one request, one response, blocking.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Request, Response};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there, or the connection broke.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket's path.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The daemon answered something that is not a response.
    #[error("unreadable reply from the daemon: {0}")]
    BadReply(serde_json::Error),
}

/// Writes all of `bytes` with `MSG_NOSIGNAL`: a daemon that closes the connection early
/// (a request past its size limit) is an error to report, not a SIGPIPE that kills the CLI
/// silently (the CLI leaves SIGPIPE at its default, so that `vtep stats | head` ends quietly).
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    while !bytes.is_empty() {
        match socket.send_with_flags(bytes, libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `request` to the daemon at `path` and returns its response.
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let io_err = |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(io_err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io_err)?;
    let mut line = serde_json::to_vec(request).map_err(ClientError::BadReply)?;
    line.push(b'\n');
    send_all(&stream, &line).map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(io_err)?;
    serde_json::from_str(&reply).map_err(ClientError::BadReply)
}
