//! The derived state: what the fold produces, and its hash.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{Hash32, NetworkId, PublicKey, RecordId};
use crate::record::*;

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
    pub results: Vec<ResultView>,
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
