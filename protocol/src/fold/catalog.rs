//! What participants register: profiles, containers, benchmarks (approved by the
//! admins) and datasets.

use std::collections::BTreeMap;

use super::{BenchmarkView, ContainerView, DatasetView, Deriver, ProfileView, Status};
use crate::ids::{PublicKey, RecordId, X25519Key};
use crate::record::*;

impl Deriver<'_> {
    /// Each key's latest valid profile.
    pub(super) fn profiles(&mut self) -> BTreeMap<PublicKey, ProfileView> {
        let l = self.l;
        let mut profiles = BTreeMap::new();
        for (key, by_seq) in &l.profiles {
            for (seq, (id, _)) in by_seq {
                if !self.valid(key, *seq) {
                    self.ignore(*id, "signer's key is revoked");
                }
            }
            if let Some((_, (id, p))) = by_seq.iter().rev().find(|(s, _)| self.valid(key, **s)) {
                profiles.insert(*key, ProfileView { id: *id, key: *key, profile: p.clone() });
            }
        }
        profiles
    }

    pub(super) fn containers(&mut self) -> BTreeMap<RecordId, ContainerView> {
        let l = self.l;
        let mut containers = BTreeMap::new();
        for (id, c) in &l.containers {
            if !self.valid(&c.author, c.seq) {
                self.ignore(*id, "signer's key is revoked");
            } else if !self.permitted(&c.author, MemberRole::ModelOwner)
                && !self.permitted(&c.author, MemberRole::BenchmarkOwner)
            {
                self.ignore(
                    *id,
                    "signer is admitted without the model_owner or benchmark_owner role",
                );
            } else {
                containers.insert(
                    *id,
                    ContainerView { id: *id, owner: c.author, container: c.body.clone() },
                );
            }
        }
        containers
    }

    /// Benchmarks, approved by the admins' latest decisions.
    pub(super) fn benchmarks(
        &mut self,
        containers: &BTreeMap<RecordId, ContainerView>,
    ) -> BTreeMap<RecordId, BenchmarkView> {
        let l = self.l;
        let mut benchmarks = BTreeMap::new();
        let admins = self.admins.clone();
        let admin_k = usize::from(self.admin_threshold);
        for (id, b) in &l.benchmarks {
            if !self.valid(&b.author, b.seq) {
                self.ignore(*id, "signer's key is revoked");
                continue;
            }
            if !self.permitted(&b.author, MemberRole::BenchmarkOwner) {
                self.ignore(*id, "signer is admitted without the benchmark_owner role");
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
            for v in votes.all() {
                if !admins.contains(&v.signer) {
                    self.ignore(v.id, "signer is not an admin");
                } else if !self.may_decide(&v.signer, v.seq) {
                    self.ignore(v.id, "signer has no authority (revoked key or equivocation)");
                }
            }
        }
        benchmarks
    }

    /// Datasets, operational when registered so or marked so by their owner. A
    /// dataset of a known benchmark counts only if its sealed part is sealed to
    /// its owner and to at least `threshold` committee members whose keys are not
    /// revoked (enough to decide on it and to release its results; a member who
    /// published a profile only later cannot void it), and its details are in the
    /// clear when the benchmark's disclosure policy makes them public.
    pub(super) fn datasets(
        &mut self,
        benchmarks: &BTreeMap<RecordId, BenchmarkView>,
    ) -> BTreeMap<RecordId, DatasetView> {
        let l = self.l;
        let mut datasets = BTreeMap::new();
        let sealable = self.sealable();
        for (id, d) in &l.datasets {
            if !self.valid(&d.author, d.seq) {
                self.ignore(*id, "signer's key is revoked");
                continue;
            }
            if !self.permitted(&d.author, MemberRole::DataOwner) {
                self.ignore(*id, "signer is admitted without the data_owner role");
                continue;
            }
            if let Some(b) = benchmarks.get(&d.body.benchmark) {
                let b = &b.benchmark;
                let sealed_to: Option<Vec<X25519Key>> =
                    (d.body.sealed.scheme == crate::seal::SCHEME).then(|| {
                        let mut keys: Vec<X25519Key> =
                            d.body.sealed.recipients.iter().map(|s| s.recipient).collect();
                        keys.sort();
                        keys.dedup();
                        keys
                    });
                let problem = if b.disclosure.dataset_details == DetailsAudience::Public
                    && d.body.public_details.is_none()
                {
                    Some("the benchmark's disclosure policy makes dataset details public".into())
                } else {
                    self.details_problem(sealed_to.as_deref(), &d.author, b, &sealable)
                };
                if let Some(why) = problem {
                    self.ignore(*id, why);
                    continue;
                }
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
                } else if !self.valid(&o.author, o.seq) {
                    self.ignore(o.id, "signer's key is revoked");
                }
            }
        }
        datasets
    }

    /// Why a dataset's sealed part, sealed to `sealed_to` (`None`: an unknown
    /// scheme), is not readable by its owner and `threshold` committee members.
    fn details_problem(
        &self,
        sealed_to: Option<&[X25519Key]>,
        owner: &PublicKey,
        b: &Benchmark,
        sealable: &super::Map<PublicKey, Vec<X25519Key>>,
    ) -> Option<std::borrow::Cow<'static, str>> {
        let Some(sealed_to) = sealed_to else {
            return Some("details are sealed with an unknown scheme".into());
        };
        let reads = |k: &PublicKey| {
            sealable
                .get(k)
                .is_some_and(|keys| keys.iter().any(|x| sealed_to.binary_search(x).is_ok()))
        };
        if !reads(owner) {
            return Some("details are not sealed to the data owner".into());
        }
        let members =
            b.committee.iter().filter(|k| !self.revoked.contains_key(k) && reads(k)).count();
        if members < usize::from(b.threshold) {
            return Some(
                format!(
                    "details are sealed to {members} committee members; the threshold is {}",
                    b.threshold
                )
                .into(),
            );
        }
        None
    }
}
