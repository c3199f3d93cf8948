//! Tenant names, as `X-Scope-OrgID` and `[tenants.NAME]` give them: generated names near
//! the valid ones (path separators, `..`, dots, upper case, non-ASCII, lengths around the
//! limit) and arbitrary strings. Every accepted name is 1 to 64 bytes of `[a-z0-9_-]` and
//! one plain path component, so a tenant's directory never leaves the data directory.

use std::path::{Component, Path};

use lookout::tenant::{MAX_TENANT_NAME_BYTES, name_error};
use proptest::prelude::*;

use crate::harness::{self, run_case};

fn name_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[a-z0-9_-]{1,8}",
        1 => Just("..".to_string()),
        1 => Just("/".to_string()),
        1 => Just("\\".to_string()),
        1 => Just(".".to_string()),
        1 => Just("\0".to_string()),
        1 => "[A-Z]{1,3}",
        1 => Just("é".to_string()),
        1 => Just("x".repeat(MAX_TENANT_NAME_BYTES)),
    ];
    prop_oneof![
        4 => proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat()),
        1 => any::<String>(),
    ]
}

#[test]
fn accepted_tenant_names_are_one_plain_path_component() {
    harness::check(name_like, |name| {
        run_case("tenant name", format!("{name:?}"), move || {
            if name_error(&name).is_some() {
                return Ok(());
            }
            let allowed = name
                .bytes()
                .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
            let mut components = Path::new(&name).components();
            let plain = matches!(
                (components.next(), components.next()),
                (Some(Component::Normal(_)), None)
            );
            if allowed && plain && (1..=MAX_TENANT_NAME_BYTES).contains(&name.len()) {
                Ok(())
            } else {
                Err(format!("`{name}` was accepted"))
            }
        })
    });
}
