//! Request bodies: read as a stream of chunks ([`BodyStream`]), never more than
//! `max_body_bytes` (413 as soon as the declared or received size passes it), gunzipped
//! as they arrive with the decompressed size bounded too, and charged against the
//! server-wide in-flight budget ([`InFlight`], 429 when it is spent), so a zip bomb or a
//! burst of large bodies cannot exhaust memory.
//!
//! Most bodies are read whole ([`read`], kept as the chunks they arrived in; lines are cut
//! out of them without copying, see [`ReadBody::lines`]); `_bulk` reads its body piece by
//! piece and hands complete lines on as they arrive ([`Lines`]).

use std::io::Write;
use std::sync::Arc;

use axum::body::{Body, BodyDataStream};
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
    _permits: Charge,
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
        let mut cutter = Lines::default();
        for chunk in &self.chunks {
            cutter.push(chunk.clone(), |line| lines.push(line));
        }
        cutter.finish(|line| lines.push(line));
        lines
    }
}

/// Cuts the lines (LF or CRLF, blank lines left out) out of chunks as they arrive: each
/// line is a zero-copy slice of the chunk holding it; only a line that spans chunks is
/// copied.
#[derive(Default)]
pub struct Lines {
    carry: Vec<u8>,
}

impl Lines {
    /// Hands on every line that `chunk` completes; keeps the unfinished rest.
    pub fn push(&mut self, chunk: Bytes, mut line: impl FnMut(Bytes)) {
        let mut start = 0;
        while let Some(newline) = memchr_newline(&chunk[start..]) {
            let end = start + newline;
            if self.carry.is_empty() {
                keep_line(chunk.slice(start..end), &mut line);
            } else {
                self.carry.extend_from_slice(&chunk[start..end]);
                keep_line(Bytes::from(std::mem::take(&mut self.carry)), &mut line);
            }
            start = end + 1;
        }
        self.carry.extend_from_slice(&chunk[start..]);
    }

    /// Hands on the last line, which no newline ended.
    pub fn finish(self, mut line: impl FnMut(Bytes)) {
        if !self.carry.is_empty() {
            keep_line(Bytes::from(self.carry), &mut line);
        }
    }
}

fn keep_line(line: Bytes, keep: &mut impl FnMut(Bytes)) {
    let line = match line.strip_suffix(b"\r") {
        Some(stripped) => line.slice(..stripped.len()),
        None => line,
    };
    if !line.iter().all(u8::is_ascii_whitespace) {
        keep(line);
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

/// The 429 of a spent in-flight budget.
pub fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::TooManyRequests,
        "es_rejected_execution_exception",
        "too many request bytes in flight (ingest.max_in_flight_bytes); retry with backoff",
    )
}

/// Budget a body (or a piece of one) holds until dropped.
#[derive(Default)]
pub struct Charge {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Charge {
    /// Takes over what `other` holds.
    pub fn absorb(&mut self, other: Charge) {
        self.permits.extend(other.permits);
    }
}

/// The server-wide in-flight budget (`ingest.max_in_flight_bytes`, KiB permits), charged
/// by the bytes of one body as they arrive.
pub struct InFlight<'a> {
    semaphore: &'a Arc<Semaphore>,
    charged_kib: u64,
    charged_bytes: u64,
}

impl<'a> InFlight<'a> {
    pub fn new(semaphore: &'a Arc<Semaphore>) -> InFlight<'a> {
        InFlight {
            semaphore,
            charged_kib: 0,
            charged_bytes: 0,
        }
    }

    /// Charges `bytes` more into `charge`; fails (leaving `charge` as it was) when the
    /// server-wide budget is spent.
    pub fn charge(&mut self, bytes: usize, charge: &mut Charge) -> Result<(), ApiError> {
        let needed_kib = (self.charged_bytes + bytes as u64).div_ceil(1024);
        if needed_kib > self.charged_kib {
            let more = u32::try_from(needed_kib - self.charged_kib).map_err(|_| busy())?;
            let permit = self
                .semaphore
                .clone()
                .try_acquire_many_owned(more)
                .map_err(|_| busy())?;
            charge.permits.push(permit);
            self.charged_kib = needed_kib;
        }
        self.charged_bytes += bytes as u64;
        Ok(())
    }
}

/// A `Write` sink that refuses to grow the decompressed body past `limit` bytes in all.
struct BoundedSink {
    out: Vec<u8>,
    written: u64,
    limit: u64,
    over: bool,
}

impl Write for BoundedSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.written + data.len() as u64 > self.limit {
            self.over = true;
            return Err(std::io::Error::other("decompressed body too large"));
        }
        self.written += data.len() as u64;
        self.out.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compressed bytes fed to the decoder at a time: deflate inflates at most ~1032×, so
/// what one step decodes stays near 8 MiB before it is charged to the budget.
const GZIP_STEP_BYTES: usize = 8 * 1024;

/// A request body read chunk by chunk under the limits: `Content-Length` refused early,
/// the received and the decompressed size bounded, gzip decoded as it arrives.
pub struct BodyStream<'a> {
    stream: BodyDataStream,
    gzip: Option<flate2::write::MultiGzDecoder<BoundedSink>>,
    /// Compressed bytes not fed to the decoder yet.
    pending: Bytes,
    received: u64,
    max_body_bytes: u64,
    telemetry: &'a Telemetry,
    done: bool,
}

impl<'a> BodyStream<'a> {
    /// Checks the headers: a declared length over `max_body_bytes` is refused before
    /// anything is read, and only gzip or no encoding is accepted.
    pub fn open(
        headers: &HeaderMap,
        body: Body,
        max_body_bytes: u64,
        telemetry: &'a Telemetry,
    ) -> Result<BodyStream<'a>, ApiError> {
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
        Ok(BodyStream {
            stream: body.into_data_stream(),
            gzip: gzip.then(|| {
                flate2::write::MultiGzDecoder::new(BoundedSink {
                    out: Vec::new(),
                    written: 0,
                    limit: max_body_bytes,
                    over: false,
                })
            }),
            pending: Bytes::new(),
            received: 0,
            max_body_bytes,
            telemetry,
            done: false,
        })
    }

    /// The next decoded bytes (possibly empty), or `None` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        if self.gzip.is_some() && !self.pending.is_empty() {
            return self.decode_step().map(Some);
        }
        if self.done {
            return Ok(None);
        }
        let Some(chunk) = self.stream.next().await else {
            self.done = true;
            return self.finish_gzip();
        };
        let chunk = chunk.map_err(|error| {
            if is_timeout(&error) {
                self.telemetry.requests_refused.add("body_timeout", 1);
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
        if self.received + chunk.len() as u64 > self.max_body_bytes {
            self.telemetry.requests_refused.add("body_too_large", 1);
            return Err(too_large(self.max_body_bytes, "the request body"));
        }
        self.received += chunk.len() as u64;
        if self.gzip.is_none() {
            return Ok(Some(chunk));
        }
        self.pending = chunk;
        self.decode_step().map(Some)
    }

    /// Feeds the decoder up to [`GZIP_STEP_BYTES`] of what is pending and takes what it
    /// decoded.
    fn decode_step(&mut self) -> Result<Bytes, ApiError> {
        let decoder = self.gzip.as_mut().expect("only gzip bodies are decoded");
        let step = self
            .pending
            .split_to(self.pending.len().min(GZIP_STEP_BYTES));
        // flushing hands on what the decoder holds decoded, so the lines reach the
        // pieces now rather than with the next step
        let written = decoder.write_all(&step).and_then(|()| decoder.flush());
        self.decoded(written)
    }

    /// At the end of a gzip body: the decoder's last bytes, or an error when the body was
    /// cut or corrupt. `None` when there is nothing more.
    fn finish_gzip(&mut self) -> Result<Option<Bytes>, ApiError> {
        let Some(decoder) = self.gzip.as_mut() else {
            return Ok(None);
        };
        let finished = decoder.try_finish();
        let last = self.decoded(finished)?;
        self.gzip = None;
        Ok((!last.is_empty()).then_some(last))
    }

    fn decoded(&mut self, result: std::io::Result<()>) -> Result<Bytes, ApiError> {
        let decoder = self.gzip.as_mut().expect("only gzip bodies are decoded");
        let sink = decoder.get_mut();
        if sink.over {
            self.telemetry.requests_refused.add("body_too_large", 1);
            return Err(too_large(self.max_body_bytes, "the decompressed body"));
        }
        result.map_err(|error| {
            ApiError::new(
                ErrorCode::BadRequest,
                "illegal_argument_exception",
                format!("the gzip body is corrupt: {error}"),
            )
        })?;
        Ok(Bytes::from(std::mem::take(&mut sink.out)))
    }
}

/// Reads `body` whole under the limits.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    max_body_bytes: u64,
    in_flight: &Arc<Semaphore>,
    telemetry: &Telemetry,
) -> Result<ReadBody, ApiError> {
    let mut stream = BodyStream::open(headers, body, max_body_bytes, telemetry)?;
    let mut budget = InFlight::new(in_flight);
    let mut charge = Charge::default();
    let mut chunks: Vec<Bytes> = Vec::new();
    while let Some(chunk) = stream.next().await? {
        if chunk.is_empty() {
            continue;
        }
        if let Err(error) = budget.charge(chunk.len(), &mut charge) {
            telemetry.requests_refused.add("in_flight", 1);
            return Err(error);
        }
        chunks.push(chunk);
    }
    Ok(ReadBody {
        chunks,
        _permits: charge,
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

    fn gzip_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, "gzip".parse().expect("header"));
        headers
    }

    fn chunked(bytes: &[u8], size: usize) -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(size)
            .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    /// Everything `stream` yields, or its error.
    async fn drain(mut stream: BodyStream<'_>) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_gzip_body_is_decoded_as_its_chunks_arrive() {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|n| format!("{{\"n\":{n},\"text\":\"line {n}\"}}\n").into_bytes())
            .collect();
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&text).expect("compress");
        let compressed = encoder.finish().expect("finish");
        let telemetry = Telemetry::default();
        // decoded output comes out chunk by chunk, not only at the end
        let mut stream = BodyStream::open(
            &gzip_headers(),
            chunked(&compressed, 1000),
            1 << 30,
            &telemetry,
        )
        .expect("open");
        let first = stream.next().await.expect("decodes").expect("a chunk");
        assert!(
            !first.is_empty() && first.len() < text.len(),
            "{}",
            first.len()
        );
        let rest = drain(stream).await.expect("the rest");
        assert_eq!([&first[..], &rest[..]].concat(), text);
        // a body cut short, or over the limit once decoded, fails
        let cut = BodyStream::open(
            &gzip_headers(),
            chunked(&compressed[..compressed.len() - 10], 1000),
            1 << 30,
            &telemetry,
        )
        .expect("open");
        let error = drain(cut).await.expect_err("cut");
        assert_eq!(error.code, ErrorCode::BadRequest, "{}", error.reason);
        let over = BodyStream::open(
            &gzip_headers(),
            chunked(&compressed, 1000),
            text.len() as u64 / 2,
            &telemetry,
        )
        .expect("open");
        let error = drain(over).await.expect_err("over");
        assert_eq!(error.code, ErrorCode::PayloadTooLarge, "{}", error.reason);
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
                    _permits: Charge::default(),
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
