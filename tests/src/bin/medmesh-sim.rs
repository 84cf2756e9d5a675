//! Network simulation with the real node code: N nodes in one process, each a
//! full `node::Node` (redb store, gossipsub, Kademlia, catch-up sync, the event
//! loop), connected over loopback TCP through the node's own noise and yamux,
//! with every inbound link shaped by `node::netem` (latency, jitter, loss,
//! bandwidth). Nothing is mocked: what is simulated is the network only.
//!
//! It measures, and prints as a table:
//! 1. propagation: a record published at a random node until every node stored
//!    it (p50, p99, max), over `--records` records one after another;
//! 2. duplicates and bytes: every gossip copy each node received, counted
//!    before gossipsub's duplicate filter (`medmesh_gossip_copies_received_total`),
//!    minus the records it received (each verdict once): the duplicates per node
//!    per record, exactly; and the bytes every node received per record (the
//!    shaped links' counters, minus the idle traffic measured before);
//! 3. partition and heal: a third of the nodes blocked from the rest (the block
//!    list, as the multi-node tests do), `--partition-records` published on each
//!    side, then healed: time until every node holds every record, in sync
//!    intervals;
//! 4. catch-up: one node stopped, `--away-records` (a day's worth) added to
//!    every other node while it is away (imported, as a batch per node: how
//!    they spread is not what is measured here), then restarted: time until it
//!    holds them all, and its sync sessions.
//!
//! Besides: verification time per record (decode and signature check, in the
//! simulation's own thread), the nodes' mean time to verify and durably store a
//! gossip record, the process's resident memory per node, and idle traffic.
//!
//! The clock can be scaled (`--dilation K`): every protocol timer of every node
//! ([`node::NodeConfig::time_dilation`]) and every link latency, jitter and
//! retransmission timeout is K times longer and every bandwidth K times lower,
//! and every time measured is divided by K. What the CPU spends per record
//! (verification, noise, the store) then weighs K times less against the
//! network's own times, so that hundreds of nodes sharing two cores behave as if
//! each had its own. Times printed are scaled (network time), except where said.
//!
//! `cargo run --release -p tests --bin medmesh-sim -- --nodes 100 --latency-ms 50 --dilation 8`

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
/// Idle traffic is measured over this long (or a sync interval if longer)
/// before publishing, after the connections settled for `--settle-ms`.
const IDLE_WINDOW_MS: u64 = 3_000;
/// Bootstrap peers each node is given (drawn among those started before it).
const BOOTSTRAP_PEERS: usize = 3;
/// How often a network-wide condition is polled (real time).
const POLL_MS: u64 = 10;
/// Below this much available memory (MemAvailable) the simulation stops
/// starting nodes: other work shares the machine.
const MEM_AVAILABLE_MIN_BYTES: u64 = 3 << 30;
/// File descriptors the process asks for (two per loopback connection, both
/// ends being in this process, and the stores).
const FD_LIMIT_WANTED: u64 = 200_000;
/// How long connections settle after the mesh formed, before idle traffic is
/// measured (`--settle-ms`): Kademlia's queries go on connecting peers.
const SETTLE_MS: u64 = 15_000;
/// Records verified to time verification alone.
const VERIFY_SAMPLES: usize = 200;

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
    dilation: u32,
    ping_interval_ms: u64,
    settle_ms: u64,
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
            dilation: 1,
            ping_interval_ms: node::swarm::PING_INTERVAL_MS,
            settle_ms: SETTLE_MS,
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
                "--dilation" => o.dilation = v.parse().with_context(bad)?,
                "--ping-interval-ms" => o.ping_interval_ms = v.parse().with_context(bad)?,
                "--settle-ms" => o.settle_ms = v.parse().with_context(bad)?,
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
        if o.dilation == 0 {
            bail!("--dilation is a factor, at least 1");
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
    /// The clock's dilation factor.
    k: u32,
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

/// A field of /proc/meminfo or /proc/self/status, in bytes (Linux).
fn proc_kib(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

fn mem_available() -> Option<u64> {
    proc_kib("/proc/meminfo", "MemAvailable:")
}

fn resident() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:").unwrap_or(0)
}

fn resident_peak() -> u64 {
    proc_kib("/proc/self/status", "VmHWM:").unwrap_or(0)
}

/// Raise the open-file limit toward [`FD_LIMIT_WANTED`] (as far as the hard
/// limit allows, or beyond it with the privilege to); returns the limit now.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = FD_LIMIT_WANTED as libc::rlim_t;
        if lim.rlim_cur < want {
            let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max.max(want) };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                let capped = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
                libc::setrlimit(libc::RLIMIT_NOFILE, &capped);
            }
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

impl Sim {
    async fn start(o: &Opts, rng: &mut Rng) -> Result<Sim> {
        let root = Workflow::people().root;
        let k = o.dilation;
        let mut sim = Sim {
            root: root.clone(),
            nodes: Vec::new(),
            clients: Vec::new(),
            shapings: Vec::new(),
            configs: Vec::new(),
            _dirs: Vec::new(),
            authors: Vec::new(),
            signed: 0,
            k,
        };
        let bar = progress(o.nodes as u64, "starting nodes");
        for i in 0..o.nodes {
            if let Some(avail) = mem_available()
                && avail < MEM_AVAILABLE_MIN_BYTES
            {
                bail!(
                    "only {} MiB of memory available after {i} nodes; stopping (other work shares the machine)",
                    avail >> 20
                );
            }
            let dir = match &o.dir {
                Some(d) => tempfile::tempdir_in(d),
                None => tempfile::tempdir(),
            }
            .context("cannot create a node directory")?;
            let spread = o.latency_max_ms - o.latency_ms;
            let latency = o.latency_ms + if spread > 0 { rng.below(spread + 1) } else { 0 };
            let shape = LinkShape {
                latency: Duration::from_millis(latency) * k,
                jitter: Duration::from_millis(o.jitter_ms) * k,
                loss: o.loss,
                bandwidth_bytes_per_s: o.bandwidth_kbps * 1000 / 8 / k as u64,
                rto_min: Duration::from_millis(node::netem::RTO_MIN_MS) * k,
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
            c.time_dilation = k;
            c.ping_interval = Duration::from_millis(o.ping_interval_ms);
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

    /// A network time as real time.
    fn real(&self, network_ms: u64) -> Duration {
        Duration::from_millis(network_ms) * self.k
    }

    /// A real time measured, in network milliseconds.
    fn scaled(&self, real: Duration) -> f64 {
        ms(real) / self.k as f64
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

    /// Gossip copies received and records received (every verdict), and the
    /// time spent validating them, summed over the running nodes.
    async fn gossip_counts(&self) -> Result<(u64, u64, u64, f64, u64)> {
        let (mut copies, mut first, mut accepted, mut seconds, mut syncs) = (0, 0, 0, 0.0, 0);
        for (i, c) in self.clients.iter().enumerate() {
            if self.nodes[i].is_none() {
                continue;
            }
            let m = c.metrics().await?;
            copies += m.gossip_copies;
            first += m.gossip_accepted + m.gossip_ignored + m.gossip_rejected;
            accepted += m.gossip_accepted;
            seconds += m.gossip_validation_seconds;
            syncs += m.sync_completed + m.sync_failed;
        }
        Ok((copies, first, accepted, seconds, syncs))
    }

    /// Connections in all (each counted at both ends).
    async fn connections(&self) -> Result<usize> {
        let mut n = 0;
        for (i, c) in self.clients.iter().enumerate() {
            if self.nodes[i].is_some() {
                n += c.peers().await?.len();
            }
        }
        Ok(n)
    }

    /// Wait until every node has at least `want` gossip mesh peers.
    async fn wait_mesh(&self, want: usize) -> Result<Duration> {
        let t0 = Instant::now();
        let deadline = t0 + self.real(MESH_DEADLINE_MS);
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

    /// Wait until each of `nodes` holds every id; returns how long it took (real),
    /// and when each node first held them all (real, from the start).
    async fn wait_held(
        &self,
        nodes: &[usize],
        ids: &[RecordId],
        deadline: Duration,
    ) -> (Option<Duration>, Vec<Duration>) {
        let t0 = Instant::now();
        let mut when: Vec<Option<Duration>> = vec![None; nodes.len()];
        loop {
            let now = t0.elapsed();
            for (w, &i) in when.iter_mut().zip(nodes) {
                if w.is_none() && ids.iter().all(|id| self.clients[i].contains(id)) {
                    *w = Some(now);
                }
            }
            if when.iter().all(Option::is_some) {
                let each: Vec<Duration> = when.into_iter().flatten().collect();
                return (Some(t0.elapsed()), each);
            }
            if t0.elapsed() > deadline {
                return (None, when.into_iter().flatten().collect());
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
    dilation: u32,
    latency_ms: u64,
    latency_max_ms: u64,
    jitter_ms: u64,
    loss: f64,
    bandwidth_kbps: u64,
    fd_limit: u64,
    resident_bytes_per_node: u64,
    resident_peak_bytes: u64,
    mesh_formed_ms: f64,
    records: u64,
    propagation_p50_ms: f64,
    propagation_p99_ms: f64,
    propagation_max_ms: f64,
    delivery_p50_ms: f64,
    delivery_p99_ms: f64,
    late: u64,
    verify_us: f64,
    node_validation_ms: f64,
    goal_budget_ms: f64,
    record_bytes: u64,
    copies_per_node_per_record: f64,
    duplicates_per_node_per_record: f64,
    gossip_delivered_share: f64,
    bytes_per_node_per_record: f64,
    raw_bytes_per_node_per_record: f64,
    idle_bytes_per_node_per_s: f64,
    idle_sync_sessions_per_node_per_s: f64,
    sync_interval_ms: u64,
    partitioned_nodes: usize,
    heal_converged_ms: Option<f64>,
    heal_sync_intervals: Option<f64>,
    away_records: u64,
    catch_up_ms: Option<f64>,
    catch_up_sessions: Vec<String>,
}

fn main() -> Result<()> {
    let o = Opts::parse()?;
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let fd_limit = raise_fd_limit();
    // Two workers for two cores; a bounded blocking pool (verification and the
    // store run there) keeps a thread per busy node from piling up.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(64)
        .build()
        .context("cannot start the runtime")?;
    let r = rt.block_on(run(&o, fd_limit))?;
    print(&o, &r);
    Ok(())
}

async fn run(o: &Opts, fd_limit: u64) -> Result<Report> {
    let mut rng = Rng(o.seed);
    let mut r = Report {
        nodes: o.nodes,
        dilation: o.dilation,
        latency_ms: o.latency_ms,
        latency_max_ms: o.latency_max_ms,
        jitter_ms: o.jitter_ms,
        loss: o.loss,
        bandwidth_kbps: o.bandwidth_kbps,
        fd_limit,
        records: o.records,
        sync_interval_ms: o.sync_interval_ms,
        away_records: o.away_records,
        ..Default::default()
    };
    let rss0 = resident();
    let mut sim = Sim::start(o, &mut rng).await?;
    let mesh_want = 4.min(o.nodes - 1);
    eprintln!("{} nodes started ({} MiB resident)", o.nodes, resident() >> 20);
    r.mesh_formed_ms = sim.scaled(sim.wait_mesh(mesh_want).await?);
    eprintln!(
        "mesh formed in {:.0} ms ({} connection ends, {} MiB resident)",
        r.mesh_formed_ms,
        sim.connections().await?,
        resident() >> 20
    );
    r.resident_bytes_per_node = resident().saturating_sub(rss0) / o.nodes as u64;
    let all: Vec<usize> = (0..o.nodes).collect();

    // Idle traffic (pings, Kademlia, gossip heartbeats, periodic sync), to
    // subtract, once the connections made while the mesh formed have settled.
    tokio::time::sleep(sim.real(o.settle_ms)).await;
    eprintln!(
        "settled: {} connection ends, {} MiB resident",
        sim.connections().await?,
        resident() >> 20
    );
    let syncs0 = sim.gossip_counts().await?.4;
    let b0 = sim.bytes_in();
    let t0 = Instant::now();
    // A whole sync interval: nodes started together tick together.
    tokio::time::sleep(sim.real(IDLE_WINDOW_MS.max(o.sync_interval_ms))).await;
    let idle_per_s = (sim.bytes_in() - b0) as f64 / t0.elapsed().as_secs_f64();
    let idle_syncs = sim.gossip_counts().await?.4 - syncs0;
    r.idle_sync_sessions_per_node_per_s =
        idle_syncs as f64 / (o.nodes as f64 * sim.scaled(t0.elapsed()) / 1e3);

    // Verification alone, on this machine under its present load.
    let samples: Vec<Record> = (0..VERIFY_SAMPLES).map(|_| sim.sign()).collect();
    let network = sim.root.network_id();
    let tv = Instant::now();
    for rec in &samples {
        Record::verify(&rec.bytes, &network).context("a signed record verifies")?;
    }
    r.verify_us = tv.elapsed().as_secs_f64() * 1e6 / VERIFY_SAMPLES as f64;

    // 1 and 2: propagation, duplicates and bytes.
    let bar = progress(o.records, "publishing");
    let mut lat = Vec::new();
    let mut each = Vec::new();
    let (copies0, first0, accepted0, validation0, _) = sim.gossip_counts().await?;
    let b1 = sim.bytes_in();
    let t1 = Instant::now();
    let mut record_bytes = 0u64;
    for _ in 0..o.records {
        let rec = sim.sign();
        record_bytes += rec.bytes.len() as u64;
        let from = rng.below(o.nodes as u64) as usize;
        let t = Instant::now();
        sim.clients[from].submit(&rec.bytes).await?;
        let (held, when) = sim.wait_held(&all, &[rec.id], sim.real(PUBLISH_DEADLINE_MS)).await;
        if held.is_none() {
            r.late += 1;
        }
        lat.push(t.elapsed());
        each.extend(when.into_iter().enumerate().filter(|(i, _)| *i != from).map(|(_, d)| d));
        let missing = all.iter().filter(|&&i| !sim.clients[i].contains(&rec.id)).count();
        eprintln!(
            "record from node {from}: {:.0} ms, {missing} nodes without it",
            sim.scaled(t.elapsed())
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    let raw = (sim.bytes_in() - b1) as f64;
    let spent = raw - idle_per_s * t1.elapsed().as_secs_f64();
    let (copies1, first1, accepted1, validation1, _) = sim.gossip_counts().await?;
    let per = (o.nodes as f64) * o.records.max(1) as f64;
    r.copies_per_node_per_record = (copies1 - copies0) as f64 / per;
    r.duplicates_per_node_per_record =
        ((copies1 - copies0) as f64 - (first1 - first0) as f64) / per;
    r.gossip_delivered_share =
        (accepted1 - accepted0) as f64 / ((o.nodes - 1) as f64 * o.records.max(1) as f64);
    r.node_validation_ms = (validation1 - validation0) * 1e3 / ((first1 - first0).max(1) as f64);
    r.raw_bytes_per_node_per_record = raw / per;
    // Idle bytes per network second.
    r.idle_bytes_per_node_per_s = idle_per_s * o.dilation as f64 / o.nodes as f64;
    lat.sort();
    each.sort();
    r.propagation_p50_ms = sim.scaled(percentile(&lat, 0.5));
    r.propagation_p99_ms = sim.scaled(percentile(&lat, 0.99));
    r.propagation_max_ms = sim.scaled(lat.last().copied().unwrap_or_default());
    r.delivery_p50_ms = sim.scaled(percentile(&each, 0.5));
    r.delivery_p99_ms = sim.scaled(percentile(&each, 0.99));
    r.record_bytes = record_bytes / o.records.max(1);
    r.bytes_per_node_per_record = spent.max(0.0) / per;
    // The goal: 4 link latencies (the mean drawn, with half the jitter) plus
    // verification and storage at each of the 4 hops (unscaled: as measured).
    let mean_latency = (o.latency_ms + o.latency_max_ms) as f64 / 2.0 + o.jitter_ms as f64 / 2.0;
    r.goal_budget_ms = 4.0 * mean_latency + 4.0 * r.node_validation_ms;

    eprintln!(
        "propagation: p50 {:.0} ms p99 {:.0} ms ({} MiB resident)",
        r.propagation_p50_ms,
        r.propagation_p99_ms,
        resident() >> 20
    );
    // 3: a third partitioned, records on both sides, healed.
    let cut = o.nodes / 3;
    r.partitioned_nodes = cut;
    let inside: Vec<usize> = (0..cut).collect();
    let outside: Vec<usize> = (cut..o.nodes).collect();
    let peer_ids: Vec<_> = sim.nodes.iter().flatten().map(|n| n.peer_id()).collect();
    let partition_clients = sim.clients.clone();
    // Each node blocks (or unblocks) the other side, all nodes at once.
    let block = |blocked: bool| {
        let clients = partition_clients.clone();
        let peer_ids = peer_ids.clone();
        async move {
            let jobs = (0..peer_ids.len()).map(|i| {
                let client = clients[i].clone();
                let others: Vec<_> =
                    if i < cut { peer_ids[cut..].to_vec() } else { peer_ids[..cut].to_vec() };
                async move {
                    for p in others {
                        client.set_blocked(p, blocked).await?;
                    }
                    anyhow::Ok(())
                }
            });
            for r in futures_util::future::join_all(jobs).await {
                r?;
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
    // Within a side, records travel by gossip, or else by sync.
    let deadline = sim.real(PUBLISH_DEADLINE_MS + o.sync_interval_ms * 4);
    let (a, _) = sim.wait_held(&inside, &in_ids, deadline).await;
    let (b, _) = sim.wait_held(&outside, &out_ids, deadline).await;
    if a.is_none() || b.is_none() {
        bail!("records did not reach every node of their own side of the partition");
    }
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
    let heal_deadline = sim.real(o.sync_interval_ms * 10 + 60_000);
    let healed = sim.wait_held(&all, &every, heal_deadline).await.0.map(|d| d + unblocked);
    r.heal_converged_ms = healed.map(|d| sim.scaled(d));
    r.heal_sync_intervals = r.heal_converged_ms.map(|d| d / o.sync_interval_ms as f64);

    eprintln!(
        "healed: {:?} (unblocking took {:.0} ms)",
        r.heal_converged_ms,
        sim.scaled(unblocked)
    );
    // 4: one node away for a day's records, then back.
    let away = o.nodes - 1;
    if let Some(n) = sim.nodes[away].take() {
        n.shutdown().await;
    }
    let present: Vec<usize> = (0..away).collect();
    let day: Vec<Record> = (0..o.away_records).map(|_| sim.sign()).collect();
    let missed: Vec<RecordId> = day.iter().map(|r| r.id).collect();
    let bar = progress(present.len() as u64, "adding a day's records to the present nodes");
    for &i in &present {
        let bytes: Vec<Vec<u8>> = day.iter().map(|r| r.bytes.to_vec()).collect();
        sim.clients[i].import(bytes).await.context("a present node imports the day")?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "{} records added while a node was away ({} MiB resident)",
        o.away_records,
        resident() >> 20
    );
    let t = Instant::now();
    let back = Node::start(sim.configs[away].clone()).await.context("the away node restarts")?;
    sim.clients[away] = back.client();
    sim.nodes[away] = Some(back);
    let deadline = sim.real(PUBLISH_DEADLINE_MS * 4 + o.sync_interval_ms * 4);
    let caught = sim.wait_held(&[away], &missed, deadline).await.0;
    r.catch_up_ms = caught.map(|_| sim.scaled(t.elapsed()));
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
                "{} {} rounds, {} B reconciling, {} stored in {:.0} ms",
                s.method,
                s.rounds,
                s.bytes_sent + s.bytes_received,
                s.stored,
                s.duration_ms as f64 / o.dilation as f64
            )
        })
        .collect();
    r.resident_peak_bytes = resident_peak();

    let unique: HashSet<_> = sim.nodes.iter().flatten().map(|n| n.peer_id()).collect();
    debug_assert_eq!(unique.len(), o.nodes);
    for n in sim.nodes.into_iter().flatten() {
        n.shutdown().await;
    }
    Ok(r)
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
        "gossipsub: D {} (lo {}, hi {}), gossip_lazy {}, flood_publish {}, IDONTWANT from {} B; clock dilated {}x (times are network time)",
        g.mesh_n,
        g.mesh_n_low,
        g.mesh_n_high,
        g.gossip_lazy,
        g.flood_publish,
        g.idontwant_bytes,
        r.dilation
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
    println!(
        "| resident memory per node (after the mesh formed); process peak | {:.1} MiB; {:.0} MiB |",
        r.resident_bytes_per_node as f64 / (1 << 20) as f64,
        r.resident_peak_bytes as f64 / (1 << 20) as f64
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
        "| delivery to each node (every node and record) | p50 {:.0} ms, p99 {:.0} ms; {:.1} % by gossip |",
        r.delivery_p50_ms,
        r.delivery_p99_ms,
        r.gossip_delivered_share * 100.0
    );
    println!(
        "| verification per record (sim thread); verify and store per gossip record (nodes, unscaled) | {:.0} us; {:.2} ms |",
        r.verify_us, r.node_validation_ms
    );
    println!(
        "| goal: p99 <= 4 link latencies + 4 x verify and store = {:.0} ms | {} |",
        r.goal_budget_ms,
        if r.propagation_p99_ms <= r.goal_budget_ms { "met" } else { "not met" }
    );
    println!(
        "| gossip copies received per node per record, of them duplicates | {:.2}, {:.2} duplicates (goal <= D = {}: {}) |",
        r.copies_per_node_per_record,
        r.duplicates_per_node_per_record,
        g.mesh_n,
        if r.duplicates_per_node_per_record <= g.mesh_n as f64 { "met" } else { "not met" }
    );
    println!(
        "| bytes received per node per record ({} B envelope), idle traffic subtracted | {:.0} B (raw {:.0} B) |",
        r.record_bytes, r.bytes_per_node_per_record, r.raw_bytes_per_node_per_record,
    );
    println!(
        "| idle traffic received per node | {:.0} B/s, {:.3} sync sessions/s |",
        r.idle_bytes_per_node_per_s, r.idle_sync_sessions_per_node_per_s
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
