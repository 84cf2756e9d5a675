//! Private models on disk: encrypting a `docker save` archive for publication,
//! and, at a granted site, decrypting it to a temporary file inside the site's
//! work folder, loading it and checking the signed image id before anything runs.
//! The cipher itself is [`protocol::private`]; this module streams files through
//! it a chunk at a time, so a GiB archive never sits in memory.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use protocol::private::{
    self, CHUNK_BYTES, Decryptor, Encryptor, ModelKey, StreamError, TAG_BYTES,
};
use protocol::record::{ArchiveEncryption, ImageRef};
use thiserror::Error;

use crate::engine::Engine;
use crate::error::RunnerError;

/// Encrypting, decrypting or loading a private model's archive failed.
#[derive(Debug, Error)]
pub enum PrivateError {
    #[error("cannot {during} {path}: {source}")]
    Io {
        during: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(
        "the encrypted archive holds {actual} bytes; its record declares {expected}: fetch it again"
    )]
    Size { actual: u64, expected: u64 },
    #[error("unknown encryption scheme `{0}`: update medmesh")]
    Scheme(String),
    #[error(transparent)]
    Engine(#[from] RunnerError),
}

fn io(during: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PrivateError {
    let path = path.to_path_buf();
    move |source| PrivateError::Io { during, path, source }
}

/// A file only this user reads, removed when dropped (whatever happens).
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create(path: PathBuf) -> Result<(Self, File), PrivateError> {
        let _ = std::fs::remove_file(&path);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("create", &path))?;
        Ok((Self { path }, f))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Fill `buf` as far as the reader goes; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Encrypt the archive `src` under `key` into `dst` (created 0600); returns what
/// the container record says of it.
pub fn encrypt_file(
    key: &ModelKey,
    src: &Path,
    dst: &Path,
) -> Result<ArchiveEncryption, PrivateError> {
    let mut input = BufReader::new(File::open(src).map_err(io("read", src))?);
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dst)
        .map_err(io("create", dst))?;
    let mut out = BufWriter::new(out);
    let mut e = Encryptor::new(key);
    let chunk = CHUNK_BYTES as usize;
    // One chunk read ahead, so that the last one is known when it is sealed.
    let mut cur = vec![0u8; chunk];
    let mut next = vec![0u8; chunk];
    let mut cur_len = read_full(&mut input, &mut cur).map_err(io("read", src))?;
    let mut total = cur_len as u64;
    loop {
        let next_len = if cur_len == chunk {
            read_full(&mut input, &mut next).map_err(io("read", src))?
        } else {
            0
        };
        let last = next_len == 0;
        let sealed = e.seal_chunk(&cur[..cur_len], last)?;
        out.write_all(&sealed).map_err(io("write", dst))?;
        if last {
            break;
        }
        std::mem::swap(&mut cur, &mut next);
        cur_len = next_len;
        total += cur_len as u64;
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(io("write", dst))?;
    Ok(ArchiveEncryption {
        scheme: private::SCHEME.into(),
        key_check: key.check(),
        plaintext_size: total,
    })
}

/// Decrypt `src` (the blob a private container names) into `out`, checking every
/// chunk; the first chunk that does not check stops it.
fn decrypt_into(
    key: &ModelKey,
    enc: &ArchiveEncryption,
    src: &Path,
    out: &mut impl Write,
    out_path: &Path,
) -> Result<(), PrivateError> {
    if enc.scheme != private::SCHEME {
        return Err(PrivateError::Scheme(enc.scheme.clone()));
    }
    let mut d = Decryptor::new(key, &enc.key_check)?;
    let f = File::open(src).map_err(io("read", src))?;
    let actual = f.metadata().map_err(io("read", src))?.len();
    let expected = private::ciphertext_len(enc.plaintext_size);
    if actual != expected {
        return Err(PrivateError::Size { actual, expected });
    }
    let full = u64::from(CHUNK_BYTES + TAG_BYTES);
    let chunks = actual.div_ceil(full).max(1);
    let mut input = BufReader::new(f);
    let mut buf = vec![0u8; full as usize];
    for i in 0..chunks {
        let n = read_full(&mut input, &mut buf).map_err(io("read", src))?;
        let plain = d.open_chunk(&buf[..n], i + 1 == chunks)?;
        out.write_all(&plain).map_err(io("write", out_path))?;
    }
    d.finish()?;
    Ok(())
}

/// Decrypt `src` into `dst` (created 0600).
pub fn decrypt_file(
    key: &ModelKey,
    enc: &ArchiveEncryption,
    src: &Path,
    dst: &Path,
) -> Result<(), PrivateError> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dst)
        .map_err(io("create", dst))?;
    let mut w = BufWriter::new(f);
    decrypt_into(key, enc, src, &mut w, dst)?;
    w.flush().map_err(io("write", dst))
}

/// At a granted site: decrypt the encrypted archive `ciphertext` into a temporary
/// file in `scratch_dir` (owner-only, removed whatever happens), load it into the
/// engine and check the loaded image against the signed id. Nothing is loaded
/// unless every chunk checked.
pub async fn load_private_image(
    engine: &Engine,
    ciphertext: &Path,
    key: &ModelKey,
    enc: &ArchiveEncryption,
    image: &ImageRef,
    scratch_dir: &Path,
) -> Result<(), PrivateError> {
    std::fs::create_dir_all(scratch_dir).map_err(io("create", scratch_dir))?;
    let (scratch, f) =
        Scratch::create(scratch_dir.join(format!("{}.tar.part", enc.key_check.to_hex())))?;
    let mut w = BufWriter::new(f);
    decrypt_into(key, enc, ciphertext, &mut w, &scratch.path)?;
    w.flush().map_err(io("write", &scratch.path))?;
    drop(w);
    engine.load_verified_image(&scratch.path, image).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::seal::SeededRng;

    #[test]
    fn a_file_round_trips_through_the_streaming_cipher_as_the_in_memory_one_seals_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = ModelKey::generate(&mut SeededRng::new(b"k"));
        for len in [0usize, 5, CHUNK_BYTES as usize, CHUNK_BYTES as usize * 2 + 7] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let (src, enc_path, back) =
                (dir.path().join("a.tar"), dir.path().join("a.enc"), dir.path().join("b.tar"));
            std::fs::write(&src, &plain).unwrap();
            let enc = encrypt_file(&key, &src, &enc_path).unwrap();
            assert_eq!(enc.plaintext_size, len as u64);
            let ct = std::fs::read(&enc_path).unwrap();
            assert_eq!(ct, private::encrypt(&key, &plain), "length {len}");
            decrypt_file(&key, &enc, &enc_path, &back).unwrap();
            assert_eq!(std::fs::read(&back).unwrap(), plain);
        }
    }

    #[test]
    fn a_cut_or_altered_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = ModelKey::generate(&mut SeededRng::new(b"k"));
        let src = dir.path().join("a.tar");
        std::fs::write(&src, vec![9u8; CHUNK_BYTES as usize + 10]).unwrap();
        let enc_path = dir.path().join("a.enc");
        let enc = encrypt_file(&key, &src, &enc_path).unwrap();
        let ct = std::fs::read(&enc_path).unwrap();
        let out = dir.path().join("out");
        std::fs::write(&enc_path, &ct[..ct.len() - 1]).unwrap();
        assert!(matches!(
            decrypt_file(&key, &enc, &enc_path, &out),
            Err(PrivateError::Size { .. })
        ));
        let mut bad = ct.clone();
        bad[10] ^= 0x40;
        std::fs::write(&enc_path, &bad).unwrap();
        assert!(matches!(
            decrypt_file(&key, &enc, &enc_path, &out),
            Err(PrivateError::Stream(StreamError::Tampered(0)))
        ));
        let other = ModelKey::generate(&mut SeededRng::new(b"other"));
        std::fs::write(&enc_path, &ct).unwrap();
        assert!(matches!(
            decrypt_file(&other, &enc, &enc_path, &out),
            Err(PrivateError::Stream(StreamError::WrongKey))
        ));
    }
}
