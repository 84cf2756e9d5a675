//! The node's replica: the redb store, the in-memory [`Ledger`] (the fold's
//! incremental indexes, whose sorted id list sync also reconciles over), the
//! coded symbols of the ids, and the derived [`State`], recomputed only when
//! records changed.
//!
//! Shared as `Arc<Mutex<Core>>` by the swarm task, sync ingestion and the control
//! API; the lock is never held across an await.

use std::sync::Arc;

use protocol::{
    Hash32, Ledger, NetworkId, NetworkRoot, PublicKey, Record, RecordId, State, Unverified,
    verify_batch,
};
use tracing::{debug, warn};

use crate::admission::{
    Deferred, JoinPool, NOT_ADMITTED, PendingJoin, Pooled, Quotas, Usage, is_authority,
};
use crate::error::StoreError;
use crate::refusals::{Origin, RefusalLog, Source};
use crate::store::Store;
use crate::sync::IdIndex;
use crate::views::Views;

/// Records verified together when the store is read back at start.
const LOAD_BATCH_RECORDS: usize = 1024;
/// Batches read back between two returns of freed memory to the system: the
/// decoded records of each batch are freed between the indexes' long-lived
/// allocations, and glibc keeps those holes resident until asked.
const LOAD_TRIM_BATCHES: u64 = 64;

/// Hand the allocator's free memory back to the system. Reading a large store
/// back and folding it allocate and free a great deal of short-lived memory
/// (decoded records, sort buffers, the previous state) between long-lived
/// indexes; glibc keeps those holes resident until asked to return them.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub(crate) struct Core {
    store: Option<Store>,
    ledger: Ledger,
    ids: IdIndex,
    state: Option<Arc<State>>,
    /// The indexes of the paged views over `state`, built on first use.
    views: Option<Arc<Views>>,
    /// Stored records refused when the store was read back, until the refusal
    /// log takes them.
    load_refusals: RefusalLog,
    /// Who may take part ([`Ledger::admitted`]), computed again after an
    /// admission, rotation or revocation is stored.
    admitted: protocol::Admitted,
    pool: JoinPool,
    deferred: Deferred,
    usage: Usage,
    quotas: Quotas,
    /// Records held per kind, for `/metrics`.
    kinds: std::collections::BTreeMap<&'static str, u64>,
    fold_runs: u64,
    fold_micros: u64,
}

/// A record the node would not store, and why (a refusal-log reason name).
pub(crate) struct Refused {
    pub(crate) id: RecordId,
    pub(crate) signer: PublicKey,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// What [`Core::insert`] did with a set of records.
#[derive(Default)]
pub(crate) struct Inserted {
    /// Records stored (including join requests promoted from the pool).
    pub(crate) stored: Vec<RecordId>,
    /// Join requests newly pooled (and worth forwarding).
    pub(crate) pooled: Vec<RecordId>,
    /// Join requests already pooled.
    pub(crate) known: u64,
    pub(crate) refused: Vec<Refused>,
}

impl Inserted {
    pub(crate) fn stored(&self) -> u64 {
        self.stored.len() as u64
    }
}

impl Core {
    /// Load every stored record, checking each one's id and signature again with
    /// the same rule as every other path (decode, then `verify_strict`). What
    /// fails is skipped and kept for the refusal log (source `store`).
    #[cfg(test)]
    pub(crate) fn load(store: Store, root: NetworkRoot) -> Result<Core, StoreError> {
        Self::load_with(store, root, Quotas::default())
    }

    /// As [`Core::load`], with the node's quotas.
    pub(crate) fn load_with(
        store: Store,
        root: NetworkRoot,
        quotas: Quotas,
    ) -> Result<Core, StoreError> {
        let network = root.network_id();
        let mut ledger = Ledger::new(root);
        let mut ids = IdIndex::default();
        let mut refusals = RefusalLog::default();
        let mut usage = Usage::default();
        let mut kinds = std::collections::BTreeMap::new();
        let count = store.len()?;
        ledger.reserve(count as usize);
        let mut batch: Vec<(RecordId, Unverified)> = Vec::with_capacity(LOAD_BATCH_RECORDS);
        let mut bad = 0u64;
        let mut batches = 0u64;
        let origin = Origin::new(Source::Store, None);
        let flush = |batch: &mut Vec<(RecordId, Unverified)>,
                     ledger: &mut Ledger,
                     ids: &mut IdIndex,
                     usage: &mut Usage,
                     kinds: &mut std::collections::BTreeMap<&'static str, u64>,
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
                        usage.add(r.signer, r.bytes.len());
                        *kinds.entry(r.kind()).or_default() += 1;
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
                    bad += flush(&mut batch, &mut ledger, &mut ids, &mut usage, &mut kinds, &mut refusals);
                    batches += 1;
                    if batches.is_multiple_of(LOAD_TRIM_BATCHES) {
                        release_free_memory();
                    }
                }
            }
            Err(e) => {
                bad += 1;
                debug!(target: "medmesh::audit", source = "store", id = %id.short(), reason = e.kind(), error = %e, "record refused");
                refusals.refuse(origin, Some(id), None, &e);
            }
        })?;
        bad += flush(&mut batch, &mut ledger, &mut ids, &mut usage, &mut kinds, &mut refusals);
        if bad > 0 {
            warn!(target: "medmesh::audit", bad, "stored records failed verification on load and were skipped (see GET /v1/refusals, source store)");
        }
        let admitted = ledger.admitted();
        release_free_memory();
        Ok(Core {
            store: Some(store),
            ledger,
            ids,
            state: None,
            views: None,
            load_refusals: refusals,
            admitted,
            pool: JoinPool::default(),
            deferred: Deferred::default(),
            usage,
            quotas,
            kinds,
            fold_runs: 0,
            fold_micros: 0,
        })
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

    /// Durably store the records not yet held whose signers may take part, then
    /// index them. Records that change who is admitted (admissions, rotations,
    /// revocations) go first, so a page holding an admission and the new member's
    /// records stores both whatever their order. A join request from a key not
    /// admitted goes to the pool; any other record of such a key is refused
    /// (`not_admitted`) and its id remembered until the admissions change. Each
    /// record must also fit the quotas.
    pub(crate) fn insert(&mut self, records: Vec<Record>) -> Result<Inserted, StoreError> {
        let mut out = Inserted::default();
        let (first, then): (Vec<Record>, Vec<Record>) =
            records.into_iter().filter(|r| !self.ledger.contains(&r.id)).partition(is_authority);
        for phase in [first, then] {
            if phase.is_empty() {
                continue;
            }
            let mut keep = Vec::with_capacity(phase.len());
            for r in phase {
                if !self.admitted.admits(&r.signer) {
                    if matches!(r.body, protocol::record::Body::JoinRequest(_)) {
                        let id = r.id;
                        match self.pool.offer(r) {
                            Pooled::Added => out.pooled.push(id),
                            Pooled::Known => out.known += 1,
                        }
                    } else {
                        self.deferred.insert(r.id);
                        out.refused.push(Refused {
                            id: r.id,
                            signer: r.signer,
                            reason: NOT_ADMITTED,
                            message: format!(
                                "key {} is not admitted to this network: it may send a join request (`medmesh network apply`), and its records count once the admins admit it (`medmesh network admit {}`)",
                                r.signer.short(),
                                r.signer
                            ),
                        });
                    }
                    continue;
                }
                let admin = self.ledger.root().admins.contains(&r.signer);
                if let Some((reason, message)) =
                    self.usage.check(&self.quotas, &r.signer, r.bytes.len(), admin)
                {
                    out.refused.push(Refused { id: r.id, signer: r.signer, reason, message });
                    continue;
                }
                self.usage.add(r.signer, r.bytes.len());
                keep.push(r);
            }
            let authority = keep.iter().any(is_authority);
            self.store_and_index(keep, &mut out)?;
            if authority {
                self.refresh_admitted(&mut out)?;
            }
        }
        Ok(out)
    }

    /// Store and index records that passed the gate.
    fn store_and_index(&mut self, keep: Vec<Record>, out: &mut Inserted) -> Result<(), StoreError> {
        if keep.is_empty() {
            return Ok(());
        }
        self.store()?.put(&keep)?;
        for r in &keep {
            if self.ledger.insert(r) {
                self.ids.push(r.id);
                out.stored.push(r.id);
                *self.kinds.entry(r.kind()).or_default() += 1;
            }
        }
        self.state = None;
        self.views = None;
        Ok(())
    }

    /// After authority records: who is admitted now; if that changed, forget the
    /// refused ids (sync fetches them again) and store the pooled requests of the
    /// keys now admitted.
    fn refresh_admitted(&mut self, out: &mut Inserted) -> Result<(), StoreError> {
        let admitted = self.ledger.admitted();
        if admitted == self.admitted {
            return Ok(());
        }
        self.admitted = admitted;
        self.deferred.clear();
        let promoted = self.pool.take_admitted(&self.admitted);
        for r in &promoted {
            self.usage.add(r.signer, r.bytes.len());
        }
        self.store_and_index(promoted, out)
    }

    /// Store and index records as given, past every gate (tests of hostile peers).
    pub(crate) fn insert_unchecked(&mut self, records: Vec<Record>) -> Result<u64, StoreError> {
        let fresh: Vec<Record> =
            records.into_iter().filter(|r| !self.ledger.contains(&r.id)).collect();
        let mut out = Inserted::default();
        self.store_and_index(fresh, &mut out)?;
        Ok(out.stored())
    }

    /// Was this id refused as `not_admitted` since the admissions last changed, or
    /// is it a pooled join request? Sync does not fetch such ids.
    pub(crate) fn deferred(&self, id: &RecordId) -> bool {
        self.deferred.contains(id) || self.pool.contains(id)
    }

    /// The join requests waiting in the pool, newest first.
    pub(crate) fn join_requests(&self) -> Vec<PendingJoin> {
        self.pool.list()
    }

    /// What `/metrics` reads from the replica: records by kind, fold runs and
    /// microseconds, store file bytes.
    pub(crate) fn metrics(&self) -> (Vec<(&'static str, u64)>, u64, u64, u64) {
        let kinds = self.kinds.iter().map(|(k, n)| (*k, *n)).collect();
        let file = self.store.as_ref().map_or(0, |s| s.file_bytes());
        (kinds, self.fold_runs, self.fold_micros, file)
    }

    /// Admission and quota figures for the status endpoint.
    pub(crate) fn admission_status(&self) -> crate::admission::AdmissionStatus {
        crate::admission::AdmissionStatus {
            mode: self.ledger.root().admission,
            admitted_keys: self.admitted.len() as u64,
            pool_requests: self.pool.len() as u64,
            pool_bytes: self.pool.bytes() as u64,
            deferred_ids: self.deferred.len() as u64,
            store_bytes: self.usage.total_bytes(),
            quotas: self.quotas,
        }
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
        let started = std::time::Instant::now();
        let s = Arc::new(self.ledger.state());
        self.fold_runs += 1;
        self.fold_micros += started.elapsed().as_micros() as u64;
        release_free_memory();
        self.state = Some(s.clone());
        s
    }

    /// The paged views' indexes over the current state (built again only after
    /// the state was folded again).
    pub(crate) fn views(&mut self) -> Arc<Views> {
        let state = self.state();
        if let Some(v) = &self.views
            && Arc::ptr_eq(v.state(), &state)
        {
            return v.clone();
        }
        let v = Arc::new(Views::new(state));
        self.views = Some(v.clone());
        v
    }

    pub(crate) fn state_hash(&mut self) -> Hash32 {
        self.state().hash
    }

    /// A sorted snapshot of every held id, for reconciliation (the ledger's own
    /// id list, shared).
    pub(crate) fn id_snapshot(&mut self) -> crate::sync::IdSnapshot {
        crate::sync::IdSnapshot::shared(self.ledger.id_snapshot())
    }

    /// The coded symbols of every held id, for reconciliation.
    pub(crate) fn sketch(&self) -> Arc<protocol::riblt::Sketch> {
        self.ids.sketch()
    }
}
