//! `_bulk` as the route reads it: NDJSON bodies (action lines with `_lookout` positions,
//! documents with every kind of timestamp, broken lines, invalid UTF-8), plain or gzipped
//! (whole, multi-member, truncated, corrupted, bombs), in arbitrary chunks, through the
//! body reader's limits, split into lines and parsed into items; and the agent protocol's
//! `X-Lookout-Agent` / `X-Lookout-Watermark` headers.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use bytes::Bytes;
use chrono::Datelike;
use lookout::ingest::agents::Agents;
use lookout::ingest::event::EventRules;
use lookout::server::body;
use lookout::server::elastic::agent_watermark;
use lookout::server::error::ErrorCode;
use lookout::telemetry::Telemetry;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::harness::{self, Grammar, HOSTILE, mutated, run_case};

/// 2024-05-01T10:00:00Z.
const NOW_MICROS: i64 = 1_714_557_600_000_000;

fn rules() -> EventRules {
    EventRules {
        timestamp_fields: vec![
            "@timestamp".into(),
            "timestamp".into(),
            "time".into(),
            "ts".into(),
        ],
        max_depth: 64,
        max_line_bytes: 1 << 20,
        reject_older_than_micros: 7 * 24 * 3_600_000_000,
        future_tolerance_micros: 15 * 60_000_000,
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[a-z0-9 ]{0,12}",
        1 => proptest::sample::select(HOSTILE).prop_map(str::to_string),
        1 => "\\PC{0,6}",
    ]
}

/// An `_id`: strings around the 512-byte limit (in multibyte characters too), numbers,
/// and what is not an id.
fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => text().prop_map(Value::from),
        1 => (500usize..530).prop_map(|length| Value::from("a".repeat(length))),
        1 => (160usize..200, "[é€𝔘]").prop_map(|(count, character)| Value::from(character.repeat(count))),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => harness::json_value(1),
    ]
}

fn lookout_position() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (text(), any::<u64>(), any::<u64>())
            .prop_map(|(source, generation, offset)| json!({"source": source, "gen": generation, "offset": offset})),
        1 => harness::json_value(2),
        1 => (text(), -5i64..5, any::<f64>())
            .prop_map(|(source, generation, offset)| json!({"source": source, "gen": generation, "offset": offset, "x": 1})),
    ]
}

fn action_line() -> impl Strategy<Value = Vec<u8>> {
    let meta = (
        proptest::option::of(
            prop_oneof![3 => Just(json!("logs")), 1 => text().prop_map(Value::from)],
        ),
        proptest::option::of(id()),
        proptest::option::of(lookout_position()),
        proptest::option::of(proptest::sample::select(vec![
            "routing",
            "pipeline",
            "version",
            "if_seq_no",
            "_type",
            "unknown",
        ])),
    )
        .prop_map(|(index, id, position, extra)| {
            let mut meta = serde_json::Map::new();
            if let Some(index) = index {
                meta.insert("_index".into(), index);
            }
            if let Some(id) = id {
                meta.insert("_id".into(), id);
            }
            if let Some(position) = position {
                meta.insert("_lookout".into(), position);
            }
            if let Some(extra) = extra {
                meta.insert(extra.into(), json!("x"));
            }
            Value::Object(meta)
        });
    prop_oneof![
        6 => ("(index|create|delete|update|upsert)", meta)
            .prop_map(|(action, meta)| json!({action: meta}).to_string().into_bytes()),
        1 => harness::json_value(2).prop_map(|value| value.to_string().into_bytes()),
        1 => text().prop_map(String::into_bytes),
    ]
}

fn timestamp() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::sample::select(vec![
            "2024-05-01T09:59:00Z",
            "2024-05-01T11:59:00+02:00",
            "2024-05-01 09:59:00.123",
            "2024-05-01T09:59:00",
            "1714557540",
            "1714557540123",
            "+262143-12-31T23:59:59Z",
            "2024-02-30T00:00:00Z",
            "2024-05-01T09:59:60Z",
            "9999-12-31T23:59:59.999999999-23:59",
            "",
            "now",
        ])
        .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (1e9f64..2e18).prop_map(Value::from),
        harness::json_value(1),
    ]
}

fn document_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => (proptest::sample::select(vec!["@timestamp", "timestamp", "time", "ts", "message"]), timestamp(), harness::json_value(3))
            .prop_map(|(key, time, extra)| json!({key: time, "message": "GET /api 500", "extra": extra}).to_string().into_bytes()),
        1 => (100usize..140).prop_map(|depth| {
            format!("{{\"a\":{}}}", harness::nested_json_text(depth, "1")).into_bytes()
        }),
        1 => harness::json_value(2).prop_map(|value| value.to_string().into_bytes()),
        1 => (text(), proptest::collection::vec(any::<u8>(), 1..4)).prop_map(|(text, bytes)| {
            let mut line = format!("{{\"message\":\"{text}").into_bytes();
            line.extend(bytes);
            line.extend(b"\"}");
            line
        }),
    ]
}

/// An NDJSON body: pairs of lines, blank lines, CRLF line ends, sometimes no final newline.
fn ndjson() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(
            (
                action_line(),
                proptest::option::weighted(0.9, document_line()),
                0u8..8,
            ),
            0..8,
        ),
        any::<bool>(),
    )
        .prop_map(|(pairs, final_newline)| {
            let mut body = Vec::new();
            for (action, document, form) in pairs {
                let end: &[u8] = if form == 0 { b"\r\n" } else { b"\n" };
                if form == 1 {
                    body.extend(b"\n  \n");
                }
                body.extend(&action);
                body.extend(end);
                if let Some(document) = document {
                    body.extend(&document);
                    body.extend(end);
                }
            }
            if !final_newline && body.ends_with(b"\n") {
                body.pop();
            }
            body
        })
}

fn grammar() -> Arc<Grammar> {
    Arc::new(
        Grammar::new(
            &[
                "{\"index\":{\"_index\":\"logs\"}}\n{\"@timestamp\":\"2024-05-01T09:59:00Z\",\"message\":\"GET /cart 500\",\"service\":\"checkout\"}\n",
                "{\"create\":{\"_index\":\"logs\",\"_id\":\"a1\",\"_lookout\":{\"source\":\"2049:1234:abcd\",\"gen\":1,\"offset\":4096}}}\n{\"ts\":1714557540123,\"level\":\"error\"}\n{\"delete\":{\"_index\":\"logs\",\"_id\":\"a1\"}}\n",
                "{\"index\":{}}\r\n{\"time\":\"2024-05-01 09:59:00.123\",\"nested\":{\"a\":[1,2,{\"b\":null}]}}\r\n",
            ],
            &["{", "}", "[", "]", "\"", ":", ",", "\n", "\r\n", "_id", "_lookout", "index", "delete", "\\u0000", "\\ud800"],
            &[("[", "]"), ("{\"a\":", "}")],
        )
        .max_repeat(130),
    )
}

/// How a body travels: its encoding and the damage done to it on the way.
#[derive(Debug, Clone)]
enum Transport {
    Plain,
    Gzip,
    /// Several gzip members, one after another (what `MultiGzDecoder` reads).
    GzipMembers(usize),
    GzipTruncated(prop::sample::Index),
    GzipFlipped(prop::sample::Index, u8),
    /// Not gzip at all, but said to be.
    GzipClaimed,
    /// A header naming an encoding the server refuses.
    Unsupported(&'static str),
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        3 => Just(Transport::Plain),
        3 => Just(Transport::Gzip),
        1 => (2usize..4).prop_map(Transport::GzipMembers),
        1 => any::<prop::sample::Index>().prop_map(Transport::GzipTruncated),
        1 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(at, mask)| Transport::GzipFlipped(at, mask)),
        1 => Just(Transport::GzipClaimed),
        1 => proptest::sample::select(vec!["br", "deflate", "gzip, br", ""]).prop_map(Transport::Unsupported),
    ]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// The lines `ReadBody::lines` must find: LF-separated, CR stripped, blank ones left out.
fn expected_lines(body: &[u8]) -> Vec<Bytes> {
    body.split(|byte| *byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(Bytes::copy_from_slice)
        .collect()
}

/// Sends `body` as `transport` says, in chunks cut at `cuts`, through the body reader and
/// the bulk parser, and checks what comes out.
fn receive(
    body: &[u8],
    transport: Transport,
    cuts: Vec<prop::sample::Index>,
    max_body_bytes: u64,
) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    let (wire, decodes_to_body) = match &transport {
        Transport::Plain => (body.to_vec(), true),
        Transport::Gzip => (gzip(body), true),
        Transport::GzipMembers(_) if body.is_empty() => (gzip(body), true),
        Transport::GzipMembers(members) => {
            let size = body.len().div_ceil(*members);
            (body.chunks(size).flat_map(gzip).collect(), true)
        }
        Transport::GzipTruncated(at) => {
            let mut wire = gzip(body);
            wire.truncate(at.index(wire.len()));
            (wire, false)
        }
        Transport::GzipFlipped(at, mask) => {
            let mut wire = gzip(body);
            let at = at.index(wire.len());
            wire[at] ^= mask;
            (wire, false)
        }
        Transport::GzipClaimed | Transport::Unsupported(_) => (body.to_vec(), false),
    };
    match &transport {
        Transport::Plain => {}
        Transport::Unsupported(encoding) => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        _ => {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(wire.len() + 1)).collect();
    cuts.sort();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([wire.len()]) {
        chunks.push(Ok::<_, std::io::Error>(Bytes::copy_from_slice(
            &wire[start..cut],
        )));
        start = cut;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|error| error.to_string())?;
    let in_flight = Arc::new(Semaphore::new(1 << 20));
    let telemetry = Telemetry::default();
    let read = runtime.block_on(body::read(
        &headers,
        axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
        max_body_bytes,
        &in_flight,
        &telemetry,
    ));
    let read = match read {
        Ok(read) => read,
        Err(error) => {
            let too_large =
                body.len() as u64 > max_body_bytes || wire.len() as u64 > max_body_bytes;
            if decodes_to_body && !(too_large && error.code == ErrorCode::PayloadTooLarge) {
                return Err(format!(
                    "a valid body within the limit was refused: {}",
                    error.reason
                ));
            }
            return Ok(());
        }
    };
    if decodes_to_body {
        if read.contiguous() != body {
            return Err("the body read is not the body sent".into());
        }
        if read.lines() != expected_lines(body) {
            return Err("the lines cut from the chunks differ from the body's lines".into());
        }
    }
    let lines = read.lines();
    let items = lookout::ingest::parse_bulk(&lines, Some("logs"), &rules(), NOW_MICROS);
    if items.len() > lines.len() {
        return Err(format!("{} items from {} lines", items.len(), lines.len()));
    }
    Ok(())
}

/// A header value from generated bytes, when they make one.
fn header_value(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

fn watermark() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::sample::select(vec![
            "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123456789+02:00", " 2024-05-01T10:00:00Z ",
            "2024-05-01T23:59:60Z", "9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+23:59",
            "2024-05-01", "1714557600", "",
        ])
        .prop_map(|text| text.as_bytes().to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..24),
        1 => "\\PC{0,24}".prop_map(String::into_bytes),
    ]
}

#[test]
fn bulk_bodies_are_read_and_parsed_or_refused_cleanly() {
    let strategy = || {
        let mutated_text = ndjson()
            .prop_map(|body| String::from_utf8_lossy(&body).into_owned())
            .boxed();
        (
            prop_oneof![
                3 => ndjson(),
                1 => mutated(grammar(), mutated_text, 6).prop_map(String::into_bytes),
            ]
            .prop_map(Bytes::from),
            transport(),
            proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
            prop_oneof![3 => Just(1u64 << 20), 1 => 0u64..512],
        )
    };
    harness::check(strategy, |(body, transport, cuts, max_body_bytes)| {
        run_case(
            "bulk",
            format!("{:?}", (&body, &transport, max_body_bytes)),
            move || receive(&body, transport, cuts, max_body_bytes),
        )
    });
}

#[test]
fn gzip_bombs_are_refused_at_the_limit() {
    harness::check(
        || (1usize << 20..4 << 20, any::<u8>()),
        |(size, byte)| {
            run_case("gzip bomb", format!("{:?}", (size, byte)), move || {
                let wire = gzip(&vec![byte; size]);
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .map_err(|error| error.to_string())?;
                let read = runtime.block_on(body::read(
                    &headers,
                    axum::body::Body::from(wire),
                    64 << 10,
                    &Arc::new(Semaphore::new(1 << 20)),
                    &Telemetry::default(),
                ));
                match read {
                    Err(error) if error.code == ErrorCode::PayloadTooLarge => Ok(()),
                    Err(error) => Err(format!("refused for another reason: {}", error.reason)),
                    Ok(_) => Err("a body decompressing past the limit was accepted".into()),
                }
            })
        },
    );
}

#[test]
fn agent_headers_are_read_or_refused_cleanly() {
    let strategy = || {
        let agent = prop_oneof![
            "[a-z0-9-]{1,12}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..16),
        ];
        (
            proptest::option::of(agent.prop_map(Bytes::from)),
            proptest::option::of(watermark().prop_map(Bytes::from)),
        )
    };
    harness::check(strategy, |(agent, watermark)| {
        run_case(
            "agent headers",
            format!("{:?}", (&agent, &watermark)),
            move || {
                let mut headers = HeaderMap::new();
                for (name, value) in [
                    ("x-lookout-agent", &agent),
                    ("x-lookout-watermark", &watermark),
                ] {
                    if let Some(value) = value.as_deref().and_then(header_value) {
                        headers.insert(HeaderName::from_static(name), value);
                    }
                }
                let Ok(Some((id, watermark))) = agent_watermark(&headers) else {
                    return Ok(());
                };
                let agents = Agents::new(Duration::from_secs(30));
                let now = Instant::now();
                agents.seen(&id, watermark, now);
                let _ = agents.min_live_watermark(now);
                let shown = agents
                    .status(now)
                    .first()
                    .and_then(|status| status.watermark.clone());
                // the agents API shows the watermark as RFC 3339 when it has four-digit years
                if let (Some(micros), Some(shown)) = (watermark, shown) {
                    let year = chrono::DateTime::from_timestamp_micros(micros)
                        .ok_or_else(|| format!("watermark {micros} µs is no time"))?
                        .year();
                    match chrono::DateTime::parse_from_rfc3339(&shown) {
                        Ok(time) if time.timestamp_micros() != micros => {
                            return Err(format!("watermark {micros} µs is shown as {shown}"));
                        }
                        Err(error) if (0..=9999).contains(&year) => {
                            return Err(format!(
                                "watermark {micros} µs is shown as {shown}: {error}"
                            ));
                        }
                        _ => {}
                    }
                }
                Ok(())
            },
        )
    });
}
