//! Private models (MedPerf's `EncryptedDockerArchive`): the streaming cipher an
//! image archive is encrypted with, and the content key that opens it.
//!
//! Scheme [`SCHEME`], a STREAM construction (Hoang, Reyhanitabar, Rogaway,
//! Vizár 2015) over ChaCha20-Poly1305: the archive is cut into chunks of
//! [`CHUNK_BYTES`] (the last one shorter, possibly empty), and chunk `i` is
//! sealed under a key derived from the [`ModelKey`] with the nonce `i` (64-bit
//! big-endian), three zero bytes, then 1 for the last chunk and 0 for every
//! other. Each chunk is checked as it is read, so an archive of a GiB never sits
//! in memory, and:
//! - a flipped bit fails that chunk's tag;
//! - chunks swapped or repeated fail (their index is in the nonce);
//! - an archive cut short fails: the chunk now last was sealed as "not last",
//!   and a stream that ends without its last chunk is refused by
//!   [`Decryptor::finish`]; anything after the last chunk is refused too.
//!
//! ChaCha20-Poly1305 does not commit to its key, so a record carries
//! [`ModelKey::check`], a hash derived from the key, and a grantee compares it
//! before decrypting: a grant sealing another key is refused up front.
//! Randomness is passed in; this module does no I/O (the file loops are in the
//! runner).

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use thiserror::Error;

use crate::ids::Hash32;
use crate::seal::rand_core;

/// The scheme a private container's record names.
pub const SCHEME: &str = "medmesh-stream-chacha20poly1305/v1";
/// Plaintext bytes per chunk (the last chunk holds what is left).
pub const CHUNK_BYTES: u32 = 1024 * 1024;
/// Each chunk's authentication tag.
pub const TAG_BYTES: u32 = 16;

const STREAM_CONTEXT: &str = "medmesh/private-model/v1 stream key";
const CHECK_CONTEXT: &str = "medmesh/private-model/v1 key check";
const AAD: &[u8] = b"medmesh/private-model/v1";

/// A private model's streaming cipher failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StreamError {
    #[error(
        "chunk {0} of the encrypted archive does not decrypt: the archive was altered, reordered or cut, or the key is not this model's"
    )]
    Tampered(u64),
    #[error("the encrypted archive ends before its last chunk: it was cut short")]
    Truncated,
    #[error("the encrypted archive goes on after its last chunk")]
    TrailingData,
    #[error("chunk {index} holds {len} bytes; every chunk but the last holds exactly {expected}")]
    BadChunkLength { index: u64, len: usize, expected: usize },
    #[error("the key does not match the one the model's record names")]
    WrongKey,
}

/// A private model's content key: fresh and random for each container record, so
/// that a new version re-keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelKey([u8; 32]);

impl std::fmt::Debug for ModelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ModelKey(check {})", self.check().short())
    }
}

impl ModelKey {
    /// A fresh random key.
    pub fn generate(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes (to keep in an owner-only file, or to seal in a grant).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// What the record publishes to identify the key: derived from it, so it tells
    /// nothing about it, and lets a grantee refuse a grant of another key.
    pub fn check(&self) -> Hash32 {
        Hash32::from_bytes(blake3::derive_key(CHECK_CONTEXT, &self.0))
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&blake3::derive_key(STREAM_CONTEXT, &self.0).into())
    }
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// The size of the encrypted archive of `plaintext_bytes`: at least one chunk
/// (an empty archive is one empty last chunk), each with its tag.
pub fn ciphertext_len(plaintext_bytes: u64) -> u64 {
    let chunks = plaintext_bytes.div_ceil(u64::from(CHUNK_BYTES)).max(1);
    plaintext_bytes + chunks * u64::from(TAG_BYTES)
}

/// Encrypts an archive chunk by chunk, in order.
pub struct Encryptor {
    cipher: ChaCha20Poly1305,
    index: u64,
    done: bool,
}

impl Encryptor {
    pub fn new(key: &ModelKey) -> Self {
        Self { cipher: key.cipher(), index: 0, done: false }
    }

    /// Seal the next chunk: exactly [`CHUNK_BYTES`] unless `last`, when it may be
    /// shorter (or empty). Nothing may follow the last chunk.
    pub fn seal_chunk(&mut self, chunk: &[u8], last: bool) -> Result<Vec<u8>, StreamError> {
        if self.done {
            return Err(StreamError::TrailingData);
        }
        let expected = CHUNK_BYTES as usize;
        if chunk.len() > expected || (!last && chunk.len() != expected) {
            return Err(StreamError::BadChunkLength {
                index: self.index,
                len: chunk.len(),
                expected,
            });
        }
        let out = self
            .cipher
            .encrypt(&nonce(self.index, last).into(), Payload { msg: chunk, aad: AAD })
            .map_err(|_| StreamError::Tampered(self.index))?;
        self.index += 1;
        self.done = last;
        Ok(out)
    }
}

/// Decrypts an archive chunk by chunk, in order, refusing the whole at the first
/// chunk that does not check.
pub struct Decryptor {
    cipher: ChaCha20Poly1305,
    index: u64,
    done: bool,
}

impl Decryptor {
    /// A decryptor for the archive whose record names `check`; a key that does not
    /// match it is refused before any byte is decrypted.
    pub fn new(key: &ModelKey, check: &Hash32) -> Result<Self, StreamError> {
        if key.check() != *check {
            return Err(StreamError::WrongKey);
        }
        Ok(Self { cipher: key.cipher(), index: 0, done: false })
    }

    /// Open the next encrypted chunk (`CHUNK_BYTES + TAG_BYTES` bytes unless it is
    /// the last one read, which the caller knows by reaching the end).
    pub fn open_chunk(&mut self, chunk: &[u8], last: bool) -> Result<Vec<u8>, StreamError> {
        if self.done {
            return Err(StreamError::TrailingData);
        }
        let full = (CHUNK_BYTES + TAG_BYTES) as usize;
        if chunk.len() > full || (!last && chunk.len() != full) {
            return Err(StreamError::BadChunkLength {
                index: self.index,
                len: chunk.len(),
                expected: full,
            });
        }
        let out = self
            .cipher
            .decrypt(&nonce(self.index, last).into(), Payload { msg: chunk, aad: AAD })
            .map_err(|_| StreamError::Tampered(self.index))?;
        self.index += 1;
        self.done = last;
        Ok(out)
    }

    /// The stream ended: it must have ended with its last chunk.
    pub fn finish(self) -> Result<(), StreamError> {
        if self.done { Ok(()) } else { Err(StreamError::Truncated) }
    }
}

/// Encrypt a whole archive held in memory (tests, small archives).
pub fn encrypt(key: &ModelKey, plaintext: &[u8]) -> Vec<u8> {
    let mut e = Encryptor::new(key);
    let mut out = Vec::with_capacity(ciphertext_len(plaintext.len() as u64) as usize);
    let mut chunks = plaintext.chunks(CHUNK_BYTES as usize).peekable();
    if chunks.peek().is_none() {
        out.extend(e.seal_chunk(&[], true).expect("an empty last chunk seals"));
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        out.extend(e.seal_chunk(c, last).expect("chunks are cut at CHUNK_BYTES"));
    }
    out
}

/// Decrypt a whole archive held in memory.
pub fn decrypt(key: &ModelKey, check: &Hash32, ciphertext: &[u8]) -> Result<Vec<u8>, StreamError> {
    let mut d = Decryptor::new(key, check)?;
    let mut out = Vec::with_capacity(ciphertext.len());
    let mut chunks = ciphertext.chunks((CHUNK_BYTES + TAG_BYTES) as usize).peekable();
    while let Some(c) = chunks.next() {
        out.extend(d.open_chunk(c, chunks.peek().is_none())?);
    }
    d.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::SeededRng;

    const CT_CHUNK: usize = (CHUNK_BYTES + TAG_BYTES) as usize;

    fn key(seed: &[u8]) -> ModelKey {
        ModelKey::generate(&mut SeededRng::new(seed))
    }

    /// Two and a half chunks of bytes that differ everywhere.
    fn archive() -> Vec<u8> {
        let n = CHUNK_BYTES as usize * 5 / 2;
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn an_archive_round_trips_and_its_ciphertext_has_the_declared_length() {
        let k = key(b"k");
        for len in [0, 1, CHUNK_BYTES as usize, CHUNK_BYTES as usize + 1, archive().len()] {
            let plain = &archive()[..len];
            let ct = encrypt(&k, plain);
            assert_eq!(ct.len() as u64, ciphertext_len(len as u64), "length {len}");
            assert_eq!(decrypt(&k, &k.check(), &ct).unwrap(), plain);
        }
    }

    #[test]
    fn the_ciphertext_shows_nothing_of_the_plaintext() {
        let k = key(b"k");
        let plain = vec![b'A'; 4096];
        let ct = encrypt(&k, &plain);
        assert!(!ct.windows(16).any(|w| w == &plain[..16]));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let k = key(b"k");
        let ct = encrypt(&k, &archive());
        for at in [0, 17, CT_CHUNK - 1, CT_CHUNK + 5, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[at] ^= 1;
            let err = decrypt(&k, &k.check(), &bad).unwrap_err();
            assert!(matches!(err, StreamError::Tampered(_)), "bit at {at}: {err}");
        }
    }

    #[test]
    fn chunks_swapped_or_repeated_are_refused() {
        let k = key(b"k");
        let ct = encrypt(&k, &archive());
        let (a, rest) = ct.split_at(CT_CHUNK);
        let (b, c) = rest.split_at(CT_CHUNK);
        let swapped = [b, a, c].concat();
        assert_eq!(decrypt(&k, &k.check(), &swapped).unwrap_err(), StreamError::Tampered(0));
        let repeated = [a, a, c].concat();
        assert_eq!(decrypt(&k, &k.check(), &repeated).unwrap_err(), StreamError::Tampered(1));
    }

    #[test]
    fn an_archive_cut_short_is_refused_at_a_chunk_boundary_or_inside_a_chunk() {
        let k = key(b"k");
        let ct = encrypt(&k, &archive());
        // Whole chunks dropped from the end: the chunk now last was sealed as not last.
        let cut = &ct[..2 * CT_CHUNK];
        assert_eq!(decrypt(&k, &k.check(), cut).unwrap_err(), StreamError::Tampered(1));
        // Cut inside a chunk.
        let cut = &ct[..CT_CHUNK + 100];
        assert_eq!(decrypt(&k, &k.check(), cut).unwrap_err(), StreamError::Tampered(1));
        // A reader that stops early, chunk by chunk, without seeing the last chunk.
        let mut d = Decryptor::new(&k, &k.check()).unwrap();
        d.open_chunk(&ct[..CT_CHUNK], false).unwrap();
        assert_eq!(d.finish().unwrap_err(), StreamError::Truncated);
        // Nothing at all.
        assert_eq!(decrypt(&k, &k.check(), &[]).unwrap_err(), StreamError::Truncated);
    }

    #[test]
    fn bytes_after_the_last_chunk_are_refused() {
        let k = key(b"k");
        let mut ct = encrypt(&k, b"small archive");
        let mut d = Decryptor::new(&k, &k.check()).unwrap();
        d.open_chunk(&ct, true).unwrap();
        assert_eq!(d.open_chunk(b"more", true).unwrap_err(), StreamError::TrailingData);
        ct.extend_from_slice(b"appended");
        assert!(decrypt(&k, &k.check(), &ct).is_err());
    }

    #[test]
    fn another_key_is_refused_before_decrypting_and_fails_if_forced() {
        let (k, other) = (key(b"k"), key(b"other"));
        let ct = encrypt(&k, &archive());
        assert_eq!(decrypt(&other, &k.check(), &ct).unwrap_err(), StreamError::WrongKey);
        assert_eq!(decrypt(&other, &other.check(), &ct).unwrap_err(), StreamError::Tampered(0));
    }

    #[test]
    fn the_key_check_is_not_the_key() {
        let k = key(b"k");
        assert_ne!(k.check().as_bytes(), k.as_bytes());
        assert!(!format!("{k:?}").contains(&hex::encode(k.as_bytes())));
    }
}
