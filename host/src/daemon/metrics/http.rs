//! The metrics endpoint's HTTP/1.1 server (hyper, which the gRPC client already builds on), on
//! the daemon's tokio runtime: `GET /metrics` answers a scrape; `/` says where the metrics
//! are; any other path is 404 and any other method 405. A scrape gathers its snapshot on the
//! runtime's blocking pool (it takes the workers' and the FDB's locks for a moment), never on
//! a worker and never on the thread that answers signals.
//!
//! A scraper is trusted no more than any client: its request headers must arrive within
//! [`HEADER_TIMEOUT`], a connection lives at most [`CONNECTION_LIFETIME`] (one that sends
//! requests and never reads the answers cannot keep its place), and at most
//! [`MAX_CONNECTIONS`] are served at once: one more gets a 503 and is closed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::exposition::Format;

/// How long a client may take to send a request's headers (also how long an idle kept-alive
/// connection stays open).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection is served at most; Prometheus, which keeps one per target, opens
/// another.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// Connections served at once.
const MAX_CONNECTIONS: usize = 16;

/// What a connection past [`MAX_CONNECTIONS`] is told before it is closed.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// How often a failing `accept` is logged at most.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Answers a scrape in the format asked for.
pub(super) type Scrape = Arc<dyn Fn(Format) -> Result<String, std::fmt::Error> + Send + Sync>;

/// Serves `listener` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, scrape: Scrape) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut accept_logged: Option<Instant> = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin, and say so now and then.
                if accept_logged.is_none_or(|at| at.elapsed() >= ACCEPT_LOG_INTERVAL) {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    accept_logged = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // A fresh socket's buffer takes these few bytes; if not, the close says enough.
            let _ = stream.try_write(BUSY);
            tracing::debug!(%peer, "metrics endpoint: too many connections, one refused");
            continue;
        };
        let scrape = Arc::clone(&scrape);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let scrape = Arc::clone(&scrape);
                async move { Ok::<_, Infallible>(respond(&request, scrape).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "metrics endpoint: connection ended");
                }
                Err(_) => {
                    tracing::debug!(%peer, "metrics endpoint: connection closed at its time limit")
                }
            }
            drop(slot);
        });
    }
}

/// The answer to one request.
async fn respond(request: &Request<Incoming>, scrape: Scrape) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match request.uri().path() {
        "/metrics" => {}
        "/" => return plain(StatusCode::OK, "wasm-vtep: the metrics are at /metrics\n"),
        _ => {
            return plain(
                StatusCode::NOT_FOUND,
                "not found: the metrics are at /metrics\n",
            );
        }
    }
    let format = Format::accepted(request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let text = match tokio::task::spawn_blocking(move || scrape(format)).await {
        Ok(Ok(text)) => text,
        Ok(Err(std::fmt::Error)) => {
            tracing::warn!("metrics endpoint: the exposition could not be written");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded\n",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics endpoint: gathering the metrics panicked");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be gathered\n",
            );
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

/// A short plain-text answer.
fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
