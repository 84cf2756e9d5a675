//! Catch-up sync: set reconciliation over record ids, then fetching the missing
//! records in bounded pages.
//!
//! A session starts with rateless invertible Bloom lookup tables
//! ([`protocol::riblt`]): every node keeps the first
//! [`protocol::riblt::SKETCH_SYMBOLS_MAX`] coded symbols of its id set up to date,
//! the initiator asks for a prefix sized from the two set sizes and peels the
//! difference out of it, asking for more (doubling) until it decodes. A
//! difference too large for the kept symbols, or symbols that do not decode,
//! fall back to range-based reconciliation over sorted ids (the `negentropy`
//! protocol), whose cost grows with the difference too but in more round trips.
//! `BENCHMARKS.md` has both, measured.
//!
//! Protocol `/medmesh/sync/2` (`/medmesh/sync/1` plus `Sketch`), request-response
//! with CBOR framing:
//! - `Sketch { network, start, count, set_len }` -> `Sketch { set_len, symbols }`:
//!   coded symbols `start..start + count` of the responder's set (on the first
//!   request at least as many as the difference of the set sizes needs, and none
//!   when that is more than the responder keeps).
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
pub const PROTOCOL: &str = "/medmesh/sync/2";
/// Coded symbols asked for first; the responder sends more when the set sizes
/// differ by more than these decode.
pub const SKETCH_FIRST_SYMBOLS: u32 = 32;
/// Bytes a sketch request carries besides its symbols (network id, start, count,
/// set size, framing), as the benches count them.
pub const SKETCH_REQUEST_BYTES: u64 = 32 + 4 + 4 + 8 + 8;

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
    /// the initiator's set size.
    Sketch {
        #[serde(with = "serde_bytes")]
        network: Vec<u8>,
        start: u32,
        count: u32,
        set_len: u64,
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
/// first request, at least as many as the difference of the set sizes needs;
/// none when that is more than we keep (the initiator falls back to negentropy).
pub fn answer_sketch(sketch: &Sketch, start: u32, count: u32, their_len: u64) -> SyncResponse {
    let set_len = sketch.set_len();
    let mut count = count.min(SKETCH_SYMBOLS_MAX);
    if start == 0 {
        let hint = symbols_for_difference(set_len.abs_diff(their_len));
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
    /// `(start, count, set_len)`.
    pub fn start(local: Arc<Sketch>) -> (SketchInitiator, (u32, u32, u64)) {
        let set_len = local.set_len();
        let s = SketchInitiator {
            decoder: Decoder::new(),
            local,
            rounds: 1,
            bytes_sent: SKETCH_REQUEST_BYTES,
            bytes_received: 0,
        };
        (s, (0, SKETCH_FIRST_SYMBOLS, set_len))
    }

    /// Our set's size when the session started.
    pub fn local_len(&self) -> u64 {
        self.local.set_len()
    }

    /// Take the responder's symbols.
    pub fn step(&mut self, their_len: u64, symbols: &[u8]) -> Result<SketchStep, RibltError> {
        self.bytes_received += symbols.len() as u64 + 8;
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
                let hint = symbols_for_difference(self.local.set_len().abs_diff(their_len));
                let count = have.max(hint.saturating_sub(have));
                self.rounds += 1;
                self.bytes_sent += SKETCH_REQUEST_BYTES;
                Ok(SketchStep::More { start: have, count })
            }
        }
    }
}

/// Reconcile two in-memory sets as a node does (benches): coded symbols first,
/// negentropy when they do not decode. Returns (need, have, round trips, bytes
/// both ways, whether it fell back to negentropy).
pub fn reconcile_sketch_local(
    ours: (Arc<Sketch>, IdSnapshot),
    theirs: (&Sketch, &IdSnapshot),
) -> Result<(Vec<RecordId>, u64, u32, u64, bool), String> {
    let (mut init, (mut start, mut count, set_len)) = SketchInitiator::start(ours.0);
    loop {
        let SyncResponse::Sketch { set_len: their_len, symbols } =
            answer_sketch(theirs.0, start, count, set_len)
        else {
            return Err("unexpected answer".into());
        };
        match init.step(their_len, &symbols).map_err(|e| e.to_string())? {
            SketchStep::Done { need, have } => {
                let bytes = init.bytes_sent + init.bytes_received;
                return Ok((need, have, init.rounds, bytes, false));
            }
            SketchStep::More { start: s, count: c } => (start, count) = (s, c),
            SketchStep::Exhausted => {
                let (need, have, rounds, bytes) =
                    reconcile_local(ours.1, theirs.1).map_err(|e| e.to_string())?;
                let bytes = bytes + init.bytes_sent + init.bytes_received;
                return Ok((need, have, rounds + init.rounds, bytes, true));
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
    let (mut init, mut msg) = Initiator::start_with_ids_max(ours, usize::MAX)?;
    loop {
        let answer = respond(theirs, &msg)?;
        match init.step(&answer)? {
            Some(next) => msg = next,
            None => break,
        }
    }
    let bytes = init.bytes_sent + init.bytes_received;
    Ok((init.need, init.have, init.rounds, bytes))
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
        let (mut need, have, rounds, bytes, fell_back) =
            reconcile_sketch_local(ours, (&theirs.0, &theirs.1)).unwrap();
        need.sort();
        let mut want = extra.clone();
        want.sort();
        assert_eq!((need, have, rounds, fell_back), (want, 0, 1, false));
        assert!(bytes <= 3 * 100 * 32, "{bytes} bytes for 100 ids of 32 bytes");
    }

    #[test]
    fn differences_on_both_sides_decode_by_asking_for_more_symbols() {
        let common: Vec<RecordId> = (0..5_000).map(id).collect();
        let a: Vec<RecordId> = common.iter().copied().chain((600_000..600_040).map(id)).collect();
        let b: Vec<RecordId> = common.iter().copied().chain((700_000..700_040).map(id)).collect();
        let theirs = sketched(&b);
        let (need, have, rounds, _, fell_back) =
            reconcile_sketch_local(sketched(&a), (&theirs.0, &theirs.1)).unwrap();
        assert_eq!((need.len(), have, fell_back), (40, 40, false));
        assert!(rounds > 1, "equal set sizes give no hint: the ask doubles");
    }

    #[test]
    fn a_difference_beyond_the_kept_symbols_falls_back_to_negentropy() {
        let theirs_ids: Vec<RecordId> = (0..40_000).map(id).collect();
        let theirs = sketched(&theirs_ids);
        let (need, _, _, _, fell_back) =
            reconcile_sketch_local(sketched(&[]), (&theirs.0, &theirs.1)).unwrap();
        assert!(fell_back);
        assert_eq!(need.len(), 40_000);
    }
}
