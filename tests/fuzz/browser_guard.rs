//! `Host` and `Origin` parsing of the browser-safety layer: generated host names,
//! addresses, ports and hostile text. Whatever is accepted re-renders to itself, the
//! loopback default answers no DNS name but `localhost` (the DNS-rebinding guard), and a
//! write whose `Origin` is not its `Host` is never let through.

use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use lookout::server::browser_guard::{
    AllowedHosts, Authority, BrowserGuard, parse_authority, parse_origin,
};
use proptest::prelude::*;

use crate::harness::{self, HOSTILE, run_case};

/// Host-like text: names, IPv4 and IPv6 literals, ports, and the pieces attacks use.
fn host_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9-]{1,12}",
        2 => Just(".".to_string()),
        1 => Just("localhost".to_string()),
        1 => Just("127.0.0.1".to_string()),
        1 => Just("[::1]".to_string()),
        1 => Just("[".to_string()),
        1 => Just("]".to_string()),
        2 => Just(":".to_string()),
        2 => "[0-9]{1,6}",
        1 => Just("@".to_string()),
        1 => Just("/".to_string()),
        1 => Just("%2e".to_string()),
        1 => Just("_".to_string()),
        1 => proptest::sample::select(HOSTILE).prop_map(str::to_string),
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

fn render(authority: &Authority) -> String {
    match authority.port {
        Some(port) => format!("{}:{port}", authority.host),
        None => authority.host.clone(),
    }
}

#[test]
fn accepted_hosts_are_clean_and_render_back_to_themselves() {
    harness::check(host_text, |text| {
        run_case("browser_guard", text.clone(), move || {
            let Ok(authority) = parse_authority(&text) else {
                return Ok(());
            };
            let clean = authority.host.starts_with('[')
                || authority.host.bytes().all(|byte| {
                    byte.is_ascii_lowercase()
                        || byte.is_ascii_digit()
                        || matches!(byte, b'.' | b'-' | b'_')
                });
            if !clean || authority.host.is_empty() {
                return Err(format!("accepted an unclean host {authority:?}"));
            }
            match parse_authority(&render(&authority)) {
                Ok(again) if again == authority => {}
                other => return Err(format!("{authority:?} renders to {other:?}")),
            }
            // the loopback default answers only localhost and addresses
            let loopback = AllowedHosts::from_config(&[], true)?;
            let is_address = authority.host.starts_with('[')
                || authority.host.parse::<std::net::Ipv4Addr>().is_ok();
            if loopback.allows(&authority) && !is_address && authority.host != "localhost" {
                return Err(format!("the loopback default answers {authority:?}"));
            }
            Ok(())
        })
    });
}

#[test]
fn a_write_from_another_origin_never_passes() {
    let strategy = || {
        (
            host_text(),
            prop_oneof![
                host_text().prop_map(|host| format!("http://{host}")),
                host_text().prop_map(|host| format!("https://{host}")),
                host_text(),
                Just("null".to_string()),
            ],
            proptest::sample::select(vec!["POST", "PUT", "DELETE"]),
            proptest::sample::select(vec!["/_bulk", "/api/v2/silences", "/logs", "/_search"]),
        )
    };
    harness::check(strategy, |(host, origin, method, path)| {
        let shown = format!("Host {host:?} Origin {origin:?} {method} {path}");
        run_case("browser_guard", shown, move || {
            let guard = BrowserGuard {
                hosts: AllowedHosts::Any,
            };
            let mut headers = HeaderMap::new();
            let (Ok(host_value), Ok(origin_value)) =
                (HeaderValue::from_str(&host), HeaderValue::from_str(&origin))
            else {
                return Ok(()); // not sendable as headers
            };
            headers.insert("host", host_value);
            headers.insert("origin", origin_value);
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            let method =
                Method::from_bytes(method.as_bytes()).map_err(|error| error.to_string())?;
            let uri: Uri = path.parse().map_err(|error| format!("{error}"))?;
            let passed = guard.check(&method, &uri, &headers).is_ok();
            let same_origin = match (parse_origin(&origin), parse_authority(&host)) {
                (Some(origin), Ok(host)) => {
                    origin.host == host.host
                        && host
                            .port
                            .map_or(matches!(origin.port, 80 | 443), |port| port == origin.port)
                }
                _ => false,
            };
            let write = lookout::server::browser_guard::changes_state(&method, uri.path());
            if passed && write && !same_origin {
                return Err(format!("a write from {origin:?} passed to {host:?}"));
            }
            Ok(())
        })
    });
}
