//! The rule files of `queries/`: listed and read (a file unchanged since the last read
//! is not read again), written and deleted through the rules API (checked first, written
//! atomically), and watched — file events, writes through the API and a rescan every 10 s
//! wake the reload.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::rule::LoadedRule;

/// Why a rule could not be written.
#[derive(Debug)]
pub enum PutRuleError {
    /// The rule is invalid: what is wrong, with its field.
    Invalid(String),
    /// A new rule while the tenant runs `limits.max_rules` rules: why, with the limit.
    LimitReached(String),
    Io(std::io::Error),
}

/// A file's inode, size and modification time, and its text.
type FileIdentity = ((u64, u64, i64, i64), String);

/// The `queries/` directory.
pub struct QueryDir {
    directory: PathBuf,
    /// The rule files as last read, with their inode, size and modification time.
    file_cache: std::sync::Mutex<BTreeMap<PathBuf, FileIdentity>>,
    /// Woken by file events and by the rules API: reload `queries/` now.
    reload_now: Arc<tokio::sync::Notify>,
}

impl QueryDir {
    pub fn new(directory: PathBuf) -> QueryDir {
        QueryDir {
            directory,
            file_cache: Default::default(),
            reload_now: Default::default(),
        }
    }

    /// How errors and warnings name rule `name`'s file.
    pub fn origin(&self, name: &str) -> String {
        self.directory
            .join(format!("{name}.json"))
            .display()
            .to_string()
    }

    /// Runs `reload` now, then whenever the directory may have changed — a file event
    /// (the directory is watched once it exists), a write through the API, or 10 s
    /// without either — until `cancel`.
    pub async fn watch<F: Future<Output = ()>>(
        &self,
        cancel: &CancellationToken,
        mut reload: impl FnMut() -> F,
    ) {
        let changed = Arc::clone(&self.reload_now);
        let events = Arc::clone(&changed);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // our own reads of the files are events too (open, access, close): reacting
                // to them would reload forever
                if event.is_ok_and(|event| !matches!(event.kind, notify::EventKind::Access(_))) {
                    events.notify_one();
                }
            })
            .map_err(|error| tracing::warn!(%error, "cannot watch queries; rescanning every 10 s"))
            .ok();
        // a directory that does not exist yet (the rules API creates it) is watched once
        // it does
        let mut watching = false;
        loop {
            if !watching && let Some(watcher) = &mut watcher {
                use notify::Watcher;
                watching = watcher
                    .watch(&self.directory, notify::RecursiveMode::NonRecursive)
                    .is_ok();
            }
            reload().await;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = changed.notified() => {
                    // an editor writes in several steps: let them settle
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                () = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    }

    /// The `*.json` files of `queries/` by rule name, with their text. A file whose
    /// inode, size and modification time are those of the last read is not read again.
    pub fn files(&self) -> BTreeMap<String, (PathBuf, String)> {
        use std::os::unix::fs::MetadataExt;
        let mut cache = self
            .file_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut files = BTreeMap::new();
        let mut seen = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.directory) {
            for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
                if path.extension().is_none_or(|extension| extension != "json") {
                    continue;
                }
                let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
                    continue;
                };
                let Ok(metadata) = std::fs::metadata(&path) else {
                    continue;
                };
                let identity = (
                    metadata.ino(),
                    metadata.len(),
                    metadata.mtime_nsec(),
                    metadata.mtime(),
                );
                let text = match cache.remove(&path) {
                    Some((cached, text)) if cached == identity => text,
                    _ => match std::fs::read_to_string(&path) {
                        Ok(text) => text,
                        Err(_) => continue,
                    },
                };
                seen.insert(path.clone(), (identity, text.clone()));
                files.insert(name.to_string(), (path, text));
            }
        }
        *cache = seen;
        files
    }

    /// The text of rule `name`'s file, if there is one.
    pub fn text(&self, name: &str) -> Option<String> {
        if !super::model::valid_name(name) {
            return None;
        }
        std::fs::read_to_string(self.directory.join(format!("{name}.json"))).ok()
    }

    /// Checks `text` as rule `name` and writes it to `queries/NAME.json` (atomically),
    /// then reloads; returns whether the rule is new. Nothing is written when it is
    /// invalid.
    pub fn write(&self, name: &str, text: &str) -> Result<bool, PutRuleError> {
        if !super::model::valid_name(name) {
            return Err(PutRuleError::Invalid(format!(
                "`{name}`: a rule name is [A-Za-z0-9_-]+ (it becomes the file name)"
            )));
        }
        LoadedRule::parse(text, name, "request body")
            .map_err(|error| PutRuleError::Invalid(error.to_string()))?;
        std::fs::create_dir_all(&self.directory).map_err(PutRuleError::Io)?;
        let path = self.directory.join(format!("{name}.json"));
        let created = !path.exists();
        crate::atomic_file::write(&path, text.as_bytes()).map_err(PutRuleError::Io)?;
        tracing::info!(rule = name, created, "rule written through the API");
        self.reload_now.notify_one();
        Ok(created)
    }

    /// Deletes `queries/NAME.json` and reloads (its alerts resolve as "rule changed");
    /// returns whether there was one.
    pub fn delete(&self, name: &str) -> std::io::Result<bool> {
        if !super::model::valid_name(name) {
            return Ok(false);
        }
        match std::fs::remove_file(self.directory.join(format!("{name}.json"))) {
            Ok(()) => {
                tracing::info!(rule = name, "rule deleted through the API");
                self.reload_now.notify_one();
                Ok(true)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }
}
