//! A deterministic tree hash of prepared data: BLAKE3 over every file's relative
//! path, size and content hash, in path order.
//!
//! MedPerf hashes each file with SHA-256 and hashes the sorted digests, so renaming
//! or moving files goes unnoticed. This hash binds each file's relative path (under
//! a label such as `data/` or `labels/`) as well. Files are read streaming, several
//! at once (one thread per core); a large file is hashed with BLAKE3's own
//! multi-threaded mode. Symbolic links and special files are refused: prepared data
//! is plain files.
//!
//! Definition (`v1`): `derive_key("medmesh tree hash v1")` over, for each file in
//! bytewise order of its path `label/relative/path`: the path length (u64 LE), the
//! path bytes, the file size (u64 LE) and the file's BLAKE3 hash; then the file
//! count (u64 LE).

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use protocol::Hash32;
use sha2::Digest as _;

use crate::error::RunnerError;

/// BLAKE3 key-derivation context of the tree hash.
pub const TREE_HASH_CONTEXT: &str = "medmesh tree hash v1";
/// Most files in one hashed tree.
pub const TREE_FILES_MAX: usize = 10_000_000;
/// Deepest folder nesting followed.
pub const TREE_DEPTH_MAX: usize = 64;
/// Files at least this large are hashed with all cores at once.
pub const PARALLEL_FILE_BYTES_MIN: u64 = 8 * 1024 * 1024;
/// Most hashing threads.
pub const HASH_THREADS_MAX: usize = 16;

/// One file of a tree: its path as hashed and where it is.
#[derive(Clone, Debug)]
pub struct TreeFile {
    pub rel: Vec<u8>,
    pub path: PathBuf,
}

/// Every file under each `(label, root)`, sorted by `label/relative/path` bytes. A
/// missing root counts as empty.
pub fn list_tree(roots: &[(&str, &Path)]) -> Result<Vec<TreeFile>, RunnerError> {
    let mut files = Vec::new();
    for (label, root) in roots {
        if !root.exists() {
            continue;
        }
        let meta = std::fs::symlink_metadata(root).map_err(RunnerError::io(*root))?;
        if meta.is_file() {
            files.push(TreeFile { rel: label.as_bytes().to_vec(), path: root.to_path_buf() });
        } else {
            walk(root, label.as_bytes().to_vec(), 0, &mut files)?;
        }
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    if files.windows(2).any(|w| w[0].rel == w[1].rel) {
        return Err(RunnerError::Invalid {
            path: PathBuf::from("."),
            reason: "two tree roots share a label".into(),
        });
    }
    Ok(files)
}

fn walk(
    dir: &Path,
    prefix: Vec<u8>,
    depth: usize,
    out: &mut Vec<TreeFile>,
) -> Result<(), RunnerError> {
    if depth > TREE_DEPTH_MAX {
        return Err(RunnerError::Invalid {
            path: dir.into(),
            reason: format!("nested deeper than {TREE_DEPTH_MAX} folders"),
        });
    }
    for entry in std::fs::read_dir(dir).map_err(RunnerError::io(dir))? {
        let entry = entry.map_err(RunnerError::io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(RunnerError::io(&path))?;
        let mut rel = prefix.clone();
        rel.push(b'/');
        rel.extend_from_slice(entry.file_name().as_bytes());
        if kind.is_dir() {
            walk(&path, rel, depth + 1, out)?;
        } else if kind.is_file() {
            if out.len() >= TREE_FILES_MAX {
                return Err(RunnerError::Invalid {
                    path: dir.into(),
                    reason: format!("more than {TREE_FILES_MAX} files"),
                });
            }
            out.push(TreeFile { rel, path });
        } else {
            return Err(RunnerError::Invalid { path, reason: "is a symbolic link or special file; prepared data must be plain files and folders".into() });
        }
    }
    Ok(())
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, HASH_THREADS_MAX)
}

/// Apply `f` to every file, on all cores, keeping the files' order.
fn par_map<T: Send>(
    files: &[TreeFile],
    f: impl Fn(&TreeFile) -> Result<T, RunnerError> + Sync,
) -> Result<Vec<T>, RunnerError> {
    let next = AtomicUsize::new(0);
    let parts: Vec<Result<Vec<(usize, T)>, RunnerError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads().min(files.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = files.get(i) else { return Ok(done) };
                        done.push((i, f(file)?));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(RunnerError::Invalid {
                        path: PathBuf::from("."),
                        reason: "a hashing thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut all = Vec::with_capacity(files.len());
    for p in parts {
        all.extend(p?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

fn blake3_file(file: &TreeFile) -> Result<(u64, [u8; 32]), RunnerError> {
    let len = std::fs::metadata(&file.path).map_err(RunnerError::io(&file.path))?.len();
    let mut h = blake3::Hasher::new();
    if len >= PARALLEL_FILE_BYTES_MIN {
        h.update_mmap_rayon(&file.path).map_err(RunnerError::io(&file.path))?;
    } else {
        let f = std::fs::File::open(&file.path).map_err(RunnerError::io(&file.path))?;
        h.update_reader(f).map_err(RunnerError::io(&file.path))?;
    }
    Ok((h.count(), *h.finalize().as_bytes()))
}

/// The MedMesh tree hash of the files under each `(label, root)`.
pub fn tree_hash(roots: &[(&str, &Path)]) -> Result<Hash32, RunnerError> {
    let files = list_tree(roots)?;
    let hashes = par_map(&files, blake3_file)?;
    let mut h = blake3::Hasher::new_derive_key(TREE_HASH_CONTEXT);
    for (file, (len, digest)) in files.iter().zip(&hashes) {
        h.update(&(file.rel.len() as u64).to_le_bytes());
        h.update(&file.rel);
        h.update(&len.to_le_bytes());
        h.update(digest);
    }
    h.update(&(files.len() as u64).to_le_bytes());
    Ok(Hash32::from_bytes(*h.finalize().as_bytes()))
}

/// MedPerf's dataset hash, for comparison: SHA-256 of each file, the hex digests
/// sorted, SHA-256 of their concatenation (paths do not count). Hex.
pub fn medperf_hash(roots: &[(&str, &Path)]) -> Result<String, RunnerError> {
    let files = list_tree(roots)?;
    let mut digests = par_map(&files, |file| {
        let mut f = std::fs::File::open(&file.path).map_err(RunnerError::io(&file.path))?;
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(RunnerError::io(&file.path))?;
        Ok(hex::encode(h.finalize()))
    })?;
    digests.sort();
    Ok(hex::encode(sha2::Sha256::digest(digests.concat().as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (p, data) in files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        dir
    }

    fn hash(dir: &tempfile::TempDir) -> Hash32 {
        tree_hash(&[("data", &dir.path().join("data")), ("labels", &dir.path().join("labels"))])
            .unwrap()
    }

    #[test]
    fn the_tree_hash_is_the_same_for_the_same_files_and_paths() {
        let a = tree(&[("data/x.csv", b"1"), ("data/sub/y.csv", b"2"), ("labels/l.csv", b"3")]);
        let b = tree(&[("labels/l.csv", b"3"), ("data/sub/y.csv", b"2"), ("data/x.csv", b"1")]);
        assert_eq!(hash(&a), hash(&b));
    }

    #[test]
    fn the_tree_hash_binds_paths_where_medperfs_hash_does_not() {
        let a = tree(&[("data/x.csv", b"1"), ("data/y.csv", b"2"), ("labels/l.csv", b"3")]);
        let swapped = tree(&[("data/x.csv", b"2"), ("data/y.csv", b"1"), ("labels/l.csv", b"3")]);
        let moved = tree(&[("data/x.csv", b"1"), ("labels/y.csv", b"2"), ("labels/l.csv", b"3")]);
        assert_ne!(hash(&a), hash(&swapped));
        assert_ne!(hash(&a), hash(&moved));
        let mp = |d: &tempfile::TempDir| {
            medperf_hash(&[("data", &d.path().join("data")), ("labels", &d.path().join("labels"))])
                .unwrap()
        };
        assert_eq!(mp(&a), mp(&swapped));
        assert_eq!(mp(&a), mp(&moved));
    }

    #[test]
    fn the_tree_hash_changes_with_any_byte_and_with_an_added_empty_file() {
        let a = tree(&[("data/x.csv", b"abc"), ("labels/l.csv", b"3")]);
        let b = tree(&[("data/x.csv", b"abd"), ("labels/l.csv", b"3")]);
        let c = tree(&[("data/x.csv", b"abc"), ("data/empty", b""), ("labels/l.csv", b"3")]);
        assert_ne!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&c));
    }

    #[test]
    fn a_large_file_hashes_the_same_as_plain_blake3_inside_the_tree() {
        let big = vec![7u8; (PARALLEL_FILE_BYTES_MIN + 12345) as usize];
        let a = tree(&[("data/big", &big), ("labels/l", b"1")]);
        let files = list_tree(&[("data", &a.path().join("data"))]).unwrap();
        let (len, digest) = blake3_file(&files[0]).unwrap();
        assert_eq!(len, big.len() as u64);
        assert_eq!(&digest, blake3::hash(&big).as_bytes());
    }

    #[test]
    fn a_symlink_in_prepared_data_is_refused() {
        let a = tree(&[("data/x.csv", b"1")]);
        std::os::unix::fs::symlink("/etc/passwd", a.path().join("data/link")).unwrap();
        let err = tree_hash(&[("data", &a.path().join("data"))]).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }
}
