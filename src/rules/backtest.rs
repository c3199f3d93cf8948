//! `lookout rules test RULE.json --from T --to T`: asks the running server to replay the
//! rule over its indexed history (`POST /_lookout/rules/NAME/_backtest`, the same code
//! as the scheduler and the dry run) and prints the timeline of pending, firing and
//! resolved, and the messages it would have sent. Nothing is sent.

use std::path::Path;

use serde_json::Value;

/// Where the server is and how to authenticate.
pub struct Server {
    pub url: String,
    pub token: Option<String>,
}

/// Replays the rule file at `path` over `[from, to]` on `server`; returns the report.
pub async fn run(server: &Server, path: &Path, from: &str, to: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default();
    // the same checks as the server's, with the file's name in the errors
    super::manager::LoadedRule::parse(&text, name, &path.display().to_string())?;
    let url = reqwest::Url::parse_with_params(
        &format!(
            "{}/_lookout/rules/{name}/_backtest",
            server.url.trim_end_matches('/')
        ),
        [("from", from), ("to", to)],
    )
    .map_err(|error| format!("--server `{}`: {error}", server.url))?;
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(text);
    if let Some(token) = &server.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|error| {
        format!(
            "cannot reach the server at {} ({}): backtests replay the index of a running `lookout serve`; start it or pass --server URL",
            server.url,
            error.without_url()
        )
    })?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|error| format!("the server's answer is not JSON: {}", error.without_url()))?;
    if !status.is_success() {
        return Err(format!(
            "the server refused the backtest ({status}): {}",
            body["error"]["reason"].as_str().unwrap_or_default()
        ));
    }
    Ok(render(&body))
}

/// The report of a backtest answer: one line per transition, then the messages.
pub fn render(answer: &Value) -> String {
    let mut out = format!(
        "backtest of {} from {} to {}: {} evaluations\n",
        answer["rule"].as_str().unwrap_or_default(),
        answer["from"].as_str().unwrap_or_default(),
        answer["to"].as_str().unwrap_or_default(),
        answer["evaluations"]
    );
    let timeline = answer["timeline"].as_array().cloned().unwrap_or_default();
    if timeline.is_empty() {
        out.push_str("\nno transitions: the rule would have stayed quiet\n");
    } else {
        out.push_str("\ntimeline:\n");
    }
    for event in &timeline {
        let labels = event["labels"]
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  {:<8} → {:<8}  value {}  {{{labels}}}{}\n",
            event["@timestamp"].as_str().unwrap_or_default(),
            event["from"].as_str().unwrap_or_default(),
            event["to"].as_str().unwrap_or_default(),
            event["value"],
            event["reason"]
                .as_str()
                .filter(|reason| *reason != "condition")
                .map(|reason| format!("  ({reason})"))
                .unwrap_or_default()
        ));
    }
    let messages = answer["messages"].as_array().cloned().unwrap_or_default();
    if !messages.is_empty() {
        out.push_str(&format!(
            "\nmessages it would have sent ({}):\n",
            messages.len()
        ));
    }
    for message in &messages {
        out.push_str(&format!(
            "  {} → {}: {}\n",
            message["at"].as_str().unwrap_or_default(),
            message["notifier"].as_str().unwrap_or_default(),
            message["text"].as_str().unwrap_or_default()
        ));
    }
    out
}
