//! Admission among real nodes on loopback (issue 12): in an admitted network, a
//! flood of fresh keys, each with a valid signed record, leaves honest nodes as
//! they were: nothing of theirs is stored, refused ids are not fetched again and
//! again, join requests stay in a bounded pool, and honest work goes on. A member
//! whose records arrive before its admission is caught up by sync once the
//! admission arrives, so arrival order still never changes the state.
//!
//! The attacker runs the node software but stores what it likes
//! (`store_unchecked`, so its sync serves it) and gossips raw bytes
//! (`publish_unchecked`).

use node::Node;
use protocol::Record;
use protocol::record::{Body, MemberRole};
use protocol::root::AdmissionMode;
use protocol::testkit::{self, Author, Workflow};
use tests::*;

/// Fresh keys in the flood, each publishing one large valid dataset record.
const FLOOD_KEYS: usize = 400;
/// Join requests from fresh keys: more than the pool keeps.
const JOIN_FLOOD: usize = 1_500;
/// An honest node's store may grow by at most this under the flood.
const STORE_GROWTH_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// A dataset record of about 57 KB signed by a fresh key.
fn big_dataset(w: &Workflow, i: usize) -> Record {
    let mut a = Author::new(&format!("flood-{i}"), w.root.network_id());
    let body = padded_dataset(w, &format!("flood-{i}"), a.public(), 13);
    a.sign(body)
}

fn store_bytes(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("store.redb")).map(|m| m.len()).unwrap_or(0)
}

fn not_admitted(n: &Node) -> u64 {
    n.client().refusals().counts.get("not_admitted").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_fresh_keys_leaves_honest_nodes_as_they_were_and_honest_work_goes_on() {
    init_tracing();
    let w = Workflow::people_in(AdmissionMode::Admitted)
        .with_benchmark(|_| {})
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results();
    let (honest, dirs) = start_many(3, &w.root).await;
    let attacker_dir = tempfile::tempdir().unwrap();
    let attacker = start(attacker_dir.path(), &w.root, &honest[0].addresses()).await;
    submit_all(&honest[0].client(), &w.records).await;
    let clients: Vec<_> = honest.iter().map(|n| n.client()).collect();
    converged(&clients, w.records.len() as u64).await;
    let before_hash = clients[0].state_hash();
    let before_bytes: Vec<u64> = dirs.iter().map(|d| store_bytes(d.path())).collect();

    // The flood: valid records of fresh keys, gossiped and served to sync.
    let flood: Vec<Record> = (0..FLOOD_KEYS).map(|i| big_dataset(&w, i)).collect();
    assert!(flood[0].bytes.len() > 50_000, "{} bytes", flood[0].bytes.len());
    attacker.client().store_unchecked(flood.clone()).unwrap();
    for r in &flood {
        let _ = attacker.client().publish_unchecked(r.bytes.to_vec()).await;
    }
    // And more join requests than any pool keeps.
    for i in 0..JOIN_FLOOD {
        let a = Author::new(&format!("joiner-{i}"), w.root.network_id());
        let r = a.sign_at(
            0,
            None,
            testkit::join_request(&format!("joiner {i}"), &[MemberRole::DataOwner]),
        );
        let _ = attacker.client().publish_unchecked(r.bytes.to_vec()).await;
    }

    // Every honest node refuses the whole flood: by gossip or by sync from the
    // attacker, or not at all when it never met the attacker's records.
    eventually("node 0 to refuse every flood record", CONVERGE_TIMEOUT_MS, || async {
        honest[0].client().admission_status().deferred_ids >= FLOOD_KEYS as u64
    })
    .await;
    // Refused ids are not fetched again and again: two more completed sync
    // sessions later the refusal count has not grown by another flood.
    let refused = not_admitted(&honest[0]);
    let done = honest[0].client().sync_status().await.unwrap().completed;
    eventually("two more sync sessions at node 0", CONVERGE_TIMEOUT_MS, || async {
        honest[0].client().sync_status().await.unwrap().completed >= done + 2
    })
    .await;
    assert!(
        not_admitted(&honest[0]) < refused + FLOOD_KEYS as u64,
        "the flood was fetched again: {} then {}",
        refused,
        not_admitted(&honest[0])
    );

    for (i, n) in honest.iter().enumerate() {
        let c = n.client();
        assert_eq!(c.len(), w.records.len() as u64, "node {i} stored nothing of the flood");
        assert_eq!(c.state_hash(), before_hash, "node {i}'s state did not change");
        let st = c.admission_status();
        assert!(st.pool_requests as usize <= node::admission::POOL_LEN_MAX, "{st:?}");
        assert!(st.pool_bytes as usize <= node::admission::POOL_BYTES_MAX, "{st:?}");
        let growth = store_bytes(dirs[i].path()).saturating_sub(before_bytes[i]);
        assert!(growth < STORE_GROWTH_MAX_BYTES, "node {i}'s store grew by {growth} bytes");
        eprintln!(
            "node {i}: store grew {growth} bytes; pool {} requests / {} bytes; {} ids deferred; {} not_admitted refusals",
            st.pool_requests,
            st.pool_bytes,
            st.deferred_ids,
            not_admitted(n)
        );
    }
    let pool = honest[0].client().join_requests();
    assert!(!pool.is_empty(), "join requests reached the pool");

    // Honest work goes on: a hospital's new profile, submitted at node 1, reaches
    // every honest node.
    let mut w = w;
    let profile = w.push(|w| &mut w.hospitals[1], w.hospitals[1].profile("Hospital One, renamed"));
    honest[1].client().submit(&profile.bytes).await.expect("an admitted key's record is stored");
    converged(&clients, w.records.len() as u64).await;
    drop(attacker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_members_records_that_arrive_before_its_admission_are_fetched_once_it_arrives() {
    init_tracing();
    let mut w = Workflow::people_in(AdmissionMode::Admitted);
    let (honest, _dirs) = start_many(2, &w.root).await;
    let relay_dir = tempfile::tempdir().unwrap();
    // A peer that holds the newcomer's records before anyone admitted it (its
    // own node, say, or one that stores everything).
    let relay = start(relay_dir.path(), &w.root, &honest[0].addresses()).await;
    submit_all(&honest[0].client(), &w.records).await;
    let clients: Vec<_> = honest.iter().map(|n| n.client()).collect();
    converged(&clients, w.records.len() as u64).await;

    let mut late = Author::new("late-hospital", w.root.network_id());
    let profile = late.sign(late.profile("Late Hospital"));
    relay.client().store_unchecked(vec![profile.clone()]).unwrap();
    // The honest nodes fetch it by sync and refuse it: not admitted yet.
    eventually("the honest nodes to refuse the early profile", CONVERGE_TIMEOUT_MS, || async {
        clients.iter().all(|c| c.refusals().refused.iter().any(|r| r.id == Some(profile.id)))
    })
    .await;
    assert!(clients.iter().all(|c| !c.contains(&profile.id)));

    // The admin admits the key at node 0; every honest node then fetches the
    // profile from the relay by sync, and all agree on the state.
    let admission =
        w.push(|w| &mut w.admin, testkit::admission(late.public(), 0, &[MemberRole::DataOwner]));
    honest[0].client().submit(&admission.bytes).await.unwrap();
    eventually("the early profile at every honest node", CONVERGE_TIMEOUT_MS, || async {
        clients.iter().all(|c| c.contains(&profile.id))
    })
    .await;
    w.records.push(profile.clone());
    converged(&clients, w.records.len() as u64).await;
    let expected = protocol::fold(&w.root, &w.records);
    assert_eq!(clients[0].state_hash(), expected.hash, "the same state as any arrival order");
    assert!(expected.profiles.contains_key(&late.public()));
}

/// A sample line of Prometheus' text format: `name{labels} value`.
fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            let name = line.split_whitespace().nth(2).expect("a metric name");
            assert!(name.starts_with("medmesh_"), "{line}");
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        if let Some((name, labels)) = series.split_once('{') {
            assert!(labels.ends_with('}'), "{line}");
            for pair in labels.trim_end_matches('}').split(',') {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        }
        out.insert(series.to_string(), value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_records_gossip_refusals_and_admission_for_operators() {
    init_tracing();
    let w = Workflow::people_in(AdmissionMode::Admitted).with_benchmark(|_| {}).approve_benchmark();
    let (nodes, _dirs) = start_many(2, &w.root).await;
    let control_dir = tempfile::tempdir().unwrap();
    let mut cfg = config(control_dir.path(), &w.root, &nodes[0].addresses());
    cfg.control = Some("127.0.0.1:0".parse().unwrap());
    let observed = Node::start(cfg).await.unwrap();
    let mut clients: Vec<_> = nodes.iter().map(|n| n.client()).collect();
    clients.push(observed.client());
    meshed(&clients).await;
    submit_all(&nodes[0].client(), &w.records).await;
    converged(&clients, w.records.len() as u64).await;
    // A record of a key nobody admitted, sent to the observed node.
    let mut stranger = Author::new("stranger", w.root.network_id());
    let refused = stranger.sign(stranger.profile("stranger"));
    assert!(observed.client().submit(&refused.bytes).await.is_err());

    let addr = observed.control_addr().expect("a control API");
    let (status, body) = http(addr, "GET", "/metrics", None, b"").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let m = parse_metrics(&text);
    let admissions = w.records.iter().filter(|r| matches!(r.body, Body::Admission(_))).count();
    assert_eq!(m["medmesh_records{kind=\"admission\"}"], admissions as f64, "{text}");
    let total: f64 =
        m.iter().filter(|(k, _)| k.starts_with("medmesh_records{")).map(|(_, v)| v).sum();
    assert_eq!(total, w.records.len() as f64);
    assert!(m["medmesh_peers"] >= 1.0);
    assert!(
        m["medmesh_gossip_received_total{verdict=\"accept\"}"]
            + m["medmesh_sync_records_total{outcome=\"stored\"}"]
            >= w.records.len() as f64,
        "every record came by gossip or sync: {text}"
    );
    // Every record gossip handed over came as a copy, counted before the
    // duplicate filter: the copies are at least the records, by verdict.
    let verdicts: f64 = ["accept", "ignore", "reject"]
        .iter()
        .map(|v| m[&format!("medmesh_gossip_received_total{{verdict=\"{v}\"}}")])
        .sum();
    assert!(m["medmesh_gossip_copies_received_total"] >= verdicts, "{text}");
    if m["medmesh_gossip_received_total{verdict=\"accept\"}"] > 0.0 {
        assert!(m["medmesh_gossip_validation_seconds_total"] > 0.0, "{text}");
    }
    assert_eq!(m["medmesh_refusals_total{reason=\"not_admitted\"}"], 1.0, "{text}");
    assert!(m["medmesh_store_file_bytes"] > 0.0 && m["medmesh_store_record_bytes"] > 0.0);
    assert!(m["medmesh_admitted_keys"] >= 10.0, "{text}");
    assert!(m.contains_key("medmesh_fold_seconds_total"));
    assert_eq!(m["medmesh_blobs{state=\"complete\"}"], 0.0, "no blob yet: {text}");
    assert!(m["medmesh_blob_quota_bytes"] > 0.0);
    assert!(m.contains_key("medmesh_blob_pieces_received_total{outcome=\"corrupt\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_network_bounds_each_key_and_the_store_with_named_refusals() {
    init_tracing();
    let w = Workflow::people();
    assert!(w.root.admission.is_open());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &w.root, &[]);
    cfg.quotas = node::admission::Quotas {
        key_records_max: 3,
        key_bytes_max: u64::MAX,
        store_bytes_max: 200_000,
    };
    let n = Node::start(cfg).await.unwrap();
    let c = n.client();
    // A fresh key (any key takes part in an open network) may store three records.
    let mut flooder = Author::new("flooder", w.root.network_id());
    let mut refused = None;
    for i in 0..5 {
        let r = flooder.sign(testkit::container(&format!("spam-{i}"), &["infer"]));
        match c.submit(&r.bytes).await {
            Ok(_) => assert!(i < 3, "record {i} was stored past the key quota"),
            Err(e) => {
                assert!(i >= 3);
                refused = Some(e);
            }
        }
    }
    let e = refused.expect("the key quota refused");
    assert_eq!(e.kind(), "key_quota", "{e}");
    assert!(e.to_string().contains("at most 3 records"), "{e}");
    // The admin is exempt from the key quota, not from the store's.
    let mut admin = w.admin.clone();
    let mut stored = 0;
    let err = loop {
        let r = admin.sign(padded_dataset(&w, &format!("admin-data-{stored}"), admin.public(), 1));
        match c.submit(&r.bytes).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100, "the store quota never refused");
    };
    assert!(stored > 3, "the admin stored {stored} records past the key quota");
    assert_eq!(err.kind(), "store_quota", "{err}");
    let counts = c.refusals().counts;
    assert_eq!((counts.get("key_quota"), counts.get("store_quota")), (Some(&2), Some(&1)));
}

/// A dataset body by `owner` padded with `pads` public statistics of 4,000 bytes.
fn padded_dataset(w: &Workflow, name: &str, owner: protocol::PublicKey, pads: usize) -> Body {
    let Body::Dataset(mut d) = testkit::dataset(
        name,
        w.benchmark,
        owner,
        w.prep,
        protocol::record::DatasetState::Operation,
        &w.readers(0),
    ) else {
        unreachable!()
    };
    let mut details = testkit::details(name).details;
    for k in 0..pads {
        details
            .statistics
            .insert(format!("padding-{k}"), protocol::metric::MetricValue::Text("x".repeat(4000)));
    }
    d.public_details = Some(details);
    Body::Dataset(d)
}
