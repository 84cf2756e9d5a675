//! A bounded mutation fuzzer on the stable toolchain, for CI machines without
//! nightly or cargo-fuzz: it mutates the seed corpus of each target (bit flips,
//! byte writes, interesting values, truncation, insertion, splicing) and calls
//! the same bodies cargo fuzz runs. A panic aborts with the input saved under
//! `artifacts/<target>/`. Deterministic for a given `--seed`.
//!
//! ```text
//! cargo run --release --no-default-features --bin stable-fuzz -- run record --seconds 20
//! cargo run --release --no-default-features --bin stable-fuzz -- seed     # write corpus/*/seed-*
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutations stacked on one input.
const STACKED_MUTATIONS_MAX: u64 = 8;
/// Largest input the loop builds.
const INPUT_BYTES_MAX: usize = 128 * 1024;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    const INTERESTING: [u8; 12] =
        [0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x7f, 0x80, 0x9f, 0xff];
    for _ in 0..=rng.next() % STACKED_MUTATIONS_MAX {
        let len = input.len();
        match rng.next() % 8 {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << (rng.next() % 8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 if len > 0 => input.truncate(rng.below(len)),
            4 if len < INPUT_BYTES_MAX => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            5 if len > 1 => {
                let a = rng.below(len);
                let b = a + rng.below(len - a);
                input.drain(a..b);
            }
            6 if len < INPUT_BYTES_MAX => {
                // Splice a piece of another corpus entry in.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a);
                    let i = rng.below(len + 1);
                    input.splice(i..i, other[a..b].iter().copied());
                }
            }
            _ if len > 0 => {
                // Duplicate a run (nesting, repeated items).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let piece = input[a..b].to_vec();
                for _ in 0..1 + rng.below(8) {
                    if input.len() + piece.len() > INPUT_BYTES_MAX {
                        break;
                    }
                    input.splice(a..a, piece.iter().copied());
                }
            }
            _ => input.push(rng.next() as u8),
        }
    }
}

fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
    out
}

fn run(name: &str, seconds: u64, seed: u64, root: &Path) -> Result<(), String> {
    let body = medmesh_fuzz::target(name).ok_or_else(|| {
        format!("unknown target {name}; use record, cbor, sync, manifest or private")
    })?;
    let mut corpus = load_corpus(&root.join("corpus").join(name));
    if corpus.is_empty() {
        corpus = medmesh_fuzz::seeds()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s)
            .unwrap_or_default();
    }
    corpus.push(Vec::new());
    for c in &corpus {
        body(c);
    }
    let artifacts = root.join("artifacts").join(name);
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut execs: u64 = 0;
    let mut input = Vec::new();
    while Instant::now() < deadline {
        for _ in 0..256 {
            input.clear();
            input.extend_from_slice(&corpus[rng.below(corpus.len())]);
            mutate(&mut rng, &mut input, &corpus);
            let current = input.clone();
            let result = std::panic::catch_unwind(|| body(&current));
            if result.is_err() {
                let hook_path = artifacts.join("crash-input");
                std::fs::create_dir_all(&artifacts)
                    .map_err(|e| format!("cannot create {}: {e}", artifacts.display()))?;
                std::fs::write(&hook_path, &current)
                    .map_err(|e| format!("cannot save the crashing input: {e}"))?;
                return Err(format!(
                    "{name}: panic on a {}-byte input, saved to {}",
                    current.len(),
                    hook_path.display()
                ));
            }
            execs += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "stable-fuzz {name}: {execs} executions in {secs:.1} s ({:.0}/s), 0 crashes, seed {seed}",
        execs as f64 / secs
    );
    Ok(())
}

fn write_seeds(root: &Path) -> Result<(), String> {
    for (name, seeds) in medmesh_fuzz::seeds() {
        let dir = root.join("corpus").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).map_err(|e| e.to_string())?;
        }
        println!("{}: {} seeds", dir.display(), seeds.len());
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let result = match args.first().map(String::as_str) {
        Some("seed") => write_seeds(&root),
        Some("run") => {
            let seconds = flag("--seconds").unwrap_or(20);
            let seed = flag("--seed").unwrap_or(0x5eed);
            let targets: Vec<&str> = match args.get(1).map(String::as_str) {
                Some("all") | None => vec!["record", "cbor", "sync", "manifest", "private"],
                Some(t) => vec![t],
            };
            targets.iter().try_for_each(|t| run(t, seconds, seed, &root))
        }
        _ => Err("usage: stable-fuzz seed | stable-fuzz run <record|cbor|sync|manifest|private|all> [--seconds N] [--seed N]".into()),
    };
    if let Err(e) = result {
        eprintln!("stable-fuzz: {e}");
        std::process::exit(1);
    }
}
