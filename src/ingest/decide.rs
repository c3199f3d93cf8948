//! Deciding the items of a write request, under one lock: `noop` by a source's high-water
//! mark, whether an explicit id exists (a conflict for `create`, not found for `delete`),
//! the id of a new document, and the index and log operations of what is accepted; then
//! the record's sequence.
//!
//! Decisions see the records still on their way through the log: their explicit ids are
//! reserved, and the marks they raised are remembered with their previous offsets, so a
//! record that fails can put them back (the agent's retry is then not a duplicate) and a
//! `noop` by such a mark makes its request wait for that record.
//!
//! Nothing here writes: the caller logs what was decided and answers with the results.

use std::collections::{BTreeMap, HashMap};

use super::bulk::{ActionKind, SourcePosition};
use super::event::{Event, IdGenerator, Rejection, TimeSource};
use super::item::{Item, ItemFailure, ItemOutcome, ItemResult};
use super::sources::SourceMarks;
use super::wal::{LoggedDoc, LoggedMark, LoggedOp};
use crate::index::IndexStore;
use crate::index::document::LogDoc;
use crate::index::store::WriteOp;
use crate::index_name::validate_index_name;
use crate::telemetry::Telemetry;

/// What the decide lock guards.
pub(super) struct DecideState {
    pub(super) next_seq: u64,
    pub(super) marks: SourceMarks,
    /// `(index, id)` of explicit-id writes on their way through the log.
    reserved_ids: HashMap<(String, String), u64>,
    /// Whether an id exists after the items decided so far in the current request (so a
    /// `create` after an `index` of the same id in one `_bulk` conflicts, and a `delete`
    /// in between frees it). The caller brings the request's own (a body written piece by
    /// piece carries it from piece to piece) and takes it back.
    pub(super) batch_ids: HashMap<(String, String), bool>,
    /// Per record on its way through the log, the marks it raised and their previous
    /// offsets, to put back if the record fails.
    undo_marks: BTreeMap<u64, Vec<UndoMark>>,
    /// The marks the current request raised so far, with their previous offsets.
    batch_marks: Vec<UndoMark>,
    /// Whether an item of the current request is `noop` by a mark that a record still
    /// on its way through the log raised (that record may fail and its mark go back).
    pub(super) batch_noop_undurable: bool,
}

/// A high-water mark a record raised, and its offset before, put back if the record
/// fails.
#[derive(Debug, Clone)]
struct UndoMark {
    source: String,
    generation: u64,
    /// `None`: there was no mark.
    previous: Option<u64>,
}

impl DecideState {
    /// The state at start: `next_seq` follows the log, `marks` as replayed.
    pub(super) fn new(next_seq: u64, marks: SourceMarks) -> DecideState {
        DecideState {
            next_seq,
            marks,
            reserved_ids: HashMap::new(),
            batch_ids: HashMap::new(),
            undo_marks: BTreeMap::new(),
            batch_marks: Vec::new(),
            batch_noop_undurable: false,
        }
    }

    /// Takes the sequence of the record that logs `logged`: its explicit ids are reserved
    /// and the marks the request raised remembered until the log answers
    /// ([`DecideState::record_answered`]).
    pub(super) fn reserve_record(&mut self, logged: &[LoggedOp]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        for op in logged {
            if let LoggedOp::Index(LoggedDoc {
                index,
                id,
                explicit_id: true,
                ..
            }) = op
            {
                self.reserved_ids.insert((index.clone(), id.clone()), seq);
            }
        }
        let undo = std::mem::take(&mut self.batch_marks);
        if !undo.is_empty() {
            self.undo_marks.insert(seq, undo);
        }
        seq
    }

    /// The log answered for record `seq`: its ids are no longer on their way. The marks of
    /// a failed record stay remembered until the recovery puts them back.
    pub(super) fn record_answered(&mut self, seq: u64, durable: bool) {
        self.reserved_ids
            .retain(|_, reserved_seq| *reserved_seq != seq);
        if durable {
            self.undo_marks.remove(&seq);
        }
    }

    /// Puts back the marks the `failed` records raised, newest first, and forgets the
    /// rest (every other record is durable after a recovery).
    pub(super) fn put_back_marks(&mut self, failed: &[u64]) {
        for seq in failed.iter().rev() {
            for undo in self.undo_marks.remove(seq).into_iter().flatten().rev() {
                self.marks
                    .restore(&undo.source, undo.generation, undo.previous);
            }
        }
        self.undo_marks.clear();
    }
}

/// What the items of one request decided: the results in request order, and what the
/// record logs and the index applies.
pub(super) struct Decided {
    pub(super) results: Vec<ItemResult>,
    /// Index operations, applied once the record is durable.
    pub(super) ops: Vec<WriteOp>,
    /// The same operations as the log records them.
    pub(super) logged: Vec<LoggedOp>,
    /// The high-water marks the request raises, one per source and generation.
    pub(super) marks: Vec<LoggedMark>,
}

/// Deciding one request's items: what deciding reads, the state the decide lock guards,
/// and what the request gathers so far.
pub(super) struct RequestDecision<'a> {
    pub(super) store: &'a IndexStore,
    pub(super) telemetry: &'a Telemetry,
    pub(super) ids: &'a IdGenerator,
    pub(super) now_micros: i64,
    pub(super) state: &'a mut DecideState,
}

impl RequestDecision<'_> {
    /// Decides `items` in order, each seeing the ones before it.
    pub(super) fn decide_all(mut self, items: Vec<Item>) -> Decided {
        self.state.batch_marks.clear();
        self.state.batch_noop_undurable = false;
        let mut decided = Decided {
            results: Vec::with_capacity(items.len()),
            ops: Vec::with_capacity(items.len()),
            logged: Vec::with_capacity(items.len()),
            marks: Vec::new(),
        };
        for item in items {
            let result = self.decide(item, &mut decided);
            decided.results.push(result);
        }
        decided
    }

    fn decide(&mut self, item: Item, decided: &mut Decided) -> ItemResult {
        let Item {
            kind,
            index,
            id,
            position,
            prepared,
        } = item;
        let index = index.unwrap_or_default();
        let event = match self.admit(&index, prepared) {
            Ok(event) => event,
            Err(failure) => {
                return ItemResult {
                    kind,
                    index,
                    id,
                    outcome: ItemOutcome::Failed(failure),
                };
            }
        };
        if let Some(position) = &position
            && self.seen_before(position)
        {
            return ItemResult {
                kind,
                index,
                id,
                outcome: ItemOutcome::Noop,
            };
        }
        let explicit_id = id.is_some();
        let (id, outcome) = match (kind, event) {
            (ActionKind::Delete, _) => {
                let id = id.expect("delete actions carry an id");
                self.delete(&index, id, decided)
            }
            (_, None) => unreachable!("index and create actions carry a source"),
            (kind, Some(event)) => self.write_document(kind, &index, id, event, decided),
        };
        let written = matches!(
            outcome,
            ItemOutcome::Created | ItemOutcome::Updated | ItemOutcome::Deleted
        );
        if written {
            if explicit_id || kind == ActionKind::Delete {
                let exists_now = outcome != ItemOutcome::Deleted;
                self.state
                    .batch_ids
                    .insert((index.clone(), id.clone()), exists_now);
            }
            if let Some(position) = position {
                self.raise_mark(position, &mut decided.marks);
            }
        }
        ItemResult {
            kind,
            index,
            id: Some(id),
            outcome,
        }
    }

    /// What must hold before anything is decided: an index named, a valid name, and a
    /// document that prepared. Counts what it refuses.
    fn admit(
        &self,
        index: &str,
        prepared: Result<Option<Event>, Rejection>,
    ) -> Result<Option<Event>, ItemFailure> {
        if index.is_empty() {
            self.telemetry.ingest_rejected.add("no_index", 1);
            return Err(ItemFailure::MissingIndex);
        }
        if let Err(error) = validate_index_name(index) {
            self.telemetry.ingest_rejected.add("invalid_index_name", 1);
            return Err(ItemFailure::InvalidIndexName {
                reason: error.to_string(),
            });
        }
        prepared.map_err(|rejection| {
            self.telemetry.ingest_rejected.add(rejection.label, 1);
            self.telemetry
                .ingest_rejected_by_index
                .add(index, rejection.label, 1);
            ItemFailure::Rejected(rejection)
        })
    }

    /// Whether the line at `position` is at or below its source's high-water mark: written
    /// before (`noop`). A mark that a record still on its way raised makes the request wait
    /// for that record.
    fn seen_before(&mut self, position: &SourcePosition) -> bool {
        let held = self.state.marks.get(&position.source, position.generation);
        let at_or_below = held.is_some_and(|offset| position.offset <= offset);
        if !at_or_below {
            return false;
        }
        self.telemetry.ingest_noop.add(1);
        let undurable =
            self.state.undo_marks.values().flatten().any(|undo| {
                undo.source == position.source && undo.generation == position.generation
            });
        self.state.batch_noop_undurable |= undurable;
        true
    }

    /// Whether `id` exists in `index` after the items decided so far: decided in this
    /// request, on its way through the log, or in the index.
    fn exists(&self, index: &str, id: &str) -> bool {
        let key = (index.to_string(), id.to_string());
        match self.state.batch_ids.get(&key) {
            Some(exists) => *exists,
            None => self.state.reserved_ids.contains_key(&key) || self.store.id_exists(index, id),
        }
    }

    /// A `delete`: logged when the id exists, else not found.
    fn delete(&mut self, index: &str, id: String, decided: &mut Decided) -> (String, ItemOutcome) {
        if !self.exists(index, &id) {
            return (id, ItemOutcome::NotFound);
        }
        decided.ops.push(WriteOp::Delete {
            index: index.to_string(),
            id: id.clone(),
        });
        decided.logged.push(LoggedOp::Delete {
            index: index.to_string(),
            id: id.clone(),
        });
        (id, ItemOutcome::Deleted)
    }

    /// An `index` or `create` of `event`, under its id or a generated one: a `create` of an
    /// existing id conflicts, an `index` of one replaces it.
    fn write_document(
        &mut self,
        kind: ActionKind,
        index: &str,
        id: Option<String>,
        event: Event,
        decided: &mut Decided,
    ) -> (String, ItemOutcome) {
        let explicit_id = id.is_some();
        let id = id.unwrap_or_else(|| self.ids.next_id());
        let existed = explicit_id && self.exists(index, &id);
        if kind == ActionKind::Create && existed {
            self.telemetry.ingest_rejected.add("version_conflict", 1);
            return (
                id.clone(),
                ItemOutcome::Failed(ItemFailure::AlreadyExists { id }),
            );
        }
        self.count_document(&event);
        let overwrite = existed && kind == ActionKind::Index;
        decided.ops.push(WriteOp::Index {
            index: index.to_string(),
            doc: LogDoc {
                id: id.clone(),
                timestamp_micros: event.timestamp_micros,
                body: event.body,
                timestamp_key: event.timestamp_key,
                fields: self.store.fields,
            },
            overwrite,
            explicit_id,
        });
        decided.logged.push(LoggedOp::Index(LoggedDoc {
            index: index.to_string(),
            id: id.clone(),
            timestamp_micros: event.timestamp_micros,
            overwrite,
            explicit_id,
            source: event.source,
        }));
        let outcome = if existed {
            ItemOutcome::Updated
        } else {
            ItemOutcome::Created
        };
        (id, outcome)
    }

    /// Counts an accepted document and how its event time was decided.
    fn count_document(&self, event: &Event) {
        match event.time_source {
            TimeSource::Event => {}
            TimeSource::MissingUsedIngestTime => {
                self.telemetry.ingest_time_replaced.add("missing", 1)
            }
            TimeSource::InvalidUsedIngestTime => {
                self.telemetry.ingest_time_replaced.add("invalid", 1)
            }
        }
        self.telemetry.ingest_docs.add(1);
        self.telemetry.ingest_bytes.add(event.source.len() as u64);
    }

    /// Raises the mark of `position`'s source (remembering its previous offset the first
    /// time in this request) and records it for the log.
    fn raise_mark(&mut self, position: SourcePosition, marks: &mut Vec<LoggedMark>) {
        let state = &mut *self.state;
        if !state
            .batch_marks
            .iter()
            .any(|undo| undo.source == position.source && undo.generation == position.generation)
        {
            let previous = state.marks.get(&position.source, position.generation);
            state.batch_marks.push(UndoMark {
                source: position.source.clone(),
                generation: position.generation,
                previous,
            });
        }
        state.marks.raise(
            &position.source,
            position.generation,
            position.offset,
            self.now_micros,
        );
        match marks
            .iter_mut()
            .find(|mark| mark.source == position.source && mark.generation == position.generation)
        {
            Some(mark) => mark.offset = mark.offset.max(position.offset),
            None => marks.push(LoggedMark {
                source: position.source,
                generation: position.generation,
                offset: position.offset,
            }),
        }
    }
}
