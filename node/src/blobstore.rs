//! The content-addressed blob store: files under `blobs/` in the data directory,
//! an index in `blobs.redb`.
//!
//! A blob is named by the BLAKE3 hash of its bytes ([`Hash32`]). Beside each
//! complete blob lies its bao outboard (the BLAKE3 tree's inner hashes, in 16 KiB
//! chunk groups), so that any range of it can be served with the proof that
//! lets the receiver check every chunk as it arrives ([`bao_tree`]). A blob being
//! fetched is a partial file of its declared size plus a bitmap of the pieces
//! ([`PIECE_BYTES`]) already received and verified; both survive a restart, so a
//! fetch resumes where it stopped.
//!
//! Bounded: a blob's size is declared before it is fetched (by the signed record
//! that names it) and the tree is built for that size, so a peer cannot make us
//! write more; every byte held or being fetched counts against a quota; blobs
//! are pinned (what this node's user published or asked for) or collected by
//! [`BlobStore::gc`] once no counting record names them.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bao_tree::io::BaoContentItem;
use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::{
    CreateOutboard, DecodeResponseIter, encode_ranges, encode_ranges_validated,
};
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use protocol::Hash32;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

/// Chunk groups of 16 KiB: the unit the outboard hashes and a leaf carries.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
/// A piece: the unit of a request, of resumption and of refetching (1 MiB).
pub const PIECE_BYTES: u64 = 1024 * 1024;
const PIECE_CHUNKS: u64 = PIECE_BYTES / 1024;
/// Largest blob (a model image archive of some gigabytes fits): what a record may
/// declare.
pub const BLOB_BYTES_MAX: u64 = protocol::limits::BLOB_BYTES_MAX;
/// Default disk quota for blobs held and being fetched.
pub const BLOB_QUOTA_BYTES_DEFAULT: u64 = 100 * 1024 * 1024 * 1024;
/// Pieces recorded between two durable commits of the piece bitmaps. The
/// commits between are in memory only: a crash forgets at most this many
/// received pieces, which are fetched again (the bitmap never claims a piece the
/// file lacks, and the finished file is hashed as a whole anyway).
pub const PIECES_PER_DURABLE_COMMIT: u32 = 32;
/// The index file inside the data directory.
pub const BLOBS_INDEX_FILE: &str = "blobs.redb";
/// The folder of blob files inside the data directory.
pub const BLOBS_DIR: &str = "blobs";

const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");
const PIECES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pieces");

/// What went wrong in the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store i/o at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob index: {0}")]
    Index(String),
    #[error(
        "blob quota exceeded: {needed} bytes needed, {used} of {quota} in use; run `medmesh blob gc` or start the node with a larger --blob-quota"
    )]
    Quota { needed: u64, used: u64, quota: u64 },
    #[error("blob {hash} is {size} bytes, more than the {max} bytes a blob may have")]
    TooLarge { hash: String, size: u64, max: u64 },
    #[error("blob {hash} is being fetched with size {have}, not {declared}")]
    SizeMismatch { hash: String, have: u64, declared: u64 },
    #[error("no blob {0} in this node's store")]
    NotFound(String),
    #[error("piece {piece} of blob {hash} failed verification: {reason}")]
    Corrupt { hash: String, piece: u32, reason: String },
    #[error("piece {piece} is outside blob {hash}")]
    NoSuchPiece { hash: String, piece: u32 },
}

impl BlobError {
    fn index(e: impl std::fmt::Display) -> Self {
        BlobError::Index(e.to_string())
    }
}

/// One blob as the index knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BlobInfo {
    pub hash: Hash32,
    pub size: u64,
    pub complete: bool,
    pub pinned: bool,
}

impl BlobInfo {
    fn encode(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[..8].copy_from_slice(&self.size.to_le_bytes());
        b[8] = u8::from(self.complete);
        b[9] = u8::from(self.pinned);
        b
    }

    fn decode(hash: Hash32, b: &[u8]) -> Option<Self> {
        let size = u64::from_le_bytes(b.get(..8)?.try_into().ok()?);
        Some(BlobInfo { hash, size, complete: *b.get(8)? == 1, pinned: *b.get(9)? == 1 })
    }
}

/// Pieces of a blob of `size` bytes.
pub fn pieces_of(size: u64) -> u32 {
    // BLOB_BYTES_MAX / PIECE_BYTES fits in u32.
    u32::try_from(size.div_ceil(PIECE_BYTES)).unwrap_or(u32::MAX)
}

fn piece_ranges(piece: u32) -> ChunkRanges {
    let start = u64::from(piece) * PIECE_CHUNKS;
    ChunkRanges::from(ChunkNum(start)..ChunkNum(start + PIECE_CHUNKS))
}

fn blake3_of(hash: &Hash32) -> blake3::Hash {
    blake3::Hash::from_bytes(*hash.as_bytes())
}

/// The store. Cheap to share behind an `Arc`; methods block (call them off the
/// async runtime).
pub struct BlobStore {
    dir: PathBuf,
    /// The index; `None` once closed, so that the file is free for the next node
    /// on this data directory even while handles to the store live on.
    db: std::sync::RwLock<Option<Database>>,
    quota: u64,
    /// Serialises index updates that read then write (quota, pieces).
    write: Mutex<()>,
    /// Pieces recorded since the last durable commit.
    since_durable: std::sync::atomic::AtomicU32,
}

impl BlobStore {
    /// Open (or create) the store under `data_dir`.
    pub fn open(data_dir: &Path, quota: u64) -> Result<Self, BlobError> {
        let dir = data_dir.join(BLOBS_DIR);
        for sub in ["data", "partial", "tmp"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|source| BlobError::Io { path: p, source })?;
        }
        let db = Database::create(data_dir.join(BLOBS_INDEX_FILE)).map_err(BlobError::index)?;
        let tx = db.begin_write().map_err(BlobError::index)?;
        tx.open_table(BLOBS).map_err(BlobError::index)?;
        tx.open_table(PIECES).map_err(BlobError::index)?;
        tx.commit().map_err(BlobError::index)?;
        Ok(BlobStore {
            dir,
            db: std::sync::RwLock::new(Some(db)),
            quota,
            write: Mutex::new(()),
            since_durable: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, BlobError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        db.as_ref()
            .ok_or_else(|| BlobError::Index("the blob store is closed".into()))?
            .begin_read()
            .map_err(BlobError::index)
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, BlobError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        db.as_ref()
            .ok_or_else(|| BlobError::Index("the blob store is closed".into()))?
            .begin_write()
            .map_err(BlobError::index)
    }

    /// Close the index (the node stops); later calls fail with a clear error.
    pub fn close(&self) {
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn data_path(&self, hash: &Hash32) -> PathBuf {
        self.dir.join("data").join(hash.to_hex())
    }

    fn outboard_path(&self, hash: &Hash32) -> PathBuf {
        self.dir.join("data").join(format!("{}.obao", hash.to_hex()))
    }

    fn partial_path(&self, hash: &Hash32) -> PathBuf {
        self.dir.join("partial").join(hash.to_hex())
    }

    /// The disk quota in bytes.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The index entry of `hash`.
    pub fn info(&self, hash: &Hash32) -> Result<Option<BlobInfo>, BlobError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(BLOBS).map_err(BlobError::index)?;
        let v = t.get(hash.as_bytes()).map_err(BlobError::index)?;
        Ok(v.and_then(|v| BlobInfo::decode(*hash, v.value())))
    }

    /// Every blob, complete or not.
    pub fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(BLOBS).map_err(BlobError::index)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(BlobError::index)? {
            let (k, v) = row.map_err(BlobError::index)?;
            if let Some(i) = BlobInfo::decode(Hash32::from_bytes(*k.value()), v.value()) {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Bytes held and reserved by blobs being fetched.
    pub fn used(&self) -> Result<u64, BlobError> {
        Ok(self.list()?.iter().map(|b| b.size).sum())
    }

    fn reserve(&self, size: u64) -> Result<(), BlobError> {
        let used = self.used()?;
        if used.saturating_add(size) > self.quota {
            return Err(BlobError::Quota { needed: size, used, quota: self.quota });
        }
        Ok(())
    }

    fn put_info(&self, info: &BlobInfo) -> Result<(), BlobError> {
        let tx = self.begin_write()?;
        {
            let mut t = tx.open_table(BLOBS).map_err(BlobError::index)?;
            t.insert(info.hash.as_bytes(), info.encode().as_slice()).map_err(BlobError::index)?;
        }
        tx.commit().map_err(BlobError::index)
    }

    /// Add a blob from a reader (the user's own file, or an upload), pinned or
    /// not. Streams to a temporary file, then hashes it with its outboard.
    pub fn add(&self, mut from: impl io::Read, pin: bool) -> Result<BlobInfo, BlobError> {
        let tmp_dir = self.dir.join("tmp");
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobError::Io { path, source }
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(io_err(&tmp_dir))?;
        let size = io::copy(&mut io::Read::take(&mut from, BLOB_BYTES_MAX + 1), tmp.as_file_mut())
            .map_err(io_err(tmp.path()))?;
        if size > BLOB_BYTES_MAX {
            return Err(BlobError::TooLarge { hash: "(upload)".into(), size, max: BLOB_BYTES_MAX });
        }
        tmp.as_file().sync_data().map_err(io_err(tmp.path()))?;
        let file = File::open(tmp.path()).map_err(io_err(tmp.path()))?;
        let ob = PreOrderOutboard::<Vec<u8>>::create_sized(
            io::BufReader::with_capacity(1 << 20, file),
            size,
            BLOCK_SIZE,
        )
        .map_err(io_err(tmp.path()))?;
        let hash = Hash32::from_bytes(*ob.root.as_bytes());
        let _g = self.lock();
        if let Some(mut have) = self.info(&hash)? {
            if have.complete {
                if pin && !have.pinned {
                    have.pinned = true;
                    self.put_info(&have)?;
                }
                return Ok(have);
            }
        } else {
            self.reserve(size)?;
        }
        self.write_outboard(&hash, &ob.data)?;
        let dest = self.data_path(&hash);
        tmp.persist(&dest).map_err(|e| BlobError::Io { path: dest.clone(), source: e.error })?;
        let _ = std::fs::remove_file(self.partial_path(&hash));
        let info = BlobInfo { hash, size, complete: true, pinned: pin };
        self.put_info(&info)?;
        self.clear_pieces(&hash)?;
        Ok(info)
    }

    fn write_outboard(&self, hash: &Hash32, data: &[u8]) -> Result<(), BlobError> {
        let path = self.outboard_path(hash);
        let mut f =
            File::create(&path).map_err(|source| BlobError::Io { path: path.clone(), source })?;
        f.write_all(data)
            .and_then(|_| f.sync_data())
            .map_err(|source| BlobError::Io { path, source })
    }

    /// Set or clear the pin of a blob the store knows.
    pub fn pin(&self, hash: &Hash32, pinned: bool) -> Result<BlobInfo, BlobError> {
        let _g = self.lock();
        let mut info = self.info(hash)?.ok_or_else(|| BlobError::NotFound(hash.to_hex()))?;
        info.pinned = pinned;
        self.put_info(&info)?;
        Ok(info)
    }

    /// Start or resume fetching `hash` of the declared `size`: reserves the
    /// quota and creates the partial file. Returns the pieces still missing
    /// (empty when the blob is complete).
    pub fn begin(&self, hash: &Hash32, size: u64, pin: bool) -> Result<Vec<u32>, BlobError> {
        if size > BLOB_BYTES_MAX {
            return Err(BlobError::TooLarge { hash: hash.to_hex(), size, max: BLOB_BYTES_MAX });
        }
        let _g = self.lock();
        match self.info(hash)? {
            Some(mut have) if have.size != size => {
                // A complete blob has the size its hash proves; a partial one was
                // begun under another declaration: the caller's record disagrees.
                if have.complete {
                    return Err(BlobError::SizeMismatch {
                        hash: hash.to_hex(),
                        have: have.size,
                        declared: size,
                    });
                }
                have.size = size;
                self.put_info(&have)?;
                self.clear_pieces(hash)?;
                self.create_partial(hash, size)?;
            }
            Some(mut have) => {
                if pin && !have.pinned {
                    have.pinned = true;
                    self.put_info(&have)?;
                }
                if have.complete {
                    return Ok(Vec::new());
                }
                if !self.partial_path(hash).exists() {
                    self.clear_pieces(hash)?;
                    self.create_partial(hash, size)?;
                }
            }
            None => {
                self.reserve(size)?;
                self.create_partial(hash, size)?;
                self.clear_pieces(hash)?;
                self.put_info(&BlobInfo { hash: *hash, size, complete: false, pinned: pin })?;
            }
        }
        let have = self.pieces(hash)?;
        Ok((0..pieces_of(size)).filter(|p| !bit(&have, *p)).collect())
    }

    fn create_partial(&self, hash: &Hash32, size: u64) -> Result<(), BlobError> {
        let path = self.partial_path(hash);
        File::create(&path)
            .and_then(|f| f.set_len(size))
            .map_err(|source| BlobError::Io { path, source })
    }

    fn pieces(&self, hash: &Hash32) -> Result<Vec<u8>, BlobError> {
        let tx = self.begin_read()?;
        let t = tx.open_table(PIECES).map_err(BlobError::index)?;
        let v = t.get(hash.as_bytes()).map_err(BlobError::index)?;
        Ok(v.map(|v| v.value().to_vec()).unwrap_or_default())
    }

    fn clear_pieces(&self, hash: &Hash32) -> Result<(), BlobError> {
        let tx = self.begin_write()?;
        {
            let mut t = tx.open_table(PIECES).map_err(BlobError::index)?;
            t.remove(hash.as_bytes()).map_err(BlobError::index)?;
        }
        tx.commit().map_err(BlobError::index)
    }

    /// Make every piece recorded so far durable (at a clean stop).
    pub fn flush(&self) -> Result<(), BlobError> {
        let _g = self.lock();
        let tx = self.begin_write()?;
        tx.commit().map_err(BlobError::index)?;
        self.since_durable.store(0, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Bytes of `hash` received and verified so far.
    pub fn have_bytes(&self, info: &BlobInfo) -> Result<u64, BlobError> {
        if info.complete {
            return Ok(info.size);
        }
        let have = self.pieces(&info.hash)?;
        Ok((0..pieces_of(info.size))
            .filter(|p| bit(&have, *p))
            .map(|p| piece_len(info.size, p))
            .sum())
    }

    /// Check one piece as a peer encoded it (bao: the parent hashes from the
    /// root down and the leaves) against the blob's hash, and write it. Nothing
    /// of a piece that fails is written.
    pub fn write_piece(
        &self,
        hash: &Hash32,
        size: u64,
        piece: u32,
        encoded: &[u8],
    ) -> Result<(), BlobError> {
        if piece >= pieces_of(size) {
            return Err(BlobError::NoSuchPiece { hash: hash.to_hex(), piece });
        }
        let leaves = decode_piece(hash, size, piece, encoded)?;
        let path = self.partial_path(hash);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| BlobError::Io { path: path.clone(), source })?;
        for (offset, data) in &leaves {
            f.write_all_at(data, *offset)
                .map_err(|source| BlobError::Io { path: path.clone(), source })?;
        }
        let _g = self.lock();
        let mut tx = self.begin_write()?;
        let n = self.since_durable.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n >= PIECES_PER_DURABLE_COMMIT {
            self.since_durable.store(0, std::sync::atomic::Ordering::Relaxed);
        } else {
            tx.set_durability(redb::Durability::None).map_err(BlobError::index)?;
        }
        {
            let mut t = tx.open_table(PIECES).map_err(BlobError::index)?;
            let mut bits = t
                .get(hash.as_bytes())
                .map_err(BlobError::index)?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            set_bit(&mut bits, piece);
            t.insert(hash.as_bytes(), bits.as_slice()).map_err(BlobError::index)?;
        }
        tx.commit().map_err(BlobError::index)
    }

    /// Turn a fully received blob into a complete one: hash it again with its
    /// outboard (the file must prove the hash as a whole), move it in place. On
    /// a mismatch (a partial file damaged on disk) the pieces are forgotten and
    /// the fetch starts over.
    pub fn finish(&self, hash: &Hash32) -> Result<BlobInfo, BlobError> {
        let info = self.info(hash)?.ok_or_else(|| BlobError::NotFound(hash.to_hex()))?;
        if info.complete {
            return Ok(info);
        }
        let path = self.partial_path(hash);
        let io_err = |source| BlobError::Io { path: path.clone(), source };
        let f = File::open(&path).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        let ob = PreOrderOutboard::<Vec<u8>>::create_sized(
            io::BufReader::with_capacity(1 << 20, f),
            info.size,
            BLOCK_SIZE,
        )
        .map_err(io_err)?;
        if ob.root != blake3_of(hash) {
            self.clear_pieces(hash)?;
            return Err(BlobError::Corrupt {
                hash: hash.to_hex(),
                piece: 0,
                reason: "the received file does not hash to its name; fetching it again".into(),
            });
        }
        self.write_outboard(hash, &ob.data)?;
        let dest = self.data_path(hash);
        std::fs::rename(&path, &dest).map_err(|source| BlobError::Io { path: dest, source })?;
        let _g = self.lock();
        let done = BlobInfo { complete: true, ..info };
        self.put_info(&done)?;
        self.clear_pieces(hash)?;
        Ok(done)
    }

    /// Encode one piece of a complete blob for a peer. `verify` checks every
    /// chunk against the outboard before it leaves (a disk that rotted is found
    /// here, not by the peer); turning it off is for fault-injection tests.
    pub fn encode_piece(
        &self,
        hash: &Hash32,
        piece: u32,
        verify: bool,
    ) -> Result<Vec<u8>, BlobError> {
        let info = self.info(hash)?.filter(|i| i.complete);
        let info = info.ok_or_else(|| BlobError::NotFound(hash.to_hex()))?;
        if piece >= pieces_of(info.size) {
            return Err(BlobError::NoSuchPiece { hash: hash.to_hex(), piece });
        }
        let data_path = self.data_path(hash);
        let data = File::open(&data_path)
            .map_err(|source| BlobError::Io { path: data_path.clone(), source })?;
        let ob_path = self.outboard_path(hash);
        let ob_file = File::open(&ob_path)
            .map_err(|source| BlobError::Io { path: ob_path.clone(), source })?;
        let ob = PreOrderOutboard {
            root: blake3_of(hash),
            tree: BaoTree::new(info.size, BLOCK_SIZE),
            data: ob_file,
        };
        let ranges = piece_ranges(piece);
        let mut out = Vec::with_capacity(PIECE_BYTES as usize + 8 * 1024);
        let r = if verify {
            encode_ranges_validated(&data, &ob, &ranges, &mut out).map_err(|e| e.to_string())
        } else {
            encode_ranges(&data, &ob, &ranges, &mut out).map_err(|e| e.to_string())
        };
        r.map_err(|reason| BlobError::Corrupt { hash: hash.to_hex(), piece, reason })?;
        Ok(out)
    }

    /// Open a complete blob for reading.
    pub fn read(&self, hash: &Hash32) -> Result<(File, u64), BlobError> {
        let info = self.info(hash)?.filter(|i| i.complete);
        let info = info.ok_or_else(|| BlobError::NotFound(hash.to_hex()))?;
        let path = self.data_path(hash);
        let f = File::open(&path).map_err(|source| BlobError::Io { path, source })?;
        Ok((f, info.size))
    }

    /// The path of a complete blob's file (read-only use: loading an archive).
    pub fn path_of(&self, hash: &Hash32) -> Result<PathBuf, BlobError> {
        self.read(hash).map(|_| self.data_path(hash))
    }

    /// Remove every unpinned blob (complete or partial) that `referenced` does
    /// not name. Returns what was removed.
    pub fn gc(&self, referenced: &HashSet<Hash32>) -> Result<Vec<BlobInfo>, BlobError> {
        let _g = self.lock();
        let doomed: Vec<BlobInfo> = self
            .list()?
            .into_iter()
            .filter(|b| !b.pinned && !referenced.contains(&b.hash))
            .collect();
        for b in &doomed {
            let tx = self.begin_write()?;
            {
                let mut t = tx.open_table(BLOBS).map_err(BlobError::index)?;
                t.remove(b.hash.as_bytes()).map_err(BlobError::index)?;
                let mut p = tx.open_table(PIECES).map_err(BlobError::index)?;
                p.remove(b.hash.as_bytes()).map_err(BlobError::index)?;
            }
            tx.commit().map_err(BlobError::index)?;
            for p in
                [self.data_path(&b.hash), self.outboard_path(&b.hash), self.partial_path(&b.hash)]
            {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(doomed)
    }

    /// The pinned and unpinned blobs, by hash (status views).
    pub fn by_hash(&self) -> Result<BTreeMap<String, BlobInfo>, BlobError> {
        Ok(self.list()?.into_iter().map(|b| (b.hash.to_hex(), b)).collect())
    }
}

/// Bytes in piece `p` of a blob of `size` bytes.
pub fn piece_len(size: u64, p: u32) -> u64 {
    let start = u64::from(p) * PIECE_BYTES;
    size.saturating_sub(start).min(PIECE_BYTES)
}

/// Decode and verify one encoded piece: the leaves (offset, bytes) it carries,
/// every one checked against `hash` through the parent hashes.
pub fn decode_piece(
    hash: &Hash32,
    size: u64,
    piece: u32,
    encoded: &[u8],
) -> Result<Vec<(u64, bytes::Bytes)>, BlobError> {
    let corrupt = |reason: String| BlobError::Corrupt { hash: hash.to_hex(), piece, reason };
    let ranges = piece_ranges(piece);
    let tree = BaoTree::new(size, BLOCK_SIZE);
    let mut reader = io::Cursor::new(encoded);
    let mut leaves = Vec::new();
    let mut got = 0u64;
    for item in DecodeResponseIter::new(blake3_of(hash), tree, &mut reader, &ranges) {
        match item.map_err(|e| corrupt(e.to_string()))? {
            BaoContentItem::Parent(_) => {}
            BaoContentItem::Leaf(l) => {
                got += l.data.len() as u64;
                leaves.push((l.offset, l.data));
            }
        }
    }
    if got != piece_len(size, piece) {
        return Err(corrupt(format!("{got} bytes, expected {}", piece_len(size, piece))));
    }
    if reader.position() != encoded.len() as u64 {
        return Err(corrupt("trailing bytes after the piece".into()));
    }
    Ok(leaves)
}

fn bit(bits: &[u8], p: u32) -> bool {
    bits.get((p / 8) as usize).is_some_and(|b| b & (1 << (p % 8)) != 0)
}

fn set_bit(bits: &mut Vec<u8>, p: u32) {
    let i = (p / 8) as usize;
    if bits.len() <= i {
        bits.resize(i + 1, 0);
    }
    bits[i] |= 1 << (p % 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_blob_added_is_named_by_its_blake3_and_travels_piece_by_piece_into_another_store() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (
            BlobStore::open(a.path(), u64::MAX).unwrap(),
            BlobStore::open(b.path(), u64::MAX).unwrap(),
        );
        let data = content(2 * PIECE_BYTES as usize + 12_345);
        let info = sa.add(&data[..], true).unwrap();
        assert_eq!(info.hash, Hash32::of(&data), "the name is the plain BLAKE3 of the bytes");
        let missing = sb.begin(&info.hash, info.size, false).unwrap();
        assert_eq!(missing, vec![0, 1, 2]);
        for p in missing.into_iter().rev() {
            let enc = sa.encode_piece(&info.hash, p, true).unwrap();
            sb.write_piece(&info.hash, info.size, p, &enc).unwrap();
        }
        let done = sb.finish(&info.hash).unwrap();
        assert!(done.complete);
        assert_eq!(std::fs::read(sb.path_of(&info.hash).unwrap()).unwrap(), data);
    }

    #[test]
    fn a_piece_with_one_flipped_byte_is_refused_and_nothing_of_it_is_kept() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (
            BlobStore::open(a.path(), u64::MAX).unwrap(),
            BlobStore::open(b.path(), u64::MAX).unwrap(),
        );
        let data = content(PIECE_BYTES as usize + 10);
        let info = sa.add(&data[..], false).unwrap();
        sb.begin(&info.hash, info.size, false).unwrap();
        let mut enc = sa.encode_piece(&info.hash, 0, true).unwrap();
        let last = enc.len() - 100;
        enc[last] ^= 1;
        let err = sb.write_piece(&info.hash, info.size, 0, &enc).unwrap_err();
        assert!(matches!(err, BlobError::Corrupt { piece: 0, .. }), "{err}");
        assert_eq!(sb.begin(&info.hash, info.size, false).unwrap(), vec![0, 1], "nothing was kept");
    }

    #[test]
    fn a_piece_of_another_blob_or_a_lying_size_does_not_verify() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (
            BlobStore::open(a.path(), u64::MAX).unwrap(),
            BlobStore::open(b.path(), u64::MAX).unwrap(),
        );
        let real = sa.add(&content(5000)[..], false).unwrap();
        let other = sa.add(&b"something else entirely"[..], false).unwrap();
        sb.begin(&real.hash, real.size, false).unwrap();
        let enc = sa.encode_piece(&other.hash, 0, true).unwrap();
        assert!(sb.write_piece(&real.hash, real.size, 0, &enc).is_err());
        // Declared larger than it is: the proof for the real size does not fit.
        let enc = sa.encode_piece(&real.hash, 0, true).unwrap();
        let c = tempfile::tempdir().unwrap();
        let liar = BlobStore::open(c.path(), u64::MAX).unwrap();
        liar.begin(&real.hash, real.size + 1, false).unwrap();
        assert!(liar.write_piece(&real.hash, real.size + 1, 0, &enc).is_err());
    }

    #[test]
    fn pieces_received_before_a_restart_are_not_fetched_again() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sa = BlobStore::open(a.path(), u64::MAX).unwrap();
        let data = content(3 * PIECE_BYTES as usize);
        let info = sa.add(&data[..], false).unwrap();
        {
            let sb = BlobStore::open(b.path(), u64::MAX).unwrap();
            sb.begin(&info.hash, info.size, false).unwrap();
            let enc = sa.encode_piece(&info.hash, 1, true).unwrap();
            sb.write_piece(&info.hash, info.size, 1, &enc).unwrap();
        }
        let sb = BlobStore::open(b.path(), u64::MAX).unwrap();
        assert_eq!(sb.begin(&info.hash, info.size, false).unwrap(), vec![0, 2]);
        let i = sb.info(&info.hash).unwrap().unwrap();
        assert_eq!(sb.have_bytes(&i).unwrap(), PIECE_BYTES);
    }

    #[test]
    fn the_quota_bounds_blobs_held_and_being_fetched_and_gc_frees_what_no_one_needs() {
        let d = tempfile::tempdir().unwrap();
        let s = BlobStore::open(d.path(), 10_000).unwrap();
        let kept = s.add(&content(4000)[..], true).unwrap();
        let named = s.add(&content(3000)[..], false).unwrap();
        let err = s.begin(&Hash32::of(b"x"), 5000, false).unwrap_err();
        assert!(
            matches!(err, BlobError::Quota { needed: 5000, used: 7000, quota: 10_000 }),
            "{err}"
        );
        let loose = s.begin(&Hash32::of(b"y"), 2000, false).unwrap();
        assert_eq!(loose, vec![0]);
        let removed = s.gc(&HashSet::from([named.hash])).unwrap();
        assert_eq!(removed.iter().map(|b| b.hash).collect::<Vec<_>>(), vec![Hash32::of(b"y")]);
        assert!(s.info(&kept.hash).unwrap().is_some(), "pinned");
        assert!(s.info(&named.hash).unwrap().is_some(), "referenced");
        let removed = s.gc(&HashSet::new()).unwrap();
        assert_eq!(removed.len(), 1, "the unpinned blob no record names any more");
        assert!(s.read(&named.hash).is_err());
    }

    #[test]
    fn an_empty_blob_has_one_piece_of_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = BlobStore::open(d.path(), u64::MAX).unwrap();
        let e = s.add(&b""[..], false).unwrap();
        assert_eq!(e.size, 0);
        assert_eq!(pieces_of(0), 0);
    }
}
