//! Reads an existing `prometheus.yml` as-is (`prometheus_config` in lookout.toml):
//! `global.scrape_interval`/`scrape_timeout` and the `scrape_configs` fields Lookout
//! supports are used; every other section (`rule_files`, `alerting`, `remote_write`,
//! `kubernetes_sd_configs`, `tls_config`, …) is ignored with one warning each, so a
//! Prometheus config works unchanged. Relative `file_sd_configs` paths are resolved from
//! the file's directory, as Prometheus does.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::target::ScrapeConfig;

const JOB_FIELDS: &[&str] = &[
    "job_name",
    "scrape_interval",
    "scrape_timeout",
    "metrics_path",
    "scheme",
    "params",
    "static_configs",
    "file_sd_configs",
    "honor_labels",
    "relabel_configs",
    "metric_relabel_configs",
    "basic_auth",
    "bearer_token",
    "bearer_token_file",
    "sample_limit",
];

/// The scrape jobs of `path` and a warning for each section Lookout ignores.
pub fn load(path: &Path) -> Result<(Vec<ScrapeConfig>, Vec<String>), String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
    parse(&text, path)
}

fn parse(text: &str, path: &Path) -> Result<(Vec<ScrapeConfig>, Vec<String>), String> {
    let origin = path.display();
    let root: Value =
        serde_yaml_ng::from_str(text).map_err(|error| format!("{origin}: {error}"))?;
    let Some(root) = root.as_mapping() else {
        return Err(format!(
            "{origin}: not a Prometheus configuration (expected a mapping at the top)"
        ));
    };
    let mut warnings = Vec::new();
    let mut interval = None;
    let mut timeout = None;
    for (key, value) in root {
        let key = key.as_str().unwrap_or_default();
        match key {
            "scrape_configs" => {}
            "global" => {
                for (field, setting) in value.as_mapping().into_iter().flatten() {
                    match field.as_str().unwrap_or_default() {
                        "scrape_interval" => interval = setting.as_str().map(str::to_string),
                        "scrape_timeout" => timeout = setting.as_str().map(str::to_string),
                        other => warnings.push(format!(
                            "{origin}: global.{other} is not supported by Lookout; ignored"
                        )),
                    }
                }
            }
            other => warnings.push(format!(
                "{origin}: {other} is not supported by Lookout; ignored"
            )),
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut jobs = Vec::new();
    let empty = Vec::new();
    let configs = root
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .unwrap_or(&empty);
    for (number, job) in configs.iter().enumerate() {
        let Some(job) = job.as_mapping() else {
            return Err(format!(
                "{origin}: scrape_configs[{number}] is not a mapping"
            ));
        };
        let name = job
            .get("job_name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let mut kept = Mapping::new();
        for (key, value) in job {
            let field = key.as_str().unwrap_or_default();
            if JOB_FIELDS.contains(&field) {
                kept.insert(key.clone(), value.clone());
            } else {
                warnings.push(format!("{origin}: scrape_configs `{name}`: {field} is not supported by Lookout; ignored"));
            }
        }
        for (field, global) in [("scrape_interval", &interval), ("scrape_timeout", &timeout)] {
            if let Some(global) = global
                && !kept.contains_key(field)
            {
                kept.insert(Value::from(field), Value::from(global.as_str()));
            }
        }
        let mut config: ScrapeConfig = serde_yaml_ng::from_value(Value::Mapping(kept))
            .map_err(|error| format!("{origin}: scrape_configs `{name}`: {error}"))?;
        for file_sd in &mut config.file_sd_configs {
            for pattern in &mut file_sd.files {
                if !Path::new(pattern.as_str()).is_absolute() {
                    *pattern = base.join(&*pattern).display().to_string();
                }
            }
        }
        jobs.push(config);
    }
    Ok((jobs, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prometheus_config_is_read_permissively_with_one_warning_per_ignored_section() {
        let text = r#"
global:
  scrape_interval: 15s
  evaluation_interval: 30s
  external_labels:
    region: eu
rule_files:
  - rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["localhost:9093"]
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["localhost:9100"]
        labels:
          env: prod
    relabel_configs:
      - source_labels: [__address__]
        regex: "(.*):9100"
        target_label: host
        replacement: "$1"
    tls_config:
      insecure_skip_verify: true
  - job_name: apps
    scrape_interval: 5s
    file_sd_configs:
      - files: ["targets/*.json"]
    kubernetes_sd_configs:
      - role: pod
remote_write:
  - url: http://example.invalid/write
"#;
        let (jobs, warnings) =
            parse(text, Path::new("/etc/prometheus/prometheus.yml")).expect("parse");
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            jobs[0].scrape_interval,
            Some(std::time::Duration::from_secs(15)),
            "global default applies"
        );
        assert_eq!(
            jobs[1].scrape_interval,
            Some(std::time::Duration::from_secs(5)),
            "the job's own wins"
        );
        assert_eq!(jobs[0].static_configs[0].labels["env"], "prod");
        assert_eq!(
            jobs[0].relabel_configs[0].target_label.as_deref(),
            Some("host")
        );
        assert_eq!(
            jobs[1].file_sd_configs[0].files,
            ["/etc/prometheus/targets/*.json"],
            "relative to the file"
        );
        assert_eq!(warnings.len(), 7, "{warnings:#?}");
        assert!(
            warnings
                .iter()
                .any(|warning| warning.contains("rule_files"))
        );
        assert!(
            warnings
                .iter()
                .any(|warning| warning.contains("`apps`: kubernetes_sd_configs"))
        );
        assert!(
            warnings
                .iter()
                .any(|warning| warning.contains("global.external_labels"))
        );
        assert!(
            parse(
                "scrape_configs: [{job_name: x, scrape_interval: soon}]",
                Path::new("p.yml")
            )
            .is_err()
        );
    }
}
