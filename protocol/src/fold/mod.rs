//! The fold: a pure, order-independent function from a record SET to [`State`].
//!
//! [`Ledger`] indexes records as they arrive ([`Ledger::insert`] is O(log n) and
//! idempotent); [`Ledger::state`] derives the views from those indexes. Nothing
//! depends on arrival order: every rule below is a function of the set, and every
//! "latest" means the highest `seq` in an author's own chain, never arrival time.
//!
//! Rules (MedPerf's, made peer to peer):
//! - Admin authority starts at the network root and is evaluated one epoch at a
//!   time. In each epoch its [`KeyRevocation`]s apply first: one takes effect
//!   once `threshold(e)` distinct epoch-`e` admins with authority signed it (in
//!   content-hash order, each counted after those applied before it), and the
//!   key's records from `from_seq` on then have no authority and no effect, of
//!   every kind (profiles, containers, benchmarks, datasets, requests, decisions,
//!   results, releases, revocations, rotations). Then an [`AdminRotation`] for
//!   epoch `e + 1` takes effect once `threshold(e)` epoch-`e` admins still with
//!   authority signed the same content (smallest content hash wins a tie).
//!   Revocations carry into every later epoch; a rotation never un-revokes a key.
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
//! - Datasets: operational when registered so or marked so by their owner. A
//!   dataset of a known benchmark counts only when its sealed part (details and
//!   pseudonym key) is sealed to its owner and to at least `threshold` committee
//!   members, and its details are in the clear when the benchmark's disclosure
//!   policy makes them public; a dataset associates only with its own benchmark.
//! - Results count only when signed by the dataset's owner, for an approved
//!   benchmark, approved dataset and model associations and an operational
//!   dataset, with metrics sealed (scheme [`crate::seal::SCHEME`]) to a key that
//!   every committee member whose key is not revoked, and the data owner,
//!   published in a profile with authority (any such profile, so a new key voids
//!   nothing); a member without a profile blocks results until it publishes one.
//!   The owner's latest such result per (benchmark, model, dataset) counts;
//!   every other carries its reason.
//! - Private models: a [`ModelGrant`] of a private container's key counts only
//!   when signed by the container's owner, for a benchmark in which both the
//!   model's and the dataset's associations are approved, sealed to the dataset
//!   owner's profile key alone, and signed before (lower `seq` than) every
//!   [`ModelRevocation`] of the owner covering that dataset; the latest such
//!   grant per (model, dataset) counts. Revocations count only from the owner.
//! - Releases show once `threshold` distinct committee members signed identical
//!   content that matches the benchmark's sharing policy and its disclosure
//!   policy (only its metrics, values on its precision grid) and is backed by
//!   the results that count: a model's per-dataset entries (each label once) are
//!   no more than its counting results and every model shows the same labels (a
//!   complete table; labels are pseudonyms keyed with sealed secrets, so the
//!   fold checks counts and shape), each aggregate claims no more datasets than
//!   the model has counting results. Against the release shown at the rounds
//!   before it, a per-dataset release adds no dataset or at least two, and an
//!   aggregate moves a model's dataset count by 0 or at least `min_datasets`
//!   (else one dataset's values could be read off by difference). Content that
//!   breaks a rule is ignored with its reason. Rounds strictly increase per benchmark (a
//!   member releases the round after the one shown); the highest complete round
//!   wins, the smallest content hash on a tie. The leaderboard is computed from
//!   the shown release.

mod admission;
mod associations;
mod authority;
mod catalog;
mod grants;
mod idset;
mod results;
mod state;

pub use state::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::cbor;
use crate::envelope::Record;
use crate::ids::{Hash32, NetworkId, PublicKey, RecordId, X25519Key};
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

/// The ids an author signed at one seq: one, unless it equivocated. Every
/// record has one, so the rare second id goes behind a pointer (40 bytes, not 56).
#[derive(Clone, Debug)]
struct Slot {
    first: RecordId,
    more: Option<Box<[RecordId]>>,
}

impl Slot {
    /// The other ids signed at this seq (an equivocation when not empty).
    fn more(&self) -> &[RecordId] {
        self.more.as_deref().unwrap_or_default()
    }
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

/// Decisions on one subject, in (signer, seq) order; a later insert at the same
/// (signer, seq) replaces the earlier. Most subjects get one or two, so they
/// are a sorted list (88 bytes a decision, not a hash map of B-trees, over a
/// kilobyte); a subject flooded with more than [`VOTES_LIST_MAX`] moves to one
/// B-tree, so an insert never costs more than O(log n).
#[derive(Clone, Debug)]
enum Votes<T> {
    Few(Vec<Vote<T>>),
    Many(BTreeMap<(PublicKey, u64), (RecordId, T)>),
}

/// Decisions a subject keeps as a sorted list.
const VOTES_LIST_MAX: usize = 32;

/// One decision: who signed it where, and what it says.
#[derive(Clone, Debug)]
struct Vote<T> {
    signer: PublicKey,
    seq: u64,
    id: RecordId,
    value: T,
}

impl<T> Default for Votes<T> {
    fn default() -> Self {
        Votes::Few(Vec::new())
    }
}

impl<T: Copy> Votes<T> {
    fn insert(&mut self, signer: PublicKey, seq: u64, id: RecordId, value: T) {
        match self {
            Votes::Few(v) => match v.binary_search_by(|x| (x.signer, x.seq).cmp(&(signer, seq))) {
                Ok(i) => {
                    v[i].id = id;
                    v[i].value = value;
                }
                Err(i) if v.len() < VOTES_LIST_MAX => v.insert(i, Vote { signer, seq, id, value }),
                Err(_) => {
                    let mut map: BTreeMap<(PublicKey, u64), (RecordId, T)> =
                        v.drain(..).map(|x| ((x.signer, x.seq), (x.id, x.value))).collect();
                    map.insert((signer, seq), (id, value));
                    *self = Votes::Many(map);
                }
            },
            Votes::Many(m) => {
                m.insert((signer, seq), (id, value));
            }
        }
    }

    /// Every decision as (signer, seq, id, value), in (signer, seq) order.
    fn all(&self) -> Vec<Vote<T>> {
        match self {
            Votes::Few(v) => v.clone(),
            Votes::Many(m) => m
                .iter()
                .map(|((signer, seq), (id, value))| Vote {
                    signer: *signer,
                    seq: *seq,
                    id: *id,
                    value: *value,
                })
                .collect(),
        }
    }

    /// The decisions of each signer in turn, by seq.
    fn by_signer(&self) -> Vec<(PublicKey, Vec<Vote<T>>)> {
        let mut out: Vec<(PublicKey, Vec<Vote<T>>)> = Vec::new();
        for v in self.all() {
            match out.last_mut() {
                Some((k, list)) if *k == v.signer => list.push(v),
                _ => out.push((v.signer, vec![v])),
            }
        }
        out
    }

    /// `signer`'s latest decision (highest seq) that `counts` accepts.
    fn latest(&self, signer: &PublicKey, counts: impl Fn(u64) -> bool) -> Option<Vote<T>> {
        match self {
            Votes::Few(v) => {
                let lo = v.partition_point(|x| x.signer < *signer);
                let hi = v.partition_point(|x| x.signer <= *signer);
                v[lo..hi].iter().rev().find(|x| counts(x.seq)).cloned()
            }
            Votes::Many(m) => m
                .range((*signer, 0)..=(*signer, u64::MAX))
                .rev()
                .find(|((_, seq), _)| counts(*seq))
                .map(|((signer, seq), (id, value))| Vote {
                    signer: *signer,
                    seq: *seq,
                    id: *id,
                    value: *value,
                }),
        }
    }
}

/// A committee member's decision on an association, with the priority it gives.
type AssociationVote = (Decision, Option<i32>);

/// A result as the fold keeps it (the sealed metrics stay in the store): 88
/// bytes, since results are most of a large record set. Its benchmark and model
/// (few distinct ones) and its author are kept as indexes into the ledger's
/// [`Interned`] tables.
#[derive(Clone, Debug)]
struct ResultEntry {
    benchmark: u32,
    model: u32,
    author: u32,
    /// Index of the keys its metrics are sealed to in `Ledger::recipient_sets`, or
    /// [`UNKNOWN_SCHEME`] when they are sealed with a scheme nobody can open.
    recipients: u32,
    seq: u64,
    dataset: RecordId,
    id: RecordId,
}

/// Values stored once and named by a `u32` index.
#[derive(Clone, Debug)]
struct Interned<T> {
    values: Vec<T>,
    index: Map<T, u32>,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Self { values: Vec::new(), index: Map::default() }
    }
}

impl<T: Copy + Eq + std::hash::Hash> Interned<T> {
    fn intern(&mut self, v: T) -> u32 {
        if let Some(i) = self.index.get(&v) {
            return *i;
        }
        // Fewer distinct values than records, and records are counted in u32.
        let i = self.values.len() as u32;
        self.values.push(v);
        self.index.insert(v, i);
        i
    }

    fn get(&self, i: u32) -> T {
        self.values[i as usize]
    }
}

/// `ResultEntry::recipients` of metrics sealed with an unknown scheme.
const UNKNOWN_SCHEME: u32 = u32::MAX;

/// The X25519 keys a result is sealed to, sorted and without duplicates.
type RecipientSet = Box<[X25519Key]>;

/// The record indexes. Insert in any order; derive with [`Ledger::state`].
#[derive(Clone, Debug)]
pub struct Ledger {
    root: NetworkRoot,
    network: NetworkId,
    ids: idset::IdSet,
    chains: Map<PublicKey, BTreeMap<u64, Slot>>,
    profiles: Map<PublicKey, BTreeMap<u64, (RecordId, Profile)>>,
    containers: BTreeMap<RecordId, Authored<Container>>,
    benchmarks: BTreeMap<RecordId, Authored<Benchmark>>,
    benchmark_votes: Map<RecordId, Votes<Decision>>,
    /// Shared with the states derived from it ([`DatasetView::dataset`]).
    datasets: BTreeMap<RecordId, Authored<Arc<Dataset>>>,
    operational: Map<RecordId, Vec<Authored<Hash32>>>,
    /// Association requests: whether each one's compatibility test passed (all
    /// the fold reads of them).
    requests: BTreeMap<(RecordId, Subject), Vec<Authored<bool>>>,
    association_votes: Map<(RecordId, Subject), Votes<AssociationVote>>,
    /// Append-only; grouped by (benchmark, model, dataset) when deriving. Results
    /// are most of a large record set, so insertion is a push, not a hash insert.
    results: Vec<ResultEntry>,
    /// The benchmarks and models results name, and their authors.
    result_ids: Interned<RecordId>,
    result_authors: Interned<PublicKey>,
    /// Each distinct set of result recipients once: results of one benchmark
    /// mostly share one set (its committee and an owner).
    recipient_sets: Vec<RecipientSet>,
    recipient_index: BTreeMap<RecipientSet, u32>,
    releases: Map<RecordId, Map<Hash32, Cosigned<Release>>>,
    revocations: Map<Hash32, Cosigned<KeyRevocation>>,
    rotations: BTreeMap<u64, Map<Hash32, Cosigned<AdminRotation>>>,
    /// Admitted key -> each admin's admissions of it, by seq: (epoch, roles).
    admissions: Map<PublicKey, Votes<(u64, MemberRoles)>>,
    /// Private models' key grants and revocations, by model.
    grants: BTreeMap<RecordId, Vec<Authored<ModelGrant>>>,
    model_revocations: BTreeMap<RecordId, Vec<Authored<ModelRevocation>>>,
}

impl<T> Authored<T> {
    fn of(r: &Record, body: T) -> Self {
        Self { id: r.id, author: r.signer, seq: r.seq, body }
    }
}

fn content_hash<T: serde::Serialize>(body: &T) -> Hash32 {
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
            ids: idset::IdSet::default(),
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
            result_ids: Interned::default(),
            result_authors: Interned::default(),
            recipient_sets: Vec::new(),
            recipient_index: BTreeMap::new(),
            releases: Map::default(),
            revocations: Map::default(),
            rotations: BTreeMap::new(),
            admissions: Map::default(),
            grants: BTreeMap::new(),
            model_revocations: BTreeMap::new(),
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

    /// Every inserted id, sorted and without duplicates (what sync reconciles
    /// over): shared, not copied, until the next insert.
    pub fn id_snapshot(&mut self) -> Arc<Vec<RecordId>> {
        self.ids.snapshot()
    }

    /// The id the signer's chain holds at `seq`, if exactly one.
    pub fn chain_at(&self, signer: &PublicKey, seq: u64) -> Option<RecordId> {
        let slot = self.chains.get(signer)?.get(&seq)?;
        slot.more().is_empty().then_some(slot.first)
    }

    /// The highest seq held for `signer` and its id (where a client resumes its chain).
    pub fn head(&self, signer: &PublicKey) -> Option<(u64, RecordId)> {
        let (seq, slot) = self.chains.get(signer)?.iter().next_back()?;
        Some((*seq, slot.more().iter().copied().fold(slot.first, RecordId::min)))
    }

    /// Index a verified record. Returns false if it was already present. The record
    /// must have been verified for this ledger's network.
    pub fn insert(&mut self, r: &Record) -> bool {
        if !self.ids.insert(r.id) {
            return false;
        }
        match self.chains.entry(r.signer).or_default().entry(r.seq) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Slot { first: r.id, more: None });
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                slot.more = Some(slot.more().iter().copied().chain([r.id]).collect());
            }
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
                    .insert(r.signer, r.seq, r.id, d.decision);
            }
            Body::Dataset(d) => {
                self.datasets.insert(r.id, Authored::of(r, Arc::new(d.clone())));
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
                    .push(Authored::of(r, a.compatibility.passed));
            }
            Body::AssociationDecision(d) => {
                self.association_votes.entry((d.benchmark, d.subject)).or_default().insert(
                    r.signer,
                    r.seq,
                    r.id,
                    (d.decision, d.priority),
                );
            }
            Body::Result(x) => {
                let recipients = self.intern_recipients(&x.metrics);
                self.results.push(ResultEntry {
                    benchmark: self.result_ids.intern(x.benchmark),
                    model: self.result_ids.intern(x.model),
                    author: self.result_authors.intern(r.signer),
                    recipients,
                    seq: r.seq,
                    dataset: x.dataset,
                    id: r.id,
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
            Body::Admission(x) => {
                self.admissions.entry(x.key).or_default().insert(
                    r.signer,
                    r.seq,
                    r.id,
                    (x.epoch, MemberRoles::of(&x.roles)),
                );
            }
            Body::ModelGrant(x) => {
                self.grants.entry(x.model).or_default().push(Authored::of(r, x.clone()));
            }
            Body::ModelRevocation(x) => {
                self.model_revocations.entry(x.model).or_default().push(Authored::of(r, x.clone()));
            }
            // A join request only asks; its chain slot is all the fold keeps.
            Body::JoinRequest(_) => {}
        }
        true
    }

    fn intern_recipients(&mut self, sealed: &Sealed) -> u32 {
        if sealed.scheme != crate::seal::SCHEME {
            return UNKNOWN_SCHEME;
        }
        let mut keys: Vec<X25519Key> = sealed.recipients.iter().map(|s| s.recipient).collect();
        keys.sort();
        keys.dedup();
        let keys = keys.into_boxed_slice();
        if let Some(i) = self.recipient_index.get(&keys) {
            return *i;
        }
        // Fewer distinct sets than results, and results are counted in u32.
        let i = self.recipient_sets.len() as u32;
        self.recipient_sets.push(keys.clone());
        self.recipient_index.insert(keys, i);
        i
    }

    /// A result's (benchmark, model, dataset).
    fn result_key(&self, e: &ResultEntry) -> (RecordId, RecordId, RecordId) {
        (self.result_ids.get(e.benchmark), self.result_ids.get(e.model), e.dataset)
    }

    /// A result's author.
    fn result_author(&self, e: &ResultEntry) -> PublicKey {
        self.result_authors.get(e.author)
    }

    /// Derive the state from everything inserted.
    pub fn state(&self) -> State {
        Deriver::new(self).run()
    }

    /// Who may take part, for a node deciding what to store: the fold's admission
    /// rule over authority records only (no chain scan, so it is cheap to run after
    /// every admission, rotation or revocation). It ignores equivocations, so it
    /// admits at least every key the fold admits.
    pub fn admitted(&self) -> Admitted {
        let mut d = Deriver::new(self);
        d.authority();
        d.admission_only();
        Admitted { members: d.members }
    }
}

/// The keys a node stores records of ([`Ledger::admitted`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// `None`: an open network, every key takes part.
    members: Option<Map<PublicKey, MemberRoles>>,
}

impl Admitted {
    /// May this key's records be stored and forwarded?
    pub fn admits(&self, key: &PublicKey) -> bool {
        self.members.as_ref().is_none_or(|m| m.contains_key(key))
    }

    /// Is this an open network?
    pub fn is_open(&self) -> bool {
        self.members.is_none()
    }

    /// How many keys take part (admins of every epoch included); 0 when open.
    pub fn len(&self) -> usize {
        self.members.as_ref().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
// Derivation.

struct Deriver<'a> {
    l: &'a Ledger,
    equivocators: Set<PublicKey>,
    revoked: BTreeMap<PublicKey, u64>,
    admins: Vec<PublicKey>,
    admin_threshold: u16,
    admin_epoch: u64,
    /// Every epoch's admins (sorted) and threshold, from the root to `admin_epoch`.
    epochs: Vec<(Vec<PublicKey>, u16)>,
    /// Who may take part and with which roles; `None` in an open network.
    members: Option<Map<PublicKey, MemberRoles>>,
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
            epochs: Vec::new(),
            members: None,
            ignored: Vec::new(),
        }
    }

    /// The record at `seq` of `author` still has authority: its key is admitted
    /// (or the network is open) and not revoked at that seq.
    fn valid(&self, author: &PublicKey, seq: u64) -> bool {
        self.admitted(author) && self.revoked.get(author).is_none_or(|from| seq < *from)
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
            if let Some(v) = votes.latest(k, |s| self.may_decide(k, s)) {
                out.push((*k, v.value));
            }
        }
        out.sort_by_key(|a| a.0);
        out
    }

    fn run(mut self) -> State {
        let l = self.l;
        let (equivocations, gaps) = self.chains();
        self.authority();
        self.admission();
        let members = self.member_list();
        let profiles = self.profiles();
        let containers = self.containers();
        let benchmarks = self.benchmarks(&containers);
        let datasets = self.datasets(&benchmarks);
        let associations = self.associations(&benchmarks, &containers, &datasets);
        let approved: Set<(RecordId, Subject)> = associations
            .iter()
            .filter(|a| a.status == Status::Approved)
            .map(|a| (a.benchmark, a.subject))
            .collect();
        let results = self.results(&benchmarks, &datasets, &approved);
        let model_revocations = self.model_revocations(&containers);
        let grants = self.grants(&containers, &datasets, &profiles, &approved, &model_revocations);
        let (releases, leaderboards) = self.releases(&benchmarks, &containers, &approved, &results);

        self.ignored.sort_by_key(|a| a.id);
        self.ignored.dedup_by(|a, b| a.id == b.id);
        let mut state = State {
            network: l.network,
            records: l.ids.len() as u64,
            admin_epoch: self.admin_epoch,
            admins: self.admins,
            admin_threshold: self.admin_threshold,
            admission: l.root.admission,
            members,
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
            grants,
            model_revocations,
            ignored: self.ignored,
            hash: Hash32::from_bytes([0; 32]),
        };
        state.hash = state.compute_hash();
        state
    }
}
