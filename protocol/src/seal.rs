//! Result metrics sealed to their readers: the benchmark's committee and the
//! dataset's owner. Everything gossiped reaches every peer, so the sharing policy
//! holds by cryptography, not by a server.
//!
//! Scheme [`SCHEME`]: the metrics (canonical CBOR of results.yaml as written, see
//! [`crate::metric`]) are
//! encrypted once with ChaCha20-Poly1305 under a fresh random content key; the
//! content key is sealed to each recipient's X25519 key with HPKE (RFC 9180, base
//! mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305). The AAD of
//! both layers binds the benchmark, model and dataset, so a sealed blob cannot be
//! replayed under another result. Randomness is passed in: this module does no I/O.

use std::collections::BTreeMap;

use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use thiserror::Error;

use crate::cbor;
use crate::ids::{RecordId, X25519Key};
use crate::metric::MetricValue;
use crate::record::{Bytes, Sealed, SealedFor};

/// The scheme name written into every [`Sealed`].
pub const SCHEME: &str = "hpke-x25519-sha256-chacha20poly1305/v1";
const INFO: &[u8] = b"medmesh/result-key/v1";
/// The content key is used once, so a fixed nonce is safe.
const CONTENT_NONCE: [u8; 12] = [0; 12];

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead1 = hpke::aead::ChaCha20Poly1305;

/// Re-exported so callers can pass an RNG of the right trait version.
pub use hpke::rand_core;

/// Sealing or opening failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SealError {
    #[error("no recipients: a result must be readable by the committee and the data owner")]
    NoRecipients,
    #[error("recipient key is not a valid X25519 public key")]
    BadRecipient,
    #[error("unknown sealing scheme `{0}`")]
    UnknownScheme(String),
    #[error("this key is not among the recipients of the result")]
    NotARecipient,
    #[error("the sealed metrics do not decrypt: tampered, or sealed for another result")]
    Tampered,
    #[error("decrypted metrics are not valid: {0}")]
    BadPlaintext(String),
}

/// What the sealed metrics are bound to.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub benchmark: RecordId,
    pub model: RecordId,
    pub dataset: RecordId,
}

impl Binding {
    fn aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(16 + 96);
        a.extend_from_slice(b"medmesh/result/v1");
        a.extend_from_slice(self.benchmark.as_bytes());
        a.extend_from_slice(self.model.as_bytes());
        a.extend_from_slice(self.dataset.as_bytes());
        a
    }
}

/// An X25519 key pair for opening results.
#[derive(Clone)]
pub struct OpeningKey {
    secret: [u8; 32],
}

impl std::fmt::Debug for OpeningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpeningKey({})", self.public().short())
    }
}

impl OpeningKey {
    /// Derive a key pair from 32 bytes of secret input key material.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// The secret bytes (to store in an owner-only key file).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    fn pair(&self) -> (<Kem as hpke::Kem>::PrivateKey, <Kem as hpke::Kem>::PublicKey) {
        <Kem as hpke::Kem>::derive_keypair(&self.secret)
    }

    /// The public key to publish in a profile.
    pub fn public(&self) -> X25519Key {
        let bytes = self.pair().1.to_bytes();
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        X25519Key::from_bytes(out)
    }
}

/// Seal `metrics` (results.yaml as the metrics container wrote it) to every
/// recipient.
pub fn seal(
    metrics: &BTreeMap<String, MetricValue>,
    recipients: &[X25519Key],
    binding: Binding,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Sealed, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    let mut unique = recipients.to_vec();
    unique.sort();
    unique.dedup();
    let plaintext =
        cbor::to_canonical(metrics).map_err(|e| SealError::BadPlaintext(e.to_string()))?;
    let mut content_key = [0u8; 32];
    rng.fill_bytes(&mut content_key);
    let aad = binding.aad();
    let ciphertext = ChaCha20Poly1305::new(&content_key.into())
        .encrypt(
            &CONTENT_NONCE.into(),
            chacha20poly1305::aead::Payload { msg: &plaintext, aad: &aad },
        )
        .map_err(|_| SealError::Tampered)?;
    let mut sealed_for = Vec::with_capacity(unique.len());
    for r in unique {
        let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(r.as_bytes())
            .map_err(|_| SealError::BadRecipient)?;
        let (enc, wrapped) = hpke::single_shot_seal_with_rng::<Aead1, Kdf, Kem>(
            &OpModeS::Base,
            &pk,
            INFO,
            &content_key,
            &aad,
            rng,
        )
        .map_err(|_| SealError::BadRecipient)?;
        let mut encapsulated = enc.to_bytes().to_vec();
        encapsulated.extend_from_slice(&wrapped);
        sealed_for.push(SealedFor { recipient: r, encapsulated: Bytes(encapsulated) });
    }
    Ok(Sealed { scheme: SCHEME.into(), recipients: sealed_for, ciphertext: Bytes(ciphertext) })
}

/// Open sealed metrics with one recipient's key.
pub fn open(
    sealed: &Sealed,
    key: &OpeningKey,
    binding: Binding,
) -> Result<BTreeMap<String, MetricValue>, SealError> {
    if sealed.scheme != SCHEME {
        return Err(SealError::UnknownScheme(sealed.scheme.clone()));
    }
    let me = key.public();
    let entry =
        sealed.recipients.iter().find(|s| s.recipient == me).ok_or(SealError::NotARecipient)?;
    let enc_len = 32;
    if entry.encapsulated.0.len() <= enc_len {
        return Err(SealError::Tampered);
    }
    let (enc, wrapped) = entry.encapsulated.0.split_at(enc_len);
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| SealError::Tampered)?;
    let aad = binding.aad();
    let (sk, _) = key.pair();
    let content_key =
        hpke::single_shot_open::<Aead1, Kdf, Kem>(&OpModeR::Base, &sk, &enc, INFO, wrapped, &aad)
            .map_err(|_| SealError::Tampered)?;
    let content_key: [u8; 32] =
        content_key.as_slice().try_into().map_err(|_| SealError::Tampered)?;
    let plaintext = ChaCha20Poly1305::new(&content_key.into())
        .decrypt(
            &CONTENT_NONCE.into(),
            chacha20poly1305::aead::Payload { msg: &sealed.ciphertext.0, aad: &aad },
        )
        .map_err(|_| SealError::Tampered)?;
    cbor::from_canonical(&plaintext).map_err(|e| SealError::BadPlaintext(e.to_string()))
}

/// A deterministic RNG for tests and reproducible fixtures (BLAKE3 in XOF mode).
/// Never use it to seal real results.
pub struct SeededRng(blake3::OutputReader);

impl SeededRng {
    pub fn new(seed: &[u8]) -> Self {
        Self(blake3::Hasher::new_derive_key("medmesh seeded rng").update(seed).finalize_xof())
    }
}

impl rand_core::TryRng for SeededRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for SeededRng {}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Binding {
        Binding {
            benchmark: RecordId::from_bytes([1; 32]),
            model: RecordId::from_bytes([2; 32]),
            dataset: RecordId::from_bytes([3; 32]),
        }
    }

    fn metrics() -> BTreeMap<String, MetricValue> {
        [
            ("auc".to_string(), MetricValue::float(0.912345)),
            ("error".to_string(), MetricValue::float(f64::NAN)),
            ("cases".to_string(), MetricValue::Int(30)),
        ]
        .into_iter()
        .collect()
    }

    fn keys() -> (OpeningKey, OpeningKey, OpeningKey) {
        (
            OpeningKey::from_secret([10; 32]),
            OpeningKey::from_secret([11; 32]),
            OpeningKey::from_secret([12; 32]),
        )
    }

    #[test]
    fn every_recipient_opens_the_same_metrics() {
        let (a, b, _) = keys();
        let mut rng = SeededRng::new(b"t");
        let sealed = seal(&metrics(), &[a.public(), b.public()], binding(), &mut rng).unwrap();
        assert_eq!(open(&sealed, &a, binding()).unwrap(), metrics());
        assert_eq!(open(&sealed, &b, binding()).unwrap(), metrics());
    }

    #[test]
    fn someone_outside_the_recipients_cannot_open() {
        let (a, b, outsider) = keys();
        let sealed =
            seal(&metrics(), &[a.public(), b.public()], binding(), &mut SeededRng::new(b"t"))
                .unwrap();
        assert_eq!(open(&sealed, &outsider, binding()), Err(SealError::NotARecipient));
        // Claiming to be a recipient does not help either.
        let mut forged = sealed.clone();
        forged.recipients[0].recipient = outsider.public();
        assert_eq!(open(&forged, &outsider, binding()), Err(SealError::Tampered));
    }

    #[test]
    fn sealed_metrics_do_not_open_under_another_result() {
        let (a, _, _) = keys();
        let sealed = seal(&metrics(), &[a.public()], binding(), &mut SeededRng::new(b"t")).unwrap();
        let other = Binding { dataset: RecordId::from_bytes([4; 32]), ..binding() };
        assert_eq!(open(&sealed, &a, other), Err(SealError::Tampered));
    }

    #[test]
    fn a_flipped_ciphertext_bit_is_detected() {
        let (a, _, _) = keys();
        let mut sealed =
            seal(&metrics(), &[a.public()], binding(), &mut SeededRng::new(b"t")).unwrap();
        sealed.ciphertext.0[0] ^= 1;
        assert_eq!(open(&sealed, &a, binding()), Err(SealError::Tampered));
    }

    #[test]
    fn the_ciphertext_does_not_contain_the_plaintext() {
        let (a, _, _) = keys();
        let sealed = seal(&metrics(), &[a.public()], binding(), &mut SeededRng::new(b"t")).unwrap();
        let plain = cbor::to_canonical(&metrics()).unwrap();
        assert!(!sealed.ciphertext.0.windows(3).any(|w| w == b"auc"));
        assert_ne!(sealed.ciphertext.0[..plain.len()], plain[..]);
    }

    #[test]
    fn sealing_needs_a_recipient() {
        assert_eq!(
            seal(&metrics(), &[], binding(), &mut SeededRng::new(b"t")),
            Err(SealError::NoRecipients)
        );
    }
}
