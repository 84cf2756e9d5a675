//! Results (which count toward a benchmark) and releases (what the committee
//! shows), with the leaderboard of the shown release.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{
    BenchmarkView, ContainerView, DatasetView, Deriver, Leaderboard, ReleaseView, ResultEntry,
    ResultView, Set, Status,
};
use crate::ids::{Hash32, PublicKey, RecordId};
use crate::record::*;

impl Deriver<'_> {
    /// Every result with whether it counts and why not, grouped by (benchmark,
    /// model, dataset).
    pub(super) fn results(
        &mut self,
        benchmarks: &BTreeMap<RecordId, BenchmarkView>,
        datasets: &BTreeMap<RecordId, DatasetView>,
        approved: &Set<(RecordId, Subject)>,
    ) -> Vec<ResultView> {
        let l = self.l;
        let assoc_approved = |b: &RecordId, s: Subject| approved.contains(&(*b, s));
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
        results
    }

    /// The shown release of each approved benchmark and its leaderboard.
    pub(super) fn releases(
        &mut self,
        benchmarks: &BTreeMap<RecordId, BenchmarkView>,
        containers: &BTreeMap<RecordId, ContainerView>,
        approved: &Set<(RecordId, Subject)>,
    ) -> (BTreeMap<RecordId, ReleaseView>, BTreeMap<RecordId, Leaderboard>) {
        let l = self.l;
        let assoc_approved = |b: &RecordId, s: Subject| approved.contains(&(*b, s));
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
        (releases, leaderboards)
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
