//! Multi-node behaviour with real nodes on real loopback sockets.

use protocol::fold::Status;
use protocol::record::{BenchmarkDecision, Body, Decision};
use protocol::testkit::{Author, Workflow};
use tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_store_a_record_submitted_at_one() {
    init_tracing();
    let w = Workflow::complete();
    let (nodes, _dirs) = start_many(5, &w.root).await;
    let clients: Vec<_> = nodes.iter().map(|n| n.client()).collect();
    meshed(&clients).await;

    // One record first: gossip alone must bring it everywhere.
    let first = &w.records[0];
    let s = clients[3].submit(&first.bytes).await.unwrap();
    assert!(s.new);
    eventually("the first record at all five nodes", 10_000, || async {
        clients.iter().all(|c| c.contains(&first.id))
    })
    .await;

    submit_all(&clients[3], &w.records).await;
    converged(&clients, w.records.len() as u64).await;
    let state = clients[0].state();
    assert_eq!(state.hash, protocol::fold(&w.root, &w.records).hash);
    assert!(!state.leaderboards.is_empty(), "the complete workflow yields a leaderboard");
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_started_after_1000_records_catches_up() {
    init_tracing();
    let w = Workflow::complete();
    let (nodes, mut dirs) = start_many(2, &w.root).await;
    // The 1,000 are published at node 0 in one batch (one transaction, so the test
    // does not wait on 1,000 fsyncs); node 1 gets them through sync, the workflow
    // through gossip.
    let records = bulk_records("bulk", &w.root, 1000);
    let (stored, rejected) =
        nodes[0].client().import(records.iter().map(|r| r.bytes.to_vec()).collect()).await.unwrap();
    assert_eq!((stored, rejected), (1000, 0));
    submit_all(&nodes[1].client(), &w.records).await;
    let total = (records.len() + w.records.len()) as u64;
    converged(&[nodes[0].client(), nodes[1].client()], total).await;

    let late_dir = tempfile::tempdir().unwrap();
    let late = start(late_dir.path(), &w.root, &nodes[1].addresses()).await;
    dirs.push(late_dir);
    let clients = vec![nodes[0].client(), nodes[1].client(), late.client()];
    converged(&clients, total).await;
    let status = late.client().sync_status().await.unwrap();
    assert!(status.stored > 0, "the late node stored records through sync: {status:?}");
    late.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_heals_to_one_state_hash() {
    init_tracing();
    let w = Workflow::complete();
    let (nodes, _dirs) = start_many(3, &w.root).await;
    let clients: Vec<_> = nodes.iter().map(|n| n.client()).collect();
    let split = w.records.len() / 2;
    submit_all(&clients[0], &w.records[..5]).await;
    converged(&clients, 5).await;

    // Cut node 2 off: both sides refuse each other.
    let cut = nodes[2].peer_id();
    for c in &clients[..2] {
        c.set_blocked(cut, true).await.unwrap();
    }
    for n in &nodes[..2] {
        clients[2].set_blocked(n.peer_id(), true).await.unwrap();
    }
    eventually("node 2 to have no peers", 10_000, || async {
        clients[2].peers().await.unwrap().is_empty()
    })
    .await;

    // Writes on both sides of the cut.
    submit_all(&clients[0], &w.records[5..split]).await;
    let island = bulk_records("island", &w.root, 20);
    submit_all(&clients[2], &island).await;
    submit_all(&clients[2], &w.records[split..]).await;
    converged(&clients[..2], split as u64).await;
    assert_eq!(clients[2].len(), (5 + island.len() + w.records.len() - split) as u64);
    assert_ne!(clients[0].state_hash(), clients[2].state_hash());

    // Heal.
    for c in &clients[..2] {
        c.set_blocked(cut, false).await.unwrap();
    }
    for n in &nodes[..2] {
        clients[2].set_blocked(n.peer_id(), false).await.unwrap();
    }
    clients[2].dial(nodes[0].addresses()[0].clone()).await.unwrap().unwrap();
    let total = (w.records.len() + island.len()) as u64;
    converged(&clients, total).await;
    let mut all = w.records.clone();
    all.extend(island);
    assert_eq!(clients[1].state_hash(), protocol::fold(&w.root, &all).hash);
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_resumes_from_its_store_and_catches_up() {
    init_tracing();
    let w = Workflow::complete();
    let (mut nodes, dirs) = start_many(2, &w.root).await;
    let half = w.records.len() / 2;
    submit_all(&nodes[0].client(), &w.records[..half]).await;
    converged(&[nodes[0].client(), nodes[1].client()], half as u64).await;

    let stopped = nodes.pop().unwrap();
    let old_peer = stopped.peer_id();
    stopped.shutdown().await;
    submit_all(&nodes[0].client(), &w.records[half..]).await;

    // Restart from the same directory without a root file: the store has it.
    let mut cfg = config(dirs[1].path(), &w.root, &nodes[0].addresses());
    cfg.root = None;
    let restarted = node::Node::start(cfg).await.unwrap();
    assert_eq!(restarted.peer_id(), old_peer, "the peer key persists");
    assert!(restarted.client().len() >= half as u64, "records come back from redb before any sync");
    converged(&[nodes[0].client(), restarted.client()], w.records.len() as u64).await;
    restarted.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malicious_peers_forged_records_are_stored_by_nobody_and_its_score_drops() {
    init_tracing();
    let w = Workflow::people().with_benchmark(|_| {});
    let (nodes, _dirs) = start_many(4, &w.root).await;
    let honest: Vec<_> = nodes[..3].iter().map(|n| n.client()).collect();
    let evil = nodes[3].client();
    let evil_id = nodes[3].peer_id();
    submit_all(&honest[0], &w.records).await;
    converged(&[honest.clone(), vec![evil.clone()]].concat(), w.records.len() as u64).await;
    // Mallory talks to every honest node, so each one sees its forgeries.
    for n in &nodes[1..3] {
        evil.dial(n.addresses()[0].clone()).await.unwrap().unwrap();
    }
    eventually("the malicious node to see every honest node on the topic", 20_000, || async {
        let peers = evil.peers().await.unwrap();
        nodes[..3]
            .iter()
            .all(|n| peers.iter().any(|p| p.peer_id == n.peer_id().to_string() && p.subscribed))
    })
    .await;
    let before = honest[0].state();
    assert_eq!(before.benchmarks[&w.benchmark].status, Status::Pending);

    // Forgeries: a valid record with a broken signature, one signed for another
    // network, and garbage.
    let mut forged_sig = Author::new("mallory", w.root.network_id())
        .sign(protocol::testkit::container("evil", &["infer"]))
        .bytes
        .to_vec();
    let last = forged_sig.len() - 1;
    forged_sig[last] ^= 1;
    let other_net = Author::new("mallory", protocol::NetworkId::from_bytes([7; 32]))
        .sign(protocol::testkit::container("evil", &["infer"]));
    let garbage = vec![0xa5; 300];
    let forged_id = protocol::Record::peek_id(&forged_sig).unwrap();
    for bytes in [forged_sig.clone(), other_net.bytes.to_vec(), garbage] {
        eventually("the forgery to be sent", 10_000, || {
            let evil = evil.clone();
            let bytes = bytes.clone();
            async move { matches!(evil.publish_unchecked(bytes).await, Ok(node::Gossiped::Sent)) }
        })
        .await;
    }

    // Unauthorized: mallory, not an admin, approves the benchmark.
    let mut mallory = Author::new("mallory-2", w.root.network_id());
    let approval = mallory.sign(Body::BenchmarkDecision(BenchmarkDecision {
        benchmark: w.benchmark,
        decision: Decision::Approve,
    }));
    evil.submit(&approval.bytes).await.unwrap();

    eventually("every honest node to score the malicious peer below zero", 20_000, || async {
        for c in &honest {
            let peers = c.peers().await.unwrap();
            if !peers
                .iter()
                .any(|p| p.peer_id == evil_id.to_string() && p.score.unwrap_or(0.0) < 0.0)
            {
                return false;
            }
        }
        true
    })
    .await;

    // The unauthorized approval may be held, but it changes no approval.
    converged(&honest, w.records.len() as u64 + 1).await;
    for c in &honest {
        assert!(!c.contains(&forged_id));
        assert!(!c.contains(&other_net.id));
        let s = c.state();
        assert_eq!(s.benchmarks[&w.benchmark].status, Status::Pending);
        assert!(s.benchmarks[&w.benchmark].approvals.is_empty());
        assert!(
            s.ignored.iter().any(|i| i.id == approval.id),
            "the approval is reported as ignored"
        );
    }
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_control_api_takes_signed_records_with_the_token_and_serves_views() {
    init_tracing();
    let w = Workflow::complete();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &w.root, &[]);
    cfg.control = Some("127.0.0.1:0".parse().unwrap());
    let n = node::Node::start(cfg).await.unwrap();
    let addr = n.control_addr().unwrap();
    let token = std::fs::read_to_string(dir.path().join("control.token")).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("control.addr")).unwrap(), addr.to_string());

    let r = &w.records[0];
    let (status, _) = http(addr, "POST", "/v1/records", None, &r.bytes).await;
    assert_eq!(status, 401);
    let (status, _) = http(addr, "POST", "/v1/records", Some("wrong"), &r.bytes).await;
    assert_eq!(status, 401);
    let (status, body) = http(addr, "POST", "/v1/records", Some(&token), &r.bytes).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], r.id.to_hex());
    assert_eq!(v["new"], true);

    let mut bad = r.bytes.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let (status, body) = http(addr, "POST", "/v1/records", Some(&token), &bad).await;
    assert_eq!(status, 422);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "bad_signature");

    for rec in &w.records[1..] {
        let (status, _) = http(addr, "POST", "/v1/records", Some(&token), &rec.bytes).await;
        assert_eq!(status, 200);
    }
    let (status, body) = http(addr, "GET", &format!("/v1/records/{}", r.id), None, &[]).await;
    assert_eq!((status, body.as_slice()), (200, &*r.bytes));
    let (status, body) = http(addr, "GET", "/v1/records?limit=5", None, &[]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 5);

    let (status, body) = http(addr, "GET", "/v1/state", None, &[]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["hash"], protocol::fold(&w.root, &w.records).hash.to_hex());
    assert_eq!(v["counts"]["benchmarks"], 1);
    for view in [
        "benchmarks",
        "containers",
        "datasets",
        "associations",
        "results",
        "releases",
        "leaderboards",
    ] {
        let (status, _) = http(addr, "GET", &format!("/v1/state/{view}"), None, &[]).await;
        assert_eq!(status, 200, "{view}");
    }
    let (status, _) = http(addr, "GET", "/v1/state/nope", None, &[]).await;
    assert_eq!(status, 404);

    let admin = w.admin.public();
    let (status, body) = http(addr, "GET", &format!("/v1/heads/{admin}"), None, &[]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["seq"], w.admin.next_seq - 1);
    assert_eq!(v["id"], w.admin.prev.unwrap().to_hex());
    let stranger = Author::new("stranger", w.root.network_id()).public();
    let (status, _) = http(addr, "GET", &format!("/v1/heads/{stranger}"), None, &[]).await;
    assert_eq!(status, 404);

    for path in ["/v1/peers", "/v1/sync", "/v1/status"] {
        let (status, _) = http(addr, "GET", path, None, &[]).await;
        assert_eq!(status, 200, "{path}");
    }
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_data_dir_is_refused() {
    let w = Workflow::complete();
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path(), &w.root, &[]).await;
    let err = node::Node::start(config(dir.path(), &w.root, &[]))
        .await
        .err()
        .expect("the directory is locked");
    assert!(matches!(err, node::StartError::Store(node::StoreError::Locked(_))), "{err}");
    assert!(err.to_string().contains("in use by another node"));
    n.shutdown().await;

    let fresh = tempfile::tempdir().unwrap();
    let err = node::Node::start(node::NodeConfig::new(fresh.path())).await.err().expect("no root");
    assert!(matches!(err, node::StartError::NoRoot), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_that_know_each_other_keep_working_without_the_bootstrap_peer() {
    init_tracing();
    let w = Workflow::complete();
    let (mut nodes, _dirs) = start_many(3, &w.root).await;
    // Nodes 1 and 2 only know the bootstrap peer (node 0); Kademlia introduces them.
    let (a, b) = (nodes[1].client(), nodes[2].client());
    let b_id = nodes[2].peer_id().to_string();
    eventually("nodes 1 and 2 to find each other through Kademlia", 30_000, || async {
        a.peers().await.unwrap().iter().any(|p| p.peer_id == b_id && p.subscribed)
    })
    .await;
    let boot = nodes.remove(0);
    boot.shutdown().await;
    eventually("the bootstrap peer to be gone", 10_000, || async {
        a.peers().await.unwrap().len() == 1
    })
    .await;

    submit_all(&a, &w.records).await;
    converged(&[a.clone(), b.clone()], w.records.len() as u64).await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_held_back_by_the_rate_limit_arrive_by_sync_within_seconds() {
    init_tracing();
    let w = Workflow::complete();
    let mut dirs = Vec::new();
    let mut nodes: Vec<node::Node> = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let boot = nodes.first().map(|n| n.addresses()).unwrap_or_default();
        let mut c = config(dir.path(), &w.root, &boot);
        // No periodic round will come during the test: only the held records can
        // start the sync that fetches them.
        c.sync_interval = std::time::Duration::from_secs(3600);
        nodes.push(node::Node::start(c).await.unwrap());
        dirs.push(dir);
    }
    let clients: Vec<_> = nodes.iter().map(|n| n.client()).collect();
    meshed(&clients).await;

    // One signer publishes well beyond its gossip burst.
    let burst = node::ratelimit::GOSSIP_SIGNER_BURST_RECORDS as usize;
    let records = bulk_records("busy-signer", &w.root, burst + 200);
    submit_all(&clients[0], &records).await;
    eventually("the receiver to hold some records back", 10_000, || async {
        clients[1].refusals().held_total > 0
    })
    .await;
    let n = records.len() as u64;
    eventually("the held records to arrive by sync", 15_000, || async { clients[1].len() == n })
        .await;
    assert_eq!(clients[1].state_hash(), clients[0].state_hash());
    for n in nodes {
        n.shutdown().await;
    }
}
