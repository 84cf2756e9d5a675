//! Starting and stopping a node, and the [`Client`] handle everyone else uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, Swarm, noise, tcp, yamux};
use protocol::{Hash32, NetworkId, NetworkRoot, PublicKey, Record, RecordId, State};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::blobs::{BlobRequest, BlobResponse, Blobs, FetchProgress};
use crate::blobstore::{BlobError, BlobInfo, BlobStore};
use crate::core::Core;
use crate::error::{StartError, Stopped, SubmitError};
use crate::peers::{AddressBook, PEERS_FILE, Peers};
use crate::refusals::{Origin, Refusals, Source};
use crate::store::Store;
use crate::swarm::{self, Behaviour, Command, EventLoop, Gossiped, PeerInfo, SyncStatus};
use crate::{Shared, StoreError};

/// Commands queued to the swarm task.
pub const COMMAND_QUEUE_LEN: usize = 256;
/// How long start waits for each listener to report its address.
pub const LISTEN_TIMEOUT_MS: u64 = 10_000;
/// Default interval between background sync sessions.
pub const SYNC_INTERVAL_MS: u64 = 15_000;

/// File names inside the data directory.
pub const STORE_FILE: &str = "store.redb";
pub const PEER_KEY_FILE: &str = "peer.key";
pub const TOKEN_FILE: &str = "control.token";
pub const CONTROL_ADDR_FILE: &str = "control.addr";

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Holds the store, the peer key and the control token.
    pub data_dir: PathBuf,
    /// The network root; required on first start, checked against the store after.
    pub root: Option<NetworkRoot>,
    /// Addresses to listen on (`/ip4/127.0.0.1/tcp/0`, `/ip4/0.0.0.0/udp/4001/quic-v1`).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Where to serve the control API; None serves none.
    pub control: Option<SocketAddr>,
    /// Allow `control` on a non-loopback address (a node in a container, driven from
    /// its host). Writes still need the token; reads are open to whoever can reach it.
    pub control_public: bool,
    /// Host names (besides loopback forms and IP literals) under which clients
    /// reach a public control API; requests with any other `Host` are refused
    /// (DNS rebinding). Needs `control_public`.
    pub control_hosts: Vec<String>,
    /// Interval between background sync sessions with a connected peer.
    pub sync_interval: Duration,
    /// How often each connection is pinged.
    pub ping_interval: Duration,
    /// How long a ping may go unanswered; two failures in a row close the
    /// connection (a peer that vanished without closing it).
    pub ping_timeout: Duration,
    /// How long one sync request may go unanswered before its session fails (a
    /// peer that stalls mid-page).
    pub sync_request_timeout: Duration,
    /// What this node stores per key and in all ([`crate::admission::Quotas`]).
    pub quotas: crate::admission::Quotas,
    /// Disk quota for blobs held and being fetched, in bytes.
    pub blob_quota: u64,
    /// How long one blob request may go unanswered before its piece goes to
    /// another peer (a peer that stalls).
    pub blob_request_timeout: Duration,
    /// Serve blob pieces without checking them against their outboard first.
    /// Fault injection for tests (a peer whose disk rotted); never set otherwise.
    #[doc(hidden)]
    pub blob_serve_unverified: bool,
    /// Shape every inbound link (latency, jitter, loss, bandwidth) and count
    /// bytes: the simulation's network ([`crate::netem`]). None (the default)
    /// builds the plain TCP and QUIC transports.
    #[doc(hidden)]
    pub shaping: Option<Arc<crate::netem::Shaping>>,
    /// Bytes of blob pieces served to one peer per window
    /// ([`crate::blobs::BLOB_SERVE_WINDOW_MS`]); beyond, the peer is refused until
    /// its window ends.
    pub blob_serve_peer_bytes_per_window: u64,
    /// Gossipsub's mesh and gossip parameters (the defaults are the chosen ones).
    pub gossip: swarm::GossipTuning,
    /// The simulation's scaled clock: every protocol timer the node runs
    /// (gossipsub's heartbeat and its time-based parameters, peer-score decay,
    /// ping, the sync interval and request timeouts, Kademlia's queries and
    /// bootstrap, identify, idle connections, the maintenance tick) is this many
    /// times longer, so that many nodes sharing a few cores keep (scaled) time.
    /// The durations in this config are given unscaled. 1, the default, for
    /// every real node.
    #[doc(hidden)]
    pub time_dilation: u32,
}

impl NodeConfig {
    /// A node in `data_dir` listening on an ephemeral loopback TCP port, with no
    /// control API.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            root: None,
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
            bootstrap: Vec::new(),
            control: None,
            control_public: false,
            control_hosts: Vec::new(),
            sync_interval: Duration::from_millis(SYNC_INTERVAL_MS),
            ping_interval: Duration::from_millis(swarm::PING_INTERVAL_MS),
            ping_timeout: Duration::from_millis(swarm::PING_TIMEOUT_MS),
            sync_request_timeout: Duration::from_millis(swarm::SYNC_REQUEST_TIMEOUT_MS),
            quotas: crate::admission::Quotas::default(),
            blob_quota: crate::blobstore::BLOB_QUOTA_BYTES_DEFAULT,
            blob_request_timeout: Duration::from_millis(crate::blobs::BLOB_REQUEST_TIMEOUT_MS),
            blob_serve_unverified: false,
            shaping: None,
            blob_serve_peer_bytes_per_window: crate::blobs::BLOB_SERVE_PEER_BYTES_PER_WINDOW,
            gossip: swarm::GossipTuning::default(),
            time_dilation: 1,
        }
    }
}

/// A running node. Stop it with [`Node::shutdown`].
pub struct Node {
    client: Client,
    data_dir: PathBuf,
    listen: Vec<Multiaddr>,
    control: Option<SocketAddr>,
    stop_swarm: Option<oneshot::Sender<()>>,
    swarm_task: Option<JoinHandle<()>>,
    stop_control: Option<oneshot::Sender<()>>,
    control_task: Option<JoinHandle<()>>,
}

/// The answer to a submitted record.
#[derive(Clone, Debug, Serialize)]
pub struct Submitted {
    pub id: RecordId,
    /// False when the node already held it.
    pub new: bool,
    /// A join request from a key not admitted yet: kept in the pool (not the
    /// store) and gossiped, until the admins admit the key.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pooled: bool,
    pub gossiped: Option<Gossiped>,
}

/// A cheap handle to a node: queries read the replica, network actions go to the
/// swarm task over a bounded channel.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    blobs: Arc<Blobs>,
}

impl Node {
    /// Open the data directory, load and re-verify the store, start the swarm
    /// and (if configured) the control API.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let dir = config.data_dir.clone();
        if let Some(addr) = config.control
            && !addr.ip().is_loopback()
            && !config.control_public
        {
            return Err(StartError::ControlNotLoopback(addr));
        }
        if !config.control_hosts.is_empty() && !config.control_public {
            return Err(StartError::ControlHostsNotPublic);
        }
        create_private_dir(&dir)
            .map_err(|source| StartError::DataDir { path: dir.clone(), source })?;
        let store = Store::open(&dir.join(STORE_FILE))?;
        let root = match (store.root()?, config.root.clone()) {
            (Some(stored), Some(given)) if stored != given => {
                return Err(StartError::RootMismatch {
                    given: given.network_id().to_hex(),
                    stored: stored.network_id().to_hex(),
                });
            }
            (Some(stored), _) => stored,
            (None, Some(given)) => {
                store.set_root(&given)?;
                given
            }
            (None, None) => return Err(StartError::NoRoot),
        };
        let network = root.network_id();
        let quotas = config.quotas;
        let core = tokio::task::spawn_blocking(move || Core::load_with(store, root, quotas))
            .await
            .map_err(|e| StoreError::Corrupt(format!("loading the store panicked: {e}")))??;
        let shared = Arc::new(Shared::new(core));
        info!(network = %network.short(), records = shared.len(), "store loaded");

        let key = load_or_create_peer_key(&dir.join(PEER_KEY_FILE))?;
        let peer_id = key.public().to_peer_id();
        let blob_store = BlobStore::open(&dir, config.blob_quota)
            .map_err(|e| StartError::Swarm(format!("cannot open the blob store: {e}")))?;
        let blobs = Arc::new(
            Blobs::new(blob_store, config.blob_serve_unverified)
                .with_serve_budget(config.blob_serve_peer_bytes_per_window),
        );
        let mut swarm = build_swarm(key, &network, &config, shared.counters.gossip_copies.clone())?;
        let listen = listen_all(&mut swarm, &config.listen).await;
        let listen = match listen {
            Ok(l) => l,
            Err(e) => {
                shared.close();
                return Err(e);
            }
        };
        for addr in &config.bootstrap {
            if let Err(e) = swarm::dial(&mut swarm, addr.clone()) {
                warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        // Peers from the address book are dialled by the swarm task's first
        // maintenance tick; Kademlia learns them now, so that it can bootstrap
        // through them when every bootstrap peer is down.
        let allow_loopback = config.listen.iter().any(is_loopback);
        let book = AddressBook::load(dir.join(PEERS_FILE), peer_id, allow_loopback);
        for (peer, addrs) in book.peers() {
            for addr in addrs {
                swarm.behaviour_mut().kad.add_address(peer, addr.clone());
            }
        }
        let peers = Peers::new(book, &config.bootstrap);
        if peers.has_seeds() {
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }
        info!(peer = %peer_id, "node started");

        let (tx, rx) = mpsc::channel(COMMAND_QUEUE_LEN);
        let (stop_swarm, stop_rx) = oneshot::channel();
        let event_loop = EventLoop::new(
            swarm,
            shared.clone(),
            rx,
            stop_rx,
            listen.clone(),
            config.sync_interval * config.time_dilation.max(1),
            config.time_dilation.max(1),
            peers,
            blobs.clone(),
        );
        let swarm_task = tokio::spawn(event_loop.run());
        let client = Client { shared: shared.clone(), commands: tx, peer_id, blobs };
        client.resume_blobs().await;

        let mut node = Node {
            client,
            data_dir: dir.clone(),
            listen,
            control: None,
            stop_swarm: Some(stop_swarm),
            swarm_task: Some(swarm_task),
            stop_control: None,
            control_task: None,
        };
        if let Some(addr) = config.control {
            let served = crate::control::serve(
                &dir,
                addr,
                node.client.clone(),
                config.control_public,
                &config.control_hosts,
            )
            .await;
            match served {
                Ok((bound, stop, task)) => {
                    node.control = Some(bound);
                    node.stop_control = Some(stop);
                    node.control_task = Some(task);
                    info!(%bound, "control API listening");
                    if config.control_public {
                        warn!(%bound, hosts = ?config.control_hosts, "{}", crate::control::CONTROL_PUBLIC_WARNING);
                    }
                }
                Err(e) => {
                    node.shutdown().await;
                    return Err(e);
                }
            }
        }
        Ok(node)
    }

    /// A handle to this node.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn peer_id(&self) -> PeerId {
        self.client.peer_id
    }

    /// The addresses the node listens on, each with `/p2p/<peer id>` appended.
    pub fn addresses(&self) -> Vec<Multiaddr> {
        self.listen
            .iter()
            .map(|a| a.clone().with(libp2p::multiaddr::Protocol::P2p(self.client.peer_id)))
            .collect()
    }

    /// Where the control API listens, if it runs.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control
    }

    /// Stop the swarm and the control API and release the data directory.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        if let Some(s) = self.stop_control.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.control_task.take() {
            let _ = t.await;
            let _ = std::fs::remove_file(self.data_dir.join(CONTROL_ADDR_FILE));
        }
        if let Some(s) = self.stop_swarm.take() {
            let _ = s.send(());
        }
        self.client.blobs.close().await;
        if let Some(t) = self.swarm_task.take() {
            let _ = t.await;
        }
        self.client.shared.close();
    }

    /// Run in the foreground until Ctrl-C or SIGTERM, then stop cleanly.
    pub async fn run_until_signal(mut self) {
        wait_for_signal().await;
        info!("stopping");
        self.stop().await;
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Read a network root file, with errors that say what to do.
pub fn load_root_file(path: &Path) -> Result<NetworkRoot, StartError> {
    let err = |reason: String| StartError::RootFile { path: path.to_path_buf(), reason };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err("no such file; get the root file from your network's admin".into()));
        }
        Err(e) => return Err(err(e.to_string())),
    };
    NetworkRoot::from_bytes(&bytes).map_err(|e| err(e.to_string()))
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop_control.take() {
            let _ = s.send(());
        }
        if let Some(s) = self.stop_swarm.take() {
            let _ = s.send(());
        }
    }
}

impl Client {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    pub fn network_id(&self) -> NetworkId {
        self.shared.network
    }

    /// Verify, durably store, then gossip a signed record.
    /// A refused record goes to the refusal log ([`Client::refusals`]).
    pub async fn submit(&self, bytes: &[u8]) -> Result<Submitted, SubmitError> {
        let record = self.shared.verify_or_refuse(Origin::new(Source::Control, None), bytes)?;
        if self.shared.contains(&record.id) {
            return Ok(Submitted { id: record.id, new: false, pooled: false, gossiped: None });
        }
        let origin = Origin::new(Source::Control, None);
        let out = self.shared.insert(std::slice::from_ref(&record), origin)?;
        if let Some(r) = out.refused.into_iter().next() {
            return Err(SubmitError::NotStored { reason: r.reason, message: r.message });
        }
        let pooled = !out.pooled.is_empty();
        if out.known > 0 {
            return Ok(Submitted { id: record.id, new: false, pooled: true, gossiped: None });
        }
        tracing::info!(target: "medmesh::audit", id = %record.id.short(), kind = record.kind(), signer = %record.signer.short(), pooled, "record accepted from a client");
        let gossiped = self.publish_unchecked(record.bytes.to_vec()).await.ok();
        Ok(Submitted { id: record.id, new: true, pooled, gossiped })
    }

    /// Verify many records as a batch and store the valid ones in one transaction
    /// (imports from a file or another store). Returns (stored, rejected). Not
    /// gossiped: peers receive them through sync. Refused records go to the
    /// refusal log.
    pub async fn import(&self, records: Vec<Vec<u8>>) -> Result<(u64, u64), StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.ingest_batch(records, Origin::new(Source::Import, None))
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("import task failed: {e}")))?
    }

    /// Gossip bytes without checking or storing them. For tests of hostile peers
    /// only: honest code submits with [`Client::submit`].
    #[doc(hidden)]
    pub async fn publish_unchecked(&self, bytes: Vec<u8>) -> Result<Gossiped, Stopped> {
        self.ask(|reply| Command::Publish { bytes, reply }).await
    }

    /// Store and index records as given, without verifying them, so that this
    /// node serves them to sync like any record it holds. For tests of hostile
    /// peers only (a peer whose store holds what honest nodes refuse): honest code
    /// stores through [`Client::submit`] and [`Client::import`].
    #[doc(hidden)]
    pub fn store_unchecked(&self, records: Vec<Record>) -> Result<u64, StoreError> {
        self.shared.insert_unchecked(records)
    }

    /// Join requests from keys not admitted yet, newest first (the pool).
    pub fn join_requests(&self) -> Vec<crate::admission::PendingJoin> {
        self.shared.join_requests()
    }

    /// Everything `GET /metrics` shows.
    pub async fn metrics(&self) -> Result<crate::metrics::Snapshot, Stopped> {
        use std::sync::atomic::Ordering::Relaxed;
        let peers = self.peers().await?;
        let sync = self.sync_status().await?;
        let refusals = self.refusals();
        let admission = self.admission_status();
        let (records_by_kind, fold_runs, fold_micros, store_file_bytes) =
            self.shared.replica_metrics();
        let c = &self.shared.counters;
        let mut blobs = (0, 0, 0, 0);
        for b in self.blobs.store.list().unwrap_or_default() {
            if b.complete {
                blobs.0 += 1;
                blobs.1 += b.size;
            } else {
                blobs.2 += 1;
                blobs.3 += b.size;
            }
        }
        let fetches = self.blobs.all_progress();
        let blob_fetches = ["fetching", "done", "failed"]
            .into_iter()
            .map(|state| (state, fetches.iter().filter(|f| f.state == state).count() as u64))
            .collect();
        let blob_fetched_bytes = fetches.iter().map(|f| f.have).sum();
        let blob_pieces = self
            .blobs
            .scores()
            .values()
            .fold((0, 0, 0), |acc, s| (acc.0 + s.pieces, acc.1 + s.corrupt, acc.2 + s.failed));
        let sc = &self.blobs.serve_counts;
        let blob_served = (
            sc.served.load(Relaxed),
            sc.busy.load(Relaxed),
            sc.over_budget.load(Relaxed),
            sc.repeated_piece.load(Relaxed),
        );
        Ok(crate::metrics::Snapshot {
            blob_served,
            records_by_kind,
            peers: peers.len() as u64,
            mesh_peers: peers.iter().filter(|p| p.mesh).count() as u64,
            gossip_accepted: c.gossip_accepted.load(Relaxed),
            gossip_ignored: c.gossip_ignored.load(Relaxed),
            gossip_rejected: c.gossip_rejected.load(Relaxed),
            gossip_published: c.gossip_published.load(Relaxed),
            gossip_copies: c.gossip_copies.load(Relaxed),
            gossip_validation_seconds: c.gossip_validation_nanos.load(Relaxed) as f64 / 1e9,
            refusals_by_reason: refusals.counts.into_iter().collect(),
            held_total: refusals.held_total,
            sync_completed: sync.completed,
            sync_failed: sync.failed,
            sync_in_progress: sync.in_progress.len() as u64,
            sync_stored: sync.stored,
            sync_rejected: sync.rejected,
            sync_unrequested: sync.unrequested,
            sync_refused_requests: sync.refused_requests,
            fold_runs,
            fold_seconds: fold_micros as f64 / 1e6,
            store_file_bytes,
            store_record_bytes: admission.store_bytes,
            pool_requests: admission.pool_requests,
            deferred_ids: admission.deferred_ids,
            admitted_keys: admission.admitted_keys,
            blobs,
            blob_fetches,
            blob_fetched_bytes,
            blob_pieces,
            blob_quota_bytes: self.blobs.store.quota(),
        })
    }

    /// Admission mode, pool and quota figures.
    pub fn admission_status(&self) -> crate::admission::AdmissionStatus {
        self.shared.admission_status()
    }

    /// Add a blob from a reader (pinned: the user published or needs it).
    pub async fn blob_add(
        &self,
        from: impl std::io::Read + Send + 'static,
        pin: bool,
    ) -> Result<BlobInfo, BlobError> {
        let store = self.blobs.store.clone();
        let info = tokio::task::spawn_blocking(move || store.add(from, pin))
            .await
            .map_err(|e| BlobError::Index(format!("blob task failed: {e}")))??;
        let _ = self.commands.send(Command::BlobProvide { hash: info.hash }).await;
        Ok(info)
    }

    /// Start fetching a blob of the declared size from peers (or join the fetch
    /// running); the receiver follows its progress.
    pub fn blob_fetch(
        &self,
        hash: Hash32,
        size: u64,
        pin: bool,
    ) -> tokio::sync::watch::Receiver<FetchProgress> {
        crate::blobs::start(self.blobs.clone(), self.clone(), hash, size, pin)
    }

    /// Fetch a blob and wait until it is complete (or the fetch failed).
    pub async fn blob_fetch_wait(
        &self,
        hash: Hash32,
        size: u64,
        pin: bool,
    ) -> Result<BlobInfo, String> {
        let mut rx = self.blob_fetch(hash, size, pin);
        let end = rx
            .wait_for(|p| p.state != "fetching")
            .await
            .map_err(|_| "the node stopped".to_string())?
            .clone();
        match end.error {
            Some(e) => Err(e),
            None => self.blob_info(&hash).ok().flatten().ok_or_else(|| "blob vanished".into()),
        }
    }

    /// The index entry of a blob.
    pub fn blob_info(&self, hash: &Hash32) -> Result<Option<BlobInfo>, BlobError> {
        self.blobs.store.info(hash)
    }

    /// Bytes of a blob received and verified.
    pub fn blob_have(&self, info: &BlobInfo) -> Result<u64, BlobError> {
        self.blobs.store.have_bytes(info)
    }

    /// The progress of the latest fetch of a blob since start.
    pub fn blob_progress(&self, hash: &Hash32) -> Option<FetchProgress> {
        self.blobs.progress(hash)
    }

    /// Every blob, every fetch since start, the peers' blob scores, and the quota.
    pub fn blob_overview(&self) -> Result<crate::blobs::BlobOverview, BlobError> {
        Ok(crate::blobs::BlobOverview {
            blobs: self.blobs.store.list()?,
            fetches: self.blobs.all_progress(),
            peers: self.blobs.scores(),
            quota: self.blobs.store.quota(),
        })
    }

    /// Set or clear a blob's pin.
    pub fn blob_pin(&self, hash: &Hash32, pinned: bool) -> Result<BlobInfo, BlobError> {
        self.blobs.store.pin(hash, pinned)
    }

    /// Open a complete blob for reading: the file and its size.
    pub fn blob_read(&self, hash: &Hash32) -> Result<(std::fs::File, u64), BlobError> {
        self.blobs.store.read(hash)
    }

    /// Remove every blob neither pinned nor named by a counting record.
    pub fn blob_gc(&self) -> Result<Vec<BlobInfo>, BlobError> {
        let referenced = crate::blobs::referenced(&self.shared.state());
        self.blobs.store.gc(&referenced)
    }

    /// Announce the complete blobs and resume unfinished fetches (at start).
    async fn resume_blobs(&self) {
        let Ok(list) = self.blobs.store.list() else { return };
        for b in list {
            if b.complete {
                let _ = self.commands.send(Command::BlobProvide { hash: b.hash }).await;
            } else {
                info!(hash = %b.hash.short(), size = b.size, "resuming an unfinished blob fetch");
                drop(self.blob_fetch(b.hash, b.size, b.pinned));
            }
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    pub fn contains(&self, id: &RecordId) -> bool {
        self.shared.contains(id)
    }

    /// How many records the node holds.
    pub fn len(&self) -> u64 {
        self.shared.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exact bytes of a record.
    pub fn record(&self, id: &RecordId) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.get(id)
    }

    /// Held record ids in id order, after `after`, at most `limit`.
    pub fn record_ids(
        &self,
        after: Option<&RecordId>,
        limit: u64,
    ) -> Result<Vec<RecordId>, StoreError> {
        self.shared.ids(after, limit)
    }

    /// The records this node refused recently (gossip, sync, submissions, imports),
    /// the count per reason since start, and those held by the rate limit. Valid
    /// records without effect are in the state's `ignored` list instead.
    pub fn refusals(&self) -> Refusals {
        self.shared.refusals()
    }

    /// The derived state (cached; folded again only after new records).
    pub fn state(&self) -> Arc<State> {
        self.shared.state()
    }

    /// The indexes of the paged views over the derived state (cached with it).
    pub fn views(&self) -> Arc<crate::views::Views> {
        self.shared.views()
    }

    pub fn state_hash(&self) -> Hash32 {
        self.shared.state_hash()
    }

    /// The highest seq held for `signer` and its id (where a signer resumes its chain).
    pub fn head(&self, signer: &PublicKey) -> Option<(u64, RecordId)> {
        self.shared.head(signer)
    }

    /// Ids of records as they are stored (gossip, sync or submit).
    pub fn stored_events(&self) -> broadcast::Receiver<RecordId> {
        self.shared.stored.subscribe()
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Stopped> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    pub async fn sync_status(&self) -> Result<SyncStatus, Stopped> {
        self.ask(|reply| Command::SyncStatus { reply }).await
    }

    /// Start a sync session with every connected peer (those not already syncing);
    /// returns how many started.
    pub async fn sync_now(&self) -> Result<u64, Stopped> {
        self.ask(|reply| Command::SyncNow { reply }).await
    }

    /// Dial a peer (`.../p2p/<peer id>` dials by id).
    pub async fn dial(&self, addr: Multiaddr) -> Result<Result<(), String>, Stopped> {
        self.ask(|reply| Command::Dial { addr, reply }).await
    }

    /// Refuse (or allow again) connections with a peer; blocking closes open ones.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), Stopped> {
        self.ask(|reply| Command::Block { peer, blocked, reply }).await
    }

    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Stopped> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }
}

/// The swarm a node with `config` runs (its timers, shaping and gossip tuning).
pub(crate) fn build_swarm(
    key: libp2p::identity::Keypair,
    network: &NetworkId,
    config: &NodeConfig,
    gossip_copies: Arc<std::sync::atomic::AtomicU64>,
) -> Result<Swarm<Behaviour>, StartError> {
    let network = *network;
    let shaping = config.shaping.clone();
    let dilation = config.time_dilation.max(1);
    let behaviour = {
        let config = config.clone();
        move |key: &libp2p::identity::Keypair| {
            swarm::build_behaviour(key, &network, &config, gossip_copies.clone())
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
        }
    };
    let idle = Duration::from_millis(swarm::IDLE_CONNECTION_TIMEOUT_MS) * dilation;
    let builder = libp2p::SwarmBuilder::with_existing_identity(key).with_tokio();
    let swarm = match shaping {
        None => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| StartError::Swarm(e.to_string()))?
            .with_quic()
            .with_behaviour(behaviour)
            .map_err(|e| StartError::Swarm(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        // The same TCP, noise and yamux, with every stream shaped below noise.
        Some(shaping) => builder
            .with_other_transport(|key| {
                use libp2p::Transport;
                let noise = noise::Config::new(key)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .map(move |s, _| crate::netem::Shaped::new(s, shaping.clone()))
                        .upgrade(libp2p::core::upgrade::Version::V1)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default()),
                )
            })
            .map_err(|e| StartError::Swarm(e.to_string()))?
            .with_behaviour(behaviour)
            .map_err(|e| StartError::Swarm(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };
    Ok(swarm)
}

/// Whether a listen address is on loopback (then loopback peers are worth
/// remembering: this node is on a test or single-host network).
fn is_loopback(addr: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    matches!(addr.iter().next(), Some(Protocol::Ip4(ip)) if ip.is_loopback())
        || matches!(addr.iter().next(), Some(Protocol::Ip6(ip)) if ip.is_loopback())
}

/// Listen on every address and wait until each reports where it listens.
async fn listen_all(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<Vec<Multiaddr>, StartError> {
    use futures_util::StreamExt;
    use libp2p::swarm::SwarmEvent;
    let mut pending = std::collections::HashMap::new();
    for addr in addrs {
        probe_port(addr).map_err(|reason| StartError::Listen { addr: addr.to_string(), reason })?;
        let id = swarm.listen_on(addr.clone()).map_err(|e| StartError::Listen {
            addr: addr.to_string(),
            reason: listen_reason(&e),
        })?;
        pending.insert(id, addr.clone());
    }
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(LISTEN_TIMEOUT_MS);
    while !pending.is_empty() {
        let event =
            tokio::time::timeout_at(deadline, swarm.select_next_some()).await.map_err(|_| {
                StartError::Listen {
                    addr: format!("{:?}", pending.values().collect::<Vec<_>>()),
                    reason: "no listen address reported in time".into(),
                }
            })?;
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                out.push(address);
                pending.remove(&listener_id);
            }
            SwarmEvent::ListenerError { listener_id, error }
            | SwarmEvent::ListenerClosed { listener_id, reason: Err(error), .. } => {
                let addr = pending.get(&listener_id).map(|a| a.to_string()).unwrap_or_default();
                return Err(StartError::Listen { addr, reason: error.to_string() });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// libp2p binds with SO_REUSEPORT, so a port another process holds would be
/// shared silently; bind a plain socket first to find out.
fn probe_port(addr: &Multiaddr) -> Result<(), String> {
    use libp2p::multiaddr::Protocol;
    let mut it = addr.iter();
    let ip: std::net::IpAddr = match it.next() {
        Some(Protocol::Ip4(ip)) => ip.into(),
        Some(Protocol::Ip6(ip)) => ip.into(),
        _ => return Ok(()),
    };
    let r = match it.next() {
        Some(Protocol::Tcp(port)) if port != 0 => std::net::TcpListener::bind((ip, port)).map(drop),
        Some(Protocol::Udp(port)) if port != 0 => std::net::UdpSocket::bind((ip, port)).map(drop),
        _ => Ok(()),
    };
    r.map_err(|e| e.to_string())
}

fn listen_reason<T: std::fmt::Debug>(e: &libp2p::TransportError<T>) -> String {
    match e {
        libp2p::TransportError::MultiaddrNotSupported(a) => format!(
            "address {a} is not supported (use /ip4/<ip>/tcp/<port> or /ip4/<ip>/udp/<port>/quic-v1)"
        ),
        libp2p::TransportError::Other(o) => format!("{o:?}"),
    }
}

/// Create `dir` (owner-only on unix) if missing.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Write a new owner-only file; fails if it exists.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Refuse a secret file that others can read.
pub(crate) fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(|e| e.to_string())?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!("is readable by others (mode {:o}); run chmod 600", mode & 0o777));
        }
    }
    Ok(())
}

fn load_or_create_peer_key(path: &Path) -> Result<libp2p::identity::Keypair, StartError> {
    let err = |reason: String| StartError::PeerKey { path: path.to_path_buf(), reason };
    match std::fs::read(path) {
        Ok(bytes) => {
            check_private(path).map_err(err)?;
            libp2p::identity::Keypair::from_protobuf_encoding(&bytes)
                .map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = libp2p::identity::Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            write_private_file(path, &bytes).map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

impl crate::blobs::Net for Client {
    async fn request(&self, peer: PeerId, request: BlobRequest) -> Result<BlobResponse, String> {
        self.ask(|reply| Command::BlobRequest { peer, request, reply })
            .await
            .map_err(|_| "the node stopped".to_string())?
    }

    async fn candidates(&self, hash: Hash32) -> Vec<PeerId> {
        let wait = Duration::from_millis(crate::blobs::PROVIDERS_WAIT_MS);
        match tokio::time::timeout(wait, self.ask(|reply| Command::BlobCandidates { hash, reply }))
            .await
        {
            Ok(Ok(peers)) => peers,
            _ => self
                .peers()
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|p| p.peer_id.parse().ok())
                .collect(),
        }
    }

    async fn provide(&self, hash: Hash32) {
        let _ = self.commands.send(Command::BlobProvide { hash }).await;
    }
}
