//! Releases and leaderboards, data-driven: input results, expected table.

use std::collections::BTreeMap;

use protocol::leaderboard::{self, OpenedResult};
use protocol::metric::{Figure, MetricValue};
use protocol::record::*;
use protocol::seal::{self, DetailsBinding};
use protocol::testkit::{self, Workflow};
use protocol::{RecordId, fold};

fn id(n: u8) -> RecordId {
    RecordId::from_bytes([n; 32])
}

fn opened(model: u8, dataset: u8, auc: i64) -> OpenedResult {
    OpenedResult {
        model: id(model),
        dataset: id(dataset),
        metrics: [("auc".to_string(), MetricValue::float(auc as f64 / 1e6))].into_iter().collect(),
    }
}

fn bench(sharing: SharingPolicy) -> Benchmark {
    let mut b = testkit::benchmark("b", id(90), id(91), id(92), vec![], 0);
    b.sharing = sharing;
    b
}

fn named(name: &str, public: bool) -> SealedDetails {
    let mut d = testkit::details(name);
    d.details.name_public = public;
    d
}

/// Opened details of datasets `ids`, each under a pseudonym.
fn anonymous(ids: impl IntoIterator<Item = u8>) -> BTreeMap<RecordId, SealedDetails> {
    ids.into_iter().map(|n| (id(n), named(&format!("d{n}"), false))).collect()
}

/// Three models on three datasets: (model, dataset, auc in millionths).
const TABLE: &[(u8, u8, i64)] = &[
    (1, 11, 900_000),
    (1, 12, 700_000),
    (1, 13, 800_000),
    (2, 11, 850_000),
    (2, 12, 750_000),
    (2, 13, 820_000),
    (3, 11, 600_000),
    (3, 12, 600_000),
    (3, 13, 610_000),
];

fn table() -> Vec<OpenedResult> {
    TABLE.iter().map(|(m, d, v)| opened(*m, *d, *v)).collect()
}

#[test]
fn a_per_dataset_release_lists_every_cell_with_pseudonyms_unless_the_owner_allowed_the_name() {
    let mut datasets = BTreeMap::new();
    datasets.insert(id(11), named("St Mary", true));
    datasets.insert(id(12), named("Secret General", false));
    datasets.insert(id(13), named("Quiet Clinic", false));
    let r = leaderboard::build_release(
        id(50),
        &bench(SharingPolicy::PerDataset),
        &datasets,
        &table(),
        4,
    );
    assert_eq!(r.entries.len(), 9);
    assert_eq!(r.round, 4, "the round the caller gave");
    let labels: std::collections::BTreeSet<_> =
        r.entries.iter().map(|e| e.dataset.clone().unwrap()).collect();
    assert!(labels.contains("St Mary"));
    assert!(!labels.iter().any(|l| l.contains("Secret")));
    assert_eq!(labels.iter().filter(|l| l.starts_with("site-")).count(), 2);
}

#[test]
fn an_aggregate_release_never_reveals_a_single_datasets_value() {
    let b = bench(SharingPolicy::Aggregate { min_datasets: 2 });
    // Model 9 has one dataset only: it must not appear at all.
    let mut results = table();
    results.push(opened(9, 11, 123_456));
    let r = leaderboard::build_release(id(50), &b, &anonymous(11..=12), &results, 1);
    assert!(r.entries.iter().all(|e| e.dataset.is_none() && e.datasets >= 2));
    assert!(!r.entries.iter().any(|e| e.model == id(9)));
    assert!(
        !r.entries.iter().any(|e| e.metrics.values().any(|v| *v == Figure::Millionths(123_456)))
    );
    let m1 = r.entries.iter().find(|e| e.model == id(1)).unwrap();
    assert_eq!(m1.metrics["auc"], Figure::Millionths(800_000));
    assert_eq!(m1.datasets, 3);
}

#[test]
fn members_with_the_same_results_build_byte_identical_releases() {
    let b = bench(SharingPolicy::PerDataset);
    let mut reversed = table();
    reversed.reverse();
    let one = leaderboard::build_release(id(50), &b, &anonymous(11..=13), &table(), 1);
    let two = leaderboard::build_release(id(50), &b, &anonymous(11..=13), &reversed, 1);
    assert_eq!(
        protocol::cbor::to_canonical(&one).unwrap(),
        protocol::cbor::to_canonical(&two).unwrap()
    );
}

#[test]
fn the_leaderboard_ranks_by_mean_and_adds_rank_then_mean_and_intervals() {
    let b = bench(SharingPolicy::PerDataset);
    let r = leaderboard::build_release(id(50), &b, &anonymous(11..=13), &table(), 1);
    let lb = leaderboard::compute(id(50), &b, &r, &|m| format!("m{}", m.as_bytes()[0]), &|_| true);
    // Means: model 2 = 806_666, model 1 = 800_000, model 3 = 603_333.
    let got: Vec<(u32, u8, i64)> = lb
        .rows
        .iter()
        .map(|r| (r.rank, r.model.as_bytes()[0], r.value.millionths().unwrap()))
        .collect();
    assert_eq!(got, vec![(1, 2, 806_666), (2, 1, 800_000), (3, 3, 603_333)]);
    // Ranks per dataset: d11: 1,2,3 for models 1,2,3; d12: 2,1,3; d13: 2,1,3.
    let mrm: Vec<(u8, u64)> =
        lb.rows.iter().map(|r| (r.model.as_bytes()[0], r.mean_rank_milli.unwrap())).collect();
    assert_eq!(mrm, vec![(2, 1333), (1, 1666), (3, 3000)]);
    for row in &lb.rows {
        let (lo, hi) = (row.ci_low.unwrap(), row.ci_high.unwrap());
        let v = row.value.millionths().unwrap();
        assert!(lo <= v && v <= hi, "{lo} <= {v} <= {hi}");
    }
    assert_eq!(lb.cells.len(), 9);
    assert_eq!(lb.datasets.len(), 3);
}

#[test]
fn bootstrap_intervals_are_identical_on_every_run() {
    let b = bench(SharingPolicy::PerDataset);
    let r = leaderboard::build_release(id(50), &b, &anonymous(11..=13), &table(), 1);
    let one = leaderboard::compute(id(50), &b, &r, &|_| String::new(), &|_| true);
    let two = leaderboard::compute(id(50), &b, &r, &|_| String::new(), &|_| true);
    assert_eq!(one, two);
    // ...and come from the release's seed: over twelve datasets, other seeds move them.
    let wide: Vec<OpenedResult> =
        (0..12u8).map(|d| opened(1, 20 + d, 500_000 + 37_123 * i64::from(d % 7))).collect();
    let r = leaderboard::build_release(id(50), &b, &anonymous(20..32), &wide, 1);
    let ci = |seed: u64| {
        let mut r = r.clone();
        r.seed = seed;
        let row =
            leaderboard::compute(id(50), &b, &r, &|_| String::new(), &|_| true).rows[0].clone();
        (row.ci_low, row.ci_high)
    };
    assert_eq!(ci(5), ci(5));
    assert!((6..14).any(|s| ci(s) != ci(5)), "the interval ignores the seed");
}

#[test]
fn an_aggregate_leaderboard_has_no_table_and_no_intervals() {
    let b = bench(SharingPolicy::Aggregate { min_datasets: 3 });
    let r = leaderboard::build_release(id(50), &b, &BTreeMap::new(), &table(), 1);
    let lb = leaderboard::compute(id(50), &b, &r, &|_| String::new(), &|_| true);
    assert_eq!(lb.rows.len(), 3);
    assert!(lb.cells.is_empty() && lb.datasets.is_empty());
    assert!(lb.rows.iter().all(|r| r.ci_low.is_none() && r.mean_rank_milli.is_none()));
}

#[test]
fn a_built_release_signed_by_the_threshold_shows_in_every_fold() {
    let mut w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results();
    let s = fold(&w.root, &w.records);
    let bview = &s.benchmarks[&w.benchmark];
    let member = w.committee[0].opening();
    let datasets: BTreeMap<_, _> = s
        .datasets
        .iter()
        .map(|(k, v)| {
            let binding = DetailsBinding { benchmark: v.dataset.benchmark, owner: v.owner };
            (*k, seal::open_details(&v.dataset.sealed, &member, binding).unwrap())
        })
        .collect();
    let opened: Vec<OpenedResult> = s
        .results
        .iter()
        .filter(|r| r.counts)
        .map(|r| OpenedResult {
            model: r.model,
            dataset: r.dataset,
            metrics: [(
                "auc".to_string(),
                MetricValue::float(if r.model == w.models[0] { 0.7 } else { 0.9 }),
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    let shown = s.releases.get(&w.benchmark).map(|r| r.release.round);
    let round = leaderboard::next_round(shown).expect("rounds remain");
    let release =
        leaderboard::build_release(w.benchmark, &bview.benchmark, &datasets, &opened, round);
    for c in [0, 2] {
        w.push(|w| &mut w.committee[c], Body::Release(release.clone()));
    }
    let s = fold(&w.root, &w.records);
    let lb = &s.leaderboards[&w.benchmark];
    assert_eq!(lb.rows[0].model, w.models[1]);
    assert_eq!(lb.rows[0].model_name, "model-1");
    assert_eq!(lb.release_round, 1, "the first round");
}

/// A result as a metrics container writes it: `auc` (NaN when given `None`), a
/// nested per-class map and a note.
fn written(model: u8, dataset: u8, auc: Option<f64>) -> OpenedResult {
    let per_class = [("benign".to_string(), MetricValue::float(0.5))].into_iter().collect();
    OpenedResult {
        model: id(model),
        dataset: id(dataset),
        metrics: [
            ("auc".to_string(), MetricValue::float(auc.unwrap_or(f64::NAN))),
            ("per_class".to_string(), MetricValue::Map(per_class)),
            ("note".to_string(), MetricValue::Text("ok".into())),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn a_nan_metric_is_released_as_nan_shown_as_nan_and_ranked_last() {
    for higher_is_better in [true, false] {
        let mut b = bench(SharingPolicy::PerDataset);
        b.higher_is_better = higher_is_better;
        let results = vec![
            written(1, 11, None),
            written(1, 12, Some(0.9)),
            written(2, 11, Some(0.1)),
            written(2, 12, Some(0.2)),
            written(3, 11, Some(0.95)),
            written(3, 12, Some(0.99)),
        ];
        let r = leaderboard::build_release(id(50), &b, &anonymous(11..=12), &results, 1);
        let bytes = protocol::cbor::to_canonical(&r).unwrap();
        assert_eq!(protocol::cbor::from_canonical::<Release>(&bytes).unwrap(), r);
        let e = r.entries.iter().find(|e| e.model == id(1) && e.metrics["auc"] == Figure::NaN);
        assert!(e.is_some(), "the NaN is released as NaN: {r:?}");
        assert_eq!(r.entries[0].metrics["per_class.benign"], Figure::Millionths(500_000));
        assert!(!r.entries[0].metrics.contains_key("note"), "text is not released");

        let lb = leaderboard::compute(id(50), &b, &r, &|_| String::new(), &|_| true);
        let last = lb.rows.last().unwrap();
        assert_eq!(last.model, id(1), "NaN ranks last whichever way is better");
        assert_eq!(last.value, Figure::NaN);
        assert_eq!(last.value.to_string(), "NaN");
        assert_eq!((last.ci_low, last.ci_high), (None, None));
        assert_eq!(lb.rows[0].model, if higher_is_better { id(3) } else { id(2) });
        let nan_cell = lb.cells.iter().find(|c| c.model == id(1) && c.value == Figure::NaN);
        assert!(nan_cell.is_some());
    }
}

#[test]
fn an_aggregate_over_a_nan_is_nan() {
    let b = bench(SharingPolicy::Aggregate { min_datasets: 2 });
    let results = vec![written(1, 11, None), written(1, 12, Some(0.9))];
    let r = leaderboard::build_release(id(50), &b, &anonymous(11..=12), &results, 1);
    assert_eq!(r.entries[0].metrics["auc"], Figure::NaN);
    assert_eq!(r.entries[0].metrics["per_class.benign"], Figure::Millionths(500_000));
}

#[test]
fn the_disclosure_policy_rounds_values_keeps_its_metrics_and_leaves_out_small_datasets() {
    let mut b = bench(SharingPolicy::PerDataset);
    b.disclosure = Disclosure {
        precision: 100_000,
        min_cases: 100,
        metrics: vec!["auc".into()],
        ..Disclosure::default()
    };
    let mut datasets = anonymous(11..=13);
    datasets.get_mut(&id(12)).unwrap().details.num_cases = Some(99); // too small
    datasets.get_mut(&id(13)).unwrap().details.num_cases = None; // unknown: left out too
    datasets.insert(id(14), named("d14", false)); // 120 cases
    let mut results = table();
    for o in &mut results {
        o.metrics.insert("cases".into(), MetricValue::Int(120));
    }
    results.extend([opened(1, 14, 851_000), opened(2, 14, 749_999), opened(3, 14, 612_345)]);
    let r = leaderboard::build_release(id(50), &b, &datasets, &results, 1);
    let labels: std::collections::BTreeSet<_> =
        r.entries.iter().map(|e| e.dataset.clone().unwrap()).collect();
    assert_eq!(labels.len(), 2, "datasets 11 and 14 only: {labels:?}");
    for e in &r.entries {
        assert_eq!(e.metrics.keys().collect::<Vec<_>>(), vec!["auc"], "no count");
        let Figure::Millionths(auc) = e.metrics["auc"] else { panic!("NaN") };
        assert_eq!(auc % 100_000, 0, "rounded to 0.1");
    }
    let d14 = |m: u8| {
        r.entries
            .iter()
            .find(|e| {
                e.model == id(m)
                    && e.dataset.as_deref()
                        == Some(
                            &protocol::disclosure::dataset_label(&id(50), &datasets[&id(14)])[..],
                        )
            })
            .unwrap()
            .metrics["auc"]
    };
    assert_eq!(
        (d14(1), d14(2), d14(3)),
        (Figure::Millionths(900_000), Figure::Millionths(700_000), Figure::Millionths(600_000))
    );
}
