//! Catch-up sync: range-based set reconciliation over sorted record ids (the
//! `negentropy` protocol), then fetching the missing records in bounded pages.
//!
//! Protocol `/medmesh/sync/1`, request-response with CBOR framing:
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
pub const PROTOCOL: &str = "/medmesh/sync/1";

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
}

/// Every held id, kept sorted, with recent inserts merged lazily.
#[derive(Default)]
pub(crate) struct IdIndex {
    sorted: Arc<Vec<Item>>,
    pending: Vec<Item>,
}

fn item(id: RecordId) -> Item {
    Item { timestamp: 0, id: Id::from_byte_array(*id.as_bytes()) }
}

impl IdIndex {
    pub(crate) fn push(&mut self, id: RecordId) {
        self.pending.push(item(id));
    }

    pub(crate) fn snapshot(&mut self) -> IdSnapshot {
        if !self.pending.is_empty() {
            let mut pending = std::mem::take(&mut self.pending);
            pending.sort_unstable();
            let old = &self.sorted;
            let mut merged = Vec::with_capacity(old.len() + pending.len());
            let (mut i, mut j) = (0, 0);
            while i < old.len() && j < pending.len() {
                if old[i] <= pending[j] {
                    merged.push(old[i]);
                    i += 1;
                } else {
                    merged.push(pending[j]);
                    j += 1;
                }
            }
            merged.extend_from_slice(&old[i..]);
            merged.extend_from_slice(&pending[j..]);
            merged.dedup();
            self.sorted = Arc::new(merged);
        }
        IdSnapshot(self.sorted.clone())
    }
}

/// An immutable sorted id set that negentropy reads.
#[derive(Clone, Debug)]
pub struct IdSnapshot(Arc<Vec<Item>>);

impl IdSnapshot {
    /// A snapshot of arbitrary ids (benches and tests).
    pub fn from_ids(ids: impl IntoIterator<Item = RecordId>) -> Self {
        let mut v: Vec<Item> = ids.into_iter().map(item).collect();
        v.sort_unstable();
        v.dedup();
        IdSnapshot(Arc::new(v))
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
        Ok(self.0.get(i).copied())
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
            if !cb(self.0[i], i)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        let last = last.min(self.0.len());
        let first = first.min(last);
        first + self.0[first..last].partition_point(|x| *x < value.item)
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

    #[test]
    fn the_index_merges_pending_ids_in_order() {
        let mut ix = IdIndex::default();
        for i in [5, 1, 3] {
            ix.push(id(i));
        }
        let a = ix.snapshot();
        ix.push(id(2));
        ix.push(id(1));
        let b = ix.snapshot();
        assert_eq!(a.len(), 3);
        assert_eq!(b.len(), 4);
        assert!(b.0.windows(2).all(|w| w[0] < w[1]));
    }
}
