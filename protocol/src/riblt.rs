//! Rateless invertible Bloom lookup tables (RIBLT; Yang, Gilad and Alizadeh,
//! SIGCOMM 2024): set reconciliation whose cost follows the difference, not the
//! set.
//!
//! A set of record ids is summarised as an endless sequence of coded symbols; a
//! node keeps the first [`SKETCH_SYMBOLS_MAX`] of its own set up to date as
//! records arrive ([`Sketch::add`]). A peer that wants to reconcile asks for a
//! prefix of the other side's sequence, subtracts its own symbols for the same
//! indices ([`Decoder::add_symbols`]) and peels: a symbol holding exactly one id
//! of the difference gives that id, which is then removed from every other symbol
//! it went into. Whenever the prefix is long enough (about 1.4 to 2 symbols per
//! difference, measured in `BENCHMARKS.md`) every difference comes out;
//! otherwise the decoder asks for more symbols, and nothing is wasted.
//!
//! An id goes into symbol 0 and then into later symbols with probability
//! `1 / (1 + i/2)` at index `i`, chosen by a generator seeded from a hash of the id.
//! A coded symbol is the xor of its ids, the xor of their 64-bit checksums and
//! their count; on the wire the count travels modulo 2^16 (the difference of two
//! counts in one symbol is far below 2^15), so a symbol is [`SYMBOL_BYTES`] bytes.
//!
//! Nothing in a prefix tells its receiver how long a prefix to ask for, and a
//! difference split between both sides leaves the set sizes equal. So a
//! request also carries an [`Estimator`] of the initiator's set: a tug-of-war
//! (AMS) sketch, [`ESTIMATOR_COUNTERS`] counters each summing a +-1 sign per id
//! drawn from the id's hash. The responder subtracts its own counters; each
//! difference is then a sum of `d` random signs for the `d` ids in the
//! symmetric difference (common ids cancel), so the mean of their squares
//! estimates `d` (relative standard error `sqrt(2 / ESTIMATOR_COUNTERS)`, about
//! 9 %, whatever the split), and the responder answers with enough symbols for
//! it ([`symbols_for_estimate`]) in one round trip.
//!
//! Symbols come from peers that may be hostile. Decoding any bytes never panics,
//! and its work is bounded: a decoder that has received `m` symbols peels at most
//! `m` ids (a difference larger than the symbols sent cannot be decoded from them,
//! so more is a lie), and one peel touches `O(log m)` symbols.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use crate::ids::RecordId;

/// Bytes of one coded symbol on the wire: the xor of ids (32), the xor of
/// checksums (8), the count modulo 2^16 (2).
pub const SYMBOL_BYTES: usize = 42;
/// Coded symbols a node keeps of its own set (and so the most a peer may ask it
/// for, or that a decoder accepts): about 700 KiB per node; enough to decode some
/// ten thousand differences.
pub const SKETCH_SYMBOLS_MAX: u32 = 16 * 1024;

/// Counters of the difference-size [`Estimator`] (each travels as 2 bytes).
pub const ESTIMATOR_COUNTERS: usize = 256;
/// Bytes of an [`Estimator`] on the wire: each counter modulo 2^16.
pub const ESTIMATOR_BYTES: usize = 2 * ESTIMATOR_COUNTERS;

const DOMAIN: &str = "medmesh riblt v1 2026-11";

/// One coded symbol: the xor of the ids mapped to it, the xor of their
/// checksums, and how many there are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Symbol {
    sum: [u8; 32],
    check: u64,
    count: i64,
}

impl Symbol {
    fn toggle(&mut self, id: &[u8; 32], check: u64, direction: i64) {
        for (s, b) in self.sum.iter_mut().zip(id) {
            *s ^= b;
        }
        self.check ^= check;
        self.count = self.count.wrapping_add(direction);
    }

    fn is_empty(&self) -> bool {
        self.count == 0 && self.check == 0 && self.sum == [0u8; 32]
    }
}

/// What a decoder was given that no honest peer sends.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RibltError {
    /// The bytes are not a whole number of symbols.
    #[error("coded symbols must be a multiple of {SYMBOL_BYTES} bytes, got {0}")]
    Ragged(usize),
    /// More symbols than a decoder accepts.
    #[error("at most {SKETCH_SYMBOLS_MAX} coded symbols may be exchanged, got {0}")]
    TooManySymbols(u64),
    /// The local symbols given do not cover the remote ones.
    #[error("local symbols must match the remote ones index for index")]
    LocalMismatch,
    /// Peeling found more ids than symbols, or the same id twice: the symbols
    /// are forged or corrupt.
    #[error("coded symbols are inconsistent; reconcile with another peer")]
    Inconsistent,
    /// A difference-size estimator of the wrong length.
    #[error("a difference estimator must be {ESTIMATOR_BYTES} bytes, got {0}")]
    EstimatorLength(usize),
}

/// The checksum and the mapping seed of an id.
fn hash_id(id: &[u8; 32]) -> (u64, u64) {
    let (check, seed, _) = hash_id_signs(id);
    (check, seed)
}

/// The checksum, the mapping seed and the estimator's signs of an id (one bit
/// per counter, set for -1): bytes 0..8, 8..16 and 16..48 of one hash output.
fn hash_id_signs(id: &[u8; 32]) -> (u64, u64, [u8; ESTIMATOR_COUNTERS / 8]) {
    let mut h = blake3::Hasher::new_derive_key(DOMAIN);
    h.update(id);
    let mut b = [0u8; 16 + ESTIMATOR_COUNTERS / 8];
    h.finalize_xof().fill(&mut b);
    let mut check = [0u8; 8];
    let mut seed = [0u8; 8];
    let mut signs = [0u8; ESTIMATOR_COUNTERS / 8];
    check.copy_from_slice(&b[..8]);
    seed.copy_from_slice(&b[8..16]);
    signs.copy_from_slice(&b[16..]);
    (u64::from_le_bytes(check), u64::from_le_bytes(seed), signs)
}

/// A tug-of-war (AMS) sketch of a set, for estimating the size of its symmetric
/// difference with another: counter `j` is the sum over the set's ids of `+1`
/// or `-1`, the id's hash's bit `j`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimator {
    counters: Box<[i64; ESTIMATOR_COUNTERS]>,
}

impl Default for Estimator {
    fn default() -> Self {
        Estimator { counters: Box::new([0; ESTIMATOR_COUNTERS]) }
    }
}

impl Estimator {
    fn add(&mut self, signs: &[u8; ESTIMATOR_COUNTERS / 8]) {
        for (j, c) in self.counters.iter_mut().enumerate() {
            let minus = (signs[j / 8] >> (j % 8)) & 1;
            *c += 1 - 2 * i64::from(minus);
        }
    }

    /// The counters as wire bytes ([`ESTIMATOR_BYTES`]: each modulo 2^16, little
    /// endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ESTIMATOR_BYTES);
        for c in self.counters.iter() {
            out.extend_from_slice(&(*c as u16).to_le_bytes());
        }
        out
    }

    /// Estimates the size of the symmetric difference between our set and the
    /// set whose encoded estimator `remote` is: the mean over counters of the
    /// squared difference (each taken modulo 2^16 as a signed number, exact
    /// while it stays within +-32,767, that is for differences far beyond what
    /// coded symbols reconcile). Any bytes of the right length give a finite
    /// number of at most 2^30.
    pub fn estimate(&self, remote: &[u8]) -> Result<f64, RibltError> {
        if remote.len() != ESTIMATOR_BYTES {
            return Err(RibltError::EstimatorLength(remote.len()));
        }
        let mut sum = 0u64;
        for (c, r) in self.counters.iter().zip(remote.chunks_exact(2)) {
            let theirs = u16::from_le_bytes([r[0], r[1]]);
            let diff = i64::from((*c as u16).wrapping_sub(theirs) as i16);
            sum += (diff * diff) as u64;
        }
        Ok(sum as f64 / ESTIMATOR_COUNTERS as f64)
    }
}

/// The indices an id is mapped to, in increasing order, from 0 on.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    state: u64,
    index: u64,
}

impl Mapping {
    fn new(seed: u64) -> Self {
        Mapping { state: seed, index: 0 }
    }

    /// Moves to the next index. Given the last index `i`, the next one is the
    /// smallest `j > i` with `(j+1)(j+2) >= (i+1)(i+2)/u` for `u` uniform in
    /// (0, 1]: the inverse of `P(next > j) = prod_{k=i+1..=j} (1 - 2/(k+2))`, so
    /// that index `k` is taken with probability `2/(k+2)`.
    fn advance(&mut self) {
        // splitmix64
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let i = self.index as f64;
        let target = (i + 1.0) * (i + 2.0) / u;
        let j = ((-3.0 + (1.0 + 4.0 * target).sqrt()) / 2.0).ceil();
        // Past u64 (u tiny at a large index) the id maps nowhere we will reach.
        let j = if j.is_finite() && j < 1.8e19 { j as u64 } else { u64::MAX };
        self.index = j.max(self.index.saturating_add(1));
    }
}

/// The first symbols of a set's coded sequence, kept up to date as ids are added.
#[derive(Clone, Debug)]
pub struct Sketch {
    symbols: Vec<Symbol>,
    len: u64,
    estimator: Estimator,
}

impl Sketch {
    /// An empty set's first `symbols` coded symbols (at most [`SKETCH_SYMBOLS_MAX`]).
    pub fn new(symbols: u32) -> Self {
        let n = symbols.min(SKETCH_SYMBOLS_MAX) as usize;
        Sketch { symbols: vec![Symbol::default(); n], len: 0, estimator: Estimator::default() }
    }

    /// A sketch of the given ids (each id once).
    pub fn from_ids<'a>(symbols: u32, ids: impl IntoIterator<Item = &'a RecordId>) -> Self {
        let mut s = Sketch::new(symbols);
        for id in ids {
            s.add(id);
        }
        s
    }

    /// Adds an id the set did not hold (the caller deduplicates).
    pub fn add(&mut self, id: &RecordId) {
        let (check, seed, signs) = hash_id_signs(id.as_bytes());
        self.estimator.add(&signs);
        let mut m = Mapping::new(seed);
        let n = self.symbols.len() as u64;
        while m.index < n {
            self.symbols[m.index as usize].toggle(id.as_bytes(), check, 1);
            m.advance();
        }
        self.len += 1;
    }

    /// Ids in the set.
    pub fn set_len(&self) -> u64 {
        self.len
    }

    /// The set's difference-size estimator.
    pub fn estimator(&self) -> &Estimator {
        &self.estimator
    }

    /// Symbols kept.
    pub fn symbols_len(&self) -> u32 {
        self.symbols.len() as u32
    }

    /// Symbols `start..start + count`, clipped to what is kept.
    pub fn symbols(&self, start: u32, count: u32) -> &[Symbol] {
        let start = (start as usize).min(self.symbols.len());
        let end = start.saturating_add(count as usize).min(self.symbols.len());
        &self.symbols[start..end]
    }
}

/// Symbols as wire bytes ([`SYMBOL_BYTES`] each).
pub fn encode_symbols(symbols: &[Symbol]) -> Vec<u8> {
    let mut out = Vec::with_capacity(symbols.len() * SYMBOL_BYTES);
    for s in symbols {
        out.extend_from_slice(&s.sum);
        out.extend_from_slice(&s.check.to_le_bytes());
        out.extend_from_slice(&(s.count as u16).to_le_bytes());
    }
    out
}

/// Symbols a peer sent. Their counts are known modulo 2^16 only, which is all
/// [`Decoder::add_symbols`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSymbols(Vec<([u8; 32], u64, u16)>);

impl RemoteSymbols {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads symbols from a peer: whole symbols, at most [`SKETCH_SYMBOLS_MAX`].
pub fn decode_symbols(bytes: &[u8]) -> Result<RemoteSymbols, RibltError> {
    if !bytes.len().is_multiple_of(SYMBOL_BYTES) {
        return Err(RibltError::Ragged(bytes.len()));
    }
    let n = bytes.len() / SYMBOL_BYTES;
    if n > SKETCH_SYMBOLS_MAX as usize {
        return Err(RibltError::TooManySymbols(n as u64));
    }
    let mut out = Vec::with_capacity(n);
    for c in bytes.chunks_exact(SYMBOL_BYTES) {
        let mut sum = [0u8; 32];
        sum.copy_from_slice(&c[..32]);
        let mut check = [0u8; 8];
        check.copy_from_slice(&c[32..40]);
        let count = u16::from_le_bytes([c[40], c[41]]);
        out.push((sum, u64::from_le_bytes(check), count));
    }
    Ok(RemoteSymbols(out))
}

/// One id peeled so far, with where its mapping has got to.
#[derive(Clone, Copy, Debug)]
struct Peeled {
    id: [u8; 32],
    check: u64,
    /// +1: only the remote side holds it; -1: only we do.
    side: i64,
    mapping: Mapping,
}

/// The decoding side of a reconciliation: remote symbols minus local ones,
/// peeled as they arrive.
#[derive(Debug, Default)]
pub struct Decoder {
    diff: Vec<Symbol>,
    peeled: Vec<Peeled>,
    seen: HashSet<[u8; 32]>,
}

/// The outcome of a decoding so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// Every difference is known.
    Done {
        /// Ids only the remote side holds.
        remote_only: Vec<RecordId>,
        /// Ids only we hold.
        local_only: Vec<RecordId>,
    },
    /// More symbols are needed; this many ids have come out so far.
    NeedMore { peeled: u64 },
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Symbols received so far.
    pub fn symbols_len(&self) -> u32 {
        self.diff.len() as u32
    }

    /// Takes the remote side's next symbols and our own for the same indices
    /// (`local` may be longer; its first `symbols_len()` are skipped), then peels.
    pub fn add_symbols(
        &mut self,
        remote: &RemoteSymbols,
        local: &Sketch,
    ) -> Result<Decoded, RibltError> {
        let start = self.diff.len();
        let total = start as u64 + remote.len() as u64;
        if total > SKETCH_SYMBOLS_MAX as u64 {
            return Err(RibltError::TooManySymbols(total));
        }
        let local = local.symbols(start as u32, remote.len() as u32);
        if local.len() != remote.len() {
            return Err(RibltError::LocalMismatch);
        }
        for ((sum, check, count), mine) in remote.0.iter().zip(local) {
            let mut d = Symbol {
                sum: *sum,
                check: *check,
                count: count.wrapping_sub(mine.count as u16) as i16 as i64,
            };
            for (a, b) in d.sum.iter_mut().zip(&mine.sum) {
                *a ^= b;
            }
            d.check ^= mine.check;
            self.diff.push(d);
        }
        // Ids peeled before reach into the new symbols too.
        let end = self.diff.len() as u64;
        for p in &mut self.peeled {
            while p.mapping.index < end {
                self.diff[p.mapping.index as usize].toggle(&p.id, p.check, -p.side);
                p.mapping.advance();
            }
        }
        let mut queue: Vec<u64> = (start as u64..end).collect();
        while let Some(i) = queue.pop() {
            self.peel(i, &mut queue)?;
        }
        Ok(self.outcome())
    }

    fn peel(&mut self, i: u64, queue: &mut Vec<u64>) -> Result<(), RibltError> {
        let s = self.diff[i as usize];
        if s.count != 1 && s.count != -1 {
            return Ok(());
        }
        let (check, seed) = hash_id(&s.sum);
        if check != s.check {
            return Ok(());
        }
        // A pure symbol's id must map to it (a cheap second check).
        let mut m = Mapping::new(seed);
        while m.index < i {
            m.advance();
        }
        if m.index != i {
            return Ok(());
        }
        if !self.seen.insert(s.sum) || self.peeled.len() >= self.diff.len() {
            return Err(RibltError::Inconsistent);
        }
        let side = s.count;
        let mut m = Mapping::new(seed);
        let end = self.diff.len() as u64;
        while m.index < end {
            let j = m.index as usize;
            self.diff[j].toggle(&s.sum, check, -side);
            if m.index != i {
                queue.push(m.index);
            }
            m.advance();
        }
        self.peeled.push(Peeled { id: s.sum, check, side, mapping: m });
        Ok(())
    }

    fn outcome(&self) -> Decoded {
        match self.diff.first() {
            Some(first) if first.is_empty() => {
                let mut remote_only = Vec::new();
                let mut local_only = Vec::new();
                for p in &self.peeled {
                    let id = RecordId::from_bytes(p.id);
                    if p.side > 0 { remote_only.push(id) } else { local_only.push(id) }
                }
                Decoded::Done { remote_only, local_only }
            }
            _ => Decoded::NeedMore { peeled: self.peeled.len() as u64 },
        }
    }
}

/// Symbols to ask for first when the difference is thought to be `d` ids: enough
/// to decode it most of the time (measured: see `BENCHMARKS.md`).
pub fn symbols_for_difference(d: u64) -> u32 {
    let want = d.saturating_mul(3) / 2 + 8 + if d < 200 { d / 4 + 8 } else { 0 };
    want.min(SKETCH_SYMBOLS_MAX as u64) as u32
}

/// Symbols to answer a first request with when the [`Estimator`] says the
/// difference is about `estimate` ids and the set sizes differ by
/// `sizes_differ_by` (exactly known, and a floor under the difference): enough
/// to decode it in one round trip 99 times in 100 at every size, measured
/// (`BENCHMARKS.md`). `None` when the difference needs more than the symbols
/// kept.
///
/// For `x` differences, decoding takes `(1.35 + 1.1/sqrt(x)) x` symbols on
/// average (1.45 per difference at 100, 1.36 at 10,000), with a standard
/// deviation of about `1.5 sqrt(x)`; the estimate's relative error is
/// `sqrt(2 / ESTIMATOR_COUNTERS)`. The answer is the larger of what the
/// estimate needs with 2.5 of both deviations, and what the sizes' difference
/// needs with 2.5 of the first alone; plus 6.
pub fn symbols_for_estimate(estimate: f64, sizes_differ_by: u64) -> Option<u32> {
    // NaN and infinities (no estimator makes them, but the bound is the point).
    let estimate = if estimate.is_finite() { estimate.max(0.0) } else { f64::MAX };
    let floor = sizes_differ_by as f64;
    // Every counter off by exactly one: one difference (three or more would
    // leave some counter off by 3 or more, but for a chance of 0.75^256), and
    // symbol 0 holds it alone.
    if estimate == 1.0 && sizes_differ_by <= 1 {
        return Some(1);
    }
    let estimator_error = (2.0 / ESTIMATOR_COUNTERS as f64).sqrt();
    // None only when even an estimate 2.5 errors too high needs more than is
    // kept; between that and the mean, all that is kept.
    let low = estimate / (1.0 + 2.5 * estimator_error);
    if mean_symbols(low.max(floor)) > SKETCH_SYMBOLS_MAX as f64 {
        return None;
    }
    let want = symbols_with_margin(estimate, estimator_error).max(symbols_with_margin(floor, 0.0));
    Some((want as u32).min(SKETCH_SYMBOLS_MAX))
}

/// Symbols that decode `x` differences on average.
fn mean_symbols(x: f64) -> f64 {
    if x <= 0.0 { 0.0 } else { (1.35 + 1.1 / x.sqrt()) * x }
}

/// Symbols that decode about `x` differences, known to a relative error of
/// `error`, 99 times in 100.
fn symbols_with_margin(x: f64, error: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let mean = mean_symbols(x);
    let spread = (1.5 * 1.5 * x + (error * mean).powi(2)).sqrt();
    (mean + 2.5 * spread + 6.0).ceil()
}

/// Reconciles two sketches in memory, asking for `first` symbols and then doubling
/// (benches and tests): returns the outcome and the symbols exchanged per round.
pub fn reconcile_local(
    ours: &Sketch,
    theirs: &Sketch,
    first: u32,
) -> Result<(Decoded, Vec<u32>), RibltError> {
    let mut dec = Decoder::new();
    let mut rounds = Vec::new();
    let mut ask = first.max(1);
    loop {
        let start = dec.symbols_len();
        let batch = theirs.symbols(start, ask);
        if batch.is_empty() {
            return Ok((dec.outcome(), rounds));
        }
        let remote = decode_symbols(&encode_symbols(batch))?;
        rounds.push(remote.len() as u32);
        let out = dec.add_symbols(&remote, ours)?;
        if let Decoded::Done { .. } = out {
            return Ok((out, rounds));
        }
        ask = dec.symbols_len();
    }
}

/// Counts of ids per mapping index, for tests of the distribution.
#[doc(hidden)]
pub fn mapping_counts(seeds: impl IntoIterator<Item = u64>, symbols: u32) -> HashMap<u64, u64> {
    let mut out = HashMap::new();
    for seed in seeds {
        let mut m = Mapping::new(seed);
        while m.index < symbols as u64 {
            *out.entry(m.index).or_insert(0) += 1;
            m.advance();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(i: u64) -> RecordId {
        let mut b = *blake3::hash(&i.to_le_bytes()).as_bytes();
        b[0] ^= 1;
        RecordId::from_bytes(b)
    }

    fn sorted(mut v: Vec<RecordId>) -> Vec<RecordId> {
        v.sort();
        v
    }

    #[test]
    fn an_id_lands_in_symbol_i_with_probability_two_over_i_plus_two() {
        let n = 20_000u64;
        let counts = mapping_counts(0..n, 1000);
        assert_eq!(counts[&0], n);
        for i in [1u64, 2, 10, 100, 999] {
            let want = n as f64 * 2.0 / (i as f64 + 2.0);
            let got = *counts.get(&i).unwrap_or(&0) as f64;
            let sd = want.sqrt();
            assert!((got - want).abs() < 5.0 * sd + 1.0, "index {i}: {got} vs {want}");
        }
    }

    #[test]
    fn a_hundred_differences_among_ten_thousand_come_out_exactly() {
        let common: Vec<RecordId> = (0..10_000).map(id).collect();
        let ours_extra: Vec<RecordId> = (100_000..100_050).map(id).collect();
        let theirs_extra: Vec<RecordId> = (200_000..200_050).map(id).collect();
        let ours = Sketch::from_ids(1024, common.iter().chain(&ours_extra));
        let theirs = Sketch::from_ids(1024, common.iter().chain(&theirs_extra));
        let (out, rounds) = reconcile_local(&ours, &theirs, 16).unwrap();
        let Decoded::Done { remote_only, local_only } = out else { panic!("not decoded") };
        assert_eq!(sorted(remote_only), sorted(theirs_extra));
        assert_eq!(sorted(local_only), sorted(ours_extra));
        let symbols: u32 = rounds.iter().sum();
        assert!(symbols <= 512, "{symbols} symbols for 100 differences");
    }

    #[test]
    fn equal_sets_decode_from_one_symbol() {
        let ids: Vec<RecordId> = (0..1000).map(id).collect();
        let a = Sketch::from_ids(64, &ids);
        let (out, rounds) = reconcile_local(&a, &a.clone(), 1).unwrap();
        assert_eq!(out, Decoded::Done { remote_only: vec![], local_only: vec![] });
        assert_eq!(rounds, vec![1]);
    }

    #[test]
    fn too_few_symbols_say_they_need_more_and_more_finish_the_job() {
        let a = Sketch::from_ids(256, &[]);
        let extra: Vec<RecordId> = (0..60).map(id).collect();
        let b = Sketch::from_ids(256, &extra);
        let mut dec = Decoder::new();
        let first = decode_symbols(&encode_symbols(b.symbols(0, 10))).unwrap();
        assert!(matches!(dec.add_symbols(&first, &a).unwrap(), Decoded::NeedMore { .. }));
        let rest = decode_symbols(&encode_symbols(b.symbols(10, 246))).unwrap();
        let Decoded::Done { remote_only, local_only } = dec.add_symbols(&rest, &a).unwrap() else {
            panic!("not decoded from 256 symbols")
        };
        assert_eq!(sorted(remote_only), sorted(extra));
        assert!(local_only.is_empty());
    }

    fn estimate(a: &[RecordId], b: &[RecordId]) -> f64 {
        let (a, b) = (Sketch::from_ids(1, a), Sketch::from_ids(1, b));
        a.estimator().estimate(&b.estimator().encode()).unwrap()
    }

    #[test]
    fn the_estimator_says_zero_for_equal_sets_and_one_for_one_difference() {
        let common: Vec<RecordId> = (0..500).map(id).collect();
        assert_eq!(estimate(&common, &common), 0.0);
        let more: Vec<RecordId> = common.iter().copied().chain([id(9_999)]).collect();
        assert_eq!(estimate(&common, &more), 1.0);
        assert_eq!(estimate(&more, &common), 1.0);
    }

    #[test]
    fn the_estimate_of_a_hundred_differences_holds_whatever_the_split() {
        let common: Vec<RecordId> = (0..2_000).map(id).collect();
        for ours in [0u64, 10, 50, 90, 100] {
            let mut sum = 0.0;
            let trials = 40;
            for t in 0..trials {
                let from = 1_000_000 * (t + 1);
                let a: Vec<RecordId> =
                    common.iter().copied().chain((from..from + ours).map(id)).collect();
                let b: Vec<RecordId> =
                    common.iter().copied().chain((from + ours..from + 100).map(id)).collect();
                let e = estimate(&a, &b);
                // 9 % relative error each: six of them is a broken estimator.
                assert!((46.0..=154.0).contains(&e), "{ours}/{}: {e}", 100 - ours);
                sum += e;
            }
            let mean = sum / trials as f64;
            // The mean of 40 has a relative error of 1.4 %.
            assert!((94.0..=106.0).contains(&mean), "{ours}/{}: mean {mean}", 100 - ours);
        }
    }

    #[test]
    fn an_estimator_of_the_wrong_length_is_refused() {
        let e = Estimator::default();
        assert_eq!(e.estimate(&[0u8; 511]), Err(RibltError::EstimatorLength(511)));
        assert_eq!(e.estimate(&[]), Err(RibltError::EstimatorLength(0)));
    }

    #[test]
    fn the_answer_for_an_estimate_grows_with_it_and_stops_at_the_kept_symbols() {
        assert_eq!(symbols_for_estimate(0.0, 0), Some(1));
        assert_eq!(symbols_for_estimate(1.0, 1), Some(1));
        assert!(symbols_for_estimate(1.5, 1).unwrap() > 1);
        // Near the kept symbols: all of them, until the estimate is well past.
        assert_eq!(symbols_for_estimate(12_500.0, 0), Some(SKETCH_SYMBOLS_MAX));
        assert_eq!(symbols_for_estimate(16_000.0, 0), None);
        let mut last = 0;
        for d in [1.5, 2.0, 10.0, 100.0, 1_000.0, 10_000.0] {
            let n = symbols_for_estimate(d, 0).expect("within the kept symbols");
            assert!(n as f64 >= 1.4 * d && n > last, "{d}: {n}");
            last = n;
        }
        // The set sizes are a floor under the estimate, known without its error.
        let floor = symbols_for_estimate(1.0, 100).unwrap();
        assert!(floor >= 170 && floor < symbols_for_estimate(100.0, 0).unwrap(), "{floor}");
        // 100 differences: about 200 symbols, not 1.5 times that.
        assert!((170..=230).contains(&symbols_for_estimate(100.0, 0).unwrap()));
        for lie in [f64::NAN, f64::INFINITY, -1.0, 1e30] {
            let n = symbols_for_estimate(lie, 0);
            assert!(n.is_none_or(|n| n <= SKETCH_SYMBOLS_MAX), "{lie}: {n:?}");
        }
        assert_eq!(symbols_for_estimate(0.0, 1_000_000), None);
    }

    #[test]
    fn ragged_or_oversized_symbol_bytes_are_refused() {
        assert_eq!(decode_symbols(&[0u8; 43]), Err(RibltError::Ragged(43)));
        let big = vec![0u8; SYMBOL_BYTES * (SKETCH_SYMBOLS_MAX as usize + 1)];
        assert!(matches!(decode_symbols(&big), Err(RibltError::TooManySymbols(_))));
    }

    #[test]
    fn a_forged_symbol_naming_one_id_twice_is_inconsistent_not_a_loop() {
        // Symbols claiming the same id on both sides of index 0 and 1.
        let x = id(7);
        let ours = Sketch::new(4);
        let mut forged = Sketch::from_ids(4, &[x]);
        // Tamper: zero symbol 0's count so peeling starts from a later symbol and
        // meets the id again with the opposite sign.
        forged.symbols[0].count = -1;
        let remote = decode_symbols(&encode_symbols(forged.symbols(0, 4))).unwrap();
        let mut dec = Decoder::new();
        let out = dec.add_symbols(&remote, &ours);
        assert!(matches!(out, Ok(_) | Err(RibltError::Inconsistent)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any two sets: decoding returns exactly the symmetric difference, or
        /// says it needs more symbols.
        #[test]
        fn decoding_returns_the_symmetric_difference_or_asks_for_more(
            common in proptest::collection::btree_set(0u64..1_000_000, 0..300),
            a_only in proptest::collection::btree_set(1_000_000u64..2_000_000, 0..80),
            b_only in proptest::collection::btree_set(2_000_000u64..3_000_000, 0..80),
            m in 1u32..400,
        ) {
            let a_ids: Vec<RecordId> = common.iter().chain(&a_only).map(|&i| id(i)).collect();
            let b_ids: Vec<RecordId> = common.iter().chain(&b_only).map(|&i| id(i)).collect();
            let a = Sketch::from_ids(m, &a_ids);
            let b = Sketch::from_ids(m, &b_ids);
            let remote = decode_symbols(&encode_symbols(b.symbols(0, m))).unwrap();
            match Decoder::new().add_symbols(&remote, &a).unwrap() {
                Decoded::Done { remote_only, local_only } => {
                    prop_assert_eq!(sorted(remote_only), sorted(b_only.iter().map(|&i| id(i)).collect()));
                    prop_assert_eq!(sorted(local_only), sorted(a_only.iter().map(|&i| id(i)).collect()));
                }
                Decoded::NeedMore { .. } => {
                    prop_assert!(!a_only.is_empty() || !b_only.is_empty());
                }
            }
        }

        /// Any estimator bytes of the right length give a finite estimate of at
        /// most 2^30 (a counter's difference is at most 2^15).
        #[test]
        fn any_estimator_bytes_give_a_bounded_estimate(
            raw in proptest::collection::vec(any::<u8>(), ESTIMATOR_BYTES),
            ours in proptest::collection::btree_set(0u64..1000, 0..50),
        ) {
            let local = Sketch::from_ids(1, &ours.iter().map(|&i| id(i)).collect::<Vec<_>>());
            let e = local.estimator().estimate(&raw).unwrap();
            prop_assert!(e.is_finite() && (0.0..=(1u64 << 30) as f64).contains(&e));
        }

        /// Hostile symbols: any bytes decode to an error or an outcome, never a
        /// panic or an endless loop, and never more ids than symbols.
        #[test]
        fn hostile_symbols_never_panic_and_peel_at_most_one_id_per_symbol(
            raw in proptest::collection::vec(any::<u8>(), 0..(SYMBOL_BYTES * 64)),
            pure in proptest::collection::vec((0u64..1000, any::<bool>()), 0..64),
            ours in proptest::collection::btree_set(0u64..1000, 0..50),
        ) {
            let local = Sketch::from_ids(SKETCH_SYMBOLS_MAX, &ours.iter().map(|&i| id(i)).collect::<Vec<_>>());
            // Random bytes, then genuinely pure-looking symbols for real ids at
            // random signs, in the same stream.
            let mut bytes = raw[..raw.len() - raw.len() % SYMBOL_BYTES].to_vec();
            for (i, neg) in &pure {
                let x = id(*i);
                let (check, _) = hash_id(x.as_bytes());
                bytes.extend_from_slice(x.as_bytes());
                bytes.extend_from_slice(&check.to_le_bytes());
                bytes.extend_from_slice(&(if *neg { u16::MAX } else { 1 }).to_le_bytes());
            }
            let remote = decode_symbols(&bytes).unwrap();
            let mut dec = Decoder::new();
            match dec.add_symbols(&remote, &local) {
                Ok(Decoded::Done { remote_only, local_only }) => {
                    prop_assert!(remote_only.len() + local_only.len() <= remote.len());
                }
                Ok(Decoded::NeedMore { peeled }) => prop_assert!(peeled <= remote.len() as u64),
                Err(RibltError::Inconsistent) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }
}
