//! The node's replica: the redb store, the in-memory [`Ledger`] (the fold's
//! incremental indexes), the sorted id index that sync reconciles over, and the
//! derived [`State`], recomputed only when records changed.
//!
//! Shared as `Arc<Mutex<Core>>` by the swarm task, sync ingestion and the control
//! API; the lock is never held across an await.

use std::sync::Arc;

use protocol::{
    Hash32, Ledger, NetworkId, NetworkRoot, PublicKey, Record, RecordId, State, Unverified,
    verify_batch,
};
use tracing::{debug, warn};

use crate::error::StoreError;
use crate::refusals::{Origin, RefusalLog, Source};
use crate::store::Store;
use crate::sync::IdIndex;

/// Records verified together when the store is read back at start.
const LOAD_BATCH_RECORDS: usize = 1024;

pub(crate) struct Core {
    store: Option<Store>,
    ledger: Ledger,
    ids: IdIndex,
    state: Option<Arc<State>>,
    /// Stored records refused when the store was read back, until the refusal
    /// log takes them.
    load_refusals: RefusalLog,
}

impl Core {
    /// Load every stored record, checking each one's id and signature again with
    /// the same rule as every other path (decode, then `verify_strict`). What
    /// fails is skipped and kept for the refusal log (source `store`).
    pub(crate) fn load(store: Store, root: NetworkRoot) -> Result<Core, StoreError> {
        let network = root.network_id();
        let mut ledger = Ledger::new(root);
        let mut ids = IdIndex::default();
        let mut refusals = RefusalLog::default();
        let count = store.len()?;
        ledger.reserve(count as usize);
        let mut batch: Vec<(RecordId, Unverified)> = Vec::with_capacity(LOAD_BATCH_RECORDS);
        let mut bad = 0u64;
        let origin = Origin::new(Source::Store, None);
        let flush = |batch: &mut Vec<(RecordId, Unverified)>,
                     ledger: &mut Ledger,
                     ids: &mut IdIndex,
                     refusals: &mut RefusalLog|
         -> u64 {
            let mut bad = 0;
            let claimed: Vec<PublicKey> = batch.iter().map(|(_, u)| u.signer()).collect();
            let (keys, items): (Vec<RecordId>, Vec<Unverified>) = batch.drain(..).unzip();
            for ((key, r), signer) in keys.into_iter().zip(verify_batch(items)).zip(claimed) {
                match r {
                    Ok(r) if r.id == key => {
                        ledger.insert(&r);
                        ids.push(r.id);
                    }
                    Ok(r) => {
                        bad += 1;
                        warn!(target: "medmesh::audit", key = %key.short(), id = %r.id.short(), "a stored record is filed under another id; skipped");
                    }
                    Err(e) => {
                        bad += 1;
                        debug!(target: "medmesh::audit", source = "store", id = %key.short(), reason = e.kind(), error = %e, "record refused");
                        refusals.refuse(origin, Some(key), Some(signer), &e);
                    }
                }
            }
            bad
        };
        store.for_each(|id, bytes| match Unverified::decode(bytes, &network) {
            Ok(u) => {
                batch.push((id, u));
                if batch.len() >= LOAD_BATCH_RECORDS {
                    bad += flush(&mut batch, &mut ledger, &mut ids, &mut refusals);
                }
            }
            Err(e) => {
                bad += 1;
                debug!(target: "medmesh::audit", source = "store", id = %id.short(), reason = e.kind(), error = %e, "record refused");
                refusals.refuse(origin, Some(id), None, &e);
            }
        })?;
        bad += flush(&mut batch, &mut ledger, &mut ids, &mut refusals);
        if bad > 0 {
            warn!(target: "medmesh::audit", bad, "stored records failed verification on load and were skipped (see GET /v1/refusals, source store)");
        }
        Ok(Core { store: Some(store), ledger, ids, state: None, load_refusals: refusals })
    }

    /// The refusals of the load, once (the shared refusal log starts with them).
    pub(crate) fn take_load_refusals(&mut self) -> RefusalLog {
        std::mem::take(&mut self.load_refusals)
    }

    pub(crate) fn network_id(&self) -> NetworkId {
        self.ledger.network_id()
    }

    pub(crate) fn store(&self) -> Result<&Store, StoreError> {
        self.store.as_ref().ok_or(StoreError::Closed)
    }

    /// Close the store (releases the data directory's lock).
    pub(crate) fn close(&mut self) {
        self.store = None;
    }

    pub(crate) fn contains(&self, id: &RecordId) -> bool {
        self.ledger.contains(id)
    }

    /// Durably store the records not yet held, then index them. Returns how many
    /// were new.
    pub(crate) fn insert(&mut self, records: Vec<Record>) -> Result<u64, StoreError> {
        let fresh: Vec<Record> =
            records.into_iter().filter(|r| !self.ledger.contains(&r.id)).collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        self.store()?.put(&fresh)?;
        let mut n = 0;
        for r in &fresh {
            if self.ledger.insert(r) {
                self.ids.push(r.id);
                n += 1;
            }
        }
        self.state = None;
        Ok(n)
    }

    pub(crate) fn len(&self) -> u64 {
        self.ledger.len()
    }

    pub(crate) fn head(&self, signer: &PublicKey) -> Option<(u64, RecordId)> {
        self.ledger.head(signer)
    }

    /// The derived state, folded again only if records arrived since the last call.
    pub(crate) fn state(&mut self) -> Arc<State> {
        if let Some(s) = &self.state {
            return s.clone();
        }
        let s = Arc::new(self.ledger.state());
        self.state = Some(s.clone());
        s
    }

    pub(crate) fn state_hash(&mut self) -> Hash32 {
        self.state().hash
    }

    /// A sorted snapshot of every held id, for reconciliation.
    pub(crate) fn id_snapshot(&mut self) -> crate::sync::IdSnapshot {
        self.ids.snapshot()
    }
}
