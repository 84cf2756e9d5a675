//! `cargo bench -p runner --bench runner_bench` prints, in one run:
//!
//! 1. the tree hash's throughput on a generated tree (1 GiB by default, many files
//!    of mixed sizes, warm page cache) next to a plain single-pass BLAKE3 over the
//!    same bytes (one hasher, files in order, one thread) and next to MedPerf's
//!    scheme (SHA-256 of each file, sorted digests, SHA-256 of the list; sequential,
//!    as MedPerf runs it, and on all cores);
//! 2. one container task's wall time through the runner next to `docker run --rm`
//!    of the same image, arguments, mounts and limits (median of several runs).
//!
//! `MEDMESH_BENCH_TREE_MIB` sets the tree size; `MEDMESH_BENCH_RUNS` the container runs.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use runner::treehash::{list_tree, medperf_hash, tree_hash};
use runner::{Engine, RunLimits, Runnable, TaskRun, parse_manifest};
use sha2::Digest as _;

const TREE_MIB_DEFAULT: u64 = 1024;
const CONTAINER_RUNS_DEFAULT: usize = 9;
const READ_BUFFER_BYTES: usize = 1024 * 1024;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Deterministic pseudo-random bytes (BLAKE3 XOF), so the tree is the same each run.
fn fill(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(&seed.to_le_bytes()).finalize_xof().fill(&mut out);
    out
}

/// A tree of `total` bytes: a third in 64 KiB files, a third in 1 MiB files, a third
/// in 64 MiB files, spread over folders.
fn generate_tree(root: &Path, total: u64) -> (u64, usize) {
    let (mut bytes, mut files) = (0u64, 0usize);
    for (size, share) in [(64u64 * 1024, 3u64), (1024 * 1024, 3), (64 * 1024 * 1024, 3)] {
        let budget = total / share;
        let mut used = 0;
        while used + size <= budget {
            let dir = root.join(format!("d{:03}", files % 97));
            std::fs::create_dir_all(&dir).expect("bench tree folder");
            std::fs::write(dir.join(format!("f{files:06}.bin")), fill(files as u64, size as usize))
                .expect("bench tree file");
            used += size;
            files += 1;
        }
        bytes += used;
    }
    (bytes, files)
}

fn plain_blake3(root: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    for f in list_tree(&[("data", root)]).expect("list") {
        let mut file = std::fs::File::open(&f.path).expect("open");
        loop {
            let n = file.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    h.finalize()
}

fn medperf_sequential(root: &Path) -> String {
    let mut digests: Vec<String> = list_tree(&[("data", root)])
        .expect("list")
        .iter()
        .map(|f| {
            let mut file = std::fs::File::open(&f.path).expect("open");
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut file, &mut h).expect("read");
            hex::encode(h.finalize())
        })
        .collect();
    digests.sort();
    hex::encode(sha2::Sha256::digest(digests.concat().as_bytes()))
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn gbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn hashing() {
    let total = env_or("MEDMESH_BENCH_TREE_MIB", TREE_MIB_DEFAULT) * 1024 * 1024;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("data");
    let (bytes, files) = generate_tree(&root, total);
    println!(
        "tree: {files} files, {:.2} GB, {} cores",
        bytes as f64 / 1e9,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let _ = plain_blake3(&root); // warm the page cache
    let tree = best_of(3, || tree_hash(&[("data", &root)]).expect("tree hash"));
    let plain = best_of(3, || plain_blake3(&root));
    let mp_seq = best_of(2, || medperf_sequential(&root));
    let mp_par = best_of(2, || medperf_hash(&[("data", &root)]).expect("medperf hash"));
    println!(
        "{:<52} {:>8.2} GB/s",
        "MedMesh tree hash (blake3, paths bound, all cores)",
        gbps(bytes, tree)
    );
    println!(
        "{:<52} {:>8.2} GB/s",
        "plain single-pass blake3 (one hasher, one thread)",
        gbps(bytes, plain)
    );
    println!(
        "{:<52} {:>8.2} GB/s",
        "MedPerf scheme, sequential (as MedPerf runs it)",
        gbps(bytes, mp_seq)
    );
    println!("{:<52} {:>8.2} GB/s", "MedPerf scheme, on all cores", gbps(bytes, mp_par));
    println!(
        "tree hash / plain blake3: {:.2} (goal >= 0.9)",
        plain.as_secs_f64() / tree.as_secs_f64()
    );
    println!(
        "tree hash / MedPerf sequential: {:.2} (goal >= 2.5)",
        mp_seq.as_secs_f64() / tree.as_secs_f64()
    );
    println!("tree hash / MedPerf on all cores: {:.2}", mp_par.as_secs_f64() / tree.as_secs_f64());
}

const PROBE: &str = r#"
image: medmesh/example-probe:1
tasks:
  infer:
    run_args: { command: write_rootfs }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/output, type: directory }
"#;

async fn container_overhead() {
    let runs = env_or("MEDMESH_BENCH_RUNS", CONTAINER_RUNS_DEFAULT);
    let engine = match Engine::connect(1).await {
        Ok(e) => e,
        Err(e) => {
            println!("container overhead: skipped ({e})");
            return;
        }
    };
    let workspace =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let images =
        runner::examples::build_example_images(&engine, &workspace).await.expect("example images");
    let probe = Runnable {
        spec: parse_manifest(PROBE).expect("manifest"),
        image: images.probe.clone(),
        parameters_file: None,
        additional_files: None,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, tmp) = (dir.path().join("out"), dir.path().join("tmp"));
    let limits = RunLimits::default();
    let run = TaskRun {
        container: &probe,
        task: "infer",
        mounts: BTreeMap::from([("output_path".to_string(), out.clone())]),
        log_path: dir.path().join("task.log"),
        scratch_dir: tmp.clone(),
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        engine.run_task(&run, &limits).await.expect("runner task");
        ours.push(t.elapsed());
        let t = Instant::now();
        let status = std::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--read-only",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
            ])
            .args([
                "--memory",
                &limits.memory_bytes.to_string(),
                "--memory-swap",
                &limits.memory_bytes.to_string(),
            ])
            .args([
                "--cpus",
                &format!("{}", limits.nano_cpus as f64 / 1e9),
                "--pids-limit",
                &limits.pids.to_string(),
            ])
            .arg("-v")
            .arg(format!("{}:/mlcommons/volumes/output", out.display()))
            .arg("-v")
            .arg(format!("{}:/tmp", tmp.display()))
            .args([images.probe.digest.as_str(), "write_rootfs"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("docker cli");
        assert!(status.success(), "docker run failed");
        theirs.push(t.elapsed());
    }
    let (o, t) = (median(ours), median(theirs));
    println!("{:<52} {:>8.0} ms", "one task through the runner (median)", o.as_secs_f64() * 1e3);
    println!(
        "{:<52} {:>8.0} ms",
        "docker run --rm, same image/args/mounts/limits",
        t.as_secs_f64() * 1e3
    );
    println!("runner / docker run: {:.2} (goal <= 1.1)", o.as_secs_f64() / t.as_secs_f64());
}

fn main() {
    hashing();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(container_overhead());
}
