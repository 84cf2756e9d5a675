//! Catch-up sync: set reconciliation over record ids, then fetching the missing
//! records in bounded pages.
//!
//! A session starts with rateless invertible Bloom lookup tables
//! ([`protocol::riblt`]): every node keeps the first
//! [`protocol::riblt::SKETCH_SYMBOLS_MAX`] coded symbols of its id set and a
//! difference-size estimator ([`protocol::riblt::Estimator`], 512 bytes) up to
//! date. The initiator sends its estimator; the responder estimates the size of
//! the symmetric difference from it and answers with as many symbols as decode
//! that with a margin for the estimate's error
//! ([`protocol::riblt::symbols_for_estimate`]), so one round trip decodes it
//! nearly always; otherwise the initiator asks for half as many again, then
//! doubles. A difference too large for the kept symbols, or symbols that do
//! not decode, fall back to range-based reconciliation over sorted ids (the
//! `negentropy` protocol), whose cost grows with the difference too but in more
//! round trips. `BENCHMARKS.md` has both, measured.
//!
//! Protocol `/medmesh/sync/3` (`/medmesh/sync/2` plus the estimator), request-response
//! with CBOR framing; `/medmesh/sync/2` is still spoken (the same messages: a
//! `/medmesh/sync/2` node ignores the estimator and answers from the set sizes
//! alone, and its requests carry none):
//! - `Sketch { network, start, count, set_len, estimator }` -> `Sketch { set_len,
//!   symbols }`: coded symbols of the responder's set from `start`. On the first
//!   request (`start` 0) with an estimator, as many as the estimated difference
//!   needs, whatever `count` says; without one, `count` but at least as many as
//!   the difference of the set sizes needs; and none when that is more than the
//!   responder keeps. Later requests: `count`.
//! - `Reconcile { network, msg }` -> `Reconcile { msg }`: one negentropy round.
//!   The responder is stateless; the initiator keeps its session.
//! - `Fetch { ids }` -> `Records { records, truncated }`: exact envelope bytes of the
//!   ids the responder holds, at most [`FETCH_RESPONSE_BYTES_MAX`].
//!
//! Fetched records go through the same checks as gossip (decode, network,
//! signature) before they are stored. Cost is proportional to the difference.
//!
//! Every peer may be hostile, so what a responder can make us do is bounded: one
//! session fetches at most [`SESSION_IDS_MAX`] ids however many the responder
//! claims (the rest is left to the next session), a returned record that was not
//! asked for in its page is dropped (and logged as
//! [`crate::refusals::UNREQUESTED`]), and requests are served off the swarm task
//! within a budget per peer ([`crate::serve`]).

use std::sync::Arc;

use negentropy::{Bound, Id, Item, Negentropy, NegentropyStorageBase};
use protocol::RecordId;
use protocol::riblt::{
    self, Decoded, Decoder, RibltError, SKETCH_SYMBOLS_MAX, Sketch, symbols_for_difference,
    symbols_for_estimate,
};
use serde::{Deserialize, Serialize};

/// Negentropy frame limit: keeps every message under the codec's 1 MiB request cap.
pub const FRAME_BYTES_MAX: u64 = 512 * 1024;
/// Ids asked for in one fetch request.
pub const FETCH_PAGE_RECORDS: usize = 1024;
/// Bytes of records in one fetch response (the codec allows 10 MiB).
pub const FETCH_RESPONSE_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Ids a fetch request may name.
pub const FETCH_REQUEST_IDS_MAX: usize = 4096;
/// Reconciliation rounds before a session is abandoned.
pub const ROUNDS_MAX: u32 = 64;
/// Ids one sync session fetches at most, whatever the responder claims to hold;
/// reconciliation stops once this many are found, and the rest is left to the
/// next session (with the same peer at once if this one brought records, or
/// with the next peer in turn).
pub const SESSION_IDS_MAX: usize = 32 * 1024;
/// The sync protocol's name on the wire.
pub const PROTOCOL: &str = "/medmesh/sync/3";
/// The previous version, still spoken with older nodes (no estimator: the first
/// answer is sized from the set sizes, later asks double).
pub const PROTOCOL_V2: &str = "/medmesh/sync/2";
/// Coded symbols asked for first from a `/medmesh/sync/2` responder (which
/// sends more when the set sizes differ by more than these decode); a
/// `/medmesh/sync/3` responder sizes its first answer from the estimator.
pub const SKETCH_FIRST_SYMBOLS: u32 = 32;
/// Bytes of a sketch request besides its estimator (the network id, start,
/// count, set size and an empty estimator, as CBOR at their largest), as the
/// sessions and benches count them; a test checks it against the codec.
pub const SKETCH_REQUEST_BYTES: u64 = 101;
/// Bytes of a sketch answer besides its symbols (the set size, framing), as CBOR.
pub const SKETCH_RESPONSE_BYTES: u64 = 37;

/// A sync request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncRequest {
    Reconcile {
        #[serde(with = "serde_bytes")]
        network: Vec<u8>,
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    Fetch {
        ids: Vec<serde_bytes::ByteBuf>,
    },
    /// Coded symbols `start..start + count` of the responder's set; `set_len` is
    /// the initiator's set size; `estimator` its difference-size estimator
    /// ([`protocol::riblt::ESTIMATOR_BYTES`]) on a first request, else empty.
    Sketch {
        #[serde(with = "serde_bytes")]
        network: Vec<u8>,
        start: u32,
        count: u32,
        set_len: u64,
        #[serde(default, with = "serde_bytes")]
        estimator: Vec<u8>,
    },
}

/// A sync response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    Reconcile {
        #[serde(with = "serde_bytes")]
        msg: Vec<u8>,
    },
    Records {
        records: Vec<serde_bytes::ByteBuf>,
        truncated: bool,
    },
    Refused {
        reason: String,
    },
    /// Coded symbols ([`protocol::riblt::SYMBOL_BYTES`] each) and the
    /// responder's set size.
    Sketch {
        set_len: u64,
        #[serde(with = "serde_bytes")]
        symbols: Vec<u8>,
    },
}

/// The first coded symbols of every held id (the sorted ids themselves are the
/// ledger's, [`protocol::Ledger::id_snapshot`]).
pub(crate) struct IdIndex {
    /// Shared with running sessions; copied on the next insert while one holds it.
    sketch: Arc<Sketch>,
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex { sketch: Arc::new(Sketch::new(SKETCH_SYMBOLS_MAX)) }
    }
}

fn item(id: RecordId) -> Item {
    Item { timestamp: 0, id: Id::from_byte_array(*id.as_bytes()) }
}

impl IdIndex {
    /// Adds an id the node did not hold.
    pub(crate) fn push(&mut self, id: RecordId) {
        Arc::make_mut(&mut self.sketch).add(&id);
    }

    /// The coded symbols of every held id.
    pub(crate) fn sketch(&self) -> Arc<Sketch> {
        self.sketch.clone()
    }
}

/// An immutable sorted id set that negentropy reads (items are built from the
/// ids as it reads them: every timestamp is 0, so their order is the ids').
#[derive(Clone, Debug)]
pub struct IdSnapshot(Arc<Vec<RecordId>>);

impl IdSnapshot {
    /// A snapshot of arbitrary ids (benches and tests).
    pub fn from_ids(ids: impl IntoIterator<Item = RecordId>) -> Self {
        let mut v: Vec<RecordId> = ids.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        IdSnapshot(Arc::new(v))
    }

    /// The ledger's ids, already sorted and without duplicates.
    pub(crate) fn shared(sorted: Arc<Vec<RecordId>>) -> Self {
        debug_assert!(sorted.windows(2).all(|w| w[0] < w[1]));
        IdSnapshot(sorted)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl NegentropyStorageBase for IdSnapshot {
    fn size(&self) -> Result<usize, negentropy::Error> {
        Ok(self.0.len())
    }

    fn get_item(&self, i: usize) -> Result<Option<Item>, negentropy::Error> {
        Ok(self.0.get(i).copied().map(item))
    }

    fn iterate(
        &self,
        begin: usize,
        end: usize,
        cb: &mut dyn FnMut(Item, usize) -> Result<bool, negentropy::Error>,
    ) -> Result<(), negentropy::Error> {
        if begin > end || end > self.0.len() {
            return Err(negentropy::Error::BadRange);
        }
        for i in begin..end {
            if !cb(item(self.0[i]), i)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        let last = last.min(self.0.len());
        let first = first.min(last);
        first + self.0[first..last].partition_point(|x| item(*x) < value.item)
    }
}

/// Answer one reconciliation round (the responder keeps no state).
pub fn respond(snapshot: &IdSnapshot, msg: &[u8]) -> Result<Vec<u8>, negentropy::Error> {
    let mut neg = Negentropy::borrowed(snapshot, FRAME_BYTES_MAX)?;
    neg.reconcile(msg)
}

/// The initiator's side of one reconciliation.
pub struct Initiator {
    neg: Negentropy<'static, IdSnapshot>,
    /// Ids the peer holds and we lack (at most `ids_max`).
    pub need: Vec<RecordId>,
    ids_max: usize,
    /// Ids the peer claimed beyond `ids_max` (not kept).
    pub dropped: u64,
    /// Ids we hold and the peer lacks.
    pub have: u64,
    pub rounds: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Initiator {
    /// Start: returns the session and the first message. The session keeps at
    /// most [`SESSION_IDS_MAX`] needed ids.
    pub fn start(snapshot: IdSnapshot) -> Result<(Initiator, Vec<u8>), negentropy::Error> {
        Self::start_with_ids_max(snapshot, SESSION_IDS_MAX)
    }

    /// As [`Initiator::start`], keeping at most `ids_max` needed ids.
    pub fn start_with_ids_max(
        snapshot: IdSnapshot,
        ids_max: usize,
    ) -> Result<(Initiator, Vec<u8>), negentropy::Error> {
        let mut neg = Negentropy::owned(snapshot, FRAME_BYTES_MAX)?;
        let msg = neg.initiate()?;
        let s = Initiator {
            neg,
            need: Vec::new(),
            ids_max,
            dropped: 0,
            have: 0,
            rounds: 1,
            bytes_sent: msg.len() as u64,
            bytes_received: 0,
        };
        Ok((s, msg))
    }

    /// Take the responder's answer; returns the next message, or None when done.
    pub fn step(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, negentropy::Error> {
        self.bytes_received += answer.len() as u64;
        let mut have = Vec::new();
        let mut need = Vec::new();
        let next = self.neg.reconcile_with_ids(answer, &mut have, &mut need)?;
        self.have += have.len() as u64;
        let room = self.ids_max.saturating_sub(self.need.len());
        self.dropped += need.len().saturating_sub(room) as u64;
        self.need.extend(need.into_iter().take(room).map(|id| RecordId::from_bytes(id.to_bytes())));
        if let Some(m) = &next {
            self.rounds += 1;
            self.bytes_sent += m.len() as u64;
        }
        Ok(next)
    }

    /// Whether the session holds as many needed ids as it fetches: reconciling
    /// further would only find ids it leaves to the next session.
    pub fn is_full(&self) -> bool {
        self.need.len() >= self.ids_max
    }
}

/// Answer a sketch request: symbols `start..start + count` of our set. On the
/// first request with the initiator's estimator, as many as the estimated
/// difference needs; without one (a `/medmesh/sync/2` initiator), at least as
/// many as the difference of the set sizes needs; none when that is more than
/// we keep (the initiator falls back to negentropy). An estimator of the wrong
/// length is refused. Whatever the request, at most
/// [`SKETCH_SYMBOLS_MAX`] symbols.
pub fn answer_sketch(
    sketch: &Sketch,
    start: u32,
    count: u32,
    their_len: u64,
    estimator: &[u8],
) -> SyncResponse {
    let set_len = sketch.set_len();
    let sizes_differ_by = set_len.abs_diff(their_len);
    let mut count = count.min(SKETCH_SYMBOLS_MAX);
    if start == 0 && !estimator.is_empty() {
        count = match sketch.estimator().estimate(estimator) {
            Ok(d) => symbols_for_estimate(d, sizes_differ_by).unwrap_or(0),
            Err(e) => return SyncResponse::Refused { reason: e.to_string() },
        };
    } else if start == 0 {
        let hint = symbols_for_difference(sizes_differ_by);
        count = if hint >= SKETCH_SYMBOLS_MAX { 0 } else { count.max(hint) };
    }
    SyncResponse::Sketch { set_len, symbols: riblt::encode_symbols(sketch.symbols(start, count)) }
}

/// What a sketch session does next.
#[derive(Debug)]
pub enum SketchStep {
    /// The difference is known: fetch `need`.
    Done { need: Vec<RecordId>, have: u64 },
    /// Ask for symbols `start..start + count`.
    More { start: u32, count: u32 },
    /// The difference is beyond the symbols kept: reconcile with negentropy.
    Exhausted,
}

/// The initiator's side of a reconciliation by coded symbols.
pub struct SketchInitiator {
    decoder: Decoder,
    local: Arc<Sketch>,
    pub rounds: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl SketchInitiator {
    /// Start from our set's symbols: returns the session and the first request's
    /// `(start, count, set_len, estimator)`.
    pub fn start(local: Arc<Sketch>) -> (SketchInitiator, (u32, u32, u64, Vec<u8>)) {
        let set_len = local.set_len();
        let estimator = local.estimator().encode();
        let s = SketchInitiator {
            decoder: Decoder::new(),
            local,
            rounds: 1,
            // The estimator's byte string needs 2 more bytes of length.
            bytes_sent: SKETCH_REQUEST_BYTES + estimator.len() as u64 + 2,
            bytes_received: 0,
        };
        (s, (0, SKETCH_FIRST_SYMBOLS, set_len, estimator))
    }

    /// Our set's size when the session started.
    pub fn local_len(&self) -> u64 {
        self.local.set_len()
    }

    /// Take the responder's symbols.
    pub fn step(&mut self, their_len: u64, symbols: &[u8]) -> Result<SketchStep, RibltError> {
        self.bytes_received += symbols.len() as u64 + SKETCH_RESPONSE_BYTES;
        let remote = riblt::decode_symbols(symbols)?;
        if remote.is_empty() {
            return Ok(SketchStep::Exhausted);
        }
        match self.decoder.add_symbols(&remote, &self.local)? {
            Decoded::Done { mut remote_only, local_only } => {
                remote_only.truncate(SESSION_IDS_MAX);
                Ok(SketchStep::Done { need: remote_only, have: local_only.len() as u64 })
            }
            Decoded::NeedMore { .. } => {
                let have = self.decoder.symbols_len();
                if have >= self.local.symbols_len() {
                    return Ok(SketchStep::Exhausted);
                }
                // The first answer was sized for the estimate: a miss is most
                // likely near it, so half as many again; then doubling.
                let grow = if self.rounds == 1 { have / 2 + 8 } else { have };
                let hint = symbols_for_difference(self.local.set_len().abs_diff(their_len));
                let count = grow.max(hint.saturating_sub(have));
                self.rounds += 1;
                self.bytes_sent += SKETCH_REQUEST_BYTES;
                Ok(SketchStep::More { start: have, count })
            }
        }
    }
}

/// What a reconciliation of two in-memory sets found and cost (benches).
#[derive(Debug)]
pub struct LocalSync {
    /// Ids only the responder holds.
    pub need: Vec<RecordId>,
    /// Ids only the initiator holds.
    pub have: u64,
    pub rounds: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Whether the coded symbols did not decode it and negentropy did.
    pub fell_back: bool,
}

/// Reconcile two in-memory sets as a node does (benches): coded symbols first,
/// negentropy when they do not decode.
pub fn reconcile_sketch_local(
    ours: (Arc<Sketch>, IdSnapshot),
    theirs: (&Sketch, &IdSnapshot),
) -> Result<LocalSync, String> {
    let (mut init, (mut start, mut count, set_len, estimator)) = SketchInitiator::start(ours.0);
    let mut estimator = Some(estimator);
    loop {
        let sent = estimator.take().unwrap_or_default();
        let SyncResponse::Sketch { set_len: their_len, symbols } =
            answer_sketch(theirs.0, start, count, set_len, &sent)
        else {
            return Err("unexpected answer".into());
        };
        match init.step(their_len, &symbols).map_err(|e| e.to_string())? {
            SketchStep::Done { need, have } => {
                return Ok(LocalSync {
                    need,
                    have,
                    rounds: init.rounds,
                    bytes_sent: init.bytes_sent,
                    bytes_received: init.bytes_received,
                    fell_back: false,
                });
            }
            SketchStep::More { start: s, count: c } => (start, count) = (s, c),
            SketchStep::Exhausted => {
                let neg = negentropy_local(ours.1, theirs.1).map_err(|e| e.to_string())?;
                return Ok(LocalSync {
                    need: neg.need,
                    have: neg.have,
                    rounds: init.rounds + neg.rounds,
                    bytes_sent: init.bytes_sent + neg.bytes_sent,
                    bytes_received: init.bytes_received + neg.bytes_received,
                    fell_back: true,
                });
            }
        }
    }
}

/// Reconcile two in-memory sets directly (benches): returns (need, have, round
/// trips, bytes both ways).
pub fn reconcile_local(
    ours: IdSnapshot,
    theirs: &IdSnapshot,
) -> Result<(Vec<RecordId>, u64, u32, u64), negentropy::Error> {
    let init = negentropy_local(ours, theirs)?;
    let bytes = init.bytes_sent + init.bytes_received;
    Ok((init.need, init.have, init.rounds, bytes))
}

fn negentropy_local(ours: IdSnapshot, theirs: &IdSnapshot) -> Result<Initiator, negentropy::Error> {
    let (mut init, mut msg) = Initiator::start_with_ids_max(ours, usize::MAX)?;
    loop {
        let answer = respond(theirs, &msg)?;
        match init.step(&answer)? {
            Some(next) => msg = next,
            None => return Ok(init),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> RecordId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&i.to_be_bytes());
        b[8..16].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
        RecordId::from_bytes(b)
    }

    #[test]
    fn reconciliation_finds_exactly_the_difference() {
        let common: Vec<RecordId> = (0..10_000).map(id).collect();
        let ours = IdSnapshot::from_ids(common.iter().copied().chain((100_000..100_010).map(id)));
        let theirs = IdSnapshot::from_ids(common.iter().copied().chain((200_000..200_007).map(id)));
        let (mut need, have, rounds, _) = reconcile_local(ours, &theirs).unwrap();
        need.sort();
        let mut want: Vec<RecordId> = (200_000..200_007).map(id).collect();
        want.sort();
        assert_eq!(need, want);
        assert_eq!(have, 10);
        assert!(rounds <= 4, "{rounds} rounds");
    }

    #[test]
    fn a_session_keeps_at_most_its_cap_of_ids_however_many_the_responder_claims() {
        let theirs = IdSnapshot::from_ids((0..200_000).map(id));
        // A responder with no frame limit lists every id it holds in one answer.
        let mut responder = Negentropy::borrowed(&theirs, 0).unwrap();
        let (mut init, first) =
            Initiator::start_with_ids_max(IdSnapshot::from_ids([]), 1000).unwrap();
        let answer = responder.reconcile(&first).unwrap();
        init.step(&answer).unwrap();
        assert_eq!(init.need.len(), 1000);
        assert!(init.is_full());
        assert_eq!(init.dropped, 200_000 - 1000);
    }

    fn sketched(ids: &[RecordId]) -> (Arc<Sketch>, IdSnapshot) {
        (
            Arc::new(Sketch::from_ids(SKETCH_SYMBOLS_MAX, ids)),
            IdSnapshot::from_ids(ids.iter().copied()),
        )
    }

    #[test]
    fn a_node_a_hundred_records_behind_finds_them_in_one_round_trip_of_coded_symbols() {
        let common: Vec<RecordId> = (0..20_000).map(id).collect();
        let extra: Vec<RecordId> = (500_000..500_100).map(id).collect();
        let ours = sketched(&common);
        let all: Vec<RecordId> = common.iter().chain(&extra).copied().collect();
        let theirs = sketched(&all);
        let got = reconcile_sketch_local(ours, (&theirs.0, &theirs.1)).unwrap();
        let (mut need, have, rounds, fell_back) = (got.need, got.have, got.rounds, got.fell_back);
        let bytes = got.bytes_sent + got.bytes_received;
        need.sort();
        let mut want = extra.clone();
        want.sort();
        assert_eq!((need, have, rounds, fell_back), (want, 0, 1, false));
        assert!(bytes <= 3 * 100 * 32, "{bytes} bytes for 100 ids of 32 bytes");
    }

    #[test]
    fn a_hundred_differences_in_any_split_decode_in_one_round_trip_within_three_times_the_minimum()
    {
        let common: Vec<RecordId> = (0..5_000).map(id).collect();
        let mut total = 0;
        let splits = [50u64, 10, 90, 0, 100, 30];
        for ours in splits {
            let from = 600_000 + ours * 1_000;
            let a: Vec<RecordId> =
                common.iter().copied().chain((from..from + ours).map(id)).collect();
            let b: Vec<RecordId> =
                common.iter().copied().chain((from + ours..from + 100).map(id)).collect();
            let theirs = sketched(&b);
            let got = reconcile_sketch_local(sketched(&a), (&theirs.0, &theirs.1)).unwrap();
            assert_eq!((got.need.len() as u64, got.have, got.fell_back), (100 - ours, ours, false));
            assert_eq!(got.rounds, 1, "{ours}/{}: one round trip", 100 - ours);
            let bytes = got.bytes_sent + got.bytes_received;
            // One session's bytes follow the estimate's error (9 %).
            assert!(bytes <= 100 * 32 * 7 / 2, "{ours}/{}: {bytes} bytes", 100 - ours);
            total += bytes;
        }
        let mean = total / splits.len() as u64;
        assert!(mean <= 3 * 100 * 32, "{mean} bytes on average");
    }

    #[test]
    fn a_sync_2_initiator_without_an_estimator_is_answered_from_the_set_sizes() {
        let theirs = Sketch::from_ids(SKETCH_SYMBOLS_MAX, &(0..1_000).map(id).collect::<Vec<_>>());
        let symbols = |r: SyncResponse| match r {
            SyncResponse::Sketch { symbols, .. } => symbols.len() / riblt::SYMBOL_BYTES,
            other => panic!("{other:?}"),
        };
        // Equal sizes: the count asked for; 100 fewer: enough for 100.
        assert_eq!(symbols(answer_sketch(&theirs, 0, 32, 1_000, &[])), 32);
        let behind = symbols_for_difference(100) as usize;
        assert_eq!(symbols(answer_sketch(&theirs, 0, 32, 900, &[])), behind);
        // Later asks get what they ask for, whatever the estimator.
        assert_eq!(symbols(answer_sketch(&theirs, 32, 64, 1_000, &[])), 64);
    }

    #[test]
    fn a_lying_or_malformed_estimator_costs_the_responder_at_most_the_kept_symbols() {
        let ids: Vec<RecordId> = (0..1_000).map(id).collect();
        let theirs = Sketch::from_ids(SKETCH_SYMBOLS_MAX, &ids);
        let symbols = |estimator: &[u8]| match answer_sketch(&theirs, 0, 32, 1_000, estimator) {
            SyncResponse::Sketch { symbols, .. } => Ok(symbols.len() / riblt::SYMBOL_BYTES),
            SyncResponse::Refused { reason } => Err(reason),
            other => panic!("{other:?}"),
        };
        assert!(symbols(&[0u8; 3]).unwrap_err().contains("estimator"));
        assert!(symbols(&vec![0u8; riblt::ESTIMATOR_BYTES + 1]).is_err());
        // Counters as far from ours as they go: the largest difference claimed,
        // beyond the kept symbols, so none (the initiator goes to negentropy).
        let far: Vec<u8> = theirs
            .estimator()
            .encode()
            .chunks_exact(2)
            .flat_map(|c| u16::from_le_bytes([c[0], c[1]]).wrapping_add(0x8000).to_le_bytes())
            .collect();
        assert_eq!(symbols(&far), Ok(0));
        // Counters off ours by up to +-spread each (claimed differences from
        // none to beyond the kept symbols), and arbitrary bytes: at most the
        // kept symbols, more for a larger claim.
        let ours = theirs.estimator().encode();
        let noise = |seed: u64, i: usize| blake3::hash(&(seed << 16 | i as u64).to_le_bytes());
        let mut last = 0;
        for spread in [0u16, 1, 4, 16, 64, 256, 1024] {
            let raw: Vec<u8> = ours
                .chunks_exact(2)
                .enumerate()
                .flat_map(|(i, c)| {
                    let h = noise(u64::from(spread), i);
                    let off =
                        u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]) % (2 * spread + 1);
                    let c = u16::from_le_bytes([c[0], c[1]]).wrapping_add(off).wrapping_sub(spread);
                    c.to_le_bytes()
                })
                .collect();
            let n = symbols(&raw).unwrap();
            assert!(n <= SKETCH_SYMBOLS_MAX as usize, "{spread}: {n}");
            assert!(n >= last || n == 0, "{spread}: {n} after {last}");
            last = n;
        }
        for seed in 0..16u64 {
            let raw: Vec<u8> =
                (0..riblt::ESTIMATOR_BYTES).map(|i| noise(seed, i).as_bytes()[0]).collect();
            assert!(symbols(&raw).unwrap() <= SKETCH_SYMBOLS_MAX as usize);
        }
        // Our own estimator: no difference, one symbol.
        assert_eq!(symbols(&theirs.estimator().encode()), Ok(1));
    }

    #[test]
    fn a_difference_beyond_the_kept_symbols_falls_back_to_negentropy() {
        let theirs_ids: Vec<RecordId> = (0..40_000).map(id).collect();
        let theirs = sketched(&theirs_ids);
        let got = reconcile_sketch_local(sketched(&[]), (&theirs.0, &theirs.1)).unwrap();
        assert!(got.fell_back);
        assert_eq!(got.need.len(), 40_000);
    }

    /// The sync messages as `/medmesh/sync/2` nodes read and write them.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum SyncRequestV2 {
        Fetch {
            ids: Vec<serde_bytes::ByteBuf>,
        },
        Sketch {
            #[serde(with = "serde_bytes")]
            network: Vec<u8>,
            start: u32,
            count: u32,
            set_len: u64,
        },
    }

    #[test]
    fn sync_2_nodes_read_our_sketch_requests_and_we_read_theirs() {
        let estimator = Sketch::new(1).estimator().encode();
        let ours = SyncRequest::Sketch {
            network: vec![7; 32],
            start: u32::MAX,
            count: u32::MAX,
            set_len: u64::MAX,
            estimator,
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &ours).unwrap();
        let old: SyncRequestV2 = cbor4ii::serde::from_slice(&bytes).unwrap();
        let want = SyncRequestV2::Sketch {
            network: vec![7; 32],
            start: u32::MAX,
            count: u32::MAX,
            set_len: u64::MAX,
        };
        assert_eq!(old, want);
        let theirs = cbor4ii::serde::to_vec(Vec::new(), &old).unwrap();
        let SyncRequest::Sketch { estimator, set_len, .. } =
            cbor4ii::serde::from_slice(&theirs).unwrap()
        else {
            panic!("not a sketch request")
        };
        assert_eq!((estimator.len(), set_len), (0, u64::MAX));
        // What the sessions count is what travels, at most.
        let estimator_header = 2; // a byte string's length of 512 takes 2 more bytes
        let counted = SKETCH_REQUEST_BYTES + riblt::ESTIMATOR_BYTES as u64 + estimator_header;
        assert_eq!(bytes.len() as u64, counted);
        let later = SyncRequest::Sketch {
            network: vec![7; 32],
            start: u32::MAX,
            count: u32::MAX,
            set_len: u64::MAX,
            estimator: Vec::new(),
        };
        let later = cbor4ii::serde::to_vec(Vec::new(), &later).unwrap();
        assert_eq!(later.len() as u64, SKETCH_REQUEST_BYTES);
        let answer = SyncResponse::Sketch { set_len: u64::MAX, symbols: vec![0; 42 * 300] };
        let answer = cbor4ii::serde::to_vec(Vec::new(), &answer).unwrap();
        assert_eq!(answer.len() as u64, SKETCH_RESPONSE_BYTES + 42 * 300);
    }
}
