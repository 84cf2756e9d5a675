//! The user's keys: an Ed25519 signing key and an X25519 key for opening results,
//! kept in owner-only files (0600 in a 0700 directory). A key file that others can
//! read is refused, not used.
//!
//! File format: one line, `<kind> <64 hex digits>`, so that a key is never
//! mistaken for the other kind.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use protocol::seal::OpeningKey;
use protocol::{PublicKey, SigningKey, X25519Key};
use thiserror::Error;

const SIGNING_KIND: &str = "medmesh-ed25519-secret-v1";
const X25519_KIND: &str = "medmesh-x25519-secret-v1";
const SIGNING_FILE: &str = "signing.key";
const X25519_FILE: &str = "x25519.key";

/// Key handling failed.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("no keys in {dir}; run `medmesh keys generate` first")]
    Missing { dir: PathBuf },
    #[error("keys already exist in {dir}; refusing to overwrite them (move them away first)")]
    Exists { dir: PathBuf },
    #[error(
        "{path} is readable or writable by others (mode {mode:o}); run `chmod 600 {path}` (and `chmod 700` on its folder) if you trust it, or generate new keys"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a {kind} key file")]
    Malformed { path: PathBuf, kind: &'static str },
    #[error("the signing key in {path} is weak; generate new keys")]
    Weak { path: PathBuf },
    #[error("cannot read or write {path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_path_buf(), source }
}

/// A user's keys, loaded.
pub struct Keys {
    pub signing: SigningKey,
    pub opening: OpeningKey,
}

impl Keys {
    /// The public signing key (the user's identity on the network).
    pub fn public(&self) -> PublicKey {
        PublicKey::from(&self.signing)
    }

    /// The public X25519 key (published in the profile).
    pub fn x25519(&self) -> X25519Key {
        self.opening.public()
    }
}

fn random32() -> Result<[u8; 32], KeyError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(b)
}

fn check_private(path: &Path) -> Result<(), KeyError> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen { path: path.to_path_buf(), mode });
    }
    Ok(())
}

fn write_new(path: &Path, kind: &str, secret: &[u8; 32]) -> Result<(), KeyError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    writeln!(f, "{kind} {}", hex::encode(secret)).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn read(path: &Path, kind: &'static str) -> Result<[u8; 32], KeyError> {
    if !path.exists() {
        return Err(KeyError::Missing { dir: path.parent().unwrap_or(path).to_path_buf() });
    }
    check_private(path)?;
    let text = fs::read_to_string(path).map_err(io(path))?;
    let malformed = || KeyError::Malformed { path: path.to_path_buf(), kind };
    let hex_part = text.trim().strip_prefix(kind).ok_or_else(malformed)?.trim();
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| malformed())?;
    Ok(out)
}

/// Generate both keys in `dir` (created 0700). Refuses to overwrite.
pub fn generate(dir: &Path) -> Result<Keys, KeyError> {
    let signing_path = dir.join(SIGNING_FILE);
    let x_path = dir.join(X25519_FILE);
    if signing_path.exists() || x_path.exists() {
        return Err(KeyError::Exists { dir: dir.to_path_buf() });
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let signing = SigningKey::from_bytes(&random32()?);
    // A random Ed25519 secret never yields a weak public key in practice; check anyway.
    PublicKey::from_bytes(signing.verifying_key().to_bytes())
        .map_err(|_| KeyError::Weak { path: signing_path.clone() })?;
    let opening = OpeningKey::from_secret(random32()?);
    write_new(&signing_path, SIGNING_KIND, &signing.to_bytes())?;
    write_new(&x_path, X25519_KIND, opening.secret())?;
    Ok(Keys { signing, opening })
}

/// Load both keys from `dir`, refusing files others can read.
pub fn load(dir: &Path) -> Result<Keys, KeyError> {
    if dir.exists() {
        check_private(dir)?;
    }
    let signing_path = dir.join(SIGNING_FILE);
    let signing = SigningKey::from_bytes(&read(&signing_path, SIGNING_KIND)?);
    PublicKey::from_bytes(signing.verifying_key().to_bytes())
        .map_err(|_| KeyError::Weak { path: signing_path })?;
    let opening = OpeningKey::from_secret(read(&dir.join(X25519_FILE), X25519_KIND)?);
    Ok(Keys { signing, opening })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("medmesh-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn generated_keys_are_owner_only_and_load_back() {
        let d = tmp("roundtrip");
        let k = generate(&d).unwrap();
        for f in [SIGNING_FILE, X25519_FILE] {
            assert_eq!(fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        let back = load(&d).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(back.x25519(), k.x25519());
    }

    #[test]
    fn generating_twice_never_overwrites() {
        let d = tmp("twice");
        let first = generate(&d).unwrap();
        assert!(matches!(generate(&d), Err(KeyError::Exists { .. })));
        assert_eq!(load(&d).unwrap().public(), first.public());
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let d = tmp("open");
        generate(&d).unwrap();
        let p = d.join(SIGNING_FILE);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&d).err().expect("refused");
        assert!(matches!(err, KeyError::TooOpen { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn a_swapped_key_file_is_malformed_not_misused() {
        let d = tmp("swap");
        generate(&d).unwrap();
        fs::rename(d.join(X25519_FILE), d.join("tmp")).unwrap();
        fs::copy(d.join(SIGNING_FILE), d.join(X25519_FILE)).unwrap();
        fs::set_permissions(d.join(X25519_FILE), fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load(&d), Err(KeyError::Malformed { kind: X25519_KIND, .. })));
    }

    #[test]
    fn missing_keys_say_how_to_make_them() {
        let d = tmp("missing");
        let err = load(&d).err().expect("missing");
        assert!(err.to_string().contains("medmesh keys generate"));
    }
}
