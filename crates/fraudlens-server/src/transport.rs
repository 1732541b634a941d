//! The HTTP transport: the accept loop and hyper's HTTP/1 connections, driven
//! here rather than by `axum::serve`, which has no header-read timeout, no
//! body-read timeout and no connection cap. Without them a few thousand idle
//! or half-sent connections hold the process's file descriptors until the
//! probes and scoring requests can no longer be accepted.
//!
//! - **Request heads**: a connection waiting for a request (just accepted, or
//!   idle between keep-alive requests) must deliver a complete request head
//!   within `header_read_timeout`, or hyper closes it. The same timer is the
//!   idle keep-alive timeout: hyper starts it whenever it waits for a head.
//! - **Request bodies**: a body may keep the server waiting for at most
//!   `body_read_timeout` plus one second per `min_body_bytes_per_second` bytes
//!   received. Only the time spent waiting on the client counts, so a slow
//!   handler (an upload scored while it arrives) never times its own body out.
//!   A timed-out request gets 408 and its connection is closed.
//! - **Connections**: at most `max_connections` at once (below the open-file
//!   limit, so the store and the state file can still open files); beyond it a
//!   new connection gets a 503 and is closed at once (over TLS it is only
//!   closed), counted and logged (at most once per [`REFUSAL_LOG_INTERVAL`]).
//!
//! - **Unparsable requests**: hyper's own 400, 414 and 431 get the same
//!   `{code, message}` bodies as every other error (module `parse_errors`).
//! - **TLS** (when configured, module [`crate::tls`]): the handshake runs in
//!   the connection's own task, within `header_read_timeout`, so a client
//!   that stalls it holds one connection slot for that long and never the
//!   accept loop; every response carries HSTS.
//!
//! Shutdown stops accepting, lets idle connections close and in-flight
//! requests finish (hyper's graceful shutdown), and returns when every
//! connection is closed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use metrics::counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::tls::Tls;
use parse_errors::JsonParseErrors;

mod parse_errors;

/// Connections refused at the cap are logged at most this often (with their count).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// File descriptors left to the rest of the process (store, state file, logs)
/// when the connection cap is derived from the open-file limit.
pub const RESERVED_FILE_DESCRIPTORS: u64 = 256;

/// The largest default connection cap, whatever the open-file limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Timeouts and limits of the connections.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Time for a connection waiting for a request (new or idle keep-alive) to send a complete request head.
    pub header_read_timeout: Duration,
    /// Time a request body may keep the server waiting, on top of the allowance per byte received.
    pub body_read_timeout: Duration,
    /// Slowest accepted body rate: each byte received extends the body's allowance by `1 / rate` seconds.
    pub min_body_bytes_per_second: u64,
    /// Most connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// TLS on every connection, if configured.
    pub tls: Option<Arc<Tls>>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            min_body_bytes_per_second: 4_096,
            max_connections: default_max_connections(),
            tls: None,
        }
    }
}

/// The soft open-file limit of this process (`RLIMIT_NOFILE`), if it has one.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// `min(10,000, open-file limit - 256)`, at least 1: the cap that keeps the
/// process below its open-file limit whatever the clients do.
pub fn default_max_connections() -> usize {
    let from_limit = open_file_limit()
        .map(|limit| limit.saturating_sub(RESERVED_FILE_DESCRIPTORS))
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_MAX_CONNECTIONS);
    from_limit.clamp(1, DEFAULT_MAX_CONNECTIONS)
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for
/// the open connections to finish their requests and close.
pub async fn serve(listener: TcpListener, router: Router, config: TransportConfig, shutdown: impl Future<Output = ()>) {
    let connection_slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let body_allowance = BodyAllowance {
        grace: config.body_read_timeout,
        min_bytes_per_second: config.min_body_bytes_per_second.max(1),
    };
    let mut refusals = RefusalLog::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE/ENFILE and friends: the connection stays in the
                    // backlog; pausing keeps this loop from spinning on it
                    counter!("http_accept_errors_total").increment(1);
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = connection_slots.clone().try_acquire_owned() else {
            refusals.refuse(stream, config.max_connections, config.tls.is_none());
            continue;
        };
        counter!("http_connections_accepted_total").increment(1);
        // responses are written whole; waiting for more bytes only adds latency
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let hsts = config.tls.as_ref().and_then(|tls| tls.hsts().cloned());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(router.clone(), body_allowance, hsts.clone(), peer, request)
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = config.tls.clone();
        let handshake_timeout = config.header_read_timeout;
        tokio::spawn(async move {
            let io: Option<Box<dyn Io>> = match tls {
                None => Some(Box::new(stream)),
                Some(tls) => match tokio::time::timeout(handshake_timeout, tls.acceptor().accept(stream)).await {
                    Ok(Ok(stream)) => Some(Box::new(stream)),
                    Ok(Err(error)) => {
                        counter!("tls_handshake_failures_total").increment(1);
                        tracing::debug!(%error, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        counter!("http_connections_timed_out_total", "phase" => "handshake").increment(1);
                        tracing::debug!("connection closed: no TLS handshake in time");
                        None
                    }
                },
            };
            if let Some(io) = io {
                let connection =
                    watcher.watch(builder.serve_connection(TokioIo::new(JsonParseErrors::new(io)), service));
                if let Err(error) = connection.await {
                    if error.is_timeout() {
                        counter!("http_connections_timed_out_total", "phase" => "header").increment(1);
                        tracing::debug!("connection closed: no complete request head in time");
                    } else {
                        tracing::debug!(%error, "connection closed with an error");
                    }
                }
            }
            counter!("http_connections_closed_total").increment(1);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection's byte stream: plain TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One request: its body under the allowance, then the router.
async fn handle(
    router: Router,
    body_allowance: BodyAllowance,
    hsts: Option<HeaderValue>,
    peer: std::net::SocketAddr,
    request: Request<Incoming>,
) -> Result<Response, Infallible> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let mut request = request.map(|incoming| {
        Body::new(AllowanceBody {
            inner: incoming,
            allowance: body_allowance,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            timed_out: timed_out.clone(),
        })
    });
    request.extensions_mut().insert(BodyTimeout(timed_out.clone()));
    // the peer address, as axum's `ConnectInfo`: refused keys are logged with it
    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    let mut response = router.oneshot(request).await?;
    if let Some(hsts) = hsts {
        response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    if !timed_out.load(Ordering::Acquire) {
        return Ok(response);
    }
    counter!("http_connections_timed_out_total", "phase" => "body").increment(1);
    tracing::debug!("request body did not arrive in time");
    // a handler that reports what it did before the body stalled (an upload)
    // answers 408 itself; any other answer was built on a body error
    let mut response = if response.status() == StatusCode::REQUEST_TIMEOUT {
        response
    } else {
        body_timeout_error().into_response()
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Ok(response)
}

/// The 408 of a request whose body did not arrive in time.
pub fn body_timeout_error() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body did not arrive in time",
    )
}

/// Request extension: set once the request's body has timed out, so a
/// handler that streams its body can tell a stalled client from a broken one.
#[derive(Clone, Debug)]
pub struct BodyTimeout(Arc<AtomicBool>);

impl BodyTimeout {
    /// Whether the body timed out.
    pub fn expired(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How long a body may keep the server waiting.
#[derive(Clone, Copy, Debug)]
struct BodyAllowance {
    grace: Duration,
    min_bytes_per_second: u64,
}

impl BodyAllowance {
    fn for_received(self, received: u64) -> Duration {
        self.grace + Duration::from_secs_f64(received as f64 / self.min_bytes_per_second as f64)
    }
}

/// A request body that fails once the time spent waiting for the client
/// exceeds its allowance (which grows with every byte received).
struct AllowanceBody {
    inner: Incoming,
    allowance: BodyAllowance,
    /// Bytes received so far.
    received: u64,
    /// Time spent waiting for the client, up to the last frame.
    waited: Duration,
    /// When the current wait began (the first `Pending` since the last frame).
    waiting_since: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

/// The error of a body that did not arrive in time.
#[derive(Debug)]
struct BodyReadTimeout;

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyReadTimeout {}

impl http_body::Body for AllowanceBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.timed_out.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(Box::new(BodyReadTimeout))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let now = Instant::now();
                let waiting_since = *this.waiting_since.get_or_insert(now);
                let left = this.allowance.for_received(this.received).saturating_sub(this.waited);
                let deadline = waiting_since + left;
                if now >= deadline {
                    this.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyReadTimeout))));
                }
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.timed_out.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(BodyReadTimeout))));
                }
                Poll::Pending
            }
            ready => {
                if let Some(waiting_since) = this.waiting_since.take() {
                    this.waited += waiting_since.elapsed();
                }
                if let Poll::Ready(Some(Ok(frame))) = &ready
                    && let Some(data) = frame.data_ref()
                {
                    this.received += data.len() as u64;
                }
                ready.map_err(Into::into)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Connections refused at the cap: counted each, logged at most once per
/// [`REFUSAL_LOG_INTERVAL`] (a flood would otherwise flood the log too).
#[derive(Default)]
struct RefusalLog {
    last_logged: Option<Instant>,
    since_logged: u64,
}

impl RefusalLog {
    /// Counts and closes `stream`; on plain HTTP (`plain`) it gets the 503
    /// first (over TLS, plain bytes would only be a protocol error: it is
    /// closed before the handshake).
    fn refuse(&mut self, stream: TcpStream, max_connections: usize, plain: bool) {
        counter!("http_connections_refused_total").increment(1);
        // best effort: a fresh socket's send buffer is empty, so this one
        // non-blocking write goes out whole or not at all
        if plain {
            let _ = stream.try_write(REFUSAL_RESPONSE.as_bytes());
        }
        drop(stream);
        self.since_logged += 1;
        let due = self
            .last_logged
            .is_none_or(|last| last.elapsed() >= REFUSAL_LOG_INTERVAL);
        if due {
            tracing::warn!(
                max_connections,
                refused = self.since_logged,
                "connection limit reached; refusing new connections"
            );
            self.last_logged = Some(Instant::now());
            self.since_logged = 0;
        }
    }
}

const REFUSAL_RESPONSE: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: application/json\r\n",
    "retry-after: 1\r\n",
    "connection: close\r\n",
    "content-length: 68\r\n",
    "\r\n",
    r#"{"code":"unavailable","message":"too many connections; retry later"}"#,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_states_its_length_exactly() {
        let (head, body) = REFUSAL_RESPONSE.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(body["code"].is_string() && body["message"].is_string());
    }

    #[test]
    fn the_body_allowance_grows_with_the_bytes_received() {
        let allowance = BodyAllowance {
            grace: Duration::from_secs(30),
            min_bytes_per_second: 4_096,
        };
        assert_eq!(allowance.for_received(0), Duration::from_secs(30));
        assert_eq!(allowance.for_received(4_096 * 10), Duration::from_secs(40));
    }

    #[test]
    fn the_default_cap_stays_below_the_open_file_limit() {
        let cap = default_max_connections() as u64;
        assert!((1..=DEFAULT_MAX_CONNECTIONS as u64).contains(&cap));
        if let Some(limit) = open_file_limit().filter(|limit| *limit > RESERVED_FILE_DESCRIPTORS) {
            assert!(cap <= limit - RESERVED_FILE_DESCRIPTORS, "{cap} vs {limit}");
        }
    }
}
