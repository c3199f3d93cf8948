//! The request-target escaping in front of hyper: generated keep-alive streams of
//! well-framed requests (targets with raw `<>"` and DEL, bodies holding request-like text,
//! headers that come and go), and arbitrary bytes. For well-framed streams exactly the
//! targets' raw bytes are escaped; for any bytes the output is the input with some of
//! those four bytes escaped and nothing else changed; how reads split the stream never
//! changes the result.

use lookout::server::request_target::{TargetScanner, escape_into};
use proptest::prelude::*;

use crate::harness::{self, run_case};

const ESCAPED: &[u8] = b"<>\"\x7f";

fn escape_all(scanner_input: &[u8], split: usize) -> Vec<u8> {
    let mut scanner = TargetScanner::default();
    let mut out = Vec::new();
    let split = split.min(scanner_input.len());
    escape_into(&mut scanner, &scanner_input[..split], &mut out);
    escape_into(&mut scanner, &scanner_input[split..], &mut out);
    out
}

/// One request and what it must look like after escaping.
fn request() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let target = proptest::collection::vec(
        prop_oneof![
            6 => proptest::sample::select(b"/abc_?=&:%+*[]{}|09".to_vec()),
            2 => proptest::sample::select(ESCAPED.to_vec()),
            1 => Just(0xC3u8),
        ],
        1..40,
    );
    let header = prop_oneof![
        Just("Host: localhost:9200".to_string()),
        Just("X-Opaque-Id: a>b<c".to_string()),
        Just("Authorization: Bearer t".to_string()),
        "[A-Za-z-]{1,20}: [ -~]{0,100}",
        Just(format!("Cookie: {}", "x".repeat(300))),
    ];
    let body = proptest::collection::vec(
        prop_oneof![
            Just(b"GET /?q=> HTTP/1.1\r\n\r\n".to_vec()),
            Just(b"{\"index\":{}}\n{\"msg\":\"a>b\"}\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..20),
        ],
        0..3,
    )
    .prop_map(|parts| parts.concat());
    (
        proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "HEAD"]),
        target,
        proptest::collection::vec(header, 0..4),
        body,
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(method, target, headers, body, lower_case, empty_lines)| {
            let mut head = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..empty_lines {
                head.extend_from_slice(b"\r\n");
                expected.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(format!("{method} /").as_bytes());
            expected.extend_from_slice(format!("{method} /").as_bytes());
            for byte in target {
                head.push(byte);
                if ESCAPED.contains(&byte) {
                    expected.extend_from_slice(format!("%{byte:02X}").as_bytes());
                } else {
                    expected.push(byte);
                }
            }
            let mut rest = b" HTTP/1.1\r\n".to_vec();
            for header in headers {
                rest.extend_from_slice(header.as_bytes());
                rest.extend_from_slice(b"\r\n");
            }
            if !body.is_empty() {
                let name = if lower_case {
                    "content-length"
                } else {
                    "Content-Length"
                };
                rest.extend_from_slice(format!("{name}: {}\r\n", body.len()).as_bytes());
            }
            rest.extend_from_slice(b"\r\n");
            rest.extend_from_slice(&body);
            head.extend_from_slice(&rest);
            expected.extend_from_slice(&rest);
            (head, expected)
        })
}

/// Whether `output` is `input` with some of [`ESCAPED`]'s bytes percent-encoded.
fn only_escapes_added(input: &[u8], output: &[u8]) -> bool {
    let mut at = 0;
    for &byte in input {
        if output.get(at) == Some(&byte) {
            at += 1;
        } else if ESCAPED.contains(&byte)
            && output.get(at..at + 3) == Some(format!("%{byte:02X}").as_bytes())
        {
            at += 3;
        } else {
            return false;
        }
    }
    at == output.len()
}

#[test]
fn well_framed_streams_have_exactly_their_targets_escaped() {
    let strategy = || (proptest::collection::vec(request(), 1..5), any::<usize>());
    harness::check(strategy, |(requests, split)| {
        let input: Vec<u8> = requests.iter().flat_map(|(raw, _)| raw.clone()).collect();
        let expected: Vec<u8> = requests.into_iter().flat_map(|(_, out)| out).collect();
        run_case(
            "request_target",
            String::from_utf8_lossy(&input).into_owned(),
            move || {
                let split = split % (input.len() + 1);
                let output = escape_all(&input, split);
                if output == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "split at {split}: got {:?}",
                        String::from_utf8_lossy(&output)
                    ))
                }
            },
        )
    });
}

#[test]
fn any_bytes_only_gain_escapes_whatever_the_split() {
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(
            proptest::sample::select(
                b"GET /?q=<>\" \r\n:Content-Length: 5Transfer-Encoding\x7f".to_vec()
            ),
            0..300
        ),
    ];
    let strategy = move || (bytes.clone(), any::<usize>(), any::<usize>());
    harness::check(strategy, |(input, first, second)| {
        run_case("request_target", format!("{input:?}"), move || {
            let whole = escape_all(&input, input.len());
            if !only_escapes_added(&input, &whole) {
                return Err(format!("changed more than escapes: {whole:?}"));
            }
            for split in [first, second] {
                let split = split % (input.len() + 1);
                if escape_all(&input, split) != whole {
                    return Err(format!("split at {split} differs"));
                }
            }
            Ok(())
        })
    });
}
