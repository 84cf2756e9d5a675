//! The fold: a pure, order-independent function from a record SET to [`State`].
//!
//! [`Ledger`] indexes records as they arrive ([`Ledger::insert`] is O(log n) and
//! idempotent); [`Ledger::state`] derives the views from those indexes. Nothing
//! depends on arrival order: every rule below is a function of the set, and every
//! "latest" means the highest `seq` in an author's own chain, never arrival time.
//!
//! Rules (MedPerf's, made peer to peer):
//! - Admin authority starts at the network root; an [`AdminRotation`] for epoch
//!   `e + 1` takes effect once `threshold(e)` distinct epoch-`e` admins signed the
//!   same content (smallest content hash wins a tie).
//! - A [`KeyRevocation`] takes effect at the admin threshold; the key's records
//!   from `from_seq` on then have no authority and no effect.
//! - A signer with two records at one `seq` is an equivocator: it is reported and
//!   its decisions (benchmark and association decisions, release signatures,
//!   revocations, rotations) count for nothing.
//! - Benchmarks: approved once `threshold` admins' latest decisions approve and its
//!   three containers are known; rejected once approval can no longer be reached.
//! - Associations: requested by the owner of the dataset or model, with a passed
//!   compatibility test; approved by `threshold` committee members' latest decisions
//!   (the initiator's own decisions are ignored), or by the benchmark's
//!   auto-approval mode unless `threshold` members reject; a later rejection
//!   revokes a member's approval.
//! - Datasets: operational when registered so or marked so by their owner.
//! - Results count only when signed by the dataset's owner, for an approved
//!   benchmark, approved dataset and model associations and an operational
//!   dataset; the owner's latest result per (benchmark, model, dataset) counts.
//! - Releases show once `threshold` distinct committee members signed identical
//!   content that matches the benchmark's sharing policy; the highest round wins.
//!   The leaderboard is computed from the shown release.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::envelope::Record;
use crate::ids::{Hash32, NetworkId, PublicKey, RecordId};
use crate::record::*;
use crate::root::NetworkRoot;

/// Hashes keys that are already uniformly distributed (BLAKE3 ids, Ed25519 keys)
/// by mixing the leading bytes of each write: several times faster than SipHash,
/// which matters at a million records. Keys come from hashes nobody can choose
/// cheaply, so flooding one bucket would need a preimage search.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut buf = [0u8; 8];
        let n = bytes.len().min(8);
        buf[..n].copy_from_slice(&bytes[..n]);
        self.0 =
            (self.0.rotate_left(23) ^ u64::from_le_bytes(buf)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
type Set<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

/// The ids an author signed at one seq: one, unless it equivocated.
#[derive(Clone, Debug)]
struct Slot {
    first: RecordId,
    more: Vec<RecordId>,
}

/// A record's content as the fold keeps it, with who signed it where.
#[derive(Clone, Debug)]
struct Authored<T> {
    id: RecordId,
    author: PublicKey,
    seq: u64,
    body: T,
}

/// Signatures of identical content (releases, revocations, rotations).
#[derive(Clone, Debug)]
struct Cosigned<T> {
    body: T,
    /// Signer -> the (seq, id) of each record in which it signed this content.
    signers: Map<PublicKey, Vec<(u64, RecordId)>>,
}

/// Per-signer decisions on one subject, by seq.
type Votes<T> = Map<PublicKey, BTreeMap<u64, (RecordId, T)>>;

/// A result as the fold keeps it (the sealed metrics stay in the store).
#[derive(Clone, Debug)]
struct ResultEntry {
    key: (RecordId, RecordId, RecordId),
    id: RecordId,
    author: PublicKey,
    seq: u64,
}

/// The record indexes. Insert in any order; derive with [`Ledger::state`].
#[derive(Clone, Debug)]
pub struct Ledger {
    root: NetworkRoot,
    network: NetworkId,
    ids: Set<RecordId>,
    chains: Map<PublicKey, BTreeMap<u64, Slot>>,
    profiles: Map<PublicKey, BTreeMap<u64, (RecordId, Profile)>>,
    containers: BTreeMap<RecordId, Authored<Container>>,
    benchmarks: BTreeMap<RecordId, Authored<Benchmark>>,
    benchmark_votes: Map<RecordId, Votes<Decision>>,
    datasets: BTreeMap<RecordId, Authored<Dataset>>,
    operational: Map<RecordId, Vec<Authored<Hash32>>>,
    requests: BTreeMap<(RecordId, Subject), Vec<Authored<AssociationRequest>>>,
    association_votes: Map<(RecordId, Subject), Votes<(Decision, Option<i32>)>>,
    /// Append-only; grouped by (benchmark, model, dataset) when deriving. Results
    /// are most of a large record set, so insertion is a push, not a hash insert.
    results: Vec<ResultEntry>,
    releases: Map<RecordId, Map<Hash32, Cosigned<Release>>>,
    revocations: Map<Hash32, Cosigned<KeyRevocation>>,
    rotations: BTreeMap<u64, Map<Hash32, Cosigned<AdminRotation>>>,
}

impl<T> Authored<T> {
    fn of(r: &Record, body: T) -> Self {
        Self { id: r.id, author: r.signer, seq: r.seq, body }
    }
}

fn content_hash<T: Serialize>(body: &T) -> Hash32 {
    Hash32::of(&cbor::to_canonical(body).expect("decoded records re-encode"))
}

fn cosign<T: Clone>(map: &mut Map<Hash32, Cosigned<T>>, hash: Hash32, body: &T, r: &Record) {
    map.entry(hash)
        .or_insert_with(|| Cosigned { body: body.clone(), signers: Map::default() })
        .signers
        .entry(r.signer)
        .or_default()
        .push((r.seq, r.id));
}

impl Ledger {
    /// An empty ledger for the network `root` anchors.
    pub fn new(root: NetworkRoot) -> Self {
        Self {
            network: root.network_id(),
            root,
            ids: Set::default(),
            chains: Map::default(),
            profiles: Map::default(),
            containers: BTreeMap::new(),
            benchmarks: BTreeMap::new(),
            benchmark_votes: Map::default(),
            datasets: BTreeMap::new(),
            operational: Map::default(),
            requests: BTreeMap::new(),
            association_votes: Map::default(),
            results: Vec::new(),
            releases: Map::default(),
            revocations: Map::default(),
            rotations: BTreeMap::new(),
        }
    }

    /// The network this ledger folds.
    pub fn network_id(&self) -> NetworkId {
        self.network
    }

    /// The root document.
    pub fn root(&self) -> &NetworkRoot {
        &self.root
    }

    /// How many distinct records were inserted.
    pub fn len(&self) -> u64 {
        self.ids.len() as u64
    }

    /// Make room for `additional` more records (a node knows its store's size).
    pub fn reserve(&mut self, additional: usize) {
        self.ids.reserve(additional);
    }

    /// True when no record was inserted.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// True when a record with this id was inserted.
    pub fn contains(&self, id: &RecordId) -> bool {
        self.ids.contains(id)
    }

    /// The id the signer's chain holds at `seq`, if exactly one.
    pub fn chain_at(&self, signer: &PublicKey, seq: u64) -> Option<RecordId> {
        let slot = self.chains.get(signer)?.get(&seq)?;
        slot.more.is_empty().then_some(slot.first)
    }

    /// The highest seq held for `signer` and its id (where a client resumes its chain).
    pub fn head(&self, signer: &PublicKey) -> Option<(u64, RecordId)> {
        let (seq, slot) = self.chains.get(signer)?.iter().next_back()?;
        Some((*seq, slot.more.iter().copied().fold(slot.first, RecordId::min)))
    }

    /// Index a verified record. Returns false if it was already present. The record
    /// must have been verified for this ledger's network.
    pub fn insert(&mut self, r: &Record) -> bool {
        if !self.ids.insert(r.id) {
            return false;
        }
        match self.chains.entry(r.signer).or_default().entry(r.seq) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Slot { first: r.id, more: Vec::new() });
            }
            std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().more.push(r.id),
        }
        match &r.body {
            Body::Profile(p) => {
                self.profiles.entry(r.signer).or_default().insert(r.seq, (r.id, p.clone()));
            }
            Body::Container(c) => {
                self.containers.insert(r.id, Authored::of(r, c.clone()));
            }
            Body::Benchmark(b) => {
                self.benchmarks.insert(r.id, Authored::of(r, b.clone()));
            }
            Body::BenchmarkDecision(d) => {
                self.benchmark_votes
                    .entry(d.benchmark)
                    .or_default()
                    .entry(r.signer)
                    .or_default()
                    .insert(r.seq, (r.id, d.decision));
            }
            Body::Dataset(d) => {
                self.datasets.insert(r.id, Authored::of(r, d.clone()));
            }
            Body::DatasetOperational(o) => {
                self.operational
                    .entry(o.dataset)
                    .or_default()
                    .push(Authored::of(r, o.prepared_hash));
            }
            Body::AssociationRequest(a) => {
                self.requests
                    .entry((a.benchmark, a.subject))
                    .or_default()
                    .push(Authored::of(r, a.clone()));
            }
            Body::AssociationDecision(d) => {
                self.association_votes
                    .entry((d.benchmark, d.subject))
                    .or_default()
                    .entry(r.signer)
                    .or_default()
                    .insert(r.seq, (r.id, (d.decision, d.priority)));
            }
            Body::Result(x) => {
                self.results.push(ResultEntry {
                    key: (x.benchmark, x.model, x.dataset),
                    id: r.id,
                    author: r.signer,
                    seq: r.seq,
                });
            }
            Body::Release(x) => {
                let map = self.releases.entry(x.benchmark).or_default();
                cosign(map, content_hash(x), x, r);
            }
            Body::KeyRevocation(x) => cosign(&mut self.revocations, content_hash(x), x, r),
            Body::AdminRotation(x) => {
                let map = self.rotations.entry(x.epoch).or_default();
                cosign(map, content_hash(x), x, r);
            }
        }
        true
    }

    /// Derive the state from everything inserted.
    pub fn state(&self) -> State {
        Deriver::new(self).run()
    }
}

/// Fold a set of verified records into the state. Order and duplicates do not matter.
pub fn fold<'a>(root: &NetworkRoot, records: impl IntoIterator<Item = &'a Record>) -> State {
    let mut ledger = Ledger::new(root.clone());
    for r in records {
        ledger.insert(r);
    }
    ledger.state()
}

// ---------------------------------------------------------------------------
// The derived state.

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    /// An association whose compatibility test failed: it cannot be approved.
    FailedCompatibility,
}

impl Status {
    fn code(self) -> u8 {
        self as u8
    }

    /// How tables and pages print it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::FailedCompatibility => "failed test",
        }
    }
}

/// Two records signed by one author at one seq: a transferable proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    pub author: PublicKey,
    pub seq: u64,
    pub ids: Vec<RecordId>,
}

/// An author whose chain has holes (records withheld or not yet received).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainGap {
    pub author: PublicKey,
    pub highest_seq: u64,
    pub missing: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileView {
    pub id: RecordId,
    pub key: PublicKey,
    pub profile: Profile,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerView {
    pub id: RecordId,
    pub owner: PublicKey,
    pub container: Container,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkView {
    pub id: RecordId,
    pub owner: PublicKey,
    pub benchmark: Benchmark,
    pub status: Status,
    pub approvals: Vec<PublicKey>,
    pub rejections: Vec<PublicKey>,
    /// Containers it names that no record describes yet.
    pub missing_containers: Vec<RecordId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetView {
    pub id: RecordId,
    pub owner: PublicKey,
    pub dataset: Dataset,
    pub state: DatasetState,
    /// The hash from the latest `dataset_operational` record, else the registered one.
    pub prepared_hash: Hash32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationView {
    pub benchmark: RecordId,
    pub subject: Subject,
    /// The request that counts (the initiator's latest).
    pub request: RecordId,
    pub initiator: PublicKey,
    pub status: Status,
    pub auto_approved: bool,
    pub approvals: Vec<PublicKey>,
    pub rejections: Vec<PublicKey>,
    pub priority: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultView {
    pub id: RecordId,
    pub benchmark: RecordId,
    pub model: RecordId,
    pub dataset: RecordId,
    pub submitter: PublicKey,
    /// True when this result counts toward the benchmark.
    pub counts: bool,
    /// Why it does not count.
    pub reason: Option<Cow<'static, str>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    pub benchmark: RecordId,
    pub content_hash: Hash32,
    pub release: Release,
    pub signers: Vec<PublicKey>,
}

pub use crate::leaderboard::{Cell, Leaderboard, LeaderboardRow};

/// A record kept but without effect, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignored {
    pub id: RecordId,
    pub reason: String,
}

/// Everything the fold derives. Identical on every node that holds the same set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub network: NetworkId,
    pub records: u64,
    pub admin_epoch: u64,
    pub admins: Vec<PublicKey>,
    pub admin_threshold: u16,
    /// Key -> first seq without authority.
    pub revoked: BTreeMap<PublicKey, u64>,
    pub equivocations: Vec<Equivocation>,
    pub gaps: Vec<ChainGap>,
    pub profiles: BTreeMap<PublicKey, ProfileView>,
    pub containers: BTreeMap<RecordId, ContainerView>,
    pub benchmarks: BTreeMap<RecordId, BenchmarkView>,
    pub datasets: BTreeMap<RecordId, DatasetView>,
    pub associations: Vec<AssociationView>,
    pub results: Vec<ResultView>,
    pub releases: BTreeMap<RecordId, ReleaseView>,
    pub leaderboards: BTreeMap<RecordId, Leaderboard>,
    pub ignored: Vec<Ignored>,
    /// Summary of all of the above; see [`State::compute_hash`].
    pub hash: Hash32,
}

impl State {
    /// The association of `subject` with `benchmark`, if requested.
    pub fn association(&self, benchmark: &RecordId, subject: &Subject) -> Option<&AssociationView> {
        self.associations
            .binary_search_by(|a| (a.benchmark, a.subject).cmp(&(*benchmark, *subject)))
            .ok()
            .map(|i| &self.associations[i])
    }

    /// Approved models of a benchmark, highest priority first, then by id.
    pub fn approved_models(&self, benchmark: &RecordId) -> Vec<&AssociationView> {
        let mut v: Vec<_> = self
            .associations
            .iter()
            .filter(|a| {
                a.benchmark == *benchmark
                    && matches!(a.subject, Subject::Model(_))
                    && a.status == Status::Approved
            })
            .collect();
        v.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.subject.cmp(&b.subject)));
        v
    }

    /// The state hash: BLAKE3 over a fixed-layout digest of every derived fact.
    /// Record contents are covered by their ids (an id is a hash of the content).
    fn compute_hash(&self) -> Hash32 {
        let mut h = Buffered::default();
        let id = |h: &mut Buffered, b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        h.update(b"medmesh/state/v1\0");
        h.update(self.network.as_bytes());
        h.update(&self.records.to_le_bytes());
        h.update(&self.admin_epoch.to_le_bytes());
        h.update(&self.admin_threshold.to_le_bytes());
        for k in &self.admins {
            id(&mut h, k.as_bytes());
        }
        h.update(b"revoked");
        for (k, s) in &self.revoked {
            id(&mut h, k.as_bytes());
            h.update(&s.to_le_bytes());
        }
        h.update(b"equivocations");
        for e in &self.equivocations {
            id(&mut h, e.author.as_bytes());
            h.update(&e.seq.to_le_bytes());
            for i in &e.ids {
                id(&mut h, i.as_bytes());
            }
        }
        h.update(b"gaps");
        for g in &self.gaps {
            id(&mut h, g.author.as_bytes());
            h.update(&g.highest_seq.to_le_bytes());
            h.update(&g.missing.to_le_bytes());
        }
        h.update(b"profiles");
        for p in self.profiles.values() {
            id(&mut h, p.id.as_bytes());
        }
        h.update(b"containers");
        for c in self.containers.keys() {
            id(&mut h, c.as_bytes());
        }
        h.update(b"benchmarks");
        for b in self.benchmarks.values() {
            id(&mut h, b.id.as_bytes());
            h.update(&[b.status.code()]);
            for k in b.approvals.iter().chain(&b.rejections) {
                id(&mut h, k.as_bytes());
            }
            for c in &b.missing_containers {
                id(&mut h, c.as_bytes());
            }
        }
        h.update(b"datasets");
        for d in self.datasets.values() {
            id(&mut h, d.id.as_bytes());
            h.update(&[d.state as u8]);
            id(&mut h, d.prepared_hash.as_bytes());
        }
        h.update(b"associations");
        for a in &self.associations {
            id(&mut h, a.request.as_bytes());
            h.update(&[a.status.code(), a.auto_approved as u8]);
            h.update(&a.priority.to_le_bytes());
            h.update(&(a.approvals.len() as u64).to_le_bytes());
            for k in a.approvals.iter().chain(&a.rejections) {
                id(&mut h, k.as_bytes());
            }
        }
        h.update(b"results");
        for r in &self.results {
            id(&mut h, r.id.as_bytes());
            h.update(&[r.counts as u8]);
        }
        h.update(b"releases");
        for r in self.releases.values() {
            id(&mut h, r.content_hash.as_bytes());
            for k in &r.signers {
                id(&mut h, k.as_bytes());
            }
        }
        h.update(b"leaderboards");
        for l in self.leaderboards.values() {
            id(&mut h, l.benchmark.as_bytes());
            for row in &l.rows {
                h.update(&row.rank.to_le_bytes());
                id(&mut h, row.model.as_bytes());
                h.update(&row.value.to_le_bytes());
                h.update(&row.datasets.to_le_bytes());
                h.update(&row.mean_rank_milli.unwrap_or(u64::MAX).to_le_bytes());
                h.update(&row.ci_low.unwrap_or(i64::MIN).to_le_bytes());
                h.update(&row.ci_high.unwrap_or(i64::MIN).to_le_bytes());
            }
            for c in &l.cells {
                id(&mut h, c.model.as_bytes());
                id(&mut h, c.dataset.as_bytes());
                h.update(&c.value.to_le_bytes());
            }
        }
        h.update(b"ignored");
        for i in &self.ignored {
            id(&mut h, i.id.as_bytes());
        }
        Hash32::from_bytes(*h.finalize().as_bytes())
    }
}

/// BLAKE3 fed in 64 KiB slices: many tiny `update` calls cost more than hashing.
#[derive(Default)]
struct Buffered {
    h: blake3::Hasher,
    buf: Vec<u8>,
}

impl Buffered {
    fn update(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.h.update(&self.buf);
            self.buf.clear();
        }
    }

    fn finalize(mut self) -> blake3::Hash {
        self.h.update(&self.buf);
        self.h.finalize()
    }
}

// ---------------------------------------------------------------------------
// Derivation.

struct Deriver<'a> {
    l: &'a Ledger,
    equivocators: Set<PublicKey>,
    revoked: BTreeMap<PublicKey, u64>,
    admins: Vec<PublicKey>,
    admin_threshold: u16,
    admin_epoch: u64,
    ignored: Vec<Ignored>,
}

impl<'a> Deriver<'a> {
    fn new(l: &'a Ledger) -> Self {
        Self {
            l,
            equivocators: Set::default(),
            revoked: BTreeMap::new(),
            admins: l.root.admins.clone(),
            admin_threshold: l.root.threshold,
            admin_epoch: 0,
            ignored: Vec::new(),
        }
    }

    /// The record at `seq` of `author` still has authority (not revoked).
    fn valid(&self, author: &PublicKey, seq: u64) -> bool {
        self.revoked.get(author).is_none_or(|from| seq < *from)
    }

    /// May `author`'s record at `seq` count as a decision?
    fn may_decide(&self, author: &PublicKey, seq: u64) -> bool {
        !self.equivocators.contains(author) && self.valid(author, seq)
    }

    fn ignore(&mut self, id: RecordId, reason: impl Into<String>) {
        self.ignored.push(Ignored { id, reason: reason.into() });
    }

    /// Distinct signers in `eligible` whose signature of this content may count.
    fn cosigners<T>(&self, c: &Cosigned<T>, eligible: &[PublicKey]) -> Vec<PublicKey> {
        let mut out: Vec<PublicKey> = c
            .signers
            .iter()
            .filter(|(k, seqs)| {
                eligible.contains(k) && seqs.iter().any(|(s, _)| self.may_decide(k, *s))
            })
            .map(|(k, _)| *k)
            .collect();
        out.sort();
        out
    }

    /// Each eligible voter's latest decision with authority.
    fn tally<T: Copy>(
        &self,
        votes: Option<&Votes<T>>,
        eligible: &[PublicKey],
    ) -> Vec<(PublicKey, T)> {
        let Some(votes) = votes else { return Vec::new() };
        let mut out = Vec::new();
        for k in eligible {
            if let Some(by_seq) = votes.get(k) {
                if let Some((_, (_, v))) =
                    by_seq.iter().rev().find(|(s, _)| self.may_decide(k, **s))
                {
                    out.push((*k, *v));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn run(mut self) -> State {
        let l = self.l;
        // Chains: equivocations and gaps.
        let mut equivocations = Vec::new();
        let mut gaps = Vec::new();
        for (author, seqs) in &l.chains {
            for (seq, slot) in seqs {
                if !slot.more.is_empty() {
                    let mut ids = slot.more.clone();
                    ids.push(slot.first);
                    ids.sort();
                    equivocations.push(Equivocation { author: *author, seq: *seq, ids });
                    self.equivocators.insert(*author);
                }
            }
            if let Some((&highest, _)) = seqs.iter().next_back() {
                let missing = highest + 1 - seqs.len() as u64;
                if missing > 0 {
                    gaps.push(ChainGap { author: *author, highest_seq: highest, missing });
                }
            }
        }
        equivocations.sort_by(|a, b| (a.author, a.seq).cmp(&(b.author, b.seq)));
        gaps.sort_by(|a, b| a.author.cmp(&b.author));

        // Admin epochs.
        loop {
            let Some(candidates) = l.rotations.get(&(self.admin_epoch + 1)) else { break };
            let mut winner: Option<(&Hash32, &AdminRotation)> = None;
            let mut by_hash: Vec<_> = candidates.iter().collect();
            by_hash.sort_by(|a, b| a.0.cmp(b.0));
            for (hash, c) in by_hash {
                let signers = self.cosigners(c, &self.admins);
                if signers.len() >= usize::from(self.admin_threshold) {
                    winner = Some((hash, &c.body));
                    break;
                }
            }
            let Some((_, rotation)) = winner else { break };
            self.admins = rotation.admins.clone();
            self.admins.sort();
            self.admin_threshold = rotation.threshold;
            self.admin_epoch += 1;
        }
        let mut admins_sorted = self.admins.clone();
        admins_sorted.sort();
        self.admins = admins_sorted;

        // Revocations: effective at the admin threshold of the current epoch.
        let mut revs: Vec<_> = l.revocations.iter().collect();
        revs.sort_by(|a, b| a.0.cmp(b.0));
        let mut revoked = BTreeMap::new();
        for (_, c) in &revs {
            if self.cosigners(c, &self.admins).len() >= usize::from(self.admin_threshold) {
                let from: &mut u64 = revoked.entry(c.body.key).or_insert(u64::MAX);
                *from = (*from).min(c.body.from_seq);
            }
        }
        self.revoked = revoked;

        // Profiles: each key's latest valid profile.
        let mut profiles = BTreeMap::new();
        for (key, by_seq) in &l.profiles {
            if let Some((_, (id, p))) = by_seq.iter().rev().find(|(s, _)| self.valid(key, **s)) {
                profiles.insert(*key, ProfileView { id: *id, key: *key, profile: p.clone() });
            }
        }

        // Containers.
        let mut containers = BTreeMap::new();
        for (id, c) in &l.containers {
            if self.valid(&c.author, c.seq) {
                containers.insert(
                    *id,
                    ContainerView { id: *id, owner: c.author, container: c.body.clone() },
                );
            } else {
                self.ignore(*id, "signer's key is revoked");
            }
        }

        // Benchmarks.
        let mut benchmarks = BTreeMap::new();
        let admins = self.admins.clone();
        let admin_k = usize::from(self.admin_threshold);
        for (id, b) in &l.benchmarks {
            if !self.valid(&b.author, b.seq) {
                self.ignore(*id, "signer's key is revoked");
                continue;
            }
            let votes = self.tally(l.benchmark_votes.get(id), &admins);
            let approvals: Vec<_> =
                votes.iter().filter(|v| v.1 == Decision::Approve).map(|v| v.0).collect();
            let rejections: Vec<_> =
                votes.iter().filter(|v| v.1 == Decision::Reject).map(|v| v.0).collect();
            let missing: Vec<RecordId> =
                [b.body.data_preparator, b.body.reference_model, b.body.metrics]
                    .into_iter()
                    .filter(|c| !containers.contains_key(c))
                    .collect();
            let status = if approvals.len() >= admin_k && missing.is_empty() {
                Status::Approved
            } else if rejections.len() >= admin_k || admins.len() - rejections.len() < admin_k {
                Status::Rejected
            } else {
                Status::Pending
            };
            benchmarks.insert(
                *id,
                BenchmarkView {
                    id: *id,
                    owner: b.author,
                    benchmark: b.body.clone(),
                    status,
                    approvals,
                    rejections,
                    missing_containers: missing,
                },
            );
        }
        // Decisions on benchmarks by non-admins change nothing: report them.
        for votes in l.benchmark_votes.values() {
            for (k, by_seq) in votes {
                for (seq, (id, _)) in by_seq {
                    if !admins.contains(k) {
                        self.ignore(*id, "signer is not an admin");
                    } else if !self.may_decide(k, *seq) {
                        self.ignore(*id, "signer has no authority (revoked key or equivocation)");
                    }
                }
            }
        }

        // Datasets.
        let mut datasets = BTreeMap::new();
        for (id, d) in &l.datasets {
            if !self.valid(&d.author, d.seq) {
                self.ignore(*id, "signer's key is revoked");
                continue;
            }
            let mut state = d.body.state;
            let mut prepared_hash = d.body.prepared_hash;
            if let Some(ops) = l.operational.get(id) {
                let latest = ops
                    .iter()
                    .filter(|o| o.author == d.author && self.valid(&o.author, o.seq))
                    .max_by_key(|o| o.seq);
                if let Some(o) = latest {
                    state = DatasetState::Operation;
                    prepared_hash = o.body;
                }
            }
            datasets.insert(
                *id,
                DatasetView {
                    id: *id,
                    owner: d.author,
                    dataset: d.body.clone(),
                    state,
                    prepared_hash,
                },
            );
        }
        for (dataset, ops) in &l.operational {
            for o in ops {
                let owner = datasets.get(dataset).map(|d| d.owner);
                if owner.is_some_and(|owner| owner != o.author) {
                    self.ignore(o.id, "only the dataset's owner can mark it operational");
                }
            }
        }

        // Associations.
        let mut associations = Vec::new();
        for ((bench_id, subject), requests) in &l.requests {
            let owner = match subject {
                Subject::Dataset(d) => datasets.get(d).map(|d| d.owner),
                Subject::Model(m) => containers.get(m).map(|c| c.owner),
            };
            let Some(bench) = benchmarks.get(bench_id) else { continue };
            let Some(owner) = owner else { continue };
            for r in requests.iter().filter(|r| r.author != owner) {
                self.ignore(
                    r.id,
                    "only the owner of a dataset or model can request its association",
                );
            }
            let Some(req) = requests
                .iter()
                .filter(|r| r.author == owner && self.valid(&r.author, r.seq))
                .max_by_key(|r| (r.seq, r.id))
            else {
                continue;
            };
            let b = &bench.benchmark;
            let eligible: Vec<PublicKey> =
                b.committee.iter().copied().filter(|k| *k != req.author).collect();
            if let Some(all) = l.association_votes.get(&(*bench_id, *subject)) {
                for (k, by_seq) in all {
                    for (seq, (id, _)) in by_seq {
                        if *k == req.author {
                            self.ignore(*id, "the initiator cannot decide on its own request");
                        } else if !eligible.contains(k) {
                            self.ignore(*id, "signer is not on the benchmark's committee");
                        } else if !self.may_decide(k, *seq) {
                            self.ignore(
                                *id,
                                "signer has no authority (revoked key or equivocation)",
                            );
                        }
                    }
                }
            }
            let votes = self.tally(l.association_votes.get(&(*bench_id, *subject)), &eligible);
            let approvals: Vec<_> =
                votes.iter().filter(|v| v.1.0 == Decision::Approve).map(|v| v.0).collect();
            let rejections: Vec<_> =
                votes.iter().filter(|v| v.1.0 == Decision::Reject).map(|v| v.0).collect();
            let mode = match subject {
                Subject::Dataset(_) => &b.dataset_auto_approval,
                Subject::Model(_) => &b.model_auto_approval,
            };
            let auto = match mode {
                AutoApproval::Never => false,
                AutoApproval::Always => true,
                AutoApproval::Allowlist(keys) => keys.contains(&req.author),
            };
            let k = usize::from(b.threshold);
            let (status, auto_approved) = if !req.body.compatibility.passed {
                (Status::FailedCompatibility, false)
            } else if approvals.len() >= k {
                (Status::Approved, false)
            } else if rejections.len() >= k {
                (Status::Rejected, false)
            } else if auto {
                (Status::Approved, true)
            } else if eligible.len() - rejections.len() < k {
                (Status::Rejected, false)
            } else {
                (Status::Pending, false)
            };
            let mut priorities: Vec<i32> =
                votes.iter().filter(|v| v.1.0 == Decision::Approve).filter_map(|v| v.1.1).collect();
            priorities.sort();
            let priority =
                if priorities.is_empty() { 0 } else { priorities[(priorities.len() - 1) / 2] };
            associations.push(AssociationView {
                benchmark: *bench_id,
                subject: *subject,
                request: req.id,
                initiator: req.author,
                status,
                auto_approved,
                approvals,
                rejections,
                priority,
            });
        }
        // `requests` is a BTreeMap keyed by (benchmark, subject): already sorted.

        let approved: Set<(RecordId, Subject)> = associations
            .iter()
            .filter(|a| a.status == Status::Approved)
            .map(|a| (a.benchmark, a.subject))
            .collect();
        let assoc_approved = |b: &RecordId, s: Subject| approved.contains(&(*b, s));

        // Results.
        let mut results: Vec<ResultView> = Vec::with_capacity(l.results.len());
        // Sort a compact index on an inline prefix of the key, falling back to the
        // full key and then the id: moving or dereferencing the entries themselves
        // would miss the cache on every comparison.
        let prefix = |id: &RecordId| {
            u64::from_be_bytes(id.as_bytes()[..8].try_into().expect("8 of 32 bytes"))
        };
        let mut order: Vec<(u64, u64, u64, u32)> = l
            .results
            .iter()
            .enumerate()
            .map(|(i, e)| (prefix(&e.key.0), prefix(&e.key.1), prefix(&e.key.2), i as u32))
            .collect();
        order.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)).then_with(|| {
                let (x, y) = (&l.results[a.3 as usize], &l.results[b.3 as usize]);
                (x.key, x.id).cmp(&(y.key, y.id))
            })
        });
        let mut groups: Vec<&[(u64, u64, u64, u32)]> = Vec::new();
        let mut rest = order.as_slice();
        while let Some(first) = rest.first() {
            let key = &l.results[first.3 as usize].key;
            let n = rest.iter().take_while(|o| l.results[o.3 as usize].key == *key).count();
            groups.push(&rest[..n]);
            rest = &rest[n..];
        }
        for group in groups {
            let subs = group.iter().map(|o| &l.results[o.3 as usize]);
            let (bench_id, model, dataset_id) = &l.results[group[0].3 as usize].key;
            let dataset = datasets.get(dataset_id);
            // What does not depend on the individual record, checked once per key.
            let key_reason = if dataset.is_none() {
                Some("dataset is unknown")
            } else if benchmarks.get(bench_id).is_none_or(|b| b.status != Status::Approved) {
                Some("benchmark is not approved")
            } else if !assoc_approved(bench_id, Subject::Dataset(*dataset_id)) {
                Some("dataset association is not approved")
            } else if !assoc_approved(bench_id, Subject::Model(*model)) {
                Some("model association is not approved")
            } else if dataset.is_some_and(|d| d.state != DatasetState::Operation) {
                Some("dataset is not operational")
            } else {
                None
            };
            let start = results.len();
            let mut latest_counting: Option<&ResultEntry> = None;
            for r in subs {
                let reason = if !self.valid(&r.author, r.seq) {
                    Some("signer's key is revoked")
                } else if dataset.is_some_and(|d| d.owner != r.author) {
                    Some("only the dataset's owner can submit its results")
                } else {
                    key_reason
                };
                if reason.is_none() && latest_counting.is_none_or(|l| (r.seq, r.id) > (l.seq, l.id))
                {
                    latest_counting = Some(r);
                }
                results.push(ResultView {
                    id: r.id,
                    benchmark: *bench_id,
                    model: *model,
                    dataset: *dataset_id,
                    submitter: r.author,
                    counts: false,
                    reason: reason.map(Cow::Borrowed),
                });
            }
            let views = &mut results[start..];
            for v in views.iter_mut() {
                if latest_counting.is_some_and(|l| l.id == v.id) {
                    v.counts = true;
                } else if v.reason.is_none() {
                    v.reason = Some(Cow::Borrowed("superseded by the owner's later result"));
                }
            }
        }

        // Releases and leaderboards.
        let mut releases = BTreeMap::new();
        let mut leaderboards = BTreeMap::new();
        for (bench_id, contents) in &l.releases {
            let Some(bench) = benchmarks.get(bench_id).filter(|b| b.status == Status::Approved)
            else {
                continue;
            };
            let b = &bench.benchmark;
            let mut best: Option<(u64, Hash32, &Release, Vec<PublicKey>)> = None;
            for (hash, c) in contents {
                for (k, sigs) in &c.signers {
                    for (seq, id) in sigs {
                        if !b.committee.contains(k) {
                            self.ignore(
                                *id,
                                "release signed by a key outside the benchmark's committee",
                            );
                        } else if !self.may_decide(k, *seq) {
                            self.ignore(
                                *id,
                                "signer has no authority (revoked key or equivocation)",
                            );
                        }
                    }
                }
                let signers = self.cosigners(c, &b.committee);
                if signers.len() < usize::from(b.threshold)
                    || !release_fits_policy(&c.body, &b.sharing)
                {
                    continue;
                }
                let better = match &best {
                    None => true,
                    Some((round, h, _, _)) => {
                        (c.body.round, std::cmp::Reverse(*hash)) > (*round, std::cmp::Reverse(*h))
                    }
                };
                if better {
                    best = Some((c.body.round, *hash, &c.body, signers));
                }
            }
            if let Some((_, hash, release, signers)) = best {
                let name = |m: &RecordId| {
                    containers.get(m).map(|c| c.container.name.clone()).unwrap_or_default()
                };
                let include = |m: &RecordId| assoc_approved(bench_id, Subject::Model(*m));
                leaderboards.insert(
                    *bench_id,
                    crate::leaderboard::compute(*bench_id, b, release, &name, &include),
                );
                releases.insert(
                    *bench_id,
                    ReleaseView {
                        benchmark: *bench_id,
                        content_hash: hash,
                        release: release.clone(),
                        signers,
                    },
                );
            }
        }

        self.ignored.sort_by(|a, b| a.id.cmp(&b.id));
        self.ignored.dedup_by(|a, b| a.id == b.id);
        let mut state = State {
            network: l.network,
            records: l.ids.len() as u64,
            admin_epoch: self.admin_epoch,
            admins: self.admins,
            admin_threshold: self.admin_threshold,
            revoked: self.revoked,
            equivocations,
            gaps,
            profiles,
            containers,
            benchmarks,
            datasets,
            associations,
            results,
            releases,
            leaderboards,
            ignored: self.ignored,
            hash: Hash32::from_bytes([0; 32]),
        };
        state.hash = state.compute_hash();
        state
    }
}

fn release_fits_policy(r: &Release, policy: &SharingPolicy) -> bool {
    if r.policy != *policy {
        return false;
    }
    match policy {
        SharingPolicy::Aggregate { min_datasets } => {
            r.entries.iter().all(|e| e.dataset.is_none() && e.datasets >= *min_datasets)
        }
        SharingPolicy::PerDataset => {
            r.entries.iter().all(|e| e.dataset.is_some() && e.datasets == 1)
        }
    }
}
