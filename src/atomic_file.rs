//! Replacing a small state file so that a crash leaves either the old or the new version,
//! never a torn one: write a temporary file beside it, fsync it, rename it over the old
//! one, fsync the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary file [`write()`] uses for `path` (a leftover one is a crash's remains).
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Atomically replaces `path` with `bytes`, durably.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_path(path);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
