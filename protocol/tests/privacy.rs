//! The sharing policy holds by cryptography: every replicated byte of a result is
//! visible to every peer, and none of it reveals a metric value to anyone but the
//! committee and the data owner.

use protocol::metric::Figure;
use std::collections::BTreeMap;

use protocol::metric::MetricValue;
use protocol::record::*;
use protocol::seal::{self, Binding, OpeningKey, SealError, SeededRng};
use protocol::testkit::{self, Workflow};
use protocol::{Record, fold};

/// The key the testkit author `label` opens results with (and publishes).
fn opening(label: &str) -> OpeningKey {
    testkit::Author::new(label, protocol::NetworkId::from_bytes([0; 32])).opening()
}

/// A result record and the metrics sealed in it.
type SealedResult = (Record, BTreeMap<String, MetricValue>);

/// The complete workflow, but with results sealed for real to the committee and
/// each dataset's owner, carrying distinctive metric values.
fn sealed_workflow() -> (Workflow, Vec<SealedResult>) {
    let mut w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all();
    let committee: Vec<_> = (0..3).map(|i| opening(&format!("committee-{i}")).public()).collect();
    let mut rng = SeededRng::new(b"privacy");
    let mut out = Vec::new();
    for h in 0..w.hospitals.len() {
        for (mi, m) in w.models.clone().into_iter().enumerate() {
            let (b, d) = (w.benchmark, w.datasets[h]);
            let metrics: BTreeMap<String, MetricValue> =
                [("auc".to_string(), MetricValue::float(0.913_579 + (h * 10 + mi) as f64 / 1e6))]
                    .into_iter()
                    .collect();
            let mut to = committee.clone();
            to.push(opening(&format!("hospital-{h}")).public());
            let sealed =
                seal::seal(&metrics, &to, Binding { benchmark: b, model: m, dataset: d }, &mut rng)
                    .unwrap();
            let Body::Result(mut r) = testkit::result(b, m, d, 0) else { unreachable!() };
            r.metrics = sealed;
            let rec = w.push(|w| &mut w.hospitals[h], Body::Result(r));
            out.push((rec, metrics));
        }
    }
    (w, out)
}

fn result_of(r: &Record) -> &ResultRecord {
    match &r.body {
        Body::Result(x) => x,
        _ => unreachable!(),
    }
}

fn binding(x: &ResultRecord) -> Binding {
    Binding { benchmark: x.benchmark, model: x.model, dataset: x.dataset }
}

#[test]
fn a_node_outside_the_committee_cannot_read_any_result() {
    let (_, results) = sealed_workflow();
    for outsider in ["model-owner-0", "hospital-9", "admin"] {
        let key = opening(outsider);
        for (r, _) in &results {
            let x = result_of(r);
            assert_eq!(seal::open(&x.metrics, &key, binding(x)), Err(SealError::NotARecipient));
        }
    }
}

#[test]
fn no_replicated_byte_carries_a_metric_value_in_the_clear() {
    let (w, results) = sealed_workflow();
    for (_, metrics) in &results {
        let v = &metrics["auc"];
        let f = v.as_f64().unwrap();
        // The value as canonical CBOR would encode it, as text, and as millionths.
        let needles = [
            protocol::cbor::to_canonical(v).unwrap(),
            v.to_string().into_bytes(),
            f.to_be_bytes().to_vec(),
            ((f * 1e6).round() as i64).to_string().into_bytes(),
        ];
        for r in &w.records {
            for n in &needles {
                assert!(
                    !r.bytes.windows(n.len()).any(|win| win == n.as_slice()),
                    "record {} shows {v}",
                    r.id.short()
                );
            }
        }
    }
}

#[test]
fn members_and_the_data_owner_read_exactly_what_was_sealed() {
    let (_, results) = sealed_workflow();
    for (i, (r, metrics)) in results.iter().enumerate() {
        let x = result_of(r);
        let owner = opening(&format!("hospital-{}", i / 2));
        assert_eq!(&seal::open(&x.metrics, &owner, binding(x)).unwrap(), metrics);
        assert_eq!(&seal::open(&x.metrics, &opening("committee-2"), binding(x)).unwrap(), metrics);
        // Another hospital cannot read it.
        let other = opening(&format!("hospital-{}", (i / 2 + 1) % 3));
        assert_eq!(seal::open(&x.metrics, &other, binding(x)), Err(SealError::NotARecipient));
    }
}

#[test]
fn before_a_release_the_leaderboard_shows_nothing_even_with_every_result_counted() {
    let (w, results) = sealed_workflow();
    let s = fold(&w.root, &w.records);
    assert_eq!(s.results.iter().filter(|r| r.counts).count(), results.len());
    assert!(s.leaderboards.is_empty());
}

// ----- the outsider's dictionary attack ------------------------------------------

use protocol::disclosure;
use protocol::testkit::counted::{self, CASES, CORRECT, PRECISION, dictionary_attack, who_fits};

/// Every public byte: each record exactly as it travels and is stored.
fn corpus(w: &Workflow) -> Vec<u8> {
    w.records.iter().flat_map(|r| r.bytes.iter().copied()).collect()
}

/// Hospital index and sealed length of every result record.
fn results_of(w: &Workflow) -> Vec<(usize, usize)> {
    w.records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Result(x) => {
                let h = w.datasets.iter().position(|d| *d == x.dataset)?;
                Some((h, x.metrics.ciphertext.0.len()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_dictionary_attack_finds_a_hospitals_count_from_an_unkeyed_results_hash() {
    // The attack is real: given what results records used to carry in the clear
    // (BLAKE3 of results.yaml), it names hospital 0's exact score.
    let w = counted::workflow(SharingPolicy::PerDataset);
    let mut leaky = corpus(&w);
    leaky.extend_from_slice(
        protocol::Hash32::of(counted::results_yaml(7, 10).as_bytes()).as_bytes(),
    );
    let got = dictionary_attack(&leaky, CASES[0], 0);
    assert_eq!(got.matched.into_iter().collect::<Vec<_>>(), vec![7]);
}

#[test]
fn with_every_public_byte_and_each_hospitals_case_count_an_outsider_recovers_no_result() {
    for sharing in [SharingPolicy::PerDataset, SharingPolicy::Aggregate { min_datasets: 2 }] {
        let w = counted::workflow(sharing.clone());
        let s = fold(&w.root, &w.records);
        assert_eq!(s.results.iter().filter(|r| r.counts).count(), 6, "{sharing:?}");
        for (stage, w) in [("before a release", w.clone()), ("after", w.members_release(&[0, 1]))] {
            if stage == "after" {
                let s = fold(&w.root, &w.records);
                assert!(s.leaderboards.contains_key(&w.benchmark), "{sharing:?}: release shows");
            }
            let all = corpus(&w);
            for (h, sealed_len) in results_of(&w) {
                let got = dictionary_attack(&all, CASES[h], sealed_len);
                assert!(
                    got.nothing(CASES[h]),
                    "{sharing:?}, {stage}: hospital {h}'s result gives away {got:?}"
                );
            }
        }
    }
}

#[test]
fn a_dataset_record_shows_no_detail_in_the_clear_and_only_the_committee_and_owner_open_it() {
    let w = counted::workflow(SharingPolicy::PerDataset);
    let all = corpus(&w);
    for needle in [&b"hospital-0 data"[..], b"samples", b"on site"] {
        assert!(!all.windows(needle.len()).any(|x| x == needle), "{needle:?} in the clear");
    }
    let s = fold(&w.root, &w.records);
    for (h, d) in w.datasets.iter().enumerate() {
        let view = &s.datasets[d];
        assert_eq!(view.dataset.public_details, None);
        let binding = seal::DetailsBinding { benchmark: w.benchmark, owner: view.owner };
        let open = |label: &str| seal::open_details(&view.dataset.sealed, &opening(label), binding);
        assert_eq!(open(&format!("hospital-{h}")).unwrap().details.num_cases, Some(120));
        assert_eq!(open("committee-2").unwrap(), testkit::details(&format!("hospital-{h}")));
        let other = format!("hospital-{}", (h + 1) % 3);
        for outsider in [other.as_str(), "model-owner-0", "admin"] {
            assert_eq!(open(outsider).err(), Some(SealError::NotARecipient), "{outsider}");
        }
    }
}

#[test]
fn after_a_per_dataset_release_no_pseudonym_can_be_tied_to_a_hospital() {
    let w = counted::workflow(SharingPolicy::PerDataset).members_release(&[0, 1]);
    let s = fold(&w.root, &w.records);
    let release = &s.releases[&w.benchmark].release;
    assert_eq!(release.entries.len(), 6, "a complete table: 2 models x 3 datasets");
    let all = corpus(&w);
    let ids: Vec<Vec<u8>> = all.windows(32).map(<[u8]>::to_vec).collect();
    for e in &release.entries {
        let label = e.dataset.as_deref().expect("per dataset");
        // Only the error rate, on the policy's grid.
        assert_eq!(e.metrics.keys().collect::<Vec<_>>(), vec!["error"]);
        let Figure::Millionths(error) = e.metrics["error"] else { panic!("a NaN error rate") };
        assert!(disclosure::is_rounded(error, PRECISION));
        // No public 32 bytes (an id, a key, a hash) keys the pseudonym.
        assert!(
            !ids.iter().any(|k| disclosure::pseudonym(k, &w.benchmark) == label),
            "{label} is derived from public bytes"
        );
        // Rounded, the value fits more than one hospital's case count.
        let fits = who_fits(error, PRECISION, &CASES);
        assert!(fits.len() >= 2, "{label} ({error}) fits only hospitals {fits:?}");
    }
    // As measured (precision 1), hospital 0's error rate would have named it.
    let Figure::Millionths(exact) =
        Figure::from_f64(counted::metrics(7, 10)["error"].as_f64().unwrap())
    else {
        unreachable!()
    };
    assert_eq!(who_fits(exact, 1, &CASES), vec![0]);
}

#[test]
fn a_release_finer_than_the_policy_or_with_a_metric_it_leaves_out_is_ignored() {
    let w = counted::workflow(SharingPolicy::PerDataset).members_release(&[0]);
    let Body::Release(honest) = w.records.last().unwrap().body.clone() else { unreachable!() };
    type Lie = fn(&mut Release);
    let cases: [(&str, Lie, &str); 2] = [
        (
            "an exact value",
            |r| {
                if let Some(Figure::Millionths(v)) = r.entries[0].metrics.get_mut("error") {
                    *v += 1;
                }
            },
            "release shows a value finer than the disclosure policy's precision",
        ),
        (
            "a count",
            |r| {
                r.entries[0].metrics.insert("cases".into(), Figure::Millionths(10_000_000));
            },
            "release shows a metric the benchmark's disclosure policy leaves out",
        ),
    ];
    for (case, lie, reason) in cases {
        let mut release = honest.clone();
        lie(&mut release);
        let mut w = w.clone();
        let sigs: Vec<_> =
            [1, 2].map(|c| w.push(|w| &mut w.committee[c], Body::Release(release.clone()))).into();
        let s = fold(&w.root, &w.records);
        assert!(s.leaderboards.is_empty(), "{case}: nothing shows");
        for sig in sigs {
            let why = s.ignored.iter().find(|i| i.id == sig.id).map(|i| i.reason.as_str());
            assert_eq!(why, Some(reason), "{case}");
        }
    }
}

// ----- differences between releases ------------------------------------------------

/// Results of `hospitals` only, under `sharing`.
fn results_of_hospitals(w: Workflow, hospitals: std::ops::Range<usize>) -> Workflow {
    let mut w = w;
    let mut rng = SeededRng::new(b"later results");
    for h in hospitals {
        for (mi, m) in w.models.clone().into_iter().enumerate() {
            let binding = Binding { benchmark: w.benchmark, model: m, dataset: w.datasets[h] };
            let body = counted::result(binding, CORRECT[h][mi], CASES[h], &w.readers(h), &mut rng);
            w.push(|w| &mut w.hospitals[h], body);
        }
    }
    w
}

fn first_two_hospitals_released(sharing: SharingPolicy) -> Workflow {
    let w = Workflow::people()
        .with_benchmark(|b| {
            b.sharing = sharing;
            b.rank_metric = "error".into();
            b.disclosure = Disclosure {
                precision: PRECISION,
                metrics: vec!["error".into()],
                ..Disclosure::default()
            };
        })
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all();
    results_of_hospitals(w, 0..2).members_release(&[0, 1])
}

/// The release members would sign if they ignored the shown one.
fn naive_release(w: &Workflow) -> Release {
    let s = fold(&w.root, &w.records);
    let w1 = w.clone();
    let opened: Vec<_> = s
        .results
        .iter()
        .filter(|r| r.counts)
        .map(|r| {
            let rec = w1.records.iter().find(|x| x.id == r.id).unwrap();
            let x = result_of(rec);
            protocol::leaderboard::OpenedResult {
                model: r.model,
                dataset: r.dataset,
                metrics: seal::open(&x.metrics, &opening("committee-0"), binding(x)).unwrap(),
            }
        })
        .collect();
    let b = &s.benchmarks[&w.benchmark].benchmark;
    let round = s.releases[&w.benchmark].release.round + 1;
    protocol::leaderboard::build_release(w.benchmark, b, &w.opened_details(&s, 0), &opened, round)
}

#[test]
fn a_single_dataset_new_to_a_release_waits_so_nobody_reads_it_off_by_difference() {
    for (sharing, reason) in [
        (
            SharingPolicy::PerDataset,
            "release adds a single dataset to the one shown before it, which would name it",
        ),
        (
            SharingPolicy::Aggregate { min_datasets: 2 },
            "release moves a model's aggregate by fewer datasets than min_datasets, which would reveal them by difference",
        ),
    ] {
        let w = first_two_hospitals_released(sharing.clone());
        let shown = fold(&w.root, &w.records).leaderboards[&w.benchmark].clone();
        assert_eq!(shown.rows[0].datasets, 2, "{sharing:?}: the first release covers two");
        // Hospital 2's results arrive alone.
        let w = results_of_hospitals(w, 2..3);
        // Members that follow the rule hold them back: the figures stay as shown.
        let honest = w.clone().members_release(&[0, 1]);
        let s = fold(&honest.root, &honest.records);
        assert_eq!(s.leaderboards[&w.benchmark].release_round, 2, "{sharing:?}");
        assert_eq!(s.leaderboards[&w.benchmark].rows, shown.rows, "{sharing:?}");
        // Members that ignore it sign a release every node refuses.
        let mut lying = w.clone();
        let release = naive_release(&lying);
        let sigs =
            [0, 1].map(|c| lying.push(|w| &mut w.committee[c], Body::Release(release.clone())));
        let s = fold(&lying.root, &lying.records);
        assert_eq!(s.leaderboards[&w.benchmark], shown, "{sharing:?}: round 1 stays shown");
        for sig in sigs {
            let why = s.ignored.iter().find(|i| i.id == sig.id).map(|i| i.reason.as_str());
            assert_eq!(why, Some(reason), "{sharing:?}");
        }
    }
}

#[test]
fn a_per_dataset_release_never_shows_a_single_dataset_alone() {
    let w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all();
    let w = results_of_hospitals(w, 0..1).members_release(&[0, 1]);
    let Body::Release(r) = &w.records.last().unwrap().body else { unreachable!() };
    assert!(r.entries.is_empty(), "one dataset alone would be named by its results");
    // A member that builds one anyway signs what every fold refuses.
    let alone = Release {
        entries: vec![ReleaseEntry {
            model: w.models[0],
            dataset: Some("site-000000000000".into()),
            datasets: 1,
            metrics: [("auc".to_string(), Figure::Millionths(500_000))].into_iter().collect(),
        }],
        ..r.clone()
    };
    assert_eq!(
        disclosure::check_difference(None, &alone, &SharingPolicy::PerDataset),
        Err("release adds a single dataset to the one shown before it, which would name it")
    );
}
