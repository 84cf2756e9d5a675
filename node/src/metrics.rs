//! Counters for operators, served as `GET /metrics` in Prometheus' text format
//! (version 0.0.4): records by kind, peers, gossip in (by verdict) and out,
//! refusals by reason, sync sessions and records, fold runs and time, store size,
//! admission (pool, deferred ids), blobs (held, fetches, pieces by outcome).
//!
//! Gossip counters are atomics bumped where verdicts are reported; records by
//! kind and fold time are counted by the replica; everything else is read at
//! scrape time from the node's own status.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use libp2p::gossipsub::MessageAcceptance;

/// Counters shared by the swarm task, ingestion and the replica.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) gossip_accepted: AtomicU64,
    pub(crate) gossip_ignored: AtomicU64,
    pub(crate) gossip_rejected: AtomicU64,
    pub(crate) gossip_published: AtomicU64,
    /// Every copy of a gossip message received, duplicates and IWANT answers
    /// included (counted before gossipsub's duplicate filter).
    pub(crate) gossip_copies: std::sync::Arc<AtomicU64>,
    /// Time spent verifying and storing gossip records off the swarm task.
    pub(crate) gossip_validation_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn gossip_verdict(&self, v: &MessageAcceptance) {
        let c = match v {
            MessageAcceptance::Accept => &self.gossip_accepted,
            MessageAcceptance::Ignore => &self.gossip_ignored,
            MessageAcceptance::Reject => &self.gossip_rejected,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of everything `/metrics` shows.
pub struct Snapshot {
    pub records_by_kind: Vec<(&'static str, u64)>,
    pub peers: u64,
    pub mesh_peers: u64,
    pub gossip_accepted: u64,
    pub gossip_ignored: u64,
    pub gossip_rejected: u64,
    pub gossip_published: u64,
    /// Gossip message copies received, duplicates included: the duplicates are
    /// this minus the received records (every verdict).
    pub gossip_copies: u64,
    /// Time spent verifying and durably storing gossip records.
    pub gossip_validation_seconds: f64,
    pub refusals_by_reason: Vec<(String, u64)>,
    pub held_total: u64,
    pub sync_completed: u64,
    pub sync_failed: u64,
    pub sync_in_progress: u64,
    pub sync_stored: u64,
    pub sync_rejected: u64,
    pub sync_unrequested: u64,
    pub sync_refused_requests: u64,
    pub fold_runs: u64,
    pub fold_seconds: f64,
    pub store_file_bytes: u64,
    pub store_record_bytes: u64,
    pub pool_requests: u64,
    pub deferred_ids: u64,
    pub admitted_keys: u64,
    /// Blobs held: (complete count, complete bytes, partial count, partial bytes).
    pub blobs: (u64, u64, u64, u64),
    /// Fetches since start by state (`fetching`, `done`, `failed`).
    pub blob_fetches: Vec<(&'static str, u64)>,
    /// Bytes received and verified by the fetches since start.
    pub blob_fetched_bytes: u64,
    /// Pieces peers served this node: verified, corrupt, failed requests.
    pub blob_pieces: (u64, u64, u64),
    pub blob_quota_bytes: u64,
    /// Blob requests from peers since start: pieces served, and requests refused
    /// (busy, over budget, repeated piece).
    pub blob_served: (u64, u64, u64, u64),
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn value(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let l: Vec<String> =
                labels.iter().map(|(k, val)| format!("{k}=\"{}\"", escape(val))).collect();
            let _ = writeln!(self.0, "{name}{{{}}} {v}", l.join(","));
        }
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.value(name, &[], v);
    }
}

/// A label value as the text format wants it.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Snapshot {
    /// The text exposition.
    pub fn render(&self) -> String {
        let mut o = Out(String::new());
        o.family("medmesh_records", "gauge", "Records held, by kind.");
        for (kind, n) in &self.records_by_kind {
            o.value("medmesh_records", &[("kind", kind)], n);
        }
        o.one("medmesh_peers", "gauge", "Connected peers.", self.peers);
        o.one("medmesh_gossip_mesh_peers", "gauge", "Peers in the gossip mesh.", self.mesh_peers);
        o.family(
            "medmesh_gossip_received_total",
            "counter",
            "Gossip records received, by verdict (accept: stored and forwarded; ignore: known, held back or not stored; reject: invalid).",
        );
        for (verdict, n) in [
            ("accept", self.gossip_accepted),
            ("ignore", self.gossip_ignored),
            ("reject", self.gossip_rejected),
        ] {
            o.value("medmesh_gossip_received_total", &[("verdict", verdict)], n);
        }
        o.one(
            "medmesh_gossip_published_total",
            "counter",
            "Records this node published on gossip.",
            self.gossip_published,
        );
        o.one(
            "medmesh_gossip_copies_received_total",
            "counter",
            "Gossip message copies received, duplicates included (minus the records received by verdict: the duplicates).",
            self.gossip_copies,
        );
        o.one(
            "medmesh_gossip_validation_seconds_total",
            "counter",
            "Time spent verifying and durably storing gossip records.",
            self.gossip_validation_seconds,
        );
        o.family(
            "medmesh_refusals_total",
            "counter",
            "Records refused, by reason (the refusal log's reason names).",
        );
        for (reason, n) in &self.refusals_by_reason {
            o.value("medmesh_refusals_total", &[("reason", reason)], n);
        }
        o.one(
            "medmesh_gossip_held_total",
            "counter",
            "Gossip records held back (rate limit, busy), left to sync.",
            self.held_total,
        );
        o.family("medmesh_sync_sessions_total", "counter", "Sync sessions, by outcome.");
        o.value("medmesh_sync_sessions_total", &[("outcome", "completed")], self.sync_completed);
        o.value("medmesh_sync_sessions_total", &[("outcome", "failed")], self.sync_failed);
        o.one(
            "medmesh_sync_sessions_in_progress",
            "gauge",
            "Sync sessions running.",
            self.sync_in_progress,
        );
        o.family("medmesh_sync_records_total", "counter", "Records fetched by sync, by outcome.");
        for (outcome, n) in [
            ("stored", self.sync_stored),
            ("rejected", self.sync_rejected),
            ("unrequested", self.sync_unrequested),
        ] {
            o.value("medmesh_sync_records_total", &[("outcome", outcome)], n);
        }
        o.one(
            "medmesh_sync_requests_refused_total",
            "counter",
            "Peers' sync requests refused (over their budget or queue full).",
            self.sync_refused_requests,
        );
        o.one("medmesh_fold_runs_total", "counter", "Derivations of the state.", self.fold_runs);
        o.one(
            "medmesh_fold_seconds_total",
            "counter",
            "Time spent deriving the state.",
            format!("{:.6}", self.fold_seconds),
        );
        o.one(
            "medmesh_store_file_bytes",
            "gauge",
            "Size of store.redb on disk.",
            self.store_file_bytes,
        );
        o.one(
            "medmesh_store_record_bytes",
            "gauge",
            "Bytes of records held (what the store quota bounds).",
            self.store_record_bytes,
        );
        o.one(
            "medmesh_join_requests_pooled",
            "gauge",
            "Join requests waiting in the pool.",
            self.pool_requests,
        );
        o.one(
            "medmesh_deferred_ids",
            "gauge",
            "Ids refused as not admitted, not fetched again until the admissions change.",
            self.deferred_ids,
        );
        o.one(
            "medmesh_admitted_keys",
            "gauge",
            "Keys that may take part (0 in an open network).",
            self.admitted_keys,
        );
        o.family("medmesh_blobs", "gauge", "Blobs held, complete or partial (being fetched).");
        o.value("medmesh_blobs", &[("state", "complete")], self.blobs.0);
        o.value("medmesh_blobs", &[("state", "partial")], self.blobs.2);
        o.family("medmesh_blob_bytes", "gauge", "Declared bytes of the blobs held.");
        o.value("medmesh_blob_bytes", &[("state", "complete")], self.blobs.1);
        o.value("medmesh_blob_bytes", &[("state", "partial")], self.blobs.3);
        o.one(
            "medmesh_blob_quota_bytes",
            "gauge",
            "The blob store's quota.",
            self.blob_quota_bytes,
        );
        o.family("medmesh_blob_fetches", "gauge", "Blob fetches since start, by state.");
        for (state, n) in &self.blob_fetches {
            o.value("medmesh_blob_fetches", &[("state", state)], n);
        }
        o.one(
            "medmesh_blob_fetched_bytes_total",
            "counter",
            "Bytes received and verified by blob fetches since start.",
            self.blob_fetched_bytes,
        );
        o.family(
            "medmesh_blob_pieces_received_total",
            "counter",
            "Blob pieces peers served this node, by outcome (verified, corrupt: refused and refetched elsewhere, failed: a request that timed out or was refused).",
        );
        o.value(
            "medmesh_blob_pieces_received_total",
            &[("outcome", "verified")],
            self.blob_pieces.0,
        );
        o.value(
            "medmesh_blob_pieces_received_total",
            &[("outcome", "corrupt")],
            self.blob_pieces.1,
        );
        o.value("medmesh_blob_pieces_received_total", &[("outcome", "failed")], self.blob_pieces.2);
        o.family(
            "medmesh_blob_requests_served_total",
            "counter",
            "Blob requests from peers, by outcome: a piece served, or refused as busy (every serving slot taken), over budget (the peer's bytes this window) or repeated piece (the same piece too often this window).",
        );
        let (served, busy, over, repeat) = self.blob_served;
        o.value("medmesh_blob_requests_served_total", &[("outcome", "served")], served);
        o.value("medmesh_blob_requests_served_total", &[("outcome", "busy")], busy);
        o.value("medmesh_blob_requests_served_total", &[("outcome", "over_budget")], over);
        o.value("medmesh_blob_requests_served_total", &[("outcome", "repeated_piece")], repeat);
        o.0
    }
}
