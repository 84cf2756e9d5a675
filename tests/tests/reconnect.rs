//! Reconvergence after faults, with no one's help: a node restarted while every
//! bootstrap peer is down finds the others through its address book; nodes that
//! lost the bootstrap peer redial it when it comes back; a peer that stops
//! answering (a paused container, a cut cable) is dropped after the ping timeout
//! and redialled when it answers again.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use node::{Client, Multiaddr, Node, NodeConfig, PeerId};
use protocol::NetworkRoot;
use protocol::testkit::Workflow;
use tests::*;

/// Test nodes ping every 250 ms and give up on a ping after 500 ms. (libp2p forgives
/// the first failure, and the second ping then waits on its stream's 10 s
/// negotiation timeout, so a silent peer is dropped after about 11 s.)
const PING_INTERVAL_MS: u64 = 250;
const PING_TIMEOUT_MS: u64 = 500;
/// How long a lost peer may take to be dropped.
const DROP_TIMEOUT_MS: u64 = 30_000;
/// The longest a node waits to redial a peer that is back: its address's
/// backoff at the cap, then the maintenance tick that dials it.
const REDIAL_WAIT_MAX_MS: u64 =
    node::peers::REDIAL_BACKOFF_MAX_MS + node::peers::MAINTENANCE_INTERVAL_MS;
/// Dial, handshake, and the test's polling, on a loaded machine.
const CONNECT_MARGIN_MS: u64 = 5_000;
/// How long a node may take to reconnect to a peer that is back.
const RECONNECT_TIMEOUT_MS: u64 = REDIAL_WAIT_MAX_MS + 2 * CONNECT_MARGIN_MS;

fn fast_ping(mut c: NodeConfig) -> NodeConfig {
    c.ping_interval = Duration::from_millis(PING_INTERVAL_MS);
    c.ping_timeout = Duration::from_millis(PING_TIMEOUT_MS);
    c
}

async fn is_connected(c: &Client, peer: PeerId) -> bool {
    let peer = peer.to_string();
    c.peers().await.map(|ps| ps.iter().any(|p| p.peer_id == peer)).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restarted_while_the_bootstrap_peer_is_down_rejoins_through_its_address_book() {
    init_tracing();
    let w = Workflow::complete();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let boot = start(dirs[0].path(), &w.root, &[]).await;
    let first = start(dirs[1].path(), &w.root, &boot.addresses()).await;
    // Node 2 is given node 1 as a bootstrap peer too, so it dials node 1 itself
    // (the address book keeps peers a node dialled), whichever way Kademlia
    // would have connected them.
    let mut known = boot.addresses();
    known.extend(first.addresses());
    let second = start(dirs[2].path(), &w.root, &known).await;
    let mut nodes = vec![boot, first, second];
    let (one, two) = (nodes[1].client(), nodes[2].client());
    let one_id = nodes[1].peer_id();
    eventually("node 2 to reach node 1", 30_000, || is_connected(&two, one_id)).await;
    let half = w.records.len() / 2;
    submit_all(&one, &w.records[..half]).await;
    converged(&[nodes[0].client(), one.clone(), two], half as u64).await;

    // The bootstrap peer goes down, then node 2 stops (a rolling restart).
    let boot_addrs = nodes[0].addresses();
    nodes.remove(0).shutdown().await;
    let stopped = nodes.pop().unwrap();
    let two_id = stopped.peer_id();
    stopped.shutdown().await;
    let book = std::fs::read_to_string(dirs[2].path().join(node::peers::PEERS_FILE))
        .expect("node 2 saved its address book");
    assert!(
        book.contains(&one_id.to_string()),
        "node 2's address book lists node 1, which it dialled: {book}"
    );
    submit_all(&one, &w.records[half..]).await;

    // Node 2 comes back on a new port (so node 1 cannot find it), told only of
    // the bootstrap peer, which is down: it must find node 1 in its address book.
    let mut cfg = config(dirs[2].path(), &w.root, &boot_addrs);
    cfg.root = None;
    let restarted = Node::start(cfg).await.unwrap();
    assert_eq!(restarted.peer_id(), two_id);
    let two = restarted.client();
    eventually("the restarted node to reconnect to node 1", RECONNECT_TIMEOUT_MS, || {
        is_connected(&two, one_id)
    })
    .await;
    converged(&[one, two], w.records.len() as u64).await;
    restarted.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_that_lost_the_bootstrap_peer_reconnect_when_it_restarts() {
    init_tracing();
    let w = Workflow::complete();
    let (mut nodes, dirs) = start_many(3, &w.root).await;
    let others: Vec<Client> = nodes[1..].iter().map(|n| n.client()).collect();
    let boot_id = nodes[0].peer_id();
    let boot_listen: Vec<Multiaddr> = nodes[0].client().listen_addrs().await.unwrap();
    for c in &others {
        eventually("every node to reach the bootstrap peer", 10_000, || is_connected(c, boot_id))
            .await;
    }
    let two_id = nodes[2].peer_id();
    eventually("nodes 1 and 2 to meet through Kademlia", 30_000, || {
        is_connected(&others[0], two_id)
    })
    .await;

    nodes.remove(0).shutdown().await;
    for c in &others {
        eventually("the stopped bootstrap peer to be gone", 10_000, || async {
            !is_connected(c, boot_id).await
        })
        .await;
    }
    submit_all(&others[0], &w.records).await;
    converged(&others, w.records.len() as u64).await;
    // The survivors carry on for a while (two background sync rounds), long
    // enough for Kademlia's own attempts to reach the lost peer to have ended.
    let synced = others[0].sync_status().await.unwrap().completed;
    eventually("two more sync rounds between the survivors", 20_000, || async {
        others[0].sync_status().await.unwrap().completed >= synced + 2
    })
    .await;

    // Back on the same port with the same key. Its own address book would dial
    // the others; without it, what brings them together is that they redial it.
    // (Its book may not exist: peers that only connected in are not added.)
    match std::fs::remove_file(dirs[0].path().join(node::peers::PEERS_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            panic!("cannot remove the address book: {e}")
        }
        _ => {}
    }
    let mut cfg = config(dirs[0].path(), &w.root, &[]);
    cfg.listen = boot_listen;
    let boot = Node::start(cfg).await.unwrap();
    assert_eq!(boot.peer_id(), boot_id);
    let started = Instant::now();
    for c in &others {
        eventually(
            "the others to redial the restarted bootstrap peer",
            RECONNECT_TIMEOUT_MS,
            || is_connected(c, boot_id),
        )
        .await;
    }
    // Their redials of it back off to at most REDIAL_BACKOFF_MAX_MS: both are
    // back within that and a tick (Kademlia's own re-bootstrap, every
    // KAD_BOOTSTRAP_INTERVAL_MS, would take up to twice as long).
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(REDIAL_WAIT_MAX_MS + CONNECT_MARGIN_MS),
        "reconnected after {took:?}, later than the redial backoff allows"
    );
    // The on-connect sync brings it what was written while it was down.
    converged(&[vec![boot.client()], others].concat(), w.records.len() as u64).await;
    boot.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}

/// Freeze or thaw `proc`, as `docker pause` / `unpause` do: its sockets stay
/// open and the kernel still accepts connections, but nothing answers.
fn signal(proc: &KillOnDrop, sig: &str) {
    let ok = Command::new("kill").args([sig, &proc.0.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} failed");
}

/// A `medmesh-bootstrap` process on loopback; returns it with its status once up.
async fn spawn_bootstrap(dir: &Path, root: &NetworkRoot) -> (KillOnDrop, serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    let root_file = dir.with_extension("root");
    std::fs::write(&root_file, root.to_bytes()).unwrap();
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let child = Command::new(workspace_bin("medmesh-bootstrap"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--root",
            root_file.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--control",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let proc = KillOnDrop(child);
    eventually("the bootstrap process to serve its status", 60_000, || async {
        control_status(dir).await.is_some()
    })
    .await;
    let status = control_status(dir).await.expect("the status just served");
    (proc, status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_stops_answering_is_dropped_after_the_ping_timeout_and_redialled_when_it_resumes()
 {
    init_tracing();
    let w = Workflow::complete();
    let tmp = tempfile::tempdir().unwrap();
    let boot_dir = tmp.path().join("boot");
    let (boot, status) = spawn_bootstrap(&boot_dir, &w.root).await;
    let boot_addr: Multiaddr = status["listen"][0].as_str().unwrap().parse().unwrap();
    let boot_id = node::swarm::peer_of(&boot_addr).unwrap();

    let a =
        Node::start(fast_ping(config(&tmp.path().join("a"), &w.root, &[boot_addr]))).await.unwrap();
    let client = a.client();
    eventually("the node to reach the bootstrap process", 10_000, || {
        is_connected(&client, boot_id)
    })
    .await;
    submit_all(&client, &w.records[..1]).await;
    eventually("the bootstrap process to hold the first record", 10_000, || async {
        control_status(&boot_dir).await.is_some_and(|s| s["records"] == 1)
    })
    .await;

    // Paused: the TCP connection stays open, nothing closes it; only pings tell.
    signal(&boot, "-STOP");
    let paused = Instant::now();
    eventually("the paused peer to be dropped", DROP_TIMEOUT_MS, || async {
        !is_connected(&client, boot_id).await
    })
    .await;
    // Nothing closes the connection to a stopped process: it goes only after a
    // ping went unanswered for its timeout (two in a row, in fact).
    let took = paused.elapsed();
    assert!(
        took >= Duration::from_millis(PING_INTERVAL_MS + PING_TIMEOUT_MS),
        "dropped after {took:?}, before any ping could time out"
    );
    submit_all(&client, &w.records[1..]).await;

    // Resumed: the node redials it (it is a bootstrap peer) and sync catches it up.
    signal(&boot, "-CONT");
    eventually("the node to reconnect to the resumed peer", RECONNECT_TIMEOUT_MS, || {
        is_connected(&client, boot_id)
    })
    .await;
    let total = w.records.len() as u64;
    let want = client.state_hash().to_hex();
    eventually("the resumed peer to catch up", CONVERGE_TIMEOUT_MS, || async {
        control_status(&boot_dir)
            .await
            .is_some_and(|s| s["records"] == total && s["state_hash"] == want.as_str())
    })
    .await;
    a.shutdown().await;
    drop(boot);
}
