//! How the tailer wakes: [`Wake`], the flags the file-event watcher and the shutdown hook
//! set without ever blocking; the `notify` watcher whose events set them; and the
//! directory each glob pattern's files live under, which is what gets watched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What woke the tailer; set by the `notify` thread and the shutdown hook, never blocking
/// them (flags coalesce, nothing queues).
#[derive(Default)]
pub struct Wake {
    flags: Mutex<WakeFlags>,
    condvar: Condvar,
}

#[derive(Default, Clone, Copy)]
pub(super) struct WakeFlags {
    pub(super) rescan: bool,
    pub(super) changed: bool,
    pub(super) stop: bool,
}

impl Wake {
    pub(super) fn set(&self, update: impl FnOnce(&mut WakeFlags)) {
        update(
            &mut self
                .flags
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.condvar.notify_one();
    }

    /// Asks the tailer to flush what it read and stop.
    pub fn stop(&self) {
        self.set(|flags| flags.stop = true);
    }

    /// Whether a file event asked for a rescan not yet taken by [`Wake::wait`].
    pub(super) fn rescan_pending(&self) -> bool {
        self.flags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rescan
    }

    pub(super) fn wait(&self, timeout: Duration) -> WakeFlags {
        let flags = self
            .flags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut flags, _) = self
            .condvar
            .wait_timeout_while(flags, timeout, |flags| {
                !(flags.rescan || flags.changed || flags.stop)
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let taken = *flags;
        flags.rescan = false;
        flags.changed = false;
        taken
    }
}

/// A file-event watcher that wakes the tailer through `events`: a created, removed or
/// renamed file asks for a rescan, a modified one for a pass. `None` (a warning logged)
/// where file events are unavailable: the tailer then polls.
pub(super) fn watch_events(events: Arc<Wake>) -> Option<notify::RecommendedWatcher> {
    notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        use notify::EventKind;
        use notify::event::ModifyKind;
        match event {
            Ok(event) if event.need_rescan() => events.set(|flags| flags.rescan = true),
            Ok(event) => match event.kind {
                EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Name(_)) => events.set(|flags| flags.rescan = true),
                EventKind::Modify(_) | EventKind::Any => events.set(|flags| flags.changed = true),
                EventKind::Access(_) | EventKind::Other => {}
            },
            Err(_) => events.set(|flags| flags.rescan = true),
        }
    })
    .map_err(|error| {
        tracing::warn!(%error, "file events unavailable; polling only");
    })
    .ok()
}

/// Directory a pattern's matches all live under, and whether they may be deeper than
/// its direct children.
pub fn pattern_base(pattern: &str) -> (PathBuf, bool) {
    let path = Path::new(pattern);
    let mut base = PathBuf::new();
    let mut components = path.components().peekable();
    while let Some(component) = components.next() {
        let text = component.as_os_str().to_string_lossy();
        if text.contains(['*', '?', '[']) {
            let recursive = text.contains("**") || components.peek().is_some();
            let base = if base.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base
            };
            return (base, recursive);
        }
        if components.peek().is_none() {
            // a literal file name: watch its directory
            let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let parent = if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent
            };
            return (parent, false);
        }
        base.push(component);
    }
    (PathBuf::from("."), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_bases_are_the_literal_prefix() {
        assert_eq!(
            pattern_base("/var/log/app/*.json"),
            (PathBuf::from("/var/log/app"), false)
        );
        assert_eq!(
            pattern_base("/var/log/**/*.json"),
            (PathBuf::from("/var/log"), true)
        );
        assert_eq!(
            pattern_base("/var/log/*/app.json"),
            (PathBuf::from("/var/log"), true)
        );
        assert_eq!(
            pattern_base("logs/app.json"),
            (PathBuf::from("logs"), false)
        );
        assert_eq!(pattern_base("*.json"), (PathBuf::from("."), false));
    }
}
