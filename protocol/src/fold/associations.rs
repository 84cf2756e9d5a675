//! Associations of datasets and models with benchmarks: requested by the owner,
//! decided by the committee or by the benchmark's auto-approval mode.

use std::collections::BTreeMap;

use super::{AssociationView, BenchmarkView, ContainerView, DatasetView, Deriver, Status};
use crate::ids::{PublicKey, RecordId};
use crate::record::*;

impl Deriver<'_> {
    /// Every association that has a request from its subject's owner, sorted by
    /// (benchmark, subject).
    pub(super) fn associations(
        &mut self,
        benchmarks: &BTreeMap<RecordId, BenchmarkView>,
        containers: &BTreeMap<RecordId, ContainerView>,
        datasets: &BTreeMap<RecordId, DatasetView>,
    ) -> Vec<AssociationView> {
        let l = self.l;
        let mut associations = Vec::new();
        for ((bench_id, subject), requests) in &l.requests {
            for r in requests {
                if !self.valid(&r.author, r.seq) {
                    self.ignore(r.id, "signer's key is revoked");
                }
            }
            let owner = match subject {
                Subject::Dataset(d) => datasets.get(d).map(|d| d.owner),
                Subject::Model(m) => containers.get(m).map(|c| c.owner),
            };
            let Some(bench) = benchmarks.get(bench_id) else { continue };
            let Some(owner) = owner else { continue };
            if let Subject::Dataset(d) = subject
                && datasets.get(d).is_some_and(|d| d.dataset.benchmark != *bench_id)
            {
                for r in requests {
                    self.ignore(
                        r.id,
                        "the dataset is registered for another benchmark, whose committee reads its details; register it for this one",
                    );
                }
                continue;
            }
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
                for v in all.all() {
                    let (k, id) = (&v.signer, v.id);
                    if *k == req.author {
                        self.ignore(id, "the initiator cannot decide on its own request");
                    } else if !eligible.contains(k) {
                        self.ignore(id, "signer is not on the benchmark's committee");
                    } else if !self.may_decide(k, v.seq) {
                        self.ignore(id, "signer has no authority (revoked key or equivocation)");
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
            let (status, auto_approved) = if !req.body {
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
        associations
    }
}
