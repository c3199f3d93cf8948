//! What the agent reads: `config/agent.toml` for `lookout ship`, or the `[agent]` table of
//! `lookout.toml` for the inputs `lookout serve` tails in-process. Same type, same
//! defaults, same validation ([`AgentConfig::validate`] collects every error with its
//! file and field).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::batch::NonJson;

/// The agent: where to ship, how, and which files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Base URL of Lookout or of any Elasticsearch-compatible `_bulk` endpoint
    /// (`http://` or `https://`). In `lookout serve`, the default is the server itself.
    pub to: Option<String>,
    /// More destinations (`lookout ship --to A --to B`): every line goes to `to` and to
    /// each of these, exactly once each, every destination with its own reader and
    /// checkpoints (the first in `state_dir`, the others in `state_dir/destination-N`),
    /// so a destination that is down or slow holds up none of the others. Not in
    /// `lookout serve`'s `[agent]`, which ships to its own server only.
    pub also_to: Vec<String>,
    /// Index the lines go to (inputs may override it).
    pub index: String,
    /// Where checkpoints, the agent id and dead-lettered lines are kept (default for
    /// `lookout ship`: `./agent-state`; in `lookout serve`: `<data_dir>/state/agent`).
    pub state_dir: Option<PathBuf>,
    /// Token sent as `Authorization: Bearer` (prefer `token_env` or `token_file`).
    #[serde(skip_serializing)]
    pub token: Option<crate::secret::Secret>,
    /// Name of an environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token (trailing newline ignored).
    pub token_file: Option<PathBuf>,
    /// The tenant the lines go to on a Lookout with tenants, sent as `X-Scope-OrgID` on
    /// every request (default: none, the server's default tenant or the key's).
    pub tenant: Option<String>,
    /// Extra CA certificate(s) to trust for an `https://` server, PEM (the system's
    /// trusted roots are always used).
    pub tls_ca_file: Option<PathBuf>,
    /// For a server that requires mutual TLS: this agent's certificate chain, PEM.
    pub tls_client_cert_file: Option<PathBuf>,
    /// The private key of `tls_client_cert_file`, PEM.
    pub tls_client_key_file: Option<PathBuf>,
    /// `host.name` added to every event (default: this machine's host name).
    pub host_name: Option<String>,
    /// A batch is sent once it holds this many bytes (uncompressed NDJSON) ...
    pub batch_max_bytes: usize,
    /// ... or this many lines ...
    pub batch_max_lines: usize,
    /// ... or its first line has waited this long.
    #[serde(with = "crate::duration_serde")]
    pub batch_linger: Duration,
    /// gzip level of request bodies, 0 (off) to 9.
    pub gzip_level: u32,
    /// Longer lines go to the dead-letter file whole, never split.
    pub max_line_bytes: usize,
    /// What to do with a line that is not JSON: `wrap` it as `{"message": "<line>"}` or
    /// `dead_letter` it.
    pub non_json: NonJson,
    /// Open files are read at least this often (events from `notify` wake the agent
    /// sooner).
    #[serde(with = "crate::duration_serde")]
    pub poll_interval: Duration,
    /// The glob patterns are expanded again at least this often (filesystems without
    /// events still get new files picked up).
    #[serde(with = "crate::duration_serde")]
    pub rescan_interval: Duration,
    /// A file renamed away from the patterns, or deleted, is read to its end and then
    /// kept open this long for late writes before it is released.
    #[serde(with = "crate::duration_serde")]
    pub rotate_wait: Duration,
    /// Checkpoints of files not seen on disk for this long are forgotten.
    #[serde(with = "crate::duration_serde")]
    pub forget_after: Duration,
    /// Timeout of one HTTP request.
    #[serde(with = "crate::duration_serde")]
    pub request_timeout: Duration,
    /// First retry delay after a failure (doubles up to `backoff_max`, with jitter).
    #[serde(with = "crate::duration_serde")]
    pub backoff_min: Duration,
    #[serde(with = "crate::duration_serde")]
    pub backoff_max: Duration,
    /// An idle agent tells Lookout its watermark this often.
    #[serde(with = "crate::duration_serde")]
    pub heartbeat_interval: Duration,
    /// On SIGINT/SIGTERM, how long to keep shipping what was read before giving up (what
    /// is left is shipped after the next start; nothing is lost).
    #[serde(with = "crate::duration_serde")]
    pub shutdown_timeout: Duration,
    /// Serve the agent's own metrics (Prometheus text) at `http://ADDR/metrics`.
    pub metrics_listen: Option<SocketAddr>,
    /// The files to tail.
    pub inputs: Vec<InputConfig>,
}

/// One group of files with the same index and fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Glob patterns (`*`, `?`, `[..]`, and `**` for any depth of directories).
    pub paths: Vec<String>,
    /// Files matching any of these patterns are skipped (matched against the whole path,
    /// e.g. `"**/*.gz"`).
    pub exclude: Vec<String>,
    /// Index for this input (default: the agent's `index`).
    pub index: Option<String>,
    /// Static fields added to every event unless the application logged the same key,
    /// e.g. `{ service = "checkout", env = "prod" }`.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Where a file seen for the first time is read from: `beginning` or `end` (the end
    /// of its last complete line).
    pub read_from: ReadFrom,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            to: None,
            also_to: Vec::new(),
            index: "logs".into(),
            state_dir: None,
            token: None,
            token_env: None,
            token_file: None,
            tenant: None,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            host_name: None,
            batch_max_bytes: 1024 * 1024,
            batch_max_lines: 10_000,
            batch_linger: Duration::from_millis(250),
            gzip_level: 1,
            max_line_bytes: 1024 * 1024,
            non_json: NonJson::Wrap,
            poll_interval: Duration::from_millis(250),
            rescan_interval: Duration::from_secs(10),
            rotate_wait: Duration::from_secs(5),
            forget_after: Duration::from_secs(7 * 24 * 3600),
            request_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(10),
            metrics_listen: None,
            inputs: Vec::new(),
        }
    }
}

impl AgentConfig {
    /// Reads `config/agent.toml`-style files (the agent options at the top level).
    pub fn load(path: &Path) -> Result<AgentConfig, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| vec![format!("{}: cannot read: {error}", path.display())])?;
        let config: AgentConfig = toml::from_str(&text).map_err(|error| {
            vec![crate::diagnostic::toml_error(
                &path.display().to_string(),
                &text,
                &error,
            )]
        })?;
        config.validate(&path.display().to_string(), "")?;
        Ok(config)
    }

    /// The client certificate and key for mutual TLS, when configured; `Err` names the
    /// field and says what is wrong.
    pub fn client_identity(&self) -> Result<Option<reqwest::Identity>, (&'static str, String)> {
        let (cert_file, key_file) = match (&self.tls_client_cert_file, &self.tls_client_key_file) {
            (None, None) => return Ok(None),
            (Some(cert_file), Some(key_file)) => (cert_file, key_file),
            (Some(_), None) => {
                return Err((
                    "tls_client_key_file",
                    "is needed with `tls_client_cert_file`".to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err((
                    "tls_client_cert_file",
                    "is needed with `tls_client_key_file`".to_owned(),
                ));
            }
        };
        let read = |field, path: &Path| {
            std::fs::read(path)
                .map_err(|error| (field, format!("cannot read `{}`: {error}", path.display())))
        };
        let mut pem = read("tls_client_cert_file", cert_file)?;
        pem.push(b'\n');
        pem.extend(read("tls_client_key_file", key_file)?);
        crate::install_tls_provider();
        reqwest::Identity::from_pem(&pem)
            .map(Some)
            .map_err(|error| {
                (
                    "tls_client_cert_file",
                    format!(
                        "`{}` with `{}` is not a PEM certificate and private key: {error}",
                        cert_file.display(),
                        key_file.display()
                    ),
                )
            })
    }

    /// Checks what types cannot. `origin` names the file, `prefix` the table the options
    /// live in (`""` in agent.toml, `"agent."` in lookout.toml).
    pub fn validate(&self, origin: &str, prefix: &str) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &str, message: &str| {
            if !ok {
                errors.push(format!("{origin}: `{prefix}{field}`: {message}"));
            }
        };
        for (field, to) in self
            .to
            .iter()
            .map(|to| ("to", to))
            .chain(self.also_to.iter().map(|to| ("also_to", to)))
        {
            let parsed = reqwest::Url::parse(to);
            check(
                parsed
                    .as_ref()
                    .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host()),
                field,
                "must be an http:// or https:// URL, e.g. \"http://127.0.0.1:9200\"",
            );
        }
        check(
            self.also_to.is_empty() || self.to.is_some(),
            "also_to",
            "needs `to` (the first destination)",
        );
        check(
            self.also_to.len() <= 16,
            "also_to",
            "at most 16 more destinations",
        );
        check(
            prefix.is_empty() || self.also_to.is_empty(),
            "also_to",
            "the in-process agent ships to this server only; run `lookout ship --to A --to B` to ship to several",
        );
        if let Some(tenant) = &self.tenant
            && let Some(error) = crate::tenant::name::name_error(tenant)
        {
            check(false, "tenant", &error);
        }
        check(
            crate::index_name::validate_index_name(&self.index).is_ok(),
            "index",
            "must be a valid index name (lowercase, no spaces or `\\/*?\"<>|,#:`)",
        );
        check(
            self.batch_max_bytes >= 1024,
            "batch_max_bytes",
            "must be at least 1024",
        );
        check(
            self.batch_max_lines >= 1,
            "batch_max_lines",
            "must be at least 1",
        );
        check(self.gzip_level <= 9, "gzip_level", "must be 0 (off) to 9");
        check(
            self.max_line_bytes >= 1024,
            "max_line_bytes",
            "must be at least 1024",
        );
        check(
            self.poll_interval >= Duration::from_millis(10),
            "poll_interval",
            "must be at least 10ms",
        );
        check(
            self.backoff_min > Duration::ZERO && self.backoff_min <= self.backoff_max,
            "backoff_min",
            "must be above zero and at most backoff_max",
        );
        check(
            self.heartbeat_interval > Duration::ZERO,
            "heartbeat_interval",
            "must be above zero",
        );
        check(
            self.request_timeout > Duration::ZERO,
            "request_timeout",
            "must be above zero",
        );
        for (number, input) in self.inputs.iter().enumerate() {
            let field = |name: &str| format!("inputs[{number}].{name}");
            check(
                !input.paths.is_empty(),
                &field("paths"),
                "must list at least one glob pattern, e.g. [\"/var/log/app/*.json\"]",
            );
            for pattern in input.paths.iter().chain(&input.exclude) {
                if let Err(error) = glob::Pattern::new(pattern) {
                    check(
                        false,
                        &field("paths"),
                        &format!("invalid glob pattern `{pattern}`: {error}"),
                    );
                }
            }
            if let Some(index) = &input.index {
                check(
                    crate::index_name::validate_index_name(index).is_ok(),
                    &field("index"),
                    "must be a valid index name",
                );
            }
        }
        if let Some(path) = &self.tls_ca_file {
            match std::fs::read(path) {
                Ok(pem) => check(
                    reqwest::Certificate::from_pem_bundle(&pem)
                        .is_ok_and(|certificates| !certificates.is_empty()),
                    "tls_ca_file",
                    &format!("`{}` holds no PEM certificate", path.display()),
                ),
                Err(error) => check(
                    false,
                    "tls_ca_file",
                    &format!("cannot read `{}`: {error}", path.display()),
                ),
            }
        }
        if let Err((field, error)) = self.client_identity() {
            errors.push(format!("{origin}: `{prefix}{field}`: {error}"));
        }
        if let Err(error) = self.resolve_token() {
            errors.push(format!("{origin}: `{prefix}{error}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The token, read from wherever it is configured.
    pub fn resolve_token(&self) -> Result<Option<String>, String> {
        crate::secret::resolve_secret(
            self.token.as_ref().map(|secret| secret.0.as_str()),
            self.token_env.as_deref(),
            self.token_file.as_deref(),
        )
        .map_err(|(field, error)| format!("token_{field}`: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_destinations_need_a_first_and_only_lookout_ship_takes_them() {
        let config = AgentConfig {
            to: None,
            also_to: vec!["http://b:9200".into(), "ftp://c".into()],
            ..AgentConfig::default()
        };
        let errors = config.validate("agent.toml", "").expect_err("invalid");
        let text = errors.join("\n");
        assert!(text.contains("`also_to`: needs `to`"), "{text}");
        assert!(
            text.contains("`also_to`: must be an http:// or https:// URL"),
            "{text}"
        );
        let in_serve = AgentConfig {
            to: Some("http://a:9200".into()),
            also_to: vec!["http://b:9200".into()],
            ..AgentConfig::default()
        };
        let errors = in_serve
            .validate("lookout.toml", "agent.")
            .expect_err("invalid");
        assert!(
            errors[0].contains("`agent.also_to`: the in-process agent ships to this server only"),
            "{errors:?}"
        );
        let flags = super::super::cli::ShipFlags {
            to: vec!["http://a:9200".into(), "http://b:9200".into()],
            ..Default::default()
        };
        let applied = flags.apply(AgentConfig::default()).expect("applies");
        assert_eq!(applied.to.as_deref(), Some("http://a:9200"));
        assert_eq!(applied.also_to, ["http://b:9200"]);
    }

    #[test]
    fn shipped_agent_config_parses_and_documents_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/agent.toml");
        let mut config = AgentConfig::load(&path).expect("config/agent.toml is valid");
        assert_eq!(config.inputs.len(), 1);
        assert_eq!(config.inputs[0].fields["service"], "checkout");
        // `to` and the inputs are the user's; every other option shows its default
        config.to = None;
        config.inputs.clear();
        assert_eq!(
            serde_json::to_value(&config).expect("serializes"),
            serde_json::to_value(AgentConfig::default()).expect("serializes"),
            "config/agent.toml must document the defaults"
        );
    }

    #[test]
    fn every_error_names_its_field() {
        let config: AgentConfig = toml::from_str(
            r#"
            to = "ftp://example"
            gzip_level = 12
            tls_client_cert_file = "agent.crt"
            [[inputs]]
            paths = []
            [[inputs]]
            paths = ["logs/[.json"]
            "#,
        )
        .expect("parses");
        let errors = config.validate("agent.toml", "").expect_err("invalid");
        let text = errors.join("\n");
        for field in [
            "`to`",
            "`gzip_level`",
            "`inputs[0].paths`",
            "`inputs[1].paths`",
            "`tls_client_key_file`: is needed with `tls_client_cert_file`",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
        assert!(errors.iter().all(|error| error.starts_with("agent.toml: ")));
    }
}
