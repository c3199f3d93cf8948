//! Event-time windows without scanning whole partitions.
//!
//! A rule counts `[T − 1m, T)` again and again. tantivy's fast-field range query scans the
//! whole `@timestamp` column of every segment it touches (≈ 400 k values in an hour
//! partition). Logs arrive nearly in time order, so each segment gets a sparse block index
//! — the min and max event time of every [`BLOCK_DOCS`] documents — built once when a
//! reader first sees the segment (a tantivy `Warmer`), and a window query visits only the
//! blocks that overlap it, checking each candidate's exact time. Out-of-order data stays
//! correct (blocks just overlap more windows); only the speed depends on the order.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use tantivy::columnar::Column;
use tantivy::query::{ConstScorer, EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{
    DocId, DocSet, Score, Searcher, SeekDangerResult, SegmentReader, TERMINATED, index::SegmentId,
};

use super::schema::TIMESTAMP_FIELD;

/// Documents per block of the sparse time index.
pub const BLOCK_DOCS: u32 = 1024;

/// Min and max event time (microseconds) of each block of a segment; the max is
/// `i64::MAX` when a document of the block has none.
#[derive(Debug)]
pub struct BlockIndex {
    blocks: Vec<(i64, i64)>,
}

/// Whether a block of min/max event time `(low, high)` overlaps `[lower, upper)`.
fn overlaps((low, high): (i64, i64), lower: i64, upper: i64) -> bool {
    high >= lower && low < upper
}

impl BlockIndex {
    /// Whether a document of the segment may have an event time in `[lower, upper)`.
    fn may_hold(&self, lower: i64, upper: i64) -> bool {
        self.blocks
            .iter()
            .any(|block| overlaps(*block, lower, upper))
    }
}

static BLOCK_INDEXES: LazyLock<Mutex<HashMap<SegmentId, Arc<BlockIndex>>>> =
    LazyLock::new(Default::default);

/// Most segments kept without a warmer vouching for them (a safety bound only).
const MAX_CACHED_SEGMENTS: usize = 200_000;

fn cache() -> std::sync::MutexGuard<'static, HashMap<SegmentId, Arc<BlockIndex>>> {
    BLOCK_INDEXES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn build(reader: &SegmentReader) -> tantivy::Result<BlockIndex> {
    let column = reader.fast_fields().date(TIMESTAMP_FIELD)?;
    let max_doc = reader.max_doc();
    let mut blocks = Vec::with_capacity(max_doc.div_ceil(BLOCK_DOCS) as usize);
    let mut start = 0;
    while start < max_doc {
        let end = (start + BLOCK_DOCS).min(max_doc);
        let (mut low, mut high) = (i64::MAX, i64::MIN);
        for doc in start..end {
            let mut values = column.values_for_doc(doc).peekable();
            if values.peek().is_none() {
                // a document without an event time: the block may overlap any window
                // from `low` on but never lies wholly inside one (its documents are checked)
                high = i64::MAX;
            }
            for value in values {
                let micros = value.into_timestamp_micros();
                low = low.min(micros);
                high = high.max(micros);
            }
        }
        blocks.push((low, high));
        start = end;
    }
    Ok(BlockIndex { blocks })
}

/// The block index of `reader`'s segment, built now if no refresh did.
pub fn block_index(reader: &SegmentReader) -> tantivy::Result<Arc<BlockIndex>> {
    if let Some(found) = cache().get(&reader.segment_id()) {
        return Ok(found.clone());
    }
    let built = Arc::new(build(reader)?);
    let mut cache = cache();
    if cache.len() >= MAX_CACHED_SEGMENTS {
        cache.clear();
    }
    cache.insert(reader.segment_id(), built.clone());
    Ok(built)
}

/// The block indexes of one partition's segments: built when its reader takes a new
/// searcher ([`TimeBlocks::refresh`]), forgotten when their segments leave it or the
/// partition closes. Not a tantivy `Warmer`: tantivy starts a garbage-collecting thread for
/// every reader with warmers, and that thread's loop never ends, not even after the reader
/// is dropped: one thread for every partition ever opened (a week of hourly partitions of
/// two indices: 336 threads, and more after every retention sweep).
///
/// A searcher kept past a refresh (a scroll) builds the index of a segment that left again
/// on its next search, outside this bookkeeping: such entries are a few bytes, and
/// `MAX_CACHED_SEGMENTS` bounds them.
#[derive(Default)]
pub struct TimeBlocks {
    owned: Mutex<HashSet<SegmentId>>,
}

impl TimeBlocks {
    /// Builds the block indexes of `searcher`'s segments and forgets those of this
    /// partition's segments it no longer has.
    pub fn refresh(&self, searcher: &Searcher) -> tantivy::Result<()> {
        let mut live = HashSet::new();
        for reader in searcher.segment_readers() {
            block_index(reader)?;
            live.insert(reader.segment_id());
        }
        let mut owned = self
            .owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut cache = cache();
        for gone in owned.difference(&live) {
            cache.remove(gone);
        }
        *owned = live;
        Ok(())
    }
}

impl Drop for TimeBlocks {
    fn drop(&mut self) {
        let owned = self
            .owned
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut cache = cache();
        for id in owned.iter() {
            cache.remove(id);
        }
    }
}

/// Documents whose event time is in `[lower, upper)` (microseconds).
#[derive(Debug, Clone)]
pub struct TimeWindowQuery {
    pub lower: i64,
    pub upper: i64,
}

impl Query for TimeWindowQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for TimeWindowQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let index = block_index(reader)?;
        let column = reader.fast_fields().date(TIMESTAMP_FIELD)?;
        let ranges: Vec<Candidates> = index
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, block)| overlaps(**block, self.lower, self.upper))
            .map(|(block, (low, high))| {
                let start = block as u32 * BLOCK_DOCS;
                Candidates {
                    start,
                    end: (start + BLOCK_DOCS).min(reader.max_doc()),
                    whole: *low >= self.lower && *high < self.upper,
                }
            })
            .collect();
        let mut docs = WindowDocSet::new(column, ranges, self.lower, self.upper);
        docs.settle();
        Ok(Box::new(ConstScorer::new(docs, boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("TimeWindowQuery", 1.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(
                "document is outside the time window".into(),
            ))
        }
    }
}

/// `inner` where every match lies in the event-time window `[lower, upper)` (the query
/// requires it): a segment without a document that may lie in the window is passed over
/// before `inner` looks anything up in it. A term's lookup decodes a block of the
/// segment's term dictionary (tens of microseconds); a partition has several segments, and
/// a rule's one-minute window overlaps only those whose time span covers it.
#[derive(Debug)]
pub struct SegmentGate {
    pub inner: Box<dyn Query>,
    pub lower: i64,
    pub upper: i64,
}

impl Clone for SegmentGate {
    fn clone(&self) -> Self {
        SegmentGate {
            inner: self.inner.box_clone(),
            lower: self.lower,
            upper: self.upper,
        }
    }
}

impl Query for SegmentGate {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(GateWeight {
            inner: self.inner.weight(scoring)?,
            lower: self.lower,
            upper: self.upper,
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a tantivy::Term, bool)) {
        self.inner.query_terms(visitor);
    }
}

struct GateWeight {
    inner: Box<dyn Weight>,
    lower: i64,
    upper: i64,
}

impl GateWeight {
    fn open(&self, reader: &SegmentReader) -> tantivy::Result<bool> {
        Ok(block_index(reader)?.may_hold(self.lower, self.upper))
    }
}

impl Weight for GateWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        if self.open(reader)? {
            self.inner.scorer(reader, boost)
        } else {
            Ok(Box::new(EmptyScorer))
        }
    }

    fn scorer_danger(
        &self,
        reader: &SegmentReader,
        target: DocId,
        boost: Score,
    ) -> tantivy::Result<(SeekDangerResult, Box<dyn Scorer>)> {
        if self.open(reader)? {
            self.inner.scorer_danger(reader, target, boost)
        } else if target == TERMINATED {
            // as tantivy's default for a scorer already at its end
            Ok((SeekDangerResult::Found, Box::new(EmptyScorer)))
        } else {
            Ok((
                SeekDangerResult::SeekLowerBound(TERMINATED),
                Box::new(EmptyScorer),
            ))
        }
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.inner.explain(reader, doc)
    }

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        if self.open(reader)? {
            self.inner.count(reader)
        } else {
            Ok(0)
        }
    }

    fn for_each(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score),
    ) -> tantivy::Result<()> {
        if self.open(reader)? {
            self.inner.for_each(reader, callback)?;
        }
        Ok(())
    }

    fn for_each_no_score(
        &self,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(&[DocId]),
    ) -> tantivy::Result<()> {
        if self.open(reader)? {
            self.inner.for_each_no_score(reader, callback)?;
        }
        Ok(())
    }

    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        if self.open(reader)? {
            self.inner.for_each_pruning(threshold, reader, callback)?;
        }
        Ok(())
    }
}

/// The documents `[start, end)` of a block that overlaps the window; `whole`: the block
/// lies inside it, so none needs its time checked.
struct Candidates {
    start: DocId,
    end: DocId,
    whole: bool,
}

/// Candidates from overlapping blocks, filtered by their exact time.
struct WindowDocSet {
    column: Column<tantivy::DateTime>,
    ranges: Vec<Candidates>,
    range: usize,
    doc: DocId,
    lower: i64,
    upper: i64,
    size_hint: u32,
}

impl WindowDocSet {
    fn new(
        column: Column<tantivy::DateTime>,
        ranges: Vec<Candidates>,
        lower: i64,
        upper: i64,
    ) -> Self {
        let size_hint = ranges.iter().map(|range| range.end - range.start).sum();
        let doc = ranges.first().map_or(TERMINATED, |range| range.start);
        WindowDocSet {
            column,
            ranges,
            range: 0,
            doc,
            lower,
            upper,
            size_hint,
        }
    }

    fn in_window(&self, doc: DocId) -> bool {
        self.column.values_for_doc(doc).any(|value| {
            let micros = value.into_timestamp_micros();
            micros >= self.lower && micros < self.upper
        })
    }

    /// Moves from `self.doc` (inclusive) to the first candidate in the window.
    fn settle(&mut self) -> DocId {
        while let Some(&Candidates { start, end, whole }) = self.ranges.get(self.range) {
            if self.doc < start {
                self.doc = start;
            }
            if whole && self.doc < end {
                return self.doc;
            }
            while self.doc < end {
                if self.in_window(self.doc) {
                    return self.doc;
                }
                self.doc += 1;
            }
            self.range += 1;
        }
        self.doc = TERMINATED;
        TERMINATED
    }
}

impl DocSet for WindowDocSet {
    fn advance(&mut self) -> DocId {
        if self.doc == TERMINATED {
            return TERMINATED;
        }
        self.doc += 1;
        self.settle()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc == TERMINATED || target <= self.doc {
            return self.doc;
        }
        while self
            .ranges
            .get(self.range)
            .is_some_and(|range| range.end <= target)
        {
            self.range += 1;
        }
        self.doc = target;
        self.settle()
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.size_hint
    }
}

#[cfg(test)]
mod tests {
    use tantivy::collector::Count;
    use tantivy::query::BooleanQuery;
    use tantivy::schema::{DateOptions, DateTimePrecision, Schema};
    use tantivy::{Index, TantivyDocument};

    use super::*;

    /// An index of one segment per slice of `segments`, each with its event times
    /// (microseconds; none: a document without one) in doc order.
    fn index_of_segments(segments: &[&[Option<i64>]]) -> Index {
        let mut builder = Schema::builder();
        let field = builder.add_date_field(
            TIMESTAMP_FIELD,
            DateOptions::default()
                .set_fast()
                .set_precision(DateTimePrecision::Microseconds),
        );
        let index = Index::create_in_ram(builder.build());
        let mut writer = index
            .writer_with_num_threads::<TantivyDocument>(1, 20 << 20)
            .expect("writer");
        for times in segments {
            for &micros in *times {
                let mut document = TantivyDocument::default();
                if let Some(micros) = micros {
                    document.add_date(field, tantivy::DateTime::from_timestamp_micros(micros));
                }
                writer.add_document(document).expect("add");
            }
            writer.commit().expect("commit");
        }
        index
    }

    /// A segment with `times` in doc order; counts must equal a plain scan.
    fn count_windows(times: &[Option<i64>], windows: &[(i64, i64)]) {
        let index = index_of_segments(&[times]);
        let searcher = index.reader().expect("reader").searcher();
        for &(lower, upper) in windows {
            let expected = times
                .iter()
                .flatten()
                .filter(|micros| **micros >= lower && **micros < upper)
                .count();
            let got = searcher
                .search(&TimeWindowQuery { lower, upper }, &Count)
                .expect("count");
            assert_eq!(got, expected, "window [{lower}, {upper})");
        }
    }

    #[test]
    fn ordered_and_shuffled_times_count_exactly() {
        let ordered: Vec<Option<i64>> = (0..5000).map(|seq| Some(seq * 1000)).collect();
        let windows = [
            // whole blocks of 1 024 documents, with and without cut blocks at the edges
            (1_024_000, 4_096_000),
            (500_000, 4_600_000),
            (i64::MIN, i64::MAX),
            (0, 1),
            (999, 1000),
            (1_000_000, 1_060_000),
            (4_999_000, 5_000_000),
            (-5, 0),
            (0, i64::MAX),
            (2_500_500, 2_500_600),
        ];
        count_windows(&ordered, &windows);
        // late and out-of-order events: blocks overlap, results stay exact
        let shuffled: Vec<Option<i64>> = (0..5000)
            .map(|seq: i64| Some(((seq * 7919) % 5000) * 1000))
            .collect();
        count_windows(&shuffled, &windows);
        // documents without an event time are in no window, whole blocks or not
        let gaps: Vec<Option<i64>> = (0..5000)
            .map(|seq: i64| (seq % 700 != 3).then_some(seq * 1000))
            .collect();
        count_windows(&gaps, &windows);
    }

    /// Records the segments its weight is asked about (what a term query would look its
    /// terms up in), matching every document.
    #[derive(Debug, Clone, Default)]
    struct Recording {
        asked: Arc<Mutex<Vec<SegmentId>>>,
    }

    impl Query for Recording {
        fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
            Ok(Box::new(self.clone()))
        }
    }

    impl Weight for Recording {
        fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
            self.asked.lock().expect("lock").push(reader.segment_id());
            tantivy::query::AllQuery
                .weight(EnableScoring::disabled_from_schema(reader.schema()))?
                .scorer(reader, boost)
        }

        fn explain(&self, _reader: &SegmentReader, _doc: DocId) -> tantivy::Result<Explanation> {
            Ok(Explanation::new("Recording", 1.0))
        }
    }

    // Only segments that may hold a document of the window are looked into; the count of
    // the gated window query is the window's.
    #[test]
    fn segments_outside_the_window_are_passed_over() {
        // three segments: [0, 3000) µs, [10 000, 13 000) µs, and one whose last document
        // has no event time (its span reaches every window from 20 000 on)
        let segments: [&[Option<i64>]; 3] = [
            &[Some(0), Some(1000), Some(2999)],
            &[Some(10_000), Some(12_999)],
            &[Some(20_000), None],
        ];
        let index = index_of_segments(&segments);
        let searcher = index.reader().expect("reader").searcher();
        assert_eq!(searcher.segment_readers().len(), 3);
        let first_time = |reader: &SegmentReader| {
            let column = reader.fast_fields().date(TIMESTAMP_FIELD).expect("column");
            column.first(0).expect("time").into_timestamp_micros()
        };
        for (lower, upper, expected, segments_asked) in [
            (0, 3000, 3, vec![0]),
            (2999, 10_001, 2, vec![0, 10_000]),
            (3000, 10_000, 0, vec![]),
            (13_000, 14_000, 0, vec![]),
            (25_000, 26_000, 0, vec![20_000]),
            (i64::MIN, i64::MAX, 6, vec![0, 10_000, 20_000]),
        ] {
            let recording = Recording::default();
            let inner = BooleanQuery::intersection(vec![
                Box::new(recording.clone()),
                Box::new(TimeWindowQuery { lower, upper }),
            ]);
            let gated = SegmentGate {
                inner: Box::new(inner),
                lower,
                upper,
            };
            let count = searcher.search(&gated, &Count).expect("count");
            let window = times_in(&segments, lower, upper);
            assert_eq!(
                (count, count),
                (expected, window),
                "window [{lower}, {upper})"
            );
            let mut asked: Vec<i64> = recording
                .asked
                .lock()
                .expect("lock")
                .iter()
                .map(|id| {
                    let reader = searcher
                        .segment_readers()
                        .iter()
                        .find(|reader| reader.segment_id() == *id)
                        .expect("a segment of the searcher");
                    first_time(reader)
                })
                .collect();
            asked.sort_unstable();
            assert_eq!(asked, segments_asked, "window [{lower}, {upper})");
        }
    }

    fn times_in(segments: &[&[Option<i64>]], lower: i64, upper: i64) -> usize {
        segments
            .iter()
            .flat_map(|times| times.iter().flatten())
            .filter(|micros| **micros >= lower && **micros < upper)
            .count()
    }

    // A partition's block indexes are built when its reader takes a searcher and forgotten
    // when their segments leave (a merge) or the partition closes.
    #[test]
    fn block_indexes_follow_the_segments_of_their_partition() {
        let mut builder = Schema::builder();
        let field = builder.add_date_field(TIMESTAMP_FIELD, DateOptions::default().set_fast());
        let index = Index::create_in_ram(builder.build());
        let mut writer = index
            .writer_with_num_threads::<TantivyDocument>(1, 20 << 20)
            .expect("writer");
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()
            .expect("reader");
        let blocks = TimeBlocks::default();
        for micros in [1_000, 2_000] {
            let mut document = TantivyDocument::default();
            document.add_date(field, tantivy::DateTime::from_timestamp_micros(micros));
            writer.add_document(document).expect("add");
            writer.commit().expect("commit");
        }
        reader.reload().expect("reload");
        blocks.refresh(&reader.searcher()).expect("refresh");
        let first: Vec<SegmentId> = reader
            .searcher()
            .segment_readers()
            .iter()
            .map(SegmentReader::segment_id)
            .collect();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|id| cache().contains_key(id)));
        writer.merge(&first).wait().expect("merge");
        reader.reload().expect("reload");
        blocks.refresh(&reader.searcher()).expect("refresh");
        let merged = reader.searcher().segment_readers()[0].segment_id();
        assert!(
            first.iter().all(|id| !cache().contains_key(id)),
            "merged away"
        );
        assert!(cache().contains_key(&merged));
        drop(blocks);
        assert!(!cache().contains_key(&merged), "the partition closed");
    }
}
