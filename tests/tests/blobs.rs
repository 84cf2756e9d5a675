//! Blobs travel peer to peer: real nodes on loopback fetch a blob by hash and
//! declared size from whoever holds it, several peers at once, checking every
//! chunk as it arrives. Hostile and failing peers: one serving corrupt pieces,
//! one that stalls (a raw libp2p swarm speaking the node's blob protocol), a
//! provider that goes offline, and a fetcher restarted mid-transfer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use node::blobs::{BlobRequest, BlobResponse, FetchProgress, PROTOCOL};
use node::blobstore::PIECE_BYTES;
use node::{Client, Multiaddr, Node, NodeConfig, PeerId};
use protocol::Hash32;
use protocol::testkit::Workflow;
use tests::*;

/// Deadline for a fetch in these tests (debug builds on a loaded machine).
const FETCH_TIMEOUT_MS: u64 = 120_000;
/// The fetchers' request timeout where a peer stalls (the default is 20 s).
const STALL_REQUEST_TIMEOUT_MS: u64 = 2_000;

fn content(pieces: u64, seed: u8) -> Vec<u8> {
    let len = (pieces * PIECE_BYTES - 777) as usize;
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn start_with(
    dir: &std::path::Path,
    boot: &[Multiaddr],
    tune: impl FnOnce(&mut NodeConfig),
) -> Node {
    let w = Workflow::complete();
    let mut c = config(dir, &w.root, boot);
    tune(&mut c);
    Node::start(c).await.expect("test node starts")
}

async fn read_blob(c: &Client, hash: &Hash32) -> Vec<u8> {
    let (mut f, _) = c.blob_read(hash).expect("the blob is complete");
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut v).expect("read the blob");
    v
}

async fn connected(a: &Client, b: &Node) {
    a.dial(b.addresses()[0].clone()).await.expect("node running").expect("dial");
    let peer = b.peer_id().to_string();
    eventually("the nodes to connect", CONVERGE_TIMEOUT_MS, || async {
        a.peers().await.unwrap_or_default().iter().any(|p| p.peer_id == peer)
    })
    .await;
}

async fn fetched(c: &Client, hash: Hash32, size: u64) -> FetchProgress {
    let r = tokio::time::timeout(
        Duration::from_millis(FETCH_TIMEOUT_MS),
        c.blob_fetch_wait(hash, size, true),
    )
    .await
    .expect("the fetch ends within the deadline");
    r.expect("the fetch succeeds");
    c.blob_progress(&hash).expect("progress is kept")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_travels_by_hash_from_several_peers_at_once_and_outlives_its_publisher() {
    init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let owner = start_with(dirs[0].path(), &[], |_| {}).await;
    let boot = owner.addresses();
    let h1 = start_with(dirs[1].path(), &boot, |_| {}).await;
    let h2 = start_with(dirs[2].path(), &boot, |_| {}).await;
    let data = content(24, 1);
    let info = owner.client().blob_add(std::io::Cursor::new(data.clone()), true).await.unwrap();
    assert_eq!(info.hash, Hash32::of(&data));
    assert_eq!(info.size, data.len() as u64);

    // The first hospital fetches from the owner, the second from both at once.
    let p1 = fetched(&h1.client(), info.hash, info.size).await;
    assert_eq!(p1.have, info.size);
    assert_eq!(read_blob(&h1.client(), &info.hash).await, data);
    connected(&h2.client(), &h1).await;
    fetched(&h2.client(), info.hash, info.size).await;
    let served: Vec<_> =
        h2.client().blob_overview().unwrap().peers.into_values().filter(|s| s.pieces > 0).collect();
    assert!(served.len() >= 2, "pieces came from both holders: {served:?}");
    assert_eq!(served.iter().map(|s| s.pieces).sum::<u64>(), 24);
    // Operators see it in /metrics.
    let m = h2.client().metrics().await.unwrap();
    assert_eq!((m.blobs.0, m.blobs.1), (1, info.size), "one complete blob held");
    assert_eq!(m.blob_pieces.0, 24, "24 verified pieces received");
    assert!(m.blob_fetched_bytes >= info.size);
    assert!(m.render().contains("medmesh_blob_fetches{state=\"done\"} 1"), "{}", m.render());

    // The owner goes offline; a third hospital gets the blob from the others.
    owner.shutdown().await;
    let h3 = start_with(dirs[3].path(), &h1.addresses(), |_| {}).await;
    fetched(&h3.client(), info.hash, info.size).await;
    assert_eq!(read_blob(&h3.client(), &info.hash).await, data);
    for n in [h1, h2, h3] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_corrupt_pieces_is_refused_loses_score_and_the_blob_comes_from_an_honest_peer()
 {
    init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let honest = start_with(dirs[0].path(), &[], |_| {}).await;
    // A peer whose copy rotted on disk and that serves without checking it.
    let rotten =
        start_with(dirs[1].path(), &honest.addresses(), |c| c.blob_serve_unverified = true).await;
    let data = content(16, 2);
    let info = honest.client().blob_add(std::io::Cursor::new(data.clone()), false).await.unwrap();
    rotten.client().blob_add(std::io::Cursor::new(data.clone()), false).await.unwrap();
    let file = dirs[1].path().join("blobs/data").join(info.hash.to_hex());
    let mut bytes = std::fs::read(&file).unwrap();
    for p in 0..16 {
        bytes[(p * PIECE_BYTES + 4_000) as usize] ^= 0x40;
    }
    std::fs::write(&file, bytes).unwrap();

    let hospital = start_with(dirs[2].path(), &honest.addresses(), |_| {}).await;
    connected(&hospital.client(), &rotten).await;
    let p = fetched(&hospital.client(), info.hash, info.size).await;
    assert_eq!(read_blob(&hospital.client(), &info.hash).await, data, "only verified bytes kept");
    assert!(p.corrupt_pieces >= 1, "the rotten peer was asked and refused: {p:?}");
    let scores = hospital.client().blob_overview().unwrap().peers;
    let bad = &scores[&rotten.peer_id().to_string()];
    assert!(bad.corrupt >= 1 && bad.score < 0, "the rotten peer lost score: {bad:?}");
    assert_eq!(bad.pieces, 0, "no piece of it was kept");
    let good = &scores[&honest.peer_id().to_string()];
    assert_eq!(good.pieces, 16, "every piece came from the honest peer: {good:?}");
    for n in [honest, rotten, hospital] {
        n.shutdown().await;
    }
}

type BlobBehaviour = request_response::cbor::Behaviour<BlobRequest, BlobResponse>;

/// A raw swarm that claims to hold a blob and then never answers a piece.
fn stalling_peer(
    target: Multiaddr,
    size: u64,
) -> (PeerId, Arc<Mutex<u64>>, tokio::task::JoinHandle<()>) {
    let mut swarm = raw_swarm::<BlobRequest, BlobResponse>(PROTOCOL);
    let peer = *swarm.local_peer_id();
    swarm.dial(target).expect("dial the honest node");
    let asked = Arc::new(Mutex::new(0u64));
    let seen = asked.clone();
    let task = tokio::spawn(async move {
        let mut held: Vec<ResponseChannel<BlobResponse>> = Vec::new();
        loop {
            let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { request, channel, .. },
                ..
            }) = swarm.select_next_some().await
            else {
                continue;
            };
            match request {
                BlobRequest::Have { .. } => {
                    let _ =
                        swarm.behaviour_mut().send_response(channel, BlobResponse::Have { size });
                }
                BlobRequest::Piece { .. } => {
                    *seen.lock().unwrap() += 1;
                    held.push(channel);
                }
            }
        }
    });
    (peer, asked, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stalls_costs_a_timeout_and_its_pieces_come_from_another() {
    init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let honest = start_with(dirs[0].path(), &[], |_| {}).await;
    let data = content(12, 3);
    let info = honest.client().blob_add(std::io::Cursor::new(data.clone()), false).await.unwrap();
    let hospital = start_with(dirs[1].path(), &honest.addresses(), |c| {
        c.blob_request_timeout = Duration::from_millis(STALL_REQUEST_TIMEOUT_MS)
    })
    .await;
    let (staller, asked, task) = stalling_peer(hospital.addresses()[0].clone(), info.size);
    eventually("the stalling peer to connect", CONVERGE_TIMEOUT_MS, || async {
        let s = staller.to_string();
        hospital.client().peers().await.unwrap_or_default().iter().any(|p| p.peer_id == s)
    })
    .await;
    let p = fetched(&hospital.client(), info.hash, info.size).await;
    assert_eq!(read_blob(&hospital.client(), &info.hash).await, data);
    assert!(*asked.lock().unwrap() >= 1, "the staller was asked for pieces");
    assert!(p.failed_requests >= 1, "its requests timed out: {p:?}");
    let scores = hospital.client().blob_overview().unwrap().peers;
    let s = &scores[&staller.to_string()];
    assert!(s.failed >= 1 && s.score < 0 && s.pieces == 0, "{s:?}");
    task.abort();
    honest.shutdown().await;
    hospital.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_cut_by_a_lost_provider_and_a_restart_resumes_with_the_pieces_it_had() {
    init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let pieces = 96u64;
    let data = content(pieces, 4);
    let owner = start_with(dirs[0].path(), &[], |_| {}).await;
    let info = owner.client().blob_add(std::io::Cursor::new(data.clone()), true).await.unwrap();
    let hospital = start_with(dirs[1].path(), &owner.addresses(), |_| {}).await;
    let rx = hospital.client().blob_fetch(info.hash, info.size, true);
    eventually("some pieces to arrive", FETCH_TIMEOUT_MS, || {
        let have = rx.borrow().have;
        async move { have >= 2 * PIECE_BYTES }
    })
    .await;
    // The provider vanishes mid-transfer, then the hospital's node restarts.
    owner.shutdown().await;
    hospital.shutdown().await;
    let hospital = start_with(dirs[1].path(), &[], |_| {}).await;
    let kept = {
        let i =
            hospital.client().blob_info(&info.hash).unwrap().expect("the partial blob is indexed");
        hospital.client().blob_have(&i).unwrap()
    };
    assert!(kept >= 2 * PIECE_BYTES, "received pieces survived the restart ({kept} bytes)");
    assert!(kept < info.size, "the transfer was cut before the end; make the blob larger");
    let p = hospital.client().blob_progress(&info.hash).expect("the fetch resumed at start");
    assert_eq!(p.state, "fetching");

    // The provider comes back; the resumed fetch completes with only what was missing.
    let owner = start_with(dirs[0].path(), &[], |_| {}).await;
    connected(&hospital.client(), &owner).await;
    let p = fetched(&hospital.client(), info.hash, info.size).await;
    assert_eq!(p.have, info.size);
    assert_eq!(read_blob(&hospital.client(), &info.hash).await, data);
    let scores = hospital.client().blob_overview().unwrap().peers;
    let after = scores[&owner.peer_id().to_string()].pieces;
    assert_eq!(
        after,
        pieces - kept.div_ceil(PIECE_BYTES),
        "pieces held before the restart were not fetched again"
    );
    owner.shutdown().await;
    hospital.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_adds_fetches_serves_and_collects_blobs_and_writes_need_the_token() {
    init_tracing();
    let w = Workflow::complete();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut cfg = config(dirs[0].path(), &w.root, &[]);
    cfg.control = Some("127.0.0.1:0".parse().unwrap());
    let n = Node::start(cfg).await.unwrap();
    let addr = n.control_addr().unwrap();
    let token = std::fs::read_to_string(dirs[0].path().join("control.token")).unwrap();
    let data = content(3, 5);

    let (status, _) = http(addr, "POST", "/v1/blobs", None, &data[..100]).await;
    assert_eq!(status, 401, "adding needs the token");
    let (status, body) = http(addr, "POST", "/v1/blobs?pin=false", Some(&token), &data).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let hash = Hash32::of(&data);
    assert_eq!(v["hash"], hash.to_hex());
    assert_eq!(v["size"], data.len());
    let (status, body) =
        http(addr, "GET", &format!("/v1/blobs/{}/data", hash.to_hex()), None, &[]).await;
    assert_eq!((status, body == data), (200, true));
    let (status, body) =
        http(addr, "GET", &format!("/v1/blobs/{}", hash.to_hex()), None, &[]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["complete"].as_bool(), v["have"].as_u64()),
        (Some(true), Some(data.len() as u64))
    );
    let (status, _) = http(addr, "GET", "/v1/blobs/not-a-hash", None, &[]).await;
    assert_eq!(status, 400);

    // A fetch asks for a size no record may declare: refused before any byte.
    let other = Hash32::of(b"elsewhere").to_hex();
    let (status, _) =
        http(addr, "POST", &format!("/v1/blobs/{other}/fetch"), None, b"{\"size\": 5}").await;
    assert_eq!(status, 401, "fetching needs the token");
    let huge = format!("{{\"size\": {}}}", protocol::limits::BLOB_BYTES_MAX + 1);
    let (status, _) =
        http(addr, "POST", &format!("/v1/blobs/{other}/fetch"), Some(&token), huge.as_bytes())
            .await;
    assert_eq!(status, 413);

    // Garbage collection keeps what a counting record names and what is pinned.
    let named = n.client().blob_add(std::io::Cursor::new(content(1, 6)), false).await.unwrap();
    let kept = n.client().blob_add(std::io::Cursor::new(content(1, 7)), true).await.unwrap();
    let mut owner = protocol::testkit::Author::new("model-owner", w.root.network_id());
    let mut body = protocol::testkit::container("with-archive", &["infer"]);
    if let protocol::record::Body::Container(c) = &mut body {
        c.image_archive = Some(protocol::record::BlobRef { hash: named.hash, size: named.size });
    }
    let record = owner.sign(body);
    n.client().submit(&record.bytes).await.expect("the container record is accepted");
    let (status, _) = http(addr, "POST", "/v1/blobs/gc", None, &[]).await;
    assert_eq!(status, 401, "collecting needs the token");
    let (status, body) = http(addr, "POST", "/v1/blobs/gc", Some(&token), &[]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let removed: Vec<&str> =
        v["removed"].as_array().unwrap().iter().map(|b| b["hash"].as_str().unwrap()).collect();
    assert_eq!(removed, vec![hash.to_hex().as_str()], "only the unpinned blob no record names");
    for h in [named.hash, kept.hash] {
        assert!(n.client().blob_info(&h).unwrap().is_some());
    }
    n.shutdown().await;
}

/// What a greedy peer got for its requests: pieces, and refusals by reason.
#[derive(Debug, Default)]
struct Greed {
    pieces: u64,
    refused: std::collections::BTreeMap<String, u64>,
}

/// A raw swarm that asks `target` for the pieces of a blob over and over, in a
/// cycle, [`PIECES_IN_FLIGHT_PER_PEER`] at once, without ever stopping: it wants
/// the node's whole upload.
fn greedy_peer(
    target: Multiaddr,
    hash: Hash32,
    pieces: u32,
) -> (PeerId, Arc<Mutex<Greed>>, tokio::task::JoinHandle<()>) {
    let mut swarm = raw_swarm::<BlobRequest, BlobResponse>(PROTOCOL);
    let peer = *swarm.local_peer_id();
    let server = target
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .expect("the address names its peer");
    swarm.dial(target).expect("dial the serving node");
    let got = Arc::new(Mutex::new(Greed::default()));
    let seen = got.clone();
    let task = tokio::spawn(async move {
        let mut next = 0u32;
        let mut ask = |swarm: &mut libp2p::Swarm<BlobBehaviour>| {
            let piece = next % pieces;
            next += 1;
            let hash = serde_bytes::ByteBuf::from(hash.as_bytes().to_vec());
            swarm.behaviour_mut().send_request(&server, BlobRequest::Piece { hash, piece });
        };
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    for _ in 0..node::blobs::PIECES_IN_FLIGHT_PER_PEER {
                        ask(&mut swarm);
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => {
                    {
                        let mut g = seen.lock().unwrap();
                        match response {
                            BlobResponse::Piece { .. } => g.pieces += 1,
                            BlobResponse::Refused { reason } => {
                                *g.refused.entry(reason).or_default() += 1
                            }
                            other => *g.refused.entry(format!("{other:?}")).or_default() += 1,
                        }
                    }
                    ask(&mut swarm);
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                    ask(&mut swarm);
                }
                _ => {}
            }
        }
    });
    (peer, got, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_peer_is_held_to_its_serving_budget_while_an_honest_peer_completes() {
    init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    // 16 MiB per peer per window here (1 GiB by default), so that a few seconds
    // of greed exhaust it; an honest fetch of the 12-piece blob needs 12 MiB.
    let budget = 16 * PIECE_BYTES;
    let server =
        start_with(dirs[0].path(), &[], |c| c.blob_serve_peer_bytes_per_window = budget).await;
    let data = content(12, 9);
    let info = server.client().blob_add(std::io::Cursor::new(data.clone()), true).await.unwrap();
    let (greedy, got, task) = greedy_peer(server.addresses()[0].clone(), info.hash, 12);
    // The greedy peer takes what it may of the budget: 16 pieces, then refusals.
    eventually("the greedy peer to be refused", FETCH_TIMEOUT_MS, || async {
        got.lock().unwrap().refused.contains_key("over budget")
    })
    .await;

    // An honest peer fetches the whole blob while the greedy one keeps asking.
    let honest = start_with(dirs[1].path(), &server.addresses(), |_| {}).await;
    let p = fetched(&honest.client(), info.hash, info.size).await;
    assert_eq!(read_blob(&honest.client(), &info.hash).await, data);
    assert_eq!(p.have, info.size);

    let g = std::mem::take(&mut *got.lock().unwrap());
    task.abort();
    // Within one window the greedy peer got at most its budget (a second window
    // may have begun while the honest fetch ran), and was refused far more.
    assert!(g.pieces >= 16, "it was served up to its budget: {g:?}");
    assert!(g.pieces <= 16 * 10, "its pieces stay within a few windows' budget: {g:?}");
    let over = g.refused.get("over budget").copied().unwrap_or(0);
    assert!(over > g.pieces, "it was refused more than it got: {g:?}");
    // Operators see it in /metrics, by reason.
    let m = server.client().metrics().await.unwrap();
    let (served, _busy, over_budget, _repeat) = m.blob_served;
    assert!(over_budget >= over, "{:?} vs {g:?}", m.blob_served);
    assert!(served >= g.pieces + 12, "the greedy peer's and the honest fetch's pieces: {served}");
    let text = m.render();
    assert!(text.contains("medmesh_blob_requests_served_total{outcome=\"over_budget\"}"), "{text}");
    eprintln!("greedy peer {greedy}: {g:?}; server metrics {:?}", m.blob_served);
    honest.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_fetch_beyond_the_budget_waits_for_the_next_window_without_blaming_the_server() {
    init_tracing();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    // 8 MiB per window: the 12-piece blob needs two windows from this one holder.
    let server =
        start_with(dirs[0].path(), &[], |c| c.blob_serve_peer_bytes_per_window = 8 * PIECE_BYTES)
            .await;
    let data = content(12, 11);
    let info = server.client().blob_add(std::io::Cursor::new(data.clone()), true).await.unwrap();
    let hospital = start_with(dirs[1].path(), &server.addresses(), |_| {}).await;
    let p = fetched(&hospital.client(), info.hash, info.size).await;
    assert_eq!(read_blob(&hospital.client(), &info.hash).await, data);
    assert_eq!(p.failed_requests, 0, "a spent budget is not a failure: {p:?}");
    let scores = hospital.client().blob_overview().unwrap().peers;
    let s = &scores[&server.peer_id().to_string()];
    assert!(s.score > 0 && s.failed == 0 && s.pieces == 12, "{s:?}");
    let m = server.client().metrics().await.unwrap();
    assert!(m.blob_served.2 >= 1, "the server held the fetch to its budget: {:?}", m.blob_served);
    hospital.shutdown().await;
    server.shutdown().await;
}
