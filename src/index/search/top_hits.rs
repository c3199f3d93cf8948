//! The top-K collector of a search: the best `from + size` hits of a partition in any sort
//! order, and which partitions can still place a hit once some are found.

use std::cmp::Ordering;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, ColumnType, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use super::search_after;
use super::{HitPosition, ScoredHit, SortField, SortKey, SortValue, Target};
use crate::index::schema::{BODY_FIELD, TIMESTAMP_FIELD};

pub(super) fn compare_hits(sort: &[SortField], left: &ScoredHit, right: &ScoredHit) -> Ordering {
    for (field, (left_value, right_value)) in sort.iter().zip(left.values.iter().zip(&right.values))
    {
        let ordering = left_value.compare(right_value, field.descending);
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    left.position.cmp(&right.position)
}

/// Keeps the best `limit` hits after `after` (and after `search_after`'s values) in
/// `sort` order.
pub(super) struct TopHits {
    pub(super) sort: Arc<Vec<SortField>>,
    pub(super) limit: usize,
    pub(super) partition: u32,
    pub(super) after: Option<Arc<ScoredHit>>,
    pub(super) search_after: Option<Arc<Vec<SortValue>>>,
    /// The partition's segments' doc bases, for `_doc` sort values.
    pub(super) doc_bases: Arc<Vec<u64>>,
}

enum SegmentSortColumn {
    Score,
    Doc,
    Timestamp(Column<tantivy::DateTime>),
    Numeric(Column<u64>, ColumnType),
    Text(StrColumn),
    Absent,
}

pub(super) struct TopHitsSegment {
    sort: Arc<Vec<SortField>>,
    columns: Vec<SegmentSortColumn>,
    limit: usize,
    partition: u32,
    segment: SegmentOrdinal,
    after: Option<Arc<ScoredHit>>,
    search_after: Option<Arc<Vec<SortValue>>>,
    doc_bases: Arc<Vec<u64>>,
    hits: Vec<ScoredHit>,
    /// The first sort value of the worst hit kept once `limit` are kept.
    worst_kept: Option<SortValue>,
    buffer: String,
}

impl Collector for TopHits {
    type Fruit = Vec<ScoredHit>;
    type Child = TopHitsSegment;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<TopHitsSegment> {
        let fast = reader.fast_fields();
        let mut columns = Vec::with_capacity(self.sort.len());
        for field in self.sort.iter() {
            columns.push(match &field.key {
                SortKey::Score => SegmentSortColumn::Score,
                SortKey::Doc => SegmentSortColumn::Doc,
                SortKey::Timestamp => SegmentSortColumn::Timestamp(fast.date(TIMESTAMP_FIELD)?),
                SortKey::Field(path) if path == "_id" => SegmentSortColumn::Absent,
                SortKey::Field(path) => {
                    let name = format!("{BODY_FIELD}.{path}");
                    let numeric = fast.u64_lenient_for_type(
                        Some(&[
                            ColumnType::I64,
                            ColumnType::U64,
                            ColumnType::F64,
                            ColumnType::DateTime,
                            ColumnType::Bool,
                        ]),
                        &name,
                    )?;
                    match numeric {
                        Some((column, column_type)) => {
                            SegmentSortColumn::Numeric(column, column_type)
                        }
                        None => match fast.str(&name)? {
                            Some(column) => SegmentSortColumn::Text(column),
                            None => SegmentSortColumn::Absent,
                        },
                    }
                }
            });
        }
        Ok(TopHitsSegment {
            sort: self.sort.clone(),
            columns,
            limit: self.limit,
            partition: self.partition,
            segment,
            after: self.after.clone(),
            search_after: self.search_after.clone(),
            doc_bases: self.doc_bases.clone(),
            hits: Vec::new(),
            worst_kept: None,
            buffer: String::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.sort.iter().any(|field| field.key == SortKey::Score)
    }

    fn merge_fruits(&self, fruits: Vec<Vec<ScoredHit>>) -> tantivy::Result<Vec<ScoredHit>> {
        let mut all: Vec<ScoredHit> = fruits.into_iter().flatten().collect();
        truncate_sorted(&self.sort, &mut all, self.limit);
        Ok(all)
    }
}

pub(super) fn truncate_sorted(sort: &[SortField], hits: &mut Vec<ScoredHit>, limit: usize) {
    if hits.len() > limit && limit > 0 {
        hits.select_nth_unstable_by(limit - 1, |left, right| compare_hits(sort, left, right));
        hits.truncate(limit);
    } else if limit == 0 {
        hits.clear();
    }
    hits.sort_by(|left, right| compare_hits(sort, left, right));
}

impl TopHitsSegment {
    /// `doc`'s value for the sort field at `at`.
    fn value(&mut self, at: usize, doc: DocId, score: Score) -> SortValue {
        match &self.columns[at] {
            SegmentSortColumn::Score => SortValue::Number(f64::from(score)),
            SegmentSortColumn::Doc => SortValue::Number(search_after::doc_ordinal(
                self.partition,
                &self.doc_bases,
                self.segment,
                doc,
            )),
            // `@timestamp` is a `date`: it sorts (and pages) by the millisecond
            SegmentSortColumn::Timestamp(column) => {
                column.first(doc).map_or(SortValue::Missing, |date| {
                    SortValue::Number(date.into_timestamp_micros().div_euclid(1000) as f64)
                })
            }
            SegmentSortColumn::Numeric(column, column_type) => {
                column.first(doc).map_or(SortValue::Missing, |raw| {
                    SortValue::Number(decode_numeric(raw, *column_type))
                })
            }
            SegmentSortColumn::Text(column) => match column.term_ords(doc).next() {
                Some(ord) if column.ord_to_str(ord, &mut self.buffer).unwrap_or(false) => {
                    SortValue::Text(self.buffer.clone())
                }
                _ => SortValue::Missing,
            },
            SegmentSortColumn::Absent => SortValue::Missing,
        }
    }
}

impl SegmentCollector for TopHitsSegment {
    type Fruit = Vec<ScoredHit>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if self.limit == 0 {
            return;
        }
        // with `limit` hits kept, a document whose first sort value is worse than the
        // worst of them can never be among the best: it is passed over before its other
        // values are read (`after` and `search_after` only ever exclude more)
        let first = self.value(0, doc, score);
        if let Some(worst) = &self.worst_kept
            && first.compare(worst, self.sort[0].descending) == Ordering::Greater
        {
            return;
        }
        let mut values = Vec::with_capacity(self.columns.len());
        values.push(first);
        for at in 1..self.columns.len() {
            let value = self.value(at, doc, score);
            values.push(value);
        }
        let hit = ScoredHit {
            values,
            score,
            position: HitPosition {
                partition: self.partition,
                segment: self.segment,
                doc,
            },
        };
        if let Some(after) = &self.after
            && compare_hits(&self.sort, &hit, after) != Ordering::Greater
        {
            return;
        }
        if let Some(after) = &self.search_after
            && !search_after::is_after(&self.sort, &hit.values, after)
        {
            return;
        }
        self.hits.push(hit);
        if self.hits.len() >= self.limit.saturating_mul(2).max(64) {
            truncate_sorted(&self.sort, &mut self.hits, self.limit);
            self.worst_kept = self.hits.last().map(|hit| hit.values[0].clone());
        }
    }

    fn harvest(mut self) -> Vec<ScoredHit> {
        truncate_sorted(&self.sort, &mut self.hits, self.limit);
        self.hits
    }
}

fn decode_numeric(raw: u64, column_type: ColumnType) -> f64 {
    match column_type {
        ColumnType::I64 => tantivy::u64_to_i64(raw) as f64,
        ColumnType::F64 => tantivy::u64_to_f64(raw),
        ColumnType::DateTime => tantivy::u64_to_i64(raw) as f64 / 1000.0,
        _ => raw as f64,
    }
}

/// The order partitions are searched in: for a sort by `@timestamp`, those whose span
/// sorts first come first (newest first for `desc`), so that the hits found early rule the
/// others out ([`can_place`]) and a search cut by its timeout has the best partitions.
pub(super) fn visiting_order(targets: &[Target], sort: &[SortField]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..targets.len()).collect();
    if let Some(SortField {
        key: SortKey::Timestamp,
        descending,
    }) = sort.first()
    {
        if *descending {
            order.sort_by_key(|&at| std::cmp::Reverse(targets[at].span_micros.1));
        } else {
            order.sort_by_key(|&at| targets[at].span_micros.0);
        }
    }
    order
}

/// Whether `target` can hold a hit among the best `window` of a search that sorts by
/// `@timestamp` first and has found `hits` (sorted, at most `window`): not when `window`
/// are found and every `@timestamp` of the partition's span sorts strictly after the
/// worst of them. Other sorts search every partition; none is searched for hits when
/// none are asked for.
pub(super) fn can_place(
    target: &Target,
    sort: &[SortField],
    hits: &[ScoredHit],
    window: usize,
) -> bool {
    if window == 0 {
        return false;
    }
    let Some(SortField {
        key: SortKey::Timestamp,
        descending,
    }) = sort.first()
    else {
        return true;
    };
    if hits.len() < window {
        return true;
    }
    let Some(worst) = hits.last().map(|hit| &hit.values[0]) else {
        return true;
    };
    let (start, end) = target.span_micros;
    // the partition's best possible value, at the millisecond as sort values are
    let best_micros = if *descending { end - 1 } else { start };
    let best = SortValue::Number(best_micros.div_euclid(1000) as f64);
    best.compare(worst, *descending) != Ordering::Greater
}

#[cfg(test)]
mod tests {
    use crate::index::query::Query;
    use crate::index::search::{
        Scope, ScoredHit, SearchRequest, SortField, SortKey, SortValue, execute,
    };
    use crate::index::store::{IndexStore, WriteOp};

    const HOUR: i64 = 3_600_000_000;

    /// 2 400 documents over six hourly partitions, at random microseconds with many in the
    /// same millisecond, written in random order in three records (three segments of
    /// about 130 documents a partition).
    fn store(dir: &std::path::Path) -> (IndexStore, Vec<i64>) {
        let store = IndexStore::test_open(dir, HOUR, 8);
        let start = 1_795_341_600_000_000;
        let mut random = fastrand::Rng::with_seed(7);
        let mut millis = Vec::new();
        for record in 0..3u64 {
            let ops: Vec<WriteOp> = (0..800)
                .map(|number| {
                    // every hour, and a few milliseconds shared by many documents
                    let micros = start
                        + if random.bool() {
                            random.i64(0..6 * HOUR)
                        } else {
                            random.i64(0..6) * HOUR + random.i64(0..3) * 1000 + random.i64(0..1000)
                        };
                    millis.push(micros.div_euclid(1000));
                    store.test_doc(
                        "logs",
                        format!("{record}-{number}"),
                        micros,
                        format!(r#"{{"n":{number}}}"#),
                    )
                })
                .collect();
            store.apply(record + 1, ops, false).expect("apply");
            store.commit_all().expect("commit");
        }
        (store, millis)
    }

    fn search(
        store: &IndexStore,
        scope: &Scope,
        descending: bool,
        size: usize,
        after: Option<&ScoredHit>,
    ) -> (u64, Vec<ScoredHit>) {
        let request = SearchRequest {
            size,
            sort: vec![SortField {
                key: SortKey::Timestamp,
                descending,
            }],
            ..SearchRequest::default()
        };
        let outcome = execute(
            store,
            scope,
            &request,
            after.cloned().map(std::sync::Arc::new),
        )
        .expect("search");
        (outcome.total, outcome.hits)
    }

    // Partitions ruled out by the hits found (and documents by the worst hit kept) change
    // nothing: every size and page gives the hits a search of everything gives.
    #[test]
    fn hits_by_timestamp_are_those_of_a_search_of_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, mut millis) = store(dir.path());
        let logs = store.get("logs").expect("index");
        let scope = Scope::new(&[logs], &Query::MatchAll);
        assert_eq!(scope.targets.len(), 6);
        for descending in [true, false] {
            let (total, everything) = search(&store, &scope, descending, 10_000, None);
            assert_eq!(total, 2400);
            millis.sort_unstable();
            if descending {
                millis.reverse();
            }
            let values: Vec<SortValue> = millis
                .iter()
                .map(|&ms| SortValue::Number(ms as f64))
                .collect();
            let found: Vec<SortValue> =
                everything.iter().map(|hit| hit.values[0].clone()).collect();
            assert_eq!(found, values, "descending: {descending}");
            for size in [1, 7, 50, 2399] {
                let (total, hits) = search(&store, &scope, descending, size, None);
                assert_eq!(total, 2400);
                let positions: Vec<_> = hits.iter().map(|hit| hit.position).collect();
                let expected: Vec<_> = everything[..size].iter().map(|hit| hit.position).collect();
                assert_eq!(positions, expected, "size {size}, descending: {descending}");
            }
            // pages after the last hit (a scroll) walk the same order
            let mut paged = Vec::new();
            loop {
                let (_, page) = search(&store, &scope, descending, 37, paged.last());
                if page.is_empty() {
                    break;
                }
                paged.extend(page);
            }
            let paged: Vec<_> = paged.iter().map(|hit| hit.position).collect();
            let expected: Vec<_> = everything.iter().map(|hit| hit.position).collect();
            assert_eq!(paged, expected, "descending: {descending}");
        }
    }
}
