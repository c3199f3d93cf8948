//! `lookout rules test RULE.json --from T --to T`: asks the running server to replay the
//! rule over its indexed history (`POST /_lookout/rules/NAME/_backtest`, the same code
//! as the scheduler and the dry run) and prints the timeline of pending, firing and
//! resolved, and the messages it would have sent. Nothing is sent. The report starts with
//! the server it asked and why that one; a server nobody named (no `--server`, no
//! `--config`) is used only when it answers as a Lookout holding the rule's index.
//! An https server with a private CA is trusted through `--ca-file PATH` (added to the
//! system's roots); certificate checks are never switched off.

use std::path::Path;

use serde_json::Value;

/// Where the server is, how to authenticate, and who chose it.
pub struct Server {
    pub url: String,
    pub token: Option<String>,
    pub chosen_by: ServerChoice,
    /// PEM certificate authorities to trust beside the system's (`--ca-file`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Server {
    /// The HTTP client for this server: the system's roots plus `--ca-file`'s.
    fn client(&self, timeout: std::time::Duration) -> Result<reqwest::Client, String> {
        crate::install_tls_provider();
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| format!("--ca-file `{}`: {error}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|roots| !roots.is_empty())
                .ok_or_else(|| {
                    format!(
                        "--ca-file `{}` holds no PEM certificate; give the CA's certificate (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    )
                })?;
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        builder.build().map_err(|error| error.to_string())
    }
}

/// Who named the server a backtest asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerChoice {
    /// `--server URL`.
    Flag,
    /// The listen address of `--config`.
    Config,
    /// Nobody: the default address, used only when it proves to be the right server.
    Default,
}

impl ServerChoice {
    fn describe(self) -> &'static str {
        match self {
            ServerChoice::Flag => "from --server",
            ServerChoice::Config => "the listen address of --config",
            ServerChoice::Default => {
                "the default address, checked to be a Lookout holding the rule's index"
            }
        }
    }
}

/// Whether the server nobody named is a Lookout that holds `index` (for a log rule).
async fn check_default(server: &Server, index: Option<&str>) -> Result<(), String> {
    let refuse = |why: String| {
        format!(
            "no --server or --config given, and {} (the default address) {why}; pass --server URL (or --config FILE) to name the server whose index to replay",
            server.url
        )
    };
    let base = server.url.trim_end_matches('/');
    let client = server.client(std::time::Duration::from_secs(10))?;
    let get = |path: String| {
        let mut request = client.get(format!("{base}{path}"));
        if let Some(token) = &server.token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let info: Value = match get("/_lookout/info".into()).await {
        Ok(response) if response.status().is_success() => {
            response.json().await.unwrap_or(Value::Null)
        }
        Ok(response) => {
            return Err(refuse(format!(
                "does not answer as Lookout (GET /_lookout/info: {})",
                response.status()
            )));
        }
        Err(error) => {
            return Err(refuse(format!(
                "cannot be reached ({})",
                error.without_url()
            )));
        }
    };
    if info["name"] != "lookout" {
        return Err(refuse("does not answer as Lookout".into()));
    }
    if let Some(index) = index {
        let holds = get(format!("/{index}/_count"))
            .await
            .is_ok_and(|response| response.status().is_success());
        if !holds {
            return Err(refuse(format!("is a Lookout without index `{index}`")));
        }
    }
    Ok(())
}

/// How long a backtest may take the server.
const BACKTEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Replays the rule file at `path` over `[from, to]` on `server`; returns the report.
pub async fn run(server: &Server, path: &Path, from: &str, to: &str) -> Result<String, String> {
    // the same checks as the server's, with the file's name in the errors
    let (rule, text) =
        crate::rules::rule::LoadedRule::read(path).map_err(|error| error.to_string())?;
    if server.chosen_by == ServerChoice::Default {
        let index = match &rule.source {
            crate::rules::rule::RuleSource::Logs { index, .. } => Some(index.as_str()),
            crate::rules::rule::RuleSource::Metrics { .. } => None,
        };
        check_default(server, index).await?;
    }
    let url = reqwest::Url::parse_with_params(
        &format!(
            "{}/_lookout/rules/{}/_backtest",
            server.url.trim_end_matches('/'),
            rule.name
        ),
        [("from", from), ("to", to)],
    )
    .map_err(|error| format!("--server `{}`: {error}", server.url))?;
    let mut request = server
        .client(BACKTEST_TIMEOUT)?
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
    Ok(format!(
        "server: {} ({})\n{}",
        server.url,
        server.chosen_by.describe(),
        render(&body)
    ))
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
