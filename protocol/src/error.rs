//! Typed errors: one enum per operation whose callers act on the difference.

use thiserror::Error;

use crate::ids::NetworkId;

/// Building an identity type from bytes or text failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdError {
    /// Not hex, or not the right number of digits.
    #[error("{what} must be {expected_digits} hex digits")]
    BadHex { what: &'static str, expected_digits: usize },
    /// 32 bytes that are not a point on the curve.
    #[error("public key is not a valid Ed25519 point")]
    NotACurvePoint,
    /// A small-order point: signatures under it prove nothing.
    #[error("public key is a weak (small-order) Ed25519 point; generate a new key")]
    WeakKey,
    /// A point written in a second, non-canonical way (a y coordinate of p or more,
    /// or the sign bit set on x = 0): one key would have two spellings.
    #[error("public key is not the canonical encoding of its Ed25519 point; re-encode it")]
    NonCanonicalKey,
}

/// A signature no honest Ed25519 signer writes, refused by its bytes when the
/// envelope is decoded (`verify_strict` would refuse it too, as a bad signature).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// R written in a second, non-canonical way.
    #[error("its R is not the canonical encoding of a point")]
    RNonCanonical,
    /// R of small order (the identity among them): with `s = ka` the equation
    /// holds, so a batch check would take it; `verify_strict` does not.
    #[error("its R is of small order")]
    RSmallOrder,
    /// s not reduced modulo the group order (a second spelling of a signature).
    #[error("its s is not reduced modulo the group order")]
    SNonCanonical,
}

/// Strict canonical CBOR encoding or decoding failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CborError {
    /// Bytes that are not well-formed CBOR (truncated, bad header, bad UTF-8).
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    /// Nesting deeper than [`crate::limits::CBOR_DEPTH_MAX`].
    #[error("CBOR nested deeper than {max} levels")]
    TooDeep { max: usize },
    /// Bytes left over after one complete item.
    #[error("{0} trailing bytes after the CBOR item")]
    TrailingBytes(usize),
    /// Well-formed CBOR that is not in RFC 8949 section 4.2.1 deterministic form
    /// (non-minimal integers or lengths, indefinite lengths, unsorted map keys).
    #[error("CBOR is not in canonical (RFC 8949 4.2.1 deterministic) form")]
    NonCanonical,
    /// CBOR tags are not part of any MedMesh format.
    #[error("CBOR tags are not allowed")]
    Tag,
    /// Floating point values are not allowed in signed data.
    #[error("floating point values are not allowed in signed data")]
    Float,
    /// The same key twice in one map.
    #[error("duplicate map key")]
    DuplicateKey,
    /// Canonical CBOR of the wrong shape for the expected type.
    #[error("unexpected structure: {0}")]
    Schema(String),
    /// A value could not be encoded (only for values we build ourselves).
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// A signed record was refused. The variants are in validation order, cheapest
/// first, so the first failure is the one reported.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is {len} bytes; the limit is {max}")]
    TooLarge { len: u64, max: u64 },
    #[error("envelope is not valid: {0}")]
    Envelope(CborError),
    #[error("unsupported record version {0}; upgrade medmesh")]
    UnsupportedVersion(u64),
    #[error("record belongs to network {found:?}, not this network {expected:?}")]
    WrongNetwork { expected: NetworkId, found: NetworkId },
    #[error("signer key refused: {0}")]
    BadSignerKey(crate::error::IdError),
    #[error("payload is not valid: {0}")]
    Payload(CborError),
    #[error("field `{field}` is not valid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("signature is malformed: {0}; no honest signer produces it")]
    MalformedSignature(SignatureError),
    #[error("signature does not verify for this signer, network and payload")]
    BadSignature,
}

impl RecordError {
    /// A short stable name for logs, metrics and the control API.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::TooLarge { .. } => "too_large",
            RecordError::Envelope(_) => "bad_envelope",
            RecordError::UnsupportedVersion(_) => "unsupported_version",
            RecordError::WrongNetwork { .. } => "wrong_network",
            RecordError::BadSignerKey(_) => "bad_signer_key",
            RecordError::Payload(_) => "bad_payload",
            RecordError::Invalid { .. } => "invalid_field",
            RecordError::MalformedSignature(_) => "malformed_signature",
            RecordError::BadSignature => "bad_signature",
        }
    }
}

/// A network root document was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RootError {
    #[error("network root is not valid CBOR: {0}")]
    Cbor(CborError),
    #[error("network root is not valid: {0}")]
    Invalid(String),
}
