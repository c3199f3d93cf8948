//! The accept loop: HTTP/1.1 connections served by hyper with the limits axum's `serve`
//! does not have.
//!
//! - **A connection budget.** At most [`ConnectionLimits::max_connections`] are open; one
//!   more is answered `503` and closed at once (counted as
//!   `lookout_http_requests_refused_total{reason="too_many_connections"}`), so sockets
//!   can never take the file descriptors Lookout's own files need (write-ahead log,
//!   partitions, state). [`raise_open_file_limit`] lifts the soft limit to the hard one at
//!   start and says what is left for connections after a reserve for files.
//! - **A header-read timeout.** hyper's: a connection must send a whole request head
//!   within the timeout of becoming ready for one; so a client sending a header byte a
//!   second, or a keep-alive connection idle that long, is closed. (Bodies have their own
//!   inactivity timeout in `server::body`.)
//! - **Shutdown with a deadline.** When `shutdown` completes, accepting stops and every
//!   connection is asked to finish its request in flight and close; those still open
//!   after the grace period are cut. The caller commits what was acknowledged afterwards.
//!
//! - **Raw `<`, `>`, `"` in request targets**, as curl sends `?q=latency:>500`, are
//!   percent-encoded before hyper parses them ([`super::request_target`]), so they are
//!   accepted as Elasticsearch accepts them.
//!
//! axum's `serve` is kept for nothing: it has no timer (so no header timeout), no limit
//! and waits for the slowest client forever on shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::telemetry::Telemetry;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// The answer to a connection over the budget: written once without waiting, then the
/// socket is closed.
fn over_budget() -> Vec<u8> {
    let body = r#"{"error":{"type":"too_many_connections","reason":"the server has its maximum of open connections (http.max_connections); retry later"},"status":503}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `shutdown` completes, then drains connections for
/// at most `limits.shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    telemetry: Arc<Telemetry>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let draining = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (mut stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: wait rather than spin; the connection budget
                    // should keep this from happening at all
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            telemetry.requests_refused.add("too_many_connections", 1);
            let _ = stream.try_write(&over_budget());
            let _ = stream.shutdown().await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        // the peer's address for the handlers (failed-authentication limits, audit
        // trail), as axum's `ConnectInfo` extractor reads it
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let draining = draining.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let stream = super::request_target::LenientTarget::new(stream);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                }
                () = draining.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close();
    draining.cancel();
    if tokio::time::timeout(limits.shutdown_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            timeout = ?limits.shutdown_timeout,
            "connections still open after the shutdown timeout are cut"
        );
    }
}

/// File descriptors kept for Lookout's own files whatever the connections take: the
/// write-ahead logs, partitions (tantivy keeps a few files per segment open), state,
/// and the clients Lookout opens (notifiers, scrapes, the in-process agent).
pub const RESERVED_FILES: u64 = 1024;

/// Raises the soft open-file limit to the hard limit (allowed without privileges) and
/// returns how many connections fit beside [`RESERVED_FILES`] (at least 8, so a
/// tiny limit still serves).
pub fn raise_open_file_limit(wanted_connections: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current;
    if let Some(hard) = limit.maximum
        && soft.is_none_or(|soft| soft < hard)
    {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = Some(hard),
            Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
        }
    }
    let Some(soft) = soft else {
        return wanted_connections;
    };
    let fit = soft.saturating_sub(RESERVED_FILES).max(soft / 2).max(8);
    let connections = wanted_connections.min(usize::try_from(fit).unwrap_or(usize::MAX));
    if connections < wanted_connections {
        tracing::warn!(
            open_file_limit = soft,
            max_connections = connections,
            "the open-file limit leaves room for fewer connections than http.max_connections; raise `ulimit -n` (LimitNOFILE= under systemd) for more"
        );
    }
    connections
}
