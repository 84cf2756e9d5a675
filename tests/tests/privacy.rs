//! Nothing leaks, on a real network: an outsider's node that just joined, and
//! another hospital's node, read everything a node offers (every record, every
//! control API endpoint and page, the refusal log, the store file on disk) and
//! run the dictionary attack over every possible results file, knowing each
//! hospital's case count, before and after a per-dataset release. They recover
//! no result, no dataset detail, and no tie between a pseudonym and a hospital;
//! the honest nodes meanwhile agree on one state and one leaderboard.

use std::net::SocketAddr;
use std::path::Path;

use protocol::disclosure;
use protocol::record::*;
use protocol::seal::{self, Binding, DetailsBinding, SealError};
use protocol::testkit::Workflow;
use protocol::testkit::counted::{self, CASES, PRECISION, dictionary_attack, who_fits};
use protocol::{Record, RecordId};
use tests::{config, converged, http, submit_all};

async fn start(dir: &Path, w: &Workflow, boot: &[node::Multiaddr]) -> node::Node {
    let mut c = config(dir, &w.root, boot);
    c.control = Some("127.0.0.1:0".parse().expect("a socket address"));
    node::Node::start(c).await.expect("node starts")
}

async fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let (status, body) = http(addr, "GET", path, None, b"").await;
    assert!(status < 500, "GET {path}: {status}");
    body
}

/// Every byte a node gives a reader: each control API read and page (and every
/// record through it, with its verdict and its signer's head), the files in its
/// data directory (the store itself); with every hex run decoded, so that hashes
/// printed in JSON are searched for as bytes too. Returns the corpus and the
/// records read.
async fn read_everything(
    addr: SocketAddr,
    dir: &Path,
    network: protocol::NetworkId,
    benchmark: RecordId,
) -> (Vec<u8>, Vec<Record>) {
    let mut corpus = Vec::new();
    let b = benchmark.to_hex();
    for path in [
        "/v1/status".to_string(),
        "/v1/state".into(),
        "/v1/state/all".into(),
        "/v1/peers".into(),
        "/v1/sync".into(),
        "/v1/refusals".into(),
        "/".into(),
        format!("/benchmarks/{b}/leaderboard"),
        format!("/benchmarks/{b}/leaderboard.json"),
        format!("/v1/benchmarks/{b}/leaderboard"),
    ] {
        corpus.extend(get(addr, &path).await);
    }
    for view in [
        "benchmarks",
        "containers",
        "datasets",
        "associations",
        "results",
        "releases",
        "leaderboards",
        "profiles",
        "ignored",
        "equivocations",
        "gaps",
        "revoked",
    ] {
        corpus.extend(get(addr, &format!("/v1/state/{view}")).await);
    }
    let mut records = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/records?limit=100&after={a}"),
            None => "/v1/records?limit=100".into(),
        };
        let page = get(addr, &path).await;
        corpus.extend(&page);
        let v: serde_json::Value = serde_json::from_slice(&page).unwrap();
        for id in v["ids"].as_array().unwrap() {
            let id = id.as_str().unwrap();
            let bytes = get(addr, &format!("/v1/records/{id}")).await;
            corpus.extend(get(addr, &format!("/v1/records/{id}/verdict")).await);
            let r = Record::verify(&bytes, &network).expect("a served record verifies");
            corpus.extend(&bytes);
            records.push(r);
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    let signers: std::collections::BTreeSet<_> = records.iter().map(|r| r.signer).collect();
    for s in &signers {
        corpus.extend(get(addr, &format!("/v1/heads/{s}")).await);
        corpus.extend(get(addr, &format!("/v1/heads/{s}/record")).await);
        // The single-record queries the CLI and the UI ask about a key.
        for route in ["keys", "profiles", "committees"] {
            corpus.extend(get(addr, &format!("/v1/{route}/{s}")).await);
        }
    }
    // ... and about a record, by id, by id prefix, by name; and the lists they page.
    for r in &records {
        let id = r.id.to_hex();
        for route in ["benchmarks", "containers", "datasets", "results", "releases"] {
            corpus.extend(get(addr, &format!("/v1/{route}/{id}")).await);
        }
        for kind in ["benchmark", "container", "dataset", "result"] {
            corpus.extend(get(addr, &format!("/v1/lookup/{kind}?q={}", &id[..8])).await);
        }
    }
    for path in [
        "/v1/network".to_string(),
        "/v1/members?limit=1000".into(),
        format!("/v1/leaderboards/{b}/cells?limit=1000"),
        "/v1/datasets?q=a&limit=1000".into(),
        "/v1/containers?q=a&limit=1000".into(),
    ] {
        corpus.extend(get(addr, &path).await);
    }
    let ids: Vec<String> = records.iter().take(100).map(|r| r.id.to_hex()).collect();
    let keys: Vec<String> = signers.iter().take(100).map(|k| k.to_string()).collect();
    corpus.extend(
        get(addr, &format!("/v1/names?ids={}&keys={}", ids.join(","), keys.join(","))).await,
    );
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            corpus.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    let decoded = hex_runs(&corpus);
    corpus.extend(decoded);
    (corpus, records)
}

/// Every run of 64 or more hex digits in `text`, decoded.
fn hex_runs(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.iter().chain([&b' ']).enumerate() {
        match (c.is_ascii_hexdigit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let run = &text[s..i - (i - s) % 2];
                if run.len() >= 64 {
                    out.extend(hex::decode(run).unwrap_or_default());
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// The attacks of a reader holding `corpus`: no result's count, no dataset
/// detail, and (after a release) no pseudonym tied to a hospital.
fn assert_nothing_leaks(who: &str, stage: &str, w: &Workflow, corpus: &[u8], records: &[Record]) {
    let mut results = 0;
    for r in records {
        match &r.body {
            Body::Result(x) => {
                let h =
                    w.datasets.iter().position(|d| *d == x.dataset).expect("a workflow dataset");
                let got = dictionary_attack(corpus, CASES[h], x.metrics.ciphertext.0.len());
                assert!(got.nothing(CASES[h]), "{who}, {stage}: hospital {h} gives away {got:?}");
                results += 1;
            }
            Body::Dataset(d) => assert_eq!(d.public_details, None, "{who}, {stage}"),
            _ => {}
        }
    }
    assert_eq!(results, 6, "{who}, {stage}: read every result");
    for needle in [&b"hospital-0 data"[..], b"hospital-1 data", b"samples"] {
        assert!(!corpus.windows(needle.len()).any(|x| x == needle), "{who}, {stage}: {needle:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_and_another_hospital_read_everything_and_learn_nothing_before_or_after_a_release()
 {
    tests::init_tracing();
    let w = counted::workflow(SharingPolicy::PerDataset);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    // The committee's node, hospital 0's, hospital 1's (an attacker), an outsider's.
    let hub = start(dirs[0].path(), &w, &[]).await;
    let boot = hub.addresses();
    let mut nodes = vec![hub];
    for d in &dirs[1..] {
        nodes.push(start(d.path(), &w, &boot).await);
    }
    let (hospital1, outsider) = (2, 3);
    submit_all(&nodes[0].client(), &w.records).await;
    let clients: Vec<_> = nodes.iter().map(|n| n.client()).collect();
    converged(&clients, w.records.len() as u64).await;
    assert!(nodes[outsider].client().state().leaderboards.is_empty());

    let released = w.clone().members_release(&[0, 1]);
    for (stage, w) in [("before a release", &w), ("after a release", &released)] {
        if stage == "after a release" {
            submit_all(&nodes[1].client(), &w.records[w.records.len() - 2..]).await;
            converged(&clients, w.records.len() as u64).await;
        }
        for (who, i) in [("the outsider", outsider), ("hospital 1", hospital1)] {
            let addr = nodes[i].control_addr().unwrap();
            let (corpus, records) =
                read_everything(addr, dirs[i].path(), w.root.network_id(), w.benchmark).await;
            assert_eq!(records.len(), w.records.len(), "{who} read every record");
            assert_nothing_leaks(who, stage, w, &corpus, &records);
        }
        // Hospital 1 holds a key: it opens its own results and details, no one else's.
        let key = w.hospitals[1].opening();
        for r in &w.records {
            match &r.body {
                Body::Result(x) => {
                    let b = Binding { benchmark: x.benchmark, model: x.model, dataset: x.dataset };
                    let mine = x.dataset == w.datasets[1];
                    assert_eq!(seal::open(&x.metrics, &key, b).is_ok(), mine);
                    if !mine {
                        assert_eq!(seal::open(&x.metrics, &key, b), Err(SealError::NotARecipient));
                    }
                }
                Body::Dataset(d) => {
                    let b = DetailsBinding { benchmark: d.benchmark, owner: r.signer };
                    let mine = r.signer == w.hospitals[1].public();
                    assert_eq!(seal::open_details(&d.sealed, &key, b).is_ok(), mine);
                }
                _ => {}
            }
        }
    }

    // The leaderboard every node shows: a complete table of rounded error rates,
    // each of which fits more than one hospital's case count.
    let path = format!("/v1/benchmarks/{}/leaderboard", released.benchmark);
    let body = get(nodes[outsider].control_addr().unwrap(), &path).await;
    for n in &nodes {
        assert_eq!(get(n.control_addr().unwrap(), &path).await, body, "one leaderboard");
    }
    let lb: protocol::fold::Leaderboard = serde_json::from_slice(&body).unwrap();
    assert_eq!(lb.cells.len(), 6);
    assert_eq!(lb.datasets.len(), 3);
    for c in &lb.cells {
        let protocol::metric::Figure::Millionths(value) = c.value else { panic!("NaN") };
        assert!(disclosure::is_rounded(value, PRECISION));
        let fits = who_fits(value, PRECISION, &CASES);
        assert!(fits.len() >= 2, "{} ({}) fits only {fits:?}", c.dataset, c.value);
        assert!(c.dataset.starts_with("site-"));
    }
    // Honest work went on: every result counts, nothing was refused.
    let s = nodes[0].client().state();
    assert_eq!(s.results.iter().filter(|r| r.counts).count(), 6);
    for n in &nodes {
        assert_eq!(n.client().refusals().refused_total, 0);
    }
    for n in nodes {
        n.shutdown().await;
    }
}
