//! Known peers: the address book kept in the data directory, and the redial
//! schedule the swarm task runs on its maintenance tick.
//!
//! The address book remembers where peers this node has dialled can be reached
//! (the address it dialled, and the listen addresses such a peer reported
//! through identify), most recently dialled first, so that a node restarted
//! while every bootstrap peer is down still finds the others. Peers that only
//! connected in are not added: anyone can, with as many fresh keys as it likes,
//! and would push the real peers out of the book. It is
//! bounded ([`ADDRESS_BOOK_PEERS_MAX`] x [`ADDRESS_BOOK_ADDRS_MAX`]), written at
//! most every [`ADDRESS_BOOK_WRITE_INTERVAL_MS`] and on a clean stop, atomically
//! (temp file, fsync, rename). A file that cannot be read is a warning and an
//! empty book, never a failed start.
//!
//! Every [`MAINTENANCE_INTERVAL_MS`] the swarm task redials bootstrap peers that
//! are not connected and, while it has fewer than
//! [`DISCOVERED_PEERS_TARGET`] peers, known-but-disconnected ones from the book
//! and the Kademlia routing table. Each address backs off exponentially
//! ([`REDIAL_BACKOFF_MIN_MS`] doubling to [`REDIAL_BACKOFF_MAX_MS`]; reset when the
//! peer identifies itself on a new connection, so that one that accepts and drops
//! at once keeps backing off, and every one of them when the first peer after
//! none at all identifies itself), and a tick starts at most
//! [`REDIALS_PER_TICK_MAX`] dials.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::DialError;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::swarm::{Behaviour, DISCOVERED_PEERS_TARGET};

/// The address book's file in the data directory.
pub const PEERS_FILE: &str = "peers";
/// Peers kept in the address book (the most recently dialled win).
pub const ADDRESS_BOOK_PEERS_MAX: usize = 64;
/// Addresses kept per peer (the most recently used first).
pub const ADDRESS_BOOK_ADDRS_MAX: usize = 8;
/// Largest address book file read at start.
pub const ADDRESS_BOOK_FILE_BYTES_MAX: u64 = 256 * 1024;
/// Least time between two writes of a changed address book.
pub const ADDRESS_BOOK_WRITE_INTERVAL_MS: u64 = 10_000;
/// How often the swarm task redials lost peers and saves the address book.
pub const MAINTENANCE_INTERVAL_MS: u64 = 2_000;
/// First wait before an address that failed is dialled again.
pub const REDIAL_BACKOFF_MIN_MS: u64 = 1_000;
/// Longest wait between two dials of one address.
pub const REDIAL_BACKOFF_MAX_MS: u64 = 30_000;
/// Dials started by one maintenance tick.
pub const REDIALS_PER_TICK_MAX: usize = 4;
/// Addresses with a backoff remembered at once.
pub const REDIAL_BACKOFF_ENTRIES_MAX: usize = 1024;
/// Candidates taken from the Kademlia routing table per tick.
const KAD_CANDIDATES_MAX: usize = 64;

/// The address book file format version.
const PEERS_FILE_VERSION: u32 = 1;

/// The address book could not be read or written.
#[derive(Debug, Error)]
pub enum AddressBookError {
    #[error("cannot read address book {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "address book {path} is larger than {ADDRESS_BOOK_FILE_BYTES_MAX} bytes; delete it (it is rebuilt from connections)"
    )]
    TooLarge { path: PathBuf },
    #[error(
        "address book {path} is malformed ({reason}); delete it (it is rebuilt from connections)"
    )]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "address book {path} has unknown version {version}; upgrade medmesh or delete the file"
    )]
    Version { path: PathBuf, version: u32 },
    #[error("cannot write address book {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The file as stored: JSON, `{"version": 1, "peers": [{"peer": .., "addrs": [..]}]}`,
/// most recently dialled peer first.
#[derive(Serialize, Deserialize)]
struct PeersFile {
    version: u32,
    peers: Vec<PeerEntry>,
}

#[derive(Serialize, Deserialize)]
struct PeerEntry {
    peer: String,
    addrs: Vec<String>,
}

/// Where peers this node has dialled can be reached.
pub(crate) struct AddressBook {
    path: PathBuf,
    local: PeerId,
    allow_loopback: bool,
    /// Most recently dialled first; at most [`ADDRESS_BOOK_PEERS_MAX`].
    peers: Vec<(PeerId, Vec<Multiaddr>)>,
    dirty: bool,
    last_write: Option<Instant>,
    /// Snapshots taken for writing so far; each write carries its number.
    generation: u64,
    /// Serialises writers and holds the generation last written: a throttled
    /// write that runs late (after the final one at stop) must not put an older
    /// book back on disk.
    written: Arc<Mutex<u64>>,
}

impl AddressBook {
    /// An empty book that will be saved at `path`.
    pub(crate) fn empty(path: PathBuf, local: PeerId, allow_loopback: bool) -> Self {
        AddressBook {
            path,
            local,
            allow_loopback,
            peers: Vec::new(),
            dirty: false,
            last_write: None,
            generation: 0,
            written: Arc::default(),
        }
    }

    /// Load the book from `path`; a missing file is an empty book, an unreadable
    /// or malformed one a warning and an empty book. `allow_loopback`: keep
    /// loopback addresses (only when this node itself listens on loopback).
    pub(crate) fn load(path: PathBuf, local: PeerId, allow_loopback: bool) -> Self {
        let mut book = AddressBook::empty(path, local, allow_loopback);
        match read_file(&book.path) {
            Ok(None) => {}
            Ok(Some(file)) => {
                let mut skipped = 0u32;
                // Oldest first, so that the most recent ends up in front.
                for entry in file.peers.iter().take(ADDRESS_BOOK_PEERS_MAX).rev() {
                    let Ok(peer) = PeerId::from_str(&entry.peer) else {
                        skipped += 1;
                        continue;
                    };
                    let addrs: Vec<Multiaddr> = entry
                        .addrs
                        .iter()
                        .take(ADDRESS_BOOK_ADDRS_MAX)
                        .filter_map(|a| Multiaddr::from_str(a).ok())
                        .collect();
                    if !book.note_many(peer, &addrs) {
                        skipped += 1;
                    }
                }
                if skipped > 0 {
                    warn!(path = %book.path.display(), skipped, "address book entries skipped (malformed or not dialable)");
                }
                book.dirty = false;
                info!(peers = book.peers.len(), "address book loaded");
            }
            Err(e) => warn!(error = %e, "address book ignored; starting with an empty one"),
        }
        book
    }

    /// Known peers, most recently dialled first.
    pub(crate) fn peers(&self) -> impl Iterator<Item = (&PeerId, &[Multiaddr])> {
        self.peers.iter().map(|(p, a)| (p, a.as_slice()))
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Remember that `peer` was reached at `addr` (moves both to the front).
    /// Returns whether the address was kept.
    pub(crate) fn note(&mut self, peer: PeerId, addr: &Multiaddr) -> bool {
        self.note_many(peer, std::slice::from_ref(addr))
    }

    /// Remember the dialable ones of `addrs` for `peer`, in order, in front of its
    /// older addresses. Returns whether any was kept.
    pub(crate) fn note_many(&mut self, peer: PeerId, addrs: &[Multiaddr]) -> bool {
        if peer == self.local {
            return false;
        }
        let fresh: Vec<Multiaddr> =
            addrs.iter().filter_map(|a| dialable(a, &peer, self.allow_loopback)).collect();
        if fresh.is_empty() {
            return false;
        }
        let before = match self.peers.iter().position(|(p, _)| *p == peer) {
            Some(i) => self.peers.remove(i).1,
            None => Vec::new(),
        };
        let merged = merge_addrs(fresh, &before);
        let moved = self.peers.first().is_none_or(|(p, _)| *p != peer);
        if merged != before || moved {
            self.dirty = true;
        }
        self.peers.insert(0, (peer, merged));
        self.peers.truncate(ADDRESS_BOOK_PEERS_MAX);
        true
    }

    /// Add the dialable ones of `addrs` in front of the addresses of `peer` if
    /// the book already knows it; it keeps its place. Returns whether the peer
    /// is known and any address was kept.
    pub(crate) fn update_known(&mut self, peer: PeerId, addrs: &[Multiaddr]) -> bool {
        let Some(i) = self.peers.iter().position(|(p, _)| *p == peer) else {
            return false;
        };
        let fresh: Vec<Multiaddr> =
            addrs.iter().filter_map(|a| dialable(a, &peer, self.allow_loopback)).collect();
        if fresh.is_empty() {
            return false;
        }
        let merged = merge_addrs(fresh, &self.peers[i].1);
        if merged != self.peers[i].1 {
            self.peers[i].1 = merged;
            self.dirty = true;
        }
        true
    }

    /// Write the book if it changed and the last write is old enough; the write
    /// runs off the calling task.
    pub(crate) fn save_if_due(&mut self, now: Instant) {
        let due = self.last_write.is_none_or(|t| {
            now.duration_since(t) >= Duration::from_millis(ADDRESS_BOOK_WRITE_INTERVAL_MS)
        });
        if !self.dirty || !due {
            return;
        }
        let write = self.prepare(now);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = write.run() {
                warn!(error = %e, "address book not saved");
            }
        });
    }

    /// Write the book now if it changed (on a clean stop).
    pub(crate) async fn save_now(&mut self) {
        if !self.dirty {
            return;
        }
        let write = self.prepare(Instant::now());
        let r = tokio::task::spawn_blocking(move || write.run()).await;
        match r {
            Ok(Ok(())) => debug!(peers = self.peers.len(), "address book saved"),
            Ok(Err(e)) => warn!(error = %e, "address book not saved"),
            Err(e) => warn!(error = %e, "address book not saved"),
        }
    }

    fn prepare(&mut self, now: Instant) -> PendingWrite {
        self.dirty = false;
        self.last_write = Some(now);
        self.generation += 1;
        let file = PeersFile {
            version: PEERS_FILE_VERSION,
            peers: self
                .peers
                .iter()
                .map(|(p, a)| PeerEntry {
                    peer: p.to_string(),
                    addrs: a.iter().map(|m| m.to_string()).collect(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .expect("a peers file serialises: strings and integers only");
        PendingWrite {
            path: self.path.clone(),
            bytes,
            generation: self.generation,
            written: self.written.clone(),
        }
    }
}

/// A snapshot of the book on its way to disk.
struct PendingWrite {
    path: PathBuf,
    bytes: Vec<u8>,
    generation: u64,
    written: Arc<Mutex<u64>>,
}

impl PendingWrite {
    /// Write the snapshot unless a newer one was written already.
    fn run(self) -> Result<(), AddressBookError> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if *written >= self.generation {
            debug!(
                generation = self.generation,
                written = *written,
                "older address book snapshot not written"
            );
            return Ok(());
        }
        write_atomic(&self.path, &self.bytes)
            .map_err(|source| AddressBookError::Write { path: self.path.clone(), source })?;
        *written = self.generation;
        Ok(())
    }
}

/// `fresh` then `old`, without duplicates, at most [`ADDRESS_BOOK_ADDRS_MAX`].
fn merge_addrs(fresh: Vec<Multiaddr>, old: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut merged: Vec<Multiaddr> = Vec::with_capacity(ADDRESS_BOOK_ADDRS_MAX);
    for a in fresh.into_iter().chain(old.iter().cloned()) {
        if merged.len() < ADDRESS_BOOK_ADDRS_MAX && !merged.contains(&a) {
            merged.push(a);
        }
    }
    merged
}

fn read_file(path: &Path) -> Result<Option<PeersFile>, AddressBookError> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AddressBookError::Read { path: path.to_path_buf(), source }),
    };
    let mut bytes = Vec::new();
    f.take(ADDRESS_BOOK_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| AddressBookError::Read { path: path.to_path_buf(), source })?;
    if bytes.len() as u64 > ADDRESS_BOOK_FILE_BYTES_MAX {
        return Err(AddressBookError::TooLarge { path: path.to_path_buf() });
    }
    let file: PeersFile = serde_json::from_slice(&bytes).map_err(|e| {
        AddressBookError::Malformed { path: path.to_path_buf(), reason: e.to_string() }
    })?;
    if file.version != PEERS_FILE_VERSION {
        return Err(AddressBookError::Version { path: path.to_path_buf(), version: file.version });
    }
    Ok(Some(file))
}

/// Temp file, fsync, rename: a reader sees the old book or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `addr` as the book keeps it (without a trailing `/p2p/<peer>`), if another
/// node could dial it: an IP address (the swarm has no DNS transport, so a
/// `/dns*` address could never be dialled), not unspecified (0.0.0.0, ::), not
/// loopback unless `allow_loopback`, not through a relay or another peer.
pub(crate) fn dialable(addr: &Multiaddr, peer: &PeerId, allow_loopback: bool) -> Option<Multiaddr> {
    let mut out = Multiaddr::empty();
    let mut iter = addr.iter().peekable();
    match iter.peek()? {
        Protocol::Ip4(ip) if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() => {
            return None;
        }
        Protocol::Ip4(ip) if ip.is_loopback() && !allow_loopback => return None,
        Protocol::Ip6(ip) if ip.is_unspecified() || ip.is_multicast() => return None,
        Protocol::Ip6(ip) if ip.is_loopback() && !allow_loopback => return None,
        Protocol::Ip4(_) | Protocol::Ip6(_) => {}
        _ => return None,
    }
    let mut transport = false;
    for p in iter {
        match p {
            Protocol::P2p(id) if id == *peer => break,
            Protocol::P2p(_) | Protocol::P2pCircuit => return None,
            Protocol::Tcp(port) | Protocol::Udp(port) if port == 0 => return None,
            Protocol::Tcp(_) | Protocol::Udp(_) => transport = true,
            _ => {}
        }
        out.push(p);
    }
    transport.then_some(out)
}

/// When an address may be dialled again.
struct Backoff {
    next: Instant,
    delay: Duration,
}

/// Per-address exponential backoff for redials.
#[derive(Default)]
struct Redial {
    entries: HashMap<(PeerId, Multiaddr), Backoff>,
}

impl Redial {
    fn due(&self, peer: PeerId, addr: &Multiaddr, now: Instant) -> bool {
        self.entries.get(&(peer, addr.clone())).is_none_or(|b| now >= b.next)
    }

    fn attempted(&mut self, peer: PeerId, addr: Multiaddr, now: Instant) {
        if self.entries.len() >= REDIAL_BACKOFF_ENTRIES_MAX {
            // Entries already due lose nothing when forgotten.
            self.entries.retain(|_, b| b.next > now);
            if self.entries.len() >= REDIAL_BACKOFF_ENTRIES_MAX {
                return;
            }
        }
        let b = self
            .entries
            .entry((peer, addr))
            .or_insert(Backoff { next: now, delay: Duration::ZERO });
        b.delay = (b.delay * 2).clamp(
            Duration::from_millis(REDIAL_BACKOFF_MIN_MS),
            Duration::from_millis(REDIAL_BACKOFF_MAX_MS),
        );
        b.next = now + b.delay;
    }

    fn reset(&mut self, peer: PeerId) {
        self.entries.retain(|(p, _), _| *p != peer);
    }
}

/// The address book, the bootstrap peers and the redial schedule.
pub(crate) struct Peers {
    pub(crate) book: AddressBook,
    bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Bootstrap peers were configured or the book knows someone.
    seeds: bool,
    redial: Redial,
    /// The node connected again after it had no peer: every backoff resets when
    /// a peer identifies itself.
    back_online: bool,
}

impl Peers {
    /// `bootstrap` addresses without a `/p2p/<peer id>` are dialled at start only.
    pub(crate) fn new(book: AddressBook, bootstrap: &[Multiaddr]) -> Self {
        let seeds = !bootstrap.is_empty() || book.len() > 0;
        let bootstrap = bootstrap
            .iter()
            .filter_map(|a| crate::swarm::peer_of(a).map(|p| (p, a.clone())))
            .collect();
        Peers { book, bootstrap, seeds, redial: Redial::default(), back_online: false }
    }

    /// Whether Kademlia has anyone to bootstrap through (configured bootstrap
    /// peers or peers from the address book).
    pub(crate) fn has_seeds(&self) -> bool {
        self.seeds
    }

    /// One of the configured bootstrap peers.
    pub(crate) fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.bootstrap.iter().any(|(p, _)| p == peer)
    }

    /// A connection is up: the address we dialled goes into the book.
    /// `alone_until_now`: it is the only connection (this node's network may be
    /// back: a partition healed, a container unpaused); see
    /// [`Peers::on_identified`]. Backoffs wait for identify: a peer that accepts
    /// and drops at once must not be redialled every tick.
    pub(crate) fn on_connected(
        &mut self,
        peer: PeerId,
        endpoint: &ConnectedPoint,
        alone_until_now: bool,
    ) {
        if alone_until_now {
            self.back_online = true;
        }
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            self.book.note(peer, address);
        }
    }

    /// A connected peer identified itself and told us where it listens: the
    /// connection works, so its backoff resets; the first peer to do so after
    /// the node had none resets every backoff, so that the next ticks redial
    /// everyone without waiting. Only a peer already in the book (one this node
    /// dialled) has its addresses updated: anyone can connect in and identify
    /// with fresh keys, and were they recorded, a few dozen such connections
    /// would push every real peer out of the book.
    pub(crate) fn on_identified(&mut self, peer: PeerId, listen: &[Multiaddr]) {
        if std::mem::take(&mut self.back_online) {
            self.redial.entries.clear();
        }
        self.redial.reset(peer);
        self.book.update_known(peer, listen);
    }

    /// The ones of `addrs` that `peer` can be dialled at, as [`dialable`] says
    /// (loopback only if this node listens on loopback).
    pub(crate) fn dialable(&self, peer: &PeerId, addrs: &[Multiaddr]) -> Vec<Multiaddr> {
        addrs.iter().filter_map(|a| dialable(a, peer, self.book.allow_loopback)).collect()
    }

    /// Redial: bootstrap peers that are not connected, then, while connected
    /// peers are fewer than [`DISCOVERED_PEERS_TARGET`], known peers from the book
    /// and the routing table. At most `budget` dials; each address respects its
    /// backoff. Returns the dials started.
    pub(crate) fn maintain(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        budget: usize,
        now: Instant,
    ) -> usize {
        let local = *swarm.local_peer_id();
        let blocked: HashSet<PeerId> = swarm.behaviour().blocked.blocked_peers().clone();
        let skip = |swarm: &Swarm<Behaviour>, p: &PeerId| {
            *p == local || blocked.contains(p) || swarm.is_connected(p)
        };
        let mut dials = 0;
        let mut tried: HashSet<PeerId> = HashSet::new();

        let mut boot: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for (p, a) in &self.bootstrap {
            match boot.iter_mut().find(|(q, _)| q == p) {
                Some((_, v)) => v.push(a.clone()),
                None => boot.push((*p, vec![a.clone()])),
            }
        }
        for (peer, addrs) in boot {
            if dials >= budget {
                return dials;
            }
            if skip(swarm, &peer) || !tried.insert(peer) {
                continue;
            }
            dials += self.dial(swarm, peer, addrs, now, "bootstrap");
        }

        let connected = swarm.connected_peers().count();
        if connected + dials >= DISCOVERED_PEERS_TARGET {
            return dials;
        }
        let mut known: Vec<(PeerId, Vec<Multiaddr>, &'static str)> =
            self.book.peers().map(|(p, a)| (*p, a.to_vec(), "address book")).collect();
        let allow_loopback = self.book.allow_loopback;
        for bucket in swarm.behaviour_mut().kad.kbuckets() {
            for e in bucket.iter() {
                if known.len() >= ADDRESS_BOOK_PEERS_MAX + KAD_CANDIDATES_MAX {
                    break;
                }
                let peer = *e.node.key.preimage();
                let addrs: Vec<Multiaddr> = e
                    .node
                    .value
                    .iter()
                    .filter_map(|a| dialable(a, &peer, allow_loopback))
                    .collect();
                known.push((peer, addrs, "routing table"));
            }
        }
        for (peer, addrs, source) in known {
            if dials >= budget || connected + dials >= DISCOVERED_PEERS_TARGET {
                break;
            }
            if skip(swarm, &peer) || !tried.insert(peer) {
                continue;
            }
            dials += self.dial(swarm, peer, addrs, now, source);
        }
        dials
    }

    /// Dial `peer` at those of `addrs` out of backoff; 1 if a dial started.
    fn dial(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        now: Instant,
        source: &'static str,
    ) -> usize {
        let due: Vec<Multiaddr> =
            addrs.into_iter().filter(|a| self.redial.due(peer, a, now)).collect();
        if due.is_empty() {
            return 0;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(due.clone())
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        match swarm.dial(opts) {
            Ok(()) => {
                debug!(%peer, source, addrs = due.len(), "redialling");
                for a in due {
                    self.redial.attempted(peer, a, now);
                }
                1
            }
            // Already being dialled (by Kademlia or a command): no new attempt.
            Err(DialError::DialPeerConditionFalse(_)) => 0,
            Err(e) => {
                debug!(%peer, source, error = %e, "redial not started");
                for a in due {
                    self.redial.attempted(peer, a, now);
                }
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519().public().to_peer_id()
    }

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn dialable_addresses_drop_unspecified_loopback_relays_and_the_peer_suffix() {
        let p = peer();
        let other = peer();
        assert_eq!(
            dialable(&addr("/ip4/10.0.0.2/tcp/4001"), &p, false),
            Some(addr("/ip4/10.0.0.2/tcp/4001"))
        );
        assert_eq!(
            dialable(&addr(&format!("/ip4/10.0.0.2/tcp/4001/p2p/{p}")), &p, false),
            Some(addr("/ip4/10.0.0.2/tcp/4001"))
        );
        assert_eq!(
            dialable(&addr("/ip4/10.0.0.2/udp/4001/quic-v1"), &p, false),
            Some(addr("/ip4/10.0.0.2/udp/4001/quic-v1"))
        );
        assert_eq!(
            dialable(&addr("/dns4/boot.example/tcp/4001"), &p, false),
            None,
            "no DNS transport"
        );
        assert_eq!(dialable(&addr("/dns/boot.example/tcp/4001"), &p, true), None);
        assert_eq!(dialable(&addr("/dns6/boot.example/udp/4001/quic-v1"), &p, true), None);
        assert_eq!(dialable(&addr("/ip4/0.0.0.0/tcp/4001"), &p, true), None);
        assert_eq!(dialable(&addr("/ip6/::/tcp/4001"), &p, true), None);
        assert_eq!(dialable(&addr("/ip4/127.0.0.1/tcp/4001"), &p, false), None);
        assert_eq!(
            dialable(&addr("/ip4/127.0.0.1/tcp/4001"), &p, true),
            Some(addr("/ip4/127.0.0.1/tcp/4001"))
        );
        assert_eq!(dialable(&addr("/ip6/::1/tcp/4001"), &p, false), None);
        assert_eq!(dialable(&addr("/ip4/10.0.0.2/tcp/0"), &p, false), None);
        assert_eq!(dialable(&addr("/ip4/10.0.0.2"), &p, false), None);
        assert_eq!(
            dialable(&addr(&format!("/ip4/10.0.0.2/tcp/4001/p2p/{other}")), &p, false),
            None
        );
        assert_eq!(
            dialable(&addr(&format!("/ip4/10.0.0.2/tcp/4001/p2p/{other}/p2p-circuit")), &p, false),
            None
        );
    }

    #[test]
    fn the_book_keeps_the_most_recent_peers_and_addresses_within_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = AddressBook::empty(dir.path().join(PEERS_FILE), peer(), false);
        let first = peer();
        for i in 0..20 {
            assert!(book.note(first, &addr(&format!("/ip4/10.0.0.{i}/tcp/4001"))));
        }
        let addrs = book.peers().next().unwrap().1.to_vec();
        assert_eq!(addrs.len(), ADDRESS_BOOK_ADDRS_MAX);
        assert_eq!(addrs[0], addr("/ip4/10.0.0.19/tcp/4001"), "the newest address first");
        for i in 0..100 {
            book.note(peer(), &addr(&format!("/ip4/10.1.0.{i}/tcp/4001")));
        }
        assert_eq!(book.len(), ADDRESS_BOOK_PEERS_MAX);
        assert!(!book.peers().any(|(p, _)| *p == first), "the oldest peer is forgotten");
        assert!(
            !book.note(peer(), &addr("/ip4/0.0.0.0/tcp/4001")),
            "an unspecified address is not kept"
        );
        assert!(
            !book.note(book.local, &addr("/ip4/10.0.0.1/tcp/4001")),
            "the node itself is not kept"
        );
    }

    fn dialer(address: &str) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: addr(address),
            role_override: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::Reuse,
        }
    }

    fn listener() -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: addr("/ip4/10.0.0.1/tcp/4001"),
            send_back_addr: addr("/ip4/10.9.9.9/tcp/50000"),
        }
    }

    #[test]
    fn peers_that_only_connected_in_cannot_push_dialled_peers_out_of_the_book() {
        let dir = tempfile::tempdir().unwrap();
        let mut peers =
            Peers::new(AddressBook::empty(dir.path().join(PEERS_FILE), peer(), false), &[]);
        let real = peer();
        peers.on_connected(real, &dialer("/ip4/10.0.0.2/tcp/4001"), true);
        peers
            .on_identified(real, &[addr("/ip4/10.0.0.2/tcp/4001"), addr("/ip4/10.0.0.3/tcp/4001")]);
        for i in 0..ADDRESS_BOOK_PEERS_MAX as u32 * 2 {
            let stranger = peer();
            peers.on_connected(stranger, &listener(), false);
            peers.on_identified(
                stranger,
                &[addr(&format!("/ip4/10.2.{}.{}/tcp/4001", i / 256, i % 256))],
            );
        }
        let book: Vec<(PeerId, Vec<Multiaddr>)> =
            peers.book.peers().map(|(p, a)| (*p, a.to_vec())).collect();
        assert_eq!(
            book,
            vec![(real, vec![addr("/ip4/10.0.0.2/tcp/4001"), addr("/ip4/10.0.0.3/tcp/4001")])]
        );

        // A dialled peer that identifies later updates its entry in place.
        let other = peer();
        peers.on_connected(other, &dialer("/ip4/10.0.0.4/tcp/4001"), false);
        peers.on_identified(real, &[addr("/ip4/10.0.0.5/tcp/4001")]);
        let order: Vec<PeerId> = peers.book.peers().map(|(p, _)| *p).collect();
        assert_eq!(order, vec![other, real], "identify does not reorder the book");
        assert_eq!(peers.book.peers().nth(1).unwrap().1[0], addr("/ip4/10.0.0.5/tcp/4001"));
    }

    #[test]
    fn backoff_resets_when_the_peer_identifies_not_when_it_merely_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let mut peers =
            Peers::new(AddressBook::empty(dir.path().join(PEERS_FILE), peer(), false), &[]);
        let (flaky, other) = (peer(), peer());
        let (a, b) = (addr("/ip4/10.0.0.2/tcp/4001"), addr("/ip4/10.0.0.3/tcp/4001"));
        let now = Instant::now();
        peers.redial.attempted(flaky, a.clone(), now);
        peers.redial.attempted(other, b.clone(), now);

        // Accepts, then drops before identifying: still backing off, even though
        // it was the node's only connection.
        peers.on_connected(flaky, &dialer("/ip4/10.0.0.2/tcp/4001"), true);
        assert!(!peers.redial.due(flaky, &a, now));
        assert!(!peers.redial.due(other, &b, now));

        // The next peer that identifies is the first working connection since the
        // node was alone: every backoff resets.
        peers.on_connected(flaky, &dialer("/ip4/10.0.0.2/tcp/4001"), true);
        peers.on_identified(flaky, &[]);
        assert!(peers.redial.due(flaky, &a, now));
        assert!(peers.redial.due(other, &b, now));

        // Not alone: only the peer that identified resets.
        peers.redial.attempted(flaky, a.clone(), now);
        peers.redial.attempted(other, b.clone(), now);
        peers.on_connected(flaky, &dialer("/ip4/10.0.0.2/tcp/4001"), false);
        peers.on_identified(flaky, &[]);
        assert!(peers.redial.due(flaky, &a, now));
        assert!(!peers.redial.due(other, &b, now));
    }

    #[tokio::test]
    async fn the_book_survives_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PEERS_FILE);
        let local = peer();
        let (a, b) = (peer(), peer());
        let mut book = AddressBook::empty(path.clone(), local, true);
        book.note(a, &addr("/ip4/127.0.0.1/tcp/1000"));
        book.note(b, &addr("/ip4/127.0.0.1/tcp/2000"));
        book.note_many(b, &[addr("/ip4/127.0.0.1/tcp/2001"), addr("/ip4/0.0.0.0/tcp/2002")]);
        book.save_now().await;
        assert!(!dir.path().join("peers.tmp").exists(), "the temp file is renamed");

        let loaded = AddressBook::load(path.clone(), local, true);
        let got: Vec<(PeerId, Vec<Multiaddr>)> =
            loaded.peers().map(|(p, a)| (*p, a.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (b, vec![addr("/ip4/127.0.0.1/tcp/2001"), addr("/ip4/127.0.0.1/tcp/2000")]),
                (a, vec![addr("/ip4/127.0.0.1/tcp/1000")])
            ]
        );
        // The same file read by a node that does not listen on loopback keeps nothing.
        assert_eq!(AddressBook::load(path, local, false).len(), 0);
    }

    #[test]
    fn a_late_write_of_an_older_book_does_not_replace_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PEERS_FILE);
        let local = peer();
        let (a, b) = (peer(), peer());
        let mut book = AddressBook::empty(path.clone(), local, false);
        book.note(a, &addr("/ip4/10.0.0.1/tcp/1"));
        let throttled = book.prepare(Instant::now());
        book.note(b, &addr("/ip4/10.0.0.2/tcp/2"));
        let at_stop = book.prepare(Instant::now());
        // The throttled write's thread runs only after the final write.
        at_stop.run().unwrap();
        throttled.run().unwrap();
        let loaded: Vec<PeerId> =
            AddressBook::load(path, local, false).peers().map(|(p, _)| *p).collect();
        assert_eq!(loaded, vec![b, a]);
    }

    #[test]
    fn a_malformed_address_book_is_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PEERS_FILE);
        let p = peer();
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"not json".to_vec(),
            vec![0xff, 0xfe, 0x00],
            br#"{"version": 2, "peers": []}"#.to_vec(),
            br#"{"version": 1}"#.to_vec(),
            br#"{"version": 1, "peers": [{"peer": 7, "addrs": []}]}"#.to_vec(),
            vec![b' '; ADDRESS_BOOK_FILE_BYTES_MAX as usize + 1],
        ];
        for bytes in cases {
            std::fs::write(&path, &bytes).unwrap();
            assert!(
                read_file(&path).is_err(),
                "{:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            );
            assert_eq!(AddressBook::load(path.clone(), peer(), true).len(), 0);
        }
        // Bad entries are skipped; good ones kept.
        let text = format!(
            r#"{{"version": 1, "peers": [{{"peer": "nope", "addrs": ["/ip4/10.0.0.1/tcp/1"]}}, {{"peer": "{p}", "addrs": ["garbage", "/ip4/10.0.0.2/tcp/2"]}}]}}"#
        );
        std::fs::write(&path, text).unwrap();
        let book = AddressBook::load(path, peer(), false);
        assert_eq!(
            book.peers().map(|(p, a)| (*p, a.to_vec())).collect::<Vec<_>>(),
            vec![(p, vec![addr("/ip4/10.0.0.2/tcp/2")])]
        );
    }

    #[test]
    fn redial_backoff_doubles_to_its_cap_and_resets_when_the_peer_connects() {
        let mut r = Redial::default();
        let (p, a) = (peer(), addr("/ip4/10.0.0.1/tcp/1"));
        let t0 = Instant::now();
        assert!(r.due(p, &a, t0));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            r.attempted(p, a.clone(), now);
            let next = r.entries[&(p, a.clone())].next;
            assert!(!r.due(p, &a, next - Duration::from_millis(1)));
            assert!(r.due(p, &a, next));
            waits.push((next - now).as_millis() as u64);
            now = next;
        }
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        r.reset(p);
        r.attempted(p, a.clone(), now);
        assert_eq!(r.entries[&(p, a)].next - now, Duration::from_millis(REDIAL_BACKOFF_MIN_MS));
    }
}
