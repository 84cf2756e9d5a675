//! Reconciliation near the limit: for d differences among a million ids, the
//! bytes and round trips of negentropy (range-based, what sync used alone
//! before RIBLT) and of what sync does (`/medmesh/sync/3`: the initiator's
//! difference estimator, RIBLT coded symbols sized from it, negentropy when
//! they do not decode), against the information minimum of d x 32 bytes.
//!
//! Three shapes: "behind" (the initiator lacks d ids the responder holds: a node
//! catching up, the set sizes tell the difference), "90/10" (the responder
//! holds 90 % of the difference) and "both" (d/2 ids on each side, equal set
//! sizes). The "streamed" column is the coded symbols per difference a decoder
//! fed one small batch at a time needed: the code's own overhead, without the
//! cost of asking in round trips. A second table repeats sync over many trials
//! of the difference alone (the common ids cancel out of symbols and estimator
//! exactly, so a million common ids change nothing but the time): how often one
//! round trip decodes it, and the spread of its bytes.
//!
//! `cargo run --release -p node --bin medmesh-reconcile-bench -- [--ids 1000000]
//! [--diffs 1,10,100,1000,10000] [--trials 3] [--rate-trials 500]`; with
//! `--calibrate FILE`, per-trial decoding thresholds and estimator counters as
//! CSV instead.

use std::sync::Arc;
use std::time::Instant;

use node::sync::{IdSnapshot, LocalSync, reconcile_local, reconcile_sketch_local};
use protocol::RecordId;
use protocol::riblt::{
    Decoded, Decoder, SKETCH_SYMBOLS_MAX, SYMBOL_BYTES, Sketch, decode_symbols, encode_symbols,
};

struct Opts {
    ids: u64,
    diffs: Vec<u64>,
    trials: u64,
    rate_trials: u64,
    calibrate: Option<String>,
}

fn parse() -> Opts {
    let mut o = Opts {
        ids: 1_000_000,
        diffs: vec![1, 10, 100, 1000, 10_000],
        trials: 3,
        rate_trials: 500,
        calibrate: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--ids" => o.ids = v.parse().unwrap_or(o.ids),
            "--diffs" => o.diffs = v.split(',').filter_map(|x| x.parse().ok()).collect(),
            "--trials" => o.trials = v.parse().unwrap_or(o.trials).max(1),
            "--rate-trials" => o.rate_trials = v.parse().unwrap_or(o.rate_trials),
            "--calibrate" => o.calibrate = Some(v.clone()),
            other => eprintln!("ignoring unknown flag {other}"),
        }
        i += 2;
    }
    o
}

fn id(i: u64) -> RecordId {
    RecordId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// Coded symbols a decoder needed, fed in batches of about 1/64 of what it holds.
fn streamed_symbols(ours: &Sketch, theirs: &Sketch) -> Option<u32> {
    let mut dec = Decoder::new();
    loop {
        let have = dec.symbols_len();
        let batch = theirs.symbols(have, (have / 64).max(1));
        if batch.is_empty() {
            return None;
        }
        let remote = decode_symbols(&encode_symbols(batch)).ok()?;
        if let Decoded::Done { .. } = dec.add_symbols(&remote, ours).ok()? {
            return Some(dec.symbols_len());
        }
    }
}

/// Per trial, the exact number of coded symbols that decoded a difference of d
/// ids and the estimator's counters' differences, as CSV (the tool the
/// constants of `symbols_for_estimate` were chosen with).
fn calibrate(path: &str, trials: u64) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create the csv"));
    writeln!(out, "d,trial,threshold,counters").expect("write");
    let ds = [
        1u64, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 2000,
        5000, 10_000,
    ];
    for d in ds {
        let n = if d > 1000 { trials / 10 } else { trials }.max(1);
        for t in 0..n {
            let from = 1u64 << 41 | (t << 20) | d;
            let a: Vec<RecordId> = (from..from + d / 2).map(id).collect();
            let b: Vec<RecordId> = (from + d / 2..from + d).map(id).collect();
            let sa = Sketch::from_ids(SKETCH_SYMBOLS_MAX, &a);
            let sb = Sketch::from_ids(SKETCH_SYMBOLS_MAX, &b);
            let mut dec = Decoder::new();
            let threshold = loop {
                let have = dec.symbols_len();
                let step = if d <= 2000 { 1 } else { (have / 512).max(1) };
                let batch = sb.symbols(have, step);
                if batch.is_empty() {
                    break 0;
                }
                let remote = decode_symbols(&encode_symbols(batch)).expect("own symbols");
                if let Decoded::Done { .. } = dec.add_symbols(&remote, &sa).expect("decodes") {
                    break dec.symbols_len();
                }
            };
            let (ea, eb) = (sa.estimator().encode(), sb.estimator().encode());
            let counters: Vec<String> = ea
                .chunks_exact(2)
                .zip(eb.chunks_exact(2))
                .map(|(x, y)| {
                    let x = u16::from_le_bytes([x[0], x[1]]);
                    let y = u16::from_le_bytes([y[0], y[1]]);
                    (x.wrapping_sub(y) as i16).to_string()
                })
                .collect();
            writeln!(out, "{d},{t},{threshold},{}", counters.join(" ")).expect("write");
        }
        eprintln!("calibrated d = {d}");
    }
}

/// The shapes of a difference: the share of it only the initiator holds, in
/// tenths.
const SHAPES: [(&str, u64); 3] = [("behind", 0), ("90/10", 1), ("both", 5)];

/// The difference of d ids in a shape: (only ours, only theirs), from `from` on.
fn split(d: u64, ours_tenths: u64, from: u64) -> (Vec<RecordId>, Vec<RecordId>) {
    let ours = d * ours_tenths / 10;
    ((from..from + ours).map(id).collect(), (from + ours..from + d).map(id).collect())
}

/// Sync over two sets that differ by `ours_extra` and `theirs_extra` (and share
/// `common`), checked against what it should find.
fn sync(
    base: (&Sketch, &[RecordId]),
    ours_extra: &[RecordId],
    theirs_extra: &[RecordId],
) -> (LocalSync, f64, Arc<Sketch>, Sketch) {
    let (sketch, common) = base;
    let mut ours_sk = sketch.clone();
    ours_extra.iter().for_each(|x| ours_sk.add(x));
    let mut theirs_sk = sketch.clone();
    theirs_extra.iter().for_each(|x| theirs_sk.add(x));
    let ours_ix = IdSnapshot::from_ids(common.iter().chain(ours_extra).copied());
    let theirs_ix = IdSnapshot::from_ids(common.iter().chain(theirs_extra).copied());
    let ours_sk = Arc::new(ours_sk);
    let t = Instant::now();
    let got = reconcile_sketch_local((ours_sk.clone(), ours_ix), (&theirs_sk, &theirs_ix))
        .expect("sync reconciles");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let mut need = got.need.clone();
    need.sort();
    let mut want = theirs_extra.to_vec();
    want.sort();
    assert_eq!(need, want, "sync found exactly what it lacks");
    assert_eq!(got.have, ours_extra.len() as u64);
    (got, ms, ours_sk, theirs_sk)
}

#[derive(Default)]
struct Sum {
    neg_rounds: u32,
    neg_bytes: u64,
    neg_ms: f64,
    rounds: u32,
    sent: u64,
    received: u64,
    worst: u64,
    ms: f64,
    fell_back: u64,
    streamed: u64,
    streamed_n: u64,
}

fn main() {
    let o = parse();
    if let Some(path) = &o.calibrate {
        calibrate(path, o.trials);
        return;
    }
    let t0 = Instant::now();
    let common: Vec<RecordId> = (0..o.ids).map(id).collect();
    let base = Sketch::from_ids(SKETCH_SYMBOLS_MAX, &common);
    eprintln!(
        "{} common ids, sketch of {} symbols built in {:.2} s",
        o.ids,
        SKETCH_SYMBOLS_MAX,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "| d | shape | minimum (d x 32 B) | negentropy RTT | negentropy bytes | x min | sync/3 RTT | sync/3 bytes (sent + received) | x min | worst trial x min | streamed symbols/diff | negentropy ms | sync/3 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &d in &o.diffs {
        for (shape, tenths) in SHAPES {
            if d * tenths / 10 == 0 && tenths > 0 {
                continue;
            }
            let mut sum = Sum::default();
            for t in 0..o.trials {
                let from = 1u64 << 40 | (t << 32) | (d << 8) | tenths;
                let (ours_extra, theirs_extra) = split(d, tenths, from << 8);
                let ours_ix = IdSnapshot::from_ids(common.iter().chain(&ours_extra).copied());
                let theirs_ix = IdSnapshot::from_ids(common.iter().chain(&theirs_extra).copied());
                let t = Instant::now();
                let (need, _, rounds, bytes) =
                    reconcile_local(ours_ix, &theirs_ix).expect("negentropy reconciles");
                sum.neg_ms += t.elapsed().as_secs_f64() * 1e3;
                assert_eq!(need.len() as u64, theirs_extra.len() as u64);
                sum.neg_rounds = sum.neg_rounds.max(rounds);
                sum.neg_bytes += bytes;

                let (got, ms, ours_sk, theirs_sk) =
                    sync((&base, &common), &ours_extra, &theirs_extra);
                sum.ms += ms;
                sum.rounds = sum.rounds.max(got.rounds);
                sum.sent += got.bytes_sent;
                sum.received += got.bytes_received;
                sum.worst = sum.worst.max(got.bytes_sent + got.bytes_received);
                sum.fell_back += got.fell_back as u64;
                if let Some(s) = streamed_symbols(&ours_sk, &theirs_sk) {
                    sum.streamed += s as u64;
                    sum.streamed_n += 1;
                }
            }
            let n = o.trials as f64;
            let min = (d * 32) as f64;
            let neg_b = sum.neg_bytes as f64 / n;
            let (sent, received) = (sum.sent as f64 / n, sum.received as f64 / n);
            let fb = if sum.fell_back > 0 {
                format!(" ({} of {} fell back)", sum.fell_back, o.trials)
            } else {
                String::new()
            };
            let streamed = if sum.streamed_n > 0 {
                format!("{:.2}", sum.streamed as f64 / sum.streamed_n as f64 / d as f64)
            } else {
                format!("> {SKETCH_SYMBOLS_MAX} symbols")
            };
            println!(
                "| {d} | {shape} | {min:.0} | {} | {neg_b:.0} | {:.1} | {}{fb} | {sent:.0} + {received:.0} | {:.2} | {:.2} | {streamed} | {:.1} | {:.1} |",
                sum.neg_rounds,
                neg_b / min,
                sum.rounds,
                (sent + received) / min,
                sum.worst as f64 / min,
                sum.neg_ms / n,
                sum.ms / n,
            );
        }
    }
    eprintln!(
        "{} trials per row (bytes and ms are means, round trips the most); a coded symbol is {SYMBOL_BYTES} bytes",
        o.trials
    );
    if o.rate_trials == 0 {
        return;
    }
    println!();
    println!(
        "| d | shape | trials | one round trip | most round trips | fell back | x min mean | x min p90 | x min worst |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let empty = Sketch::new(SKETCH_SYMBOLS_MAX);
    for &d in &o.diffs {
        for (shape, tenths) in SHAPES {
            if d * tenths / 10 == 0 && tenths > 0 {
                continue;
            }
            let (mut one, mut most, mut fell_back) = (0u64, 0u32, 0u64);
            let mut xs: Vec<f64> = Vec::new();
            for t in 0..o.rate_trials {
                let from = 1u64 << 50 | (t << 24) | (d << 4) | tenths;
                let (ours_extra, theirs_extra) = split(d, tenths, from << 8);
                let (got, ..) = sync((&empty, &[]), &ours_extra, &theirs_extra);
                one += u64::from(got.rounds == 1);
                most = most.max(got.rounds);
                fell_back += got.fell_back as u64;
                xs.push((got.bytes_sent + got.bytes_received) as f64 / (d * 32) as f64);
            }
            xs.sort_by(f64::total_cmp);
            let n = xs.len();
            println!(
                "| {d} | {shape} | {n} | {:.1} % | {most} | {fell_back} | {:.2} | {:.2} | {:.2} |",
                100.0 * one as f64 / n as f64,
                xs.iter().sum::<f64>() / n as f64,
                xs[(n * 9 / 10).min(n - 1)],
                xs[n - 1],
            );
        }
    }
}
