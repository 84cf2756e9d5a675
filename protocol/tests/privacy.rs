//! The sharing policy holds by cryptography: every replicated byte of a result is
//! visible to every peer, and none of it reveals a metric value to anyone but the
//! committee and the data owner.

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
