//! The metrics endpoint's HTTP/1.1 server (hyper, which the gRPC client already builds on), on
//! the daemon's tokio runtime: `GET /metrics` answers a scrape; `/` says where the metrics
//! are; any other path is 404 and any other method 405. A scrape gathers its snapshot on the
//! runtime's blocking pool (it takes the workers' and the FDB's locks for a moment), never on
//! a worker and never on the thread that answers signals.
//!
//! A scraper is trusted no more than any client: its request headers must arrive within
//! [`HEADER_TIMEOUT`], and at most [`MAX_CONNECTIONS`] connections are served at once (more
//! are closed at once, and counted in the log at debug level).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

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

/// Connections served at once; Prometheus keeps one per target.
const MAX_CONNECTIONS: usize = 16;

/// Answers a scrape in the format asked for: the exposition, or why it could not be made.
pub(super) type Scrape = Arc<dyn Fn(Format) -> Result<String, String> + Send + Sync>;

/// Serves `listener` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, scrape: Scrape) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics endpoint: too many connections, one closed");
            continue;
        };
        let scrape = Arc::clone(&scrape);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let scrape = Arc::clone(&scrape);
                async move { Ok::<_, Infallible>(respond(&request, scrape).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "metrics endpoint: connection ended");
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
        Ok(Err(why)) => {
            tracing::warn!(error = %why, "metrics endpoint: no exposition");
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
