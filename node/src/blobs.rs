//! Blobs between peers: the `/medmesh/blobs/1` request-response protocol, the
//! serving side and the fetcher.
//!
//! - `Have { hash }` -> `Have { size }` or `NotFound`: whether a peer holds a
//!   complete blob.
//! - `Piece { hash, piece }` -> `Piece { data }`: one [`PIECE_BYTES`] piece, bao
//!   encoded (the parent hashes from the root down, then the leaves), so that the
//!   fetcher checks every 16 KiB chunk group against the blob's hash before a
//!   byte is written ([`BlobStore::write_piece`]).
//!
//! A fetch ([`fetch`]) knows the hash and the size a signed record declared. It
//! finds providers among the connected peers and through Kademlia provider
//! records (a node provides every complete blob it holds), asks each whether it
//! has the blob, and pulls missing pieces from all that do at once, a few in
//! flight per peer. A piece that fails verification is dropped, the peer loses
//! [`CORRUPT_PIECE_SCORE`] and is not asked again in this fetch, and the piece
//! goes to another peer; a request that times out or fails costs
//! [`FAILED_REQUEST_SCORE`]; peers at or below [`BANNED_SCORE`] are not fetched
//! from. Received pieces are on disk with a bitmap in the index, so a lost
//! connection or a restart costs at most the pieces in flight: an unfinished
//! fetch resumes when the node starts.
//!
//! Serving runs off the swarm task, [`BLOB_SERVE_CONCURRENT_MAX`] pieces at once
//! and [`BLOB_SERVE_PER_PEER_MAX`] per peer; beyond that a request is refused as
//! busy (the fetcher tries another peer or later). Each peer also has a budget per
//! [`BLOB_SERVE_WINDOW_MS`] window ([`ServeBudget`]): at most
//! [`BLOB_SERVE_PEER_BYTES_PER_WINDOW`] bytes of pieces, and the same piece at
//! most [`BLOB_SERVE_PIECE_REPEATS_MAX`] times. A peer over it is refused
//! (`over budget`, `repeated piece`) until its window ends, logged once per
//! window, and counted in `/metrics`; so one greedy peer cannot take a node's
//! whole upload while honest fetchers wait.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use libp2p::PeerId;
use protocol::Hash32;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use crate::blobstore::{BlobError, BlobInfo, BlobStore, PIECE_BYTES, piece_len};

/// The protocol's name on the wire.
pub const PROTOCOL: &str = "/medmesh/blobs/1";
/// Largest response: one piece with its proof (parents of a 64 GiB tree and
/// of the piece's 64 chunk groups) and framing.
pub const BLOB_RESPONSE_BYTES_MAX: u64 = PIECE_BYTES + 64 * 1024;
/// Largest request.
pub const BLOB_REQUEST_BYTES_MAX: u64 = 1024;
/// Timeout for one blob request (the default of
/// [`crate::NodeConfig::blob_request_timeout`]).
pub const BLOB_REQUEST_TIMEOUT_MS: u64 = 20_000;
/// Pieces requested from one peer at once.
pub const PIECES_IN_FLIGHT_PER_PEER: usize = 8;
/// Peers one fetch asks at once.
pub const FETCH_PEERS_MAX: usize = 16;
/// A fetch that finds no peer to serve it (or makes no progress) fails after
/// this long.
pub const FETCH_STALL_TIMEOUT_MS: u64 = 60_000;
/// How long a fetch waits for Kademlia's providers before using what it has.
pub const PROVIDERS_WAIT_MS: u64 = 3_000;
/// Pieces served at once (each read and encoded on a blocking thread).
pub const BLOB_SERVE_CONCURRENT_MAX: usize = 16;
/// Pieces served to one peer at once: beyond it the peer is told busy, so that
/// one peer cannot take every serving slot.
pub const BLOB_SERVE_PER_PEER_MAX: usize = PIECES_IN_FLIGHT_PER_PEER;
/// The window of a peer's serving budget.
pub const BLOB_SERVE_WINDOW_MS: u64 = 10_000;
/// Bytes of pieces served to one peer per window (the default of
/// [`crate::NodeConfig::blob_serve_peer_bytes_per_window`]): about 200 MiB/s, more
/// than a gigabit link carries, so an honest fetch on a real network never meets
/// it, and a 1 GiB archive fetched over loopback fits one window.
pub const BLOB_SERVE_PEER_BYTES_PER_WINDOW: u64 = 2 * 1024 * 1024 * 1024;
/// Times one peer may ask for the same piece per window: an honest fetcher asks
/// once, again only after a failure; more only burns the server's upload.
pub const BLOB_SERVE_PIECE_REPEATS_MAX: u32 = 3;
/// What a `Have` request costs against the byte budget (it reads no piece, but
/// a flood of them is still work).
pub const BLOB_SERVE_HAVE_COST_BYTES: u64 = 1024;
/// Peers whose windows are remembered; beyond, ended windows are dropped first,
/// then the oldest.
pub const BLOB_SERVE_PEERS_TRACKED_MAX: usize = 4096;
/// Fetches running at once.
pub const FETCHES_MAX: usize = 8;
/// Requests for one piece that fail (any peer) before the fetch gives up on
/// this round of providers and looks again.
pub const PEER_FAILURES_MAX: u32 = 3;
/// Score for a piece that failed verification.
pub const CORRUPT_PIECE_SCORE: i64 = -100;
/// Score for a request that timed out or failed.
pub const FAILED_REQUEST_SCORE: i64 = -10;
/// Score for a piece served and verified.
pub const GOOD_PIECE_SCORE: i64 = 1;
/// Highest score a peer earns by serving (good service does not buy a pass for
/// later corruption).
pub const SCORE_MAX: i64 = 50;
/// Peers at or below this score are not fetched from.
pub const BANNED_SCORE: i64 = -200;

/// A blob request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlobRequest {
    Have { hash: ByteBuf },
    Piece { hash: ByteBuf, piece: u32 },
}

/// A blob response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlobResponse {
    Have { size: u64 },
    Piece { data: ByteBuf },
    NotFound,
    Refused { reason: String },
}

/// Why the serving budget refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverBudget {
    /// More bytes than [`BLOB_SERVE_PEER_BYTES_PER_WINDOW`] this window.
    Bytes,
    /// The same piece more than [`BLOB_SERVE_PIECE_REPEATS_MAX`] times this window.
    Repeat,
}

impl OverBudget {
    /// The reason a refused peer is told, and the `/metrics` label.
    pub fn reason(self) -> &'static str {
        match self {
            OverBudget::Bytes => "over budget",
            OverBudget::Repeat => "repeated piece",
        }
    }
}

/// One peer's use of this node's upload in the current window.
#[derive(Debug)]
struct PeerWindow {
    start: Instant,
    bytes: u64,
    /// (blob, piece) -> times asked; bounded by the byte budget over the piece size.
    pieces: HashMap<(Hash32, u32), u32>,
    /// The refusal was logged this window.
    warned: bool,
}

/// Per-peer serving budget: bytes per window and repeats of one piece. Kept on
/// the swarm task; time is passed in, so that tests need no clock.
#[derive(Debug)]
pub struct ServeBudget {
    window: Duration,
    bytes_max: u64,
    peers: HashMap<PeerId, PeerWindow>,
}

/// The verdict on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Refused; `first` is true the first time in this peer's window (log it).
    No {
        why: OverBudget,
        first: bool,
    },
}

impl ServeBudget {
    pub fn new(window: Duration, bytes_max: u64) -> Self {
        Self { window, bytes_max, peers: HashMap::new() }
    }

    /// Charge `request` to `peer` at `now`, or refuse it.
    pub fn admit(&mut self, peer: PeerId, request: &BlobRequest, now: Instant) -> Admit {
        if !self.peers.contains_key(&peer) && self.peers.len() >= BLOB_SERVE_PEERS_TRACKED_MAX {
            let window = self.window;
            self.peers.retain(|_, w| now.duration_since(w.start) < window);
            if self.peers.len() >= BLOB_SERVE_PEERS_TRACKED_MAX
                && let Some(oldest) =
                    self.peers.iter().min_by_key(|(_, w)| w.start).map(|(p, _)| *p)
            {
                self.peers.remove(&oldest);
            }
        }
        let w = self.peers.entry(peer).or_insert_with(|| PeerWindow {
            start: now,
            bytes: 0,
            pieces: HashMap::new(),
            warned: false,
        });
        if now.duration_since(w.start) >= self.window {
            *w = PeerWindow { start: now, bytes: 0, pieces: HashMap::new(), warned: false };
        }
        let (cost, piece) = match request {
            BlobRequest::Have { .. } => (BLOB_SERVE_HAVE_COST_BYTES, None),
            BlobRequest::Piece { hash, piece } => (PIECE_BYTES, hash_of(hash).map(|h| (h, *piece))),
        };
        let why = if w.bytes + cost > self.bytes_max {
            Some(OverBudget::Bytes)
        } else if piece
            .is_some_and(|k| w.pieces.get(&k).copied().unwrap_or(0) >= BLOB_SERVE_PIECE_REPEATS_MAX)
        {
            Some(OverBudget::Repeat)
        } else {
            None
        };
        if let Some(why) = why {
            let first = !w.warned;
            w.warned = true;
            return Admit::No { why, first };
        }
        w.bytes += cost;
        if let Some(k) = piece {
            *w.pieces.entry(k).or_default() += 1;
        }
        Admit::Yes
    }
}

/// Requests this node refused to serve since start, by reason (for `/metrics`).
#[derive(Debug, Default)]
pub struct ServeRefusals {
    pub busy: std::sync::atomic::AtomicU64,
    pub over_budget: std::sync::atomic::AtomicU64,
    pub repeated_piece: std::sync::atomic::AtomicU64,
    /// Pieces served.
    pub served: std::sync::atomic::AtomicU64,
}

fn hash_of(b: &ByteBuf) -> Option<Hash32> {
    <[u8; 32]>::try_from(b.as_slice()).ok().map(Hash32::from_bytes)
}

/// How a peer has served blobs to this node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BlobPeerScore {
    pub score: i64,
    pub pieces: u64,
    pub corrupt: u64,
    pub failed: u64,
}

/// A fetch as the control API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FetchProgress {
    pub hash: Hash32,
    pub size: u64,
    /// Bytes received and verified (including pieces from before a restart).
    pub have: u64,
    /// `fetching`, `done` or `failed`.
    pub state: &'static str,
    pub error: Option<String>,
    /// Peers serving this fetch now.
    pub peers: Vec<String>,
    /// Bytes per second over this fetch so far.
    pub bytes_per_s: u64,
    pub corrupt_pieces: u64,
    pub failed_requests: u64,
}

/// Every blob, every fetch since start, the peers' blob scores, and the quota.
#[derive(Clone, Debug, Serialize)]
pub struct BlobOverview {
    pub blobs: Vec<BlobInfo>,
    pub fetches: Vec<FetchProgress>,
    pub peers: HashMap<String, BlobPeerScore>,
    pub quota: u64,
}

/// The node's blobs: the store, the fetches running, the peers' scores.
pub struct Blobs {
    pub(crate) store: Arc<BlobStore>,
    fetches: Mutex<HashMap<Hash32, watch::Sender<FetchProgress>>>,
    scores: Mutex<HashMap<PeerId, BlobPeerScore>>,
    pub(crate) serving: Arc<Semaphore>,
    /// Serving refused and done since start.
    pub(crate) serve_counts: ServeRefusals,
    /// Bytes served to one peer per window ([`ServeBudget`]).
    pub(crate) serve_peer_bytes: u64,
    fetching: Arc<Semaphore>,
    /// Serve without checking chunks against the outboard (fault injection in
    /// tests: a peer whose disk rotted).
    pub(crate) serve_unverified: bool,
    /// Set when the node stops: fetches end (their pieces are kept).
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Blobs {
    pub(crate) fn new(store: BlobStore, serve_unverified: bool) -> Self {
        Blobs {
            store: Arc::new(store),
            fetches: Mutex::new(HashMap::new()),
            scores: Mutex::new(HashMap::new()),
            serving: Arc::new(Semaphore::new(BLOB_SERVE_CONCURRENT_MAX)),
            serve_counts: ServeRefusals::default(),
            serve_peer_bytes: BLOB_SERVE_PEER_BYTES_PER_WINDOW,
            fetching: Arc::new(Semaphore::new(FETCHES_MAX)),
            serve_unverified,
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Serve at most `bytes` to one peer per window.
    pub(crate) fn with_serve_budget(mut self, bytes: u64) -> Self {
        self.serve_peer_bytes = bytes;
        self
    }

    /// Stop every fetch and wait until nothing holds the store (so that the
    /// data directory can be opened again at once).
    pub(crate) async fn close(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        // Pieces being verified on blocking threads finish in milliseconds.
        for _ in 0..200 {
            if Arc::strong_count(&self.store) <= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let store = self.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
            warn!(error = %e, "cannot make the received blob pieces durable; they will be fetched again");
        }
        self.store.close();
    }

    fn fetch_map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Hash32, watch::Sender<FetchProgress>>> {
        self.fetches.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn score_map(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, BlobPeerScore>> {
        self.scores.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn charge(&self, peer: PeerId, delta: i64, f: impl FnOnce(&mut BlobPeerScore)) {
        let mut m = self.score_map();
        let s = m.entry(peer).or_default();
        s.score = (s.score + delta).min(SCORE_MAX);
        f(s);
    }

    fn banned(&self, peer: &PeerId) -> bool {
        self.score_map().get(peer).is_some_and(|s| s.score <= BANNED_SCORE)
    }

    /// Every peer's blob score.
    pub fn scores(&self) -> HashMap<String, BlobPeerScore> {
        self.score_map().iter().map(|(p, s)| (p.to_string(), s.clone())).collect()
    }

    /// The progress of the fetch of `hash`, if one ran since the node started.
    pub fn progress(&self, hash: &Hash32) -> Option<FetchProgress> {
        self.fetch_map().get(hash).map(|w| w.borrow().clone())
    }

    /// Every fetch since the node started.
    pub fn all_progress(&self) -> Vec<FetchProgress> {
        self.fetch_map().values().map(|w| w.borrow().clone()).collect()
    }

    /// Answer one request (blocking: reads the store).
    pub(crate) fn answer(&self, request: BlobRequest) -> BlobResponse {
        match request {
            BlobRequest::Have { hash } => {
                let Some(hash) = hash_of(&hash) else { return BlobResponse::NotFound };
                match self.store.info(&hash) {
                    Ok(Some(i)) if i.complete => BlobResponse::Have { size: i.size },
                    _ => BlobResponse::NotFound,
                }
            }
            BlobRequest::Piece { hash, piece } => {
                let Some(hash) = hash_of(&hash) else { return BlobResponse::NotFound };
                match self.store.encode_piece(&hash, piece, !self.serve_unverified) {
                    Ok(data) => BlobResponse::Piece { data: ByteBuf::from(data) },
                    Err(BlobError::NotFound(_)) => BlobResponse::NotFound,
                    Err(e @ BlobError::Corrupt { .. }) => {
                        warn!(target: "medmesh::audit", %hash, piece, error = %e, "a blob this node holds is damaged on disk: not served; remove it with `medmesh blob gc` after unpinning, or fetch it again");
                        BlobResponse::Refused { reason: "damaged here".into() }
                    }
                    Err(e) => BlobResponse::Refused { reason: e.to_string() },
                }
            }
        }
    }
}

/// What a fetch needs from the swarm task.
pub(crate) trait Net: Clone + Send + Sync + 'static {
    fn request(
        &self,
        peer: PeerId,
        request: BlobRequest,
    ) -> impl std::future::Future<Output = Result<BlobResponse, String>> + Send;
    fn candidates(&self, hash: Hash32) -> impl std::future::Future<Output = Vec<PeerId>> + Send;
    fn provide(&self, hash: Hash32) -> impl std::future::Future<Output = ()> + Send;
}

/// Start fetching `hash` (declared `size`) in the background unless a fetch of
/// it is running; returns a receiver of its progress.
pub(crate) fn start<N: Net>(
    blobs: Arc<Blobs>,
    net: N,
    hash: Hash32,
    size: u64,
    pin: bool,
) -> watch::Receiver<FetchProgress> {
    let mut map = blobs.fetch_map();
    if let Some(w) = map.get(&hash)
        && w.borrow().state == "fetching"
    {
        return w.subscribe();
    }
    let (tx, rx) = watch::channel(FetchProgress {
        hash,
        size,
        have: 0,
        state: "fetching",
        error: None,
        peers: Vec::new(),
        bytes_per_s: 0,
        corrupt_pieces: 0,
        failed_requests: 0,
    });
    map.insert(hash, tx.clone());
    drop(map);
    let mut stop = blobs.stop.subscribe();
    if *stop.borrow() {
        return rx;
    }
    let b = blobs.clone();
    let task = tokio::spawn(async move {
        let blobs = b;
        let Ok(_permit) = blobs.fetching.clone().acquire_owned().await else { return };
        let r = tokio::select! {
            r = fetch(&blobs, &net, hash, size, pin, &tx) => r,
            _ = stop.wait_for(|s| *s) => Err("the node stopped; the fetch resumes when it starts again".into()),
        };
        tx.send_modify(|p| match r {
            Ok(_) => {
                p.state = "done";
                p.have = size;
                p.peers.clear();
            }
            Err(e) => {
                p.state = "failed";
                p.error = Some(e);
                p.peers.clear();
            }
        });
    });
    let mut tasks = blobs.tasks.lock().unwrap_or_else(|p| p.into_inner());
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
    rx
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("blob store task failed: {e}"))?
        .map_err(|e| e.to_string())
}

enum Outcome {
    Stored,
    Corrupt(String),
    Failed(String),
    /// The peer's serving budget is spent: no fault, ask it again later.
    Throttled,
}

/// Fetch a blob from the peers that have it; see the module docs.
async fn fetch<N: Net>(
    blobs: &Arc<Blobs>,
    net: &N,
    hash: Hash32,
    size: u64,
    pin: bool,
    progress: &watch::Sender<FetchProgress>,
) -> Result<BlobInfo, String> {
    let store = blobs.store.clone();
    let missing = blocking(move || store.begin(&hash, size, pin)).await?;
    let mut queue: VecDeque<u32> = missing.into_iter().collect();
    let already: u64 = size - queue.iter().map(|p| piece_len(size, *p)).sum::<u64>();
    progress.send_modify(|p| p.have = already);
    let started = Instant::now();
    let mut fetched_here = 0u64;
    let mut last_progress = Instant::now();
    let mut excluded: HashSet<PeerId> = HashSet::new();
    let stall = Duration::from_millis(FETCH_STALL_TIMEOUT_MS);
    while !queue.is_empty() {
        if last_progress.elapsed() > stall {
            return Err(format!(
                "no peer served blob {} for {} s ({} of {size} bytes here); check that a peer holding it is online, then fetch again: received pieces are kept",
                hash.short(),
                FETCH_STALL_TIMEOUT_MS / 1000,
                progress.borrow().have
            ));
        }
        let sources = find_sources(blobs, net, hash, size, &excluded).await;
        if sources.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        progress.send_modify(|p| p.peers = sources.iter().map(|s| s.to_string()).collect());
        let mut load: HashMap<PeerId, usize> = sources.iter().map(|p| (*p, 0)).collect();
        let mut failures: HashMap<PeerId, u32> = HashMap::new();
        let mut throttled = false;
        let mut flight = FuturesUnordered::new();
        loop {
            // Hand pieces to every source with room.
            for peer in &sources {
                while load.get(peer).is_some_and(|l| *l < PIECES_IN_FLIGHT_PER_PEER) {
                    let Some(piece) = queue.pop_front() else { break };
                    *load.entry(*peer).or_default() += 1;
                    flight.push(one_piece(blobs.clone(), net.clone(), *peer, hash, size, piece));
                }
            }
            let Some((peer, piece, outcome)) = flight.next().await else { break };
            if let Some(l) = load.get_mut(&peer) {
                *l = l.saturating_sub(1);
            }
            match outcome {
                Outcome::Stored => {
                    let n = piece_len(size, piece);
                    fetched_here += n;
                    last_progress = Instant::now();
                    blobs.charge(peer, GOOD_PIECE_SCORE, |s| s.pieces += 1);
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    progress.send_modify(|p| {
                        p.have += n;
                        p.bytes_per_s = (fetched_here as f64 / secs) as u64;
                    });
                }
                Outcome::Corrupt(reason) => {
                    warn!(target: "medmesh::audit", %peer, hash = %hash.short(), piece, %reason, "peer served a blob piece that failed verification: refused, fetched from another peer, and the peer loses score");
                    blobs.charge(peer, CORRUPT_PIECE_SCORE, |s| s.corrupt += 1);
                    progress.send_modify(|p| p.corrupt_pieces += 1);
                    excluded.insert(peer);
                    load.remove(&peer);
                    queue.push_front(piece);
                }
                Outcome::Throttled => {
                    // Not asked again this round; other holders go on, and the
                    // next round (after its window) asks it again, at no cost.
                    tracing::debug!(%peer, hash = %hash.short(), piece, "peer's serving budget for us is spent");
                    load.remove(&peer);
                    queue.push_front(piece);
                    throttled = true;
                }
                Outcome::Failed(reason) => {
                    tracing::debug!(%peer, hash = %hash.short(), piece, %reason, "blob piece request failed");
                    blobs.charge(peer, FAILED_REQUEST_SCORE, |s| s.failed += 1);
                    progress.send_modify(|p| p.failed_requests += 1);
                    let f = failures.entry(peer).or_default();
                    *f += 1;
                    if *f >= PEER_FAILURES_MAX {
                        load.remove(&peer);
                    }
                    queue.push_front(piece);
                }
            }
            if load.is_empty() && flight.is_empty() {
                break;
            }
        }
        if throttled && !queue.is_empty() {
            // A holder's budget for us is spent: wait a little before asking again.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Sources all dropped out (or the queue is empty): look again.
        excluded.extend(failures.iter().filter(|(_, f)| **f >= PEER_FAILURES_MAX).map(|(p, _)| *p));
        if !queue.is_empty() && excluded.len() >= FETCH_PEERS_MAX * 4 {
            excluded.clear();
        }
    }
    let store = blobs.store.clone();
    let done = match blocking(move || store.finish(&hash)).await {
        Ok(d) => d,
        Err(e) => return Err(format!("{e}; fetch again")),
    };
    net.provide(hash).await;
    info!(hash = %hash.short(), size, ms = started.elapsed().as_millis() as u64, "blob fetched");
    Ok(done)
}

/// Peers that say they hold the complete blob of the declared size.
async fn find_sources<N: Net>(
    blobs: &Arc<Blobs>,
    net: &N,
    hash: Hash32,
    size: u64,
    excluded: &HashSet<PeerId>,
) -> Vec<PeerId> {
    let mut candidates = net.candidates(hash).await;
    candidates.retain(|p| !excluded.contains(p) && !blobs.banned(p));
    candidates.truncate(FETCH_PEERS_MAX);
    let asks = candidates.into_iter().map(|peer| {
        let net = net.clone();
        async move {
            let r = net
                .request(peer, BlobRequest::Have { hash: ByteBuf::from(hash.as_bytes().to_vec()) })
                .await;
            (peer, r)
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut out = Vec::new();
    for (peer, r) in answers {
        match r {
            Ok(BlobResponse::Have { size: s }) if s == size => out.push(peer),
            Ok(BlobResponse::Have { size: s }) => {
                warn!(target: "medmesh::audit", %peer, hash = %hash.short(), claimed = s, declared = size, "peer claims a blob size other than the signed record declares: not fetched from");
                blobs.charge(peer, CORRUPT_PIECE_SCORE, |s| s.corrupt += 1);
            }
            _ => {}
        }
    }
    out
}

async fn one_piece<N: Net>(
    blobs: Arc<Blobs>,
    net: N,
    peer: PeerId,
    hash: Hash32,
    size: u64,
    piece: u32,
) -> (PeerId, u32, Outcome) {
    let req = BlobRequest::Piece { hash: ByteBuf::from(hash.as_bytes().to_vec()), piece };
    let outcome = match net.request(peer, req).await {
        Ok(BlobResponse::Piece { data }) => {
            let store = blobs.store.clone();
            let r =
                tokio::task::spawn_blocking(move || store.write_piece(&hash, size, piece, &data))
                    .await;
            match r {
                Ok(Ok(())) => Outcome::Stored,
                Ok(Err(e @ BlobError::Corrupt { .. })) => Outcome::Corrupt(e.to_string()),
                Ok(Err(e)) => Outcome::Failed(e.to_string()),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        }
        Ok(BlobResponse::Refused { reason })
            if [OverBudget::Bytes, OverBudget::Repeat].iter().any(|o| o.reason() == reason) =>
        {
            Outcome::Throttled
        }
        Ok(BlobResponse::Refused { reason }) => Outcome::Failed(format!("refused: {reason}")),
        Ok(other) => Outcome::Failed(format!("unexpected answer {other:?}")),
        Err(e) => Outcome::Failed(e),
    };
    (peer, piece, outcome)
}

/// Blobs that counting records name (kept by [`BlobStore::gc`]).
pub fn referenced(state: &protocol::State) -> HashSet<Hash32> {
    let mut out = HashSet::new();
    for c in state.containers.values() {
        let c = &c.container;
        out.extend(c.image_archive.iter().map(|b| b.hash));
        out.extend(c.additional_files.iter().map(|a| a.blob.hash));
    }
    for b in state.benchmarks.values() {
        out.insert(b.benchmark.demo_dataset.hash);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(hash: &Hash32, piece: u32) -> BlobRequest {
        BlobRequest::Piece { hash: ByteBuf::from(hash.as_bytes().to_vec()), piece }
    }

    #[test]
    fn a_peer_is_refused_beyond_its_bytes_per_window_and_served_again_in_the_next() {
        let window = Duration::from_millis(BLOB_SERVE_WINDOW_MS);
        let mut b = ServeBudget::new(window, 4 * PIECE_BYTES);
        let (greedy, honest) = (PeerId::random(), PeerId::random());
        let h = Hash32::of(b"blob");
        let t0 = Instant::now();
        for i in 0..4 {
            assert_eq!(b.admit(greedy, &piece(&h, i), t0), Admit::Yes);
        }
        let no = b.admit(greedy, &piece(&h, 4), t0);
        assert_eq!(no, Admit::No { why: OverBudget::Bytes, first: true });
        let again = b.admit(greedy, &piece(&h, 5), t0);
        assert_eq!(again, Admit::No { why: OverBudget::Bytes, first: false }, "logged once");
        // Another peer has a budget of its own.
        assert_eq!(b.admit(honest, &piece(&h, 0), t0), Admit::Yes);
        // The next window serves the greedy peer again.
        assert_eq!(b.admit(greedy, &piece(&h, 4), t0 + window), Admit::Yes);
    }

    #[test]
    fn the_same_piece_asked_too_often_in_a_window_is_refused() {
        let mut b = ServeBudget::new(Duration::from_secs(10), u64::MAX);
        let p = PeerId::random();
        let h = Hash32::of(b"blob");
        let t0 = Instant::now();
        for _ in 0..BLOB_SERVE_PIECE_REPEATS_MAX {
            assert_eq!(b.admit(p, &piece(&h, 7), t0), Admit::Yes);
        }
        assert_eq!(
            b.admit(p, &piece(&h, 7), t0),
            Admit::No { why: OverBudget::Repeat, first: true }
        );
        assert_eq!(b.admit(p, &piece(&h, 8), t0), Admit::Yes, "other pieces still served");
    }

    #[test]
    fn the_budget_remembers_a_bounded_number_of_peers() {
        let mut b = ServeBudget::new(Duration::from_secs(10), u64::MAX);
        let t0 = Instant::now();
        let have = BlobRequest::Have { hash: ByteBuf::from(vec![0; 32]) };
        for _ in 0..BLOB_SERVE_PEERS_TRACKED_MAX + 10 {
            assert_eq!(b.admit(PeerId::random(), &have, t0), Admit::Yes);
        }
        assert!(b.peers.len() <= BLOB_SERVE_PEERS_TRACKED_MAX);
    }
}
