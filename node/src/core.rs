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
use tracing::warn;

use crate::error::StoreError;
use crate::store::Store;
use crate::sync::IdIndex;

/// Records verified together when the store is read back at start.
const LOAD_BATCH_RECORDS: usize = 1024;

pub(crate) struct Core {
    store: Option<Store>,
    ledger: Ledger,
    ids: IdIndex,
    state: Option<Arc<State>>,
}

impl Core {
    /// Load every stored record, checking each one's id and signature again.
    pub(crate) fn load(store: Store, root: NetworkRoot) -> Result<Core, StoreError> {
        let network = root.network_id();
        let mut ledger = Ledger::new(root);
        let mut ids = IdIndex::default();
        let count = store.len()?;
        ledger.reserve(count as usize);
        let mut batch: Vec<(RecordId, Unverified)> = Vec::with_capacity(LOAD_BATCH_RECORDS);
        let mut bad = 0u64;
        let flush = |batch: &mut Vec<(RecordId, Unverified)>,
                     ledger: &mut Ledger,
                     ids: &mut IdIndex|
         -> u64 {
            let mut bad = 0;
            let (keys, items): (Vec<RecordId>, Vec<Unverified>) = batch.drain(..).unzip();
            for (key, r) in keys.into_iter().zip(verify_batch(items)) {
                match r {
                    Ok(r) if r.id == key => {
                        ledger.insert(&r);
                        ids.push(r.id);
                    }
                    _ => bad += 1,
                }
            }
            bad
        };
        store.for_each(|id, bytes| match Unverified::decode(bytes, &network) {
            Ok(u) => {
                batch.push((id, u));
                if batch.len() >= LOAD_BATCH_RECORDS {
                    bad += flush(&mut batch, &mut ledger, &mut ids);
                }
            }
            Err(_) => bad += 1,
        })?;
        bad += flush(&mut batch, &mut ledger, &mut ids);
        if bad > 0 {
            warn!(target: "medmesh::audit", bad, "stored records failed verification on load and were skipped");
        }
        Ok(Core { store: Some(store), ledger, ids, state: None })
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
