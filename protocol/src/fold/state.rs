//! The derived state: what the fold produces, and its hash.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{Hash32, NetworkId, PublicKey, RecordId};
use crate::record::*;

/// A value shared between the ledger and the states derived from it, encoded
/// as the value itself.
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        T::serialize(v, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

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
    /// Shared with the ledger (a dataset's sealed details are over a kilobyte).
    #[serde(with = "shared")]
    pub dataset: std::sync::Arc<Dataset>,
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

/// A private model's key granted to a dataset's owner (the grant that counts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub id: RecordId,
    pub model: RecordId,
    pub benchmark: RecordId,
    pub dataset: RecordId,
    /// The dataset's owner, who opens the key.
    pub grantee: PublicKey,
}

/// A private model's owner stopped granting its key (to one dataset, or all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRevocationView {
    pub id: RecordId,
    pub model: RecordId,
    pub dataset: Option<RecordId>,
    /// Its place in the owner's chain: grants signed later are ignored.
    pub seq: u64,
}

/// Every result with whether it counts and why not, in (benchmark, model,
/// dataset, id) order. Results are most of a large record set, so each is kept
/// in 56 bytes ([`ResultRow`]), not as a 192-byte [`ResultView`]: benchmark,
/// model, dataset, submitter and reason are indexes into tables of the
/// distinct values. [`Results::get`] and [`Results::iter`] give views; it
/// serializes as the list of views.
#[derive(Clone, Debug, Default)]
pub struct Results {
    rows: Vec<ResultRow>,
    /// The benchmarks, models and datasets rows name.
    ids: Vec<RecordId>,
    submitters: Vec<PublicKey>,
    reasons: Vec<Cow<'static, str>>,
}

/// One result in [`Results`].
#[derive(Clone, Copy, Debug)]
struct ResultRow {
    id: RecordId,
    benchmark: u32,
    model: u32,
    dataset: u32,
    submitter: u32,
    /// Index into `Results::reasons`, or [`NO_REASON`].
    reason: u32,
    counts: bool,
}

/// `ResultRow::reason` of a result without one.
const NO_REASON: u32 = u32::MAX;

/// Builds [`Results`] one result at a time, storing each distinct id, key and
/// reason once.
#[derive(Default)]
pub(super) struct ResultsBuilder {
    out: Results,
    ids: super::Map<RecordId, u32>,
    submitters: super::Map<PublicKey, u32>,
    reasons: std::collections::HashMap<Cow<'static, str>, u32>,
}

fn intern<K: Clone + Eq + std::hash::Hash, S: std::hash::BuildHasher>(
    map: &mut std::collections::HashMap<K, u32, S>,
    table: &mut Vec<K>,
    k: &K,
) -> u32 {
    if let Some(i) = map.get(k) {
        return *i;
    }
    // Fewer distinct values than results, and results are counted in u32.
    let i = table.len() as u32;
    table.push(k.clone());
    map.insert(k.clone(), i);
    i
}

impl ResultsBuilder {
    pub(super) fn with_capacity(n: usize) -> Self {
        let mut b = Self::default();
        b.out.rows.reserve_exact(n);
        b
    }

    /// The index of a benchmark, model or dataset id.
    pub(super) fn id(&mut self, id: &RecordId) -> u32 {
        intern(&mut self.ids, &mut self.out.ids, id)
    }

    /// The index of a submitter.
    pub(super) fn submitter(&mut self, k: &PublicKey) -> u32 {
        intern(&mut self.submitters, &mut self.out.submitters, k)
    }

    /// The index of a reason.
    pub(super) fn reason(&mut self, why: Cow<'static, str>) -> u32 {
        intern(&mut self.reasons, &mut self.out.reasons, &why)
    }

    /// Add a result that does not count (yet): ids from [`ResultsBuilder::id`],
    /// the submitter's index and the reason's, if any.
    pub(super) fn push(
        &mut self,
        id: RecordId,
        key: [u32; 3],
        submitter: u32,
        reason: Option<u32>,
    ) {
        self.out.rows.push(ResultRow {
            id,
            benchmark: key[0],
            model: key[1],
            dataset: key[2],
            submitter,
            reason: reason.unwrap_or(NO_REASON),
            counts: false,
        });
    }

    /// Results added since `start`: mark whether each counts, and its reason.
    pub(super) fn set_since(&mut self, start: usize, mut f: impl FnMut(&RecordId, bool) -> Mark) {
        for row in &mut self.out.rows[start..] {
            match f(&row.id, row.reason != NO_REASON) {
                Mark::Counts => row.counts = true,
                Mark::Keep => {}
                Mark::Reason(r) => row.reason = r,
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.out.rows.len()
    }

    fn push_view(&mut self, v: ResultView) {
        let key = [self.id(&v.benchmark), self.id(&v.model), self.id(&v.dataset)];
        let submitter = self.submitter(&v.submitter);
        let reason = v.reason.map(|r| self.reason(r));
        self.push(v.id, key, submitter, reason);
        if let Some(last) = self.out.rows.last_mut() {
            last.counts = v.counts;
        }
    }

    pub(super) fn finish(self) -> Results {
        self.out
    }
}

/// What [`ResultsBuilder::set_since`] does with one result.
pub(super) enum Mark {
    Counts,
    Keep,
    Reason(u32),
}

impl Results {
    /// How many results there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn view(&self, r: &ResultRow) -> ResultView {
        ResultView {
            id: r.id,
            benchmark: self.ids[r.benchmark as usize],
            model: self.ids[r.model as usize],
            dataset: self.ids[r.dataset as usize],
            submitter: self.submitters[r.submitter as usize],
            counts: r.counts,
            reason: (r.reason != NO_REASON).then(|| self.reasons[r.reason as usize].clone()),
        }
    }

    /// The result at `i` in (benchmark, model, dataset, id) order.
    pub fn get(&self, i: usize) -> Option<ResultView> {
        self.rows.get(i).map(|r| self.view(r))
    }

    /// Every result, in (benchmark, model, dataset, id) order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = ResultView> + ExactSizeIterator + '_ {
        self.rows.iter().map(|r| self.view(r))
    }

    /// The order key of the result at `i`: (benchmark, model, dataset, id).
    pub fn key(&self, i: usize) -> (RecordId, RecordId, RecordId, RecordId) {
        let r = &self.rows[i];
        let id = |x: u32| self.ids[x as usize];
        (id(r.benchmark), id(r.model), id(r.dataset), r.id)
    }

    /// Does the result at `i` count?
    pub fn counts(&self, i: usize) -> bool {
        self.rows[i].counts
    }

    /// The dataset of the result at `i`.
    pub fn dataset(&self, i: usize) -> RecordId {
        self.ids[self.rows[i].dataset as usize]
    }

    /// The positions of the results of `benchmark` (and of `model`, if given): a
    /// range of the order, found by binary search.
    pub fn range(&self, benchmark: &RecordId, model: Option<&RecordId>) -> std::ops::Range<usize> {
        let id = |x: u32| &self.ids[x as usize];
        match model {
            Some(m) => {
                let k = (benchmark, m);
                self.rows.partition_point(|r| (id(r.benchmark), id(r.model)) < k)
                    ..self.rows.partition_point(|r| (id(r.benchmark), id(r.model)) <= k)
            }
            None => {
                self.rows.partition_point(|r| id(r.benchmark) < benchmark)
                    ..self.rows.partition_point(|r| id(r.benchmark) <= benchmark)
            }
        }
    }

    /// For each counting result: its benchmark and model.
    pub(super) fn counting(&self) -> impl Iterator<Item = (&RecordId, &RecordId)> + '_ {
        self.rows
            .iter()
            .filter(|r| r.counts)
            .map(|r| (&self.ids[r.benchmark as usize], &self.ids[r.model as usize]))
    }
}

impl PartialEq for Results {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Results {}

impl FromIterator<ResultView> for Results {
    /// Results as given (in the fold's order when they come from a state).
    fn from_iter<I: IntoIterator<Item = ResultView>>(iter: I) -> Self {
        let mut b = ResultsBuilder::default();
        for v in iter {
            b.push_view(v);
        }
        b.finish()
    }
}

impl Serialize for Results {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Results {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> serde::de::Visitor<'de> for Seq {
            type Value = Results;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of results")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Results, A::Error> {
                let mut b = ResultsBuilder::default();
                while let Some(v) = a.next_element::<ResultView>()? {
                    b.push_view(v);
                }
                Ok(b.finish())
            }
        }
        d.deserialize_seq(Seq)
    }
}

pub use crate::leaderboard::{Cell, Leaderboard, LeaderboardRow};

/// A record kept but without effect, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignored {
    pub id: RecordId,
    pub reason: String,
}

/// A key admitted to an admitted network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub key: PublicKey,
    pub roles: Vec<crate::record::MemberRole>,
    /// The earliest epoch whose admins admitted it at their threshold.
    pub epoch: u64,
    /// The admins whose admissions of that epoch count, sorted (empty for a key
    /// that was an admin of an earlier epoch: it keeps every role).
    pub admitted_by: Vec<PublicKey>,
}

impl State {
    /// The member entry of `key`, if it was admitted (admins are not listed).
    pub fn member(&self, key: &PublicKey) -> Option<&Member> {
        self.members.binary_search_by(|m| m.key.cmp(key)).ok().map(|i| &self.members[i])
    }

    /// May `key`'s records count here: an open network, an admin, or a member.
    pub fn admits(&self, key: &PublicKey) -> bool {
        self.admission.is_open() || self.admins.contains(key) || self.member(key).is_some()
    }
}

/// Everything the fold derives. Identical on every node that holds the same set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub network: NetworkId,
    pub records: u64,
    pub admin_epoch: u64,
    pub admins: Vec<PublicKey>,
    pub admin_threshold: u16,
    /// How keys join this network (from its root).
    pub admission: crate::root::AdmissionMode,
    /// The admitted keys other than admins, by key (empty in an open network).
    pub members: Vec<Member>,
    /// Key -> first seq without authority.
    pub revoked: BTreeMap<PublicKey, u64>,
    pub equivocations: Vec<Equivocation>,
    pub gaps: Vec<ChainGap>,
    pub profiles: BTreeMap<PublicKey, ProfileView>,
    pub containers: BTreeMap<RecordId, ContainerView>,
    pub benchmarks: BTreeMap<RecordId, BenchmarkView>,
    pub datasets: BTreeMap<RecordId, DatasetView>,
    pub associations: Vec<AssociationView>,
    pub results: Results,
    pub releases: BTreeMap<RecordId, ReleaseView>,
    pub leaderboards: BTreeMap<RecordId, Leaderboard>,
    /// Private models' grants that count, by (model, dataset).
    pub grants: Vec<GrantView>,
    /// Private models' revocations, by model and seq.
    pub model_revocations: Vec<ModelRevocationView>,
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

    /// The grant of private model `model`'s key for `dataset` that counts.
    pub fn grant(&self, model: &RecordId, dataset: &RecordId) -> Option<&GrantView> {
        self.grants
            .binary_search_by(|g| (g.model, g.dataset).cmp(&(*model, *dataset)))
            .ok()
            .map(|i| &self.grants[i])
    }

    /// Is granting `model`'s key for `dataset` revoked (for grants signed from now on)?
    pub fn grant_revoked(&self, model: &RecordId, dataset: &RecordId) -> bool {
        self.model_revocations
            .iter()
            .any(|r| r.model == *model && r.dataset.is_none_or(|d| d == *dataset))
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
    pub(super) fn compute_hash(&self) -> Hash32 {
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
        h.update(self.admission.as_str().as_bytes());
        h.update(b"members");
        for m in &self.members {
            id(&mut h, m.key.as_bytes());
            h.update(&[m.roles.iter().fold(0u8, |acc, r| acc | (1 << (*r as u8)))]);
            h.update(&m.epoch.to_le_bytes());
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
        for r in &self.results.rows {
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
                h.update(&row.value.hash_bytes());
                h.update(&row.datasets.to_le_bytes());
                h.update(&row.mean_rank_milli.unwrap_or(u64::MAX).to_le_bytes());
                h.update(&row.ci_low.unwrap_or(i64::MIN).to_le_bytes());
                h.update(&row.ci_high.unwrap_or(i64::MIN).to_le_bytes());
            }
            for c in &l.cells {
                id(&mut h, c.model.as_bytes());
                id(&mut h, c.dataset.as_bytes());
                h.update(&c.value.hash_bytes());
            }
        }
        h.update(b"grants");
        for g in &self.grants {
            id(&mut h, g.id.as_bytes());
        }
        h.update(b"model_revocations");
        for r in &self.model_revocations {
            id(&mut h, r.id.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> RecordId {
        RecordId::from_bytes([n; 32])
    }

    fn view(b: u8, m: u8, d: u8, n: u8, reason: Option<&str>) -> ResultView {
        ResultView {
            id: id(n),
            benchmark: id(b),
            model: id(m),
            dataset: id(d),
            submitter: crate::testkit::Author::new("h", crate::ids::NetworkId::from_bytes([1; 32]))
                .public(),
            counts: reason.is_none(),
            reason: reason.map(|r| Cow::Owned(r.to_string())),
        }
    }

    #[test]
    fn results_serialize_as_their_views_and_find_a_benchmarks_and_models_range() {
        let views = vec![
            view(1, 2, 3, 10, None),
            view(1, 2, 4, 11, Some("superseded by the owner's later result")),
            view(1, 5, 3, 12, Some("superseded by the owner's later result")),
            view(6, 2, 3, 13, Some("metrics are sealed to nobody")),
        ];
        let results: Results = views.iter().cloned().collect();
        assert_eq!(results.iter().collect::<Vec<_>>(), views);
        assert_eq!(serde_json::to_value(&results).unwrap(), serde_json::to_value(&views).unwrap());
        let back: Results = serde_json::from_slice(&serde_json::to_vec(&views).unwrap()).unwrap();
        assert_eq!(back, results);
        assert_eq!(results.range(&id(1), None), 0..3);
        assert_eq!(results.range(&id(1), Some(&id(2))), 0..2);
        assert_eq!(results.range(&id(1), Some(&id(9))), 3..3);
        assert_eq!(results.range(&id(6), None), 3..4);
        assert_eq!(results.key(2), (id(1), id(5), id(3), id(12)));
        assert_eq!(results.counting().count(), 1);
        assert_eq!(results.get(4), None);
    }
}
