//! Request bodies: read as a stream, never more than `max_body_bytes` (413 as soon as the
//! declared or received size passes it), charged against the server-wide in-flight budget
//! (429 when it is spent), and gunzipped with the decompressed size bounded too, so a
//! zip bomb or a burst of large bodies cannot exhaust memory.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ErrorCode};
use crate::telemetry::Telemetry;

/// A body in memory with the in-flight budget it holds until dropped.
pub struct ReadBody {
    pub bytes: bytes::Bytes,
    _permits: Vec<OwnedSemaphorePermit>,
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
    let mut raw = Vec::with_capacity(declared.unwrap_or(0).min(max_body_bytes) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            ApiError::new(
                ErrorCode::BadRequest,
                "illegal_argument_exception",
                format!("could not read the request body: {error}"),
            )
        })?;
        if raw.len() as u64 + chunk.len() as u64 > max_body_bytes {
            telemetry.requests_refused.add("body_too_large", 1);
            return Err(too_large(max_body_bytes, "the request body"));
        }
        if let Err(error) = budget.charge(chunk.len()) {
            telemetry.requests_refused.add("in_flight", 1);
            return Err(error);
        }
        raw.extend_from_slice(&chunk);
    }
    if !gzip {
        return Ok(ReadBody {
            bytes: raw.into(),
            _permits: budget.permits,
        });
    }
    let (result, sink_error, out) = {
        let mut sink = BoundedSink {
            out: Vec::with_capacity(raw.len() * 4),
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
        bytes: out.into(),
        _permits: budget.permits,
    })
}
