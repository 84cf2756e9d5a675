//! Node benchmarks, printed in one run (build with `--release`):
//!
//! 1. publish -> stored on all of N nodes (N = 5, 10, 20) on loopback: p50, p99;
//! 2. catch-up of a fresh node from a peer holding 100k records, in records per
//!    second, next to the raw batch-verify rate measured in the same run;
//! 3. reconciliation of 1M vs 1M ids with 100 differences on each side: round
//!    trips and bytes.
//!
//! `cargo run --release -p node --bin medmesh-node-bench -- [--nodes 5,10,20]
//! [--publishes 200] [--records 100000] [--ids 1000000] [--diff 100]`

use std::time::{Duration, Instant};

use node::sync::{IdSnapshot, reconcile_local};
use node::{Node, NodeConfig};
use protocol::testkit::{Author, Workflow, result};
use protocol::{Hash32, NetworkRoot, Record, RecordId, Unverified, verify_batch};

/// Deadline for one record to reach every node.
const PUBLISH_DEADLINE_MS: u64 = 30_000;
/// Deadline for the mesh to form before measuring.
const MESH_DEADLINE_MS: u64 = 30_000;
/// Deadline for the fresh node's catch-up.
const CATCH_UP_DEADLINE_MS: u64 = 600_000;
/// Records per import transaction when filling the serving peer.
const IMPORT_CHUNK_RECORDS: usize = 10_000;

struct Opts {
    nodes: Vec<usize>,
    publishes: usize,
    records: usize,
    ids: usize,
    diff: usize,
}

fn parse() -> Opts {
    let mut o = Opts {
        nodes: vec![5, 10, 20],
        publishes: 200,
        records: 100_000,
        ids: 1_000_000,
        diff: 100,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--nodes" => o.nodes = v.split(',').filter_map(|x| x.parse().ok()).collect(),
            "--publishes" => o.publishes = v.parse().unwrap_or(o.publishes),
            "--records" => o.records = v.parse().unwrap_or(o.records),
            "--ids" => o.ids = v.parse().unwrap_or(o.ids),
            "--diff" => o.diff = v.parse().unwrap_or(o.diff),
            other => eprintln!("ignoring unknown flag {other}"),
        }
        i += 2;
    }
    o
}

fn main() -> anyhow_free::Result {
    let o = parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        println!(
            "medmesh node bench ({} cores; stores in {})",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            std::env::var("MEDMESH_BENCH_DIR")
                .unwrap_or_else(|_| std::env::temp_dir().display().to_string())
        );
        let root = Workflow::people().root;
        for &n in &o.nodes {
            publish_latency(&root, n, o.publishes).await?;
        }
        catch_up(&root, o.records).await?;
        reconciliation(o.ids, o.diff, o.diff);
        reconciliation(o.ids, o.diff / 2, o.diff - o.diff / 2);
        reconciliation(o.ids, 0, o.diff);
        Ok(())
    })
}

/// Tiny error plumbing so the bench needs no extra crates.
mod anyhow_free {
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}

/// Temp dirs under `MEDMESH_BENCH_DIR` when set (e.g. /dev/shm, to take the
/// shared disk's fsync queue out of a one-machine, many-node run).
fn tempdir() -> std::io::Result<tempfile::TempDir> {
    match std::env::var_os("MEDMESH_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
}

fn config(
    dir: &std::path::Path,
    root: &NetworkRoot,
    bootstrap: Vec<node::Multiaddr>,
) -> NodeConfig {
    let mut c = NodeConfig::new(dir);
    c.root = Some(root.clone());
    c.bootstrap = bootstrap;
    c
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn publish_latency(root: &NetworkRoot, n: usize, publishes: usize) -> anyhow_free::Result {
    let mut dirs = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for _ in 0..n {
        let dir = tempdir()?;
        let boot = nodes.first().map(|x| x.addresses()).unwrap_or_default();
        nodes.push(Node::start(config(dir.path(), root, boot)).await?);
        dirs.push(dir);
    }
    let clients: Vec<_> = nodes.iter().map(|x| x.client()).collect();
    let want_mesh = (n - 1).min(4);
    let deadline = Instant::now() + Duration::from_millis(MESH_DEADLINE_MS);
    loop {
        let mut ok = true;
        for c in &clients {
            let mesh = c.peers().await?.iter().filter(|p| p.mesh).count();
            ok &= mesh >= want_mesh;
        }
        if ok || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every node reports when it stores a record.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, RecordId, Instant)>(4096);
    for (i, c) in clients.iter().enumerate() {
        let mut events = c.stored_events();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(id) = events.recv().await {
                if tx.send((i, id, Instant::now())).await.is_err() {
                    break;
                }
            }
        });
    }
    let mut author = Author::new(&format!("bench-publisher-{n}"), root.network_id());
    let fake = RecordId::from_bytes([1; 32]);
    let mut latencies = Vec::with_capacity(publishes);
    let mut late = 0;
    for k in 0..publishes {
        let r = author.sign(result(fake, fake, fake, k as u64));
        let t0 = Instant::now();
        clients[k % n].submit(&r.bytes).await?;
        let mut seen = vec![false; n];
        let mut last = t0;
        let end = t0 + Duration::from_millis(PUBLISH_DEADLINE_MS);
        while seen.iter().any(|s| !s) {
            match tokio::time::timeout_at(end.into(), rx.recv()).await {
                Ok(Some((i, id, at))) if id == r.id => {
                    seen[i] = true;
                    last = last.max(at);
                }
                Ok(Some(_)) => {}
                _ => {
                    late += 1;
                    last = Instant::now();
                    break;
                }
            }
        }
        latencies.push(last - t0);
    }
    latencies.sort();
    println!(
        "publish -> stored on all {n:>2} nodes: p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ({publishes} records{})",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        if late > 0 {
            format!(", {late} not everywhere within {PUBLISH_DEADLINE_MS} ms")
        } else {
            String::new()
        }
    );
    for x in nodes {
        x.shutdown().await;
    }
    Ok(())
}

fn make_records(root: &NetworkRoot, count: usize) -> Vec<Record> {
    let net = root.network_id();
    let authors = 10;
    let fake = RecordId::from_bytes([2; 32]);
    let mut out = Vec::with_capacity(count);
    let mut signers: Vec<Author> =
        (0..authors).map(|i| Author::new(&format!("bench-site-{i}"), net)).collect();
    for k in 0..count {
        out.push(signers[k % authors].sign(result(fake, fake, fake, k as u64)));
    }
    out
}

async fn catch_up(root: &NetworkRoot, count: usize) -> anyhow_free::Result {
    let t = Instant::now();
    let records = make_records(root, count);
    let bytes: Vec<Vec<u8>> = records.iter().map(|r| r.bytes.to_vec()).collect();
    let avg = bytes.iter().map(|b| b.len()).sum::<usize>() / bytes.len().max(1);
    println!(
        "catch-up: signed {count} records ({avg} B average) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Raw verify rate: strict decode + batch verify, one thread, same records.
    let net = root.network_id();
    let t = Instant::now();
    let mut ok = 0usize;
    for chunk in bytes.chunks(1024) {
        let items: Vec<Unverified> =
            chunk.iter().filter_map(|b| Unverified::decode(b, &net).ok()).collect();
        ok += verify_batch(items).into_iter().filter(|r| r.is_ok()).count();
    }
    let verify_rate = ok as f64 / t.elapsed().as_secs_f64();
    assert_eq!(ok, count, "every bench record verifies");

    if std::env::var_os("MEDMESH_BENCH_PARTS").is_some() {
        let d = tempdir()?;
        let store = node::store::Store::open(&d.path().join("s.redb"))?;
        let t = Instant::now();
        for chunk in records.chunks(IMPORT_CHUNK_RECORDS) {
            store.put(chunk)?;
        }
        println!("  parts: redb put {:.0} records/s", count as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut ledger = protocol::Ledger::new(root.clone());
        for r in &records {
            ledger.insert(r);
        }
        println!(
            "  parts: ledger insert {:.0} records/s",
            count as f64 / t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let mut n = 0;
        for b in &bytes {
            n += Unverified::decode(b, &net).is_ok() as usize;
        }
        println!("  parts: decode {:.0} records/s ({n})", count as f64 / t.elapsed().as_secs_f64());
    }
    let serving_dir = tempdir()?;
    let serving = Node::start(config(serving_dir.path(), root, Vec::new())).await?;
    let t = Instant::now();
    for chunk in bytes.chunks(IMPORT_CHUNK_RECORDS) {
        serving.client().import(chunk.to_vec()).await?;
    }
    println!(
        "  import into the serving peer (verify + store, no network): {:.0} records/s",
        count as f64 / t.elapsed().as_secs_f64()
    );
    assert_eq!(serving.client().len(), count as u64);

    let fresh_dir = tempdir()?;
    let t = Instant::now();
    let fresh = Node::start(config(fresh_dir.path(), root, serving.addresses())).await?;
    let c = fresh.client();
    let end = Instant::now() + Duration::from_millis(CATCH_UP_DEADLINE_MS);
    while c.len() < count as u64 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let rate = c.len() as f64 / secs;
    println!(
        "catch-up of a fresh node from a peer holding {count} records: {:.0} records/s ({:.2} s, {} records); raw batch verify {:.0} records/s; ratio {:.2}",
        rate,
        secs,
        c.len(),
        verify_rate,
        rate / verify_rate
    );
    if let Some(s) = c.sync_status().await?.recent.iter().find(|s| s.stored > 0) {
        println!(
            "  session: {} rounds, {} B sent, {} B received, {} fetched, {} stored",
            s.rounds, s.bytes_sent, s.bytes_received, s.fetched, s.stored
        );
    }
    fresh.shutdown().await;
    serving.shutdown().await;
    Ok(())
}

fn id(label: u64, i: u64) -> RecordId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&label.to_le_bytes());
    b[8..].copy_from_slice(&i.to_le_bytes());
    RecordId::from_bytes(*Hash32::of(&b).as_bytes())
}

fn reconciliation(total: usize, ours_only: usize, theirs_only: usize) {
    let common = total - ours_only.max(theirs_only);
    let t = Instant::now();
    let shared: Vec<RecordId> = (0..common as u64).map(|i| id(0, i)).collect();
    let ours =
        IdSnapshot::from_ids(shared.iter().copied().chain((0..ours_only as u64).map(|i| id(1, i))));
    let theirs =
        IdSnapshot::from_ids(shared.into_iter().chain((0..theirs_only as u64).map(|i| id(2, i))));
    let build = t.elapsed();
    let t = Instant::now();
    match reconcile_local(ours, &theirs) {
        Ok((need, have, rounds, bytes)) => println!(
            "reconciliation {} vs {} ids, {ours_only} only ours + {theirs_only} only theirs: {rounds} round trips, {bytes} bytes ({:.1} KB) both ways, need {} have {}, {:.0} ms (sets built in {:.0} ms)",
            common + ours_only,
            common + theirs_only,
            bytes as f64 / 1000.0,
            need.len(),
            have,
            t.elapsed().as_secs_f64() * 1e3,
            build.as_secs_f64() * 1e3
        ),
        Err(e) => println!("reconciliation failed: {e}"),
    }
}
