//! What a node stores: admission (who may take part), quotas, and the pool of join
//! requests.
//!
//! In an admitted network ([`protocol::AdmissionMode::Admitted`]) a record counts
//! only if its signer is admitted, so a node stores and forwards only admitted
//! keys' records ([`protocol::Ledger::admitted`]). A record of any other key is
//! refused (`not_admitted`) and its id remembered ([`Deferred`]) so that sync does
//! not fetch it again and again; once an admission arrives the remembered ids are
//! forgotten, and the next sync fetches what the new member published. Arrival
//! order therefore never changes what a node ends up holding.
//!
//! A key that is not admitted may still ask: its [`protocol::record::JoinRequest`]
//! goes to a bounded in-memory pool ([`JoinPool`]: one per key, oldest evicted),
//! is forwarded on gossip at a bounded rate, and is stored (promoted) once the key
//! is admitted. Every network also bounds each key and the whole store
//! ([`Quotas`]); admins are exempt from the per-key bounds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use protocol::record::{Body, MemberRole};
use protocol::{PublicKey, Record, RecordId};
use serde::Serialize;

/// Reason name: the signer is not admitted to this (admitted) network.
pub const NOT_ADMITTED: &str = "not_admitted";
/// Reason name: the signer holds as many records or bytes as a key may.
pub const KEY_QUOTA: &str = "key_quota";
/// Reason name: the store holds as many bytes as the node allows.
pub const STORE_QUOTA: &str = "store_quota";

/// Join requests kept at most (one per key).
pub const POOL_LEN_MAX: usize = 1024;
/// Bytes of join requests kept at most.
pub const POOL_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Ids of refused records remembered at most (32 bytes each).
pub const DEFERRED_LEN_MAX: usize = 65_536;
/// Join requests forwarded on gossip per second, on average, and at most at once.
pub const POOL_FORWARD_PER_SEC: f64 = 4.0;
pub const POOL_FORWARD_BURST: f64 = 32.0;

/// What a node stores per key and in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Quotas {
    /// Records one key (not an admin) may have stored.
    pub key_records_max: u64,
    /// Bytes of records one key (not an admin) may have stored.
    pub key_bytes_max: u64,
    /// Bytes of records the store holds at most.
    pub store_bytes_max: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            key_records_max: 50_000,
            key_bytes_max: 256 * 1024 * 1024,
            store_bytes_max: 16 * 1024 * 1024 * 1024,
        }
    }
}

impl Quotas {
    /// No bounds (benches and tests that load large sets from few keys).
    pub fn unlimited() -> Self {
        Quotas { key_records_max: u64::MAX, key_bytes_max: u64::MAX, store_bytes_max: u64::MAX }
    }
}

/// What `GET /v1/status` says about admission and quotas.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct AdmissionStatus {
    pub mode: protocol::AdmissionMode,
    /// Keys that may take part (admins included); 0 in an open network.
    pub admitted_keys: u64,
    pub pool_requests: u64,
    pub pool_bytes: u64,
    /// Ids of refused records not fetched again until the admissions change.
    pub deferred_ids: u64,
    pub store_bytes: u64,
    pub quotas: Quotas,
}

/// Records and bytes stored, per key and in all.
#[derive(Default)]
pub(crate) struct Usage {
    per_key: HashMap<PublicKey, (u64, u64)>,
    total_bytes: u64,
}

impl Usage {
    pub(crate) fn add(&mut self, signer: PublicKey, bytes: usize) {
        let e = self.per_key.entry(signer).or_default();
        e.0 += 1;
        e.1 += bytes as u64;
        self.total_bytes += bytes as u64;
    }

    /// Why one more record of `bytes` from `signer` would break a quota, if it would.
    pub(crate) fn check(
        &self,
        q: &Quotas,
        signer: &PublicKey,
        bytes: usize,
        admin: bool,
    ) -> Option<(&'static str, String)> {
        let bytes = bytes as u64;
        if self.total_bytes.saturating_add(bytes) > q.store_bytes_max {
            return Some((
                STORE_QUOTA,
                format!(
                    "the store holds {} of at most {} bytes (--store-quota); the node takes no more records",
                    self.total_bytes, q.store_bytes_max
                ),
            ));
        }
        if admin {
            return None;
        }
        let (n, b) = self.per_key.get(signer).copied().unwrap_or_default();
        if n.saturating_add(1) > q.key_records_max || b.saturating_add(bytes) > q.key_bytes_max {
            return Some((
                KEY_QUOTA,
                format!(
                    "key {} has {n} records ({b} bytes) stored here; a key may have at most {} records and {} bytes",
                    signer.short(),
                    q.key_records_max,
                    q.key_bytes_max
                ),
            ));
        }
        None
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}

/// Ids of records refused as `not_admitted`, so sync does not fetch them again
/// until the admissions change. Bounded: the oldest are forgotten first.
#[derive(Default)]
pub(crate) struct Deferred {
    order: VecDeque<RecordId>,
    set: HashSet<RecordId>,
}

impl Deferred {
    pub(crate) fn insert(&mut self, id: RecordId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > DEFERRED_LEN_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub(crate) fn contains(&self, id: &RecordId) -> bool {
        self.set.contains(id)
    }

    pub(crate) fn clear(&mut self) {
        self.order.clear();
        self.set.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

/// A join request waiting in the pool, as `GET /v1/join-requests` shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PendingJoin {
    pub id: RecordId,
    pub key: PublicKey,
    pub seq: u64,
    pub name: String,
    pub organisation: String,
    pub roles: Vec<MemberRole>,
    pub message: String,
    /// When this node received it (Unix seconds).
    pub received_at: u64,
}

/// The pool of join requests from keys not admitted yet: at most one per key (its
/// highest seq), [`POOL_LEN_MAX`] in all and [`POOL_BYTES_MAX`] bytes, oldest
/// evicted first.
#[derive(Default)]
pub(crate) struct JoinPool {
    entries: VecDeque<(Record, u64)>,
    /// The ids in `entries`, for sync's check of every id it might fetch.
    ids: HashSet<RecordId>,
    bytes: usize,
}

/// What offering a join request to the pool did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pooled {
    /// New in the pool (worth forwarding).
    Added,
    /// This request or a later one from the key is already pooled.
    Known,
}

impl JoinPool {
    pub(crate) fn offer(&mut self, r: Record) -> Pooled {
        if let Some(i) = self.entries.iter().position(|(e, _)| e.signer == r.signer) {
            if self.entries[i].0.seq >= r.seq {
                return Pooled::Known;
            }
            if let Some((old, _)) = self.entries.remove(i) {
                self.bytes -= old.bytes.len();
                self.ids.remove(&old.id);
            }
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.bytes += r.bytes.len();
        self.ids.insert(r.id);
        self.entries.push_back((r, now));
        while self.entries.len() > POOL_LEN_MAX || self.bytes > POOL_BYTES_MAX {
            match self.entries.pop_front() {
                Some((old, _)) => {
                    self.bytes -= old.bytes.len();
                    self.ids.remove(&old.id);
                }
                None => break,
            }
        }
        Pooled::Added
    }

    pub(crate) fn contains(&self, id: &RecordId) -> bool {
        self.ids.contains(id)
    }

    /// Remove and return the requests of keys `admitted` now admits.
    pub(crate) fn take_admitted(&mut self, admitted: &protocol::Admitted) -> Vec<Record> {
        let (take, keep): (Vec<_>, Vec<_>) =
            self.entries.drain(..).partition(|(r, _)| admitted.admits(&r.signer));
        self.entries = keep.into();
        self.bytes = self.entries.iter().map(|(r, _)| r.bytes.len()).sum();
        self.ids = self.entries.iter().map(|(r, _)| r.id).collect();
        take.into_iter().map(|(r, _)| r).collect()
    }

    pub(crate) fn list(&self) -> Vec<PendingJoin> {
        self.entries
            .iter()
            .rev()
            .filter_map(|(r, at)| match &r.body {
                Body::JoinRequest(j) => Some(PendingJoin {
                    id: r.id,
                    key: r.signer,
                    seq: r.seq,
                    name: j.name.clone(),
                    organisation: j.organisation.clone(),
                    roles: j.roles.clone(),
                    message: j.message.clone(),
                    received_at: *at,
                }),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A token bucket for forwarding join requests on gossip, so that fresh keys
/// cannot make a node relay a flood.
pub(crate) struct ForwardBudget {
    tokens: f64,
    at: Instant,
}

impl Default for ForwardBudget {
    fn default() -> Self {
        ForwardBudget { tokens: POOL_FORWARD_BURST, at: Instant::now() }
    }
}

impl ForwardBudget {
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * POOL_FORWARD_PER_SEC).min(POOL_FORWARD_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Does this record change who is admitted?
pub(crate) fn is_authority(r: &Record) -> bool {
    matches!(r.body, Body::Admission(_) | Body::AdminRotation(_) | Body::KeyRevocation(_))
}

#[cfg(test)]
mod tests {
    use protocol::record::MemberRole;
    use protocol::testkit::{self, Author};

    use super::*;

    fn request(label: &str, seq: u64) -> Record {
        let a = Author::new(label, protocol::NetworkId::from_bytes([7; 32]));
        let prev = (seq > 0).then(|| RecordId::from_bytes([1; 32]));
        a.sign_at(seq, prev, testkit::join_request(label, &[MemberRole::DataOwner]))
    }

    #[test]
    fn the_pool_keeps_one_request_per_key_and_evicts_the_oldest_past_its_bound() {
        let mut pool = JoinPool::default();
        assert_eq!(pool.offer(request("a", 0)), Pooled::Added);
        assert_eq!(pool.offer(request("a", 0)), Pooled::Known);
        assert_eq!(pool.offer(request("a", 1)), Pooled::Added, "a later request replaces");
        assert_eq!(pool.len(), 1);
        for i in 0..POOL_LEN_MAX + 10 {
            pool.offer(request(&format!("k{i}"), 0));
        }
        assert_eq!(pool.len(), POOL_LEN_MAX);
        assert!(pool.bytes() <= POOL_BYTES_MAX);
        assert_eq!(pool.ids.len(), POOL_LEN_MAX, "the id index follows evictions");
        let keys: Vec<_> = pool.list().into_iter().map(|p| p.name).collect();
        assert!(!keys.contains(&"a".to_string()), "the oldest went first");
        assert!(keys.contains(&format!("k{}", POOL_LEN_MAX + 9)));
    }

    #[test]
    fn deferred_ids_are_bounded() {
        let mut d = Deferred::default();
        for i in 0..DEFERRED_LEN_MAX + 5 {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            d.insert(RecordId::from_bytes(b));
        }
        assert_eq!(d.len(), DEFERRED_LEN_MAX);
        assert!(!d.contains(&RecordId::from_bytes([0; 32])), "the oldest is forgotten");
    }

    #[test]
    fn quotas_bound_each_key_and_the_store_but_not_admins_per_key() {
        let q = Quotas { key_records_max: 2, key_bytes_max: 1000, store_bytes_max: 5000 };
        let k = Author::new("k", protocol::NetworkId::from_bytes([0; 32])).public();
        let mut u = Usage::default();
        u.add(k, 100);
        u.add(k, 100);
        assert_eq!(u.check(&q, &k, 100, false).unwrap().0, KEY_QUOTA);
        assert!(u.check(&q, &k, 100, true).is_none(), "admins are exempt from key quotas");
        assert_eq!(u.check(&q, &k, 4900, true).unwrap().0, STORE_QUOTA);
    }

    #[test]
    fn the_forward_budget_lets_a_burst_through_then_a_steady_rate() {
        let mut b = ForwardBudget::default();
        let t = Instant::now();
        let burst = (0..100).filter(|_| b.allow(t)).count();
        assert_eq!(burst, POOL_FORWARD_BURST as usize);
        assert!(b.allow(t + std::time::Duration::from_secs(1)));
    }
}
