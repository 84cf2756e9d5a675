//! The hostile-peer matrix: a peer that gossips raw bytes of its choosing (through
//! [`node::Client::publish_unchecked`], which skips every local check) against three
//! honest nodes on loopback. Each case asserts that the honest nodes refuse the
//! bytes (a Reject lowers the sender's gossip score, which is how the refusal
//! shows from outside; the reason goes to the `medmesh::audit` log) or, for a
//! valid record without authority, keep it without any change to what the fold
//! derives; and that the honest nodes keep serving: a valid record published
//! afterwards still reaches every one of them. Every refusal is also checked in
//! each honest node's refusal log ([`node::Client::refusals`]) with its reason;
//! a valid record without authority is checked in the fold's `ignored` list (or
//! the result's own reason) instead, and must not appear as a refusal.

use node::{Client, Node, PeerId, Source};
use protocol::fold::Status;
use protocol::record::{Body, Decision, KeyRevocation, Subject};
use protocol::testkit::{Author, Workflow, container, decide, request, result, sealed_result};
use protocol::{Record, State};
use tests::*;

/// Deadline for the honest nodes to react to one hostile message.
const REACTION_TIMEOUT_MS: u64 = 30_000;
/// Records in the flood from one key (well above the gossip burst).
const FLOOD_RECORDS: usize = 1_200;

/// Three honest nodes and one hostile node, all holding the baseline records.
struct Arena {
    w: Workflow,
    nodes: Vec<Node>,
    _dirs: Vec<tempfile::TempDir>,
    honest: Vec<Client>,
    evil: Client,
    evil_peer: PeerId,
    baseline: u64,
    facts: String,
    bystander: Author,
    extra: u64,
}

/// What the fold derives that a hostile record must not change: statuses,
/// approvals, releases, leaderboards, revocations, and which results count.
/// (Record counts, the ignored list and the hash may grow with a kept record.)
fn facts(s: &State) -> String {
    let counted: Vec<_> = s.results.iter().filter(|r| r.counts).collect();
    serde_json::to_string(&(
        &s.benchmarks,
        &s.datasets,
        &s.associations,
        &s.releases,
        &s.leaderboards,
        &s.revoked,
        &s.admins,
        &counted,
        &s.equivocations,
    ))
    .expect("state serializes")
}

/// The complete workflow plus pending business a hostile record could tip over:
/// a third model association with one approval of the two it needs, a round-2
/// release signed by one member of the two it needs, and committee member 2's
/// key revoked by the admin.
fn baseline() -> (Workflow, Record, protocol::RecordId) {
    let mut w = Workflow::complete();
    let b = w.benchmark;
    let model = w.push(|w| &mut w.modelers[0], container("model-extra", &["infer"])).id;
    w.push(|w| &mut w.modelers[0], request(b, Subject::Model(model), true));
    w.push(|w| &mut w.committee[0], decide(b, Subject::Model(model), Decision::Approve, Some(1)));
    let revoked = w.committee[2].public();
    w.push(
        |w| &mut w.admin,
        Body::KeyRevocation(KeyRevocation {
            key: revoked,
            from_seq: 0,
            reason: "laptop lost".into(),
        }),
    );
    // Round 2 would change the leaderboard if a second member signed it.
    let round2 = |m: usize, d: usize| 100_000 + 1_000 * m as i64 + d as i64;
    let revoked_signature =
        w.clone().release(2, &[2], round2).records.pop().expect("a release record");
    let w = w.release(2, &[0], round2);
    (w, revoked_signature, model)
}

impl Arena {
    async fn start() -> (Arena, Record, protocol::RecordId) {
        init_tracing();
        let (w, revoked_signature, model) = baseline();
        let (nodes, dirs) = start_many(4, &w.root).await;
        let honest: Vec<Client> = nodes[..3].iter().map(|n| n.client()).collect();
        let evil = nodes[3].client();
        let evil_peer = nodes[3].peer_id();
        submit_all(&honest[0], &w.records).await;
        let all = [honest.clone(), vec![evil.clone()]].concat();
        converged(&all, w.records.len() as u64).await;
        // The hostile node talks to every honest node directly.
        for n in &nodes[1..3] {
            evil.dial(n.addresses()[0].clone()).await.expect("node runs").expect("dial");
        }
        eventually(
            "the hostile node to see every honest node on the topic",
            REACTION_TIMEOUT_MS,
            || async {
                let peers = evil.peers().await.unwrap_or_default();
                nodes[..3].iter().all(|n| {
                    peers.iter().any(|p| p.peer_id == n.peer_id().to_string() && p.subscribed)
                })
            },
        )
        .await;
        let s = honest[0].state();
        let pending =
            s.association(&w.benchmark, &Subject::Model(model)).expect("the extra model's request");
        assert_eq!((pending.status, pending.approvals.len()), (Status::Pending, 1));
        assert!(s.revoked.contains_key(&w.committee[2].public()));
        let facts = facts(&s);
        let baseline = w.records.len() as u64;
        let bystander = Author::new("bystander", w.root.network_id());
        (
            Arena {
                w,
                nodes,
                _dirs: dirs,
                honest,
                evil,
                evil_peer,
                baseline,
                facts,
                bystander,
                extra: 0,
            },
            revoked_signature,
            model,
        )
    }

    /// Gossip `bytes` from the hostile node (retrying until a peer takes them).
    async fn send(&self, bytes: Vec<u8>) {
        eventually("the hostile bytes to be sent", REACTION_TIMEOUT_MS, || {
            let evil = self.evil.clone();
            let bytes = bytes.clone();
            async move { matches!(evil.publish_unchecked(bytes).await, Ok(node::Gossiped::Sent)) }
        })
        .await;
    }

    /// Wait until every honest node has refused something from the hostile peer
    /// (its gossip score is negative there).
    async fn refused_everywhere(&self) {
        let evil = self.evil_peer.to_string();
        eventually(
            "every honest node to score the hostile peer below zero",
            REACTION_TIMEOUT_MS,
            || async {
                for c in &self.honest {
                    let peers = c.peers().await.unwrap_or_default();
                    if !peers.iter().any(|p| p.peer_id == evil && p.score.unwrap_or(0.0) < 0.0) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }

    /// Wait until every honest node's refusal log holds a gossip refusal from the
    /// hostile peer with `reason` (and `id`, when the bytes had one), and return
    /// one node's entry.
    async fn refusal_logged(&self, reason: &str, id: Option<protocol::RecordId>) -> node::Refusal {
        self.refusal_logged_from(&self.evil_peer, reason, id).await
    }

    /// As [`Self::refusal_logged`], for a refusal of what `peer` sent.
    async fn refusal_logged_from(
        &self,
        peer: &PeerId,
        reason: &str,
        id: Option<protocol::RecordId>,
    ) -> node::Refusal {
        let evil = peer.to_string();
        let matches = |r: &node::Refusal| {
            r.reason == reason
                && r.source == Source::Gossip
                && r.peer.as_deref() == Some(evil.as_str())
                && (id.is_none() || r.id == id)
        };
        eventually(
            &format!("every honest node to log a `{reason}` refusal from {evil}"),
            REACTION_TIMEOUT_MS,
            || async { self.honest.iter().all(|c| c.refusals().refused.iter().any(matches)) },
        )
        .await;
        for (i, c) in self.honest.iter().enumerate() {
            let log = c.refusals();
            assert!(
                log.counts.get(reason).copied().unwrap_or(0) >= 1,
                "honest node {i} counts `{reason}`: {:?}",
                log.counts
            );
        }
        self.honest[0].refusals().refused.into_iter().find(matches).expect("the refusal just seen")
    }

    /// No honest node refused anything (valid records, duplicates).
    fn nothing_refused(&self) {
        for (i, c) in self.honest.iter().enumerate() {
            let log = c.refusals();
            assert_eq!(log.refused_total, 0, "honest node {i} refused: {:?}", log.refused);
        }
    }

    /// A second hostile peer, connected to every honest node. (Once a peer's first
    /// invalid record drops its score below the graylist threshold, honest nodes
    /// ignore everything else it sends, so each further hostile message that must
    /// reach validation needs a fresh sender.)
    async fn fresh_peer(&self) -> (Node, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let n = start(dir.path(), &self.w.root, &self.nodes[0].addresses()).await;
        let c = n.client();
        for h in &self.nodes[1..3] {
            c.dial(h.addresses()[0].clone()).await.expect("node runs").expect("dial");
        }
        eventually(
            "the fresh peer to see every honest node on the topic",
            REACTION_TIMEOUT_MS,
            || async {
                let peers = c.peers().await.unwrap_or_default();
                self.nodes[..3].iter().all(|n| {
                    peers.iter().any(|p| p.peer_id == n.peer_id().to_string() && p.subscribed)
                })
            },
        )
        .await;
        (n, dir)
    }

    /// Wait until every honest node holds `id` (a valid record kept without effect).
    async fn held_everywhere(&self, id: &protocol::RecordId) {
        eventually("every honest node to hold the record", REACTION_TIMEOUT_MS, || async {
            self.honest.iter().all(|c| c.contains(id))
        })
        .await;
    }

    /// No honest node's derived facts changed, and each holds exactly the
    /// baseline plus `kept` records (and the bystander's).
    fn unchanged(&self, kept: u64) {
        for (i, c) in self.honest.iter().enumerate() {
            assert_eq!(c.len(), self.baseline + self.extra + kept, "honest node {i} record count");
            assert_eq!(facts(&c.state()), self.facts, "honest node {i} derives the same facts");
        }
    }

    /// A valid record from an honest author, published at an honest node, still
    /// reaches every honest node by gossip.
    async fn still_serving(&mut self) {
        let r = self.bystander.sign(container(&format!("bystander-{}", self.extra), &["infer"]));
        let s = self.honest[1].submit(&r.bytes).await.expect("a valid record is accepted");
        assert!(s.new);
        self.extra += 1;
        eventually(
            "an honest record to reach every honest node after the attack",
            REACTION_TIMEOUT_MS,
            || async { self.honest.iter().all(|c| c.contains(&r.id)) },
        )
        .await;
    }

    async fn stop(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

/// A well-formed envelope prefix (array of 5, version, network id, signer) taken
/// from a real record: the first 70 bytes of its canonical encoding.
fn envelope_prefix(r: &Record) -> Vec<u8> {
    let p = r.bytes[..70].to_vec();
    assert_eq!(
        &p[..4],
        &[0x85, 0x01, 0x58, 0x20],
        "envelope layout: [1, bstr(32) network, bstr(32) signer, ...]"
    );
    p
}

/// An envelope around an arbitrary payload, with an all-zero signature.
/// The byte-string header is in canonical (shortest) form, so that the envelope
/// itself is well formed and what is tested is the payload.
fn envelope_with_payload(r: &Record, payload: &[u8]) -> Vec<u8> {
    let mut b = envelope_prefix(r);
    match payload.len() {
        n if n < 24 => b.push(0x40 + n as u8),
        n if n < 1 << 8 => b.extend_from_slice(&[0x58, n as u8]),
        n if n < 1 << 16 => {
            b.push(0x59);
            b.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            b.push(0x5a);
            b.extend_from_slice(&u32::try_from(n).expect("test payload fits u32").to_be_bytes());
        }
    }
    b.extend_from_slice(payload);
    b.extend_from_slice(&[0x58, 0x40]);
    b.extend_from_slice(&[0u8; 64]);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_signature_is_refused_everywhere() {
    let (mut a, _, _) = Arena::start().await;
    let mut forged = Author::new("mallory", a.w.root.network_id())
        .sign(container("evil", &["infer"]))
        .bytes
        .to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let id = Record::peek_id(&forged).expect("the forgery is well formed");
    a.send(forged).await;
    a.refused_everywhere().await;
    let logged = a.refusal_logged("bad_signature", Some(id)).await;
    assert_eq!(logged.signer, Some(Author::new("mallory", a.w.root.network_id()).public()));
    assert!(a.honest.iter().all(|c| !c.contains(&id)));
    a.unchanged(0);
    a.still_serving().await;
    a.unchanged(0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_signed_for_another_network_is_refused_everywhere() {
    let (mut a, _, _) = Arena::start().await;
    let other = Author::new("admin", protocol::NetworkId::from_bytes([7; 32]))
        .sign(container("elsewhere", &["infer"]));
    a.send(other.bytes.to_vec()).await;
    a.refused_everywhere().await;
    a.refusal_logged("wrong_network", Some(other.id)).await;
    assert!(a.honest.iter().all(|c| !c.contains(&other.id)));
    a.unchanged(0);
    a.still_serving().await;
    a.unchanged(0);
    a.stop().await;
}

/// A model owner whose manifest asks for the hospital's data as a writable output
/// (issue 11: the data was replaced during `benchmark run`). Correctly signed, the
/// record still breaks MedPerf's container contract, so no honest node stores it
/// and no site could ever be asked to run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_container_whose_manifest_writes_the_hospitals_data_is_refused_everywhere() {
    let (mut a, _, _) = Arena::start().await;
    let mut body = container("data-eater", &["infer"]);
    let Body::Container(c) = &mut body else { unreachable!("testkit::container") };
    let data = c.manifest.tasks[0].inputs.remove(0);
    c.manifest.tasks[0].outputs.push(data);
    let bytes = Author::new("mallory", a.w.root.network_id()).sign_unchecked(0, None, body);
    let id = Record::peek_id(&bytes).expect("a well-formed envelope");
    a.send(bytes).await;
    a.refused_everywhere().await;
    let logged = a.refusal_logged("invalid_field", Some(id)).await;
    assert!(logged.message.contains("`data_path` is an input"), "{}", logged.message);
    assert!(a.honest.iter().all(|c| !c.contains(&id)));
    a.unchanged(0);
    a.still_serving().await;
    a.unchanged(0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_record_is_refused_everywhere() {
    let (mut a, _, _) = Arena::start().await;
    // Above the envelope limit but within a gossip message, so it reaches validation.
    let payload = vec![0u8; protocol::limits::ENVELOPE_BYTES_MAX + 1024];
    let big = envelope_with_payload(&a.w.records[0], &payload);
    assert!(
        big.len() > protocol::limits::ENVELOPE_BYTES_MAX
            && big.len() < node::swarm::GOSSIP_MESSAGE_BYTES_MAX
    );
    a.send(big).await;
    a.refused_everywhere().await;
    a.refusal_logged("too_large", None).await;
    a.unchanged(0);
    a.still_serving().await;
    a.unchanged(0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deeply_nested_cbor_is_refused_everywhere_without_a_crash() {
    let (mut a, _, _) = Arena::start().await;
    // Nested arrays as the payload of a well-formed envelope, and bare.
    let depth = 20_000;
    let mut nested = vec![0x81u8; depth];
    nested.push(0x00);
    let in_envelope = envelope_with_payload(&a.w.records[0], &nested);
    let id = Record::peek_id(&in_envelope).expect("the envelope is well formed");
    a.send(in_envelope).await;
    a.refused_everywhere().await;
    // Inside a well-formed envelope the depth limit refuses the payload.
    let logged = a.refusal_logged("bad_payload", Some(id)).await;
    assert!(logged.message.contains("nested deeper"), "{}", logged.message);
    // Bare, the envelope (from a second peer: the first is graylisted by now).
    let (second, _dir) = a.fresh_peer().await;
    let mut bare = vec![0x9fu8; depth]; // indefinite-length arrays, never closed
    bare.push(0x00);
    eventually("the bare nesting to be sent", REACTION_TIMEOUT_MS, || {
        let c = second.client();
        let bare = bare.clone();
        async move { matches!(c.publish_unchecked(bare).await, Ok(node::Gossiped::Sent)) }
    })
    .await;
    a.refusal_logged_from(&second.peer_id(), "bad_envelope", None).await;
    second.shutdown().await;
    a.unchanged(0);
    a.still_serving().await;
    a.unchanged(0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn truncated_bytes_are_refused_everywhere() {
    let (mut a, _, _) = Arena::start().await;
    let fresh = Author::new("truncated", a.w.root.network_id()).sign(container("cut", &["infer"]));
    for cut in [1, fresh.bytes.len() / 2, fresh.bytes.len() - 1] {
        a.send(fresh.bytes[..cut].to_vec()).await;
    }
    a.refused_everywhere().await;
    let logged = a.refusal_logged("bad_envelope", None).await;
    assert_eq!(logged.id, None, "truncated bytes have no record id");
    assert!(a.honest.iter().all(|c| !c.contains(&fresh.id)));
    a.unchanged(0);
    a.still_serving().await;
    a.unchanged(0);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_old_record_changes_nothing() {
    let (mut a, _, _) = Arena::start().await;
    // The hostile node's own gossip layer would drop a message it has seen, so the
    // replay comes from a fresh peer that only ever synced the records.
    let dir = tempfile::tempdir().expect("temp dir");
    let replayer = start(dir.path(), &a.w.root, &a.nodes[0].addresses()).await;
    let r = replayer.client();
    for n in &a.nodes[1..3] {
        r.dial(n.addresses()[0].clone()).await.expect("node runs").expect("dial");
    }
    eventually(
        "the replayer to see every honest node on the topic",
        REACTION_TIMEOUT_MS,
        || async {
            let peers = r.peers().await.unwrap_or_default();
            a.nodes[..3]
                .iter()
                .all(|n| peers.iter().any(|p| p.peer_id == n.peer_id().to_string() && p.subscribed))
        },
    )
    .await;
    // The benchmark's approval and the first release signature, sent again.
    let approval =
        a.w.records.iter().find(|r| r.kind() == "benchmark_decision").expect("an approval").clone();
    let release = a.w.records.iter().find(|r| r.kind() == "release").expect("a release").clone();
    for rec in [approval, release] {
        let bytes = rec.bytes.to_vec();
        eventually("the replay to be sent", REACTION_TIMEOUT_MS, || {
            let r = r.clone();
            let bytes = bytes.clone();
            async move { matches!(r.publish_unchecked(bytes).await, Ok(node::Gossiped::Sent)) }
        })
        .await;
    }
    a.still_serving().await;
    a.unchanged(0);
    // A replay is a duplicate, not an offence: the sender is not penalised.
    let rid = replayer.peer_id().to_string();
    for c in &a.honest {
        let peers = c.peers().await.expect("node runs");
        let score = peers.iter().find(|p| p.peer_id == rid).and_then(|p| p.score).unwrap_or(0.0);
        assert!(score >= 0.0, "replay penalised: {score}");
    }
    // Nor is it logged as a refusal.
    a.nothing_refused();
    replayer.shutdown().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_by_a_non_member_is_kept_but_changes_no_state() {
    let (mut a, _, model) = Arena::start().await;
    let b = a.w.benchmark;
    let mut mallory = Author::new("mallory", a.w.root.network_id());
    // With committee member 0's approval, a second counted approval would approve.
    let approval = mallory.sign(decide(b, Subject::Model(model), Decision::Approve, Some(9)));
    a.send(approval.bytes.to_vec()).await;
    a.held_everywhere(&approval.id).await;
    a.unchanged(1);
    for c in &a.honest {
        let s = c.state();
        let assoc = s.association(&b, &Subject::Model(model)).expect("the request");
        assert_eq!((assoc.status, assoc.approvals.len()), (Status::Pending, 1));
        let why = s
            .ignored
            .iter()
            .find(|i| i.id == approval.id)
            .expect("the approval is reported as ignored");
        assert_eq!(why.reason, "signer is not on the benchmark's committee");
    }
    // Valid, so kept: the fold reports it, the refusal log does not.
    a.nothing_refused();
    a.still_serving().await;
    a.unchanged(1);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_for_someone_elses_dataset_is_kept_but_never_counts() {
    let (mut a, _, _) = Arena::start().await;
    let (b, m, theirs) = (a.w.benchmark, a.w.models[0], a.w.datasets[0]);
    // Hospital 1 submits a result for hospital 0's dataset.
    let stolen = a.w.hospitals[1].clone().sign(result(b, m, theirs, 4242));
    a.send(stolen.bytes.to_vec()).await;
    a.held_everywhere(&stolen.id).await;
    a.unchanged(1);
    for c in &a.honest {
        let s = c.state();
        let v = s.results.iter().find(|r| r.id == stolen.id).expect("the result is listed");
        assert!(!v.counts, "a result for someone else's dataset counts: {v:?}");
        assert_eq!(v.reason.as_deref(), Some("only the dataset's owner can submit its results"));
    }
    a.nothing_refused();
    a.still_serving().await;
    a.unchanged(1);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_sealed_to_nobody_is_kept_but_never_counts() {
    let (mut a, _, _) = Arena::start().await;
    let (b, m, d) = (a.w.benchmark, a.w.models[0], a.w.datasets[0]);
    // Hospital 0 re-submits its own result, readable by nobody: counted, it would
    // stop every committee member's release.
    let unreadable = a.w.hospitals[0].clone().sign(sealed_result(b, m, d, 999_999, &[]));
    a.send(unreadable.bytes.to_vec()).await;
    a.held_everywhere(&unreadable.id).await;
    a.unchanged(1);
    for c in &a.honest {
        let s = c.state();
        let v = s.results.iter().find(|r| r.id == unreadable.id).expect("the result is listed");
        assert!(!v.counts, "a result sealed to nobody counts: {v:?}");
        assert_eq!(v.reason.as_deref(), Some("metrics are sealed to nobody"));
    }
    a.nothing_refused();
    a.still_serving().await;
    a.unchanged(1);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_naming_results_that_do_not_count_is_kept_but_never_shown() {
    let (mut a, _, _) = Arena::start().await;
    // Members 0 and 1 (the threshold) sign a round-9 release with a cell for a
    // dataset that has no result: signed, valid, and a lie (labels are keyed
    // pseudonyms, so the fold sees a table that is no longer complete).
    let mut lie = match &a.w.records.last().expect("member 0's round 2").body {
        Body::Release(r) => r.clone(),
        other => panic!("the baseline ends with a release, not {}", other.kind()),
    };
    lie.round = 9;
    lie.entries[0].dataset = Some("site-00000000".into());
    let sigs: Vec<Record> =
        [0, 1].map(|c| a.w.committee[c].clone().sign(Body::Release(lie.clone()))).into();
    for sig in &sigs {
        a.send(sig.bytes.to_vec()).await;
    }
    for sig in &sigs {
        a.held_everywhere(&sig.id).await;
    }
    a.unchanged(2);
    for c in &a.honest {
        let s = c.state();
        assert_eq!(s.releases[&a.w.benchmark].release.round, 1, "round 1 stays shown");
        for sig in &sigs {
            let why = s.ignored.iter().find(|i| i.id == sig.id).expect("the signature is reported");
            assert_eq!(
                why.reason,
                "release is not a complete table: its models show different datasets"
            );
        }
    }
    a.nothing_refused();
    a.still_serving().await;
    a.unchanged(2);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_keys_decision_and_release_signature_change_nothing() {
    let (mut a, revoked_signature, model) = Arena::start().await;
    let b = a.w.benchmark;
    // Committee member 2 (revoked) signs the round-2 release that member 0 signed
    // (two signatures would meet the threshold and replace the leaderboard), and
    // approves the model that member 0 approved (two approvals would approve it).
    let decision = a.w.committee[2].sign_at(
        revoked_signature.seq + 1,
        Some(revoked_signature.id),
        decide(b, Subject::Model(model), Decision::Approve, Some(3)),
    );
    a.send(revoked_signature.bytes.to_vec()).await;
    a.send(decision.bytes.to_vec()).await;
    a.held_everywhere(&revoked_signature.id).await;
    a.held_everywhere(&decision.id).await;
    a.unchanged(2);
    for c in &a.honest {
        let s = c.state();
        let shown = s.releases.get(&b).expect("round 1 is shown");
        assert_eq!(shown.release.round, 1);
        let assoc = s.association(&b, &Subject::Model(model)).expect("the request");
        assert_eq!((assoc.status, assoc.approvals.len()), (Status::Pending, 1));
        let why = s
            .ignored
            .iter()
            .find(|i| i.id == decision.id)
            .expect("the revoked key's decision is reported as ignored");
        assert!(why.reason.contains("revoked"), "{}", why.reason);
        let why = s
            .ignored
            .iter()
            .find(|i| i.id == revoked_signature.id)
            .expect("the revoked key's release signature is reported as ignored");
        assert!(why.reason.contains("revoked"), "{}", why.reason);
    }
    a.nothing_refused();
    a.still_serving().await;
    a.unchanged(2);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_from_one_valid_key_is_held_by_the_rate_limit_without_hurting_others() {
    init_tracing();
    use node::ratelimit::{GOSSIP_SIGNER_BURST_RECORDS, GOSSIP_SIGNER_RATE_PER_SEC};
    let w = Workflow::complete();
    // Background sync off (only on connect), so what arrives during the flood
    // arrived by gossip.
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..4 {
        let dir = tempfile::tempdir().expect("temp dir");
        let boot = nodes.first().map(|n: &Node| n.addresses()).unwrap_or_default();
        let mut cfg = config(dir.path(), &w.root, &boot);
        cfg.sync_interval = std::time::Duration::from_secs(3600);
        nodes.push(Node::start(cfg).await.expect("node starts"));
        dirs.push(dir);
    }
    let honest: Vec<Client> = nodes[..3].iter().map(|n| n.client()).collect();
    let evil = nodes[3].client();
    submit_all(&honest[0], &w.records).await;
    converged(&[honest.clone(), vec![evil.clone()]].concat(), w.records.len() as u64).await;
    for n in &nodes[1..3] {
        evil.dial(n.addresses()[0].clone()).await.expect("node runs").expect("dial");
    }
    eventually(
        "the flooding node to see every honest node on the topic",
        REACTION_TIMEOUT_MS,
        || async {
            let peers = evil.peers().await.unwrap_or_default();
            nodes[..3]
                .iter()
                .all(|n| peers.iter().any(|p| p.peer_id == n.peer_id().to_string() && p.subscribed))
        },
    )
    .await;

    let flood = bulk_records("flooder", &w.root, FLOOD_RECORDS);
    // The flooding node holds its records (so sync can serve them later), then
    // pushes every one on gossip as fast as it can.
    let (stored, rejected) =
        evil.import(flood.iter().map(|r| r.bytes.to_vec()).collect()).await.expect("import");
    assert_eq!((stored, rejected), (FLOOD_RECORDS as u64, 0));
    let started = std::time::Instant::now();
    for r in &flood {
        evil.publish_unchecked(r.bytes.to_vec()).await.expect("node runs");
    }
    // What gossip let through from the flooding key is bounded by the bucket.
    let elapsed_s = started.elapsed().as_secs() + 2;
    let held: Vec<u64> =
        honest.iter().map(|c| flood.iter().filter(|r| c.contains(&r.id)).count() as u64).collect();
    let bound = GOSSIP_SIGNER_BURST_RECORDS + GOSSIP_SIGNER_RATE_PER_SEC * elapsed_s;
    for (i, h) in held.iter().enumerate() {
        assert!(
            *h <= bound,
            "honest node {i} took {h} flood records by gossip in {elapsed_s} s; the limit allows {bound}"
        );
    }
    assert!(held.iter().all(|h| *h < FLOOD_RECORDS as u64), "the flood was held: {held:?}");
    eprintln!(
        "flood: {FLOOD_RECORDS} records pushed in about {elapsed_s} s; honest nodes took {held:?} by gossip (bound {bound})"
    );
    // What each honest node held back is logged as held (by the rate limit, or
    // because it was busy verifying), never as refused: the records are valid.
    let flooder = Author::new("flooder", w.root.network_id()).public();
    for (i, c) in honest.iter().enumerate() {
        let log = c.refusals();
        eprintln!("honest node {i}: held back {}, refused {}", log.held_total, log.refused_total);
        assert!(log.held.iter().all(|h| h.source == Source::Gossip), "{:?}", log.held);
        for h in &log.held {
            match h.reason.as_ref() {
                node::refusals::RATE_LIMITED => assert_eq!(h.signer, Some(flooder)),
                node::refusals::BUSY => assert!(flood.iter().any(|r| Some(r.id) == h.id)),
                other => panic!("honest node {i} held a flood record for `{other}`"),
            }
        }
        assert_eq!(
            log.refused_total, 0,
            "honest node {i} refused valid records: {:?}",
            log.refused
        );
    }

    // Another signer's record, published at an honest node, still reaches every
    // honest node by gossip while the flood's tail is being held.
    let mut other = Author::new("other-signer", w.root.network_id());
    let honest_rec = other.sign(container("from-an-honest-node", &["infer"]));
    honest[2].submit(&honest_rec.bytes).await.expect("accepted");
    eventually(
        "another signer's record to reach every honest node by gossip",
        REACTION_TIMEOUT_MS,
        || async { honest.iter().all(|c| c.contains(&honest_rec.id)) },
    )
    .await;

    // The flood's records are valid: sync (paced by each receiver) brings them all.
    let total = (w.records.len() + FLOOD_RECORDS + 1) as u64;
    eventually("sync to bring every valid flood record", CONVERGE_TIMEOUT_MS * 2, || async {
        for c in &honest {
            let _ = c.sync_now().await;
        }
        honest.iter().all(|c| c.len() == total)
    })
    .await;
    let h = honest[0].state_hash();
    assert!(honest.iter().all(|c| c.state_hash() == h));
    for n in nodes {
        n.shutdown().await;
    }
}

/// A hostile case not in the matrix, sent by hand to a running node's control API:
/// a record correctly signed for this network whose container name is over its
/// bound. The node answers 422 with the reason, logs the refusal (also when the
/// same bytes come in an import), and its state does not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_record_with_a_field_out_of_bounds_is_refused_by_the_control_api_and_logged() {
    init_tracing();
    let w = Workflow::complete();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = config(dir.path(), &w.root, &[]);
    cfg.control = Some("127.0.0.1:0".parse().expect("a socket address"));
    let n = Node::start(cfg).await.expect("node starts");
    let c = n.client();
    submit_all(&c, &w.records).await;
    let before = (c.len(), c.state_hash());
    let addr = n.control_addr().expect("the control API runs");
    let token = std::fs::read_to_string(dir.path().join(node::node::TOKEN_FILE))
        .expect("the control token");

    let mallory = Author::new("mallory", w.root.network_id());
    let long = "x".repeat(protocol::limits::NAME_BYTES_MAX + 1);
    let bytes = mallory.sign_unchecked(0, None, container(&long, &["infer"]));
    let id = Record::peek_id(&bytes).expect("a well-formed envelope");
    let (status, body) = http(addr, "POST", "/v1/records", Some(token.trim()), &bytes).await;
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "invalid_field");
    assert!(answer["message"].as_str().is_some_and(|m| m.contains("container.name")), "{answer}");

    let (status, body) = http(addr, "GET", "/v1/refusals", None, &[]).await;
    assert_eq!(status, 200);
    let log: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    let entry = &log["refused"][0];
    assert_eq!(entry["reason"], "invalid_field", "{log}");
    assert_eq!(entry["source"], "control");
    assert_eq!(entry["id"], serde_json::json!(id));
    assert!(entry["peer"].is_null() && entry["at_ms"].as_u64().is_some_and(|t| t > 0), "{entry}");
    assert_eq!(log["counts"]["invalid_field"], 1);
    assert_eq!(log["refused_total"], 1);
    assert!(
        log["fold"]["views"]
            .as_array()
            .is_some_and(|v| v.contains(&serde_json::json!("/v1/state/ignored"))),
        "{log}"
    );

    // The same bytes in an import are refused and logged too.
    assert_eq!(c.import(vec![bytes.clone()]).await.expect("import runs"), (0, 1));
    let log = c.refusals();
    assert_eq!(
        (log.refused[0].source, log.refused[0].reason.as_ref(), log.refused[0].id),
        (Source::Import, "invalid_field", Some(id))
    );
    assert_eq!(log.counts["invalid_field"], 2);

    assert!(!c.contains(&id));
    assert_eq!((c.len(), c.state_hash()), before, "a refused record changes no state");
    let (_, body) = http(addr, "GET", "/v1/status", None, &[]).await;
    let status: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    assert_eq!(status["state_hash"], serde_json::json!(before.1));
    n.shutdown().await;
}

/// A node with a control API on loopback, bootstrapped from `boot`.
async fn start_with_control(dir: &std::path::Path, w: &Workflow, boot: &[node::Multiaddr]) -> Node {
    let mut cfg = config(dir, &w.root, boot);
    cfg.control = Some("127.0.0.1:0".parse().expect("a socket address"));
    Node::start(cfg).await.expect("node starts")
}

/// The refusal of `id` from `source` in `c`'s log, if there is one.
fn refusal_of(c: &Client, source: Source, id: protocol::RecordId) -> Option<node::Refusal> {
    c.refusals().refused.into_iter().find(|r| r.source == source && r.id == Some(id))
}

/// One signature rule on every path. Mallory signs two records with signatures no
/// honest signer makes: a nonce commitment `R' = rB + T` with `T` of order 2
/// (when sync, import and reload verified as a batch they took it about half the
/// time, while gossip and submissions refused it: `bad_signature`), and `R` the
/// identity (every batch took it; refused at decode: `malformed_signature`). Each
/// honest node refuses both on gossip, a control API submission, sync from a peer
/// whose store holds them, an import and the reload of its own store at start,
/// each time with the same reason and message in its refusal log; no honest node
/// ever holds them, and honest work goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signatures_with_small_order_components_are_refused_on_every_path_with_one_reason() {
    init_tracing();
    let w = Workflow::complete();
    let mut nodes: Vec<Node> = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("temp dir");
        let boot = nodes.first().map(|n| n.addresses()).unwrap_or_default();
        nodes.push(start_with_control(dir.path(), &w, &boot).await);
        dirs.push(dir);
    }
    let honest: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    submit_all(&honest[0], &w.records).await;
    let baseline = w.records.len() as u64;
    converged(&honest, baseline).await;

    let mallory = Author::new("mallory", w.root.network_id());
    let torsion_body = container("torsion-nonce", &["infer"]);
    let identity_body = container("identity-nonce", &["infer"]);
    // A nonce for which a batch of this record alone passes the batch equation,
    // as it would have for a sync page, an import or a store holding only it.
    let net = w.root.network_id();
    let torsion_signed = (0..64)
        .map(|i| {
            let t = protocol::testkit::torsion(2);
            mallory.sign_with_nonce_offset(
                0,
                None,
                torsion_body.clone(),
                &format!("order-2-{i}"),
                t,
            )
        })
        .find(|b| protocol::testkit::batch_equation_accepts(&net, &[b]))
        .expect("a nonce the batch equation takes, about one in two");
    let crafted = [
        (torsion_signed, torsion_body),
        (mallory.sign_with_identity_r(0, None, identity_body.clone()), identity_body),
    ];
    let ids: Vec<protocol::RecordId> =
        crafted.iter().map(|(b, _)| Record::peek_id(b).expect("well formed")).collect();
    // What every path must answer: the decoder's verdict.
    let verdicts: Vec<protocol::RecordError> = crafted
        .iter()
        .map(|(b, _)| Record::verify(b, &w.root.network_id()).expect_err("refused"))
        .collect();
    assert_eq!(
        verdicts.iter().map(|e| e.kind()).collect::<Vec<_>>(),
        ["bad_signature", "malformed_signature"]
    );

    // Sync and gossip: one hostile peer per record, whose store holds it (so it
    // serves it to every honest node's sync) and which pushes it on gossip.
    let mut hostile = Vec::new();
    for ((bytes, body), id) in crafted.iter().zip(&ids) {
        let dir = tempfile::tempdir().expect("temp dir");
        let n = start(dir.path(), &w.root, &nodes[0].addresses()).await;
        let c = n.client();
        let as_claimed = Record {
            id: *id,
            signer: mallory.public(),
            seq: 0,
            prev: None,
            body: body.clone(),
            bytes: bytes.clone().into(),
        };
        assert_eq!(c.store_unchecked(vec![as_claimed]).expect("stored"), 1);
        for h in &nodes[1..] {
            c.dial(h.addresses()[0].clone()).await.expect("node runs").expect("dial");
        }
        eventually(
            "the hostile peer to see every honest node on the topic",
            REACTION_TIMEOUT_MS,
            || async {
                let peers = c.peers().await.unwrap_or_default();
                nodes.iter().all(|h| {
                    peers.iter().any(|p| p.peer_id == h.peer_id().to_string() && p.subscribed)
                })
            },
        )
        .await;
        eventually("the hostile record to be gossiped", REACTION_TIMEOUT_MS, || {
            let c = c.clone();
            let bytes = bytes.clone();
            async move { matches!(c.publish_unchecked(bytes).await, Ok(node::Gossiped::Sent)) }
        })
        .await;
        hostile.push((n, dir));
    }

    // Control API submissions and imports, at every honest node.
    for (i, n) in nodes.iter().enumerate() {
        let addr = n.control_addr().expect("the control API runs");
        let token = std::fs::read_to_string(dirs[i].path().join(node::node::TOKEN_FILE))
            .expect("the control token");
        for ((bytes, _), verdict) in crafted.iter().zip(&verdicts) {
            let (status, body) = http(addr, "POST", "/v1/records", Some(token.trim()), bytes).await;
            let answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
            assert_eq!(status, 422, "honest node {i}: {answer}");
            assert_eq!(answer["error"], verdict.kind(), "honest node {i}");
            assert!(
                answer["message"].as_str().is_some_and(|m| m.ends_with(&verdict.to_string())),
                "honest node {i}: {answer}"
            );
        }
        let bytes: Vec<Vec<u8>> = crafted.iter().map(|(b, _)| b.clone()).collect();
        assert_eq!(n.client().import(bytes).await.expect("import runs"), (0, 2), "honest node {i}");
    }

    // Every path logged, at every honest node, with the decoder's reason and message.
    let paths = [Source::Gossip, Source::Sync, Source::Control, Source::Import];
    eventually(
        "every honest node to refuse both records on every path",
        CONVERGE_TIMEOUT_MS,
        || async {
            for c in &honest {
                let _ = c.sync_now().await;
            }
            honest.iter().all(|c| {
                ids.iter().all(|id| paths.iter().all(|s| refusal_of(c, *s, *id).is_some()))
            })
        },
    )
    .await;
    for (i, c) in honest.iter().enumerate() {
        for ((id, verdict), (n, _)) in ids.iter().zip(&verdicts).zip(&hostile) {
            for source in paths {
                let r = refusal_of(c, source, *id).expect("seen above");
                assert_eq!(
                    (r.reason.as_ref(), r.message.as_str()),
                    (verdict.kind(), verdict.to_string().as_str()),
                    "honest node {i}, {source:?}"
                );
                if matches!(source, Source::Gossip | Source::Sync) {
                    assert_eq!(
                        r.peer,
                        Some(n.peer_id().to_string()),
                        "honest node {i}, {source:?}"
                    );
                }
            }
            assert!(!c.contains(id), "honest node {i} holds a refused record");
        }
    }

    // The reload at start: the records written straight into an honest node's
    // store (as a bad disk or a hostile tool would) are refused when it starts
    // again, with the same reason, and the node rejoins with the same state.
    let third = nodes.pop().expect("three nodes");
    third.shutdown().await;
    {
        let store = node::store::Store::open(&dirs[2].path().join(node::node::STORE_FILE))
            .expect("the stopped node's store opens");
        let as_claimed: Vec<Record> = crafted
            .iter()
            .zip(&ids)
            .map(|((bytes, body), id)| Record {
                id: *id,
                signer: mallory.public(),
                seq: 0,
                prev: None,
                body: body.clone(),
                bytes: bytes.clone().into(),
            })
            .collect();
        store.put(&as_claimed).expect("written");
        assert_eq!(store.len().expect("counted"), baseline + 2);
    }
    let restarted = start_with_control(dirs[2].path(), &w, &nodes[0].addresses()).await;
    let c = restarted.client();
    for (id, verdict) in ids.iter().zip(&verdicts) {
        let r = refusal_of(&c, Source::Store, *id).expect("the reload refused the record");
        assert_eq!((r.reason.as_ref(), r.message), (verdict.kind(), verdict.to_string()));
        assert!(!c.contains(id));
    }
    assert_eq!(c.len(), baseline);
    nodes.push(restarted);

    // Honest work goes on, and every honest node holds the same records.
    let honest: Vec<Client> = nodes.iter().map(|n| n.client()).collect();
    let mut bystander = Author::new("bystander", w.root.network_id());
    let r = bystander.sign(container("after-the-attack", &["infer"]));
    assert!(honest[1].submit(&r.bytes).await.expect("a valid record is accepted").new);
    converged(&honest, baseline + 1).await;
    for (n, _) in hostile {
        n.shutdown().await;
    }
    for n in nodes {
        n.shutdown().await;
    }
}
