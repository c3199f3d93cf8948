//! Immutable on-disk blocks: the samples of a time range, persisted from the head (or
//! backfilled by `lookout tsdb import`) and read back by queries.
//!
//! A block is a directory in `tsdb/blocks/`, written under a temporary name, fsynced
//! and renamed, so a reader sees all of it or nothing:
//! - `chunks`: the series' chunks back to back (up to [`BLOCK_CHUNK_SAMPLES`] samples
//!   each, so a 2-hour block of 15 s scrapes is one chunk a series), each in the smaller
//!   of two encodings ([`super::encoding`]);
//! - `index`: `LKIX2`, the symbol table (every distinct label name and value once,
//!   sorted), then per series its labels as symbol numbers and its chunk references
//!   (`first, last − first, offset, length`), all as varints, ending with the CRC-32 of
//!   everything before it;
//! - `meta.json`: time range and counts.
//!
//! The index is held in memory with postings; chunk bytes are read on demand. Label sets
//! and label strings are shared by every open block through an [`Interner`], so a series
//! persisted block after block is held once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::encoding::{get_varint, put_varint};
use super::head::{Labels, Matcher, matches_all};

/// Samples per chunk in a block (the head cuts at 120; a block re-chunks).
pub const BLOCK_CHUNK_SAMPLES: usize = 480;

const INDEX_MAGIC: &[u8] = b"LKIX2\n";
const VERSION: u32 = 2;

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
    /// The blocks this one was compacted from, and theirs (directory names): if one is
    /// still there at start (a crash before it was deleted), it is deleted then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
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
    /// Its chunks: a range of [`Block::chunk_refs`].
    chunks: std::ops::Range<u32>,
}

/// An opened block.
pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    chunks: File,
    series: Vec<BlockSeries>,
    chunk_refs: Vec<ChunkRef>,
    postings: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Vec<u32>>>,
}

/// The label sets and label strings of the open blocks, each held once. Every block used
/// to hold its own copies: about 450 B a series a block (4.5 MB a block for the soak's
/// 10 000 series, by heaptrack), so memory grew with every block persisted until
/// retention; shared, a block holds per series its label set's pointer, its chunk range,
/// its chunk references and its postings entries, about 80 B.
#[derive(Default)]
pub struct Interner {
    labels: Mutex<HashSet<Labels>>,
    strings: Mutex<HashSet<Arc<str>>>,
}

impl Interner {
    fn labels(&self, decoded: Vec<(String, String)>) -> Labels {
        let mut known = lock(&self.labels);
        if let Some(found) = known.get(decoded.as_slice()) {
            return Arc::clone(found);
        }
        let labels: Labels = decoded.into();
        known.insert(Arc::clone(&labels));
        labels
    }

    fn string(&self, text: &str) -> Arc<str> {
        let mut known = lock(&self.strings);
        if let Some(found) = known.get(text) {
            return Arc::clone(found);
        }
        let shared: Arc<str> = text.into();
        known.insert(Arc::clone(&shared));
        shared
    }

    /// Forgets what no block (nor a query's answer) holds any more: after blocks are
    /// dropped.
    pub fn sweep(&self) {
        lock(&self.labels).retain(|labels| Arc::strong_count(labels) > 1);
        lock(&self.strings).retain(|text| Arc::strong_count(text) > 1);
    }

    #[cfg(test)]
    fn label_sets(&self) -> usize {
        lock(&self.labels).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    let mut sorted: Vec<&(Labels, Vec<(i64, f64)>)> = series
        .iter()
        .filter(|(_, samples)| !samples.is_empty())
        .collect();
    sorted.sort_by(|left, right| left.0.cmp(&right.0));
    let symbols: BTreeSet<&str> = sorted
        .iter()
        .flat_map(|(labels, _)| {
            labels
                .iter()
                .flat_map(|(name, value)| [name.as_str(), value.as_str()])
        })
        .collect();
    let mut writer = BlockWriter::begin(blocks_dir, min_time, max_time, &symbols, sorted.len())?;
    let written = sorted
        .iter()
        .try_for_each(|(labels, samples)| writer.add(labels, samples));
    writer.finish(written, source, Vec::new())
}

/// Writes one block holding every sample of `sources` (blocks of adjacent time ranges),
/// series by series — at most one series' samples in memory — and records them as its
/// parents (with theirs); returns its directory. Samples at the same time in two sources
/// are kept once.
pub fn merge(blocks_dir: &Path, sources: &[Arc<Block>]) -> std::io::Result<PathBuf> {
    let mut sources: Vec<&Arc<Block>> = sources.iter().collect();
    sources.sort_by_key(|block| (block.meta.min_time, block.meta.max_time));
    let min_time = sources
        .iter()
        .map(|block| block.meta.min_time)
        .min()
        .unwrap_or(0);
    let max_time = sources
        .iter()
        .map(|block| block.meta.max_time)
        .max()
        .unwrap_or(0);
    let mut series: BTreeMap<&Labels, Vec<(usize, usize)>> = BTreeMap::new();
    for (source, block) in sources.iter().enumerate() {
        for (id, one) in block.series.iter().enumerate() {
            series.entry(&one.labels).or_default().push((source, id));
        }
    }
    let symbols: BTreeSet<&str> = sources
        .iter()
        .flat_map(|block| {
            block.postings.iter().flat_map(|(name, values)| {
                std::iter::once(&**name).chain(values.keys().map(|value| &**value))
            })
        })
        .collect();
    let mut writer = BlockWriter::begin(blocks_dir, min_time, max_time, &symbols, series.len())?;
    let mut samples = Vec::new();
    let written = series.iter().try_for_each(|(labels, places)| {
        samples.clear();
        for &(source, id) in places {
            sources[source].read_series(id, i64::MIN, i64::MAX, &mut samples)?;
        }
        samples.sort_by_key(|(time, _)| *time);
        samples.dedup_by_key(|(time, _)| *time);
        writer.add(labels, &samples)
    });
    let source = sources
        .first()
        .map_or_else(head_source, |block| block.meta.source.clone());
    // and what they were merged from: a block whose deletion failed is still recognised
    let parents = sources
        .iter()
        .flat_map(|block| {
            block
                .dir
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .into_iter()
                .chain(block.meta.parents.iter().cloned())
        })
        .collect();
    writer.finish(written, &source, parents)
}

/// A block being written under a temporary name: the index is built in memory (labels
/// as symbol numbers and chunk references), the chunks go straight to their file.
struct BlockWriter {
    blocks_dir: PathBuf,
    name: String,
    temporary: PathBuf,
    chunks: std::io::BufWriter<File>,
    chunk_offset: u64,
    index: Vec<u8>,
    numbers: BTreeMap<String, u64>,
    min_time: i64,
    max_time: i64,
    series: u64,
    samples: u64,
    chunk_count: u64,
}

impl BlockWriter {
    fn begin(
        blocks_dir: &Path,
        min_time: i64,
        max_time: i64,
        symbols: &BTreeSet<&str>,
        series: usize,
    ) -> std::io::Result<BlockWriter> {
        std::fs::create_dir_all(blocks_dir)?;
        let name = format!("{min_time:015}-{max_time:015}-{:08x}", fastrand::u32(..));
        let temporary = blocks_dir.join(format!(".tmp-{name}"));
        std::fs::create_dir_all(&temporary)?;
        let chunks = match File::create(temporary.join("chunks")) {
            Ok(file) => std::io::BufWriter::new(file),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&temporary);
                return Err(error);
            }
        };
        let mut index: Vec<u8> = INDEX_MAGIC.to_vec();
        put_varint(&mut index, symbols.len() as u64);
        for symbol in symbols {
            put_varint(&mut index, symbol.len() as u64);
            index.extend_from_slice(symbol.as_bytes());
        }
        put_varint(&mut index, series as u64);
        Ok(BlockWriter {
            blocks_dir: blocks_dir.to_path_buf(),
            name,
            temporary,
            chunks,
            chunk_offset: 0,
            index,
            numbers: symbols
                .iter()
                .enumerate()
                .map(|(number, symbol)| (symbol.to_string(), number as u64))
                .collect(),
            min_time,
            max_time,
            series: 0,
            samples: 0,
            chunk_count: 0,
        })
    }

    /// Adds a series (labels sorted after the previous one's, samples in time order, at
    /// least one).
    fn add(&mut self, labels: &[(String, String)], samples: &[(i64, f64)]) -> std::io::Result<()> {
        put_varint(&mut self.index, labels.len() as u64);
        for (name, value) in labels {
            put_varint(&mut self.index, self.numbers[name.as_str()]);
            put_varint(&mut self.index, self.numbers[value.as_str()]);
        }
        let pieces: Vec<&[(i64, f64)]> = samples.chunks(BLOCK_CHUNK_SAMPLES).collect();
        put_varint(&mut self.index, pieces.len() as u64);
        for piece in pieces {
            let encoded = super::encoding::encode(piece);
            let (first, last) = (piece[0].0, piece[piece.len() - 1].0);
            put_varint(&mut self.index, first as u64);
            put_varint(&mut self.index, (last - first) as u64);
            put_varint(&mut self.index, self.chunk_offset);
            put_varint(&mut self.index, encoded.len() as u64);
            self.chunks.write_all(&encoded)?;
            self.chunk_offset += encoded.len() as u64;
            self.samples += piece.len() as u64;
            self.chunk_count += 1;
        }
        self.series += 1;
        Ok(())
    }

    /// Ends the block when every series was `written`: its index and metadata, fsynced,
    /// then renamed into place. On any error nothing is left behind.
    fn finish(
        mut self,
        written: std::io::Result<()>,
        source: &str,
        parents: Vec<String>,
    ) -> std::io::Result<PathBuf> {
        let crc = crc32fast::hash(&self.index);
        self.index.extend_from_slice(&crc.to_le_bytes());
        let meta = BlockMeta {
            version: VERSION,
            min_time: self.min_time,
            max_time: self.max_time,
            series: self.series,
            samples: self.samples,
            chunks: self.chunk_count,
            bytes: self.chunk_offset + self.index.len() as u64,
            source: source.to_string(),
            parents,
        };
        let temporary = self.temporary.clone();
        let done = written.and_then(|()| {
            let file = self
                .chunks
                .into_inner()
                .map_err(|error| error.into_error())?;
            file.sync_all()?;
            let meta_json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
            for (file, bytes) in [("index", &self.index), ("meta.json", &meta_json)] {
                let mut handle = File::create(temporary.join(file))?;
                handle.write_all(bytes)?;
                handle.sync_all()?;
            }
            File::open(&temporary)?.sync_all()
        });
        if let Err(error) = done {
            // a full disk: what was written of the block holds space nobody can use
            let _ = std::fs::remove_dir_all(&temporary);
            return Err(error);
        }
        let final_dir = self.blocks_dir.join(&self.name);
        std::fs::rename(&temporary, &final_dir)?;
        File::open(&self.blocks_dir)?.sync_all()?;
        Ok(final_dir)
    }
}

impl Block {
    pub fn open(dir: &Path, interner: &Interner) -> std::io::Result<Block> {
        let meta: BlockMeta = serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)
            .map_err(|error| invalid(dir, &format!("meta.json: {error}")))?;
        if meta.version != VERSION {
            return Err(invalid(
                dir,
                &format!(
                    "block format {} is not {VERSION}; re-import its data",
                    meta.version
                ),
            ));
        }
        let bytes = std::fs::read(dir.join("index"))?;
        if bytes.len() < INDEX_MAGIC.len() + 4 || !bytes.starts_with(INDEX_MAGIC) {
            return Err(invalid(dir, "index: not a Lookout block index"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(invalid(dir, "index: checksum mismatch"));
        }
        let truncated = || invalid(dir, "index: truncated");
        let mut at = INDEX_MAGIC.len();
        let varint = |at: &mut usize| get_varint(body, at).ok_or_else(truncated);
        let symbol_count = varint(&mut at)? as usize;
        let mut symbols: Vec<Arc<str>> = Vec::with_capacity(symbol_count.min(1 << 20));
        for _ in 0..symbol_count {
            let length = varint(&mut at)? as usize;
            let text = body.get(at..at + length).ok_or_else(truncated)?;
            let text = std::str::from_utf8(text)
                .map_err(|_| invalid(dir, "index: a symbol is not UTF-8"))?;
            symbols.push(interner.string(text));
            at += length;
        }
        let symbol = |number: u64| {
            symbols
                .get(number as usize)
                .ok_or_else(|| invalid(dir, "index: unknown symbol"))
        };
        let count = varint(&mut at)? as u32;
        let mut series = Vec::with_capacity(count.min(1 << 24) as usize);
        let mut chunk_refs = Vec::with_capacity(count.min(1 << 24) as usize);
        let mut postings: BTreeMap<Arc<str>, BTreeMap<Arc<str>, Vec<u32>>> = BTreeMap::new();
        for id in 0..count {
            let label_count = varint(&mut at)?;
            let mut labels = Vec::with_capacity(label_count.min(64) as usize);
            for _ in 0..label_count {
                let name = symbol(varint(&mut at)?)?;
                let value = symbol(varint(&mut at)?)?;
                postings
                    .entry(Arc::clone(name))
                    .or_default()
                    .entry(Arc::clone(value))
                    .or_default()
                    .push(id);
                labels.push((name.to_string(), value.to_string()));
            }
            let chunk_count = varint(&mut at)?;
            let first_chunk = chunk_refs.len() as u32;
            for _ in 0..chunk_count {
                let first = varint(&mut at)? as i64;
                let span = varint(&mut at)? as i64;
                chunk_refs.push(ChunkRef {
                    first,
                    last: first + span,
                    offset: varint(&mut at)?,
                    length: varint(&mut at)? as u32,
                });
            }
            series.push(BlockSeries {
                labels: interner.labels(labels),
                chunks: first_chunk..chunk_refs.len() as u32,
            });
        }
        chunk_refs.shrink_to_fit();
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            chunks: File::open(dir.join("chunks"))?,
            series,
            chunk_refs,
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
                    .get(name.as_str())
                    .and_then(|values| values.get(value.as_str()))
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
        for id in ids {
            let series = &self.series[id as usize];
            if !matches_all(matchers, &series.labels) {
                continue;
            }
            let mut samples = Vec::new();
            self.read_series(id as usize, min_time, max_time, &mut samples)?;
            if !samples.is_empty() {
                found.push((Arc::clone(&series.labels), samples));
            }
        }
        Ok(found)
    }

    /// Appends series `id`'s samples in `[min_time, max_time]` to `samples`.
    fn read_series(
        &self,
        id: usize,
        min_time: i64,
        max_time: i64,
        samples: &mut Vec<(i64, f64)>,
    ) -> std::io::Result<()> {
        let range = &self.series[id].chunks;
        let mut buffer = Vec::new();
        for chunk in self.chunk_refs[range.start as usize..range.end as usize]
            .iter()
            .filter(|chunk| chunk.last >= min_time && chunk.first <= max_time)
        {
            buffer.resize(chunk.length as usize, 0);
            self.chunks.read_exact_at(&mut buffer, chunk.offset)?;
            let decoded = super::encoding::decode(&buffer).ok_or_else(|| {
                invalid(
                    &self.dir,
                    &format!("chunks: the chunk at {} does not decode", chunk.offset),
                )
            })?;
            samples.extend(
                decoded
                    .into_iter()
                    .filter(|(time, _)| *time >= min_time && *time <= max_time),
            );
        }
        Ok(())
    }

    /// Every label name and its values, for the label APIs.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.postings.keys().map(|name| &**name)
    }

    /// Every value of label `name`.
    pub fn label_values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.postings
            .get(name)
            .into_iter()
            .flat_map(|values| values.keys().map(|value| &**value))
    }
}

/// Opens every block in `blocks_dir`, skipping (and warning about) unreadable ones and
/// removing leftovers of interrupted writes.
pub fn open_all(blocks_dir: &Path, interner: &Interner) -> Vec<Block> {
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
        match Block::open(&path, interner) {
            Ok(block) => blocks.push(block),
            Err(error) => {
                tracing::warn!(block = %path.display(), %error, "skipping an unreadable metrics block")
            }
        }
    }
    // a compaction that crashed before deleting what it merged: the merged block holds it
    let parents: HashSet<String> = blocks
        .iter()
        .flat_map(|block| block.meta.parents.iter().cloned())
        .collect();
    let (replaced, mut blocks): (Vec<Block>, Vec<Block>) = blocks.into_iter().partition(|block| {
        block
            .dir
            .file_name()
            .is_some_and(|name| parents.contains(&*name.to_string_lossy()))
    });
    for block in replaced {
        tracing::info!(block = %block.dir.display(), "deleting a metrics block compacted into another");
        if let Err(error) = std::fs::remove_dir_all(&block.dir) {
            tracing::warn!(block = %block.dir.display(), %error, "cannot delete a compacted metrics block");
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
    fn blocks_of_the_same_series_hold_their_labels_once_until_both_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let interner = Interner::default();
        let series = |time: i64| {
            ["a", "b"]
                .map(|instance| {
                    (
                        labels(&[("__name__", "up"), ("instance", instance)]),
                        vec![(time, 1.0)],
                    )
                })
                .to_vec()
        };
        let open = |time: i64| {
            let path = write(dir.path(), &series(time), time, time + 1000, "head").expect("write");
            Block::open(&path, &interner).expect("open")
        };
        let (first, second) = (open(0), open(1000));
        assert_eq!(interner.label_sets(), 2, "one per series, not per block");
        let (older, newer) = (
            first.select(&[], 0, i64::MAX).expect("select"),
            second.select(&[], 0, i64::MAX).expect("select"),
        );
        assert!(Arc::ptr_eq(&older[0].0, &newer[0].0));
        assert_eq!(
            second.label_values("instance").collect::<Vec<_>>(),
            ["a", "b"]
        );
        drop((older, newer, first));
        interner.sweep();
        assert_eq!(
            interner.label_sets(),
            2,
            "the second block still holds them"
        );
        drop(second);
        interner.sweep();
        assert_eq!(interner.label_sets(), 0);
        assert_eq!(lock(&interner.strings).len(), 0);
    }

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
        let interner = Interner::default();
        let block = Block::open(&path, &interner).expect("open");
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
        assert!(
            block.meta.bytes < 10_000,
            "a constant (2 bits a sample) and a sine (Gorilla): {} B",
            block.meta.bytes
        );
        std::fs::write(path.join("index"), index).expect("write");
        assert!(Block::open(&path, &interner).is_err());
        assert!(
            open_all(dir.path(), &interner).is_empty(),
            "an unreadable block is skipped"
        );
    }
}
