//! `lookout ship`'s command line: the flags ([`ShipFlags`], parsed by `main`'s clap
//! command) laid over the config file, then validated as a config file is. `main` only
//! prints the errors and picks the exit code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::config::{AgentConfig, InputConfig};
use crate::secret::Secret;

/// The flags of `lookout ship`; each overrides the config file's option, `--path` adds
/// an input.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ShipFlags {
    /// Glob of files to tail (`*`, `?`, `**`); repeat for more. Adds one input to
    /// those of the config file.
    #[arg(long = "path", value_name = "GLOB")]
    pub paths: Vec<String>,
    /// Glob of files to skip, for the --path input; repeat for more.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Static field added to every event of the --path input, KEY=VALUE; repeat for more.
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
    /// Base URL of Lookout or an Elasticsearch-compatible server; repeat to ship every
    /// line to each (each destination with its own checkpoints).
    #[arg(long)]
    pub to: Vec<String>,
    /// Index to ship to (default `logs`).
    #[arg(long)]
    pub index: Option<String>,
    /// Where checkpoints and dead letters are kept (default ./agent-state).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Bearer token for the server.
    #[arg(long, env = "LOOKOUT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Serve the agent's metrics at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

/// The agent's config: the file at `config_path` (or the defaults) with `flags` laid
/// over it, validated. The errors are the lines to print, one each.
pub fn ship_config(
    config_path: Option<&Path>,
    flags: ShipFlags,
) -> Result<AgentConfig, Vec<String>> {
    let config = match config_path {
        Some(path) => AgentConfig::load(path)?,
        None => AgentConfig::default(),
    };
    let config = flags.apply(config)?;
    config.validate("command line", "")?;
    Ok(config)
}

impl ShipFlags {
    /// `config` with the flags laid over it (not validated yet); an error is a flag
    /// misused.
    pub fn apply(self, mut config: AgentConfig) -> Result<AgentConfig, Vec<String>> {
        if !self.paths.is_empty() {
            let mut static_fields = serde_json::Map::new();
            for field in &self.fields {
                let Some((key, value)) = field.split_once('=') else {
                    return Err(vec![format!(
                        "--field `{field}`: expected KEY=VALUE, e.g. --field service=checkout"
                    )]);
                };
                static_fields.insert(key.to_string(), value.into());
            }
            config.inputs.push(InputConfig {
                paths: self.paths,
                exclude: self.excludes,
                fields: static_fields,
                ..InputConfig::default()
            });
        } else if !self.excludes.is_empty() || !self.fields.is_empty() {
            return Err(vec![
                "--exclude and --field apply to the --path input; add --path".to_string(),
            ]);
        }
        let mut destinations = self.to.into_iter();
        if let Some(first) = destinations.next() {
            config.to = Some(first);
            config.also_to = destinations.collect();
        }
        if let Some(index) = self.index {
            config.index = index;
        }
        if self.state_dir.is_some() {
            config.state_dir = self.state_dir;
        }
        if let Some(token) = self.token {
            config.token = Some(Secret(token));
        }
        if self.metrics_listen.is_some() {
            config.metrics_listen = self.metrics_listen;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> ShipFlags {
        ShipFlags::default()
    }

    #[test]
    fn no_flags_leave_the_config_as_it_is() {
        let config = AgentConfig {
            to: Some("http://127.0.0.1:9200".into()),
            index: "app".into(),
            ..AgentConfig::default()
        };
        let applied = flags().apply(config.clone()).expect("no flags");
        assert_eq!(
            serde_json::to_value(&applied).expect("serializes"),
            serde_json::to_value(&config).expect("serializes")
        );
    }

    #[test]
    fn flags_override_the_config_file_options() {
        let config = AgentConfig {
            to: Some("http://file:9200".into()),
            index: "file".into(),
            ..AgentConfig::default()
        };
        let applied = ShipFlags {
            to: vec!["http://flag:9200".into()],
            index: Some("flag".into()),
            state_dir: Some(PathBuf::from("/tmp/state")),
            token: Some("s3cret".into()),
            metrics_listen: Some("127.0.0.1:9101".parse().expect("address")),
            ..flags()
        }
        .apply(config)
        .expect("valid flags");
        assert_eq!(applied.to.as_deref(), Some("http://flag:9200"));
        assert_eq!(applied.index, "flag");
        assert_eq!(applied.state_dir, Some(PathBuf::from("/tmp/state")));
        assert_eq!(applied.token, Some(Secret("s3cret".into())));
        assert_eq!(
            applied.metrics_listen,
            Some("127.0.0.1:9101".parse().expect("address"))
        );
    }

    #[test]
    fn path_flags_add_one_input_with_its_excludes_and_fields() {
        let config = AgentConfig {
            inputs: vec![InputConfig {
                paths: vec!["/var/log/file/*.json".into()],
                ..InputConfig::default()
            }],
            ..AgentConfig::default()
        };
        let applied = ShipFlags {
            paths: vec!["/var/log/app/*.json".into(), "/var/log/web/*.json".into()],
            excludes: vec!["**/*.gz".into()],
            fields: vec!["service=checkout".into(), "env=a=b".into()],
            ..flags()
        }
        .apply(config)
        .expect("valid flags");
        assert_eq!(applied.inputs.len(), 2, "the file's input is kept");
        let added = &applied.inputs[1];
        assert_eq!(added.paths, ["/var/log/app/*.json", "/var/log/web/*.json"]);
        assert_eq!(added.exclude, ["**/*.gz"]);
        assert_eq!(
            serde_json::Value::Object(added.fields.clone()),
            serde_json::json!({"service": "checkout", "env": "a=b"})
        );
    }

    #[test]
    fn a_field_without_equals_sign_is_refused() {
        let error = ShipFlags {
            paths: vec!["*.json".into()],
            fields: vec!["service".into()],
            ..flags()
        }
        .apply(AgentConfig::default())
        .expect_err("no `=`");
        assert_eq!(
            error,
            ["--field `service`: expected KEY=VALUE, e.g. --field service=checkout"]
        );
    }

    #[test]
    fn excludes_or_fields_without_a_path_are_refused() {
        for flags in [
            ShipFlags {
                excludes: vec!["*.gz".into()],
                ..flags()
            },
            ShipFlags {
                fields: vec!["a=b".into()],
                ..flags()
            },
        ] {
            let error = flags.apply(AgentConfig::default()).expect_err("no --path");
            assert_eq!(
                error,
                ["--exclude and --field apply to the --path input; add --path"]
            );
        }
    }

    #[test]
    fn the_merged_config_is_validated_as_the_command_line() {
        let error = ship_config(
            None,
            ShipFlags {
                index: Some("Bad Index".into()),
                ..flags()
            },
        )
        .expect_err("invalid index");
        assert!(
            error[0].starts_with("command line: `index`: must be a valid index name"),
            "{error:?}"
        );
    }
}
