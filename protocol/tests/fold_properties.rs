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
    w.push(|w| &mut w.hospitals[0], testkit::result(b, m0, d0, 77));
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
