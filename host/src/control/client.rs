//! The CLI's side of the control socket: one request, one response, blocking.

use std::io::{BufRead, BufReader, Write};
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

/// Sends `request` to the daemon at `path` and returns its response.
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let io_err = |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io_err)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io_err)?;
    let mut line = serde_json::to_vec(request).map_err(ClientError::BadReply)?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(io_err)?;
    serde_json::from_str(&reply).map_err(ClientError::BadReply)
}
