//! The redb store: every record's exact bytes by id, and the node's metadata (the
//! network root it serves). One file, `store.redb`, in the data directory; redb's
//! file lock keeps a second node off the same directory.
//!
//! Architecture invariant: a record is committed here (durably) before the node
//! forwards it on gossip or acknowledges it to a client.

use std::path::Path;

use protocol::{NetworkRoot, Record, RecordId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::StoreError;

/// Record id (32 bytes) -> exact envelope bytes.
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// Metadata: `root` -> the network root's canonical bytes; `format` -> store format.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_ROOT: &str = "root";
const META_FORMAT: &str = "format";
/// The store format this code reads and writes.
const STORE_FORMAT: u8 = 1;
/// redb's page cache. Records are read on demand (a sync page, a record the
/// control API serves, the reload at start, which streams them), so the cache
/// need not hold them: redb's default (1 GiB) would keep every record body of a
/// large store resident after a restart.
pub const STORE_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The node's durable store.
pub struct Store {
    db: Database,
    path: std::path::PathBuf,
}

impl Store {
    /// Open (or create) the store at `path`. Fails with [`StoreError::Locked`] when
    /// another node holds it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = redb::Builder::new().set_cache_size(STORE_CACHE_BYTES).create(path).map_err(
            |e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_path_buf()),
                other => {
                    StoreError::Open { path: path.to_path_buf(), source: Box::new(other.into()) }
                }
            },
        )?;
        let store = Store { db, path: path.to_path_buf() };
        store.init()?;
        Ok(store)
    }

    fn init(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let format = meta.get(META_FORMAT)?.map(|v| v.value().to_vec());
            match format.as_deref() {
                None => {
                    meta.insert(META_FORMAT, [STORE_FORMAT].as_slice())?;
                }
                Some([STORE_FORMAT]) => {}
                Some(other) => return Err(StoreError::Format(other.to_vec())),
            }
            tx.open_table(RECORDS)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The store file's size on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// The network root this store serves, if one was recorded.
    pub fn root(&self) -> Result<Option<NetworkRoot>, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        match meta.get(META_ROOT)? {
            None => Ok(None),
            Some(v) => NetworkRoot::from_bytes(v.value()).map(Some).map_err(StoreError::Root),
        }
    }

    /// Record the network root (first start).
    pub fn set_root(&self, root: &NetworkRoot) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            meta.insert(META_ROOT, root.to_bytes().as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Durably store verified records in one transaction. Records already present
    /// are left as they are.
    pub fn put(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(RECORDS)?;
            for r in records {
                table.insert(r.id.as_bytes().as_slice(), &*r.bytes)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The exact bytes of one record.
    pub fn get(&self, id: &RecordId) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        Ok(table.get(id.as_bytes().as_slice())?.map(|v| v.value().to_vec()))
    }

    /// The bytes of many records (those present), in the order asked, stopping
    /// before the total would pass `bytes_max`. Returns the records and whether it
    /// stopped early.
    pub fn get_many(
        &self,
        ids: &[RecordId],
        bytes_max: u64,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        let mut out = Vec::with_capacity(ids.len());
        let mut total = 0u64;
        for id in ids {
            if let Some(v) = table.get(id.as_bytes().as_slice())? {
                let bytes = v.value();
                total += bytes.len() as u64;
                if total > bytes_max {
                    return Ok((out, true));
                }
                out.push(bytes.to_vec());
            }
        }
        Ok((out, false))
    }

    /// Ids in order, starting after `after`, at most `limit`.
    pub fn ids(&self, after: Option<&RecordId>, limit: u64) -> Result<Vec<RecordId>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        let mut out = Vec::new();
        let iter = match after {
            Some(a) => table.range::<&[u8]>(a.as_bytes().as_slice()..)?,
            None => table.range::<&[u8]>(..)?,
        };
        for item in iter {
            let (k, _) = item?;
            let id = id_from_key(k.value())?;
            if Some(&id) == after {
                continue;
            }
            out.push(id);
            if out.len() as u64 >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Visit every stored record's id and bytes, in id order.
    pub fn for_each(&self, mut f: impl FnMut(RecordId, &[u8])) -> Result<(), StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        for item in table.iter()? {
            let (k, v) = item?;
            f(id_from_key(k.value())?, v.value());
        }
        Ok(())
    }

    /// How many records are stored.
    pub fn len(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        Ok(table.len()?)
    }

    /// True when no record is stored.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

fn id_from_key(k: &[u8]) -> Result<RecordId, StoreError> {
    let b: [u8; 32] = k
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("record key of {} bytes", k.len())))?;
    Ok(RecordId::from_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::testkit::{Author, container, root};

    #[test]
    fn records_and_root_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let mut a = Author::new("a", protocol::NetworkId::from_bytes([1; 32]));
        let r = root(&[a.public()], 1);
        let recs: Vec<Record> =
            (0..3).map(|i| a.sign(container(&format!("c{i}"), &["infer"]))).collect();
        {
            let s = Store::open(&path).unwrap();
            s.set_root(&r).unwrap();
            s.put(&recs).unwrap();
            assert!(matches!(Store::open(&path), Err(StoreError::Locked(_))));
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.root().unwrap(), Some(r));
        assert_eq!(s.len().unwrap(), 3);
        assert_eq!(s.get(&recs[1].id).unwrap().as_deref(), Some(&*recs[1].bytes));
        let ids = s.ids(None, 2).unwrap();
        assert_eq!(ids.len(), 2);
        let rest = s.ids(Some(&ids[1]), 10).unwrap();
        assert_eq!(rest.len(), 1);
        let (got, cut) = s.get_many(&[recs[0].id, recs[2].id], u64::MAX).unwrap();
        assert_eq!((got.len(), cut), (2, false));
    }
}
