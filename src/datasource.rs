//! Remote query datasources (`[datasources.NAME]`, `type = "prometheus"`): a rule with
//! `"datasource": "NAME"` sends its `promql` (and `context`) to that Prometheus-compatible
//! query API (Prometheus, Thanos Query, Mimir, VictoriaMetrics) as `GET
//! /api/v1/query?query=…&time=…` instead of evaluating it locally. Consumes the rule's
//! expression text and tick; produces the instant vector the local engine would (labels
//! sorted, `__name__` kept), or an error that says which datasource failed and how (down,
//! an HTTP status, a query the remote refused, an answer that is not Prometheus' shape).
//!
//! Every call has the datasource's `timeout`; an answer larger than
//! [`MAX_RESPONSE_BYTES`] is refused rather than read. It does not retry: the rule's next
//! tick is the retry, and a failure is the rule's `last_error` like a local one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http_auth::{AuthHeader, AuthorizationConfig, BasicAuthConfig, ClientAuth};
use crate::tsdb::head::Labels;

/// The largest answer read from a datasource.
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// `[datasources.NAME]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasourceConfig {
    /// The API it speaks; `prometheus` (Prometheus' HTTP query API) is the one there is.
    #[serde(rename = "type")]
    pub kind: DatasourceKind,
    /// Base URL; `/api/v1/query` is appended (e.g. `http://prometheus:9090`,
    /// `http://mimir/prometheus`).
    pub url: String,
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    #[serde(default)]
    pub authorization: Option<AuthorizationConfig>,
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Longest wait for one query.
    #[serde(
        default = "DatasourceConfig::default_timeout",
        with = "crate::duration_serde"
    )]
    pub timeout: Duration,
}

impl DatasourceConfig {
    fn default_timeout() -> Duration {
        Duration::from_secs(30)
    }

    fn auth(&self) -> ClientAuth<'_> {
        ClientAuth {
            basic_auth: self.basic_auth.as_ref(),
            authorization: self.authorization.as_ref(),
            bearer_token_env: self.bearer_token_env.as_deref(),
            bearer_token_file: self.bearer_token_file.as_deref(),
        }
    }
}

/// What a datasource speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasourceKind {
    Prometheus,
}

/// Why a query to a datasource gave no vector.
#[derive(Debug, thiserror::Error)]
pub enum DatasourceError {
    #[error("datasource `{0}` is not configured (define [datasources.{0}] in lookout.toml)")]
    Unknown(String),
    #[error("datasource `{name}`: cannot reach {url}: {error}")]
    Unreachable {
        name: String,
        url: String,
        error: String,
    },
    #[error("datasource `{name}`: the query took longer than its timeout ({timeout:?})")]
    Timeout { name: String, timeout: Duration },
    #[error("datasource `{name}` refused the query ({error_type}): {error}")]
    Query {
        name: String,
        error_type: String,
        error: String,
    },
    #[error("datasource `{name}` answered HTTP {status}: {body}")]
    Status {
        name: String,
        status: u16,
        body: String,
    },
    #[error(
        "datasource `{name}` answered something that is not a Prometheus query result: {reason}"
    )]
    BadResponse { name: String, reason: String },
}

/// One datasource, ready to query.
struct Datasource {
    /// The base URL, without a trailing `/`; endpoints (`/api/v1/query`) are appended.
    base: String,
    auth: Option<AuthHeader>,
    timeout: Duration,
}

/// Every configured datasource.
#[derive(Default)]
pub struct Datasources {
    sources: BTreeMap<String, Datasource>,
    client: Option<reqwest::Client>,
}

impl Datasources {
    /// Checks `configs` (URL, auth secrets); every error names its field.
    pub fn build(configs: &BTreeMap<String, DatasourceConfig>) -> Result<Datasources, Vec<String>> {
        let mut errors = Vec::new();
        let mut sources = BTreeMap::new();
        for (name, config) in configs {
            let prefix = format!("datasources.{name}");
            let base = config.url.trim_end_matches('/');
            let valid = reqwest::Url::parse(&config.url).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.query().is_none()
                    && url.fragment().is_none()
                    && reqwest::Url::parse(&format!("{base}/api/v1/query")).is_ok()
            });
            if !valid {
                errors.push(format!(
                    "`{prefix}.url`: `{}` is not an http(s) URL like \"http://prometheus:9090\"",
                    config.url
                ));
                continue;
            };
            if config.timeout.is_zero() {
                errors.push(format!("`{prefix}.timeout`: must be longer than 0s"));
            }
            match config.auth().header(&prefix) {
                Ok(auth) => {
                    sources.insert(
                        name.clone(),
                        Datasource {
                            base: base.to_string(),
                            auth,
                            timeout: config.timeout,
                        },
                    );
                }
                Err(error) => errors.push(error),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let client = (!sources.is_empty()).then(|| {
            reqwest::Client::builder()
                .build()
                .expect("a client without custom TLS builds")
        });
        Ok(Datasources { sources, client })
    }

    /// Whether `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// The configured names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// Evaluates `query` at `at_ms` on datasource `name`: its instant vector (a scalar is
    /// one unlabeled sample, as a rule evaluation has it).
    pub async fn instant(
        &self,
        name: &str,
        query: &str,
        at_ms: i64,
    ) -> Result<Vec<(Labels, f64)>, DatasourceError> {
        let time = format!("{:.3}", at_ms as f64 / 1000.0);
        let answer = self
            .get(name, "query", &[("query", query), ("time", &time)])
            .await?;
        parse_query_response(&answer.body).map_err(|problem| match problem {
            ResponseProblem::Refused { error_type, error } => DatasourceError::Query {
                name: name.to_string(),
                error_type,
                error,
            },
            ResponseProblem::Malformed(_) if !(200..300).contains(&answer.status) => {
                DatasourceError::Status {
                    name: name.to_string(),
                    status: answer.status,
                    body: String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
                        .into_owned(),
                }
            }
            ResponseProblem::Malformed(reason) => DatasourceError::BadResponse {
                name: name.to_string(),
                reason,
            },
        })
    }

    /// `GET /api/v1/{endpoint}?{params}` on datasource `name`, with its auth and timeout:
    /// the answer as it came (any status), or why there is none. The body is read up to
    /// [`MAX_RESPONSE_BYTES`].
    pub async fn get(
        &self,
        name: &str,
        endpoint: &str,
        params: &[(&str, &str)],
    ) -> Result<RemoteAnswer, DatasourceError> {
        let (Some(source), Some(client)) = (self.sources.get(name), &self.client) else {
            return Err(DatasourceError::Unknown(name.to_string()));
        };
        let endpoint_url = format!("{}/api/v1/{endpoint}", source.base);
        let mut url =
            reqwest::Url::parse(&endpoint_url).map_err(|error| DatasourceError::Unreachable {
                name: name.to_string(),
                url: endpoint_url.clone(),
                error: error.to_string(),
            })?;
        url.query_pairs_mut().extend_pairs(params);
        let mut request = client.get(url).timeout(source.timeout);
        if let Some(auth) = &source.auth {
            request = request.header(reqwest::header::AUTHORIZATION, &auth.0);
        }
        let failed = |error: reqwest::Error| {
            if error.is_timeout() {
                DatasourceError::Timeout {
                    name: name.to_string(),
                    timeout: source.timeout,
                }
            } else {
                DatasourceError::Unreachable {
                    name: name.to_string(),
                    url: endpoint_url.clone(),
                    error: error_chain(&error),
                }
            }
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(DatasourceError::BadResponse {
                    name: name.to_string(),
                    reason: format!("larger than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RemoteAnswer { status, body })
    }
}

/// An answer of a datasource's API, as it came.
pub struct RemoteAnswer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// An error with its causes (reqwest's own message hides why a connection failed).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What is wrong with an answer of `/api/v1/query`.
#[derive(Debug, PartialEq)]
pub enum ResponseProblem {
    /// `status: "error"`: the remote refused the query.
    Refused { error_type: String, error: String },
    /// Not Prometheus' shape.
    Malformed(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<VectorSample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The instant vector of an `/api/v1/query` answer `body` (Prometheus' JSON shape); a
/// scalar is one unlabeled sample.
pub fn parse_query_response(body: &[u8]) -> Result<Vec<(Labels, f64)>, ResponseProblem> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|error| ResponseProblem::Malformed(format!("invalid JSON: {error}")))?;
    if envelope.status != "success" {
        return Err(ResponseProblem::Refused {
            error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
            error: envelope.error.unwrap_or_default(),
        });
    }
    let value = |text: &str| {
        crate::scrape::exposition::parse_float(text)
            .ok_or_else(|| ResponseProblem::Malformed(format!("`{text}` is not a sample value")))
    };
    match envelope.data {
        Some(Data::Vector(samples)) => samples
            .into_iter()
            .map(|sample| {
                let labels: Labels = sample.metric.into_iter().collect::<Vec<_>>().into();
                Ok((labels, value(&sample.value.1)?))
            })
            .collect(),
        Some(Data::Scalar((_, text))) => Ok(vec![(Arc::from(Vec::new()), value(&text)?)]),
        Some(Data::Matrix(_)) | Some(Data::String(_)) => Err(ResponseProblem::Malformed(
            "a rule's expression must give an instant vector or a scalar".into(),
        )),
        None => Err(ResponseProblem::Malformed("no `data`".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_scalars_and_errors_of_the_query_api_are_read() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"a"},"value":[1700000000.5,"1"]},
            {"metric":{"job":"b"},"value":[1700000000.5,"+Inf"]}]}}"#;
        let samples = parse_query_response(vector).expect("a vector");
        assert_eq!(samples.len(), 2);
        assert_eq!(
            &*samples[0].0,
            &[
                ("__name__".to_string(), "up".to_string()),
                ("job".to_string(), "a".to_string())
            ]
        );
        assert_eq!(samples[1].1, f64::INFINITY);
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2.5"]}}"#;
        assert_eq!(parse_query_response(scalar).expect("scalar")[0].1, 2.5);
        let refused = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            parse_query_response(refused),
            Err(ResponseProblem::Refused {
                error_type: "bad_data".into(),
                error: "parse error".into()
            })
        );
        assert!(matches!(
            parse_query_response(b"<html>"),
            Err(ResponseProblem::Malformed(_))
        ));
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse_query_response(matrix),
            Err(ResponseProblem::Malformed(reason)) if reason.contains("instant vector")
        ));
    }

    #[test]
    fn configs_with_bad_urls_or_missing_secrets_are_refused_by_field() {
        let config: BTreeMap<String, DatasourceConfig> = toml::from_str(
            r#"
            [prom]
            type = "prometheus"
            url = "ftp://x"
            [thanos]
            type = "prometheus"
            url = "http://127.0.0.1:9090/"
            bearer_token_env = "LOOKOUT_TEST_SURELY_UNSET_TOKEN"
            "#,
        )
        .expect("parses");
        let errors = Datasources::build(&config).err().expect("invalid");
        assert!(
            errors[0].starts_with("`datasources.prom.url`"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("`datasources.thanos.bearer_token_env`"),
            "{errors:?}"
        );
    }
}
