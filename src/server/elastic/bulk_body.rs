//! A `_bulk` body read, parsed and written as it arrives, so that receiving, parsing and
//! indexing overlap and a large body holds only a few pieces in memory at once.
//!
//! ```text
//!  body ─chunks (gunzipped)─▶ lines ─▶ pairs ─every ~1 MiB─▶ piece ─parse (blocking pool)─┐
//!                                                          ┌───────────────────────────┘
//!                            writer, one piece at a time ──▶ Ingest::write_piece (durable, applied)
//! ```
//!
//! - Order: pieces are written one after another, each a record of its own, so items are
//!   decided in request order and each sees the ones before it (explicit ids carried
//!   across pieces, [`RequestIds`]). The next pieces are parsed meanwhile.
//! - Acknowledgment: the answer (one ES answer for the whole body, items in request order)
//!   is sent only once every piece is durable. The agent's watermark goes with the last
//!   piece, written only after every piece before it is durable.
//! - Budget: a piece holds its share of `ingest.max_in_flight_bytes` from its first byte
//!   until it is written; the piece being gathered charges each chunk as it arrives. When
//!   the budget is spent and the body has pieces of its own on their way, it waits for
//!   them (the client is held back by TCP meanwhile); when it has none, the request gets
//!   429 as before. A single body larger than the budget is accepted.
//! - A body that fails midway (the client goes away, the body timeout, too large, corrupt
//!   gzip, or a storage refusal of a piece) is answered with that error, after the pieces
//!   handed on before the failure are written: those stay written, as Elasticsearch's
//!   incremental bulk keeps what it indexed (a bulk is not atomic). Nothing of such a body
//!   is acknowledged and its watermark is not recorded; the agent resends the batch and
//!   the lines already written are `noop` by their high-water marks.
//! - Tenant rate limit: the first piece is admitted as a whole body was (429, nothing
//!   written); the rest is charged as it arrives, into the bucket's debt.

use axum::body::Body;
use axum::http::HeaderMap;
use tokio::sync::{mpsc, watch};

use super::now_micros;
use crate::ingest::bulk::{Pair, Pairer};
use crate::ingest::event::{Rejection, RejectionKind};
use crate::ingest::{Item, RequestIds, WriteOutcome, parse_pairs};
use crate::server::SharedState;
use crate::server::body::{BodyStream, Charge, InFlight, Lines};
use crate::server::error::{ApiError, ErrorCode};

/// Decoded bytes gathered into one piece before it is handed on (fewer when the in-flight
/// budget is small, see [`piece_bytes`]): large enough that a record's fixed costs
/// (deciding, logging, applying) are small beside its documents, small enough that
/// parsing the next one overlaps writing this one.
const PIECE_BYTES: usize = 1 << 20;

/// Pieces of one body handed on and not yet written, beyond the one being gathered.
const PIECES_QUEUED: usize = 2;

/// The size of a piece under `max_in_flight_bytes`: a quarter of it at most, so several
/// bodies stream at once.
fn piece_bytes(max_in_flight_bytes: u64) -> usize {
    usize::try_from(max_in_flight_bytes / 4)
        .unwrap_or(PIECE_BYTES)
        .clamp(16 * 1024, PIECE_BYTES)
}

/// A piece of the body on its way: parsing on the blocking pool, then written.
struct Piece {
    parsed: tokio::task::JoinHandle<Vec<Item>>,
    /// The budget its bytes hold until it is written.
    charge: Charge,
    last: bool,
}

/// Reads, parses and writes `body` piece by piece; answers every piece's outcome in
/// request order once all are durable.
pub(super) async fn write_body(
    state: &SharedState,
    index: Option<String>,
    headers: &HeaderMap,
    body: Body,
    agent: Option<(String, Option<i64>)>,
) -> Result<Vec<WriteOutcome>, ApiError> {
    let stream = BodyStream::open(headers, body, state.max_body_bytes, &state.telemetry)?;
    let (pieces, receiver) = mpsc::channel::<Piece>(PIECES_QUEUED);
    // pieces handed on and not written yet
    let outstanding = watch::Sender::new(0usize);
    let (read, written) = tokio::join!(
        read_pieces(state, index, stream, pieces, &outstanding),
        async {
            let written = write_pieces(state, receiver, agent, &outstanding).await;
            // wakes a reader waiting for budget: nothing more will be written
            outstanding.send_replace(0);
            written
        },
    );
    // a refused piece stops the reading: its reason is the answer
    let outcomes = written?;
    read?;
    Ok(outcomes)
}

/// What the reader hands on, and how.
struct Gathered<'a> {
    state: &'a SharedState,
    index: Option<String>,
    pairs: Vec<Pair>,
    bytes: usize,
    charge: Charge,
    first: bool,
    pieces: mpsc::Sender<Piece>,
    outstanding: &'a watch::Sender<usize>,
    outstanding_seen: watch::Receiver<usize>,
}

/// The reader: chunks to lines to pairs, handed on as pieces. Stops when the writer
/// stopped (it failed; its error is the answer).
async fn read_pieces(
    state: &SharedState,
    index: Option<String>,
    mut stream: BodyStream<'_>,
    pieces: mpsc::Sender<Piece>,
    outstanding: &watch::Sender<usize>,
) -> Result<(), ApiError> {
    let target = piece_bytes(state.ingest.settings.max_in_flight_bytes);
    let mut budget = InFlight::new(&state.in_flight);
    let mut lines = Lines::default();
    let mut pairer = Pairer::default();
    let mut gathered = Gathered {
        state,
        index,
        pairs: Vec::new(),
        bytes: 0,
        charge: Charge::default(),
        first: true,
        pieces,
        outstanding,
        outstanding_seen: outstanding.subscribe(),
    };
    while let Some(chunk) = stream.next().await? {
        if chunk.is_empty() {
            continue;
        }
        gathered.charge(&mut budget, chunk.len()).await?;
        gathered.bytes += chunk.len();
        let pairs = &mut gathered.pairs;
        lines.push(chunk, |line| pairs.extend(pairer.push(line)));
        if gathered.bytes >= target
            && !gathered.pairs.is_empty()
            && !gathered.hand_on(false).await?
        {
            return Ok(());
        }
    }
    let pairs = &mut gathered.pairs;
    lines.finish(|line| pairs.extend(pairer.push(line)));
    gathered.pairs.extend(pairer.finish());
    gathered.hand_on(true).await?;
    Ok(())
}

impl Gathered<'_> {
    /// Charges `bytes` more to the piece being gathered: when the budget is spent, waits
    /// for this body's own pieces to be written; with none on their way, 429.
    async fn charge(&mut self, budget: &mut InFlight<'_>, bytes: usize) -> Result<(), ApiError> {
        loop {
            let on_their_way = *self.outstanding_seen.borrow_and_update();
            match budget.charge(bytes, &mut self.charge) {
                Ok(()) => return Ok(()),
                Err(error) if on_their_way == 0 => {
                    self.state.telemetry.requests_refused.add("in_flight", 1);
                    return Err(error);
                }
                Err(_) => {
                    // the sender lives as long as the request
                    let _ = self.outstanding_seen.changed().await;
                }
            }
        }
    }

    /// Hands the pairs gathered on as a piece (the last one even when empty: it carries
    /// the agent's watermark); `false` when the writer stopped.
    async fn hand_on(&mut self, last: bool) -> Result<bool, ApiError> {
        let bytes = self.bytes as u64;
        if std::mem::take(&mut self.first) {
            self.state.limits.admit_ingest(bytes).map_err(|exceeded| {
                ApiError::new(
                    ErrorCode::TooManyRequests,
                    "es_rejected_execution_exception",
                    exceeded.to_string(),
                )
            })?;
        } else {
            self.state.limits.charge_ingest(bytes);
        }
        let pairs = std::mem::take(&mut self.pairs);
        let index = self.index.clone();
        let rules = self.state.ingest.settings.rules.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let mut items = parse_pairs(pairs, index.as_deref(), &rules, now_micros());
            forbid_hidden(&mut items);
            items
        });
        let piece = Piece {
            parsed,
            charge: std::mem::take(&mut self.charge),
            last,
        };
        self.bytes = 0;
        self.state.telemetry.ingest_bulk_pieces.add(1);
        self.outstanding.send_modify(|count| *count += 1);
        Ok(self.pieces.send(piece).await.is_ok())
    }
}

/// The writer: each piece, in order, once parsed; the agent's watermark with the last.
/// Stops at the first refusal.
async fn write_pieces(
    state: &SharedState,
    mut receiver: mpsc::Receiver<Piece>,
    agent: Option<(String, Option<i64>)>,
    outstanding: &watch::Sender<usize>,
) -> Result<Vec<WriteOutcome>, ApiError> {
    let mut outcomes = Vec::new();
    let mut request = RequestIds::default();
    while let Some(piece) = receiver.recv().await {
        let items = piece
            .parsed
            .await
            .map_err(|error| ApiError::internal("parsing a bulk body", error))?;
        let watermark = if piece.last {
            if let Some((id, None)) = &agent {
                state
                    .ingest
                    .agents
                    .seen(id, None, std::time::Instant::now());
            }
            agent
                .as_ref()
                .and_then(|(id, watermark)| watermark.map(|micros| (id.clone(), micros)))
        } else {
            None
        };
        // its own task: a piece handed to the log is seen through to its answer even
        // when the client goes away and this request is dropped
        let ingest = state.ingest.clone();
        let mut ids = std::mem::take(&mut request);
        let (written, ids) = tokio::spawn(async move {
            let written = ingest.write_piece(items, watermark, &mut ids).await;
            (written, ids)
        })
        .await
        .map_err(|error| ApiError::internal("writing a piece of a bulk body", error))?;
        request = ids;
        drop(piece.charge);
        outstanding.send_modify(|count| *count = count.saturating_sub(1));
        outcomes.push(written?);
    }
    Ok(outcomes)
}

/// Fails the items that name one of Lookout's hidden indices (`security_exception`, 403)
/// and leaves the others to go on: what a client sends never writes them; Lookout's own
/// writes go through `Ingest` directly.
pub(super) fn forbid_hidden(items: &mut [Item]) {
    for item in items {
        if let Some(index) = item
            .index
            .as_deref()
            .filter(|index| crate::index_name::is_lookout_internal(index))
        {
            item.prepared = Err(Rejection {
                kind: RejectionKind::Forbidden,
                label: "hidden_index",
                reason: format!(
                    "index [{index}] is written only by Lookout itself (its hidden `.lookout-*` indices); write to another index"
                ),
            });
        }
    }
}

/// The sequence a `refresh` of the whole body waits for: its last record.
pub(super) fn last_seq(outcomes: &[WriteOutcome]) -> u64 {
    outcomes
        .iter()
        .map(|outcome| outcome.seq)
        .max()
        .unwrap_or(0)
}
