//! The libp2p swarm and the one task that owns it.
//!
//! Behaviours: gossipsub (live push of records on the network's topic, manual
//! validation, peer scoring), Kademlia (discovery, seeded by bootstrap peers),
//! identify, request-response sync ([`crate::sync`]), ping, and a block list.
//! Everyone else talks to the task through [`Command`]s with oneshot replies.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, ValidationMode,
};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, connection_limits, identify, kad,
    ping,
};
use protocol::limits::ENVELOPE_BYTES_MAX;
use protocol::{Hash32, Record, RecordId};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::Shared;
use crate::blobs::{BlobRequest, BlobResponse, Blobs};
use crate::refusals::{Origin, Source};
use crate::serve::{self, Budget, Job, Served};
use crate::sync::{
    FETCH_PAGE_RECORDS, Initiator, ROUNDS_MAX, SketchInitiator, SketchStep, SyncRequest,
    SyncResponse,
};

/// Largest gossipsub message: one envelope plus framing.
pub const GOSSIP_MESSAGE_BYTES_MAX: usize = ENVELOPE_BYTES_MAX + 8 * 1024;
/// Fetch requests (and pages being verified) in flight per sync session.
pub const SYNC_PIPELINE_PAGES_MAX: usize = 8;
/// Timeout for one sync request (the default of
/// [`crate::NodeConfig::sync_request_timeout`]).
pub const SYNC_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Sync sessions this node runs at once (at most one per peer); a peer that
/// connects while this many run is synced with later, in its periodic turn.
pub const SYNC_SESSIONS_MAX: usize = 16;
/// A peer that returned records it was not asked for is not synced from for this
/// long (it is still served, and its gossip still counts).
pub const SYNC_OFFENDER_BACKOFF_MS: u64 = 60_000;
/// Peers remembered as sync offenders at once (the oldest are forgotten first).
pub const SYNC_OFFENDERS_MAX: usize = 1024;
/// Established connections, in and out, in total.
pub const CONNECTIONS_ESTABLISHED_MAX: u32 = 256;
/// Established connections with one peer (a dial race with Kademlia, TCP and
/// QUIC both, and a redial can each add one).
pub const CONNECTIONS_PER_PEER_MAX: u32 = 4;
/// Incoming connections still in their handshake.
pub const CONNECTIONS_PENDING_INCOMING_MAX: u32 = 64;
/// Connections kept open without traffic.
pub const IDLE_CONNECTION_TIMEOUT_MS: u64 = 600_000;
/// How often a connection is pinged (the default of [`crate::NodeConfig::ping_interval`]).
pub const PING_INTERVAL_MS: u64 = 5_000;
/// A ping unanswered this long fails, and a failure closes the connection.
/// libp2p forgives the first failure and the next ping waits on its new stream's
/// 10 s negotiation timeout, so a vanished peer (cut cable, paused container) is
/// dropped within about 30 s. The default of [`crate::NodeConfig::ping_timeout`].
pub const PING_TIMEOUT_MS: u64 = 10_000;
/// Peers the node dials on its own once discovered through Kademlia.
pub const DISCOVERED_PEERS_TARGET: usize = 12;
/// Peers kept connected: beyond this many, the maintenance tick closes the
/// connections this node dialled to peers outside the gossip mesh that are not
/// bootstrap peers and have nothing running with this node (a sync session, a
/// blob), oldest first, once they are [`CONNECTION_GRACE_MS`] old. Connections
/// peers dialled are theirs to close (they may be redialling a bootstrap peer). Kademlia's queries
/// connect to many peers (at 100 nodes, to every one), and those connections
/// would otherwise stay until the idle timeout: about 110 KiB of memory each,
/// pings, and a sync session each time one opens.
pub const CONNECTED_PEERS_KEPT: usize = 2 * DISCOVERED_PEERS_TARGET;
/// A connection younger than this is not closed for being one too many (its
/// Kademlia query, its gossipsub graft may be under way).
pub const CONNECTION_GRACE_MS: u64 = 10_000;
/// How often Kademlia re-bootstraps while the node has fewer than
/// [`DISCOVERED_PEERS_TARGET`] peers.
pub const KAD_BOOTSTRAP_INTERVAL_MS: u64 = 60_000;
/// Sync sessions finished and kept for the status view.
pub const SYNC_HISTORY_LEN: usize = 32;
/// Gossip records being verified and stored at once; beyond this, new ones are
/// ignored (not penalised) and arrive later through sync.
pub const GOSSIP_VALIDATIONS_MAX: usize = 256;
/// Gossipsub's heartbeat (mesh maintenance, IHAVE gossip).
pub const GOSSIP_HEARTBEAT_MS: u64 = 700;
/// The first heartbeat after start (gossipsub's default is 5 s, which delays
/// the first mesh of a node that has just connected).
pub const GOSSIP_HEARTBEAT_INITIAL_DELAY_MS: u64 = 5_000;
/// Score penalty weight for one invalid record delivered on gossip.
pub const INVALID_RECORD_SCORE_WEIGHT: f64 = -100.0;

/// Gossipsub's mesh and gossip parameters ([`crate::NodeConfig::gossip`]). The
/// defaults are the ones chosen with the simulation (`medmesh-sim`; the reasons
/// are in ARCHITECTURE.md, decisions); other values are for the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GossipTuning {
    /// Mesh peers a node aims for (D).
    pub mesh_n: u8,
    /// Below this many mesh peers, the heartbeat grafts more (D_lo).
    pub mesh_n_low: u8,
    /// Above this many, it prunes (D_hi).
    pub mesh_n_high: u8,
    /// Peers outside the mesh told of recent messages (IHAVE) each heartbeat.
    pub gossip_lazy: u8,
    /// A node's own records go to every peer on the topic, not only its mesh.
    pub flood_publish: bool,
    /// Messages at least this large are announced with IDONTWANT before they
    /// are forwarded, so that mesh peers do not send them back.
    pub idontwant_bytes: u32,
}

impl Default for GossipTuning {
    fn default() -> Self {
        GossipTuning {
            mesh_n: 6,
            mesh_n_low: 5,
            mesh_n_high: 12,
            gossip_lazy: 6,
            flood_publish: true,
            idontwant_bytes: 1000,
        }
    }
}

const KAD_PROTOCOL: &str = "/medmesh/kad/1.0.0";
const IDENTIFY_PROTOCOL: &str = "/medmesh/id/1";

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // The two that may deny a connection come first: the derived behaviour asks
    // its fields in order, and one asked before a denial has already recorded
    // the connection and never hears that it closed (request-response then
    // keeps a stale entry and, in debug builds, asserts when the peer's last
    // real connection closes: the 30-node smoke's partition hit it).
    limits: connection_limits::Behaviour,
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) gossipsub: gossipsub::Behaviour<CountCopies>,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
    sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    blobs: request_response::cbor::Behaviour<BlobRequest, BlobResponse>,
    ping: ping::Behaviour,
}

/// Gossipsub's data transform, which leaves messages as they are and counts
/// every copy received (it runs before the duplicate filter), so that duplicate
/// deliveries are counted exactly (`medmesh_gossip_copies_received_total`).
pub(crate) struct CountCopies(Arc<AtomicU64>);

impl gossipsub::DataTransform for CountCopies {
    fn inbound_transform(
        &self,
        raw: gossipsub::RawMessage,
    ) -> Result<gossipsub::Message, std::io::Error> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(gossipsub::Message {
            source: raw.source,
            data: raw.data,
            sequence_number: raw.sequence_number,
            topic: raw.topic,
        })
    }

    fn outbound_transform(
        &self,
        _topic: &gossipsub::TopicHash,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, std::io::Error> {
        Ok(data)
    }
}

/// The gossip topic of a network.
pub(crate) fn topic(network: &protocol::NetworkId) -> IdentTopic {
    IdentTopic::new(format!("medmesh/records/{}", network.to_hex()))
}

pub(crate) fn build_behaviour(
    key: &libp2p::identity::Keypair,
    network: &protocol::NetworkId,
    node: &crate::NodeConfig,
    copies: Arc<AtomicU64>,
) -> Result<Behaviour, String> {
    let peer_id = key.public().to_peer_id();
    let tuning = node.gossip;
    // Every timer below is `time_dilation` times longer (1 on a real node).
    let k = node.time_dilation.max(1);
    let ms = |ms: u64| Duration::from_millis(ms) * k;
    let outbound_min = 2.min(tuning.mesh_n_low as usize).min(tuning.mesh_n as usize / 2);
    let config = gossipsub::ConfigBuilder::default()
        .mesh_n(tuning.mesh_n as usize)
        .mesh_n_low(tuning.mesh_n_low as usize)
        .mesh_n_high(tuning.mesh_n_high as usize)
        .mesh_outbound_min(outbound_min)
        .gossip_lazy(tuning.gossip_lazy as usize)
        .flood_publish(tuning.flood_publish)
        .idontwant_message_size_threshold(tuning.idontwant_bytes as usize)
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(GOSSIP_MESSAGE_BYTES_MAX)
        .heartbeat_interval(ms(GOSSIP_HEARTBEAT_MS))
        .heartbeat_initial_delay(ms(GOSSIP_HEARTBEAT_INITIAL_DELAY_MS))
        .fanout_ttl(ms(60_000))
        .duplicate_cache_time(ms(60_000))
        .prune_backoff(ms(60_000))
        .unsubscribe_backoff(ms(10_000))
        .graft_flood_threshold(ms(10_000))
        .iwant_followup_time(ms(3_000))
        .publish_queue_duration(ms(5_000))
        .forward_queue_duration(ms(1_000))
        .message_id_fn(|m: &gossipsub::Message| {
            MessageId::from(Hash32::of(&m.data).as_bytes().to_vec())
        })
        .build()
        .map_err(|e| e.to_string())?;
    let mut gossipsub = gossipsub::Behaviour::new_with_transform(
        MessageAuthenticity::Anonymous,
        config,
        CountCopies(copies),
    )?;
    let params = gossipsub::PeerScoreParams {
        // Many honest nodes share an address on loopback, in a hospital behind one
        // NAT, or in a lab; co-location says nothing about honesty here.
        ip_colocation_factor_weight: 0.0,
        decay_interval: ms(1_000),
        retain_score: ms(3_600_000),
        ..Default::default()
    };
    gossipsub.with_peer_score(params, gossipsub::PeerScoreThresholds::default())?;
    let t = topic(network);
    let topic_params = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: ms(1_000),
        time_in_mesh_cap: 10.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.5,
        first_message_deliveries_cap: 10.0,
        // Records are rare: a quiet mesh is not a faulty one.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_RECORD_SCORE_WEIGHT,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    };
    gossipsub.set_topic_params(t.clone(), topic_params)?;
    gossipsub.subscribe(&t).map_err(|e| e.to_string())?;

    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(ms(60_000));
    // No periodic bootstrap of Kademlia's own: the swarm task bootstraps on its
    // tick while the node has fewer than DISCOVERED_PEERS_TARGET peers. A
    // bootstrap refreshes every bucket and so connects to a few peers per
    // bucket (at 100 nodes, to all of them), which a settled node does not need.
    kad_config.set_periodic_bootstrap_interval(None);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public()).with_interval(ms(300_000)),
    );
    let sync = request_response::cbor::Behaviour::new(
        [
            (StreamProtocol::new(crate::sync::PROTOCOL), ProtocolSupport::Full),
            (StreamProtocol::new(crate::sync::PROTOCOL_V2), ProtocolSupport::Full),
        ],
        request_response::Config::default().with_request_timeout(node.sync_request_timeout * k),
    );
    let blobs = request_response::Behaviour::with_codec(
        request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(crate::blobs::BLOB_REQUEST_BYTES_MAX)
            .set_response_size_maximum(crate::blobs::BLOB_RESPONSE_BYTES_MAX),
        [(StreamProtocol::new(crate::blobs::PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(node.blob_request_timeout * k)
            .with_max_concurrent_streams(crate::blobs::FETCH_PEERS_MAX * 8),
    );
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established(Some(CONNECTIONS_ESTABLISHED_MAX))
            .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX))
            .with_max_pending_incoming(Some(CONNECTIONS_PENDING_INCOMING_MAX)),
    );
    Ok(Behaviour {
        limits,
        gossipsub,
        kad,
        identify,
        sync,
        blobs,
        ping: ping::Behaviour::new(
            ping::Config::new()
                .with_interval(node.ping_interval * k)
                .with_timeout(node.ping_timeout * k),
        ),
        blocked: Default::default(),
    })
}

/// A connected peer as the node sees it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub addresses: Vec<String>,
    /// Gossipsub score (negative after invalid records).
    pub score: Option<f64>,
    /// In our gossip mesh for the network topic.
    pub mesh: bool,
    /// Subscribed to the network topic (receives what we publish).
    pub subscribed: bool,
}

/// One finished sync session.
#[derive(Clone, Debug, Serialize)]
pub struct SyncSession {
    pub peer_id: String,
    /// How the difference was found: "riblt" (coded symbols), or "negentropy"
    /// when the symbols did not decode it.
    pub method: &'static str,
    /// Round trips of reconciliation (both methods).
    pub rounds: u32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Ids the peer had and we lacked.
    pub needed: u64,
    /// Ids we had and the peer lacked.
    pub offered: u64,
    pub fetched: u64,
    pub stored: u64,
    pub rejected: u64,
    /// Records the peer returned without being asked for them (dropped).
    pub unrequested: u64,
    /// Ids the peer claimed beyond [`crate::sync::SESSION_IDS_MAX`] in the round
    /// that filled the session, left to the next session (it may hold more).
    pub left: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// Catch-up sync status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncStatus {
    pub records: u64,
    /// Records stored through sync since the node started.
    pub stored: u64,
    /// Records fetched through sync that failed verification.
    pub rejected: u64,
    /// Records sync peers returned without being asked for them (dropped).
    pub unrequested: u64,
    /// Sync requests from peers refused (over their budget, or the queue full).
    pub refused_requests: u64,
    pub in_progress: Vec<String>,
    pub completed: u64,
    pub failed: u64,
    pub recent: Vec<SyncSession>,
}

/// What happened to a record handed to gossip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Gossiped {
    /// Sent to at least one peer.
    Sent,
    /// No peer on the topic yet: stored; sync will deliver it.
    NoPeers,
    /// Gossip refused it (duplicate message or transient error): stored anyway.
    NotSent,
}

pub(crate) enum Command {
    Publish {
        bytes: Vec<u8>,
        reply: oneshot::Sender<Gossiped>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    SyncStatus {
        reply: oneshot::Sender<SyncStatus>,
    },
    SyncNow {
        reply: oneshot::Sender<u64>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Block {
        peer: PeerId,
        blocked: bool,
        reply: oneshot::Sender<()>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    /// Send a blob request to a peer.
    BlobRequest {
        peer: PeerId,
        request: BlobRequest,
        reply: oneshot::Sender<Result<BlobResponse, String>>,
    },
    /// Peers that may hold a blob: the connected ones and Kademlia's providers.
    BlobCandidates {
        hash: Hash32,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    /// Announce this node as a provider of a blob.
    BlobProvide {
        hash: Hash32,
    },
}

/// A Kademlia provider lookup for a fetch.
struct ProviderQuery {
    reply: oneshot::Sender<Vec<PeerId>>,
    found: Vec<PeerId>,
}

enum Phase {
    Sketching(Box<SketchInitiator>),
    Reconciling(Box<Initiator>),
    Fetching,
}

struct Session {
    phase: Phase,
    started: Instant,
    queue: VecDeque<RecordId>,
    in_flight: usize,
    ingesting: usize,
    /// Reconciliation stopped at [`crate::sync::SESSION_IDS_MAX`] ids.
    full: bool,
    report: SyncSession,
}

/// A sync request this node sent.
struct Outbound {
    /// For a fetch, the ids it asked for: a record returned that is not one of
    /// them is dropped.
    asked: Option<HashSet<RecordId>>,
}

struct IngestDone {
    peer: PeerId,
    fetched: u64,
    stored: u64,
    rejected: u64,
    unrequested: u64,
    error: Option<String>,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    topic: IdentTopic,
    commands: mpsc::Receiver<Command>,
    shutdown: oneshot::Receiver<()>,
    sessions: HashMap<PeerId, Session>,
    requests: HashMap<OutboundRequestId, Outbound>,
    /// Inbound sync requests to the serving worker, and its answers.
    serve_tx: mpsc::Sender<Job>,
    served_rx: mpsc::Receiver<Served>,
    serve_budget: Budget,
    /// Peers that returned records they were not asked for, and when.
    offenders: HashMap<PeerId, Instant>,
    ingest_tx: mpsc::Sender<IngestDone>,
    ingest_rx: mpsc::Receiver<IngestDone>,
    verdict_tx: mpsc::Sender<(MessageId, PeerId, MessageAcceptance)>,
    verdict_rx: mpsc::Receiver<(MessageId, PeerId, MessageAcceptance)>,
    validating: usize,
    addresses: HashMap<PeerId, HashSet<Multiaddr>>,
    listen: Vec<Multiaddr>,
    sync_interval: Duration,
    /// [`crate::NodeConfig::time_dilation`]: the ticks below are this much longer.
    time_dilation: u32,
    /// When each connected peer's first connection was established, and
    /// whether this node dialled it.
    connected_since: HashMap<PeerId, (Instant, bool)>,
    next_peer: usize,
    /// Held-back gossip records already answered with a catch-up sync.
    held_seen: u64,
    status: SyncStatus,
    signer_limit: Arc<std::sync::Mutex<crate::ratelimit::SignerLimiter>>,
    /// Join requests from keys not admitted are forwarded at a bounded rate.
    join_forward: Arc<std::sync::Mutex<crate::admission::ForwardBudget>>,
    /// The address book and the redial schedule.
    peers: crate::peers::Peers,
    /// The blob store, its fetches and its serving limit.
    blobs: Arc<Blobs>,
    blob_requests: HashMap<OutboundRequestId, oneshot::Sender<Result<BlobResponse, String>>>,
    provider_queries: HashMap<kad::QueryId, ProviderQuery>,
    /// Pieces being served, per peer.
    blob_serving: HashMap<PeerId, usize>,
    blob_served_tx: mpsc::Sender<(PeerId, ResponseChannel<BlobResponse>, BlobResponse)>,
    blob_served_rx: mpsc::Receiver<(PeerId, ResponseChannel<BlobResponse>, BlobResponse)>,
    /// Each peer's serving budget (bytes and repeated pieces per window).
    blob_budget: crate::blobs::ServeBudget,
}

impl EventLoop {
    // Each is a distinct part the task owns; a struct of them would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        shutdown: oneshot::Receiver<()>,
        listen: Vec<Multiaddr>,
        sync_interval: Duration,
        time_dilation: u32,
        peers: crate::peers::Peers,
        blobs: Arc<Blobs>,
    ) -> Self {
        let (ingest_tx, ingest_rx) = mpsc::channel(64);
        let (verdict_tx, verdict_rx) = mpsc::channel(GOSSIP_VALIDATIONS_MAX);
        let (serve_tx, serve_rx) = mpsc::channel(serve::SERVE_QUEUE_LEN);
        let (served_tx, served_rx) =
            mpsc::channel(serve::SERVE_QUEUE_LEN + serve::SERVE_CONCURRENT_MAX);
        serve::spawn_worker(shared.clone(), serve_rx, served_tx);
        let topic = topic(&shared.network);
        let (blob_served_tx, blob_served_rx) =
            mpsc::channel(crate::blobs::BLOB_SERVE_CONCURRENT_MAX * 2);
        EventLoop {
            swarm,
            shared,
            topic,
            commands,
            shutdown,
            sessions: HashMap::new(),
            requests: HashMap::new(),
            serve_tx,
            served_rx,
            serve_budget: Budget::default(),
            offenders: HashMap::new(),
            ingest_tx,
            ingest_rx,
            verdict_tx,
            verdict_rx,
            validating: 0,
            addresses: HashMap::new(),
            listen,
            sync_interval,
            time_dilation: time_dilation.max(1),
            connected_since: HashMap::new(),
            next_peer: 0,
            held_seen: 0,
            status: SyncStatus::default(),
            signer_limit: Default::default(),
            join_forward: Default::default(),
            peers,
            blobs: blobs.clone(),
            blob_requests: HashMap::new(),
            provider_queries: HashMap::new(),
            blob_serving: HashMap::new(),
            blob_budget: crate::blobs::ServeBudget::new(
                Duration::from_millis(crate::blobs::BLOB_SERVE_WINDOW_MS),
                blobs.serve_peer_bytes,
            ),
            blob_served_tx,
            blob_served_rx,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut sync_tick = tokio::time::interval(self.sync_interval);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let k = self.time_dilation;
        let mut kad_tick =
            tokio::time::interval(Duration::from_millis(KAD_BOOTSTRAP_INTERVAL_MS) * k);
        kad_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintenance_tick =
            tokio::time::interval(Duration::from_millis(crate::peers::MAINTENANCE_INTERVAL_MS) * k);
        maintenance_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut at_start = true;
        loop {
            tokio::select! {
                _ = &mut self.shutdown => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                Some(done) = self.ingest_rx.recv() => self.on_ingested(done),
                Some(served) = self.served_rx.recv() => self.on_served(served),
                Some((peer, channel, response)) = self.blob_served_rx.recv() => {
                    if let Some(n) = self.blob_serving.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.blob_serving.remove(&peer);
                        }
                    }
                    if self.swarm.behaviour_mut().blobs.send_response(channel, response).is_err() {
                        debug!(%peer, "blob response not sent: peer gone");
                    }
                }
                Some((id, from, verdict)) = self.verdict_rx.recv() => {
                    self.validating = self.validating.saturating_sub(1);
                    self.shared.counters.gossip_verdict(&verdict);
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &from, verdict);
                }
                _ = sync_tick.tick() => {
                    self.periodic_sync();
                }
                _ = kad_tick.tick() => {
                    if self.peers.has_seeds()
                        && self.swarm.connected_peers().count() < DISCOVERED_PEERS_TARGET
                    {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
                _ = maintenance_tick.tick() => self.maintain(std::mem::take(&mut at_start)),
            }
        }
        self.peers.book.save_now().await;
        debug!("swarm task stopped");
    }

    /// Redial lost peers and save the address book when due ([`crate::peers`]).
    /// The first tick, at start, dials up to [`DISCOVERED_PEERS_TARGET`] known
    /// peers at once.
    fn maintain(&mut self, at_start: bool) {
        let budget =
            if at_start { DISCOVERED_PEERS_TARGET } else { crate::peers::REDIALS_PER_TICK_MAX };
        let now = Instant::now();
        self.peers.maintain(&mut self.swarm, budget, now);
        self.peers.book.save_if_due(now);
        // Gossip records held back (a signer over its rate limit, a busy node) come
        // by sync: fetch them within a tick rather than at the next periodic round.
        // Until a sync starts (a session with every candidate may be running, and
        // may have reconciled before the records came), try again next tick.
        let held = self.shared.held_total();
        if held > self.held_seen && self.catch_up() {
            self.held_seen = held;
        }
        self.trim_connections(now);
    }

    /// Close the connections of peers beyond [`CONNECTED_PEERS_KEPT`] that this
    /// node does not need (see there); returns how many peers it disconnected.
    fn trim_connections(&mut self, now: Instant) -> usize {
        let connected = self.swarm.connected_peers().count();
        if connected <= CONNECTED_PEERS_KEPT {
            return 0;
        }
        let grace = Duration::from_millis(CONNECTION_GRACE_MS) * self.time_dilation;
        let mesh: HashSet<PeerId> =
            self.swarm.behaviour().gossipsub.mesh_peers(&self.topic.hash()).copied().collect();
        let mut spare: Vec<(Instant, PeerId)> = self
            .connected_since
            .iter()
            .filter(|(p, (since, dialled))| {
                *dialled
                    && now.saturating_duration_since(*since) >= grace
                    && !mesh.contains(*p)
                    && !self.peers.is_bootstrap(p)
                    && !self.sessions.contains_key(*p)
                    && !self.blob_serving.contains_key(*p)
            })
            .map(|(p, (since, _))| (*since, *p))
            .collect();
        spare.sort();
        let mut closed = 0;
        for (_, peer) in spare.into_iter().take(connected - CONNECTED_PEERS_KEPT) {
            debug!(%peer, "closing a connection beyond the peers kept");
            if self.swarm.disconnect_peer_id(peer).is_ok() {
                closed += 1;
            }
        }
        closed
    }

    /// Start a sync for held-back gossip records: with the peer that sent the
    /// newest one if it is connected (it has them), else the next peer in turn.
    /// Returns whether a session started.
    fn catch_up(&mut self) -> bool {
        if let Some(peer) = self.shared.newest_held_peer()
            && self.swarm.is_connected(&peer)
            && self.start_sync(peer)
        {
            return true;
        }
        self.periodic_sync()
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { bytes, reply } => {
                let outcome = match self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), bytes)
                {
                    Ok(_) => {
                        self.shared
                            .counters
                            .gossip_published
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Gossiped::Sent
                    }
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Gossiped::NoPeers,
                    Err(e) => {
                        debug!(error = %e, "gossip publish refused; sync will deliver the record");
                        Gossiped::NotSent
                    }
                };
                let _ = reply.send(outcome);
            }
            Command::Peers { reply } => {
                let hash = self.topic.hash();
                let mesh: HashSet<PeerId> =
                    self.swarm.behaviour().gossipsub.mesh_peers(&hash).copied().collect();
                let subscribed: HashSet<PeerId> = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let peers = self
                    .swarm
                    .connected_peers()
                    .map(|p| PeerInfo {
                        peer_id: p.to_string(),
                        addresses: self
                            .addresses
                            .get(p)
                            .map(|a| a.iter().map(|m| m.to_string()).collect())
                            .unwrap_or_default(),
                        score: self.swarm.behaviour().gossipsub.peer_score(p),
                        mesh: mesh.contains(p),
                        subscribed: subscribed.contains(p),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::SyncStatus { reply } => {
                let mut s = self.status.clone();
                s.records = self.shared.len();
                s.in_progress = self.sessions.keys().map(|p| p.to_string()).collect();
                let _ = reply.send(s);
            }
            Command::SyncNow { reply } => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                let mut started = 0;
                for p in peers {
                    if self.start_sync(p) {
                        started += 1;
                    }
                }
                let _ = reply.send(started);
            }
            Command::Dial { addr, reply } => {
                let r = dial(&mut self.swarm, addr).map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Command::Block { peer, blocked, reply } => {
                if blocked {
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                } else {
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                }
                let _ = reply.send(());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.listen.clone());
            }
            Command::BlobRequest { peer, request, reply } => {
                let rid = self.swarm.behaviour_mut().blobs.send_request(&peer, request);
                self.blob_requests.insert(rid, reply);
            }
            Command::BlobCandidates { hash, reply } => {
                let found: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                let key = kad::RecordKey::new(hash.as_bytes());
                let qid = self.swarm.behaviour_mut().kad.get_providers(key);
                self.provider_queries.insert(qid, ProviderQuery { reply, found });
            }
            Command::BlobProvide { hash } => {
                let key = kad::RecordKey::new(hash.as_bytes());
                if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                    debug!(error = %e, "cannot announce a blob provider record");
                }
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if !self.listen.contains(&address) {
                    self.listen.push(address);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                debug!(peer = %peer_id, "connected");
                // The only connection to the only peer (not a second one to it).
                let alone_until_now =
                    num_established.get() == 1 && self.swarm.connected_peers().count() == 1;
                self.peers.on_connected(peer_id, &endpoint, alone_until_now);
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                    self.addresses.entry(peer_id).or_default().insert(addr);
                } else {
                    self.addresses.entry(peer_id).or_default();
                }
                if num_established.get() == 1 {
                    self.connected_since.insert(peer_id, (Instant::now(), endpoint.is_dialer()));
                    self.start_sync(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                debug!(peer = %peer_id, "disconnected");
                self.addresses.remove(&peer_id);
                self.connected_since.remove(&peer_id);
                if let Some(s) = self.sessions.remove(&peer_id) {
                    self.finish(peer_id, s, Some("peer disconnected".into()));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => match self.precheck_gossip(&message.data, &propagation_source) {
                Some(verdict) => {
                    self.shared.counters.gossip_verdict(&verdict);
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        verdict,
                    );
                }
                None => self.validate_gossip(message_id, propagation_source, message.data),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                self.peers.on_identified(peer_id, &info.listen_addrs);
                for addr in self.peers.dialable(&peer_id, &info.listen_addrs) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer,
                addresses,
                ..
            })) if !self.swarm.is_connected(&peer)
                && self.swarm.connected_peers().count() < DISCOVERED_PEERS_TARGET =>
            {
                let opts = DialOpts::peer_id(peer).addresses(addresses.into_vec()).build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(%peer, error = %e, "dial of discovered peer failed");
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_sync_event(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(ev)) => self.on_blob_event(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(result),
                step,
                ..
            })) => self.on_providers(id, result, step.last),
            // A connection limit or the block list refused a connection.
            SwarmEvent::IncomingConnectionError {
                peer_id,
                send_back_addr,
                error: libp2p::swarm::ListenError::Denied { cause },
                ..
            } => {
                debug!(peer = ?peer_id, %send_back_addr, %cause, "incoming connection denied");
            }
            // Liveness: libp2p no longer closes a connection whose pings fail, so a
            // peer that vanished without a close (cut cable, paused container) would
            // look connected and swallow gossip. The ping handler reports a failure
            // after two in a row; then the connection goes, and the maintenance tick
            // redials the peer.
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            })) => match error {
                ping::Failure::Unsupported => {
                    debug!(%peer, "peer does not answer pings; its liveness is not checked")
                }
                error => {
                    info!(%peer, %error, "peer unresponsive: closing the connection");
                    self.swarm.close_connection(connection);
                }
            },
            _ => {}
        }
    }

    /// Gossip validation, cheapest first: size and duplicate here, on the swarm
    /// task; then [`Self::validate_gossip`].
    fn precheck_gossip(&mut self, data: &[u8], from: &PeerId) -> Option<MessageAcceptance> {
        let origin = Origin::new(Source::Gossip, Some(from));
        if data.len() > ENVELOPE_BYTES_MAX {
            let e = protocol::RecordError::TooLarge {
                len: data.len() as u64,
                max: ENVELOPE_BYTES_MAX as u64,
            };
            self.shared.refuse(origin, None, None, &e);
            return Some(MessageAcceptance::Reject);
        }
        match Record::peek_id(data) {
            Ok(id) if self.shared.contains(&id) => Some(MessageAcceptance::Ignore),
            Ok(id) if self.validating >= GOSSIP_VALIDATIONS_MAX => {
                self.shared.hold(origin, id, None, crate::refusals::BUSY);
                Some(MessageAcceptance::Ignore)
            }
            Ok(_) => None,
            Err(e) => {
                self.shared.refuse(origin, None, None, &e);
                Some(MessageAcceptance::Reject)
            }
        }
    }

    /// Then, off the swarm task: strict decode + network + signature (Reject),
    /// per-signer rate limit (Ignore: sync fetches it later), the durable store,
    /// and Accept; the verdict comes back through `verdict_rx`.
    fn validate_gossip(&mut self, id: MessageId, from: PeerId, data: Vec<u8>) {
        self.validating += 1;
        let shared = self.shared.clone();
        let limit = self.signer_limit.clone();
        let join_forward = self.join_forward.clone();
        let tx = self.verdict_tx.clone();
        tokio::spawn(async move {
            let verdict = tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let verdict = verify_and_store(&shared, &limit, &join_forward, &data, &from);
                let nanos = t.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                shared
                    .counters
                    .gossip_validation_nanos
                    .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
                verdict
            })
            .await
            .unwrap_or(MessageAcceptance::Ignore);
            let _ = tx.send((id, from, verdict)).await;
        });
    }

    /// Start a sync session with `peer`, unless one with it is running, this node
    /// runs [`SYNC_SESSIONS_MAX`] already, or the peer is a recent offender.
    fn start_sync(&mut self, peer: PeerId) -> bool {
        if self.sessions.contains_key(&peer) || self.sessions.len() >= SYNC_SESSIONS_MAX {
            return false;
        }
        if let Some(at) = self.offenders.get(&peer) {
            if at.elapsed() < Duration::from_millis(SYNC_OFFENDER_BACKOFF_MS) {
                debug!(%peer, "not syncing from a peer that sent records it was not asked for");
                return false;
            }
            self.offenders.remove(&peer);
        }
        let sketch = match self.shared.sketch() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot read the id sketch for sync");
                return false;
            }
        };
        let (init, (start, count, set_len, estimator)) = SketchInitiator::start(sketch);
        let network = self.shared.network.as_bytes().to_vec();
        let req = SyncRequest::Sketch { network, start, count, set_len, estimator };
        self.send_request(peer, req, None);
        let report = SyncSession {
            peer_id: peer.to_string(),
            method: "riblt",
            rounds: 0,
            bytes_sent: 0,
            bytes_received: 0,
            needed: 0,
            offered: 0,
            fetched: 0,
            stored: 0,
            rejected: 0,
            unrequested: 0,
            left: 0,
            duration_ms: 0,
            error: None,
        };
        self.sessions.insert(
            peer,
            Session {
                phase: Phase::Sketching(Box::new(init)),
                started: Instant::now(),
                queue: VecDeque::new(),
                in_flight: 1,
                ingesting: 0,
                full: false,
                report,
            },
        );
        true
    }

    fn send_request(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        asked: Option<HashSet<RecordId>>,
    ) {
        let rid = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.requests.insert(rid, Outbound { asked });
    }

    /// Sync with the next connected peer in turn; whether a session started.
    fn periodic_sync(&mut self) -> bool {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        if peers.is_empty() {
            return false;
        }
        self.next_peer = (self.next_peer + 1) % peers.len();
        self.start_sync(peers[self.next_peer])
    }

    fn on_sync_event(&mut self, ev: request_response::Event<SyncRequest, SyncResponse>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.serve(peer, request, channel)
                }
                request_response::Message::Response { request_id, response } => {
                    let asked = self.requests.remove(&request_id).and_then(|o| o.asked);
                    self.on_response(peer, response, asked);
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                self.requests.remove(&request_id);
                if let Some(s) = self.sessions.remove(&peer) {
                    self.finish(peer, s, Some(format!("request failed: {error}")));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_blob_event(&mut self, ev: request_response::Event<BlobRequest, BlobResponse>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    // Off the swarm task, a bounded number at once; beyond it the
                    // fetcher is told to try another peer.
                    use std::sync::atomic::Ordering::Relaxed;
                    let counts = &self.blobs.serve_counts;
                    if let crate::blobs::Admit::No { why, first } =
                        self.blob_budget.admit(peer, &request, Instant::now())
                    {
                        if first {
                            warn!(%peer, reason = why.reason(), "a peer asks for more blob pieces than its serving budget allows; refusing it until its window ends");
                        }
                        match why {
                            crate::blobs::OverBudget::Bytes => {
                                counts.over_budget.fetch_add(1, Relaxed)
                            }
                            crate::blobs::OverBudget::Repeat => {
                                counts.repeated_piece.fetch_add(1, Relaxed)
                            }
                        };
                        let refused = BlobResponse::Refused { reason: why.reason().into() };
                        let _ = self.swarm.behaviour_mut().blobs.send_response(channel, refused);
                        return;
                    }
                    let mine = self.blob_serving.get(&peer).copied().unwrap_or(0);
                    let permit = if mine < crate::blobs::BLOB_SERVE_PER_PEER_MAX {
                        self.blobs.serving.clone().try_acquire_owned().ok()
                    } else {
                        None
                    };
                    let Some(permit) = permit else {
                        counts.busy.fetch_add(1, Relaxed);
                        let busy = BlobResponse::Refused { reason: "busy".into() };
                        let _ = self.swarm.behaviour_mut().blobs.send_response(channel, busy);
                        return;
                    };
                    if matches!(request, BlobRequest::Piece { .. }) {
                        counts.served.fetch_add(1, Relaxed);
                    }
                    *self.blob_serving.entry(peer).or_default() += 1;
                    let blobs = self.blobs.clone();
                    let tx = self.blob_served_tx.clone();
                    tokio::spawn(async move {
                        let response = tokio::task::spawn_blocking(move || blobs.answer(request))
                            .await
                            .unwrap_or_else(|e| BlobResponse::Refused {
                                reason: format!("serving failed: {e}"),
                            });
                        drop(permit);
                        let _ = tx.send((peer, channel, response)).await;
                    });
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.blob_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = self.blob_requests.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound blob request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_providers(&mut self, id: kad::QueryId, result: kad::GetProvidersResult, last: bool) {
        let Some(q) = self.provider_queries.get_mut(&id) else { return };
        if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
            let me = *self.swarm.local_peer_id();
            for p in providers {
                if p != me && !q.found.contains(&p) {
                    q.found.push(p);
                }
            }
        }
        if last && let Some(q) = self.provider_queries.remove(&id) {
            let _ = q.reply.send(q.found);
        }
    }

    /// Admit an inbound request against the peer's budget and queue it for the
    /// serving worker ([`crate::serve`]); refuse it at once when over budget or
    /// when the queue is full.
    fn serve(
        &mut self,
        peer: PeerId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) {
        let reason = match self.serve_budget.admit(peer, Instant::now()) {
            Err(over) => {
                if over.first {
                    warn!(target: "medmesh::audit", %peer, requests_max = serve::SERVE_REQUESTS_PER_WINDOW, bytes_max = serve::SERVE_BYTES_PER_WINDOW, window_ms = serve::SERVE_WINDOW_MS, "sync peer over its serving budget: its requests are refused until the window ends");
                } else {
                    debug!(%peer, "sync request refused: peer over its serving budget");
                }
                serve::OVER_BUDGET
            }
            Ok(()) => match self.serve_tx.try_send(Job { peer, request, channel }) {
                Ok(()) => return,
                Err(
                    mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job),
                ) => {
                    debug!(%peer, "sync request refused: serving queue full");
                    return self.refuse_request(job.peer, job.channel, serve::BUSY);
                }
            },
        };
        self.refuse_request(peer, channel, reason);
    }

    fn refuse_request(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<SyncResponse>,
        reason: &str,
    ) {
        self.status.refused_requests += 1;
        let response = SyncResponse::Refused { reason: reason.into() };
        if self.swarm.behaviour_mut().sync.send_response(channel, response).is_err() {
            debug!(%peer, "sync refusal not sent: peer gone");
        }
    }

    /// Send an answer the serving worker prepared, and charge its bytes.
    fn on_served(&mut self, served: Served) {
        let Served { peer, channel, response, bytes } = served;
        self.serve_budget.charge(peer, bytes, Instant::now());
        if self.swarm.behaviour_mut().sync.send_response(channel, response).is_err() {
            debug!(%peer, "sync response not sent: peer gone");
        }
    }

    fn on_response(
        &mut self,
        peer: PeerId,
        response: SyncResponse,
        asked: Option<HashSet<RecordId>>,
    ) {
        let Some(mut s) = self.sessions.remove(&peer) else {
            // The session ended (a failed request, a disconnect) while this page
            // was in flight: keep what it brought.
            if let (SyncResponse::Records { records, .. }, Some(asked)) = (response, asked) {
                self.ingest(peer, records.into_iter().map(|b| b.into_vec()).collect(), asked);
            }
            return;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        match (response, &mut s.phase) {
            (SyncResponse::Sketch { set_len, symbols }, Phase::Sketching(init)) => {
                let step = init.step(set_len, &symbols);
                s.report.rounds = init.rounds;
                s.report.bytes_sent = init.bytes_sent;
                s.report.bytes_received = init.bytes_received;
                match step {
                    Ok(SketchStep::Done { need, have }) => {
                        s.report.offered = have;
                        s.report.needed = need.len() as u64;
                        s.queue = self.shared.wanted(need).into();
                        s.phase = Phase::Fetching;
                    }
                    Ok(SketchStep::More { start, count }) => {
                        let network = self.shared.network.as_bytes().to_vec();
                        let req = SyncRequest::Sketch {
                            network,
                            start,
                            count,
                            set_len: init.local_len(),
                            estimator: Vec::new(),
                        };
                        self.send_request(peer, req, None);
                        s.in_flight += 1;
                    }
                    Ok(SketchStep::Exhausted) => {
                        debug!(%peer, "difference beyond the coded symbols: reconciling with negentropy");
                        if let Err(e) = self.fall_back(peer, &mut s) {
                            return self.finish(peer, s, Some(e));
                        }
                    }
                    Err(e) => {
                        debug!(%peer, error = %e, "coded symbols did not decode: reconciling with negentropy");
                        if let Err(e) = self.fall_back(peer, &mut s) {
                            return self.finish(peer, s, Some(e));
                        }
                    }
                }
            }
            (SyncResponse::Reconcile { msg }, Phase::Reconciling(init)) => match init.step(&msg) {
                Ok(Some(next)) if init.rounds <= ROUNDS_MAX && !init.is_full() => {
                    let req = SyncRequest::Reconcile {
                        network: self.shared.network.as_bytes().to_vec(),
                        msg: next,
                    };
                    self.send_request(peer, req, None);
                    s.in_flight += 1;
                }
                Ok(Some(_)) if !init.is_full() => {
                    return self.finish(peer, s, Some("too many reconciliation rounds".into()));
                }
                // Done, or holding as many ids as a session fetches: fetch those,
                // and leave the rest to the next session.
                Ok(_) => {
                    s.report.left = init.dropped;
                    s.full = init.is_full();
                    if s.full {
                        debug!(%peer, ids = init.need.len(), dropped = init.dropped, "sync session full: the rest is left to the next session");
                    }
                    s.report.rounds += init.rounds;
                    s.report.bytes_sent += init.bytes_sent;
                    s.report.bytes_received += init.bytes_received;
                    s.report.offered = init.have;
                    let need = std::mem::take(&mut init.need);
                    s.report.needed = need.len() as u64;
                    s.queue = self.shared.wanted(need).into();
                    s.phase = Phase::Fetching;
                }
                Err(e) => return self.finish(peer, s, Some(format!("reconciliation failed: {e}"))),
            },
            (SyncResponse::Records { records, truncated: _ }, Phase::Fetching) => {
                s.report.fetched += records.len() as u64;
                s.ingesting += 1;
                let asked = asked.unwrap_or_default();
                self.ingest(peer, records.into_iter().map(|b| b.into_vec()).collect(), asked);
            }
            (SyncResponse::Refused { reason }, _) => {
                return self.finish(peer, s, Some(format!("peer refused: {reason}")));
            }
            _ => return self.finish(peer, s, Some("unexpected sync response".into())),
        }
        self.pump(peer, s);
    }

    /// Go on from coded symbols to negentropy with the same peer.
    fn fall_back(&mut self, peer: PeerId, s: &mut Session) -> Result<(), String> {
        let snapshot =
            self.shared.id_snapshot().map_err(|e| format!("cannot snapshot ids: {e}"))?;
        let (init, msg) =
            Initiator::start(snapshot).map_err(|e| format!("cannot start reconciliation: {e}"))?;
        let req = SyncRequest::Reconcile { network: self.shared.network.as_bytes().to_vec(), msg };
        self.send_request(peer, req, None);
        s.in_flight += 1;
        s.report.method = "negentropy";
        s.phase = Phase::Reconciling(Box::new(init));
        Ok(())
    }

    /// Issue fetches while the pipeline has room; finish when all is done.
    fn pump(&mut self, peer: PeerId, mut s: Session) {
        if matches!(s.phase, Phase::Fetching) {
            while s.in_flight + s.ingesting < SYNC_PIPELINE_PAGES_MAX && !s.queue.is_empty() {
                let n = s.queue.len().min(FETCH_PAGE_RECORDS);
                let asked: HashSet<RecordId> = s.queue.drain(..n).collect();
                let ids: Vec<serde_bytes::ByteBuf> = asked
                    .iter()
                    .map(|id| serde_bytes::ByteBuf::from(id.as_bytes().to_vec()))
                    .collect();
                self.send_request(peer, SyncRequest::Fetch { ids }, Some(asked));
                s.in_flight += 1;
            }
            if s.queue.is_empty() && s.in_flight == 0 && s.ingesting == 0 {
                // A session that left ids to the next one and brought records goes
                // on with a new session at once (a node far behind an honest
                // peer); one that brought nothing waits for its periodic turn.
                let again = s.full && s.report.stored > 0;
                self.finish(peer, s, None);
                if again {
                    self.start_sync(peer);
                }
                return;
            }
        }
        self.sessions.insert(peer, s);
    }

    /// Verify and store a fetched page off the swarm task: only the records the
    /// page asked for (`asked`); the others are dropped and logged.
    fn ingest(&mut self, peer: PeerId, records: Vec<Vec<u8>>, asked: HashSet<RecordId>) {
        let shared = self.shared.clone();
        let tx = self.ingest_tx.clone();
        tokio::spawn(async move {
            let fetched = records.len() as u64;
            let work =
                tokio::task::spawn_blocking(move || shared.ingest_page(records, asked, &peer))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
            let done = match work {
                Ok((stored, rejected, unrequested)) => {
                    IngestDone { peer, fetched, stored, rejected, unrequested, error: None }
                }
                Err(e) => IngestDone {
                    peer,
                    fetched,
                    stored: 0,
                    rejected: 0,
                    unrequested: 0,
                    error: Some(e),
                },
            };
            let _ = tx.send(done).await;
        });
    }

    fn on_ingested(&mut self, done: IngestDone) {
        if done.rejected > 0 {
            warn!(target: "medmesh::audit", peer = %done.peer, rejected = done.rejected, "sync peer served invalid records");
        }
        self.status.stored += done.stored;
        self.status.rejected += done.rejected;
        self.status.unrequested += done.unrequested;
        if done.unrequested > 0 {
            warn!(target: "medmesh::audit", peer = %done.peer, unrequested = done.unrequested, backoff_ms = SYNC_OFFENDER_BACKOFF_MS, "sync peer returned records it was not asked for: dropped, and the peer is not synced from for a while");
            self.offend(done.peer);
        }
        let Some(mut s) = self.sessions.remove(&done.peer) else { return };
        s.ingesting = s.ingesting.saturating_sub(1);
        s.report.stored += done.stored;
        s.report.rejected += done.rejected;
        s.report.unrequested += done.unrequested;
        debug!(peer = %done.peer, fetched = done.fetched, stored = done.stored, "sync page ingested");
        if let Some(e) = done.error {
            return self.finish(done.peer, s, Some(e));
        }
        if done.unrequested > 0 {
            let e = format!("peer returned {} records not asked for", done.unrequested);
            return self.finish(done.peer, s, Some(e));
        }
        self.pump(done.peer, s);
    }

    /// Count a peer's offence: it is not synced from for [`SYNC_OFFENDER_BACKOFF_MS`].
    fn offend(&mut self, peer: PeerId) {
        let now = Instant::now();
        if !self.offenders.contains_key(&peer) && self.offenders.len() >= SYNC_OFFENDERS_MAX {
            let backoff = Duration::from_millis(SYNC_OFFENDER_BACKOFF_MS);
            self.offenders.retain(|_, at| now.saturating_duration_since(*at) < backoff);
            if self.offenders.len() >= SYNC_OFFENDERS_MAX
                && let Some(oldest) =
                    self.offenders.iter().min_by_key(|(_, at)| **at).map(|(p, _)| *p)
            {
                self.offenders.remove(&oldest);
            }
        }
        self.offenders.insert(peer, now);
    }

    fn finish(&mut self, peer: PeerId, mut s: Session, error: Option<String>) {
        s.report.duration_ms = s.started.elapsed().as_millis() as u64;
        s.report.error = error;
        if s.report.error.is_some() {
            self.status.failed += 1;
            debug!(%peer, error = ?s.report.error, "sync session failed");
        } else {
            self.status.completed += 1;
            if s.report.stored > 0 {
                info!(%peer, stored = s.report.stored, rounds = s.report.rounds, ms = s.report.duration_ms, "caught up");
            }
        }
        self.status.recent.push(s.report);
        if self.status.recent.len() > SYNC_HISTORY_LEN {
            self.status.recent.remove(0);
        }
    }
}

fn verify_and_store(
    shared: &Shared,
    limit: &std::sync::Mutex<crate::ratelimit::SignerLimiter>,
    join_forward: &std::sync::Mutex<crate::admission::ForwardBudget>,
    data: &[u8],
    from: &PeerId,
) -> MessageAcceptance {
    let origin = Origin::new(Source::Gossip, Some(from));
    let Ok(record) = shared.verify_or_refuse(origin, data) else {
        return MessageAcceptance::Reject;
    };
    let allowed =
        limit.lock().unwrap_or_else(|p| p.into_inner()).allow(&record.signer, Instant::now());
    if !allowed {
        shared.hold(origin, record.id, Some(record.signer), crate::refusals::RATE_LIMITED);
        return MessageAcceptance::Ignore;
    }
    match shared.insert(std::slice::from_ref(&record), origin) {
        Ok(out) if !out.stored.is_empty() => {
            info!(target: "medmesh::audit", id = %record.id.short(), kind = record.kind(), signer = %record.signer.short(), peer = %from, "record accepted from gossip");
            MessageAcceptance::Accept
        }
        // A join request new to the pool travels on, at a bounded rate.
        Ok(out) if !out.pooled.is_empty() => {
            if join_forward.lock().unwrap_or_else(|p| p.into_inner()).allow(Instant::now()) {
                debug!(target: "medmesh::audit", id = %record.id.short(), signer = %record.signer.short(), peer = %from, "join request pooled and forwarded");
                MessageAcceptance::Accept
            } else {
                shared.hold(origin, record.id, Some(record.signer), crate::refusals::RATE_LIMITED);
                MessageAcceptance::Ignore
            }
        }
        // Known, or not stored (logged by `insert`): not forwarded, and no
        // penalty, since an honest peer may have seen the admission first.
        Ok(_) => MessageAcceptance::Ignore,
        Err(e) => {
            warn!(error = %e, "cannot store a gossiped record");
            MessageAcceptance::Ignore
        }
    }
}

/// Dial an address; with a `/p2p/` suffix, by peer id (one connection, known to kad).
pub(crate) fn dial(
    swarm: &mut Swarm<Behaviour>,
    addr: Multiaddr,
) -> Result<(), libp2p::swarm::DialError> {
    match peer_of(&addr) {
        Some(peer) if swarm.is_connected(&peer) => Ok(()),
        Some(peer) => {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            match swarm.dial(DialOpts::peer_id(peer).addresses(vec![addr]).build()) {
                // Kademlia or an earlier call is already dialling (or just connected):
                // the connection the caller asked for is on its way.
                Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => Ok(()),
                other => other,
            }
        }
        None => swarm.dial(addr),
    }
}

/// The peer id at the end of a multiaddr.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use protocol::NetworkRoot;
    use protocol::testkit::Workflow;

    use super::*;
    use crate::refusals::RATE_LIMITED;

    /// A swarm task that the test drives by hand: nothing happens between the
    /// steps but what the test asks for.
    fn event_loop(dir: &Path, root: &NetworkRoot) -> EventLoop {
        let store = crate::store::Store::open(&dir.join(crate::node::STORE_FILE)).unwrap();
        store.set_root(root).unwrap();
        let shared = Arc::new(Shared::new(crate::core::Core::load(store, root.clone()).unwrap()));
        let key = libp2p::identity::Keypair::generate_ed25519();
        let local = key.public().to_peer_id();
        let swarm = crate::node::build_swarm(
            key,
            &shared.network,
            &crate::NodeConfig::new(dir),
            shared.counters.gossip_copies.clone(),
        )
        .unwrap();
        let blobs = Arc::new(crate::blobs::Blobs::new(
            crate::blobstore::BlobStore::open(dir, u64::MAX).unwrap(),
            false,
        ));
        let book =
            crate::peers::AddressBook::empty(dir.join(crate::peers::PEERS_FILE), local, true);
        let (_commands, commands_rx) = mpsc::channel(1);
        let (_stop, stop_rx) = oneshot::channel();
        EventLoop::new(
            swarm,
            shared,
            commands_rx,
            stop_rx,
            Vec::new(),
            Duration::from_secs(3600),
            1,
            crate::peers::Peers::new(book, &[]),
            blobs,
        )
    }

    /// Handle swarm events until `done`.
    async fn drive(el: &mut EventLoop, what: &str, done: impl Fn(&EventLoop) -> bool) {
        let run = async {
            while !done(el) {
                tokio::select! {
                    event = el.swarm.select_next_some() => el.on_swarm_event(event),
                    Some(served) = el.served_rx.recv() => el.on_served(served),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    async fn peer_node(dir: &Path, root: &NetworkRoot) -> crate::Node {
        let mut c = crate::NodeConfig::new(dir);
        c.root = Some(root.clone());
        crate::Node::start(c).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn held_records_start_a_sync_with_their_sender_once_no_session_with_it_is_running() {
        let w = Workflow::complete();
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let (b, c) =
            (peer_node(dirs[1].path(), &w.root).await, peer_node(dirs[2].path(), &w.root).await);
        let mut a = event_loop(dirs[0].path(), &w.root);
        for n in [&b, &c] {
            dial(&mut a.swarm, n.addresses()[0].clone()).unwrap();
        }
        let (b_id, c_id) = (b.peer_id(), c.peer_id());
        let idle = |a: &EventLoop| {
            a.swarm.is_connected(&b_id)
                && a.swarm.is_connected(&c_id)
                && a.sessions.is_empty()
                && a.status.completed >= 2
        };
        drive(&mut a, "both peers connected and the on-connect syncs done", idle).await;

        // Sessions with both peers are running (they reconciled before the held
        // records came) when the first tick after the held record comes.
        assert!(a.start_sync(b_id) && a.start_sync(c_id));
        let id = RecordId::from_bytes([7; 32]);
        a.shared.hold(Origin::new(Source::Gossip, Some(&b_id)), id, None, RATE_LIMITED);
        a.maintain(false);
        assert_eq!(a.held_seen, 0, "no sync started: the next tick tries again");

        // Once they end, the next tick syncs with the peer that sent the record,
        // every time.
        for held in 1..=2 {
            drive(&mut a, "the running sessions to end", |a| a.sessions.is_empty()).await;
            if held == 2 {
                a.shared.hold(Origin::new(Source::Gossip, Some(&b_id)), id, None, RATE_LIMITED);
            }
            a.maintain(false);
            assert_eq!(a.held_seen, held);
            assert_eq!(
                a.sessions.keys().collect::<Vec<_>>(),
                vec![&b_id],
                "the sync is with the sender of the held record"
            );
        }
        b.shutdown().await;
        c.shutdown().await;
    }
}
