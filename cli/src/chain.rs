//! The user's own chain head, kept in the home: the last seq and record id this
//! home signed. It is written durably before a record leaves for the node, and the
//! CLI never signs at or below it, so no node (stale, restored from a backup or
//! lying) can make the user sign a seq twice, which would make the key an
//! equivocator whose decisions stop counting.
//!
//! ```text
//! <home>/chain.json   {"version":1,"network":…,"signer":…,"seq":…,"id":…} (0600)
//! <home>/chain.lock   held while one command reads the head, signs and submits
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use protocol::{NetworkId, PublicKey, Record, RecordId};
use serde::{Deserialize, Serialize};

/// The file holding the head, in the home.
pub const CHAIN_FILE: &str = "chain.json";
/// The lock file serialising publications from one home.
pub const CHAIN_LOCK_FILE: &str = "chain.lock";
/// Version of the chain file's format.
pub const CHAIN_FORMAT_VERSION: u32 = 1;
/// Largest chain file read (it holds one head).
pub const CHAIN_FILE_BYTES_MAX: u64 = 4 * 1024;

/// One signed position in a signer's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub id: RecordId,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainFile {
    version: u32,
    network: NetworkId,
    signer: PublicKey,
    seq: u64,
    id: RecordId,
}

/// Where the next record goes, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Next {
    pub seq: u64,
    pub prev: Option<RecordId>,
    /// Something the user should know (the node is behind, or the key already
    /// signed two records at one seq).
    pub note: Option<String>,
}

/// An exclusive lock on the home's chain, released when dropped (closing the
/// file releases it).
#[derive(Debug)]
pub struct ChainLock {
    _held: File,
}

/// Take the home's chain lock, waiting for another `medmesh` from the same home
/// to finish publishing.
pub fn lock(home: &Path) -> anyhow::Result<ChainLock> {
    std::fs::create_dir_all(home).with_context(|| format!("cannot create {}", home.display()))?;
    let path = home.join(CHAIN_LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(ChainLock { _held: f })
}

fn chain_path(home: &Path) -> PathBuf {
    home.join(CHAIN_FILE)
}

/// The head this home last signed as `signer` on `network`, if any.
pub fn load(home: &Path, network: &NetworkId, signer: &PublicKey) -> anyhow::Result<Option<Head>> {
    let path = chain_path(home);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut text = String::new();
    f.take(CHAIN_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > CHAIN_FILE_BYTES_MAX {
        bail!("{} is larger than a chain head; restore it from a backup", path.display());
    }
    let c: ChainFile = serde_json::from_str(&text).with_context(|| {
        format!("{} is not a chain head; restore it from a backup", path.display())
    })?;
    if c.version != CHAIN_FORMAT_VERSION {
        bail!(
            "{} has format version {}, this medmesh reads {CHAIN_FORMAT_VERSION}; update medmesh",
            path.display(),
            c.version
        );
    }
    if c.network != *network || c.signer != *signer {
        bail!(
            "{} records the chain of key {} on network {}, but this home signs as {} on {}; move the file aside only if you changed keys or network on purpose",
            path.display(),
            c.signer.short(),
            c.network.short(),
            signer.short(),
            network.short()
        );
    }
    Ok(Some(Head { seq: c.seq, id: c.id }))
}

/// Record `head` durably (temp file, fsync, rename, fsync of the folder; 0600).
pub fn save(
    home: &Path,
    network: &NetworkId,
    signer: &PublicKey,
    head: Head,
) -> anyhow::Result<()> {
    let c = ChainFile {
        version: CHAIN_FORMAT_VERSION,
        network: *network,
        signer: *signer,
        seq: head.seq,
        id: head.id,
    };
    let path = chain_path(home);
    let tmp = home.join(format!("{CHAIN_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut o = OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(&serde_json::to_vec(&c).map_err(std::io::Error::other)?)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        File::open(home)?.sync_all()
    };
    write().with_context(|| {
        format!("cannot record your chain head in {}; nothing was published", path.display())
    })
}

/// Check a node's claim of `signer`'s head: the record must verify on `network`
/// and be signed by `signer`. A claim that does not is refused: the node is
/// lying, broken or on another network.
pub fn verify_node_head(
    bytes: &[u8],
    network: &NetworkId,
    signer: &PublicKey,
) -> anyhow::Result<Head> {
    let r = Record::verify(bytes, network).context(
        "the node's record of your chain head does not verify; it may be lying or on another network: point your profile at a node you trust (`medmesh profile set --node-dir`)",
    )?;
    if r.signer != *signer {
        bail!(
            "the node claims your chain head is record {} signed by {}, not by you ({}); it may be lying: point your profile at a node you trust (`medmesh profile set --node-dir`)",
            r.id.short(),
            r.signer.short(),
            signer.short()
        );
    }
    Ok(Head { seq: r.seq, id: r.id })
}

/// The next position: after the higher of the home's head and the node's
/// (verified) head. A node behind the home cannot lower it.
pub fn next(local: Option<Head>, node: Option<Head>) -> anyhow::Result<Next> {
    let (head, note) = match (local, node) {
        (None, None) => return Ok(Next { seq: 0, prev: None, note: None }),
        (Some(l), None) => (
            l,
            Some(format!(
                "your node holds none of your records, but this home signed up to seq {}; it may not have caught up",
                l.seq
            )),
        ),
        (None, Some(n)) => (n, None),
        (Some(l), Some(n)) if l.seq > n.seq => (
            l,
            Some(format!(
                "your node holds your chain up to seq {}, but this home signed up to seq {}; it may not have caught up",
                n.seq, l.seq
            )),
        ),
        (Some(l), Some(n)) if l.seq == n.seq && l.id != n.id => (
            l,
            Some(format!(
                "your key signed two records at seq {} ({} in this home, {} on the node): the network no longer counts this key's decisions; see README, \"Recovering a key\"",
                l.seq,
                l.id.short(),
                n.id.short()
            )),
        ),
        (Some(l), Some(n)) => (if n.seq > l.seq { n } else { l }, None),
    };
    let seq = head
        .seq
        .checked_add(1)
        .context("your chain is at the largest seq; ask the admins to admit a new key")?;
    Ok(Next { seq, prev: Some(head.id), note })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> RecordId {
        RecordId::from_bytes([b; 32])
    }

    #[test]
    fn a_node_behind_the_home_cannot_lower_the_next_seq() {
        let n = next(Some(Head { seq: 7, id: id(7) }), Some(Head { seq: 2, id: id(2) })).unwrap();
        assert_eq!((n.seq, n.prev), (8, Some(id(7))));
        assert!(n.note.unwrap().contains("not have caught up"));
        let n = next(Some(Head { seq: 7, id: id(7) }), None).unwrap();
        assert_eq!((n.seq, n.prev), (8, Some(id(7))));
    }

    #[test]
    fn a_node_ahead_of_the_home_moves_the_next_seq_up() {
        let n = next(Some(Head { seq: 1, id: id(1) }), Some(Head { seq: 4, id: id(4) })).unwrap();
        assert_eq!((n.seq, n.prev, n.note), (5, Some(id(4)), None));
        let n = next(None, Some(Head { seq: 0, id: id(0) })).unwrap();
        assert_eq!((n.seq, n.prev), (1, Some(id(0))));
        assert_eq!(next(None, None).unwrap(), Next { seq: 0, prev: None, note: None });
    }

    #[test]
    fn two_heads_at_one_seq_are_reported_as_an_equivocation() {
        let n = next(Some(Head { seq: 3, id: id(1) }), Some(Head { seq: 3, id: id(2) })).unwrap();
        assert_eq!(n.seq, 4);
        assert!(n.note.unwrap().contains("two records at seq 3"));
    }

    #[test]
    fn the_last_seq_is_not_wrapped() {
        assert!(next(Some(Head { seq: u64::MAX, id: id(1) }), None).is_err());
    }

    #[test]
    fn the_head_is_saved_owner_only_and_read_back_for_its_key_and_network_only() {
        let w = protocol::testkit::Workflow::complete();
        let dir = tempfile::tempdir().unwrap();
        let net = w.root.network_id();
        let me = w.records[0].signer;
        assert_eq!(load(dir.path(), &net, &me).unwrap(), None);
        save(dir.path(), &net, &me, Head { seq: 3, id: id(3) }).unwrap();
        save(dir.path(), &net, &me, Head { seq: 4, id: id(4) }).unwrap();
        assert_eq!(load(dir.path(), &net, &me).unwrap(), Some(Head { seq: 4, id: id(4) }));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CHAIN_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = w.records.iter().map(|r| r.signer).find(|k| *k != me).unwrap();
        let e = load(dir.path(), &net, &other).unwrap_err();
        assert!(format!("{e:#}").contains("move the file aside"), "{e:#}");
        std::fs::write(dir.path().join(CHAIN_FILE), b"{\"version\":1").unwrap();
        assert!(load(dir.path(), &net, &me).is_err());
    }

    #[test]
    fn a_node_head_that_is_not_the_users_own_signed_record_is_refused() {
        let w = protocol::testkit::Workflow::complete();
        let net = w.root.network_id();
        let r = &w.records[0];
        let h = verify_node_head(&r.bytes, &net, &r.signer).unwrap();
        assert_eq!(h, Head { seq: r.seq, id: r.id });
        let other = w.records.iter().map(|x| x.signer).find(|k| *k != r.signer).unwrap();
        let e = verify_node_head(&r.bytes, &net, &other).unwrap_err();
        assert!(format!("{e:#}").contains("not by you"), "{e:#}");
        let mut bad = r.bytes.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(verify_node_head(&bad, &net, &r.signer).is_err());
        let wrong_net = NetworkId::from_bytes([9; 32]);
        assert!(verify_node_head(&r.bytes, &wrong_net, &r.signer).is_err());
    }
}
