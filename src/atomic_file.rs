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

/// Atomically replaces `path` with `bytes`, durably. When writing fails (a full disk) the
/// old version stays and the temporary file is removed, so it holds no space.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_path(path);
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
