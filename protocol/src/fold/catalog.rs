//! What participants register: profiles, containers, benchmarks (approved by the
//! admins) and datasets.

use std::collections::BTreeMap;

use super::{BenchmarkView, ContainerView, DatasetView, Deriver, ProfileView, Status};
use crate::ids::{PublicKey, RecordId};
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
        benchmarks
    }

    /// Datasets, operational when registered so or marked so by their owner.
    pub(super) fn datasets(&mut self) -> BTreeMap<RecordId, DatasetView> {
        let l = self.l;
        let mut datasets = BTreeMap::new();
        for (id, d) in &l.datasets {
            if !self.valid(&d.author, d.seq) {
                self.ignore(*id, "signer's key is revoked");
                continue;
            }
            if !self.permitted(&d.author, MemberRole::DataOwner) {
                self.ignore(*id, "signer is admitted without the data_owner role");
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
                } else if !self.valid(&o.author, o.seq) {
                    self.ignore(o.id, "signer's key is revoked");
                }
            }
        }
        datasets
    }
}
