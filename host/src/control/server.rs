//! The control socket's server: a tokio task per connection, one JSON request per line.
//! Requests are size-limited and a malformed one gets an error reply, never a crash.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::protocol::{MAX_REQUEST, Request, Response};

/// Answers one request. Runs on tokio's blocking pool: it may take the pipeline's lock, or
/// compile a plugin, without stalling the control socket or the aging timer.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Binds the socket at `path` with mode 0600, creating its directory. A stale socket left by a
/// daemon that died is replaced; a live one (another daemon answers) is an error.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by a running daemon", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: UnixListener, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, handler).await {
                        tracing::debug!(error = %e, "control connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, handler: Handler) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_REQUEST + 1).unwrap_or(u64::MAX);
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let too_long = line.len() > MAX_REQUEST;
        let response = if too_long {
            Response::Error(format!("request longer than {MAX_REQUEST} bytes"))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => {
                    let handler = Arc::clone(&handler);
                    tokio::task::spawn_blocking(move || handler(request))
                        .await
                        .unwrap_or_else(|e| Response::Error(format!("the request failed: {e}")))
                }
                Err(e) => Response::Error(format!("bad request: {e}")),
            }
        };
        let mut reply = serde_json::to_vec(&response).map_err(io::Error::other)?;
        reply.push(b'\n');
        write.write_all(&reply).await?;
        if too_long {
            return Ok(()); // the rest of the line cannot be told from a next request
        }
    }
}
