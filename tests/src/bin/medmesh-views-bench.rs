//! `medmesh-views-bench`: the control API's views on a large store, and the
//! node's resident memory, against today's whole-state view in the same run.
//!
//! ```text
//! cargo run --release -p tests --bin medmesh-views-bench                    # 100k results, then 1M records
//! cargo run --release -p tests --bin medmesh-views-bench -- --scale 100k    # one scale
//! cargo run -p tests --bin medmesh-views-bench -- --smoke                   # CI: a small store
//! ```
//!
//! A synthetic federation (10 benchmarks with an aggregate sharing policy, 20
//! models associated with each, N hospitals with one operational dataset per
//! benchmark, one result per benchmark x model x dataset, every association
//! approved by the committee, one release per benchmark) is signed once and
//! written into a node store under `target/views-bench/h<N>` (kept for later
//! runs). Then a separate process per scale starts a real node on that store
//! (the restart path: every record read back and verified), with its control API
//! on 127.0.0.1, and measures:
//! - resident memory (`VmRSS`, `VmHWM` from /proc/self/status) after the start,
//!   after the first query, against the bytes of the records held;
//! - the time from start to the first answered query;
//! - p50/p99 of paged, indexed queries over HTTP (a leaderboard, associations by
//!   benchmark and by status, datasets by benchmark and by owner, results of a
//!   benchmark and model, deep pages through `next`), side by side with today's
//!   whole-state view (`GET /v1/state/all` parsed as the CLI parses it), with the
//!   ratio of their p50s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use protocol::metric::Figure;
use protocol::record::*;
use protocol::testkit;
use protocol::{NetworkRoot, PublicKey, Record, RecordId};
use serde::{Deserialize, Serialize};

const BENCHMARKS: usize = 10;
const MODELS: usize = 20;
/// Records written to the store per transaction while generating.
const WRITE_BATCH_RECORDS: usize = 10_000;
/// Goal for an indexed query (issue 16).
const QUERY_P99_GOAL_MS: f64 = 5.0;

/// One generated federation's parameters and ids, written beside its store.
#[derive(Serialize, Deserialize)]
struct Manifest {
    hospitals: usize,
    records: u64,
    record_bytes: u64,
    benchmarks: Vec<RecordId>,
    models: Vec<RecordId>,
    hospital_keys: Vec<PublicKey>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Timing {
    name: String,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct Figures {
    hospitals: usize,
    records: u64,
    record_bytes: u64,
    rss_start_mib: f64,
    rss_loaded_mib: f64,
    start_s: f64,
    first_query_s: f64,
    rss_after_first_query_mib: f64,
    hwm_after_first_query_mib: f64,
    rss_after_views_mib: f64,
    hwm_after_views_mib: f64,
    queries: Vec<Timing>,
    whole_state: Option<Timing>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--generate") => generate_cmd(&args[1..]),
        Some("--measure") => measure_cmd(&args[1..]),
        _ => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("medmesh-views-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let smoke = args.iter().any(|a| a == "--smoke");
    let scales: Vec<usize> = match (smoke, arg(args, "--scale")) {
        (true, _) => vec![12],
        (false, Some("100k")) => vec![500],
        (false, Some("1m")) => vec![4_150],
        (false, Some(n)) => {
            vec![n.parse().map_err(|_| anyhow::anyhow!("--scale 100k, 1m or a hospital count"))?]
        }
        (false, None) => vec![500, 4_150],
    };
    let queries: usize = arg(args, "--queries").map(str::parse).transpose()?.unwrap_or(if smoke {
        20
    } else {
        1_000
    });
    let whole: usize = arg(args, "--whole-state-runs")
        .map(str::parse)
        .transpose()?
        .unwrap_or(if smoke { 2 } else { 5 });
    let base = arg(args, "--data").map(PathBuf::from).unwrap_or_else(default_data_dir);
    let exe = std::env::current_exe()?;
    let mut all = Vec::new();
    for hospitals in scales {
        let dir = base.join(format!("h{hospitals}"));
        if !dir.join("manifest.json").exists() {
            eprintln!("generating {hospitals} hospitals into {} ...", dir.display());
            let status = Command::new(&exe)
                .args(["--generate", &dir.display().to_string(), &hospitals.to_string()])
                .status()?;
            anyhow::ensure!(status.success(), "generation failed");
        }
        eprintln!("measuring {} ...", dir.display());
        let out = Command::new(&exe)
            .args([
                "--measure",
                &dir.display().to_string(),
                &queries.to_string(),
                &whole.to_string(),
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "measurement failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let f: Figures = serde_json::from_slice(&out.stdout)?;
        all.push(f);
    }
    if args.iter().any(|a| a == "--json") {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for f in &all {
        print_figures(f);
    }
    if smoke {
        // The smoke run checks the figures exist and that pages answer at all.
        for f in &all {
            anyhow::ensure!(!f.queries.is_empty(), "no query was measured");
        }
    }
    Ok(())
}

fn default_data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("views-bench")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_figures(f: &Figures) {
    let rec = mib(f.record_bytes);
    println!("\n## {} records ({} hospitals), {:.1} MiB of records", f.records, f.hospitals, rec);
    println!("| memory | MiB | x record bytes |");
    println!("| --- | --- | --- |");
    let row = |what: &str, v: f64| println!("| {what} | {v:.1} | {:.2} |", v / rec);
    row("RSS before the node starts", f.rss_start_mib);
    row("RSS after start (store read back, verified, indexed)", f.rss_loaded_mib);
    row("RSS after the first query", f.rss_after_first_query_mib);
    row("peak (VmHWM) after the first query", f.hwm_after_first_query_mib);
    row("RSS after every indexed query", f.rss_after_views_mib);
    row("peak (VmHWM) after every indexed query", f.hwm_after_views_mib);
    println!("start {:.2} s; first query answered {:.2} s after start", f.start_s, f.first_query_s);
    println!("\n| query | samples | p50 ms | p99 ms | bytes | p50 vs whole state |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let whole_p50 = f.whole_state.as_ref().map(|w| w.p50_ms);
    for q in &f.queries {
        let ratio = whole_p50.map_or("-".to_string(), |w| format!("{:.0}x faster", w / q.p50_ms));
        let goal = if q.p99_ms <= QUERY_P99_GOAL_MS { "" } else { " (over 5 ms)" };
        println!(
            "| {} | {} | {:.3} | {:.3}{goal} | {} | {ratio} |",
            q.name, q.samples, q.p50_ms, q.p99_ms, q.bytes
        );
    }
    if let Some(w) = &f.whole_state {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | 1x |",
            w.name, w.samples, w.p50_ms, w.p99_ms, w.bytes
        );
    }
}

// ---------------------------------------------------------------------------
// Generation (a child process, so that the measuring process never held the
// records it measures).

fn generate_cmd(args: &[String]) -> anyhow::Result<()> {
    let dir = PathBuf::from(args.first().ok_or_else(|| anyhow::anyhow!("--generate DIR N"))?);
    let hospitals: usize =
        args.get(1).ok_or_else(|| anyhow::anyhow!("--generate DIR N"))?.parse()?;
    let started = Instant::now();
    let (root, records, mut manifest) = federation(hospitals);
    eprintln!("signed {} records in {:.1} s", records.len(), started.elapsed().as_secs_f64());
    std::fs::create_dir_all(&dir)?;
    let store = node::store::Store::open(&dir.join(node::node::STORE_FILE))?;
    store.set_root(&root)?;
    for chunk in records.chunks(WRITE_BATCH_RECORDS) {
        store.put(chunk)?;
    }
    drop(store);
    manifest.records = records.len() as u64;
    manifest.record_bytes = records.iter().map(|r| r.bytes.len() as u64).sum();
    std::fs::write(dir.join("root.cbor"), root.to_bytes())?;
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    eprintln!("stored in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The synthetic federation described at the top of this file.
fn federation(hospitals: usize) -> (NetworkRoot, Vec<Record>, Manifest) {
    let fed = testkit::federation(BENCHMARKS, MODELS, |b| {
        b.sharing = SharingPolicy::Aggregate { min_datasets: 1 }
    });
    // Hospitals sign in parallel: each chain is independent.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunks: Vec<Vec<usize>> =
        (0..threads).map(|t| (t..hospitals).step_by(threads).collect()).collect();
    let signed: Vec<Vec<testkit::Hospital>> = std::thread::scope(|s| {
        let fed = &fed;
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| s.spawn(move || chunk.iter().map(|&h| fed.hospital(h)).collect()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("signer thread")).collect()
    });
    let testkit::Federation {
        root, mut committee, benchmarks: benches, models, mut records, ..
    } = fed;
    let mut hospital_keys = Vec::new();
    for hospital in signed.into_iter().flatten() {
        hospital_keys.push(hospital.key);
        records.extend(hospital.records);
        for (b, d) in hospital.datasets {
            for c in committee.iter_mut().take(2) {
                records.push(c.sign(testkit::decide(
                    b,
                    Subject::Dataset(d),
                    Decision::Approve,
                    None,
                )));
            }
        }
    }
    // One aggregate release per benchmark, signed by two members (the threshold).
    let datasets = u16::try_from(hospitals).unwrap_or(u16::MAX);
    for (b, _) in &benches {
        let entries = models
            .iter()
            .enumerate()
            .map(|(i, m)| ReleaseEntry {
                model: *m,
                dataset: None,
                datasets,
                metrics: [("auc".to_string(), Figure::Millionths(600_000 + 10_000 * i as i64))]
                    .into_iter()
                    .collect(),
            })
            .collect();
        let release = Release {
            benchmark: *b,
            round: 1,
            policy: SharingPolicy::Aggregate { min_datasets: 1 },
            entries,
            seed: 7,
        };
        for c in committee.iter_mut().take(2) {
            records.push(c.sign(Body::Release(release.clone())));
        }
    }
    let manifest = Manifest {
        hospitals,
        records: 0,
        record_bytes: 0,
        benchmarks: benches.iter().map(|b| b.0).collect(),
        models,
        hospital_keys,
    };
    (root, records, manifest)
}

// ---------------------------------------------------------------------------
// Measurement (a child process per scale).

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn measure_cmd(args: &[String]) -> anyhow::Result<()> {
    let dir = PathBuf::from(&args[0]);
    let queries: usize = args.get(1).map_or(Ok(1_000), |a| a.parse())?;
    let whole: usize = args.get(2).map_or(Ok(5), |a| a.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let figures = rt.block_on(measure(&dir, queries, whole))?;
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let (code, body) = tests::try_http(addr, "GET", path, None, &[]).await?;
    let took = started.elapsed();
    anyhow::ensure!(code == 200, "GET {path}: {code} {}", String::from_utf8_lossy(&body));
    Ok((took, body))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn timing(name: &str, mut samples: Vec<Duration>, bytes: u64) -> Timing {
    samples.sort();
    Timing {
        name: name.into(),
        samples: samples.len(),
        p50_ms: percentile(&samples, 0.50),
        p99_ms: percentile(&samples, 0.99),
        bytes,
    }
}

/// A small deterministic generator for picking query targets.
struct Pick(u64);

impl Pick {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }
}

async fn measure(dir: &Path, queries: usize, whole: usize) -> anyhow::Result<Figures> {
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)?;
    let root = NetworkRoot::from_bytes(&std::fs::read(dir.join("root.cbor"))?)
        .map_err(|e| anyhow::anyhow!("root: {e}"))?;
    let (rss_start, _) = memory();
    let started = Instant::now();
    let mut config = tests::config(dir, &root, &[]);
    config.control = Some("127.0.0.1:0".parse()?);
    let node = node::Node::start(config).await?;
    let start_s = started.elapsed().as_secs_f64();
    let (rss_loaded, _) = memory();
    let addr = node.control_addr().ok_or_else(|| anyhow::anyhow!("no control address"))?;
    let b0 = manifest.benchmarks[0];
    get(addr, &format!("/v1/benchmarks/{}/leaderboard", b0.to_hex())).await?;
    let first_query_s = started.elapsed().as_secs_f64();
    let (rss_first, hwm_first) = memory();

    // Ids for the single-record queries, read from the views themselves: the
    // datasets of every benchmark's first page, a page of results of every
    // benchmark and model.
    let ids_of = |body: &[u8], field: &str| -> anyhow::Result<Vec<String>> {
        let v: serde_json::Value = serde_json::from_slice(body)?;
        Ok(v["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x[field].as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    };
    let mut dataset_ids = Vec::new();
    let mut result_ids = Vec::new();
    for (i, b) in manifest.benchmarks.iter().enumerate() {
        let (_, body) =
            get(addr, &format!("/v1/datasets?benchmark={}&limit=100", b.to_hex())).await?;
        dataset_ids.extend(ids_of(&body, "id")?);
        let m = manifest.models[i % manifest.models.len()].to_hex();
        let path = format!("/v1/results?benchmark={}&model={m}&limit=100", b.to_hex());
        let (_, body) = get(addr, &path).await?;
        result_ids.extend(ids_of(&body, "id")?);
    }
    anyhow::ensure!(!dataset_ids.is_empty() && !result_ids.is_empty(), "no ids to query");
    let (_, body) = get(addr, &format!("/v1/benchmarks/{}", b0.to_hex())).await?;
    let b0_name = serde_json::from_slice::<serde_json::Value>(&body)?["benchmark"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dataset = |p: &mut Pick| dataset_ids[p.next(dataset_ids.len())].clone();
    let result = |p: &mut Pick| result_ids[p.next(result_ids.len())].clone();

    let mut pick = Pick(7);
    let mut out = Vec::new();
    let bench = |p: &mut Pick| manifest.benchmarks[p.next(manifest.benchmarks.len())].to_hex();
    let model = |p: &mut Pick| manifest.models[p.next(manifest.models.len())].to_hex();
    let owner = |p: &mut Pick| manifest.hospital_keys[p.next(manifest.hospital_keys.len())];
    type PathFn<'a> = Box<dyn Fn(&mut Pick) -> String + 'a>;
    let views: Vec<(&str, PathFn)> = vec![
        (
            "leaderboard of one benchmark (today's route)",
            Box::new(|p: &mut Pick| format!("/v1/benchmarks/{}/leaderboard", bench(p))),
        ),
        (
            "leaderboard page of one benchmark",
            Box::new(|p: &mut Pick| format!("/v1/leaderboards/{}?limit=100", bench(p))),
        ),
        (
            "associations of one benchmark, page of 100",
            Box::new(|p: &mut Pick| format!("/v1/associations?benchmark={}&limit=100", bench(p))),
        ),
        (
            "approved model associations of one benchmark",
            Box::new(|p: &mut Pick| {
                format!(
                    "/v1/associations?benchmark={}&kind=model&status=approved&limit=100",
                    bench(p)
                )
            }),
        ),
        (
            "pending associations (all benchmarks)",
            Box::new(|_: &mut Pick| "/v1/associations?status=pending&limit=100".to_string()),
        ),
        (
            "datasets of one benchmark, page of 100",
            Box::new(|p: &mut Pick| format!("/v1/datasets?benchmark={}&limit=100", bench(p))),
        ),
        (
            "datasets of one owner",
            Box::new(|p: &mut Pick| format!("/v1/datasets?owner={}&limit=100", owner(p))),
        ),
        (
            "results of one benchmark and model, page of 100",
            Box::new(|p: &mut Pick| {
                format!("/v1/results?benchmark={}&model={}&limit=100", bench(p), model(p))
            }),
        ),
        ("benchmarks, page of 100", Box::new(|_: &mut Pick| "/v1/benchmarks?limit=100".into())),
        ("containers, page of 100", Box::new(|_: &mut Pick| "/v1/containers?limit=100".into())),
        // What the commands that act on one record ask (issue 16 item 3).
        ("one benchmark by id", Box::new(|p: &mut Pick| format!("/v1/benchmarks/{}", bench(p)))),
        ("one container by id", Box::new(|p: &mut Pick| format!("/v1/containers/{}", model(p)))),
        ("one dataset by id", Box::new(|p: &mut Pick| format!("/v1/datasets/{}", dataset(p)))),
        ("one result by id", Box::new(|p: &mut Pick| format!("/v1/results/{}", result(p)))),
        ("a key's standing", Box::new(|p: &mut Pick| format!("/v1/keys/{}", owner(p)))),
        (
            "lookup of a dataset by id prefix",
            Box::new(|p: &mut Pick| format!("/v1/lookup/dataset?q={}", &dataset(p)[..8])),
        ),
        (
            "lookup of a benchmark by name",
            Box::new(|_: &mut Pick| format!("/v1/lookup/benchmark?q={b0_name}")),
        ),
        (
            "associations of one dataset",
            Box::new(|p: &mut Pick| format!("/v1/associations?subject={}", dataset(p))),
        ),
        (
            "results of one dataset",
            Box::new(|p: &mut Pick| format!("/v1/results?dataset={}&limit=100", dataset(p))),
        ),
        (
            "approved models of one benchmark (a run's models)",
            Box::new(|p: &mut Pick| {
                format!("/v1/associations?benchmark={}&kind=model&status=approved", bench(p))
            }),
        ),
        (
            "search of datasets by public name (no match: the scan bound)",
            Box::new(|_: &mut Pick| "/v1/datasets?q=no-such-name&limit=25".into()),
        ),
    ];
    for (name, path) in &views {
        let first = path(&mut Pick(1));
        if let Err(e) = get(addr, &first).await {
            eprintln!("skipping `{name}`: {e:#}");
            continue;
        }
        let mut samples = Vec::with_capacity(queries);
        let mut bytes = 0;
        for _ in 0..queries {
            let (t, body) = get(addr, &path(&mut pick)).await?;
            bytes = bytes.max(body.len() as u64);
            samples.push(t);
        }
        out.push(timing(name, samples, bytes));
    }
    // Deep pages: follow `next` through one benchmark's datasets.
    if let Ok((_, body)) =
        get(addr, &format!("/v1/datasets?benchmark={}&limit=100", b0.to_hex())).await
    {
        let mut samples = Vec::new();
        let mut next = serde_json::from_slice::<serde_json::Value>(&body)?["next"].clone();
        let mut bytes = 0;
        while let Some(cursor) = next.as_str().map(str::to_string) {
            let (t, body) = get(
                addr,
                &format!("/v1/datasets?benchmark={}&limit=100&after={cursor}", b0.to_hex()),
            )
            .await?;
            bytes = bytes.max(body.len() as u64);
            samples.push(t);
            next = serde_json::from_slice::<serde_json::Value>(&body)?["next"].clone();
            if samples.len() >= queries {
                break;
            }
        }
        if !samples.is_empty() {
            out.push(timing("every page of one benchmark's datasets (after=)", samples, bytes));
        }
    }
    // A UI list page's queries: a page of 25 datasets, then the names of their
    // benchmarks and owners (what `medmesh ui`'s /datasets asks of the node).
    {
        let mut samples = Vec::with_capacity(queries);
        let mut bytes = 0;
        let mut cursor: Option<String> = None;
        for _ in 0..queries {
            let started = Instant::now();
            let path = match &cursor {
                Some(c) => format!("/v1/datasets?limit=25&after={c}"),
                None => "/v1/datasets?limit=25".to_string(),
            };
            let (_, body) = get(addr, &path).await?;
            let page: serde_json::Value = serde_json::from_slice(&body)?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let ids: Vec<&str> =
                items.iter().filter_map(|d| d["dataset"]["benchmark"].as_str()).collect();
            let keys: Vec<&str> = items.iter().filter_map(|d| d["owner"].as_str()).collect();
            let (_, names) =
                get(addr, &format!("/v1/names?ids={}&keys={}", ids.join(","), keys.join(",")))
                    .await?;
            samples.push(started.elapsed());
            bytes = bytes.max((body.len() + names.len()) as u64);
            cursor = page["next"].as_str().map(str::to_string);
        }
        out.push(timing(
            "UI datasets page: 25 datasets, then their names (2 requests)",
            samples,
            bytes,
        ));
    }
    let (rss_views, hwm_views) = memory();

    // Today's whole-state view, as the CLI reads it.
    let mut whole_state = None;
    if whole > 0 {
        let mut samples = Vec::new();
        let mut bytes = 0;
        for _ in 0..whole {
            let started = Instant::now();
            let (_, body) = get(addr, "/v1/state/all").await?;
            let state: protocol::State = serde_json::from_slice(&body)?;
            samples.push(started.elapsed());
            bytes = body.len() as u64;
            drop(state);
        }
        whole_state = Some(timing("whole state (GET /v1/state/all, parsed)", samples, bytes));
    }
    node.shutdown().await;
    Ok(Figures {
        hospitals: manifest.hospitals,
        records: manifest.records,
        record_bytes: manifest.record_bytes,
        rss_start_mib: mib(rss_start),
        rss_loaded_mib: mib(rss_loaded),
        start_s,
        first_query_s,
        rss_after_first_query_mib: mib(rss_first),
        hwm_after_first_query_mib: mib(hwm_first),
        rss_after_views_mib: mib(rss_views),
        hwm_after_views_mib: mib(hwm_views),
        queries: out,
        whole_state,
    })
}
