//! Slack's documented limits for an incoming-webhook message (≤ 50 blocks, section text
//! ≤ 3000 characters, header ≤ 150, ≤ 10 fields of ≤ 2000, the whole message ≤ 40 000),
//! checked by [`check_limits`]. Test-only: the mock Slack rejects what breaks them, and
//! `src/notify/message.rs`'s unit tests hold the worst messages to them (they include
//! this file through `notify::slack`'s `#[cfg(test)]` module). The limits are written out
//! here, not taken from the message builder's constants, so a builder constant changed
//! past Slack's limit fails the tests instead of moving the check along with it. Only
//! `std` and `serde_json`: it compiles both inside the library and in `tests/it`.

use serde_json::Value;

const MAX_BLOCKS: usize = 50;
const MAX_SECTION_TEXT: usize = 3000;
const MAX_HEADER_TEXT: usize = 150;
const MAX_MESSAGE_CHARS: usize = 40_000;
const MAX_FIELDS: usize = 10;
const MAX_FIELD_TEXT: usize = 2000;

/// Why a payload is outside Slack's limits, or `Ok`.
pub fn check_limits(payload: &Value) -> Result<(), String> {
    let text_length = |value: &Value| value.as_str().map_or(0, |text| text.chars().count());
    if text_length(&payload["text"]) > MAX_MESSAGE_CHARS {
        return Err(format!("`text` is over {MAX_MESSAGE_CHARS} characters"));
    }
    let serialized = payload.to_string().chars().count();
    if serialized > MAX_MESSAGE_CHARS {
        return Err(format!(
            "the message is {serialized} characters, over {MAX_MESSAGE_CHARS}"
        ));
    }
    let Some(blocks) = payload.get("blocks") else {
        return if payload["text"].is_string() {
            Ok(())
        } else {
            Err("a message needs `text` or `blocks`".into())
        };
    };
    let blocks = blocks.as_array().ok_or("`blocks` is not an array")?;
    if blocks.len() > MAX_BLOCKS {
        return Err(format!("{} blocks, over {MAX_BLOCKS}", blocks.len()));
    }
    for (number, block) in blocks.iter().enumerate() {
        match block["type"].as_str() {
            Some("header") => {
                if text_length(&block["text"]["text"]) > MAX_HEADER_TEXT {
                    return Err(format!(
                        "block {number}: header over {MAX_HEADER_TEXT} characters"
                    ));
                }
            }
            Some("section") => {
                if text_length(&block["text"]["text"]) > MAX_SECTION_TEXT {
                    return Err(format!(
                        "block {number}: section text over {MAX_SECTION_TEXT} characters"
                    ));
                }
                if let Some(fields) = block["fields"].as_array() {
                    if fields.len() > MAX_FIELDS {
                        return Err(format!("block {number}: over {MAX_FIELDS} fields"));
                    }
                    if fields
                        .iter()
                        .any(|field| text_length(&field["text"]) > MAX_FIELD_TEXT)
                    {
                        return Err(format!(
                            "block {number}: a field over {MAX_FIELD_TEXT} characters"
                        ));
                    }
                }
            }
            Some("context" | "divider" | "actions") => {}
            other => return Err(format!("block {number}: unsupported type {other:?}")),
        }
    }
    Ok(())
}
