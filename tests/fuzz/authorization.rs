//! The `Authorization` header parser: generated headers of every accepted scheme (with
//! base64 of `id:token`, of text without a colon, of bytes that are not UTF-8), hostile
//! text and oversized values. It never panics, never yields an empty token, refuses
//! headers beyond its size limit unread, and a well-formed `Bearer`/`ApiKey id:key`
//! header round-trips to exactly the token (and id) it was made of.

use base64::Engine;
use lookout::server::auth::{MAX_AUTHORIZATION_BYTES, parse_authorization};
use proptest::prelude::*;

use crate::harness::{self, HOSTILE, run_case};

fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn header() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just("Bearer"),
        Just("bearer"),
        Just("ApiKey"),
        Just("APIKEY"),
        Just("Basic"),
        Just("Digest"),
        Just(""),
    ];
    let credentials = prop_oneof![
        3 => "[ -~]{0,80}",
        2 => "[A-Za-z0-9_.-]{1,20}:[ -~]{0,60}".prop_map(|text| encode(text.as_bytes())),
        1 => proptest::collection::vec(any::<u8>(), 0..60).prop_map(|bytes| encode(&bytes)),
        1 => proptest::sample::select(HOSTILE).prop_map(str::to_string),
        1 => (0usize..3).prop_map(|extra| "x".repeat(MAX_AUTHORIZATION_BYTES + extra)),
    ];
    (scheme, "[ \t]{0,3}", credentials)
        .prop_map(|(scheme, space, credentials)| format!("{scheme} {space}{credentials}"))
}

#[test]
fn authorization_headers_parse_without_panics_or_empty_tokens() {
    harness::check(header, |header| {
        run_case("authorization", header.clone(), move || {
            let parsed = parse_authorization(&header);
            if header.len() > MAX_AUTHORIZATION_BYTES && parsed.is_some() {
                return Err("a header over the limit was parsed".into());
            }
            match parsed {
                Some(credential) if credential.token.trim().is_empty() => {
                    Err(format!("an empty token was accepted: {credential:?}"))
                }
                _ => Ok(()),
            }
        })
    });
}

#[test]
fn well_formed_credentials_round_trip() {
    let strategy = || ("[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", "lk_[A-Za-z0-9_-]{10,43}");
    harness::check(strategy, |(name, token)| {
        run_case(
            "authorization round trip",
            format!("{name}:{token}"),
            move || {
                let bearer = parse_authorization(&format!("Bearer {token}"));
                let api_key = parse_authorization(&format!(
                    "ApiKey {}",
                    encode(format!("{name}:{token}").as_bytes())
                ));
                let basic = parse_authorization(&format!(
                    "Basic {}",
                    encode(format!("user:{token}").as_bytes())
                ));
                let ok = bearer
                    .as_ref()
                    .is_some_and(|c| c.token == token && c.key_name.is_none())
                    && api_key
                        .as_ref()
                        .is_some_and(|c| c.token == token && c.key_name.as_deref() == Some(&*name))
                    && basic.as_ref().is_some_and(|c| c.token == token);
                if ok {
                    Ok(())
                } else {
                    Err(format!("{bearer:?} {api_key:?} {basic:?}"))
                }
            },
        )
    });
}
