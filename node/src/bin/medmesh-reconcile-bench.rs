//! Reconciliation near the limit: for d differences among a million ids, the
//! bytes and round trips of negentropy (range-based, what sync used alone until
//! now) and of what sync does today (RIBLT coded symbols first, negentropy when
//! they do not decode), against the information minimum of d x 32 bytes.
//!
//! Two shapes: "behind" (the initiator lacks d ids the responder holds: a node
//! catching up, so the set sizes tell the difference) and "both" (d/2 ids on
//! each side, equal set sizes: no hint, the initiator doubles its ask). The
//! "streamed" column is the coded symbols per difference a decoder fed one
//! small batch at a time needed: the code's own overhead, without the cost of
//! asking in round trips.
//!
//! `cargo run --release -p node --bin medmesh-reconcile-bench -- [--ids 1000000]
//! [--diffs 1,10,100,1000,10000] [--trials 3]`

use std::sync::Arc;
use std::time::Instant;

use node::sync::{IdSnapshot, reconcile_local, reconcile_sketch_local};
use protocol::RecordId;
use protocol::riblt::{
    Decoded, Decoder, SKETCH_SYMBOLS_MAX, SYMBOL_BYTES, Sketch, decode_symbols, encode_symbols,
};

struct Opts {
    ids: u64,
    diffs: Vec<u64>,
    trials: u64,
    calibrate: Option<String>,
}

fn parse() -> Opts {
    let mut o =
        Opts { ids: 1_000_000, diffs: vec![1, 10, 100, 1000, 10_000], trials: 3, calibrate: None };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--ids" => o.ids = v.parse().unwrap_or(o.ids),
            "--diffs" => o.diffs = v.split(',').filter_map(|x| x.parse().ok()).collect(),
            "--trials" => o.trials = v.parse().unwrap_or(o.trials).max(1),
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

#[derive(Default)]
struct Sum {
    neg_rounds: u32,
    neg_bytes: u64,
    neg_ms: f64,
    rib_rounds: u32,
    rib_bytes: u64,
    rib_ms: f64,
    fell_back: u64,
    streamed: u64,
    streamed_n: u64,
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
        "| d | shape | minimum (d x 32 B) | negentropy RTT | negentropy bytes | x min | riblt+fallback RTT | bytes | x min | streamed symbols/diff | negentropy ms | riblt ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &d in &o.diffs {
        for shape in ["behind", "both"] {
            if shape == "both" && d < 2 {
                continue;
            }
            let mut sum = Sum::default();
            for t in 0..o.trials {
                let from = 1u64 << 40 | (t << 32) | (d << 8);
                let (ours_extra, theirs_extra): (Vec<RecordId>, Vec<RecordId>) = match shape {
                    "behind" => (Vec::new(), (from..from + d).map(id).collect()),
                    _ => (
                        (from..from + d / 2).map(id).collect(),
                        (from + d / 2..from + d).map(id).collect(),
                    ),
                };
                let mut ours_sk = base.clone();
                ours_extra.iter().for_each(|x| ours_sk.add(x));
                let mut theirs_sk = base.clone();
                theirs_extra.iter().for_each(|x| theirs_sk.add(x));
                let ours_ix = IdSnapshot::from_ids(common.iter().chain(&ours_extra).copied());
                let theirs_ix = IdSnapshot::from_ids(common.iter().chain(&theirs_extra).copied());

                let t = Instant::now();
                let (need, _, rounds, bytes) =
                    reconcile_local(ours_ix.clone(), &theirs_ix).expect("negentropy reconciles");
                sum.neg_ms += t.elapsed().as_secs_f64() * 1e3;
                assert_eq!(need.len() as u64, theirs_extra.len() as u64);
                sum.neg_rounds = sum.neg_rounds.max(rounds);
                sum.neg_bytes += bytes;

                let ours_sk = Arc::new(ours_sk);
                let t = Instant::now();
                let (need, have, rounds, bytes, fell_back) =
                    reconcile_sketch_local((ours_sk.clone(), ours_ix), (&theirs_sk, &theirs_ix))
                        .expect("sync reconciles");
                sum.rib_ms += t.elapsed().as_secs_f64() * 1e3;
                let mut need = need;
                need.sort();
                let mut want = theirs_extra.clone();
                want.sort();
                assert_eq!(need, want, "sync found exactly what it lacks");
                assert_eq!(have, ours_extra.len() as u64);
                sum.rib_rounds = sum.rib_rounds.max(rounds);
                sum.rib_bytes += bytes;
                sum.fell_back += fell_back as u64;
                if let Some(s) = streamed_symbols(&ours_sk, &theirs_sk) {
                    sum.streamed += s as u64;
                    sum.streamed_n += 1;
                }
            }
            let n = o.trials as f64;
            let min = (d * 32) as f64;
            let neg_b = sum.neg_bytes as f64 / n;
            let rib_b = sum.rib_bytes as f64 / n;
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
                "| {d} | {shape} | {min:.0} | {} | {neg_b:.0} | {:.1} | {}{fb} | {rib_b:.0} | {:.1} | {streamed} | {:.1} | {:.1} |",
                sum.neg_rounds,
                neg_b / min,
                sum.rib_rounds,
                rib_b / min,
                sum.neg_ms / n,
                sum.rib_ms / n,
            );
        }
    }
    eprintln!(
        "{} trials per row (bytes and ms are means, round trips the most); a coded symbol is {SYMBOL_BYTES} bytes",
        o.trials
    );
}
