//! What only a benchmark's committee and a dataset's owner may read, sealed to
//! them: result metrics, and a dataset's details. Everything gossiped reaches
//! every peer, so the sharing policy holds by cryptography, not by a server.
//!
//! Scheme [`SCHEME`]: the plaintext (canonical CBOR: results.yaml as written, see
//! [`crate::metric`], or [`SealedDetails`]) is padded to a multiple of [`PAD_BYTES`] (`0x80` then
//! zeros), so that the ciphertext's length does not tell one value from another,
//! and encrypted once with ChaCha20-Poly1305 under a fresh random content key;
//! the content key is sealed to each recipient's X25519 key with HPKE (RFC 9180,
//! base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305). The
//! AAD of both layers binds what the plaintext belongs to (a result's benchmark,
//! model and dataset; a dataset's benchmark and owner), so a sealed blob cannot
//! be replayed elsewhere. A result's content key also yields its [`ReceiptKey`],
//! which keys the public receipt's commitment to the execution's outputs.
//! Randomness is passed in: this module does no I/O.

use std::collections::BTreeMap;

use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use thiserror::Error;

use crate::cbor;
use crate::ids::{Hash32, PublicKey, RecordId, X25519Key};
use crate::limits::SEALED_BYTES_MAX;
use crate::metric::MetricValue;
use crate::record::{Bytes, Sealed, SealedDetails, SealedFor};

/// The scheme name written into every [`Sealed`] (v2: padded plaintext).
pub const SCHEME: &str = "hpke-x25519-sha256-chacha20poly1305/v2";
/// Plaintexts are padded to a multiple of this many bytes.
pub const PAD_BYTES: usize = 1024;
/// The AEAD tag's length.
const TAG_BYTES: usize = 16;
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
    #[error("decrypted content is not valid: {0}")]
    BadPlaintext(String),
    #[error("{0} bytes to seal; at most {max} fit a record", max = SEALED_BYTES_MAX - TAG_BYTES)]
    TooLarge(usize),
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

/// What a dataset's sealed details are bound to: a copy under another owner or
/// benchmark does not open.
#[derive(Clone, Copy, Debug)]
pub struct DetailsBinding {
    pub benchmark: RecordId,
    pub owner: PublicKey,
}

impl DetailsBinding {
    fn aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(32 + 64);
        a.extend_from_slice(b"medmesh/dataset-details/v1");
        a.extend_from_slice(self.benchmark.as_bytes());
        a.extend_from_slice(self.owner.as_bytes());
        a
    }
}

/// The secret that keys a result's public commitment to its outputs
/// ([`crate::record::ExecutionReceipt::outputs_commitment`]). It is derived from
/// the result's content key, so the sealer and every recipient hold it, and
/// nobody else.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceiptKey([u8; 32]);

impl std::fmt::Debug for ReceiptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiptKey(..)")
    }
}

impl ReceiptKey {
    fn of(content_key: &[u8; 32]) -> Self {
        Self(blake3::derive_key("medmesh/receipt-key/v1", content_key))
    }

    /// The commitment to an execution's outputs: keyed BLAKE3 of the tree hash
    /// of the predictions and the hash of the results file.
    pub fn commit(&self, predictions_hash: &Hash32, results_hash: &Hash32) -> Hash32 {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"medmesh/outputs/v1");
        h.update(predictions_hash.as_bytes());
        h.update(results_hash.as_bytes());
        Hash32::from_bytes(*h.finalize().as_bytes())
    }
}

fn pad(mut plaintext: Vec<u8>) -> Result<Vec<u8>, SealError> {
    plaintext.push(0x80);
    let padded = plaintext.len().div_ceil(PAD_BYTES) * PAD_BYTES;
    if padded + TAG_BYTES > SEALED_BYTES_MAX {
        return Err(SealError::TooLarge(plaintext.len() - 1));
    }
    plaintext.resize(padded, 0);
    Ok(plaintext)
}

fn unpad(mut padded: Vec<u8>) -> Result<Vec<u8>, SealError> {
    let end = padded.iter().rposition(|b| *b != 0);
    match end {
        Some(i) if padded[i] == 0x80 && padded.len().is_multiple_of(PAD_BYTES) => {
            padded.truncate(i);
            Ok(padded)
        }
        _ => Err(SealError::BadPlaintext("bad padding".into())),
    }
}

/// Seal `plaintext` (padded first) to every recipient under `aad`; returns the
/// content key too.
fn seal_bytes(
    plaintext: Vec<u8>,
    recipients: &[X25519Key],
    aad: &[u8],
    rng: &mut impl rand_core::CryptoRng,
) -> Result<(Sealed, [u8; 32]), SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    let mut unique = recipients.to_vec();
    unique.sort();
    unique.dedup();
    let plaintext = pad(plaintext)?;
    let mut content_key = [0u8; 32];
    rng.fill_bytes(&mut content_key);
    let ciphertext = ChaCha20Poly1305::new(&content_key.into())
        .encrypt(&CONTENT_NONCE.into(), chacha20poly1305::aead::Payload { msg: &plaintext, aad })
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
            aad,
            rng,
        )
        .map_err(|_| SealError::BadRecipient)?;
        let mut encapsulated = enc.to_bytes().to_vec();
        encapsulated.extend_from_slice(&wrapped);
        sealed_for.push(SealedFor { recipient: r, encapsulated: Bytes(encapsulated) });
    }
    let sealed =
        Sealed { scheme: SCHEME.into(), recipients: sealed_for, ciphertext: Bytes(ciphertext) };
    Ok((sealed, content_key))
}

/// Open `sealed` with one recipient's key; returns the unpadded plaintext and the
/// content key.
fn open_bytes(
    sealed: &Sealed,
    key: &OpeningKey,
    aad: &[u8],
) -> Result<(Vec<u8>, [u8; 32]), SealError> {
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
    let (sk, _) = key.pair();
    let content_key =
        hpke::single_shot_open::<Aead1, Kdf, Kem>(&OpModeR::Base, &sk, &enc, INFO, wrapped, aad)
            .map_err(|_| SealError::Tampered)?;
    let content_key: [u8; 32] =
        content_key.as_slice().try_into().map_err(|_| SealError::Tampered)?;
    let padded = ChaCha20Poly1305::new(&content_key.into())
        .decrypt(
            &CONTENT_NONCE.into(),
            chacha20poly1305::aead::Payload { msg: &sealed.ciphertext.0, aad },
        )
        .map_err(|_| SealError::Tampered)?;
    Ok((unpad(padded)?, content_key))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, SealError> {
    cbor::to_canonical(value).map_err(|e| SealError::BadPlaintext(e.to_string()))
}

/// Seal `metrics` (metric name -> millionths) to every recipient.
pub fn seal(
    metrics: &BTreeMap<String, MetricValue>,
    recipients: &[X25519Key],
    binding: Binding,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Sealed, SealError> {
    Ok(seal_result(metrics, recipients, binding, rng)?.0)
}

/// Seal `metrics` to every recipient, and give the [`ReceiptKey`] that keys the
/// result's public commitment to its outputs.
pub fn seal_result(
    metrics: &BTreeMap<String, MetricValue>,
    recipients: &[X25519Key],
    binding: Binding,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<(Sealed, ReceiptKey), SealError> {
    let (sealed, content_key) = seal_bytes(encode(metrics)?, recipients, &binding.aad(), rng)?;
    Ok((sealed, ReceiptKey::of(&content_key)))
}

/// Open sealed metrics with one recipient's key.
pub fn open(
    sealed: &Sealed,
    key: &OpeningKey,
    binding: Binding,
) -> Result<BTreeMap<String, MetricValue>, SealError> {
    Ok(open_result(sealed, key, binding)?.0)
}

/// Open sealed metrics, with the [`ReceiptKey`] a recipient checks the receipt's
/// commitment with.
pub fn open_result(
    sealed: &Sealed,
    key: &OpeningKey,
    binding: Binding,
) -> Result<(BTreeMap<String, MetricValue>, ReceiptKey), SealError> {
    let (plaintext, content_key) = open_bytes(sealed, key, &binding.aad())?;
    let metrics =
        cbor::from_canonical(&plaintext).map_err(|e| SealError::BadPlaintext(e.to_string()))?;
    Ok((metrics, ReceiptKey::of(&content_key)))
}

/// Seal a dataset's details (and its pseudonym key) to the committee and owner.
pub fn seal_details(
    details: &SealedDetails,
    recipients: &[X25519Key],
    binding: DetailsBinding,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Sealed, SealError> {
    Ok(seal_bytes(encode(details)?, recipients, &binding.aad(), rng)?.0)
}

/// Open a dataset's sealed details with one recipient's key.
pub fn open_details(
    sealed: &Sealed,
    key: &OpeningKey,
    binding: DetailsBinding,
) -> Result<SealedDetails, SealError> {
    let (plaintext, _) = open_bytes(sealed, key, &binding.aad())?;
    let d: SealedDetails =
        cbor::from_canonical(&plaintext).map_err(|e| SealError::BadPlaintext(e.to_string()))?;
    d.details.validate().map_err(|e| SealError::BadPlaintext(e.to_string()))?;
    if d.pseudonym_key.0.len() != 32 {
        return Err(SealError::BadPlaintext("the pseudonym key is not 32 bytes".into()));
    }
    Ok(d)
}

/// What a private model's granted key is bound to: a grant copied to another
/// model, benchmark or dataset does not open.
#[derive(Clone, Copy, Debug)]
pub struct GrantBinding {
    pub model: RecordId,
    pub benchmark: RecordId,
    pub dataset: RecordId,
}

impl GrantBinding {
    fn aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(24 + 96);
        a.extend_from_slice(b"medmesh/model-grant/v1");
        a.extend_from_slice(self.model.as_bytes());
        a.extend_from_slice(self.benchmark.as_bytes());
        a.extend_from_slice(self.dataset.as_bytes());
        a
    }
}

/// Seal a private model's content key to one data owner (a [`crate::record::ModelGrant`]).
pub fn seal_model_key(
    key: &crate::private::ModelKey,
    recipient: X25519Key,
    binding: GrantBinding,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Sealed, SealError> {
    Ok(seal_bytes(key.as_bytes().to_vec(), &[recipient], &binding.aad(), rng)?.0)
}

/// Open a granted content key with the data owner's key.
pub fn open_model_key(
    sealed: &Sealed,
    key: &OpeningKey,
    binding: GrantBinding,
) -> Result<crate::private::ModelKey, SealError> {
    let (plaintext, _) = open_bytes(sealed, key, &binding.aad())?;
    let bytes: [u8; 32] = plaintext
        .as_slice()
        .try_into()
        .map_err(|_| SealError::BadPlaintext("a model key is 32 bytes".into()))?;
    Ok(crate::private::ModelKey::from_bytes(bytes))
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
    fn the_ciphertext_length_does_not_depend_on_the_values() {
        let (a, _, _) = keys();
        let len = |v: i64| {
            let m: BTreeMap<String, MetricValue> =
                [("incorrect".to_string(), MetricValue::Int(v))].into_iter().collect();
            seal(&m, &[a.public()], binding(), &mut SeededRng::new(b"t"))
                .unwrap()
                .ciphertext
                .0
                .len()
        };
        // CBOR spends 1 byte on 0 and 9 on i64::MAX; padding hides the difference.
        assert_eq!(len(0), len(7_000_000));
        assert_eq!(len(0), len(i64::MAX));
        assert_eq!(len(0), PAD_BYTES + TAG_BYTES);
    }

    #[test]
    fn the_sealer_and_every_recipient_derive_the_same_receipt_key_and_nobody_else_can() {
        let (a, b, outsider) = keys();
        let (sealed, key) = seal_result(
            &metrics(),
            &[a.public(), b.public()],
            binding(),
            &mut SeededRng::new(b"t"),
        )
        .unwrap();
        let h = (Hash32::of(b"predictions"), Hash32::of(b"results"));
        let commitment = key.commit(&h.0, &h.1);
        for k in [&a, &b] {
            let (_, opened) = open_result(&sealed, k, binding()).unwrap();
            assert_eq!(opened.commit(&h.0, &h.1), commitment);
        }
        assert_eq!(
            open_result(&sealed, &outsider, binding()).err(),
            Some(SealError::NotARecipient)
        );
        // A fresh seal of the same metrics gives another key: no commitment repeats.
        let (_, again) =
            seal_result(&metrics(), &[a.public()], binding(), &mut SeededRng::new(b"u")).unwrap();
        assert_ne!(again.commit(&h.0, &h.1), commitment);
    }

    #[test]
    fn sealed_details_open_only_for_their_owner_and_benchmark() {
        let (a, _, _) = keys();
        let details = crate::testkit::details("St Mary");
        let owner = crate::testkit::Author::new("o", crate::ids::NetworkId::from_bytes([0; 32]));
        let bind =
            DetailsBinding { benchmark: RecordId::from_bytes([1; 32]), owner: owner.public() };
        let sealed =
            seal_details(&details, &[a.public()], bind, &mut SeededRng::new(b"d")).unwrap();
        assert_eq!(open_details(&sealed, &a, bind).unwrap(), details);
        let other = crate::testkit::Author::new("p", crate::ids::NetworkId::from_bytes([0; 32]));
        let copied = DetailsBinding { owner: other.public(), ..bind };
        assert_eq!(open_details(&sealed, &a, copied), Err(SealError::Tampered));
    }

    #[test]
    fn padding_is_checked_when_opening() {
        assert_eq!(unpad(pad(b"abc".to_vec()).unwrap()).unwrap(), b"abc");
        assert!(unpad(vec![0; PAD_BYTES]).is_err());
        assert!(unpad(vec![1; 10]).is_err());
        assert_eq!(pad(vec![0; SEALED_BYTES_MAX]), Err(SealError::TooLarge(SEALED_BYTES_MAX)));
    }

    #[test]
    fn sealing_needs_a_recipient() {
        assert_eq!(
            seal(&metrics(), &[], binding(), &mut SeededRng::new(b"t")),
            Err(SealError::NoRecipients)
        );
    }
}
