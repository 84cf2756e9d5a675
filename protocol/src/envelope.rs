//! The signed envelope: exact bytes that travel and are stored.
//!
//! Wire form: the canonical CBOR array `[v, network_id, signer, payload, signature]`
//! where `payload` is the canonical CBOR of a [`Payload`] (as a byte string). The
//! signature is Ed25519 over the to-be-signed message
//!
//! ```text
//! tbs = "medmesh/record/v1\0" || network_id (32) || signer (32) || payload
//! ```
//!
//! and the record id is `BLAKE3(tbs)`: it covers the author, the network and the
//! content but not the signature, so re-signing cannot mint a second id. Received
//! bytes are verified as received and never re-encoded.
//!
//! One signature rule on every path: [`Unverified::verify`] and [`verify_batch`]
//! both use `verify_strict`, so a record is accepted or refused the same way
//! whether it came by gossip, a submission, sync, an import or the reload at
//! start. Decoding refuses second spellings and small-order values of the signer
//! key and the signature's `R`, and an unreduced `s`, by their bytes (`curve`).

use std::sync::Arc;

use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::curve::{self, PointFault};
use crate::error::{CborError, RecordError, SignatureError};
use crate::ids::{NetworkId, PublicKey, RecordId, SignatureBytes};
use crate::limits::ENVELOPE_BYTES_MAX;
use crate::record::{Body, PAYLOAD_VERSION, Payload};

const TBS_CONTEXT: &[u8] = b"medmesh/record/v1\0";
/// The only envelope version this crate reads and writes.
pub const ENVELOPE_VERSION: u64 = 1;

/// The envelope exactly as encoded. The signer travels as raw bytes so that a bad
/// key is reported as such, not as a decoding error.
#[derive(Serialize, Deserialize)]
struct Wire(u64, NetworkId, RawKey, crate::record::Bytes, SignatureBytes);

#[derive(Clone, Copy, Serialize, Deserialize)]
struct RawKey(#[serde(with = "raw32")] [u8; 32]);

mod raw32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let b = crate::record::Bytes::deserialize(d)?;
        <[u8; 32]>::try_from(b.0.as_slice())
            .map_err(|_| serde::de::Error::invalid_length(b.0.len(), &"32 bytes"))
    }
}

/// A verified record: its id, signer, chain position and content, plus the exact
/// bytes it arrived as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: RecordId,
    pub signer: PublicKey,
    pub seq: u64,
    pub prev: Option<RecordId>,
    pub body: Body,
    /// The envelope bytes, exactly as signed and received.
    pub bytes: Arc<[u8]>,
}

/// A decoded envelope whose signature has not been checked yet (so that many can
/// be verified as a batch).
#[derive(Clone, Debug)]
pub struct Unverified {
    record: Record,
    signature: Signature,
    tbs: Vec<u8>,
}

pub(crate) fn tbs(network: &NetworkId, signer: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(TBS_CONTEXT.len() + 64 + payload.len());
    m.extend_from_slice(TBS_CONTEXT);
    m.extend_from_slice(network.as_bytes());
    m.extend_from_slice(signer);
    m.extend_from_slice(payload);
    m
}

/// Sign payload bytes as given, without checking them (for [`crate::testkit`]:
/// correctly signed records that break a rule).
pub(crate) fn sign_unchecked(
    key: &SigningKey,
    network: NetworkId,
    payload_bytes: Vec<u8>,
) -> Result<Vec<u8>, CborError> {
    let signer = PublicKey::from(key);
    let signature = key.sign(&tbs(&network, signer.as_bytes(), &payload_bytes));
    envelope_unchecked(network, signer, payload_bytes, signature.to_bytes())
}

/// An envelope around payload bytes and signature bytes as given (for
/// [`crate::testkit`]: hand-made signatures that honest signers never produce).
pub(crate) fn envelope_unchecked(
    network: NetworkId,
    signer: PublicKey,
    payload_bytes: Vec<u8>,
    signature: [u8; 64],
) -> Result<Vec<u8>, CborError> {
    let wire = Wire(
        ENVELOPE_VERSION,
        network,
        RawKey(*signer.as_bytes()),
        crate::record::Bytes(payload_bytes),
        SignatureBytes::from_bytes(signature),
    );
    cbor::to_canonical(&wire)
}

fn id_of(tbs: &[u8]) -> RecordId {
    RecordId::from_bytes(*blake3::hash(tbs).as_bytes())
}

impl Record {
    /// Sign `body` as the `seq`-th record of `key`'s chain, after `prev`.
    pub fn sign(
        key: &SigningKey,
        network: NetworkId,
        seq: u64,
        prev: Option<RecordId>,
        body: Body,
    ) -> Result<Record, RecordError> {
        let payload = Payload { v: PAYLOAD_VERSION, seq, prev, body };
        payload.validate()?;
        let payload_bytes = cbor::to_canonical(&payload).map_err(RecordError::Payload)?;
        let signer = PublicKey::from(key);
        let message = tbs(&network, signer.as_bytes(), &payload_bytes);
        let signature = key.sign(&message);
        let wire = Wire(
            ENVELOPE_VERSION,
            network,
            RawKey(*signer.as_bytes()),
            crate::record::Bytes(payload_bytes),
            SignatureBytes::from_bytes(signature.to_bytes()),
        );
        let bytes = cbor::to_canonical(&wire).map_err(RecordError::Envelope)?;
        if bytes.len() > ENVELOPE_BYTES_MAX {
            return Err(RecordError::TooLarge {
                len: bytes.len() as u64,
                max: ENVELOPE_BYTES_MAX as u64,
            });
        }
        Ok(Record {
            id: id_of(&message),
            signer,
            seq: payload.seq,
            prev: payload.prev,
            body: payload.body,
            bytes: bytes.into(),
        })
    }

    /// Decode and verify received bytes, cheapest check first: size, envelope,
    /// version, network, signer key, payload, signature encoding, signature.
    pub fn verify(bytes: &[u8], network: &NetworkId) -> Result<Record, RecordError> {
        Unverified::decode(bytes, network)?.verify()
    }

    /// The record id of received bytes without verifying anything but the shape
    /// (for duplicate checks before the expensive steps).
    pub fn peek_id(bytes: &[u8]) -> Result<RecordId, RecordError> {
        if bytes.len() > ENVELOPE_BYTES_MAX {
            return Err(RecordError::TooLarge {
                len: bytes.len() as u64,
                max: ENVELOPE_BYTES_MAX as u64,
            });
        }
        let Wire(_, network, signer, payload, _) =
            cbor::from_canonical(bytes).map_err(RecordError::Envelope)?;
        Ok(id_of(&tbs(&network, &signer.0, &payload.0)))
    }

    /// The kind of record, for logs.
    pub fn kind(&self) -> &'static str {
        self.body.kind()
    }
}

impl Unverified {
    /// Every check but the signature equation: size, envelope, version, network,
    /// signer key (canonical, not of small order), payload, and the signature's
    /// encoding (`R` canonical, not of small order; `s` reduced).
    pub fn decode(bytes: &[u8], network: &NetworkId) -> Result<Unverified, RecordError> {
        if bytes.len() > ENVELOPE_BYTES_MAX {
            return Err(RecordError::TooLarge {
                len: bytes.len() as u64,
                max: ENVELOPE_BYTES_MAX as u64,
            });
        }
        let Wire(v, found, signer, payload_bytes, signature) =
            cbor::from_canonical(bytes).map_err(RecordError::Envelope)?;
        if v != ENVELOPE_VERSION {
            return Err(RecordError::UnsupportedVersion(v));
        }
        if found != *network {
            return Err(RecordError::WrongNetwork { expected: *network, found });
        }
        let signer_key = PublicKey::from_bytes(signer.0).map_err(RecordError::BadSignerKey)?;
        let payload: Payload = cbor::from_canonical(&payload_bytes.0).map_err(|e| match e {
            CborError::Schema(s) if s.contains("version") => {
                RecordError::Payload(CborError::Schema(s))
            }
            other => RecordError::Payload(other),
        })?;
        payload.validate()?;
        check_signature_encoding(signature.as_bytes()).map_err(RecordError::MalformedSignature)?;
        let message = tbs(network, &signer.0, &payload_bytes.0);
        Ok(Unverified {
            record: Record {
                id: id_of(&message),
                signer: signer_key,
                seq: payload.seq,
                prev: payload.prev,
                body: payload.body,
                bytes: bytes.into(),
            },
            signature: Signature::from_bytes(signature.as_bytes()),
            tbs: message,
        })
    }

    /// The id the record will have once verified.
    pub fn id(&self) -> RecordId {
        self.record.id
    }

    /// The claimed signer.
    pub fn signer(&self) -> PublicKey {
        self.record.signer
    }

    /// Check the signature with `verify_strict`.
    pub fn verify(self) -> Result<Record, RecordError> {
        self.record
            .signer
            .verifying_key()
            .verify_strict(&self.tbs, &self.signature)
            .map_err(|_| RecordError::BadSignature)?;
        Ok(self.record)
    }
}

/// The signature's `R` and `s` as an honest signer writes them (see `curve`).
fn check_signature_encoding(signature: &[u8; 64]) -> Result<(), SignatureError> {
    let (r, s) = signature.split_at(32);
    let r: &[u8; 32] = r.try_into().expect("a 64-byte signature has a 32-byte R");
    let s: &[u8; 32] = s.try_into().expect("a 64-byte signature has a 32-byte s");
    curve::check_encoding(r).map_err(|f| match f {
        PointFault::NonCanonical => SignatureError::RNonCanonical,
        PointFault::SmallOrder => SignatureError::RSmallOrder,
    })?;
    if !curve::is_canonical_scalar(s) {
        return Err(SignatureError::SNonCanonical);
    }
    Ok(())
}

/// Whether dalek's batch equation (cofactorless, random coefficients from a
/// transcript of the inputs) accepts `items` together: what pages, imports and
/// the store at start used to be verified with (for [`crate::testkit`]).
pub(crate) fn batch_equation_accepts(items: &[Unverified]) -> bool {
    let messages: Vec<&[u8]> = items.iter().map(|u| u.tbs.as_slice()).collect();
    let signatures: Vec<Signature> = items.iter().map(|u| u.signature).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> =
        items.iter().map(|u| u.record.signer.verifying_key()).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// Verify many records (a sync page, an import, the store at start), each with
/// `verify_strict`: the one signature rule of every path. Not a batch equation,
/// which would accept some signatures that `verify_strict` refuses (see `curve`).
pub fn verify_batch(items: Vec<Unverified>) -> Vec<Result<Record, RecordError>> {
    items.into_iter().map(Unverified::verify).collect()
}
