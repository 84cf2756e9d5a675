//! Properties: the fold is a function of the record SET, and hostile bytes never
//! panic the decoder.

use proptest::prelude::*;
use protocol::record::*;
use protocol::testkit::{self, Workflow};
use protocol::{Ledger, Record, fold};

/// A workflow whose outcome depends on every kind of ordering trap: a member who
/// approves then rejects, a superseded result, an equivocation, a revocation, an
/// out-of-threshold release, and two release rounds.
fn tricky() -> Workflow {
    let mut w = Workflow::complete();
    let (b, m0, m1, d0) = (w.benchmark, w.models[0], w.models[1], w.datasets[0]);
    // Member 2 approves model 0, then rejects it (latest wins by seq).
    w.push(
        |w| &mut w.committee[2],
        testkit::decide(b, Subject::Model(m0), Decision::Approve, Some(3)),
    );
    w.push(|w| &mut w.committee[2], testkit::decide(b, Subject::Model(m0), Decision::Reject, None));
    // Member 0 withdraws its approval of model 1: with member 1 alone it is pending.
    w.push(|w| &mut w.committee[0], testkit::decide(b, Subject::Model(m1), Decision::Reject, None));
    // Hospital 0 resubmits a result; the later one counts.
    let resubmitted = w.result(0, m0, d0, 77);
    w.push(|w| &mut w.hospitals[0], resubmitted);
    // Model owner 1 equivocates.
    let mo = w.modelers[1].clone();
    let fork = mo.sign_at(0, None, testkit::container("fork", &["infer"]));
    w.records.push(fork);
    // The admin revokes hospital 2 from its second record on.
    let key = w.hospitals[2].public();
    w.push(
        |w| &mut w.admin,
        Body::KeyRevocation(KeyRevocation { key, from_seq: 1, reason: "test".into() }),
    );
    // A second release round, and a stray one signed by one member only.
    w.release(2, &[1, 2], |m, d| 500_000 + 10_000 * (d as i64) - 1_000 * m as i64).release(
        3,
        &[0],
        |_, _| 1,
    )
}

fn records() -> Vec<Record> {
    tricky().records
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_order_and_any_duplication_gives_the_same_state(
        order in Just(records()).prop_shuffle(),
        dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let w = tricky();
        let reference = fold(&w.root, &w.records);
        let mut shuffled = order.clone();
        for d in &dups {
            shuffled.push(order[d.index(order.len())].clone());
        }
        let state = fold(&w.root, &shuffled);
        prop_assert_eq!(state.hash, reference.hash);
        prop_assert_eq!(state, reference);
    }

    #[test]
    fn deriving_midway_does_not_change_the_final_state(
        order in Just(records()).prop_shuffle(),
        split in any::<prop::sample::Index>(),
    ) {
        let w = tricky();
        let reference = fold(&w.root, &w.records);
        let mut ledger = Ledger::new(w.root.clone());
        let at = split.index(order.len());
        for r in &order[..at] { ledger.insert(r); }
        let _midway = ledger.state();
        for r in &order[at..] { ledger.insert(r); }
        prop_assert_eq!(ledger.state().hash, reference.hash);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_verifier(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let net = tricky().root.network_id();
        let _ = Record::verify(&bytes, &net);
        let _ = Record::peek_id(&bytes);
    }

    #[test]
    fn a_mutated_record_is_refused_or_is_exactly_the_original(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let w = tricky();
        let net = w.root.network_id();
        let r = &w.records[which.index(w.records.len())];
        let mut bytes = r.bytes.to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        match Record::verify(&bytes, &net) {
            Err(_) => {}
            Ok(back) => prop_assert_eq!(back.id, r.id, "a mutation verified as a different record"),
        }
    }
}

#[test]
fn the_tricky_set_really_exercises_the_traps() {
    // Guards the property test: if the fixture stopped containing these, the
    // order-independence property would prove less than it claims.
    let w = tricky();
    let s = fold(&w.root, &w.records);
    assert_eq!(s.equivocations.len(), 1);
    assert_eq!(s.revoked.len(), 1);
    assert!(
        s.results
            .iter()
            .any(|r| r.reason.as_deref() == Some("superseded by the owner's later result"))
    );
    assert!(s.results.iter().any(|r| r.reason.as_deref() == Some("signer's key is revoked")));
    assert_eq!(s.leaderboards[&w.benchmark].release_round, 2);
    let m1 = s.association(&w.benchmark, &Subject::Model(w.models[1])).unwrap();
    assert_eq!(m1.status, protocol::fold::Status::Pending);
}

// ----- authority: revocations before rotations, carried across epochs ----------

/// The authority traps, as a pool of records any subset of which may be held:
/// root admins A0, A1, A2 (threshold two); a rotation to epoch 1 ({N0, N1},
/// threshold one) signed by A0 and A1; A1 revoked by A0 and A2; a participant V
/// revoked from its second record by A0 and A2; N0 revoked by N1 in epoch 1; a
/// rotation to epoch 2 ({A0}, threshold one) signed by N0; and benchmark decisions
/// by every admin, old and new. The benchmark and its containers are always held.
struct AuthorityPool {
    root: protocol::NetworkRoot,
    base: Vec<Record>,
    pool: Vec<Record>,
    benchmark: protocol::RecordId,
    keys: AuthorityKeys,
}

struct AuthorityKeys {
    a1: protocol::PublicKey,
    n0: protocol::PublicKey,
    v: protocol::PublicKey,
}

/// Indexes into `AuthorityPool::pool`.
const ROT1_BY_A0: usize = 0;
const ROT1_BY_A1: usize = 1;
const REV_A1_BY_A0: usize = 2;
const REV_A1_BY_A2: usize = 3;
const REV_V_BY_A0: usize = 4;
const REV_V_BY_A2: usize = 5;
const REV_N0_BY_N1: usize = 6;
const ROT2_BY_N0: usize = 7;
const V_PROFILE_0: usize = 8;
const V_PROFILE_1: usize = 9;

fn authority_pool() -> AuthorityPool {
    use protocol::testkit::Author;
    let labels = ["auth-a0", "auth-a1", "auth-a2"];
    let admins: Vec<_> =
        labels.iter().map(|l| protocol::PublicKey::from(&testkit::key(l))).collect();
    let root = testkit::root(&admins, 2);
    let net = root.network_id();
    let [mut a0, mut a1, mut a2] = labels.map(|l| Author::new(l, net));
    let (mut n0, mut n1) = (Author::new("auth-n0", net), Author::new("auth-n1", net));
    let mut v = Author::new("auth-v", net);
    let mut owner = Author::new("auth-owner", net);
    let prep = owner.sign(testkit::container("prep", &["prepare"]));
    let model = owner.sign(testkit::container("model", &["infer"]));
    let metrics = owner.sign(testkit::container("metrics", &["evaluate"]));
    let bench = owner.sign(Body::Benchmark(testkit::benchmark(
        "b",
        prep.id,
        model.id,
        metrics.id,
        vec![v.public()],
        1,
    )));
    let benchmark = bench.id;
    let rot1 = Body::AdminRotation(AdminRotation {
        epoch: 1,
        admins: vec![n0.public(), n1.public()],
        threshold: 1,
    });
    let revoke = |key, from_seq| {
        Body::KeyRevocation(KeyRevocation { key, from_seq, reason: "property".into() })
    };
    let rot2 =
        Body::AdminRotation(AdminRotation { epoch: 2, admins: vec![a0.public()], threshold: 1 });
    let approve =
        || Body::BenchmarkDecision(BenchmarkDecision { benchmark, decision: Decision::Approve });
    let profile = |name: &str| {
        Body::Profile(Profile {
            name: name.into(),
            organisation: "o".into(),
            x25519: protocol::X25519Key::from_bytes([7; 32]),
        })
    };
    let pool = vec![
        a0.sign(rot1.clone()),
        a1.sign(rot1),
        a0.sign(revoke(a1.public(), 0)),
        a2.sign(revoke(a1.public(), 0)),
        a0.sign(revoke(v.public(), 1)),
        a2.sign(revoke(v.public(), 1)),
        n1.sign(revoke(n0.public(), 0)),
        n0.sign(rot2),
        v.sign(profile("v-first")),
        v.sign(profile("v-second")),
        a0.sign(approve()),
        a1.sign(approve()),
        a2.sign(approve()),
        n0.sign(approve()),
        n1.sign(approve()),
    ];
    let keys = AuthorityKeys { a1: a1.public(), n0: n0.public(), v: v.public() };
    AuthorityPool { root, base: vec![prep, model, metrics, bench], pool, benchmark, keys }
}

/// What the authority rules say of a held subset, computed without the fold.
fn expected_epoch(held: &[bool]) -> u64 {
    let a1_revoked = held[REV_A1_BY_A0] && held[REV_A1_BY_A2];
    if a1_revoked || !(held[ROT1_BY_A0] && held[ROT1_BY_A1]) {
        return 0; // The rotation needs A1's signature, which a revocation voids.
    }
    if held[REV_N0_BY_N1] || !held[ROT2_BY_N0] {
        return 1; // Epoch 1 revokes N0 before counting N0's rotation.
    }
    2
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn authority_is_the_same_for_any_order_and_keeps_its_invariants(
        held in proptest::collection::vec(any::<bool>(), 15),
        order in Just((0..15).collect::<Vec<usize>>()).prop_shuffle(),
        dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let p = authority_pool();
        let chosen: Vec<Record> =
            p.base.iter().cloned().chain(p.pool.iter().zip(&held).filter(|h| *h.1).map(|h| h.0.clone())).collect();
        let reference = fold(&p.root, &chosen);
        let mut shuffled: Vec<Record> = p.base.clone();
        shuffled.extend(order.iter().filter(|i| held[**i]).map(|i| p.pool[*i].clone()));
        for d in &dups {
            shuffled.push(chosen[d.index(chosen.len())].clone());
        }
        shuffled.reverse();
        let state = fold(&p.root, &shuffled);
        prop_assert_eq!(&state, &reference);

        // Revocations apply before their epoch's rotation, and a revoked admin's
        // rotation signature does not count.
        prop_assert_eq!(state.admin_epoch, expected_epoch(&held));
        if held[REV_A1_BY_A0] && held[REV_A1_BY_A2] {
            prop_assert_eq!(state.revoked.get(&p.keys.a1), Some(&0));
            if held[ROT1_BY_A1] {
                let sig = p.pool[ROT1_BY_A1].id;
                prop_assert!(state.ignored.iter().any(|i| i.id == sig && i.reason.contains("revoked")));
            }
        }
        // Revocations carry across epochs: V stays revoked from its second record
        // whatever the later admins do, and its first profile is the one that counts.
        if held[REV_V_BY_A0] && held[REV_V_BY_A2] {
            prop_assert_eq!(state.revoked.get(&p.keys.v), Some(&1));
            let shown = state.profiles.get(&p.keys.v).map(|v| v.id);
            prop_assert_eq!(shown, held[V_PROFILE_0].then_some(p.pool[V_PROFILE_0].id));
            if held[V_PROFILE_1] {
                let second = p.pool[V_PROFILE_1].id;
                prop_assert!(state.ignored.iter().any(|i| i.id == second));
            }
        }
        if state.admin_epoch >= 1 && held[REV_N0_BY_N1] {
            prop_assert_eq!(state.revoked.get(&p.keys.n0), Some(&0));
        }
        // No revoked key's decision counts, and only the current admins' do.
        let view = &state.benchmarks[&p.benchmark];
        for k in view.approvals.iter().chain(&view.rejections) {
            prop_assert!(state.admins.contains(k));
            prop_assert!(!state.revoked.contains_key(k), "a revoked key's decision counts");
        }
    }
}
