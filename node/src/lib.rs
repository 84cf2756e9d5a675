//! The MedMesh node: it stores, relays and answers queries; it never signs.
//!
//! - [`store`]: the redb store (record bytes by id, the network root).
//! - `core`: the replica in memory: the fold's [`protocol::Ledger`], the sorted id
//!   index and the RIBLT sketch sync reconciles over, and the cached derived state.
//! - [`swarm`]: the libp2p swarm (gossipsub with manual validation, Kademlia,
//!   identify, sync) and the single task that owns it.
//! - [`sync`]: catch-up by set reconciliation (RIBLT coded symbols, negentropy
//!   when they do not decode) and paged fetches.
//! - [`netem`]: link shaping (latency, jitter, loss, bandwidth) for the
//!   simulation; off unless [`NodeConfig::shaping`] is set.
//! - [`control`]: the local HTTP control API the CLI talks to.
//! - [`views`]: paged, indexed queries over the derived state (what the CLI and
//!   the web UI list, a page at a time).
//! - [`web`]: the read-only leaderboard pages (HTML with an SVG chart and heatmap).
//! - [`charts`]: those charts (points with intervals on a labelled axis, the
//!   heatmap), shared with `medmesh ui`.
//! - [`node`]: [`Node`] (start, stop) and [`Client`] (the cheap handle to a node).
//! - [`peers`]: the address book on disk and the redial schedule that reconnects
//!   lost peers.
//! - [`refusals`]: the bounded log of refused records and their reasons.
//! - `serve`: answering peers' sync requests off the swarm task, within a budget
//!   per peer.
//!
//! Data directory layout: `store.redb` (records and root), `peer.key` (the libp2p
//! identity, owner-only), `control.token` (bearer token for control API writes,
//! owner-only), `control.addr` (where the control API listens), `peers` (the
//! address book: where peers this node dialled can be reached).
//!
//! Architecture invariants: a record is verified and durably stored before it is
//! forwarded on gossip or acknowledged; stored bytes are the bytes received.

pub mod admission;
pub mod blobs;
pub mod blobstore;
pub mod charts;
pub mod control;
mod core;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod netem;
pub mod node;
pub mod peers;
pub mod ratelimit;
pub mod refusals;
pub mod serve;
pub mod store;
pub mod swarm;
pub mod sync;
pub mod views;
pub mod web;

use std::sync::{Arc, Mutex, MutexGuard};

use protocol::{
    Hash32, NetworkId, PublicKey, Record, RecordError, RecordId, State, Unverified, verify_batch,
};
use tokio::sync::broadcast;
use tracing::{debug, warn};

pub use error::{StartError, StoreError, SubmitError};
pub use libp2p::{Multiaddr, PeerId};
pub use node::{Client, Node, NodeConfig, Submitted, load_root_file};
pub use refusals::{Refusal, Refusals, Source};
pub use swarm::{Gossiped, PeerInfo, SyncSession, SyncStatus};

/// Newly stored record ids announced to subscribers.
pub const STORED_EVENTS_LEN: usize = 4096;

/// State shared by the swarm task, sync ingestion and clients.
pub(crate) struct Shared {
    pub(crate) network: NetworkId,
    core: Mutex<core::Core>,
    stored: broadcast::Sender<RecordId>,
    refusals: Mutex<refusals::RefusalLog>,
    pub(crate) counters: metrics::Counters,
}

impl Shared {
    fn new(mut core: core::Core) -> Self {
        let (stored, _) = broadcast::channel(STORED_EVENTS_LEN);
        // Stored records refused when the store was read back start the log.
        let refusals = Mutex::new(core.take_load_refusals());
        Shared {
            network: core.network_id(),
            core: Mutex::new(core),
            stored,
            refusals,
            counters: metrics::Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, core::Core> {
        // A panic while holding the lock would be a bug; the data stays usable.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refusal_log(&self) -> MutexGuard<'_, refusals::RefusalLog> {
        self.refusals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Log a refused record under the audit target and keep it in the refusal log.
    pub(crate) fn refuse(
        &self,
        origin: refusals::Origin<'_>,
        id: Option<RecordId>,
        signer: Option<PublicKey>,
        error: &RecordError,
    ) {
        let peer = origin.peer.map(|p| p.to_string());
        let short_id = id.map(|i| i.short());
        match origin.source {
            // A bad sync page, import or store is summarised by the caller.
            refusals::Source::Sync | refusals::Source::Import | refusals::Source::Store => {
                debug!(target: "medmesh::audit", source = ?origin.source, peer, id = short_id, reason = error.kind(), %error, "record refused")
            }
            refusals::Source::Gossip | refusals::Source::Control => {
                warn!(target: "medmesh::audit", source = ?origin.source, peer, id = short_id, reason = error.kind(), %error, "record refused")
            }
        }
        self.refusal_log().refuse(origin, id, signer, error);
    }

    /// Log a record a sync peer returned in a page that did not ask for it
    /// ([`refusals::UNREQUESTED`]).
    pub(crate) fn refuse_unrequested(&self, peer: &libp2p::PeerId, id: RecordId) {
        let origin = refusals::Origin::new(refusals::Source::Sync, Some(peer));
        debug!(target: "medmesh::audit", %peer, id = %id.short(), reason = refusals::UNREQUESTED, "record refused");
        self.refusal_log().refuse_for(
            origin,
            Some(id),
            None,
            refusals::UNREQUESTED,
            "a sync peer returned this record in a page that did not ask for it; dropped unread",
        );
    }

    /// Decode `bytes` as an envelope of this network (every check but the
    /// signature), or refuse them: logged with their id when they have the shape
    /// to compute one.
    pub(crate) fn decode_or_refuse(
        &self,
        origin: refusals::Origin<'_>,
        bytes: &[u8],
    ) -> Result<Unverified, RecordError> {
        Unverified::decode(bytes, &self.network)
            .inspect_err(|e| self.refuse(origin, Record::peek_id(bytes).ok(), None, e))
    }

    /// Decode and verify `bytes`, or refuse them: logged with their id when they
    /// have one and, once the envelope decoded, the signer it claims. The one
    /// check for a record that comes alone (gossip, a submission); pages and
    /// imports use [`Shared::ingest_batch`].
    pub(crate) fn verify_or_refuse(
        &self,
        origin: refusals::Origin<'_>,
        bytes: &[u8],
    ) -> Result<Record, RecordError> {
        let unverified = self.decode_or_refuse(origin, bytes)?;
        let (id, signer) = (unverified.id(), unverified.signer());
        unverified.verify().inspect_err(|e| self.refuse(origin, Some(id), Some(signer), e))
    }

    /// Log and keep a gossip record held back (`reason`: [`refusals::RATE_LIMITED`]
    /// or [`refusals::BUSY`]).
    pub(crate) fn hold(
        &self,
        origin: refusals::Origin<'_>,
        id: RecordId,
        signer: Option<PublicKey>,
        reason: &'static str,
    ) {
        debug!(target: "medmesh::audit", peer = origin.peer.map(|p| p.to_string()), id = %id.short(), signer = signer.map(|s| s.short()), reason, "gossip record held");
        self.refusal_log().hold(origin, id, signer, reason);
    }

    /// Gossip records held back since start (they arrive later by sync).
    pub(crate) fn held_total(&self) -> u64 {
        self.refusal_log().held_total()
    }

    /// The peer that sent the most recent held-back gossip record.
    pub(crate) fn newest_held_peer(&self) -> Option<libp2p::PeerId> {
        self.refusal_log().newest_held_peer()
    }

    pub(crate) fn refusals(&self) -> refusals::Refusals {
        self.refusal_log().snapshot()
    }

    pub(crate) fn contains(&self, id: &RecordId) -> bool {
        self.lock().contains(id)
    }

    pub(crate) fn len(&self) -> u64 {
        self.lock().len()
    }

    /// Store verified records (durably) whose signers may take part, index them,
    /// announce the new ones; log those the node does not store (not admitted,
    /// over a quota) with `origin`.
    pub(crate) fn insert(
        &self,
        records: &[Record],
        origin: refusals::Origin<'_>,
    ) -> Result<core::Inserted, StoreError> {
        self.insert_owned(records.to_vec(), origin)
    }

    /// As [`Shared::insert`], without copying the records.
    pub(crate) fn insert_owned(
        &self,
        records: Vec<Record>,
        origin: refusals::Origin<'_>,
    ) -> Result<core::Inserted, StoreError> {
        let out = self.lock().insert(records)?;
        self.announce(&out.stored);
        for r in &out.refused {
            let peer = origin.peer.map(|p| p.to_string());
            if origin.source == refusals::Source::Control {
                warn!(target: "medmesh::audit", source = ?origin.source, id = %r.id.short(), signer = %r.signer.short(), reason = r.reason, "record refused");
            } else {
                debug!(target: "medmesh::audit", source = ?origin.source, peer, id = %r.id.short(), signer = %r.signer.short(), reason = r.reason, "record refused");
            }
            self.refusal_log().refuse_for(origin, Some(r.id), Some(r.signer), r.reason, &r.message);
        }
        Ok(out)
    }

    fn announce(&self, ids: &[RecordId]) {
        if !ids.is_empty() && self.stored.receiver_count() > 0 {
            for id in ids {
                let _ = self.stored.send(*id);
            }
        }
    }

    /// Store records as given, past every check (tests of hostile peers).
    pub(crate) fn insert_unchecked(&self, records: Vec<Record>) -> Result<u64, StoreError> {
        let ids: Vec<RecordId> = records.iter().map(|r| r.id).collect();
        let n = self.lock().insert_unchecked(records)?;
        if n > 0 {
            self.announce(&ids);
        }
        Ok(n)
    }

    /// The ids of `ids` worth fetching: not held, not refused as not admitted since
    /// the admissions last changed, not a pooled join request.
    pub(crate) fn wanted(&self, ids: Vec<RecordId>) -> Vec<RecordId> {
        let core = self.lock();
        ids.into_iter().filter(|id| !core.contains(id) && !core.deferred(id)).collect()
    }

    pub(crate) fn join_requests(&self) -> Vec<admission::PendingJoin> {
        self.lock().join_requests()
    }

    pub(crate) fn replica_metrics(&self) -> (Vec<(&'static str, u64)>, u64, u64, u64) {
        self.lock().metrics()
    }

    pub(crate) fn admission_status(&self) -> admission::AdmissionStatus {
        self.lock().admission_status()
    }

    /// Verify a page of fetched records and store the good ones: decode each
    /// once, drop those already held (one lock for the page), verify the
    /// rest, store them in one transaction. Each refused record goes to the
    /// refusal log with `origin`.
    pub(crate) fn ingest_batch(
        &self,
        records: Vec<Vec<u8>>,
        origin: refusals::Origin<'_>,
    ) -> Result<(u64, u64), StoreError> {
        let mut rejected = 0;
        let mut items: Vec<Unverified> = Vec::with_capacity(records.len());
        for bytes in &records {
            match self.decode_or_refuse(origin, bytes) {
                Ok(u) => items.push(u),
                Err(_) => rejected += 1,
            }
        }
        drop(records);
        {
            let core = self.lock();
            items.retain(|u| !core.contains(&u.id()));
        }
        let claimed: Vec<(RecordId, PublicKey)> =
            items.iter().map(|u| (u.id(), u.signer())).collect();
        let mut ok = Vec::with_capacity(items.len());
        for (r, (id, signer)) in verify_batch(items).into_iter().zip(claimed) {
            match r {
                Ok(r) => ok.push(r),
                Err(e) => {
                    rejected += 1;
                    self.refuse(origin, Some(id), Some(signer), &e);
                }
            }
        }
        let stored = self.insert_owned(ok, origin)?.stored();
        Ok((stored, rejected))
    }

    /// Ingest a fetched sync page: only records whose id was asked for in that page
    /// (each once) go on to [`Shared::ingest_batch`]; the others are dropped unread
    /// and logged as [`refusals::UNREQUESTED`]. Bytes without the shape of an
    /// envelope go on too, to be refused for what they are. Returns (stored,
    /// rejected, unrequested).
    pub(crate) fn ingest_page(
        &self,
        records: Vec<Vec<u8>>,
        mut asked: std::collections::HashSet<RecordId>,
        peer: &libp2p::PeerId,
    ) -> Result<(u64, u64, u64), StoreError> {
        let mut unrequested = 0;
        let mut kept = Vec::with_capacity(records.len());
        for bytes in records {
            match Record::peek_id(&bytes) {
                Ok(id) if !asked.remove(&id) => {
                    unrequested += 1;
                    self.refuse_unrequested(peer, id);
                }
                _ => kept.push(bytes),
            }
        }
        let origin = refusals::Origin::new(refusals::Source::Sync, Some(peer));
        let (stored, rejected) = self.ingest_batch(kept, origin)?;
        Ok((stored, rejected, unrequested))
    }

    pub(crate) fn id_snapshot(&self) -> Result<sync::IdSnapshot, StoreError> {
        let mut c = self.lock();
        c.store()?;
        Ok(c.id_snapshot())
    }

    pub(crate) fn sketch(&self) -> Result<Arc<protocol::riblt::Sketch>, StoreError> {
        let c = self.lock();
        c.store()?;
        Ok(c.sketch())
    }

    pub(crate) fn get_many(
        &self,
        ids: &[RecordId],
        bytes_max: u64,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        self.lock().store()?.get_many(ids, bytes_max)
    }

    pub(crate) fn get(&self, id: &RecordId) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock().store()?.get(id)
    }

    pub(crate) fn ids(
        &self,
        after: Option<&RecordId>,
        limit: u64,
    ) -> Result<Vec<RecordId>, StoreError> {
        self.lock().store()?.ids(after, limit)
    }

    pub(crate) fn state(&self) -> Arc<State> {
        self.lock().state()
    }

    pub(crate) fn views(&self) -> Arc<views::Views> {
        self.lock().views()
    }

    pub(crate) fn state_hash(&self) -> Hash32 {
        self.lock().state_hash()
    }

    pub(crate) fn head(&self, signer: &PublicKey) -> Option<(u64, RecordId)> {
        self.lock().head(signer)
    }

    pub(crate) fn close(&self) {
        self.lock().close();
    }
}

#[cfg(test)]
mod tests {
    use protocol::testkit::Workflow;

    use crate::{Node, NodeConfig, Source};

    #[tokio::test]
    async fn a_submission_with_a_bad_signature_is_logged_with_its_id_and_signer() {
        let w = Workflow::complete();
        let dir = tempfile::tempdir().unwrap();
        let mut c = NodeConfig::new(dir.path());
        c.root = Some(w.root.clone());
        let n = Node::start(c).await.unwrap();
        let good = &w.records[0];
        let mut forged = good.bytes.to_vec();
        *forged.last_mut().unwrap() ^= 1;
        let e = n.client().submit(&forged).await.unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
        let log = n.client().refusals();
        let r = &log.refused[0];
        assert_eq!(
            (r.source, r.reason.as_ref(), r.id, r.signer),
            (Source::Control, "bad_signature", Some(good.id), Some(good.signer))
        );
        n.shutdown().await;
    }
}
