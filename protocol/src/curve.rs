//! The one rule for Ed25519 points that MedMesh accepts: a public key `A` and a
//! signature's `R` must each be the canonical encoding of a point of the
//! prime-order subgroup, other than the identity; a signature's `s` must be
//! reduced. Honest signers only ever produce such values.
//!
//! Why: with `A` and `R` in the prime-order subgroup, `sB - kA - R` is in it too,
//! so the cofactorless check (`verify_strict`), the cofactored check and a random
//! linear combination of many (batch verification) all accept exactly the same
//! signatures. A point with a small-order component `T` breaks that: a signature
//! with `R' = rB + T` fails `verify_strict` but passes a batch whenever the
//! batch's random coefficient for it kills `T` (half the time for a `T` of order
//! 2), so nodes that ingest by different paths would hold different record sets.
//! A non-canonical encoding would give one point two spellings (and two hashes).
//!
//! The torsion check costs one variable-time scalar multiplication per point
//! (these are public values, so variable time leaks nothing); see BENCHMARKS.md.

use std::sync::LazyLock;

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;

/// Why 32 bytes are not an acceptable point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PointFault {
    NotAPoint,
    NonCanonical,
    SmallOrder,
    MixedOrder,
}

/// The inverse of the cofactor 8 modulo the group order: `8 · (c · P)` is the
/// prime-order component of `P`.
static COFACTOR_INVERSE: LazyLock<Scalar> = LazyLock::new(|| Scalar::from(8u8).invert());

/// Decode `bytes` as a canonically encoded point of the prime-order subgroup,
/// not the identity.
pub(crate) fn prime_order_point(bytes: &[u8; 32]) -> Result<EdwardsPoint, PointFault> {
    let point = CompressedEdwardsY(*bytes).decompress().ok_or(PointFault::NotAPoint)?;
    if point.compress().as_bytes() != bytes {
        return Err(PointFault::NonCanonical);
    }
    if point.is_small_order() {
        return Err(PointFault::SmallOrder);
    }
    if !is_torsion_free(&point) {
        return Err(PointFault::MixedOrder);
    }
    Ok(point)
}

/// `P` is torsion-free when it equals its prime-order component `8 · (c · P)`
/// (with `P = Q + T`: `8c·Q = Q` because `8c ≡ 1 mod ℓ`, and `8c·T = c·8T = 0`).
/// Variable time, about twice as fast as dalek's constant-time `is_torsion_free`.
pub(crate) fn is_torsion_free(point: &EdwardsPoint) -> bool {
    let c_p =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&COFACTOR_INVERSE, point, &Scalar::ZERO);
    c_p.mul_by_cofactor() == *point
}

/// `s` as a scalar if it is reduced modulo the group order.
pub(crate) fn canonical_scalar(bytes: &[u8; 32]) -> Option<Scalar> {
    Scalar::from_canonical_bytes(*bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;

    /// The eight points of order dividing 8, from one of order 8.
    fn torsion() -> Vec<EdwardsPoint> {
        let t8 = CompressedEdwardsY(
            hex::decode("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
                .expect("hex")
                .try_into()
                .expect("32 bytes"),
        )
        .decompress()
        .expect("a point of order 8");
        (0..8u8).map(|i| t8 * Scalar::from(i)).collect()
    }

    #[test]
    fn the_fast_torsion_check_agrees_with_dalek_on_every_torsion_offset() {
        let q = ED25519_BASEPOINT_POINT * Scalar::from(123_456_789u64);
        for (i, t) in torsion().into_iter().enumerate() {
            let p = q + t;
            assert_eq!(is_torsion_free(&p), p.is_torsion_free(), "offset {i}");
            assert_eq!(is_torsion_free(&p), i == 0, "offset {i}");
            assert_eq!(is_torsion_free(&t), i == 0, "torsion point {i} alone");
        }
    }

    #[test]
    fn points_are_refused_for_small_or_mixed_order_and_second_spellings() {
        let q = ED25519_BASEPOINT_POINT * Scalar::from(987_654_321u64);
        assert_eq!(prime_order_point(q.compress().as_bytes()), Ok(q));
        let t = torsion();
        for (i, t) in t.iter().enumerate().skip(1) {
            let mixed = (q + t).compress();
            assert_eq!(prime_order_point(mixed.as_bytes()), Err(PointFault::MixedOrder), "{i}");
            assert_eq!(prime_order_point(t.compress().as_bytes()), Err(PointFault::SmallOrder));
        }
        let identity = EdwardsPoint::default().compress();
        assert_eq!(prime_order_point(identity.as_bytes()), Err(PointFault::SmallOrder));
        // The identity (0, 1) with the sign bit of x set: a second spelling.
        let mut spelled = *identity.as_bytes();
        spelled[31] |= 0x80;
        assert_eq!(prime_order_point(&spelled), Err(PointFault::NonCanonical));
    }
}
