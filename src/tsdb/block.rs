//! Immutable on-disk blocks: the samples of a time range, persisted from the head (or
//! backfilled by `lookout tsdb import`) and read back by queries.
//!
//! A block is a directory in `tsdb/blocks/`, written under a temporary name, fsynced
//! and renamed, so a reader sees all of it or nothing:
//! - `chunks`: the series' Gorilla chunks back to back (up to [`BLOCK_CHUNK_SAMPLES`]
//!   samples each, so a 2-hour block of 15 s scrapes is one chunk a series);
//! - `index`: `LKIX1`, series count, then per series its labels (length-prefixed
//!   strings) and chunk references (`first, last, offset, length`), ending with the
//!   CRC-32 of everything before it;
//! - `meta.json`: time range and counts.
//!
//! The index is held in memory with postings; chunk bytes are read on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::chunk::{Chunk, ChunkIter};
use super::head::{Labels, Matcher};

/// Samples per chunk in a block (the head cuts at 120; a block re-chunks).
pub const BLOCK_CHUNK_SAMPLES: usize = 480;

const INDEX_MAGIC: &[u8] = b"LKIX1\n";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockMeta {
    pub version: u32,
    /// Inclusive lower and exclusive upper bound of the samples' times (ms).
    pub min_time: i64,
    pub max_time: i64,
    pub series: u64,
    pub samples: u64,
    pub chunks: u64,
    /// Bytes of `chunks` + `index`.
    pub bytes: u64,
    /// `head` (persisted by the server) or `import` (backfilled).
    #[serde(default = "head_source")]
    pub source: String,
}

fn head_source() -> String {
    "head".into()
}

#[derive(Debug, Clone)]
struct ChunkRef {
    first: i64,
    last: i64,
    offset: u64,
    length: u32,
}

struct BlockSeries {
    labels: Labels,
    chunks: Vec<ChunkRef>,
}

/// An opened block.
pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    chunks: File,
    series: Vec<BlockSeries>,
    postings: BTreeMap<String, BTreeMap<String, Vec<u32>>>,
}

fn invalid(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Writes a block of `series` (labels and time-ordered samples, all within
/// `[min_time, max_time)`) into `blocks_dir`; returns its directory.
pub fn write(
    blocks_dir: &Path,
    series: &[(Labels, Vec<(i64, f64)>)],
    min_time: i64,
    max_time: i64,
    source: &str,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(blocks_dir)?;
    let name = format!("{min_time:015}-{max_time:015}-{:08x}", fastrand::u32(..));
    let temporary = blocks_dir.join(format!(".tmp-{name}"));
    std::fs::create_dir_all(&temporary)?;
    let mut chunk_bytes: Vec<u8> = Vec::new();
    let mut index: Vec<u8> = INDEX_MAGIC.to_vec();
    let mut sorted: Vec<&(Labels, Vec<(i64, f64)>)> = series
        .iter()
        .filter(|(_, samples)| !samples.is_empty())
        .collect();
    sorted.sort_by(|left, right| left.0.cmp(&right.0));
    index.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    let (mut samples_total, mut chunks_total) = (0u64, 0u64);
    for (labels, samples) in sorted {
        index.extend_from_slice(&(labels.len() as u32).to_le_bytes());
        for (name, value) in labels.iter() {
            for text in [name, value] {
                index.extend_from_slice(&(text.len() as u32).to_le_bytes());
                index.extend_from_slice(text.as_bytes());
            }
        }
        let pieces: Vec<&[(i64, f64)]> = samples.chunks(BLOCK_CHUNK_SAMPLES).collect();
        index.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
        for piece in pieces {
            let mut chunk = Chunk::new();
            for (time, value) in piece {
                chunk.append(*time, *value);
            }
            let offset = chunk_bytes.len() as u64;
            chunk_bytes.extend_from_slice(chunk.bytes());
            index.extend_from_slice(&piece[0].0.to_le_bytes());
            index.extend_from_slice(&piece[piece.len() - 1].0.to_le_bytes());
            index.extend_from_slice(&offset.to_le_bytes());
            index.extend_from_slice(&(chunk.bytes().len() as u32).to_le_bytes());
            samples_total += piece.len() as u64;
            chunks_total += 1;
        }
    }
    let crc = crc32fast::hash(&index);
    index.extend_from_slice(&crc.to_le_bytes());
    let meta = BlockMeta {
        version: 1,
        min_time,
        max_time,
        series: series
            .iter()
            .filter(|(_, samples)| !samples.is_empty())
            .count() as u64,
        samples: samples_total,
        chunks: chunks_total,
        bytes: (chunk_bytes.len() + index.len()) as u64,
        source: source.to_string(),
    };
    for (file, bytes) in [
        ("chunks", chunk_bytes),
        ("index", index),
        (
            "meta.json",
            serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?,
        ),
    ] {
        let mut handle = File::create(temporary.join(file))?;
        handle.write_all(&bytes)?;
        handle.sync_all()?;
    }
    File::open(&temporary)?.sync_all()?;
    let final_dir = blocks_dir.join(&name);
    std::fs::rename(&temporary, &final_dir)?;
    File::open(blocks_dir)?.sync_all()?;
    Ok(final_dir)
}

struct IndexReader<'a> {
    bytes: &'a [u8],
}

impl IndexReader<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        if self.bytes.len() < count {
            return None;
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let length = self.u32()? as usize;
        String::from_utf8(self.take(length)?.to_vec()).ok()
    }
}

impl Block {
    pub fn open(dir: &Path) -> std::io::Result<Block> {
        let meta: BlockMeta = serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)
            .map_err(|error| invalid(dir, &format!("meta.json: {error}")))?;
        let bytes = std::fs::read(dir.join("index"))?;
        if bytes.len() < INDEX_MAGIC.len() + 8 || !bytes.starts_with(INDEX_MAGIC) {
            return Err(invalid(dir, "index: not a Lookout block index"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(invalid(dir, "index: checksum mismatch"));
        }
        let mut reader = IndexReader {
            bytes: &body[INDEX_MAGIC.len()..],
        };
        let truncated = || invalid(dir, "index: truncated");
        let count = reader.u32().ok_or_else(truncated)?;
        let mut series = Vec::with_capacity(count as usize);
        let mut postings: BTreeMap<String, BTreeMap<String, Vec<u32>>> = BTreeMap::new();
        for id in 0..count {
            let label_count = reader.u32().ok_or_else(truncated)?;
            let mut labels = Vec::with_capacity(label_count as usize);
            for _ in 0..label_count {
                let name = reader.string().ok_or_else(truncated)?;
                let value = reader.string().ok_or_else(truncated)?;
                postings
                    .entry(name.clone())
                    .or_default()
                    .entry(value.clone())
                    .or_default()
                    .push(id);
                labels.push((name, value));
            }
            let chunk_count = reader.u32().ok_or_else(truncated)?;
            let mut chunks = Vec::with_capacity(chunk_count as usize);
            for _ in 0..chunk_count {
                chunks.push(ChunkRef {
                    first: reader.u64().ok_or_else(truncated)? as i64,
                    last: reader.u64().ok_or_else(truncated)? as i64,
                    offset: reader.u64().ok_or_else(truncated)?,
                    length: reader.u32().ok_or_else(truncated)?,
                });
            }
            series.push(BlockSeries {
                labels: labels.into(),
                chunks,
            });
        }
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            chunks: File::open(dir.join("chunks"))?,
            series,
            postings,
        })
    }

    /// Series matching every matcher with their samples in `[min_time, max_time]`.
    pub fn select(
        &self,
        matchers: &[Matcher],
        min_time: i64,
        max_time: i64,
    ) -> std::io::Result<super::head::Selected> {
        if max_time < self.meta.min_time || min_time >= self.meta.max_time {
            return Ok(Vec::new());
        }
        let mut candidates: Option<BTreeSet<u32>> = None;
        for matcher in matchers {
            if let Matcher::Equal(name, value) = matcher
                && !value.is_empty()
            {
                let ids: BTreeSet<u32> = self
                    .postings
                    .get(name)
                    .and_then(|values| values.get(value))
                    .map(|ids| ids.iter().copied().collect())
                    .unwrap_or_default();
                candidates = Some(match candidates {
                    None => ids,
                    Some(previous) => previous.intersection(&ids).copied().collect(),
                });
            }
        }
        let ids: Vec<u32> = match candidates {
            Some(ids) => ids.into_iter().collect(),
            None => (0..self.series.len() as u32).collect(),
        };
        let mut found = Vec::new();
        let mut buffer = Vec::new();
        for id in ids {
            let series = &self.series[id as usize];
            let value_of = |name: &str| {
                series
                    .labels
                    .iter()
                    .find(|(label, _)| label == name)
                    .map_or("", |(_, value)| value.as_str())
            };
            if !matchers
                .iter()
                .all(|matcher| matcher.matches(value_of(matcher.name())))
            {
                continue;
            }
            let mut samples = Vec::new();
            for chunk in series
                .chunks
                .iter()
                .filter(|chunk| chunk.last >= min_time && chunk.first <= max_time)
            {
                buffer.resize(chunk.length as usize, 0);
                self.chunks.read_exact_at(&mut buffer, chunk.offset)?;
                samples.extend(
                    ChunkIter::new(&buffer)
                        .filter(|(time, _)| *time >= min_time && *time <= max_time),
                );
            }
            if !samples.is_empty() {
                found.push((Arc::clone(&series.labels), samples));
            }
        }
        Ok(found)
    }

    /// Every label name and its values, for the label APIs.
    pub fn label_values(&self) -> impl Iterator<Item = (&String, impl Iterator<Item = &String>)> {
        self.postings
            .iter()
            .map(|(name, values)| (name, values.keys()))
    }
}

/// Opens every block in `blocks_dir`, skipping (and warning about) unreadable ones and
/// removing leftovers of interrupted writes.
pub fn open_all(blocks_dir: &Path) -> Vec<Block> {
    let Ok(entries) = std::fs::read_dir(blocks_dir) else {
        return Vec::new();
    };
    let mut blocks = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") {
            let _ = std::fs::remove_dir_all(&path);
            continue;
        }
        if !path.is_dir() {
            continue;
        }
        match Block::open(&path) {
            Ok(block) => blocks.push(block),
            Err(error) => {
                tracing::warn!(block = %path.display(), %error, "skipping an unreadable metrics block")
            }
        }
    }
    blocks.sort_by_key(|block| (block.meta.min_time, block.meta.max_time));
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::head::labels;

    #[test]
    fn a_written_block_reads_back_every_sample_and_selects_by_label_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = labels(&[("__name__", "up"), ("job", "node")]);
        let load = labels(&[("__name__", "load"), ("job", "node")]);
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut up_samples: Vec<(i64, f64)> = (0..1000).map(|i| (i * 15_000, 1.0)).collect();
        up_samples.push((1000 * 15_000, stale));
        let load_samples: Vec<(i64, f64)> =
            (0..1000).map(|i| (i * 15_000, (i as f64).sin())).collect();
        let path = write(
            dir.path(),
            &[
                (up.clone(), up_samples.clone()),
                (load.clone(), load_samples.clone()),
            ],
            0,
            15_015_000,
            "head",
        )
        .expect("write");
        let block = Block::open(&path).expect("open");
        assert_eq!(block.meta.samples, 2001);
        assert_eq!(block.meta.chunks, 3 + 3, "480 samples a chunk");
        let all = block
            .select(&[Matcher::Equal("job".into(), "node".into())], 0, i64::MAX)
            .expect("select");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1, load_samples);
        assert_eq!(all[1].1.len(), up_samples.len());
        assert_eq!(
            all[1].1.last().map(|(_, value)| value.to_bits()),
            Some(0x7ff0_0000_0000_0002),
            "staleness markers kept"
        );
        let window = block
            .select(
                &[Matcher::Equal("__name__".into(), "up".into())],
                30_000,
                60_000,
            )
            .expect("select");
        assert_eq!(window[0].1, [(30_000, 1.0), (45_000, 1.0), (60_000, 1.0)]);
        assert!(
            block
                .select(&[], 20_000_000, 30_000_000)
                .expect("select")
                .is_empty(),
            "outside the block"
        );
        // a damaged index is refused, not misread
        let mut index = std::fs::read(path.join("index")).expect("index");
        index[10] ^= 0xff;
        std::fs::write(path.join("index"), index).expect("write");
        assert!(Block::open(&path).is_err());
        assert!(
            open_all(dir.path()).is_empty(),
            "an unreadable block is skipped"
        );
    }
}
