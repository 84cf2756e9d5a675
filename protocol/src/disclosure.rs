//! What a release may disclose: the benchmark's [`Disclosure`] rules as small
//! functions, shared by the committee members who build releases
//! ([`crate::leaderboard::build_release`]) and the fold that checks them.
//!
//! - Values are rounded to the policy's precision ([`round_value`]) and the fold
//!   accepts only values on that grid ([`is_rounded`]).
//! - Only the policy's metrics are released ([`metric_allowed`]).
//! - A dataset appears in a per-dataset release under its name only when its
//!   owner allowed it, else under a [`pseudonym`] keyed with a secret sealed to
//!   the committee: nothing public ties a pseudonym to a dataset.
//!
//! Metric values are fixed-point millionths today; the value-level functions are
//! kept apart so that a change of the value type touches only them.

use crate::ids::RecordId;
use std::collections::BTreeSet;

use crate::record::{Disclosure, Release, SealedDetails, SharingPolicy};

/// `value` rounded to the nearest multiple of `precision` (halves away from
/// zero); `precision` 0 or 1 leaves it as it is.
pub fn round_value(value: i64, precision: u64) -> i64 {
    let Ok(step) = i64::try_from(precision) else { return 0 };
    if step <= 1 {
        return value;
    }
    let q = value / step;
    let r = value % step;
    let q = if r.unsigned_abs() * 2 >= step.unsigned_abs() { q + r.signum() } else { q };
    q.saturating_mul(step)
}

/// True when `value` lies on the `precision` grid.
pub fn is_rounded(value: i64, precision: u64) -> bool {
    match i64::try_from(precision) {
        Ok(step) if step > 1 => value % step == 0,
        Ok(_) => true,
        Err(_) => value == 0,
    }
}

/// True when the policy lets releases show `metric`.
pub fn metric_allowed(d: &Disclosure, metric: &str) -> bool {
    d.metrics.is_empty() || d.metrics.iter().any(|m| m == metric)
}

/// A dataset's pseudonym in one benchmark's releases: keyed with the dataset's
/// sealed pseudonym key, so it is no function of anything public.
pub fn pseudonym(pseudonym_key: &[u8], benchmark: &RecordId) -> String {
    let key: [u8; 32] = pseudonym_key.try_into().unwrap_or([0; 32]);
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(b"medmesh/pseudonym/v2");
    h.update(benchmark.as_bytes());
    format!("site-{}", &h.finalize().to_hex()[..12])
}

/// How a dataset appears in a release: its name if the owner allowed, else its
/// pseudonym.
pub fn dataset_label(benchmark: &RecordId, sealed: &SealedDetails) -> String {
    if sealed.details.name_public {
        sealed.details.name.clone()
    } else {
        pseudonym(&sealed.pseudonym_key.0, benchmark)
    }
}

/// Why `release` discloses more than `d` allows: a metric the policy leaves out,
/// or a value off the precision grid.
pub fn check_release(release: &Release, d: &Disclosure) -> Result<(), &'static str> {
    for e in &release.entries {
        for (name, v) in &e.metrics {
            if !metric_allowed(d, name) {
                return Err("release shows a metric the benchmark's disclosure policy leaves out");
            }
            if let crate::metric::Figure::Millionths(v) = v
                && !is_rounded(*v, d.precision)
            {
                return Err("release shows a value finer than the disclosure policy's precision");
            }
        }
    }
    Ok(())
}

/// Datasets a per-dataset release may add to the one shown before it (or show
/// in a first release): none, or at least this many. A lone new dataset's
/// pseudonym would be named by the result records (which dataset has new
/// results) and its values read off by difference.
pub const NEW_DATASETS_MIN: usize = 2;

/// Why `release` would let anyone attribute a single dataset's values by
/// comparing it with `before`, the release shown before it: a per-dataset
/// release that adds exactly one dataset (or shows just one at first), an
/// aggregate whose dataset count for a model moved by less than `min_datasets`.
pub fn check_difference(
    before: Option<&Release>,
    release: &Release,
    sharing: &SharingPolicy,
) -> Result<(), &'static str> {
    match sharing {
        SharingPolicy::PerDataset => {
            let labels = |r: &Release| -> BTreeSet<String> {
                r.entries.iter().filter_map(|e| e.dataset.clone()).collect()
            };
            let shown = before.map(labels).unwrap_or_default();
            let added = labels(release).difference(&shown).count();
            if added > 0 && added < NEW_DATASETS_MIN {
                return Err(
                    "release adds a single dataset to the one shown before it, which would name it",
                );
            }
        }
        SharingPolicy::Aggregate { min_datasets } => {
            let Some(before) = before else { return Ok(()) };
            for e in &release.entries {
                let prev = before.entries.iter().find(|p| p.model == e.model);
                if let Some(p) = prev {
                    let moved = e.datasets.abs_diff(p.datasets);
                    if moved > 0 && moved < *min_datasets {
                        return Err(
                            "release moves a model's aggregate by fewer datasets than min_datasets, which would reveal them by difference",
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_to_the_nearest_step_halves_away_from_zero() {
        assert_eq!(round_value(428_571, 10_000), 430_000);
        assert_eq!(round_value(425_000, 10_000), 430_000);
        assert_eq!(round_value(424_999, 10_000), 420_000);
        assert_eq!(round_value(-425_000, 10_000), -430_000);
        assert_eq!(round_value(7_000_000, 5_000_000), 5_000_000);
        assert_eq!(round_value(123, 1), 123);
        // Extremes saturate instead of overflowing.
        assert_eq!(round_value(i64::MAX, 10), i64::MAX);
        assert_eq!(round_value(i64::MIN, 10), i64::MIN);
    }

    #[test]
    fn rounded_values_are_on_the_grid_and_others_are_not() {
        for v in [-1_234_567, 0, 1, 428_571, 999_999] {
            assert!(is_rounded(round_value(v, 10_000), 10_000));
        }
        assert!(!is_rounded(428_571, 10_000));
        assert!(is_rounded(428_571, 1));
    }

    #[test]
    fn a_pseudonym_depends_on_the_secret_key_not_only_on_public_ids() {
        let b = RecordId::from_bytes([1; 32]);
        let p1 = pseudonym(&[7; 32], &b);
        assert_eq!(p1, pseudonym(&[7; 32], &b));
        assert_ne!(p1, pseudonym(&[8; 32], &b));
        assert_ne!(p1, pseudonym(&[7; 32], &RecordId::from_bytes([2; 32])));
        assert!(p1.starts_with("site-"));
    }
}
