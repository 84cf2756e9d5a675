//! A bounded, in-memory log of the records this node refused, and why.
//!
//! Every place a record is refused (gossip precheck and verification, sync
//! ingestion, a submission through the control API or [`crate::Client::submit`],
//! an import, the node's own store read back at start) records one [`Refusal`]: when, from where, the peer if any, the
//! record id if the bytes had the shape to compute one, the signer if it was
//! decoded, the reason's stable name ([`protocol::RecordError::kind`]) and a short
//! message. The log keeps the last [`REFUSALS_LEN`] refusals and a counter per
//! reason since the node started; it never holds record bytes.
//!
//! Records held back on gossip by the per-signer rate limit (reason
//! [`RATE_LIMITED`]) or because [`crate::swarm::GOSSIP_VALIDATIONS_MAX`] records
//! are already being verified (reason [`BUSY`]) are not refusals: they may be
//! valid, and sync fetches them later. They are kept apart ([`HELD_LEN`] most
//! recent) so that a flood cannot push the evidence of invalid records out of the
//! log.
//!
//! Valid records that are stored but have no effect (a decision by a non-member,
//! a revoked key's signature, an equivocator's decisions) are not refused either:
//! the fold lists them in [`protocol::State::ignored`] with a reason, and results
//! that do not count carry theirs in [`protocol::State::results`].

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use protocol::{PublicKey, RecordError, RecordId};
use serde::{Deserialize, Serialize};

/// Refusals kept (the most recent).
pub const REFUSALS_LEN: usize = 256;
/// Rate-limited records kept (the most recent).
pub const HELD_LEN: usize = 32;
/// Longest message kept with one refusal; longer ones are cut.
pub const REFUSAL_MESSAGE_BYTES_MAX: usize = 256;
/// The reason name of a valid record held back by the per-signer gossip rate limit.
pub const RATE_LIMITED: &str = "rate_limited";
/// The reason name of a gossip record not verified because the node was already
/// verifying as many as it takes at once.
pub const BUSY: &str = "busy";
/// The reason name of a record a sync peer returned in a page that did not ask for
/// it (dropped unread, and counted against the peer).
pub const UNREQUESTED: &str = "unrequested";

/// Where a refused record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Pushed by a peer on gossip.
    Gossip,
    /// Served by a peer in a catch-up sync page.
    Sync,
    /// Submitted through the control API (or [`crate::Client::submit`]).
    Control,
    /// Handed to [`crate::Client::import`].
    Import,
    /// Read back from this node's own store at start (and found invalid).
    Store,
}

/// One refused (or held) record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub source: Source,
    /// The peer that sent it (gossip and sync).
    pub peer: Option<String>,
    /// The record id, when the bytes had the shape to compute one.
    pub id: Option<RecordId>,
    /// The signer, when the envelope was decoded that far.
    pub signer: Option<PublicKey>,
    /// A short stable name: [`RecordError::kind`], [`UNREQUESTED`] for a record a
    /// sync peer sent unasked, or [`RATE_LIMITED`] or [`BUSY`] for a held record.
    pub reason: Cow<'static, str>,
    /// What was wrong, for people (at most [`REFUSAL_MESSAGE_BYTES_MAX`] bytes).
    pub message: String,
}

/// A snapshot of the log, as [`crate::Client::refusals`] and `GET /v1/refusals`
/// return it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusals {
    /// The most recent refusals, newest first (at most [`REFUSALS_LEN`]).
    pub refused: Vec<Refusal>,
    /// Refusals per reason since the node started.
    pub counts: BTreeMap<String, u64>,
    /// Refusals since the node started (the sum of `counts`).
    pub refused_total: u64,
    /// The most recent gossip records held back (rate limit, busy), newest first
    /// (at most [`HELD_LEN`]); sync fetches them later.
    pub held: Vec<Refusal>,
    /// Records held back since the node started.
    pub held_total: u64,
}

/// What is known about a refused record besides the error.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin<'a> {
    pub(crate) source: Source,
    pub(crate) peer: Option<&'a libp2p::PeerId>,
}

impl<'a> Origin<'a> {
    pub(crate) fn new(source: Source, peer: Option<&'a libp2p::PeerId>) -> Self {
        Origin { source, peer }
    }
}

/// The log itself: two rings and the counters.
#[derive(Debug, Default)]
pub(crate) struct RefusalLog {
    refused: VecDeque<Refusal>,
    counts: BTreeMap<&'static str, u64>,
    refused_total: u64,
    held: VecDeque<Refusal>,
    held_total: u64,
}

impl RefusalLog {
    /// Record a refusal (evicting the oldest when full).
    pub(crate) fn refuse(
        &mut self,
        origin: Origin<'_>,
        id: Option<RecordId>,
        signer: Option<PublicKey>,
        error: &RecordError,
    ) {
        self.refuse_for(origin, id, signer, error.kind(), &error.to_string());
    }

    /// Record a refusal for a reason that is not a [`RecordError`] (a record
    /// refused for how it came, [`UNREQUESTED`], not for what it is).
    pub(crate) fn refuse_for(
        &mut self,
        origin: Origin<'_>,
        id: Option<RecordId>,
        signer: Option<PublicKey>,
        reason: &'static str,
        message: &str,
    ) {
        *self.counts.entry(reason).or_insert(0) += 1;
        self.refused_total += 1;
        push_bounded(&mut self.refused, REFUSALS_LEN, entry(origin, id, signer, reason, message));
    }

    /// Record a gossip record held back: `reason` is [`RATE_LIMITED`] or [`BUSY`].
    pub(crate) fn hold(
        &mut self,
        origin: Origin<'_>,
        id: RecordId,
        signer: Option<PublicKey>,
        reason: &'static str,
    ) {
        self.held_total += 1;
        let message = if reason == RATE_LIMITED {
            "signer is over its gossip rate limit; sync fetches the record later"
        } else {
            "node was verifying as many gossip records as it takes at once; sync fetches the record later"
        };
        push_bounded(&mut self.held, HELD_LEN, entry(origin, Some(id), signer, reason, message));
    }

    /// Records held back since start.
    pub(crate) fn held_total(&self) -> u64 {
        self.held_total
    }

    /// The peer that sent the most recent held-back record, if one did.
    pub(crate) fn newest_held_peer(&self) -> Option<libp2p::PeerId> {
        self.held.back()?.peer.as_deref()?.parse().ok()
    }

    pub(crate) fn snapshot(&self) -> Refusals {
        Refusals {
            refused: self.refused.iter().rev().cloned().collect(),
            counts: self.counts.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            refused_total: self.refused_total,
            held: self.held.iter().rev().cloned().collect(),
            held_total: self.held_total,
        }
    }
}

fn entry(
    origin: Origin<'_>,
    id: Option<RecordId>,
    signer: Option<PublicKey>,
    reason: &'static str,
    message: &str,
) -> Refusal {
    Refusal {
        at_ms: now_ms(),
        source: origin.source,
        peer: origin.peer.map(|p| p.to_string()),
        id,
        signer,
        reason: Cow::Borrowed(reason),
        message: truncate(message, REFUSAL_MESSAGE_BYTES_MAX),
    }
}

fn push_bounded(ring: &mut VecDeque<Refusal>, len: usize, r: Refusal) {
    while ring.len() >= len {
        ring.pop_front();
    }
    ring.push_back(r);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RecordId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_be_bytes());
        RecordId::from_bytes(b)
    }

    #[test]
    fn the_log_keeps_the_most_recent_refusals_and_counts_every_one() {
        let mut log = RefusalLog::default();
        let peer = libp2p::PeerId::random();
        let extra = 100;
        for n in 0..(REFUSALS_LEN + extra) as u64 {
            let e = if n % 2 == 0 {
                RecordError::BadSignature
            } else {
                RecordError::TooLarge { len: 70_000, max: 61_440 }
            };
            log.refuse(Origin::new(Source::Gossip, Some(&peer)), Some(id(n)), None, &e);
        }
        let s = log.snapshot();
        assert_eq!(s.refused.len(), REFUSALS_LEN);
        assert_eq!(s.refused_total, (REFUSALS_LEN + extra) as u64);
        assert_eq!(s.counts["bad_signature"] + s.counts["too_large"], s.refused_total);
        assert_eq!(s.counts["bad_signature"], s.counts["too_large"]);
        // Newest first; the oldest `extra` were evicted.
        let last = (REFUSALS_LEN + extra - 1) as u64;
        assert_eq!(s.refused[0].id, Some(id(last)));
        assert_eq!(s.refused[REFUSALS_LEN - 1].id, Some(id(extra as u64)));
        assert_eq!(s.refused[0].peer, Some(peer.to_string()));
        assert!(s.held.is_empty());
        assert_eq!(s.held_total, 0);
    }

    #[test]
    fn a_flood_of_held_records_does_not_evict_refusals() {
        let mut log = RefusalLog::default();
        log.refuse(Origin::new(Source::Control, None), None, None, &RecordError::BadSignature);
        let signer =
            protocol::testkit::Author::new("flooder", protocol::NetworkId::from_bytes([1; 32]))
                .public();
        for n in 0..(HELD_LEN * 10) as u64 {
            log.hold(Origin::new(Source::Gossip, None), id(n), Some(signer), RATE_LIMITED);
        }
        let s = log.snapshot();
        assert_eq!(s.held.len(), HELD_LEN);
        assert_eq!(s.held_total, (HELD_LEN * 10) as u64);
        assert!(s.held.iter().all(|h| h.reason == RATE_LIMITED && h.signer == Some(signer)));
        assert_eq!(s.refused.len(), 1);
        assert_eq!(s.counts.get(RATE_LIMITED), None, "held records are not refusals");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let mut log = RefusalLog::default();
        let e =
            RecordError::Invalid { field: "name", reason: "é".repeat(REFUSAL_MESSAGE_BYTES_MAX) };
        log.refuse(Origin::new(Source::Import, None), None, None, &e);
        let m = &log.snapshot().refused[0].message;
        assert!(m.len() <= REFUSAL_MESSAGE_BYTES_MAX + '…'.len_utf8(), "{} bytes", m.len());
    }
}
