//! A hostile sync responder: a raw libp2p swarm in the test that speaks the node's
//! sync protocol (the node's own codec and types, [`node::sync`]) and answers an
//! honest node's catch-up as it likes: with millions of ids, with records the
//! node did not ask for, or not at all. Each case asserts what the attacker got
//! (what the honest node asked it for), what the honest node logged (its sync
//! sessions, its refusal log), and that honest work goes on: a record only an
//! honest peer holds (imported there, so it travels by sync, not gossip) still
//! reaches the honest node.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use negentropy::Negentropy;
use node::sync::{
    FETCH_PAGE_RECORDS, IdSnapshot, PROTOCOL, SESSION_IDS_MAX, SyncRequest, SyncResponse,
};
use node::{Multiaddr, Node, PeerId, Source, SyncSession};
use protocol::testkit::{Author, Workflow, container};
use protocol::{NetworkRoot, Record, RecordId};
use tests::*;

/// Deadline for the honest node to react to the attacker.
const REACTION_TIMEOUT_MS: u64 = 30_000;
/// Ids the flooding responder claims to hold.
const CLAIMED_IDS: u64 = 2_000_000;
/// Its reconciliation frames: as large as the node's codec reads (10 MiB).
const FLOOD_FRAME_BYTES: u64 = 9 * 1024 * 1024;
/// The honest node's sync request timeout in the stalling case (the default is
/// 30 s; shorter keeps the test short, the mechanism is the same).
const STALL_REQUEST_TIMEOUT_MS: u64 = 3_000;
/// How long the honest node's swarm task may take to answer a status query
/// while under attack (it answers in milliseconds when idle).
const RESPONSIVE_WITHIN_MS: u64 = 5_000;

type SyncBehaviour = request_response::cbor::Behaviour<SyncRequest, SyncResponse>;

/// How the attacker answers a fetch.
#[derive(Clone)]
enum OnFetch {
    /// An empty page (it claimed ids it does not have).
    Nothing,
    /// These records, whatever was asked.
    Give(Vec<Vec<u8>>),
    /// Never: the response channel is kept open and unanswered.
    Stall,
}

/// What the honest node asked the attacker for.
#[derive(Clone, Debug, Default)]
struct Asked {
    reconciles: u64,
    fetches: u64,
    /// The largest fetch request, in ids.
    fetch_ids_max: u64,
    /// Ids fetched since the last reconciliation request (one session's fetches).
    session_ids: u64,
    /// The most ids one session fetched.
    session_ids_max: u64,
    stalled: u64,
}

/// The attacker: a task running a raw swarm with only the sync protocol.
struct Attacker {
    peer: PeerId,
    asked: Arc<Mutex<Asked>>,
    task: tokio::task::JoinHandle<()>,
}

impl Attacker {
    /// Dial `target` and answer its sync requests: reconciliation as a responder
    /// holding `claimed` (frames up to `frame_bytes`), fetches per `on_fetch`.
    fn start(target: Multiaddr, claimed: IdSnapshot, frame_bytes: u64, on_fetch: OnFetch) -> Self {
        Self::start_with_symbols(target, claimed, frame_bytes, on_fetch, Vec::new())
    }

    /// As [`Attacker::start`], answering every sketch request with `symbols`.
    fn start_with_symbols(
        target: Multiaddr,
        claimed: IdSnapshot,
        frame_bytes: u64,
        on_fetch: OnFetch,
        symbols: Vec<u8>,
    ) -> Self {
        let mut swarm = raw_swarm::<SyncRequest, SyncResponse>(PROTOCOL);
        let peer = *swarm.local_peer_id();
        swarm.dial(target).expect("dial the honest node");
        let asked = Arc::new(Mutex::new(Asked::default()));
        let seen = asked.clone();
        let task = tokio::spawn(async move {
            let mut stalled: Vec<ResponseChannel<SyncResponse>> = Vec::new();
            loop {
                let SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Request { request, channel, .. },
                    ..
                }) = swarm.select_next_some().await
                else {
                    continue;
                };
                let response = match request {
                    // No coded symbols: the honest node goes on with negentropy,
                    // where the claims below are made.
                    SyncRequest::Sketch { .. } => SyncResponse::Sketch {
                        set_len: claimed.len() as u64,
                        symbols: symbols.clone(),
                    },
                    SyncRequest::Reconcile { msg, .. } => {
                        {
                            let mut a = seen.lock().expect("lock");
                            a.reconciles += 1;
                            a.session_ids = 0;
                        }
                        match Negentropy::borrowed(&claimed, frame_bytes)
                            .and_then(|mut n| n.reconcile(&msg))
                        {
                            Ok(msg) => SyncResponse::Reconcile { msg },
                            Err(e) => SyncResponse::Refused { reason: e.to_string() },
                        }
                    }
                    SyncRequest::Fetch { ids } => {
                        {
                            let mut a = seen.lock().expect("lock");
                            let n = ids.len() as u64;
                            a.fetches += 1;
                            a.fetch_ids_max = a.fetch_ids_max.max(n);
                            a.session_ids += n;
                            a.session_ids_max = a.session_ids_max.max(a.session_ids);
                        }
                        match &on_fetch {
                            OnFetch::Nothing => {
                                SyncResponse::Records { records: Vec::new(), truncated: false }
                            }
                            OnFetch::Give(records) => SyncResponse::Records {
                                records: records
                                    .iter()
                                    .map(|r| serde_bytes::ByteBuf::from(r.clone()))
                                    .collect(),
                                truncated: false,
                            },
                            OnFetch::Stall => {
                                stalled.push(channel);
                                seen.lock().expect("lock").stalled += 1;
                                continue;
                            }
                        }
                    }
                };
                let _ = swarm.behaviour_mut().send_response(channel, response);
            }
        });
        Attacker { peer, asked, task }
    }

    /// What the attacker was asked so far.
    fn asked(&self) -> Asked {
        self.asked.lock().expect("lock").clone()
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The honest node under attack (`a`) and an honest peer (`b`) connected to it.
struct Honest {
    a: Node,
    b: Node,
    _dirs: Vec<tempfile::TempDir>,
}

impl Honest {
    async fn start(root: &NetworkRoot, request_timeout: Option<Duration>) -> Honest {
        init_tracing();
        let (da, db) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("dir"));
        let mut cfg = config(da.path(), root, &[]);
        if let Some(t) = request_timeout {
            cfg.sync_request_timeout = t;
        }
        let a = Node::start(cfg).await.expect("honest node starts");
        let b = start(db.path(), root, &a.addresses()).await;
        let (ac, b_id) = (a.client(), b.peer_id().to_string());
        eventually("the honest peers to connect", REACTION_TIMEOUT_MS, || async {
            ac.peers().await.unwrap_or_default().iter().any(|p| p.peer_id == b_id)
        })
        .await;
        Honest { a, b, _dirs: vec![da, db] }
    }

    /// A record only the honest peer holds (imported: not gossiped) reaches the
    /// node under attack by sync.
    async fn honest_work_arrives(&self, root: &NetworkRoot) -> RecordId {
        let r = Author::new("honest", root.network_id()).sign(container("honest-work", &["infer"]));
        let (stored, rejected) =
            self.b.client().import(vec![r.bytes.to_vec()]).await.expect("import runs");
        assert_eq!((stored, rejected), (1, 0));
        let a = self.a.client();
        eventually(
            "a record held only by the honest peer to reach the node under attack by sync",
            CONVERGE_TIMEOUT_MS,
            || async { a.contains(&r.id) },
        )
        .await;
        r.id
    }

    /// A record only the node under attack holds (imported) reaches the honest
    /// peer by sync: the node still serves honest peers.
    async fn honest_peer_served(&self, root: &NetworkRoot) {
        let r = Author::new("served", root.network_id()).sign(container("served", &["infer"]));
        let (stored, _) = self.a.client().import(vec![r.bytes.to_vec()]).await.expect("import");
        assert_eq!(stored, 1);
        let b = self.b.client();
        eventually(
            "a record held only by the node under attack to reach the honest peer by sync",
            CONVERGE_TIMEOUT_MS,
            || async { b.contains(&r.id) },
        )
        .await;
    }

    /// The node under attack answers a query that goes through its swarm task
    /// within [`RESPONSIVE_WITHIN_MS`].
    async fn responsive(&self) {
        let t = std::time::Instant::now();
        let status = tokio::time::timeout(
            Duration::from_millis(RESPONSIVE_WITHIN_MS),
            self.a.client().sync_status(),
        )
        .await;
        assert!(
            matches!(status, Ok(Ok(_))),
            "the node under attack did not answer a status query within {RESPONSIVE_WITHIN_MS} ms"
        );
        eprintln!("status query answered in {} ms under attack", t.elapsed().as_millis());
    }

    /// The node's finished sync sessions with `peer`.
    async fn sessions_with(&self, peer: &PeerId) -> Vec<SyncSession> {
        let p = peer.to_string();
        let status = self.a.client().sync_status().await.expect("node runs");
        status.recent.into_iter().filter(|s| s.peer_id == p).collect()
    }

    async fn stop(self) {
        self.a.shutdown().await;
        self.b.shutdown().await;
    }
}

/// A pseudo-random id (no record behind it).
fn fake_id(i: u64) -> RecordId {
    let mut b = [0u8; 32];
    for (k, chunk) in b.chunks_mut(8).enumerate() {
        let mut z = (i * 4 + k as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    RecordId::from_bytes(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_responder_claiming_millions_of_ids_gets_at_most_one_sessions_cap_of_fetches() {
    let root = Workflow::people().root;
    let h = Honest::start(&root, None).await;
    let claimed = IdSnapshot::from_ids((0..CLAIMED_IDS).map(fake_id));
    let evil =
        Attacker::start(h.a.addresses()[0].clone(), claimed, FLOOD_FRAME_BYTES, OnFetch::Nothing);

    // The honest node reconciles, finds (far) more than a session fetches, fetches
    // a session's worth in pages, gets nothing, and ends the session.
    eventually("a sync session with the attacker to end", REACTION_TIMEOUT_MS, || async {
        !h.sessions_with(&evil.peer).await.is_empty()
    })
    .await;
    h.responsive().await;
    let id = h.honest_work_arrives(&root).await;
    h.responsive().await;

    let asked = evil.asked();
    eprintln!("the attacker claimed {CLAIMED_IDS} ids and was asked: {asked:?}");
    assert!(asked.reconciles >= 1);
    assert_eq!(
        asked.session_ids_max, SESSION_IDS_MAX as u64,
        "a session fetches exactly its cap when offered more"
    );
    assert!(asked.fetch_ids_max <= FETCH_PAGE_RECORDS as u64, "{asked:?}");
    assert!(asked.fetches >= (SESSION_IDS_MAX / FETCH_PAGE_RECORDS) as u64);
    let sessions = h.sessions_with(&evil.peer).await;
    let s = &sessions[0];
    assert_eq!(s.needed, SESSION_IDS_MAX as u64, "{s:?}");
    assert!(s.left > 0, "the node knows it left ids to the next session: {s:?}");
    assert_eq!((s.fetched, s.stored), (0, 0), "{s:?}");
    let a = h.a.client();
    assert_eq!(a.len(), 1, "only the honest record is held");
    assert!(a.contains(&id));
    assert_eq!(a.refusals().refused_total, 0, "nothing was served, so nothing was refused");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_coded_symbols_end_in_negentropy_or_nothing_and_the_node_stays_responsive() {
    let root = Workflow::people().root;
    let h = Honest::start(&root, None).await;
    // The most symbols a decoder takes: noise, then symbols that look pure (a
    // real checksum) for ids the attacker does not hold, each sent twice with
    // opposite signs so that peeling meets an id it already took.
    let mut symbols: Vec<u8> = (0..(protocol::riblt::SYMBOL_BYTES * 8_000) as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    for i in 0..4_000u64 {
        let x = fake_id(i);
        let one = protocol::riblt::Sketch::from_ids(1, &[x]);
        let pure = protocol::riblt::encode_symbols(one.symbols(0, 1));
        symbols.extend_from_slice(&pure);
        let mut negated = pure.clone();
        negated[40..42].copy_from_slice(&u16::MAX.to_le_bytes());
        symbols.extend_from_slice(&negated);
    }
    let claimed = IdSnapshot::from_ids((0..10).map(fake_id));
    let evil = Attacker::start_with_symbols(
        h.a.addresses()[0].clone(),
        claimed,
        FLOOD_FRAME_BYTES,
        OnFetch::Nothing,
        symbols,
    );
    eventually("a sync session with the attacker to end", REACTION_TIMEOUT_MS, || async {
        !h.sessions_with(&evil.peer).await.is_empty()
    })
    .await;
    h.responsive().await;
    let id = h.honest_work_arrives(&root).await;
    let sessions = h.sessions_with(&evil.peer).await;
    eprintln!("sessions with the forger: {sessions:?}");
    for s in &sessions {
        assert_eq!(s.stored, 0, "{s:?}");
        assert!(s.needed <= 10 + 4_000, "{s:?}");
    }
    let a = h.a.client();
    assert_eq!(a.len(), 1, "only the honest record is held");
    assert!(a.contains(&id));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_a_responder_returns_unasked_are_dropped_and_logged_as_unrequested() {
    let root = Workflow::people().root;
    let h = Honest::start(&root, None).await;
    let net = root.network_id();
    // Both valid: the one it claims (and is asked for) is kept; the one it slips
    // in beside it would be kept too, were it not checked against the request.
    let claimed = Author::new("claimed", net).sign(container("asked-for", &["infer"]));
    let smuggled = Author::new("smuggler", net).sign(container("not-asked-for", &["infer"]));
    let evil = Attacker::start(
        h.a.addresses()[0].clone(),
        IdSnapshot::from_ids([claimed.id]),
        node::sync::FRAME_BYTES_MAX,
        OnFetch::Give(vec![claimed.bytes.to_vec(), smuggled.bytes.to_vec()]),
    );
    let a = h.a.client();
    let attacker = evil.peer.to_string();
    eventually("the unrequested record to be logged", REACTION_TIMEOUT_MS, || async {
        a.refusals().refused.iter().any(|r| r.reason == node::refusals::UNREQUESTED)
    })
    .await;

    let log = a.refusals();
    let r = log.refused.iter().find(|r| r.reason == "unrequested").expect("just seen");
    assert_eq!(
        (r.source, r.peer.as_deref(), r.id),
        (Source::Sync, Some(attacker.as_str()), Some(smuggled.id))
    );
    assert_eq!(log.counts["unrequested"], 1);
    assert!(!a.contains(&smuggled.id), "an unrequested record is not stored");
    eventually("the requested record to be stored", REACTION_TIMEOUT_MS, || async {
        a.contains(&claimed.id)
    })
    .await;
    // The page's refusals are logged while it is ingested; the session ends after.
    eventually("the session with the attacker to end", REACTION_TIMEOUT_MS, || async {
        !h.sessions_with(&evil.peer).await.is_empty()
    })
    .await;
    let sessions = h.sessions_with(&evil.peer).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!((sessions[0].stored, sessions[0].unrequested), (1, 1), "{sessions:?}");
    assert!(
        sessions[0].error.as_deref().is_some_and(|e| e.contains("not asked for")),
        "{sessions:?}"
    );
    assert_eq!(a.sync_status().await.expect("node runs").unrequested, 1);

    let id = h.honest_work_arrives(&root).await;
    // Counted against the attacker: no further session with it meanwhile, while
    // the honest peer was synced with.
    let reconciles = evil.asked().reconciles;
    assert_eq!(reconciles, 1, "the attacker was reconciled with again");
    assert!(a.contains(&id) && !a.contains(&smuggled.id));
    assert_eq!(a.refusals().refused_total, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_responder_that_stalls_mid_page_is_timed_out_and_sync_goes_on_with_others() {
    let root = Workflow::people().root;
    let h = Honest::start(&root, Some(Duration::from_millis(STALL_REQUEST_TIMEOUT_MS))).await;
    let withheld: Record =
        Author::new("withheld", root.network_id()).sign(container("never-sent", &["infer"]));
    let evil = Attacker::start(
        h.a.addresses()[0].clone(),
        IdSnapshot::from_ids([withheld.id]),
        node::sync::FRAME_BYTES_MAX,
        OnFetch::Stall,
    );
    eventually("the attacker to stall a fetch", REACTION_TIMEOUT_MS, || async {
        evil.asked().stalled >= 1
    })
    .await;
    // Honest work goes on while the page is stalled.
    let id = h.honest_work_arrives(&root).await;
    h.responsive().await;
    eventually("the stalled session to fail on its timeout", REACTION_TIMEOUT_MS, || async {
        h.sessions_with(&evil.peer)
            .await
            .iter()
            .any(|s| s.error.as_deref().is_some_and(|e| e.to_ascii_lowercase().contains("timeout")))
    })
    .await;
    let asked = evil.asked();
    assert_eq!((asked.fetch_ids_max, asked.stalled), (1, asked.fetches), "{asked:?}");
    let a = h.a.client();
    assert!(a.contains(&id) && !a.contains(&withheld.id));
    let peers: HashSet<String> =
        a.peers().await.expect("node runs").into_iter().map(|p| p.peer_id).collect();
    assert!(peers.contains(&h.b.peer_id().to_string()), "the honest peer is still connected");
    h.stop().await;
}

/// Requests in one burst of the flooding requester (under the node's 100
/// concurrent streams per connection).
const FLOOD_BURST_REQUESTS: usize = 64;

/// Send `n` reconciliation requests to `peer` in bursts, and count the answers:
/// (answered, refused over budget, refused otherwise or failed).
async fn flood_requests(
    swarm: &mut libp2p::Swarm<SyncBehaviour>,
    peer: PeerId,
    request: &SyncRequest,
    n: usize,
) -> (u64, u64, u64) {
    let (mut answered, mut over, mut other) = (0, 0, 0);
    let mut sent = 0;
    while sent < n {
        let burst = FLOOD_BURST_REQUESTS.min(n - sent);
        for _ in 0..burst {
            swarm.behaviour_mut().send_request(&peer, request.clone());
        }
        sent += burst;
        let mut pending = burst;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(REACTION_TIMEOUT_MS);
        while pending > 0 {
            let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
                .await
                .expect("the node answers every request (or refuses it) in time");
            match event {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => {
                    pending -= 1;
                    match response {
                        SyncResponse::Reconcile { .. } => answered += 1,
                        SyncResponse::Refused { reason } if reason == node::serve::OVER_BUDGET => {
                            over += 1
                        }
                        _ => other += 1,
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                    pending -= 1;
                    other += 1;
                }
                _ => {}
            }
        }
    }
    (answered, over, other)
}

/// Dial `addr` (of `peer`) and wait for the connection.
async fn connect(swarm: &mut libp2p::Swarm<SyncBehaviour>, addr: Multiaddr, peer: PeerId) {
    swarm.dial(addr).expect("dial");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REACTION_TIMEOUT_MS);
    while !swarm.is_connected(&peer) {
        tokio::time::timeout_at(deadline, swarm.select_next_some()).await.expect("connected");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_requester_over_its_budget_is_refused_while_honest_peers_are_served() {
    use node::serve::{SERVE_REQUESTS_PER_WINDOW, SERVE_WINDOW_MS};
    let root = Workflow::people().root;
    let h = Honest::start(&root, None).await;
    let a = h.a.client();
    let mut evil = raw_swarm::<SyncRequest, SyncResponse>(PROTOCOL);
    connect(&mut evil, h.a.addresses()[0].clone(), h.a.peer_id()).await;
    // A valid first reconciliation message, as an honest initiator sends it.
    let (_, msg) = node::sync::Initiator::start(IdSnapshot::from_ids([])).expect("initiate");
    let request = SyncRequest::Reconcile { network: root.network_id().as_bytes().to_vec(), msg };
    let budget = u64::from(SERVE_REQUESTS_PER_WINDOW);
    let n = (budget + budget / 4) as usize;
    let t = std::time::Instant::now();
    let (answered, over, other) = flood_requests(&mut evil, h.a.peer_id(), &request, n).await;
    let elapsed_ms = t.elapsed().as_millis() as u64;
    eprintln!(
        "{n} requests in {elapsed_ms} ms: {answered} answered, {over} refused over budget, {other} otherwise"
    );
    // Each window of the flood answered at most the budget; the rest was refused.
    let windows = elapsed_ms / SERVE_WINDOW_MS + 1;
    assert!(answered <= budget * windows, "{answered} answered in {windows} windows");
    assert!(over >= 1 && answered + over + other == n as u64);
    if windows == 1 {
        assert_eq!((answered, over), (budget, n as u64 - budget));
    }
    assert!(a.sync_status().await.expect("node runs").refused_requests >= over);

    // Honest peers are served meanwhile, and the flooder is still refused.
    h.honest_peer_served(&root).await;
    h.honest_work_arrives(&root).await;
    h.responsive().await;
    if t.elapsed().as_millis() < u128::from(SERVE_WINDOW_MS) {
        let (answered, over, _) = flood_requests(&mut evil, h.a.peer_id(), &request, 1).await;
        assert_eq!((answered, over), (0, 1), "the flooder is refused until its window ends");
    }
    h.stop().await;
}

/// Send one request to `peer` and wait for its answer.
async fn ask(
    swarm: &mut libp2p::Swarm<SyncBehaviour>,
    peer: PeerId,
    request: SyncRequest,
) -> SyncResponse {
    swarm.behaviour_mut().send_request(&peer, request);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REACTION_TIMEOUT_MS);
    loop {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .expect("the node answers in time");
        match event {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            }) => return response,
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                panic!("request failed: {error}")
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_initiator_lying_about_its_difference_estimator_gets_at_most_the_kept_symbols() {
    use protocol::riblt::{ESTIMATOR_BYTES, SKETCH_SYMBOLS_MAX, SYMBOL_BYTES};
    let root = Workflow::people().root;
    let h = Honest::start(&root, None).await;
    let mut evil = raw_swarm::<SyncRequest, SyncResponse>(PROTOCOL);
    connect(&mut evil, h.a.addresses()[0].clone(), h.a.peer_id()).await;
    let held = h.a.client().len();
    let sketch = |estimator: Vec<u8>| SyncRequest::Sketch {
        network: root.network_id().as_bytes().to_vec(),
        start: 0,
        count: 32,
        set_len: held as u64,
        estimator,
    };
    let symbols = |r: SyncResponse| match r {
        SyncResponse::Sketch { symbols, .. } => symbols.len() / SYMBOL_BYTES,
        other => panic!("{other:?}"),
    };
    // Malformed: refused.
    match ask(&mut evil, h.a.peer_id(), sketch(vec![1; 7])).await {
        SyncResponse::Refused { reason } => assert!(reason.contains("estimator"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Counters +-110 from an (almost) empty set's: about 12,100 differences
    // claimed, whose decoding needs about all the symbols kept: all of them,
    // and no more.
    let claim: Vec<u8> = (0..ESTIMATOR_BYTES / 2)
        .flat_map(|j| if j % 2 == 0 { 110u16 } else { 110u16.wrapping_neg() }.to_le_bytes())
        .collect();
    let n = symbols(ask(&mut evil, h.a.peer_id(), sketch(claim)).await);
    assert_eq!(n, SKETCH_SYMBOLS_MAX as usize, "a claim near the kept symbols gets them all");
    // Counters as far off as they go: beyond the kept symbols, so none.
    let far: Vec<u8> = (0..ESTIMATOR_BYTES / 2).flat_map(|_| 0x8000u16.to_le_bytes()).collect();
    assert_eq!(symbols(ask(&mut evil, h.a.peer_id(), sketch(far)).await), 0);
    // Arbitrary bytes: at most the kept symbols.
    for seed in 0..8u64 {
        let raw: Vec<u8> = (0..ESTIMATOR_BYTES as u64 / 32)
            .flat_map(|k| *fake_id(seed * 1_000 + k).as_bytes())
            .collect();
        let n = symbols(ask(&mut evil, h.a.peer_id(), sketch(raw)).await);
        assert!(n <= SKETCH_SYMBOLS_MAX as usize, "{n}");
    }
    // Nothing stored from it; honest work goes on.
    h.responsive().await;
    assert_eq!(h.a.client().len(), held);
    h.honest_work_arrives(&root).await;
    h.honest_peer_served(&root).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_opening_many_connections_keeps_at_most_the_per_peer_limit() {
    use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
    use node::swarm::CONNECTIONS_PER_PEER_MAX;
    let root = Workflow::people().root;
    let h = Honest::start(&root, None).await;
    let mut evil = raw_swarm::<SyncRequest, SyncResponse>(PROTOCOL);
    let target = h.a.peer_id();
    let attempts = CONNECTIONS_PER_PEER_MAX * 3;
    for _ in 0..attempts {
        let opts = DialOpts::peer_id(target)
            .condition(PeerCondition::Always)
            .addresses(vec![h.a.addresses()[0].clone()])
            .build();
        evil.dial(opts).expect("dial");
    }
    // Every attempt ends: established (and kept, or closed by the node), or failed.
    let (mut established, mut closed, mut failed) = (0u32, 0u32, 0u32);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REACTION_TIMEOUT_MS);
    while established + failed < attempts || established - closed > CONNECTIONS_PER_PEER_MAX {
        let event =
            tokio::time::timeout_at(deadline, evil.select_next_some()).await.unwrap_or_else(|_| {
                panic!("{established} established, {closed} closed, {failed} failed")
            });
        match event {
            SwarmEvent::ConnectionEstablished { .. } => established += 1,
            SwarmEvent::ConnectionClosed { .. } => closed += 1,
            SwarmEvent::OutgoingConnectionError { .. } => failed += 1,
            _ => {}
        }
    }
    eprintln!(
        "{attempts} connections attempted: {established} established, {closed} closed by the node, {failed} failed"
    );
    let open = evil.network_info().connection_counters().num_established();
    assert!((1..=CONNECTIONS_PER_PEER_MAX).contains(&open), "{open} connections open");
    assert!(closed + failed >= attempts - CONNECTIONS_PER_PEER_MAX);
    // Honest work goes on.
    h.honest_work_arrives(&root).await;
    h.honest_peer_served(&root).await;
    h.stop().await;
}
