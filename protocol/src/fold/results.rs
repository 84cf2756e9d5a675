//! Results (which count toward a benchmark) and releases (what the committee
//! shows), with the leaderboard of the shown release.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::{
    BenchmarkView, ContainerView, DatasetView, Deriver, Leaderboard, Map, Mark, ReleaseView,
    ResultEntry, Results, ResultsBuilder, Set, Status,
};
use crate::ids::{Hash32, PublicKey, RecordId, X25519Key};
use crate::record::*;

impl Deriver<'_> {
    /// Every result with whether it counts and why not, grouped by (benchmark,
    /// model, dataset).
    pub(super) fn results(
        &mut self,
        benchmarks: &BTreeMap<RecordId, BenchmarkView>,
        datasets: &BTreeMap<RecordId, DatasetView>,
        approved: &Set<(RecordId, Subject)>,
    ) -> Results {
        let l = self.l;
        let assoc_approved = |b: &RecordId, s: Subject| approved.contains(&(*b, s));
        let sealable = self.sealable();
        let mut out = ResultsBuilder::with_capacity(l.results.len());
        // Most results share a recipient set, a benchmark and an owner: check once.
        let mut sealed_right: Map<(u32, RecordId, PublicKey), Option<u32>> = Map::default();
        let reasons = [
            "signer's key is revoked",
            "only the dataset's owner can submit its results",
            "dataset is unknown",
            "benchmark is not approved",
            "dataset association is not approved",
            "model association is not approved",
            "dataset is not operational",
            "superseded by the owner's later result",
        ]
        .map(|why| out.reason(Cow::Borrowed(why)));
        let [
            revoked,
            not_owner,
            unknown,
            not_approved,
            dataset_assoc,
            model_assoc,
            not_operational,
            superseded,
        ] = reasons;
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
            .map(|(i, e)| {
                let (b, m, d) = l.result_key(e);
                (prefix(&b), prefix(&m), prefix(&d), i as u32)
            })
            .collect();
        order.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)).then_with(|| {
                let (x, y) = (&l.results[a.3 as usize], &l.results[b.3 as usize]);
                (l.result_key(x), x.id).cmp(&(l.result_key(y), y.id))
            })
        });
        let mut rest = order.as_slice();
        while let Some(first) = rest.first() {
            let key = l.result_key(&l.results[first.3 as usize]);
            let n =
                rest.iter().take_while(|o| l.result_key(&l.results[o.3 as usize]) == key).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let subs = group.iter().map(|o| &l.results[o.3 as usize]);
            let (bench_id, model, dataset_id) = &key;
            let dataset = datasets.get(dataset_id);
            // What does not depend on the individual record, checked once per key.
            let key_reason = if dataset.is_none() {
                Some(unknown)
            } else if benchmarks.get(bench_id).is_none_or(|b| b.status != Status::Approved) {
                Some(not_approved)
            } else if !assoc_approved(bench_id, Subject::Dataset(*dataset_id)) {
                Some(dataset_assoc)
            } else if !assoc_approved(bench_id, Subject::Model(*model)) {
                Some(model_assoc)
            } else if dataset.is_some_and(|d| d.state != DatasetState::Operation) {
                Some(not_operational)
            } else {
                None
            };
            let indexes = [out.id(bench_id), out.id(model), out.id(dataset_id)];
            let start = out.len();
            let mut latest_counting: Option<&ResultEntry> = None;
            for r in subs {
                let author = l.result_author(r);
                let reason: Option<u32> = if !self.valid(&author, r.seq) {
                    Some(revoked)
                } else if dataset.is_some_and(|d| d.owner != author) {
                    Some(not_owner)
                } else if key_reason.is_some() {
                    key_reason
                } else {
                    let committee = benchmarks.get(bench_id).map(|b| &b.benchmark.committee[..]);
                    *sealed_right.entry((r.recipients, *bench_id, author)).or_insert_with(|| {
                        let to = self.l.recipient_sets.get(r.recipients as usize);
                        self.seal_problem(
                            "metrics",
                            to.map(|t| &t[..]),
                            &author,
                            committee.unwrap_or_default(),
                            &sealable,
                        )
                        .map(|why| out.reason(why))
                    })
                };
                if reason.is_none() && latest_counting.is_none_or(|l| (r.seq, r.id) > (l.seq, l.id))
                {
                    latest_counting = Some(r);
                }
                let submitter = out.submitter(&author);
                out.push(r.id, indexes, submitter, reason);
            }
            out.set_since(start, |id, has_reason| {
                if latest_counting.is_some_and(|l| l.id == *id) {
                    Mark::Counts
                } else if !has_reason {
                    Mark::Reason(superseded)
                } else {
                    Mark::Keep
                }
            });
        }
        out.finish()
    }

    /// Every X25519 key each participant published in a profile that still has
    /// authority, sorted: a result sealed to any of them reaches that participant,
    /// so publishing a new profile never voids the results sealed before it.
    pub(super) fn sealable(&self) -> Map<PublicKey, Vec<X25519Key>> {
        let mut out: Map<PublicKey, Vec<X25519Key>> = Map::default();
        for (key, by_seq) in &self.l.profiles {
            let mut keys: Vec<X25519Key> = by_seq
                .iter()
                .filter(|(seq, _)| self.valid(key, **seq))
                .map(|(_, (_, p))| p.x25519)
                .collect();
            keys.sort();
            keys.dedup();
            if !keys.is_empty() {
                out.insert(*key, keys);
            }
        }
        out
    }

    /// Why `what` (metrics, details), sealed to `sealed_to` (`None`: an unknown scheme) cannot be
    /// read by everyone who must read it: every committee member whose key is not
    /// revoked, and the data owner `owner`.
    pub(super) fn seal_problem(
        &self,
        what: &str,
        sealed_to: Option<&[X25519Key]>,
        owner: &PublicKey,
        committee: &[PublicKey],
        sealable: &Map<PublicKey, Vec<X25519Key>>,
    ) -> Option<Cow<'static, str>> {
        let Some(sealed_to) = sealed_to else {
            return Some(Cow::Owned(format!("{what} are sealed with an unknown scheme")));
        };
        if sealed_to.is_empty() {
            return Some(Cow::Owned(format!("{what} are sealed to nobody")));
        }
        let members = committee.iter().filter(|k| !self.revoked.contains_key(k));
        let readers = members.map(|k| ("committee member", k)).chain([("data owner", owner)]);
        for (role, k) in readers {
            let Some(keys) = sealable.get(k) else {
                return Some(Cow::Owned(format!(
                    "{role} {} has published no profile with a key to seal results to",
                    k.short()
                )));
            };
            if !keys.iter().any(|x| sealed_to.binary_search(x).is_ok()) {
                return Some(Cow::Owned(format!(
                    "{what} are not sealed to the {role} {}",
                    k.short()
                )));
            }
        }
        None
    }

    /// The shown release of each approved benchmark and its leaderboard: of the
    /// contents that fit the sharing policy, are backed by the results that count
    /// and are signed by `threshold` members, the highest round (the smallest
    /// content hash on a tie).
    pub(super) fn releases(
        &mut self,
        benchmarks: &BTreeMap<RecordId, BenchmarkView>,
        containers: &BTreeMap<RecordId, ContainerView>,
        approved: &Set<(RecordId, Subject)>,
        results: &Results,
    ) -> (BTreeMap<RecordId, ReleaseView>, BTreeMap<RecordId, Leaderboard>) {
        let l = self.l;
        let assoc_approved = |b: &RecordId, s: Subject| approved.contains(&(*b, s));
        let mut releases = BTreeMap::new();
        let mut leaderboards = BTreeMap::new();
        let backings = Backing::of_all(l, results);
        let no_results = Backing { counts: BTreeMap::new() };
        for (bench_id, contents) in &l.releases {
            let Some(bench) = benchmarks.get(bench_id).filter(|b| b.status == Status::Approved)
            else {
                continue;
            };
            let b = &bench.benchmark;
            let backing = backings.get(bench_id).unwrap_or(&no_results);
            // Complete contents (valid, signed by the threshold), by round then hash.
            let mut complete: Vec<Complete<'_>> = Vec::new();
            for (hash, c) in contents {
                let problem = if !release_fits_policy(&c.body, &b.sharing) {
                    Some("release breaks the benchmark's sharing policy")
                } else if let Err(why) = crate::disclosure::check_release(&c.body, &b.disclosure) {
                    Some(why)
                } else {
                    backing.check(&c.body).err()
                };
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
                        } else if let Some(why) = problem {
                            self.ignore(*id, why);
                        }
                    }
                }
                let signers = self.cosigners(c, &b.committee);
                if signers.len() < usize::from(b.threshold) || problem.is_some() {
                    continue;
                }
                let ids = c.signers.values().flatten().map(|(_, id)| *id).collect();
                complete.push((c.body.round, *hash, &c.body, signers, ids));
            }
            complete.sort_by_key(|c| (c.0, c.1));
            // Each round's contents against the release shown before it: the
            // smallest hash of a round that passes is shown, until a later round
            // passes.
            let mut best: Option<(u64, Hash32, &Release, Vec<PublicKey>)> = None;
            let mut before: Option<&Release> = None;
            let mut round = None;
            for (r, hash, release, signers, ids) in complete {
                if round != Some(r) {
                    round = Some(r);
                    before = best.as_ref().map(|b| b.2);
                }
                if let Err(why) = crate::disclosure::check_difference(before, release, &b.sharing) {
                    for id in ids {
                        self.ignore(id, why);
                    }
                    continue;
                }
                if best.as_ref().is_none_or(|b| b.0 < r) {
                    best = Some((r, hash, release, signers));
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

/// A release content signed by the threshold: round, content hash, content,
/// counted signers, and the ids of every record that signed it.
type Complete<'a> = (u64, Hash32, &'a Release, Vec<PublicKey>, Vec<RecordId>);

/// The results that count for one benchmark: per model, how many datasets it
/// has a counting result for. Dataset labels are pseudonyms keyed with secrets
/// sealed to the committee, so the fold checks counts and shape, not labels.
struct Backing {
    counts: BTreeMap<RecordId, usize>,
}

impl Backing {
    /// The backing of every benchmark with a release, in one pass over the results.
    fn of_all(l: &super::Ledger, results: &Results) -> BTreeMap<RecordId, Backing> {
        let mut out: BTreeMap<RecordId, Backing> = BTreeMap::new();
        for (benchmark, model) in results.counting().filter(|(b, _)| l.releases.contains_key(b)) {
            let backing =
                out.entry(*benchmark).or_insert_with(|| Backing { counts: BTreeMap::new() });
            *backing.counts.entry(*model).or_default() += 1;
        }
        out
    }

    /// A release is backed when every figure it shows stands on results that
    /// count: a model's per-dataset entries (each dataset once) are no more than
    /// its counting results, and every model shows the same datasets (a complete
    /// table: which models a dataset ran, public in the result records, must not
    /// tell which pseudonym is which); each aggregate claims no more datasets
    /// than the model has counting results. A release built before more results
    /// arrived stays backed; one that claims more than exists is not.
    fn check(&self, release: &Release) -> Result<(), &'static str> {
        let mut labels: BTreeMap<RecordId, BTreeSet<&str>> = BTreeMap::new();
        let mut aggregates: BTreeMap<RecordId, usize> = BTreeMap::new();
        for e in &release.entries {
            let Some(held) = self.counts.get(&e.model) else {
                return Err("release names a model that has no result that counts");
            };
            match &e.dataset {
                Some(label) => {
                    let mine = labels.entry(e.model).or_default();
                    if !mine.insert(label.as_str()) {
                        return Err("release names a dataset twice for one model");
                    }
                    if mine.len() > *held {
                        return Err(
                            "release shows more datasets for a model than it has results that count",
                        );
                    }
                }
                None => {
                    let n = aggregates.entry(e.model).or_default();
                    *n += 1;
                    if *n > 1 {
                        return Err("release lists a model's aggregate twice");
                    }
                    if usize::from(e.datasets) > *held {
                        return Err(
                            "release claims more datasets for a model than it has results that count",
                        );
                    }
                }
            }
        }
        let mut sets = labels.values();
        if let Some(first) = sets.next()
            && sets.any(|s| s != first)
        {
            return Err("release is not a complete table: its models show different datasets");
        }
        Ok(())
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
