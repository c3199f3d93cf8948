//! One log line → a document ready to index: UTF-8 and JSON checks, nesting depth, the
//! event time, and the id.
//!
//! Event time comes from the first configured field present at the top level (`@timestamp`,
//! then `timestamp`, `time`, `ts`): RFC 3339 with any offset (or without one, read as UTC),
//! or epoch seconds, milliseconds, microseconds or nanoseconds told apart by magnitude.
//! Missing → ingest time, and `@timestamp` is added to the source so every tool sees the
//! time it was indexed at. Unparsable → ingest time, with the original kept in
//! `event.original_timestamp`. Older than `reject_older_than` or further than the tolerance
//! in the future → the line is refused with the reason (Loki's behaviour): an old line is
//! never re-stamped as now, so shipped history can never count in a rule's current
//! window.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::index::body::{Body, BodyError, Part};

/// Why a line was rejected; `kind` sorts the mistake, `reason` says what to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub kind: RejectionKind,
    /// Short label for the `lookout_ingest_lines_rejected_total{reason}` counter.
    pub label: &'static str,
    pub reason: String,
}

/// What sort of mistake a rejected line is (the server names it in its answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The line is not a document: too long, not UTF-8, not JSON, not an object, too deep.
    Unparsable,
    /// A value is not accepted: an event time out of range, a malformed action line.
    IllegalValue,
    /// The caller may not write there (a hidden `.lookout-*` index written from outside).
    Forbidden,
}

impl Rejection {
    fn parse(label: &'static str, reason: String) -> Rejection {
        Rejection {
            kind: RejectionKind::Unparsable,
            label,
            reason,
        }
    }
}

/// How the event time of a document was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    Event,
    MissingUsedIngestTime,
    InvalidUsedIngestTime,
}

#[derive(Debug, Clone)]
pub struct EventRules {
    pub timestamp_fields: Vec<String>,
    pub max_depth: usize,
    pub max_line_bytes: usize,
    /// Event times older than `now` minus this are refused (default: the retention).
    pub reject_older_than_micros: i64,
    /// Event times later than `now` plus this are refused.
    pub future_tolerance_micros: i64,
}

#[derive(Debug)]
pub struct Event {
    pub body: Body,
    /// The source to store: the line itself unless a field had to be added.
    pub source: bytes::Bytes,
    pub timestamp_micros: i64,
    pub timestamp_key: Option<String>,
    pub time_source: TimeSource,
}

/// Parses and checks one document line. `now_micros` is the ingest time.
pub fn prepare(
    line: &bytes::Bytes,
    rules: &EventRules,
    now_micros: i64,
) -> Result<Event, Rejection> {
    if line.len() > rules.max_line_bytes {
        return Err(Rejection::parse(
            "line_too_long",
            format!(
                "document of {} bytes is over max_line_bytes ({}); split it or raise ingest.max_line_bytes",
                line.len(),
                rules.max_line_bytes
            ),
        ));
    }
    let body = Body::parse(line.clone()).map_err(|error| match error {
        BodyError::Utf8(at) => Rejection::parse(
            "invalid_utf8",
            format!("invalid UTF-8 at byte {at}; send UTF-8 text"),
        ),
        BodyError::Json(error) => Rejection::parse(
            "invalid_json",
            format!(
                "[{}:{}] failed to parse: {error}",
                error.line(),
                error.column()
            ),
        ),
    })?;
    if let Some(kind) = not_an_object(&body) {
        return Err(Rejection::parse(
            "not_an_object",
            format!("a document must be a JSON object, got {kind}"),
        ));
    }
    let depth = body.depth();
    if depth > rules.max_depth {
        return Err(Rejection::parse(
            "too_deep",
            format!(
                "document nesting depth {depth} is over the limit of {}; flatten it",
                rules.max_depth
            ),
        ));
    }
    let found = rules.timestamp_fields.iter().find_map(|field| {
        body.get(field)
            .map(|value| (field.clone(), value.to_value()))
    });
    let (timestamp_micros, timestamp_key, time_source, rewrite) = match found {
        None => (
            now_micros,
            None,
            TimeSource::MissingUsedIngestTime,
            Some(("@timestamp".to_string(), None)),
        ),
        Some((key, value)) => match parse_event_time(&value) {
            None => (
                now_micros,
                Some(key.clone()),
                TimeSource::InvalidUsedIngestTime,
                Some((key, Some(value.clone()))),
            ),
            Some(micros) => {
                check_time_range(micros, &key, rules, now_micros)?;
                (micros, Some(key), TimeSource::Event, None)
            }
        },
    };
    let (source, body) = match rewrite {
        None => (line.clone(), body),
        Some((key, original)) => {
            let Value::Object(mut map) = body.root().to_value() else {
                unreachable!("checked to be an object")
            };
            map.insert(key, Value::String(format_micros(now_micros)));
            if let Some(original) = original {
                set_original_timestamp(&mut map, original);
            }
            let source =
                bytes::Bytes::from(serde_json::to_vec(&map).expect("a JSON map serializes"));
            let body = Body::parse(source.clone()).expect("serde_json writes JSON");
            (source, body)
        }
    };
    Ok(Event {
        body,
        source,
        timestamp_micros,
        timestamp_key,
        time_source,
    })
}

/// Refuses an event time outside `[now − reject_older_than, now + future_tolerance]`.
fn check_time_range(
    micros: i64,
    key: &str,
    rules: &EventRules,
    now_micros: i64,
) -> Result<(), Rejection> {
    let oldest = now_micros.saturating_sub(rules.reject_older_than_micros);
    let newest = now_micros.saturating_add(rules.future_tolerance_micros);
    let (label, reason) = if micros < oldest {
        (
            "too_old",
            format!(
                "event time {} (`{key}`) is older than the retention: events before {} (now − {}, ingest.reject_older_than) are refused so that shipped history never counts as now; to backfill deliberately, raise ingest.reject_older_than (and index.retention)",
                format_micros(micros),
                format_seconds(oldest),
                format_span(rules.reject_older_than_micros),
            ),
        )
    } else if micros > newest {
        (
            "too_new",
            format!(
                "event time {} (`{key}`) is in the future: events after {} (now + {}, ingest.future_tolerance) are refused; check the clock of the machine that wrote the line, or raise ingest.future_tolerance",
                format_micros(micros),
                format_seconds(newest),
                format_span(rules.future_tolerance_micros),
            ),
        )
    } else {
        return Ok(());
    };
    Err(Rejection {
        kind: RejectionKind::IllegalValue,
        label,
        reason,
    })
}

/// A time to the second, for messages.
fn format_seconds(micros: i64) -> String {
    Utc.timestamp_micros(micros)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A span of microseconds as config writes it (`7days`, `15m`).
fn format_span(micros: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(
        (micros.max(0) / 1_000_000) as u64,
    ))
    .to_string()
}

/// Puts `original` at `event.original_timestamp` without overwriting an application key:
/// nested when `event` is an object or absent, as a dotted key otherwise.
fn set_original_timestamp(body: &mut Map<String, Value>, original: Value) {
    match body
        .entry("event")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(event) => {
            event.entry("original_timestamp").or_insert(original);
        }
        _ => {
            body.entry("event.original_timestamp").or_insert(original);
        }
    }
}

pub fn format_micros(micros: i64) -> String {
    Utc.timestamp_micros(micros)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// RFC 3339 (any offset; none means UTC) or epoch s/ms/µs/ns.
pub fn parse_event_time(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => {
            if let Some(integer) = number.as_i64() {
                Some(epoch_to_micros(integer as f64))
            } else {
                number
                    .as_f64()
                    .filter(|value| value.is_finite())
                    .map(epoch_to_micros)
            }
        }
        Value::String(text) => {
            let text = text.trim();
            if let Ok(time) = DateTime::parse_from_rfc3339(text) {
                return Some(time.timestamp_micros());
            }
            if let Ok(number) = text.parse::<f64>() {
                return number.is_finite().then(|| epoch_to_micros(number));
            }
            for pattern in [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f%:z",
            ] {
                if let Ok(time) = NaiveDateTime::parse_from_str(text, pattern) {
                    return Some(time.and_utc().timestamp_micros());
                }
            }
            DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z")
                .ok()
                .map(|time| time.timestamp_micros())
        }
        _ => None,
    }
}

/// Seconds below 1e11 (until year 5138), then milliseconds, microseconds, nanoseconds.
fn epoch_to_micros(value: f64) -> i64 {
    let magnitude = value.abs();
    let micros = if magnitude < 1e11 {
        value * 1e6
    } else if magnitude < 1e14 {
        value * 1e3
    } else if magnitude < 1e17 {
        value
    } else {
        value / 1e3
    };
    micros.round() as i64
}

/// What the root is when it is not an object.
fn not_an_object(body: &Body) -> Option<&'static str> {
    match body.root().part() {
        Part::Object(_) => None,
        Part::Null => Some("null"),
        Part::Bool(_) => Some("a boolean"),
        Part::I64(_) | Part::U64(_) | Part::F64(_) => Some("a number"),
        Part::Str(_) => Some("a string"),
        Part::Array(_) => Some("an array"),
    }
}

/// Generates ES-style ids: 20 URL-safe characters, unique across restarts (a random
/// per-process prefix plus a counter that starts at the clock).
pub struct IdGenerator {
    prefix: [u8; 5],
    counter: AtomicU64,
}

impl Default for IdGenerator {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        let random = hasher.finish().to_le_bytes();
        let start = Utc::now().timestamp_micros() as u64;
        IdGenerator {
            prefix: [random[0], random[1], random[2], random[3], random[4]],
            counter: AtomicU64::new(start << 8),
        }
    }
}

impl IdGenerator {
    pub fn next_id(&self) -> String {
        use base64::Engine;
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 15];
        // counter first, big-endian, so ids of one process sort by arrival
        bytes[..8].copy_from_slice(&count.to_be_bytes());
        bytes[8..13].copy_from_slice(&self.prefix);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            reject_older_than_micros: 7 * 86_400_000_000,
            future_tolerance_micros: 15 * 60_000_000,
        }
    }

    const NOW: i64 = 1_714_557_600_000_000; // 2024-05-01T10:00:00Z

    #[test]
    fn event_time_formats_table() {
        let cases = [
            (r#"{"@timestamp":"2024-05-01T09:59:00Z"}"#, NOW - 60_000_000),
            (
                r#"{"@timestamp":"2024-05-01T11:59:00+02:00"}"#,
                NOW - 60_000_000,
            ),
            (
                r#"{"@timestamp":"2024-05-01T09:59:00.5"}"#,
                NOW - 59_500_000,
            ),
            (r#"{"timestamp":1714557540}"#, NOW - 60_000_000),
            (r#"{"time":1714557540000}"#, NOW - 60_000_000),
            (r#"{"ts":1714557540000000}"#, NOW - 60_000_000),
            (r#"{"ts":1714557540000000000}"#, NOW - 60_000_000),
            (r#"{"ts":"1714557540.25"}"#, NOW - 59_750_000),
        ];
        for (line, expected) in cases {
            let event = prepare(
                &bytes::Bytes::copy_from_slice(line.as_bytes()),
                &rules(),
                NOW,
            )
            .expect(line);
            assert_eq!(event.timestamp_micros, expected, "{line}");
            assert_eq!(event.time_source, TimeSource::Event, "{line}");
            assert_eq!(event.source, line.as_bytes(), "source kept verbatim");
        }
    }

    /// Regression (issue 19): old lines were re-stamped with the ingest time and fired
    /// rules for the current window; now they fail their item, and so do future ones.
    #[test]
    fn out_of_range_times_are_refused_never_restamped() {
        let day = 86_400_000_000;
        let cases = [
            (r#"{"@timestamp":"2024-04-10T10:00:00Z"}"#, Some("too_old")),
            (r#"{"ts":1712743200}"#, Some("too_old")),
            (r#"{"@timestamp":"2001-01-01T00:00:00Z"}"#, Some("too_old")),
            (r#"{"@timestamp":"2024-05-01T10:16:00Z"}"#, Some("too_new")),
            // the bounds themselves are accepted
            (r#"{"@timestamp":"2024-04-24T10:00:00Z"}"#, None),
            (r#"{"@timestamp":"2024-05-01T10:15:00Z"}"#, None),
        ];
        for (line, refused) in cases {
            let prepared = prepare(
                &bytes::Bytes::copy_from_slice(line.as_bytes()),
                &rules(),
                NOW,
            );
            match refused {
                None => assert_eq!(
                    prepared.expect(line).time_source,
                    TimeSource::Event,
                    "{line}"
                ),
                Some(label) => {
                    let rejection = prepared.expect_err(line);
                    assert_eq!(rejection.label, label, "{line}");
                    assert_eq!(rejection.kind, RejectionKind::IllegalValue);
                }
            }
        }
        let old = prepare(
            &bytes::Bytes::from_static(br#"{"@timestamp":"2024-04-10T10:00:00Z"}"#),
            &rules(),
            NOW,
        )
        .expect_err("too old");
        assert_eq!(
            old.reason,
            "event time 2024-04-10T10:00:00.000000Z (`@timestamp`) is older than the retention: events before 2024-04-24T10:00:00Z (now − 7days, ingest.reject_older_than) are refused so that shipped history never counts as now; to backfill deliberately, raise ingest.reject_older_than (and index.retention)"
        );
        let wider = EventRules {
            reject_older_than_micros: 30 * day,
            ..rules()
        };
        let backfilled = prepare(
            &bytes::Bytes::from_static(br#"{"@timestamp":"2024-04-10T10:00:00Z"}"#),
            &wider,
            NOW,
        )
        .expect("a raised reject_older_than accepts it, at its own time");
        assert_eq!(backfilled.timestamp_micros, NOW - 21 * day);
    }

    #[test]
    fn unparsable_time_is_replaced_and_the_original_kept() {
        let event = prepare(
            &bytes::Bytes::from_static(br#"{"@timestamp":"yesterday","event":{"kind":"x"}}"#),
            &rules(),
            NOW,
        )
        .expect("valid");
        assert_eq!(event.timestamp_micros, NOW);
        assert_eq!(event.time_source, TimeSource::InvalidUsedIngestTime);
        let source: Value = serde_json::from_slice(&event.source).expect("json");
        assert_eq!(source["event"]["original_timestamp"], "yesterday");
        assert_eq!(source["event"]["kind"], "x");
        assert_eq!(source["@timestamp"], "2024-05-01T10:00:00.000000Z");

        let event = prepare(
            &bytes::Bytes::from_static(br#"{"@timestamp":"soon","event":"scalar"}"#),
            &rules(),
            NOW,
        )
        .expect("valid");
        let source: Value = serde_json::from_slice(&event.source).expect("json");
        assert_eq!(
            source["event"], "scalar",
            "the application's key is not overwritten"
        );
        assert_eq!(source["event.original_timestamp"], "soon");
    }

    #[test]
    fn missing_time_uses_ingest_time_and_adds_it() {
        let event =
            prepare(&bytes::Bytes::from_static(br#"{"msg":"x"}"#), &rules(), NOW).expect("valid");
        assert_eq!(event.time_source, TimeSource::MissingUsedIngestTime);
        let source: Value = serde_json::from_slice(&event.source).expect("json");
        assert_eq!(source["@timestamp"], "2024-05-01T10:00:00.000000Z");
    }

    #[test]
    fn bad_lines_are_rejected_with_a_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"[1,2]".to_vec(), "not_an_object"),
            (b"\"text\"".to_vec(), "not_an_object"),
            (b"{\"a\":".to_vec(), "invalid_json"),
            (
                vec![b'{', b'"', b'a', b'"', b':', b'"', 0xff, b'"', b'}'],
                "invalid_utf8",
            ),
            (
                format!("{}1{}", "{\"a\":".repeat(70), "}".repeat(70)).into_bytes(),
                "too_deep",
            ),
            (
                format!("{{\"a\":\"{}\"}}", "x".repeat(2 << 20)).into_bytes(),
                "line_too_long",
            ),
        ];
        for (line, label) in cases {
            let rejection = prepare(&bytes::Bytes::from(line), &rules(), NOW).expect_err(label);
            assert_eq!(rejection.label, label);
        }
    }

    #[test]
    fn generated_ids_are_unique_and_es_shaped() {
        let generator = IdGenerator::default();
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| generator.next_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 20));
    }
}
