//! Network simulation with the real node code: N nodes in one process, each a
//! full `node::Node` (redb store, gossipsub, Kademlia, catch-up sync, the event
//! loop), connected over loopback TCP through the node's own noise and yamux,
//! with every inbound link shaped by `node::netem` (latency, jitter, loss,
//! bandwidth). Nothing is mocked: what is simulated is the network only.
//!
//! It measures, and prints as a table:
//! 1. propagation: a record published at a random node until every node stored
//!    it (p50, p99, max), over `--records` records one after another;
//! 2. copies and bytes: bytes every node received per record (from the shaped
//!    links' counters, minus the idle traffic measured before), and that divided
//!    by the envelope size as "copies per node per record" (1 is a perfect
//!    broadcast; the rest is duplicates and gossip control);
//! 3. partition and heal: a third of the nodes blocked from the rest (the block
//!    list, as the multi-node tests do), `--partition-records` published on each
//!    side, then healed: time until every node holds every record, in sync
//!    intervals;
//! 4. catch-up: one node stopped, `--away-records` published while it is away,
//!    then restarted: time until it holds them all, and its sync sessions.
//!
//! Time is real (no scaled clock): what does not fit in real time on this
//! machine shows as load in the figures, so compare rows at equal `--nodes`.
//!
//! `cargo run --release -p tests --bin medmesh-sim -- --nodes 100 --latency-ms 50`

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use node::netem::{LinkShape, Shaping};
use node::{Client, Multiaddr, Node, NodeConfig};
use protocol::testkit::{Author, Workflow, result};
use protocol::{NetworkRoot, Record, RecordId};

/// How long the mesh may take to form.
const MESH_DEADLINE_MS: u64 = 120_000;
/// How long one record may take to reach every node.
const PUBLISH_DEADLINE_MS: u64 = 20_000;
/// Records one author signs (well under every per-key quota and rate).
const RECORDS_PER_AUTHOR: u64 = 32;
/// Idle traffic is measured over this long before publishing.
const IDLE_WINDOW_MS: u64 = 3_000;
/// Bootstrap peers each node is given (drawn among those started before it).
const BOOTSTRAP_PEERS: usize = 3;
/// How often a network-wide condition is polled.
const POLL_MS: u64 = 20;

struct Opts {
    nodes: usize,
    latency_ms: u64,
    latency_max_ms: u64,
    jitter_ms: u64,
    loss: f64,
    bandwidth_kbps: u64,
    records: u64,
    partition_records: u64,
    away_records: u64,
    sync_interval_ms: u64,
    seed: u64,
    dir: Option<PathBuf>,
    json: bool,
    gossip: node::swarm::GossipTuning,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let mut o = Opts {
            nodes: 30,
            latency_ms: 50,
            latency_max_ms: 0,
            jitter_ms: 5,
            loss: 0.0,
            bandwidth_kbps: 0,
            records: 50,
            partition_records: 10,
            away_records: 500,
            sync_interval_ms: node::node::SYNC_INTERVAL_MS,
            seed: 1,
            dir: None,
            json: false,
            gossip: node::swarm::GossipTuning::default(),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            if flag == "--json" {
                o.json = true;
                i += 1;
                continue;
            }
            let v = args.get(i + 1).with_context(|| format!("{flag} needs a value"))?;
            let bad = || format!("{flag} {v}: not a number");
            match flag {
                "--nodes" => o.nodes = v.parse().with_context(bad)?,
                "--latency-ms" => o.latency_ms = v.parse().with_context(bad)?,
                "--latency-max-ms" => o.latency_max_ms = v.parse().with_context(bad)?,
                "--jitter-ms" => o.jitter_ms = v.parse().with_context(bad)?,
                "--loss" => o.loss = v.parse().with_context(bad)?,
                "--bandwidth-kbps" => o.bandwidth_kbps = v.parse().with_context(bad)?,
                "--records" => o.records = v.parse().with_context(bad)?,
                "--partition-records" => o.partition_records = v.parse().with_context(bad)?,
                "--away-records" => o.away_records = v.parse().with_context(bad)?,
                "--sync-interval-ms" => o.sync_interval_ms = v.parse().with_context(bad)?,
                "--seed" => o.seed = v.parse().with_context(bad)?,
                "--dir" => o.dir = Some(PathBuf::from(v)),
                "--mesh-n" => o.gossip.mesh_n = v.parse().with_context(bad)?,
                "--mesh-n-low" => o.gossip.mesh_n_low = v.parse().with_context(bad)?,
                "--mesh-n-high" => o.gossip.mesh_n_high = v.parse().with_context(bad)?,
                "--gossip-lazy" => o.gossip.gossip_lazy = v.parse().with_context(bad)?,
                "--flood-publish" => o.gossip.flood_publish = v.parse().with_context(bad)?,
                "--idontwant-bytes" => o.gossip.idontwant_bytes = v.parse().with_context(bad)?,
                other => bail!("unknown flag {other}; see the doc comment of medmesh-sim.rs"),
            }
            i += 2;
        }
        if o.nodes < 4 {
            bail!("--nodes must be at least 4");
        }
        if !(0.0..=1.0).contains(&o.loss) {
            bail!("--loss is a probability, between 0 and 1");
        }
        o.latency_max_ms = o.latency_max_ms.max(o.latency_ms);
        Ok(o)
    }
}

/// A small deterministic generator for the simulation's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Sim {
    root: NetworkRoot,
    nodes: Vec<Option<Node>>,
    clients: Vec<Client>,
    shapings: Vec<Arc<Shaping>>,
    configs: Vec<NodeConfig>,
    _dirs: Vec<tempfile::TempDir>,
    authors: Vec<Author>,
    signed: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Sim {
    async fn start(o: &Opts, rng: &mut Rng) -> Result<Sim> {
        let root = Workflow::people().root;
        let mut sim = Sim {
            root: root.clone(),
            nodes: Vec::new(),
            clients: Vec::new(),
            shapings: Vec::new(),
            configs: Vec::new(),
            _dirs: Vec::new(),
            authors: Vec::new(),
            signed: 0,
        };
        let bar = progress(o.nodes as u64, "starting nodes");
        for i in 0..o.nodes {
            let dir = match &o.dir {
                Some(d) => tempfile::tempdir_in(d),
                None => tempfile::tempdir(),
            }
            .context("cannot create a node directory")?;
            let spread = o.latency_max_ms - o.latency_ms;
            let latency = o.latency_ms + if spread > 0 { rng.below(spread + 1) } else { 0 };
            let shape = LinkShape {
                latency: Duration::from_millis(latency),
                jitter: Duration::from_millis(o.jitter_ms),
                loss: o.loss,
                bandwidth_bytes_per_s: o.bandwidth_kbps * 1000 / 8,
            };
            let shaping = Shaping::new(shape, rng.next());
            let mut boot: Vec<Multiaddr> = Vec::new();
            for _ in 0..BOOTSTRAP_PEERS.min(i) {
                let j = rng.below(i as u64) as usize;
                if let Some(n) = &sim.nodes[j] {
                    let mut a = n.addresses()[0].clone();
                    a.push(libp2p::multiaddr::Protocol::P2p(n.peer_id()));
                    boot.push(a);
                }
            }
            let mut c = NodeConfig::new(dir.path());
            c.root = Some(root.clone());
            c.bootstrap = boot;
            c.sync_interval = Duration::from_millis(o.sync_interval_ms);
            c.shaping = Some(shaping.clone());
            c.gossip = o.gossip;
            let n = Node::start(c.clone()).await.with_context(|| format!("node {i} starts"))?;
            sim.clients.push(n.client());
            sim.nodes.push(Some(n));
            sim.shapings.push(shaping);
            sim.configs.push(c);
            sim._dirs.push(dir);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(sim)
    }

    fn sign(&mut self) -> Record {
        if self.signed.is_multiple_of(RECORDS_PER_AUTHOR) {
            let label = format!("sim-author-{}", self.authors.len());
            self.authors.push(Author::new(&label, self.root.network_id()));
        }
        let fake = RecordId::from_bytes([1; 32]);
        let k = self.signed;
        self.signed += 1;
        let a = self.authors.last_mut().expect("an author exists");
        a.sign(result(fake, fake, fake, k))
    }

    fn bytes_in(&self) -> u64 {
        self.shapings.iter().map(|s| s.bytes_in.load(Ordering::Relaxed)).sum()
    }

    /// Wait until every node has at least `want` gossip mesh peers.
    async fn wait_mesh(&self, want: usize) -> Result<Duration> {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(MESH_DEADLINE_MS);
        loop {
            let mut low = 0;
            for c in &self.clients {
                let mesh = c.peers().await?.iter().filter(|p| p.mesh).count();
                low += (mesh < want) as usize;
            }
            if low == 0 {
                return Ok(t0.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "{low} nodes still have fewer than {want} mesh peers after {MESH_DEADLINE_MS} ms"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Wait until each of `nodes` holds every id; returns how long it took.
    async fn wait_held(
        &self,
        nodes: &[usize],
        ids: &[RecordId],
        deadline: Duration,
    ) -> Option<Duration> {
        let t0 = Instant::now();
        loop {
            if nodes.iter().all(|&i| ids.iter().all(|id| self.clients[i].contains(id))) {
                return Some(t0.elapsed());
            }
            if t0.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }
}

fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} {elapsed}")
            .expect("a valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

#[derive(serde::Serialize, Default)]
struct Report {
    nodes: usize,
    latency_ms: u64,
    latency_max_ms: u64,
    jitter_ms: u64,
    loss: f64,
    bandwidth_kbps: u64,
    mesh_formed_ms: f64,
    records: u64,
    propagation_p50_ms: f64,
    propagation_p99_ms: f64,
    propagation_max_ms: f64,
    late: u64,
    record_bytes: u64,
    bytes_per_node_per_record: f64,
    raw_bytes_per_node_per_record: f64,
    idle_bytes_per_node_per_s: f64,
    copies_per_node_per_record: f64,
    sync_interval_ms: u64,
    partitioned_nodes: usize,
    heal_converged_ms: Option<f64>,
    heal_sync_intervals: Option<f64>,
    away_records: u64,
    catch_up_ms: Option<f64>,
    catch_up_sessions: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = Opts::parse()?;
    let mut rng = Rng(o.seed);
    let mut r = Report {
        nodes: o.nodes,
        latency_ms: o.latency_ms,
        latency_max_ms: o.latency_max_ms,
        jitter_ms: o.jitter_ms,
        loss: o.loss,
        bandwidth_kbps: o.bandwidth_kbps,
        records: o.records,
        sync_interval_ms: o.sync_interval_ms,
        away_records: o.away_records,
        ..Default::default()
    };
    let mut sim = Sim::start(&o, &mut rng).await?;
    let mesh_want = 4.min(o.nodes - 1);
    eprintln!("{} nodes started", o.nodes);
    r.mesh_formed_ms = ms(sim.wait_mesh(mesh_want).await?);
    eprintln!("mesh formed in {:.0} ms", r.mesh_formed_ms);
    let all: Vec<usize> = (0..o.nodes).collect();

    // Idle traffic (pings, Kademlia, gossip heartbeats), to subtract.
    let b0 = sim.bytes_in();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(IDLE_WINDOW_MS)).await;
    let idle_per_s = (sim.bytes_in() - b0) as f64 / t0.elapsed().as_secs_f64();

    // 1 and 2: propagation, copies and bytes.
    let bar = progress(o.records, "publishing");
    let mut lat = Vec::new();
    let b1 = sim.bytes_in();
    let t1 = Instant::now();
    let mut record_bytes = 0u64;
    for _ in 0..o.records {
        let rec = sim.sign();
        record_bytes += rec.bytes.len() as u64;
        let from = rng.below(o.nodes as u64) as usize;
        let t = Instant::now();
        sim.clients[from].submit(&rec.bytes).await?;
        match sim.wait_held(&all, &[rec.id], Duration::from_millis(PUBLISH_DEADLINE_MS)).await {
            Some(_) => lat.push(t.elapsed()),
            None => {
                r.late += 1;
                lat.push(t.elapsed());
            }
        }
        let missing = all.iter().filter(|&&i| !sim.clients[i].contains(&rec.id)).count();
        eprintln!("record from node {from}: {:.0} ms, {missing} nodes without it", ms(t.elapsed()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let raw = (sim.bytes_in() - b1) as f64;
    let spent = raw - idle_per_s * t1.elapsed().as_secs_f64();
    r.raw_bytes_per_node_per_record = raw / (o.nodes as f64 * o.records.max(1) as f64);
    r.idle_bytes_per_node_per_s = idle_per_s / o.nodes as f64;
    lat.sort();
    r.propagation_p50_ms = ms(percentile(&lat, 0.5));
    r.propagation_p99_ms = ms(percentile(&lat, 0.99));
    r.propagation_max_ms = ms(lat.last().copied().unwrap_or_default());
    r.record_bytes = record_bytes / o.records.max(1);
    r.bytes_per_node_per_record = spent.max(0.0) / (o.nodes as f64 * o.records.max(1) as f64);
    r.copies_per_node_per_record = r.bytes_per_node_per_record / r.record_bytes.max(1) as f64;

    eprintln!("propagation: p50 {:.0} ms p99 {:.0} ms", r.propagation_p50_ms, r.propagation_p99_ms);
    // 3: a third partitioned, records on both sides, healed.
    let cut = o.nodes / 3;
    r.partitioned_nodes = cut;
    let inside: Vec<usize> = (0..cut).collect();
    let outside: Vec<usize> = (cut..o.nodes).collect();
    let peer_ids: Vec<_> = sim.nodes.iter().flatten().map(|n| n.peer_id()).collect();
    let partition_clients = sim.clients.clone();
    let block = |blocked: bool| {
        let clients = partition_clients.clone();
        let peer_ids = peer_ids.clone();
        async move {
            for i in 0..cut {
                for j in cut..peer_ids.len() {
                    clients[i].set_blocked(peer_ids[j], blocked).await?;
                    clients[j].set_blocked(peer_ids[i], blocked).await?;
                }
            }
            anyhow::Ok(())
        }
    };
    block(true).await?;
    let mut ids = Vec::new();
    for k in 0..o.partition_records * 2 {
        let rec = sim.sign();
        let side = if k % 2 == 0 { &inside } else { &outside };
        let from = side[rng.below(side.len() as u64) as usize];
        sim.clients[from].submit(&rec.bytes).await?;
        ids.push((k % 2 == 0, rec.id));
    }
    let in_ids: Vec<RecordId> = ids.iter().filter(|p| p.0).map(|p| p.1).collect();
    let out_ids: Vec<RecordId> = ids.iter().filter(|p| !p.0).map(|p| p.1).collect();
    let deadline = Duration::from_millis(PUBLISH_DEADLINE_MS);
    sim.wait_held(&inside, &in_ids, deadline).await.context("records reach their own side")?;
    sim.wait_held(&outside, &out_ids, deadline).await.context("records reach their own side")?;
    let leaked = inside.iter().any(|&i| out_ids.iter().any(|id| sim.clients[i].contains(id)));
    if leaked {
        bail!("the partition leaked: a record crossed it");
    }
    eprintln!("partitioned; records held on each side");
    // The clock starts before the links reopen: lifting the block list is one
    // command per pair, and records may cross while the last ones are sent.
    let unblocking = Instant::now();
    block(false).await?;
    let unblocked = unblocking.elapsed();
    let every: Vec<RecordId> = ids.iter().map(|p| p.1).collect();
    let heal_deadline = Duration::from_millis(o.sync_interval_ms * 10 + 60_000);
    let healed = sim.wait_held(&all, &every, heal_deadline).await.map(|d| d + unblocked);
    r.heal_converged_ms = healed.map(ms);
    r.heal_sync_intervals = healed.map(|d| ms(d) / o.sync_interval_ms as f64);

    eprintln!("healed: {:?}", r.heal_converged_ms);
    // 4: one node away for a while, then back.
    let away = o.nodes - 1;
    if let Some(n) = sim.nodes[away].take() {
        n.shutdown().await;
    }
    let present: Vec<usize> = (0..away).collect();
    let bar = progress(o.away_records, "publishing while a node is away");
    let mut missed = Vec::new();
    for _ in 0..o.away_records {
        let rec = sim.sign();
        let from = rng.below(away as u64) as usize;
        sim.clients[from].submit(&rec.bytes).await?;
        missed.push(rec.id);
        bar.inc(1);
    }
    bar.finish_and_clear();
    sim.wait_held(&present, &missed, Duration::from_millis(PUBLISH_DEADLINE_MS * 4))
        .await
        .context("the present nodes hold what was published")?;
    eprintln!("{} records published while a node was away", o.away_records);
    let t = Instant::now();
    let back = Node::start(sim.configs[away].clone()).await.context("the away node restarts")?;
    sim.clients[away] = back.client();
    sim.nodes[away] = Some(back);
    let caught =
        sim.wait_held(&[away], &missed, Duration::from_millis(PUBLISH_DEADLINE_MS * 4)).await;
    r.catch_up_ms = caught.map(|_| ms(t.elapsed()));
    let mut status = sim.clients[away].sync_status().await?;
    for _ in 0..250 {
        if status.recent.iter().any(|s| s.stored > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        status = sim.clients[away].sync_status().await?;
    }
    r.catch_up_sessions = status
        .recent
        .iter()
        .filter(|s| s.stored > 0)
        .map(|s| {
            format!(
                "{} {} rounds, {} B reconciling, {} stored in {} ms",
                s.method,
                s.rounds,
                s.bytes_sent + s.bytes_received,
                s.stored,
                s.duration_ms
            )
        })
        .collect();

    let unique: HashSet<_> = sim.nodes.iter().flatten().map(|n| n.peer_id()).collect();
    debug_assert_eq!(unique.len(), o.nodes);
    for n in sim.nodes.into_iter().flatten() {
        n.shutdown().await;
    }
    print(&o, &r);
    Ok(())
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|x| format!("{x:.0} {unit}")).unwrap_or_else(|| "did not converge".into())
}

fn print(o: &Opts, r: &Report) {
    if o.json {
        println!("{}", serde_json::to_string_pretty(r).expect("a report serializes"));
        return;
    }
    let link = if r.latency_max_ms > r.latency_ms {
        format!("{}-{} ms", r.latency_ms, r.latency_max_ms)
    } else {
        format!("{} ms", r.latency_ms)
    };
    let g = &o.gossip;
    println!(
        "gossipsub: D {} (lo {}, hi {}), gossip_lazy {}, flood_publish {}, IDONTWANT from {} B",
        g.mesh_n, g.mesh_n_low, g.mesh_n_high, g.gossip_lazy, g.flood_publish, g.idontwant_bytes
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| network | {} nodes, one-way latency {link}, jitter {} ms, loss {}, bandwidth {} |",
        r.nodes,
        r.jitter_ms,
        r.loss,
        if r.bandwidth_kbps > 0 {
            format!("{} kbit/s", r.bandwidth_kbps)
        } else {
            "unlimited".into()
        }
    );
    println!("| mesh formed (every node >= 4 mesh peers) | {:.0} ms |", r.mesh_formed_ms);
    println!(
        "| propagation to all nodes, {} records | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms{} |",
        r.records,
        r.propagation_p50_ms,
        r.propagation_p99_ms,
        r.propagation_max_ms,
        if r.late > 0 { format!(" ({} late)", r.late) } else { String::new() }
    );
    println!(
        "| bytes received per node per record ({} B envelope), idle traffic subtracted | {:.0} B = {:.1} copies (raw {:.0} B; idle {:.0} B/s a node) |",
        r.record_bytes,
        r.bytes_per_node_per_record,
        r.copies_per_node_per_record,
        r.raw_bytes_per_node_per_record,
        r.idle_bytes_per_node_per_s
    );
    println!(
        "| heal after {} of {} nodes partitioned ({} records per side) | {} = {} sync intervals of {} ms |",
        r.partitioned_nodes,
        r.nodes,
        o.partition_records,
        opt(r.heal_converged_ms, "ms"),
        r.heal_sync_intervals.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
        r.sync_interval_ms
    );
    println!(
        "| catch-up of a node away for {} records | {} ({}) |",
        r.away_records,
        opt(r.catch_up_ms, "ms"),
        if r.catch_up_sessions.is_empty() {
            "no session stored records".into()
        } else {
            r.catch_up_sessions.join("; ")
        }
    );
}
