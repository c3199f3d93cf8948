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
//! - **TLS** with `[tls]` (`super::tls`): the handshake must finish within the
//!   header-read timeout; a client speaking plain HTTP gets a plain-HTTP 400 saying to
//!   use `https://`; the certificate files are re-read when they change. Failed
//!   handshakes are counted as `lookout_http_requests_refused_total{reason="tls_handshake"}`
//!   (and `"plain_http_on_tls"`).
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
/// at most `limits.shutdown_timeout`. With `tls`, every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    telemetry: Arc<Telemetry>,
    tls: Option<Arc<super::tls::ReloadingTls>>,
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
            if tls.is_none() {
                let _ = stream.try_write(&over_budget());
            }
            let _ = stream.shutdown().await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone();
        let draining = draining.clone();
        let tls = tls.as_ref().map(|tls| tls.current());
        let telemetry = Arc::clone(&telemetry);
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, service, limits, &draining, peer).await,
                Some(config) => {
                    let handshake = async {
                        if !starts_a_tls_handshake(&mut stream).await {
                            telemetry.requests_refused.add("plain_http_on_tls", 1);
                            return None;
                        }
                        match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                            Ok(stream) => Some(stream),
                            Err(error) => {
                                // an unknown CA, no client certificate under mutual TLS
                                telemetry.requests_refused.add("tls_handshake", 1);
                                tracing::debug!(%peer, %error, "TLS handshake failed");
                                None
                            }
                        }
                    };
                    // the handshake counts against the header-read timeout
                    if let Ok(Some(stream)) =
                        tokio::time::timeout(limits.header_read_timeout, handshake).await
                    {
                        serve_connection(stream, service, limits, &draining, peer).await;
                    }
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

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends or `draining` asks it
/// to finish its request in flight.
async fn serve_connection<S>(
    stream: S,
    router: axum::Router,
    limits: ConnectionLimits,
    draining: &CancellationToken,
    peer: std::net::SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // the peer's address for the handlers (failed-authentication limits, audit
    // trail), as axum's `ConnectInfo` extractor reads it
    let service = TowerToHyperService::new(router.map_request(
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request
        },
    ));
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
}

/// Whether a connection to the TLS listener starts with a TLS record; a client speaking
/// plain HTTP is told to use `https://` (in plain HTTP, the one thing it can read) and
/// closed.
async fn starts_a_tls_handshake(stream: &mut tokio::net::TcpStream) -> bool {
    /// The content type of a TLS handshake record.
    const HANDSHAKE: u8 = 0x16;
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == HANDSHAKE => true,
        Ok(1) => {
            // read the request head first: closing with it unread would reset the
            // connection before the client reads the answer
            let mut head = [0u8; 8192];
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut head)).await;
            let body = r#"{"error":{"type":"security_exception","reason":"this listener speaks HTTPS only ([tls] in lookout.toml); use an https:// URL"},"status":400}"#;
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
            false
        }
        _ => false,
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
