//! File identity for the agent protocol (DESIGN §4): device and inode, plus a checksum of
//! the file's first bytes so a recycled inode is not mistaken for the old file.
//!
//! The checksum covers the first line when it ends within [`HEAD_BYTES`], else the first
//! [`HEAD_BYTES`] bytes: a prefix fixed by content that appending never changes, so the
//! same file identifies the same way however much it has grown. Until then the file has no identity
//! and nothing of it is shipped (its only line is incomplete anyway).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

/// Bytes the checksum covers at most.
pub const HEAD_BYTES: u64 = 1024;

/// Who a file is, independent of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    /// Length of the prefix the checksum covers.
    pub head_length: u64,
    pub head_crc: u32,
}

impl FileIdentity {
    /// The `source` string of the agent protocol.
    pub fn source_id(&self) -> String {
        format!(
            "{}:{}:{}:{:08x}",
            self.device, self.inode, self.head_length, self.head_crc
        )
    }

    /// Whether the open `file` (at its current state) is still this file: same device
    /// and inode, and the same bytes where the checksum was taken.
    pub fn matches(&self, file: &File) -> std::io::Result<bool> {
        let metadata = file.metadata()?;
        if metadata.dev() != self.device
            || metadata.ino() != self.inode
            || metadata.len() < self.head_length
        {
            return Ok(false);
        }
        Ok(read_prefix_crc(file, self.head_length)? == Some(self.head_crc))
    }
}

fn read_prefix_crc(file: &File, length: u64) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::FileExt;
    let mut buffer = vec![0u8; length as usize];
    let mut filled = 0;
    while filled < buffer.len() {
        let read = file.read_at(&mut buffer[filled..], filled as u64)?;
        if read == 0 {
            return Ok(None);
        }
        filled += read;
    }
    Ok(Some(crc32fast::hash(&buffer)))
}

/// The identity of `file`, or `None` while it holds neither [`HEAD_BYTES`] bytes nor a
/// complete first line.
pub fn identify(file: &mut File) -> std::io::Result<Option<FileIdentity>> {
    use std::io::{Seek, SeekFrom};
    let metadata = file.metadata()?;
    file.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(HEAD_BYTES as usize);
    file.by_ref().take(HEAD_BYTES).read_to_end(&mut head)?;
    // the prefix depends only on content that appending never changes: the first line
    // when it ends within HEAD_BYTES, else exactly HEAD_BYTES — so identifying the same
    // file again later, however much it grew, gives the same identity
    let head_length = match head.iter().position(|byte| *byte == b'\n') {
        Some(newline) => newline as u64 + 1,
        None if head.len() as u64 == HEAD_BYTES => HEAD_BYTES,
        None => return Ok(None),
    };
    Ok(Some(FileIdentity {
        device: metadata.dev(),
        inode: metadata.ino(),
        head_length,
        head_crc: crc32fast::hash(&head[..head_length as usize]),
    }))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;

    /// [`identify`] by path.
    fn identify_path(path: &Path) -> std::io::Result<Option<FileIdentity>> {
        identify(&mut File::open(path)?)
    }

    #[test]
    fn a_file_without_a_complete_line_or_1_kib_has_no_identity_yet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.json");
        std::fs::write(&path, b"{\"partial\":").expect("write");
        assert_eq!(identify_path(&path).expect("read"), None);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(b"1}\n")
            .expect("append");
        let identity = identify_path(&path)
            .expect("read")
            .expect("first line complete");
        assert_eq!(identity.head_length, 14);
    }

    #[test]
    fn identity_survives_growth_and_rename_but_not_rewrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.json");
        std::fs::write(&path, b"{\"line\":1}\n").expect("write");
        let identity = identify_path(&path).expect("read").expect("identity");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open")
            .write_all(&vec![b'x'; 5000])
            .expect("grow");
        assert_eq!(
            identify_path(&path).expect("read"),
            Some(identity),
            "growing keeps the identity (prefix fixed at first sight)"
        );
        let rotated = dir.path().join("app.json.1");
        std::fs::rename(&path, &rotated).expect("rename");
        let file = File::open(&rotated).expect("open");
        assert!(
            identity.matches(&file).expect("check"),
            "a renamed file is the same file"
        );
        // same inode, different first bytes: a truncated and rewritten file is not the same
        std::fs::write(&rotated, b"{\"line\":2}\n").expect("rewrite");
        let file = File::open(&rotated).expect("open");
        assert!(!identity.matches(&file).expect("check"));
        assert_ne!(
            identify_path(&rotated)
                .expect("read")
                .expect("identity")
                .source_id(),
            identity.source_id()
        );
    }

    #[test]
    fn long_first_lines_are_fingerprinted_over_1_kib() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.json");
        std::fs::write(&path, format!("{{\"a\":\"{}\"}}\n", "y".repeat(3000))).expect("write");
        let identity = identify_path(&path).expect("read").expect("identity");
        assert_eq!(identity.head_length, HEAD_BYTES);
    }
}
