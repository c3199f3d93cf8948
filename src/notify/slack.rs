//! Slack's side of delivery: [`check_limits`] holds a payload to Slack's documented
//! limits (≤ 50 blocks, section text ≤ 3000 characters, header ≤ 150, the whole message
//! ≤ 40 000); messages are built within them, and the tests' mock Slack rejects anything outside them. Delivery itself
//! (rate limit, `Retry-After`, backoff, final 4xx) is [`super::webhook::Webhook`]'s.

use serde_json::Value;

pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_MESSAGE_CHARS: usize = 40_000;

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
                    if fields.len() > 10 {
                        return Err(format!("block {number}: over 10 fields"));
                    }
                    if fields
                        .iter()
                        .any(|field| text_length(&field["text"]) > 2000)
                    {
                        return Err(format!("block {number}: a field over 2000 characters"));
                    }
                }
            }
            Some("context" | "divider" | "actions") => {}
            other => return Err(format!("block {number}: unsupported type {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_are_slacks() {
        assert!(check_limits(&json!({"text": "hi"})).is_ok());
        assert!(check_limits(&json!({})).is_err());
        let section =
            |text: String| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});
        assert!(check_limits(&json!({"text": "x", "blocks": [section("a".repeat(3000))]})).is_ok());
        assert!(
            check_limits(&json!({"text": "x", "blocks": [section("a".repeat(3001))]}))
                .expect_err("too long")
                .contains("section text over 3000")
        );
        let header =
            json!({"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}});
        assert!(check_limits(&json!({"text": "x", "blocks": [header]})).is_err());
        let many: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        assert!(check_limits(&json!({"text": "x", "blocks": many})).is_err());
        let big: Vec<Value> = (0..20).map(|_| section("b".repeat(2500))).collect();
        assert!(
            check_limits(&json!({"text": "x", "blocks": big}))
                .expect_err("too big")
                .contains("over 40000")
        );
    }
}
