//! Answering peers' sync requests, off the swarm task and within a budget per peer.
//!
//! The swarm task admits each inbound request against the peer's [`Budget`]
//! (requests and response bytes per window) and hands it, with its
//! `ResponseChannel`, to a worker over a bounded queue; the worker answers it on a
//! blocking thread (at most [`SERVE_CONCURRENT_MAX`] at once) and hands the
//! response back to the swarm task, which sends it. A request over budget, or one
//! that finds the queue full, is answered at once with
//! [`SyncResponse::Refused`], and logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::request_response::ResponseChannel;
use protocol::RecordId;
use tokio::sync::{Semaphore, mpsc};

use crate::Shared;
use crate::sync::{
    self, FETCH_REQUEST_IDS_MAX, FETCH_RESPONSE_BYTES_MAX, SyncRequest, SyncResponse,
};

/// Sync requests waiting for the worker; beyond it, requests are refused as busy.
pub const SERVE_QUEUE_LEN: usize = 64;
/// Sync requests answered at once (each on a blocking thread).
pub const SERVE_CONCURRENT_MAX: usize = 2;
/// The window a peer's serving budget counts over.
pub const SERVE_WINDOW_MS: u64 = 10_000;
/// Sync requests one peer may make in a window (an honest session makes a few
/// reconciliation rounds and at most `SESSION_IDS_MAX / FETCH_PAGE_RECORDS` = 32
/// fetches).
pub const SERVE_REQUESTS_PER_WINDOW: u32 = 512;
/// Response bytes served to one peer in a window (an honest catch-up of 100,000
/// records measured about 4 MB/s).
pub const SERVE_BYTES_PER_WINDOW: u64 = 256 * 1024 * 1024;
/// Peers whose budget is tracked at once; beyond it, finished windows are
/// forgotten, and while every tracked window is current a new peer is refused.
pub const SERVE_PEERS_TRACKED_MAX: usize = 4096;

/// The reason a request over its peer's budget is refused with.
pub const OVER_BUDGET: &str = "over budget: too many sync requests or bytes; try again later";
/// The reason a request is refused with when the serving queue is full.
pub const BUSY: &str = "busy: too many sync requests queued; try again later";

/// One inbound request on its way to the worker.
pub(crate) struct Job {
    pub(crate) peer: PeerId,
    pub(crate) request: SyncRequest,
    pub(crate) channel: ResponseChannel<SyncResponse>,
}

/// One answer on its way back to the swarm task.
pub(crate) struct Served {
    pub(crate) peer: PeerId,
    pub(crate) channel: ResponseChannel<SyncResponse>,
    pub(crate) response: SyncResponse,
    /// Response bytes to charge to the peer's budget.
    pub(crate) bytes: u64,
}

/// Start the worker: it ends when `jobs` closes (the swarm task stopped).
pub(crate) fn spawn_worker(
    shared: Arc<Shared>,
    mut jobs: mpsc::Receiver<Job>,
    served: mpsc::Sender<Served>,
) {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(SERVE_CONCURRENT_MAX));
        while let Some(job) = jobs.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let shared = shared.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let Job { peer, request, channel } = job;
                let response = tokio::task::spawn_blocking(move || answer(&shared, request))
                    .await
                    .unwrap_or_else(|e| SyncResponse::Refused {
                        reason: format!("serving failed: {e}"),
                    });
                drop(permit);
                let bytes = response_bytes(&response);
                let _ = served.send(Served { peer, channel, response, bytes }).await;
            });
        }
    });
}

/// Answer one request from the replica (blocking: reads the store).
pub(crate) fn answer(shared: &Shared, request: SyncRequest) -> SyncResponse {
    match request {
        SyncRequest::Reconcile { network, msg } => {
            if network.as_slice() != shared.network.as_bytes() {
                return SyncResponse::Refused { reason: "wrong network".into() };
            }
            match shared
                .id_snapshot()
                .map_err(|e| e.to_string())
                .and_then(|s| sync::respond(&s, &msg).map_err(|e| e.to_string()))
            {
                Ok(msg) => SyncResponse::Reconcile { msg },
                Err(e) => SyncResponse::Refused { reason: e },
            }
        }
        SyncRequest::Sketch { network, start, count, set_len, estimator } => {
            if network.as_slice() != shared.network.as_bytes() {
                return SyncResponse::Refused { reason: "wrong network".into() };
            }
            match shared.sketch() {
                Ok(sketch) => sync::answer_sketch(&sketch, start, count, set_len, &estimator),
                Err(e) => SyncResponse::Refused { reason: e.to_string() },
            }
        }
        SyncRequest::Fetch { ids } => {
            if ids.len() > FETCH_REQUEST_IDS_MAX {
                return SyncResponse::Refused {
                    reason: format!("at most {FETCH_REQUEST_IDS_MAX} ids per fetch"),
                };
            }
            let ids: Vec<RecordId> = ids
                .iter()
                .filter_map(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                .map(RecordId::from_bytes)
                .collect();
            match shared.get_many(&ids, FETCH_RESPONSE_BYTES_MAX) {
                Ok((records, truncated)) => SyncResponse::Records {
                    records: records.into_iter().map(serde_bytes::ByteBuf::from).collect(),
                    truncated,
                },
                Err(e) => SyncResponse::Refused { reason: e.to_string() },
            }
        }
    }
}

fn response_bytes(r: &SyncResponse) -> u64 {
    match r {
        SyncResponse::Reconcile { msg } => msg.len() as u64,
        SyncResponse::Sketch { symbols, .. } => symbols.len() as u64,
        SyncResponse::Records { records, .. } => records.iter().map(|b| b.len() as u64).sum(),
        SyncResponse::Refused { reason } => reason.len() as u64,
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    requests: u32,
    bytes: u64,
    /// Whether a refusal in this window was already logged as a warning.
    warned: bool,
}

/// A request refused for its peer's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OverBudget {
    /// The first refusal in this window (log it louder than the rest).
    pub(crate) first: bool,
}

/// Requests and response bytes per peer, counted over fixed windows of
/// [`SERVE_WINDOW_MS`].
#[derive(Debug)]
pub(crate) struct Budget {
    requests_max: u32,
    bytes_max: u64,
    window: Duration,
    peers: HashMap<PeerId, Window>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(
            SERVE_REQUESTS_PER_WINDOW,
            SERVE_BYTES_PER_WINDOW,
            Duration::from_millis(SERVE_WINDOW_MS),
        )
    }
}

impl Budget {
    pub(crate) fn new(requests_max: u32, bytes_max: u64, window: Duration) -> Self {
        Budget { requests_max, bytes_max, window, peers: HashMap::new() }
    }

    /// The peer's current window; None when [`SERVE_PEERS_TRACKED_MAX`] other
    /// peers have current windows.
    fn current(&mut self, peer: PeerId, now: Instant) -> Option<&mut Window> {
        if !self.peers.contains_key(&peer) && self.peers.len() >= SERVE_PEERS_TRACKED_MAX {
            let window = self.window;
            self.peers.retain(|_, w| now.saturating_duration_since(w.started) < window);
            if self.peers.len() >= SERVE_PEERS_TRACKED_MAX {
                return None;
            }
        }
        let fresh = Window { started: now, requests: 0, bytes: 0, warned: false };
        let w = self.peers.entry(peer).or_insert(fresh);
        if now.saturating_duration_since(w.started) >= self.window {
            *w = fresh;
        }
        Some(w)
    }

    /// Count one request from `peer` at `now`, or refuse it: the peer made
    /// `requests_max` requests or was served `bytes_max` bytes in this window
    /// (or too many other peers are being tracked).
    pub(crate) fn admit(&mut self, peer: PeerId, now: Instant) -> Result<(), OverBudget> {
        let (requests_max, bytes_max) = (self.requests_max, self.bytes_max);
        let Some(w) = self.current(peer, now) else { return Err(OverBudget { first: false }) };
        if w.requests >= requests_max || w.bytes >= bytes_max {
            let first = !w.warned;
            w.warned = true;
            return Err(OverBudget { first });
        }
        w.requests += 1;
        Ok(())
    }

    /// Charge the bytes of a response served to `peer`.
    pub(crate) fn charge(&mut self, peer: PeerId, bytes: u64, now: Instant) {
        if let Some(w) = self.current(peer, now) {
            w.bytes = w.bytes.saturating_add(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_over_its_request_budget_is_refused_until_the_window_ends() {
        let mut b = Budget::new(3, u64::MAX, Duration::from_secs(10));
        let (greedy, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.admit(greedy, t0), Ok(()));
        }
        assert_eq!(b.admit(greedy, t0), Err(OverBudget { first: true }));
        assert_eq!(b.admit(greedy, t0), Err(OverBudget { first: false }));
        assert_eq!(b.admit(other, t0), Ok(()), "another peer has its own budget");
        assert_eq!(b.admit(greedy, t0 + Duration::from_secs(10)), Ok(()), "a new window");
    }

    #[test]
    fn tracked_peers_are_bounded_and_finished_windows_make_room() {
        let mut b = Budget::new(1, u64::MAX, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..SERVE_PEERS_TRACKED_MAX {
            assert_eq!(b.admit(PeerId::random(), t0), Ok(()));
        }
        let late = PeerId::random();
        assert!(b.admit(late, t0).is_err(), "every tracked window is current");
        assert_eq!(b.peers.len(), SERVE_PEERS_TRACKED_MAX);
        assert_eq!(b.admit(late, t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(b.peers.len(), 1, "finished windows were forgotten");
    }

    #[test]
    fn a_peer_served_its_byte_budget_is_refused_until_the_window_ends() {
        let mut b = Budget::new(u32::MAX, 1000, Duration::from_secs(10));
        let peer = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(b.admit(peer, t0), Ok(()));
        b.charge(peer, 999, t0);
        assert_eq!(b.admit(peer, t0), Ok(()), "under the byte budget");
        b.charge(peer, 1, t0);
        assert_eq!(b.admit(peer, t0), Err(OverBudget { first: true }));
        assert_eq!(b.admit(peer, t0 + Duration::from_secs(11)), Ok(()));
    }
}
