//! The one signature rule on every path, and the encodings it refuses up front.
//!
//! Every path that accepts a record (gossip, a submission, sync, an import, the
//! reload at start) verifies its signature with `verify_strict`, record by record.
//! Batch verification is not used: its cofactorless random linear combination
//! accepts a signature whose `R` carries a small-order component `T`
//! (`R' = rB + T`, `s = r + H(R'||A||M)a`) whenever the batch's coefficient for it
//! is a multiple of `T`'s order (half the time for order 2), while
//! `verify_strict` always refuses it; nodes that ingest by different paths would
//! then hold different record sets. Refusing such points at decode instead
//! (decompression and a torsion check on `A` and `R`) costs two scalar
//! multiplications per record, more than the strict check saves over a batch
//! (measured in BENCHMARKS.md), so the rule is strict verification everywhere.
//!
//! Decoding also refuses, by their bytes alone (no curve arithmetic), what no
//! honest signer writes, so that such records get a name of their own: a second
//! (non-canonical) spelling of a point as `A` or `R`, an `A` or `R` of small
//! order, and an unreduced `s`. `verify_strict` refuses all of these too.

use std::sync::LazyLock;

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;

/// Why 32 bytes are not an acceptable point encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PointFault {
    NonCanonical,
    SmallOrder,
}

/// The canonical encodings of the eight points of order dividing 8.
static SMALL_ORDER: LazyLock<[[u8; 32]; 8]> = LazyLock::new(|| {
    let t8 = CompressedEdwardsY(ORDER_8_POINT).decompress().expect("a point of order 8");
    let mut out = [[0u8; 32]; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (t8 * Scalar::from(i as u8)).compress().to_bytes();
    }
    out
});

/// A point of order 8 (so its multiples are the whole torsion subgroup).
pub(crate) const ORDER_8_POINT: [u8; 32] = [
    0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
    0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
];

/// Refuse a second spelling of a point (`y` of `p = 2^255 - 19` or more, or the
/// sign bit set where `x = 0`, that is `y = ±1`) and the small-order points.
/// Bytes that are no point at all pass here and fail the signature check.
pub(crate) fn check_encoding(bytes: &[u8; 32]) -> Result<(), PointFault> {
    let mut y = *bytes;
    let sign = y[31] >> 7;
    y[31] &= 0x7f;
    let y_at_least_p = y[31] == 0x7f && y[1..31].iter().all(|b| *b == 0xff) && y[0] >= 0xed;
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    if y_at_least_p || (sign == 1 && (y == one || y == minus_one)) {
        return Err(PointFault::NonCanonical);
    }
    if SMALL_ORDER.contains(bytes) {
        return Err(PointFault::SmallOrder);
    }
    Ok(())
}

/// `s` is reduced modulo the group order.
pub(crate) fn is_canonical_scalar(bytes: &[u8; 32]) -> bool {
    Scalar::from_canonical_bytes(*bytes).is_some().into()
}

/// The same verdict from curve arithmetic, for tests of [`check_encoding`].
#[cfg(test)]
fn check_by_decompressing(bytes: &[u8; 32]) -> Option<Result<(), PointFault>> {
    let p: curve25519_dalek::EdwardsPoint = CompressedEdwardsY(*bytes).decompress()?;
    Some(if p.compress().as_bytes() != bytes {
        Err(PointFault::NonCanonical)
    } else if p.is_small_order() {
        Err(PointFault::SmallOrder)
    } else {
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;

    /// Every 32-byte string whose y is p + 0 ..= p + 18, with either sign bit,
    /// and every torsion point with either sign bit.
    fn edge_encodings() -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        for k in 0..19u8 {
            for sign in [0u8, 0x80] {
                let mut b = [0xffu8; 32];
                b[0] = 0xed + k;
                b[31] = 0x7f | sign;
                out.push(b);
            }
        }
        for t in SMALL_ORDER.iter() {
            for sign in [0u8, 0x80] {
                let mut b = *t;
                b[31] ^= sign;
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn the_byte_check_agrees_with_curve_arithmetic_on_every_edge_encoding() {
        let mut points = 0;
        for b in edge_encodings() {
            if let Some(verdict) = check_by_decompressing(&b) {
                points += 1;
                assert_eq!(check_encoding(&b), verdict, "{}", hex::encode(b));
            }
        }
        assert!(points >= 16, "{points} edge encodings decode");
    }

    #[test]
    fn honest_points_and_their_torsion_offsets_pass_the_byte_check() {
        // Mixed-order points are not refused here: verify_strict refuses their
        // signatures (as R), or accepts them the same way on every path (as A).
        for i in 1..200u64 {
            let q = ED25519_BASEPOINT_POINT * Scalar::from(i * 7919);
            for t in SMALL_ORDER.iter() {
                let p = q + CompressedEdwardsY(*t).decompress().expect("a point");
                let b = p.compress().to_bytes();
                assert_eq!(check_encoding(&b), Ok(()), "{}", hex::encode(b));
                assert_eq!(check_by_decompressing(&b), Some(Ok(())));
            }
        }
    }

    #[test]
    fn the_small_order_points_are_eight_distinct_encodings() {
        let mut v = SMALL_ORDER.to_vec();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 8);
    }
}
