//! Releases and the leaderboard: what the committee publishes, and what every node
//! computes from it, identically (integer arithmetic only, seeded resampling).
//!
//! - [`build_release`]: a committee member turns the results it opened into the
//!   release its benchmark's sharing policy allows. The function is deterministic,
//!   so members holding the same results sign identical content, which is what the
//!   threshold counts. `round` is one above the round shown now
//!   ([`next_round`]), so rounds strictly increase per benchmark and a release of
//!   re-run results supersedes the one shown, even when it covers as many results.
//! - [`compute`]: the leaderboard of a shown release: the mean of each metric per
//!   model, ranked by the benchmark's metric (equal values share a rank, ties by
//!   model id); with per-dataset values also FeTS-style rank-then-mean and a 95%
//!   bootstrap confidence interval of the mean, resampling datasets with a seed
//!   fixed in the release.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::disclosure::{self, dataset_label, metric_allowed, round_value};
use crate::ids::RecordId;
use crate::metric::{Figure, MetricValue};
use crate::record::{Benchmark, Release, ReleaseEntry, SealedDetails, SharingPolicy};

/// Bootstrap resamples per model.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// A result as a committee member (or the data owner) reads it after opening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedResult {
    pub model: RecordId,
    pub dataset: RecordId,
    /// results.yaml as the metrics container wrote it.
    pub metrics: BTreeMap<String, MetricValue>,
}

impl OpenedResult {
    /// The numbers a release may carry: every number in the results, nested ones
    /// by dotted path (`dice.ET`), as millionths or NaN. Text and nulls are not
    /// released.
    pub fn figures(&self) -> BTreeMap<String, Figure> {
        let mut numbers = BTreeMap::new();
        for (k, v) in &self.metrics {
            v.numbers(k, &mut numbers);
        }
        numbers.into_iter().map(|(k, v)| (k, Figure::from_f64(v))).collect()
    }
}

/// The integer mean (rounded down) of millionths.
fn mean(values: impl IntoIterator<Item = i64>) -> Option<i64> {
    let (sum, n) = values.into_iter().fold((0i128, 0i128), |(s, n), v| (s + i128::from(v), n + 1));
    (n > 0).then(|| i64::try_from(sum.div_euclid(n)).unwrap_or(i64::MAX))
}

/// The round a new release takes: one above `shown`, the round of the release
/// the fold shows now (`None` before the first). `None` when `shown` is the last
/// round there is, which only a committee at its threshold could have signed.
pub fn next_round(shown: Option<u64>) -> Option<u64> {
    shown.map_or(Some(1), |r| r.checked_add(1))
}

/// The release the policy allows for these opened results, as round `round`.
/// `datasets` gives each dataset's opened details (its name or pseudonym, its
/// case count); a dataset missing from it is left out, as its label is unknown.
///
/// The benchmark's [`crate::record::Disclosure`] applies: only its metrics, each
/// value rounded to its precision. A per-dataset release is a complete table
/// (every dataset it shows has a value for every model it shows), so that which
/// models a dataset ran, which the result records tell everyone, cannot tie a
/// pseudonym to a dataset; of the two complete tables (every dataset and the
/// models run on all of them, or every model and the datasets that ran all of
/// them) the one with more cells is released. Datasets with fewer cases than
/// `min_cases` are left out. An aggregate covers at least `min_datasets`.
pub fn build_release(
    benchmark_id: RecordId,
    benchmark: &Benchmark,
    datasets: &BTreeMap<RecordId, SealedDetails>,
    opened: &[OpenedResult],
    round: u64,
) -> Release {
    build_release_after(benchmark_id, benchmark, datasets, opened, round, None)
}

/// [`build_release`] as the round after `before`, the release shown now, so that
/// nothing can be attributed by difference
/// ([`crate::disclosure::check_difference`]): a single dataset new to a
/// per-dataset release waits for another (a first release waits for two); a
/// model's aggregate that would move by fewer than `min_datasets` datasets keeps
/// the figure shown (or, covering fewer datasets than shown, waits).
pub fn build_release_after(
    benchmark_id: RecordId,
    benchmark: &Benchmark,
    datasets: &BTreeMap<RecordId, SealedDetails>,
    opened: &[OpenedResult],
    round: u64,
    before: Option<&Release>,
) -> Release {
    let policy = &benchmark.disclosure;
    let shown = |metrics: &BTreeMap<String, Figure>| -> BTreeMap<String, Figure> {
        metrics
            .iter()
            .filter(|(k, _)| metric_allowed(policy, k))
            .map(|(k, v)| {
                let v = match v {
                    Figure::Millionths(x) => Figure::Millionths(round_value(*x, policy.precision)),
                    Figure::NaN => Figure::NaN,
                };
                (k.clone(), v)
            })
            .collect()
    };
    let mut unique: BTreeMap<(RecordId, RecordId), &OpenedResult> = BTreeMap::new();
    for o in opened {
        unique.insert((o.model, o.dataset), o);
    }
    let seed = {
        let mut h = blake3::Hasher::new();
        h.update(b"medmesh/release-seed/v1");
        h.update(benchmark_id.as_bytes());
        h.update(&round.to_le_bytes());
        let b = h.finalize();
        u64::from_le_bytes(b.as_bytes()[..8].try_into().expect("8 of 32 bytes"))
    };
    let mut entries = Vec::new();
    match benchmark.sharing {
        SharingPolicy::PerDataset => {
            let labelled: BTreeMap<RecordId, String> = datasets
                .iter()
                .filter(|(_, d)| d.details.num_cases.unwrap_or(0) >= policy.min_cases)
                .map(|(id, d)| (*id, dataset_label(&benchmark_id, d)))
                .collect();
            unique.retain(|(_, d), _| labelled.contains_key(d));
            let (models, mut columns) = complete_table(unique.keys().copied());
            let shown_labels: BTreeSet<&str> = before
                .map(|r| r.entries.iter().filter_map(|e| e.dataset.as_deref()).collect())
                .unwrap_or_default();
            let new: Vec<RecordId> = columns
                .iter()
                .filter(|d| !shown_labels.contains(labelled[*d].as_str()))
                .copied()
                .collect();
            if new.len() < disclosure::NEW_DATASETS_MIN {
                for d in new {
                    columns.remove(&d);
                }
            }
            for (model, dataset) in unique.keys() {
                if models.contains(model) && columns.contains(dataset) {
                    entries.push(ReleaseEntry {
                        model: *model,
                        dataset: Some(labelled[dataset].clone()),
                        datasets: 1,
                        metrics: shown(&unique[&(*model, *dataset)].figures()),
                    });
                }
            }
            entries.sort_by(|a, b| (a.model, &a.dataset).cmp(&(b.model, &b.dataset)));
        }
        SharingPolicy::Aggregate { min_datasets } => {
            let models: BTreeSet<RecordId> = unique.keys().map(|k| k.0).collect();
            for model in models {
                let mine: Vec<&OpenedResult> = unique
                    .range(
                        (model, RecordId::from_bytes([0; 32]))
                            ..=(model, RecordId::from_bytes([0xff; 32])),
                    )
                    .map(|(_, o)| *o)
                    .collect();
                if mine.len() < usize::from(min_datasets) {
                    continue; // Never reveal a figure that covers too few datasets.
                }
                let figures: Vec<BTreeMap<String, Figure>> =
                    mine.iter().map(|o| o.figures()).collect();
                let names: BTreeSet<&String> = figures.iter().flat_map(|f| f.keys()).collect();
                let metrics = names
                    .into_iter()
                    .filter_map(|n| {
                        Some((
                            n.clone(),
                            Figure::mean(figures.iter().filter_map(|f| f.get(n).copied()))?,
                        ))
                    })
                    .collect();
                let entry = ReleaseEntry {
                    model,
                    dataset: None,
                    datasets: mine.len() as u16,
                    metrics: shown(&metrics),
                };
                let prev = before.and_then(|r| r.entries.iter().find(|e| e.model == model));
                match prev {
                    Some(p) if p.datasets.abs_diff(entry.datasets) >= min_datasets => {
                        entries.push(entry)
                    }
                    Some(p) if p.datasets < entry.datasets => entries.push(p.clone()),
                    Some(p) if p.datasets > entry.datasets => {} // Waits for more.
                    _ => entries.push(entry),
                }
            }
        }
    }
    Release { benchmark: benchmark_id, round, policy: benchmark.sharing.clone(), entries, seed }
}

/// The larger complete sub-table of (model, dataset) pairs: every dataset with
/// the models run on all of them, or every model with the datasets that ran all
/// of them (more cells wins; the second on a tie).
fn complete_table(
    pairs: impl Iterator<Item = (RecordId, RecordId)>,
) -> (BTreeSet<RecordId>, BTreeSet<RecordId>) {
    let pairs: BTreeSet<(RecordId, RecordId)> = pairs.collect();
    let all_models: BTreeSet<RecordId> = pairs.iter().map(|p| p.0).collect();
    let all_datasets: BTreeSet<RecordId> = pairs.iter().map(|p| p.1).collect();
    let models_on_all: BTreeSet<RecordId> = all_models
        .iter()
        .filter(|m| all_datasets.iter().all(|d| pairs.contains(&(**m, *d))))
        .copied()
        .collect();
    let datasets_with_all: BTreeSet<RecordId> = all_datasets
        .iter()
        .filter(|d| all_models.iter().all(|m| pairs.contains(&(*m, **d))))
        .copied()
        .collect();
    let a = models_on_all.len() * all_datasets.len();
    let b = all_models.len() * datasets_with_all.len();
    if a > b { (models_on_all, all_datasets) } else { (all_models, datasets_with_all) }
}

/// Re-exported for callers that label datasets themselves.
pub use disclosure::pseudonym;

/// One line of a leaderboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardRow {
    /// 1-based; equal values share a rank (1, 1, 3).
    pub rank: u32,
    pub model: RecordId,
    pub model_name: String,
    /// The ranking metric (mean over datasets), in millionths; NaN when any of
    /// its values is NaN (ranked last).
    pub value: Figure,
    pub datasets: u32,
    /// Every released metric (mean over datasets), in millionths or NaN.
    pub metrics: BTreeMap<String, Figure>,
    /// FeTS rank-then-mean, in thousandths of a rank (per-dataset releases only).
    pub mean_rank_milli: Option<u64>,
    /// 95% bootstrap interval of `value` over datasets (per-dataset releases only,
    /// and only when no value is NaN).
    pub ci_low: Option<i64>,
    pub ci_high: Option<i64>,
}

/// One cell of the model x dataset table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub model: RecordId,
    pub dataset: String,
    pub value: Figure,
}

/// A benchmark's leaderboard, from its shown release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaderboard {
    pub benchmark: RecordId,
    pub metric: String,
    pub higher_is_better: bool,
    pub policy: SharingPolicy,
    pub release_round: u64,
    pub seed: u64,
    pub rows: Vec<LeaderboardRow>,
    /// Column labels of the table (per-dataset releases only).
    pub datasets: Vec<String>,
    /// The model x dataset table of the ranking metric (per-dataset releases only).
    pub cells: Vec<Cell>,
}

/// SplitMix64: a tiny, fully specified generator, so every node resamples alike.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn bootstrap(values: &[i64], seed: u64, model: &RecordId) -> Option<(i64, i64)> {
    if values.len() < 2 {
        return None;
    }
    let mut rng = SplitMix(
        seed ^ u64::from_le_bytes(model.as_bytes()[..8].try_into().expect("8 of 32 bytes")),
    );
    let n = values.len() as u64;
    let mut means: Vec<i64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| mean((0..n).map(|_| values[(rng.next() % n) as usize])).expect("n >= 2"))
        .collect();
    means.sort_unstable();
    let lo = means[BOOTSTRAP_RESAMPLES * 25 / 1000];
    let hi = means[BOOTSTRAP_RESAMPLES * 975 / 1000 - 1];
    Some((lo, hi))
}

fn competition_ranks<K: Copy>(sorted: &[(K, Figure)]) -> Vec<(K, u32)> {
    let mut out: Vec<(K, u32)> = Vec::with_capacity(sorted.len());
    for (i, (k, v)) in sorted.iter().enumerate() {
        let rank = if i > 0 && sorted[i - 1].1 == *v { out[i - 1].1 } else { i as u32 + 1 };
        out.push((*k, rank));
    }
    out
}

/// The leaderboard of `release`, for the models `include` admits (approved ones).
pub fn compute(
    bench_id: RecordId,
    b: &Benchmark,
    release: &Release,
    model_name: &dyn Fn(&RecordId) -> String,
    include: &dyn Fn(&RecordId) -> bool,
) -> Leaderboard {
    let better = |x: Figure, y: Figure| x.rank_order(y, b.higher_is_better);
    let entries: Vec<&ReleaseEntry> =
        release.entries.iter().filter(|e| include(&e.model)).collect();

    // Means per model.
    let mut per_model: BTreeMap<RecordId, (u32, BTreeMap<String, Vec<Figure>>)> = BTreeMap::new();
    for e in &entries {
        let slot = per_model.entry(e.model).or_default();
        slot.0 += u32::from(e.datasets);
        for (name, v) in &e.metrics {
            slot.1.entry(name.clone()).or_default().push(*v);
        }
    }

    // Per-dataset table and rank-then-mean.
    let per_dataset = matches!(release.policy, SharingPolicy::PerDataset);
    let mut cells = Vec::new();
    let mut columns: BTreeSet<String> = BTreeSet::new();
    let mut rank_sums: BTreeMap<RecordId, (u64, u64)> = BTreeMap::new();
    if per_dataset {
        let mut by_dataset: BTreeMap<&String, Vec<(RecordId, Figure)>> = BTreeMap::new();
        for e in &entries {
            if let (Some(d), Some(v)) = (&e.dataset, e.metrics.get(&b.rank_metric)) {
                by_dataset.entry(d).or_default().push((e.model, *v));
                cells.push(Cell { model: e.model, dataset: d.clone(), value: *v });
                columns.insert(d.clone());
            }
        }
        for (_, mut vals) in by_dataset {
            vals.sort_by(|x, y| better(x.1, y.1).then(x.0.cmp(&y.0)));
            for (model, rank) in competition_ranks(&vals) {
                let s = rank_sums.entry(model).or_default();
                s.0 += u64::from(rank);
                s.1 += 1;
            }
        }
        cells.sort_by(|x, y| (x.model, &x.dataset).cmp(&(y.model, &y.dataset)));
    }

    let mut rows: Vec<LeaderboardRow> = per_model
        .into_iter()
        .filter_map(|(model, (datasets, values))| {
            let metrics: BTreeMap<String, Figure> = values
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), Figure::mean(v.iter().copied())?)))
                .collect();
            let value = *metrics.get(&b.rank_metric)?;
            let ci = if per_dataset {
                let numbers: Option<Vec<i64>> =
                    values.get(&b.rank_metric)?.iter().map(|f| f.millionths()).collect();
                numbers.and_then(|n| bootstrap(&n, release.seed, &model))
            } else {
                None
            };
            let mean_rank_milli = rank_sums.get(&model).map(|(sum, n)| sum * 1000 / n);
            Some(LeaderboardRow {
                rank: 0,
                model,
                model_name: model_name(&model),
                value,
                datasets,
                metrics,
                mean_rank_milli,
                ci_low: ci.map(|c| c.0),
                ci_high: ci.map(|c| c.1),
            })
        })
        .collect();
    rows.sort_by(|x, y| better(x.value, y.value).then(x.model.cmp(&y.model)));
    let ranked: Vec<(usize, Figure)> = rows.iter().enumerate().map(|(i, r)| (i, r.value)).collect();
    for (i, rank) in competition_ranks(&ranked) {
        rows[i].rank = rank;
    }
    Leaderboard {
        benchmark: bench_id,
        metric: b.rank_metric.clone(),
        higher_is_better: b.higher_is_better,
        policy: release.policy.clone(),
        release_round: release.round,
        seed: release.seed,
        rows,
        datasets: columns.into_iter().collect(),
        cells,
    }
}
