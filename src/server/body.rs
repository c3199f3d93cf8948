//! Request bodies: read as a stream of chunks kept as they arrive (lines are cut out of
//! them without copying, see [`ReadBody::lines`]), never more than `max_body_bytes` (413 as soon as the
//! declared or received size passes it), charged against the server-wide in-flight budget
//! (429 when it is spent), and gunzipped with the decompressed size bounded too, so a
//! zip bomb or a burst of large bodies cannot exhaust memory.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ApiError, ErrorCode};
use crate::telemetry::Telemetry;

/// A body in memory, as the chunks it arrived in, with the in-flight budget it holds
/// until dropped.
pub struct ReadBody {
    chunks: Vec<Bytes>,
    _permits: Vec<OwnedSemaphorePermit>,
}

impl ReadBody {
    fn concat(chunks: &[Bytes]) -> Bytes {
        match chunks {
            [] => Bytes::new(),
            [only] => only.clone(),
            many => Bytes::from(many.concat()),
        }
    }

    /// The body's size in bytes (decompressed).
    pub fn byte_len(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.len() as u64).sum()
    }

    /// The whole body in one piece (copied only when it arrived in several chunks).
    pub fn contiguous(&self) -> Bytes {
        ReadBody::concat(&self.chunks)
    }

    /// The body's lines (LF or CRLF, blank lines left out), each a zero-copy slice of the
    /// chunk holding it; only a line that spans chunks is copied.
    pub fn lines(&self) -> Vec<Bytes> {
        // sized once for lines of ~100 bytes or more instead of grown (each growth of a
        // large vector is fresh memory the kernel has to zero)
        let bytes: usize = self.chunks.iter().map(Bytes::len).sum();
        let mut lines = Vec::with_capacity(bytes / 100 + 1);
        let mut carry: Vec<u8> = Vec::new();
        let push = |line: Bytes, lines: &mut Vec<Bytes>| {
            let line = match line.strip_suffix(b"\r") {
                Some(stripped) => line.slice(..stripped.len()),
                None => line,
            };
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        };
        for chunk in &self.chunks {
            let mut start = 0;
            while let Some(newline) = memchr_newline(&chunk[start..]) {
                let end = start + newline;
                if carry.is_empty() {
                    push(chunk.slice(start..end), &mut lines);
                } else {
                    carry.extend_from_slice(&chunk[start..end]);
                    push(Bytes::from(std::mem::take(&mut carry)), &mut lines);
                }
                start = end + 1;
            }
            carry.extend_from_slice(&chunk[start..]);
        }
        if !carry.is_empty() {
            push(Bytes::from(carry), &mut lines);
        }
        lines
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|byte| *byte == b'\n')
}

fn too_large(limit: u64, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        "content_too_long_exception",
        format!(
            "{what} is over the limit of {limit} bytes (ingest.max_body_bytes); send smaller batches"
        ),
    )
}

fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::TooManyRequests,
        "es_rejected_execution_exception",
        "too many request bytes in flight (ingest.max_in_flight_bytes); retry with backoff",
    )
}

struct Budget<'a> {
    semaphore: &'a Arc<Semaphore>,
    permits: Vec<OwnedSemaphorePermit>,
    charged_kib: u64,
    charged_bytes: u64,
}

impl Budget<'_> {
    /// Charges `bytes` more; fails when the server-wide budget is spent.
    fn charge(&mut self, bytes: usize) -> Result<(), ApiError> {
        self.charged_bytes += bytes as u64;
        let needed_kib = self.charged_bytes.div_ceil(1024);
        if needed_kib > self.charged_kib {
            let more = (needed_kib - self.charged_kib) as u32;
            let permit = self
                .semaphore
                .clone()
                .try_acquire_many_owned(more)
                .map_err(|_| busy())?;
            self.permits.push(permit);
            self.charged_kib = needed_kib;
        }
        Ok(())
    }
}

/// A `Write` sink that refuses to grow past `limit` and charges the budget as it grows.
struct BoundedSink<'a, 'b> {
    out: Vec<u8>,
    limit: u64,
    budget: &'a mut Budget<'b>,
    error: Option<ApiError>,
}

impl Write for BoundedSink<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.out.len() as u64 + data.len() as u64 > self.limit {
            self.error = Some(too_large(self.limit, "the decompressed body"));
            return Err(std::io::Error::other("decompressed body too large"));
        }
        if let Err(error) = self.budget.charge(data.len()) {
            self.error = Some(error);
            return Err(std::io::Error::other("in-flight budget spent"));
        }
        self.out.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `body` under the limits.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    max_body_bytes: u64,
    in_flight: &Arc<Semaphore>,
    telemetry: &Telemetry,
) -> Result<ReadBody, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body_bytes) {
        telemetry.requests_refused.add("body_too_large", 1);
        return Err(too_large(max_body_bytes, "the request body"));
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
    {
        None | Some("identity") => false,
        Some(encoding) if encoding.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "illegal_argument_exception",
                format!("unsupported Content-Encoding `{other}`; use gzip or none"),
            ));
        }
    };
    let mut budget = Budget {
        semaphore: in_flight,
        permits: Vec::new(),
        charged_kib: 0,
        charged_bytes: 0,
    };
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            if is_timeout(&error) {
                telemetry.requests_refused.add("body_timeout", 1);
                return ApiError::new(
                    ErrorCode::RequestTimeout,
                    "request_timeout_exception",
                    "the request body stopped arriving (http.body_read_timeout); send it without pauses",
                );
            }
            ApiError::new(
                ErrorCode::BadRequest,
                "illegal_argument_exception",
                format!("could not read the request body: {error}"),
            )
        })?;
        if received + chunk.len() as u64 > max_body_bytes {
            telemetry.requests_refused.add("body_too_large", 1);
            return Err(too_large(max_body_bytes, "the request body"));
        }
        if let Err(error) = budget.charge(chunk.len()) {
            telemetry.requests_refused.add("in_flight", 1);
            return Err(error);
        }
        received += chunk.len() as u64;
        chunks.push(chunk);
    }
    if !gzip {
        return Ok(ReadBody {
            chunks,
            _permits: budget.permits,
        });
    }
    let raw = ReadBody::concat(&chunks);
    let (result, sink_error, out) = {
        let mut sink = BoundedSink {
            out: Vec::with_capacity(raw.len().saturating_mul(4).min(max_body_bytes as usize)),
            limit: max_body_bytes,
            budget: &mut budget,
            error: None,
        };
        let result = {
            let mut decoder = flate2::write::MultiGzDecoder::new(&mut sink);
            decoder.write_all(&raw).and_then(|()| decoder.try_finish())
        };
        let error = sink.error.take();
        (result, error, std::mem::take(&mut sink.out))
    };
    if let Some(error) = sink_error {
        telemetry.requests_refused.add(
            if error.code == ErrorCode::PayloadTooLarge {
                "body_too_large"
            } else {
                "in_flight"
            },
            1,
        );
        return Err(error);
    }
    result.map_err(|error| {
        ApiError::new(
            ErrorCode::BadRequest,
            "illegal_argument_exception",
            format!("the gzip body is corrupt: {error}"),
        )
    })?;
    drop(raw);
    Ok(ReadBody {
        chunks: vec![Bytes::from(out)],
        _permits: budget.permits,
    })
}

/// Whether a body error is the body's inactivity timeout (`server::router` wraps every
/// request body in an [`InactivityTimeout`]).
fn is_timeout(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The client sent nothing of its request body for `http.body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing of the request body for the body read timeout")]
pub struct BodyTimedOut;

/// A request body that fails with [`BodyTimedOut`] when the *client* sends nothing for
/// `timeout`: the clock runs only while the server waits for the next bytes.
///
/// Hand-written: tower-http's `TimeoutBody` starts its clock at the first read and checks
/// it before reading, so the time the server spends elsewhere between reads (waiting for
/// the in-flight budget or for the write-ahead log under load) counts too, and it fails
/// bodies whose bytes had long arrived.
pub struct InactivityTimeout {
    inner: Body,
    timeout: std::time::Duration,
    waiting: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl InactivityTimeout {
    pub fn new(inner: Body, timeout: std::time::Duration) -> InactivityTimeout {
        InactivityTimeout {
            inner,
            timeout,
            waiting: None,
        }
    }
}

impl http_body::Body for InactivityTimeout {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(context) {
            Poll::Ready(frame) => {
                this.waiting = None;
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let waiting = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match waiting.as_mut().poll(context) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_the_clients_silence_counts_against_the_body_timeout() {
        let timeout = std::time::Duration::from_millis(100);
        // the bytes are there; the server is busy elsewhere for longer than the timeout
        let sent = Body::new(InactivityTimeout::new(Body::from("all of it"), timeout));
        tokio::time::sleep(timeout * 5).await;
        let bytes = axum::body::to_bytes(sent, 1024).await.expect("no timeout");
        assert_eq!(bytes, "all of it");
        // a client that sends one chunk and then nothing
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        sender.send(Ok(Bytes::from("part"))).await.expect("send");
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        let stalled = Body::new(InactivityTimeout::new(Body::from_stream(stream), timeout));
        let mut chunks = stalled.into_data_stream();
        let first = chunks.next().await.expect("a chunk").expect("the chunk");
        assert_eq!(first, "part");
        let started = tokio::time::Instant::now();
        let error = chunks
            .next()
            .await
            .expect("an outcome")
            .expect_err("timed out");
        assert!(is_timeout(&error), "{error}");
        assert_eq!(started.elapsed(), timeout);
        drop(sender);
    }

    #[test]
    fn lines_are_cut_across_chunk_boundaries_without_losing_bytes() {
        let text = b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}";
        for split in 0..text.len() {
            for second in split..text.len() {
                let chunks = vec![
                    Bytes::copy_from_slice(&text[..split]),
                    Bytes::copy_from_slice(&text[split..second]),
                    Bytes::copy_from_slice(&text[second..]),
                ];
                let body = ReadBody {
                    chunks,
                    _permits: Vec::new(),
                };
                let lines: Vec<Bytes> = body.lines();
                assert_eq!(
                    lines,
                    vec![&b"{\"a\":1}"[..], &b"{\"b\":2}"[..], &b"{\"c\":3}"[..]],
                    "split at {split}/{second}"
                );
                assert_eq!(body.contiguous(), &text[..]);
            }
        }
    }
}
