//! The fold's authorization rules, one test per rule. Each test builds records from
//! several keys with `testkit::Workflow` and asserts the derived state.

use protocol::fold::Status;
use protocol::record::*;
use protocol::testkit::{self, Author, Workflow};
use protocol::{PublicKey, Record, State, fold};

fn state(w: &Workflow) -> State {
    fold(&w.root, &w.records)
}

fn assoc(s: &State, w: &Workflow, subject: Subject) -> Status {
    s.association(&w.benchmark, &subject).map(|a| a.status).expect("association exists")
}

fn bench_status(s: &State, w: &Workflow) -> Status {
    s.benchmarks[&w.benchmark].status
}

fn model(w: &Workflow, i: usize) -> Subject {
    Subject::Model(w.models[i])
}

fn data(w: &Workflow, i: usize) -> Subject {
    Subject::Dataset(w.datasets[i])
}

fn counted_results(s: &State) -> usize {
    s.results.iter().filter(|r| r.counts).count()
}

// ----- benchmarks -------------------------------------------------------------

#[test]
fn a_benchmark_is_pending_until_the_admin_approves_it() {
    let w = Workflow::people().with_benchmark(|_| {});
    assert_eq!(bench_status(&state(&w), &w), Status::Pending);
    let w = w.approve_benchmark();
    assert_eq!(bench_status(&state(&w), &w), Status::Approved);
}

#[test]
fn a_benchmark_decision_by_a_non_admin_changes_nothing_and_is_reported() {
    let mut w = Workflow::people().with_benchmark(|_| {});
    let b = w.benchmark;
    let stray = w.push(
        |w| &mut w.hospitals[0],
        Body::BenchmarkDecision(BenchmarkDecision { benchmark: b, decision: Decision::Approve }),
    );
    let s = state(&w);
    assert_eq!(bench_status(&s, &w), Status::Pending);
    assert!(s.ignored.iter().any(|i| i.id == stray.id && i.reason.contains("not an admin")));
}

#[test]
fn the_admins_latest_decision_counts_so_a_rejection_revokes_an_approval() {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark();
    let b = w.benchmark;
    let reject = w.push(
        |w| &mut w.admin,
        Body::BenchmarkDecision(BenchmarkDecision { benchmark: b, decision: Decision::Reject }),
    );
    assert_eq!(bench_status(&state(&w), &w), Status::Rejected);
    // Arrival order does not matter: the rejection first gives the same outcome.
    let mut reordered = w.records.clone();
    reordered.retain(|r| r.id != reject.id);
    reordered.insert(0, reject);
    assert_eq!(fold(&w.root, &reordered).hash, state(&w).hash);
}

#[test]
fn a_benchmark_whose_containers_are_unknown_is_not_approved() {
    let w = Workflow::people().with_benchmark(|_| {}).approve_benchmark();
    let without_metrics: Vec<Record> =
        w.records.iter().filter(|r| r.id != w.metrics).cloned().collect();
    let s = fold(&w.root, &without_metrics);
    let view = &s.benchmarks[&w.benchmark];
    assert_eq!(view.status, Status::Pending);
    assert_eq!(view.missing_containers, vec![w.metrics]);
}

#[test]
fn admin_threshold_requires_distinct_admins() {
    // Two admins, threshold two: one approval (even twice) is not enough.
    let keys = [testkit::key("admin-a"), testkit::key("admin-b")];
    let pubs: Vec<PublicKey> = keys.iter().map(PublicKey::from).collect();
    let root = testkit::root(&pubs, 2);
    let net = root.network_id();
    let mut owner = Author::new("owner", net);
    let prep = owner.sign(testkit::container("prep", &["prepare"]));
    let model = owner.sign(testkit::container("model", &["infer"]));
    let metrics = owner.sign(testkit::container("metrics", &["evaluate"]));
    let committee = vec![Author::new("c", net).public()];
    let bench = owner.sign(Body::Benchmark(testkit::benchmark(
        "b", prep.id, model.id, metrics.id, committee, 1,
    )));
    let mut admin_a = Author::new("admin-a", net);
    let mut admin_b = Author::new("admin-b", net);
    let approve = || {
        Body::BenchmarkDecision(BenchmarkDecision {
            benchmark: bench.id,
            decision: Decision::Approve,
        })
    };
    let mut records =
        vec![prep, model, metrics, bench.clone(), admin_a.sign(approve()), admin_a.sign(approve())];
    assert_eq!(fold(&root, &records).benchmarks[&bench.id].status, Status::Pending);
    records.push(admin_b.sign(approve()));
    assert_eq!(fold(&root, &records).benchmarks[&bench.id].status, Status::Approved);
}

// ----- associations -----------------------------------------------------------

#[test]
fn an_association_needs_threshold_committee_approvals() {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark().request_models();
    let (b, m) = (w.benchmark, model(&w, 0));
    assert_eq!(assoc(&state(&w), &w, m), Status::Pending);
    w.push(|w| &mut w.committee[0], testkit::decide(b, m, Decision::Approve, None));
    assert_eq!(assoc(&state(&w), &w, m), Status::Pending, "one of a threshold of two");
    w.push(|w| &mut w.committee[0], testkit::decide(b, m, Decision::Approve, None));
    assert_eq!(assoc(&state(&w), &w, m), Status::Pending, "the same member twice is still one");
    w.push(|w| &mut w.committee[1], testkit::decide(b, m, Decision::Approve, None));
    assert_eq!(assoc(&state(&w), &w, m), Status::Approved);
}

#[test]
fn a_decision_by_someone_outside_the_committee_changes_nothing() {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark().request_models();
    let (b, m) = (w.benchmark, model(&w, 0));
    w.push(|w| &mut w.committee[0], testkit::decide(b, m, Decision::Approve, None));
    let stray = w.push(|w| &mut w.hospitals[2], testkit::decide(b, m, Decision::Approve, None));
    let s = state(&w);
    assert_eq!(assoc(&s, &w, m), Status::Pending);
    assert!(s.ignored.iter().any(|i| i.id == stray.id && i.reason.contains("committee")));
}

#[test]
fn the_initiator_cannot_approve_its_own_request() {
    // Committee member 0 also owns a model and requests its association.
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark();
    let own = w.push(|w| &mut w.committee[0], testkit::container("own-model", &["infer"])).id;
    let b = w.benchmark;
    let s = Subject::Model(own);
    w.push(|w| &mut w.committee[0], testkit::request(b, s, true));
    w.push(|w| &mut w.committee[0], testkit::decide(b, s, Decision::Approve, None));
    w.push(|w| &mut w.committee[1], testkit::decide(b, s, Decision::Approve, None));
    let st = state(&w);
    assert_eq!(st.association(&b, &s).unwrap().status, Status::Pending);
    assert_eq!(st.association(&b, &s).unwrap().approvals, vec![w.committee[1].public()]);
    w.push(|w| &mut w.committee[2], testkit::decide(b, s, Decision::Approve, None));
    assert_eq!(state(&w).association(&b, &s).unwrap().status, Status::Approved);
}

#[test]
fn a_subject_flooded_with_decisions_counts_each_members_latest_in_any_order() {
    // More decisions on one association than the fold keeps in a list: each
    // member's latest still counts, whatever the arrival order.
    let mut w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .request_models()
        .approve_all();
    let (b, m) = (w.benchmark, model(&w, 1));
    for i in 0..40 {
        let d = if i % 2 == 0 { Decision::Reject } else { Decision::Approve };
        w.push(|w| &mut w.committee[1], testkit::decide(b, m, d, Some(i)));
        w.push(|w| &mut w.committee[2], testkit::decide(b, m, d, Some(i)));
    }
    // Member 1 ends on a rejection, member 2 on an approval (priority 39);
    // member 0 approved once (priority 1): approved, at the lower median.
    w.push(|w| &mut w.committee[1], testkit::decide(b, m, Decision::Reject, None));
    let s = state(&w);
    let a = s.association(&b, &m).unwrap();
    let mut approvers = vec![w.committee[0].public(), w.committee[2].public()];
    approvers.sort();
    assert_eq!(a.status, Status::Approved);
    assert_eq!(a.rejections, vec![w.committee[1].public()]);
    assert_eq!((a.approvals.clone(), a.priority), (approvers, 1));
    let mut reversed = w.records.clone();
    reversed.reverse();
    assert_eq!(fold(&w.root, &reversed), s);
}

#[test]
fn a_members_later_rejection_revokes_its_approval() {
    let mut w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .request_models()
        .approve_all();
    let (b, m) = (w.benchmark, model(&w, 1));
    assert_eq!(assoc(&state(&w), &w, m), Status::Approved);
    w.push(|w| &mut w.committee[1], testkit::decide(b, m, Decision::Reject, None));
    let s = state(&w);
    assert_eq!(assoc(&s, &w, m), Status::Pending);
    assert_eq!(s.association(&b, &m).unwrap().rejections, vec![w.committee[1].public()]);
}

#[test]
fn latest_means_highest_seq_in_the_members_chain_not_arrival() {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark().request_models();
    let (b, m) = (w.benchmark, model(&w, 0));
    let approve = w.push(|w| &mut w.committee[0], testkit::decide(b, m, Decision::Approve, None));
    let reject = w.push(|w| &mut w.committee[0], testkit::decide(b, m, Decision::Reject, None));
    assert!(reject.seq > approve.seq);
    let mut backwards = w.records.clone();
    backwards.reverse();
    let s = fold(&w.root, &backwards);
    assert_eq!(s.association(&b, &m).unwrap().rejections, vec![w.committee[0].public()]);
    assert!(s.association(&b, &m).unwrap().approvals.is_empty());
}

#[test]
fn threshold_rejections_reject_an_association() {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark().request_models();
    let (b, m) = (w.benchmark, model(&w, 0));
    w.push(|w| &mut w.committee[0], testkit::decide(b, m, Decision::Reject, None));
    assert_eq!(assoc(&state(&w), &w, m), Status::Pending);
    w.push(|w| &mut w.committee[2], testkit::decide(b, m, Decision::Reject, None));
    assert_eq!(assoc(&state(&w), &w, m), Status::Rejected);
}

#[test]
fn auto_approval_always_approves_passed_requests_without_the_committee() {
    let w = Workflow::people()
        .with_benchmark(|b| b.model_auto_approval = AutoApproval::Always)
        .approve_benchmark()
        .request_models();
    let s = state(&w);
    let a = s.association(&w.benchmark, &model(&w, 0)).unwrap();
    assert_eq!((a.status, a.auto_approved), (Status::Approved, true));
    // ...but only for models: datasets stay under NEVER.
    let w = w.register_datasets();
    assert_eq!(assoc(&state(&w), &w, data(&w, 0)), Status::Pending);
}

#[test]
fn auto_approval_allowlist_approves_only_listed_initiators() {
    let allowed = PublicKey::from(&testkit::key("model-owner-1"));
    let w = Workflow::people()
        .with_benchmark(|b| b.model_auto_approval = AutoApproval::Allowlist(vec![allowed]))
        .approve_benchmark()
        .request_models();
    let s = state(&w);
    assert_eq!(assoc(&s, &w, model(&w, 0)), Status::Pending);
    assert_eq!(assoc(&s, &w, model(&w, 1)), Status::Approved);
}

#[test]
fn auto_approval_is_revoked_by_threshold_rejections() {
    let mut w = Workflow::people()
        .with_benchmark(|b| b.model_auto_approval = AutoApproval::Always)
        .approve_benchmark()
        .request_models();
    let (b, m) = (w.benchmark, model(&w, 0));
    w.push(|w| &mut w.committee[0], testkit::decide(b, m, Decision::Reject, None));
    assert_eq!(assoc(&state(&w), &w, m), Status::Approved, "one rejection is below threshold");
    w.push(|w| &mut w.committee[1], testkit::decide(b, m, Decision::Reject, None));
    assert_eq!(assoc(&state(&w), &w, m), Status::Rejected);
}

#[test]
fn a_failed_compatibility_test_cannot_be_approved() {
    let mut w = Workflow::people()
        .with_benchmark(|b| b.model_auto_approval = AutoApproval::Always)
        .approve_benchmark();
    let (b, m) = (w.benchmark, model(&w, 0));
    w.push(|w| &mut w.modelers[0], testkit::request(b, m, false));
    w.push(|w| &mut w.committee[0], testkit::decide(b, m, Decision::Approve, None));
    w.push(|w| &mut w.committee[1], testkit::decide(b, m, Decision::Approve, None));
    assert_eq!(assoc(&state(&w), &w, m), Status::FailedCompatibility);
}

#[test]
fn only_the_owner_of_a_model_can_request_its_association() {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark();
    let (b, m) = (w.benchmark, model(&w, 0));
    let stray = w.push(|w| &mut w.modelers[1], testkit::request(b, m, true));
    let s = state(&w);
    assert!(s.association(&b, &m).is_none());
    assert!(s.ignored.iter().any(|i| i.id == stray.id));
}

#[test]
fn model_priority_is_the_lower_median_of_approving_members() {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark().request_models();
    let (b, m) = (w.benchmark, model(&w, 0));
    for (c, p) in [(0, 5), (1, 9), (2, 1)] {
        w.push(|w| &mut w.committee[c], testkit::decide(b, m, Decision::Approve, Some(p)));
    }
    assert_eq!(state(&w).association(&b, &m).unwrap().priority, 5);
}

// ----- datasets and results ---------------------------------------------------

#[test]
fn the_complete_workflow_counts_every_result_and_ranks_the_better_model_first() {
    let w = Workflow::complete();
    let s = state(&w);
    assert_eq!(counted_results(&s), 6);
    let lb = &s.leaderboards[&w.benchmark];
    let order: Vec<_> = lb.rows.iter().map(|r| (r.rank, r.model)).collect();
    assert_eq!(order, vec![(1, w.models[1]), (2, w.models[0])]);
    // Mean over three datasets of 850_000 + 1_000 * d.
    assert_eq!(lb.rows[0].value, protocol::metric::Figure::Millionths(851_000));
    assert_eq!(lb.rows[0].datasets, 3);
}

#[test]
fn only_the_datasets_owner_can_submit_its_results() {
    let mut w = Workflow::complete();
    let (b, m, d) = (w.benchmark, w.models[0], w.datasets[0]);
    let forged = w.push(|w| &mut w.hospitals[1], testkit::result(b, m, d, 99));
    let s = state(&w);
    let v = s.results.iter().find(|r| r.id == forged.id).unwrap();
    assert!(!v.counts);
    assert_eq!(v.reason.as_deref(), Some("only the dataset's owner can submit its results"));
    assert_eq!(counted_results(&s), 6);
}

#[test]
fn results_do_not_count_for_an_unapproved_benchmark() {
    let w = Workflow::people()
        .with_benchmark(|_| {})
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results();
    let s = state(&w);
    assert_eq!(counted_results(&s), 0);
    assert!(s.results.iter().all(|r| r.reason.as_deref() == Some("benchmark is not approved")));
}

#[test]
fn results_do_not_count_without_an_approved_dataset_association() {
    let w = Workflow::people()
        .with_benchmark(|b| b.model_auto_approval = AutoApproval::Always)
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .submit_results();
    let s = state(&w);
    assert_eq!(counted_results(&s), 0);
    assert!(
        s.results
            .iter()
            .all(|r| r.reason.as_deref() == Some("dataset association is not approved"))
    );
}

#[test]
fn results_do_not_count_without_an_approved_model_association() {
    let w = Workflow::people()
        .with_benchmark(|b| b.dataset_auto_approval = AutoApproval::Always)
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .submit_results();
    let s = state(&w);
    assert_eq!(counted_results(&s), 0);
    assert!(
        s.results.iter().all(|r| r.reason.as_deref() == Some("model association is not approved"))
    );
}

#[test]
fn results_count_only_for_operational_datasets_and_the_owner_can_make_one_operational() {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark();
    let b = w.benchmark;
    let body = w.dataset(0, "dev-data", DatasetState::Development);
    let d = w.push(|w| &mut w.hospitals[0], body).id;
    w.datasets.push(d);
    w.push(|w| &mut w.hospitals[0], testkit::request(b, Subject::Dataset(d), true));
    let w = w.request_models().approve_all();
    let mut w = w;
    let m = w.models[0];
    let body = w.result(0, m, d, 1);
    w.push(|w| &mut w.hospitals[0], body);
    let s = state(&w);
    assert_eq!(counted_results(&s), 0);
    assert_eq!(
        s.results.get(0).and_then(|r| r.reason).as_deref(),
        Some("dataset is not operational")
    );

    // Someone else cannot flip it.
    let h = protocol::Hash32::of(b"new");
    w.push(
        |w| &mut w.hospitals[1],
        Body::DatasetOperational(DatasetOperational { dataset: d, prepared_hash: h }),
    );
    assert_eq!(counted_results(&state(&w)), 0);
    // The owner can, and the recomputed hash replaces the registered one.
    w.push(
        |w| &mut w.hospitals[0],
        Body::DatasetOperational(DatasetOperational { dataset: d, prepared_hash: h }),
    );
    let s = state(&w);
    assert_eq!(counted_results(&s), 1);
    assert_eq!(s.datasets[&d].prepared_hash, h);
}

#[test]
fn the_owners_latest_result_supersedes_earlier_ones() {
    let mut w = Workflow::complete();
    let (m, d) = (w.models[0], w.datasets[0]);
    let body = w.result(0, m, d, 42);
    let newer = w.push(|w| &mut w.hospitals[0], body);
    let s = state(&w);
    let for_pair: Vec<_> = s.results.iter().filter(|r| r.model == m && r.dataset == d).collect();
    assert_eq!(for_pair.len(), 2);
    assert!(for_pair.iter().find(|r| r.id == newer.id).unwrap().counts);
    assert_eq!(for_pair.iter().filter(|r| r.counts).count(), 1);
}

// ----- revocation, rotation, equivocation ---------------------------------------

#[test]
fn a_revoked_member_loses_authority_from_the_revoked_seq_on() {
    let mut w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .request_models()
        .approve_all();
    let m = model(&w, 0);
    assert_eq!(assoc(&state(&w), &w, m), Status::Approved);
    let key = w.committee[1].public();
    w.push(
        |w| &mut w.admin,
        Body::KeyRevocation(KeyRevocation { key, from_seq: 0, reason: "lost laptop".into() }),
    );
    let s = state(&w);
    assert_eq!(s.revoked.get(&key), Some(&0));
    assert_eq!(assoc(&s, &w, m), Status::Pending);
}

#[test]
fn a_revocation_not_signed_by_the_admin_threshold_has_no_effect() {
    let mut w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .request_models()
        .approve_all();
    let key = w.committee[1].public();
    w.push(
        |w| &mut w.committee[0],
        Body::KeyRevocation(KeyRevocation { key, from_seq: 0, reason: "coup".into() }),
    );
    let s = state(&w);
    assert!(s.revoked.is_empty());
    assert_eq!(assoc(&s, &w, model(&w, 0)), Status::Approved);
}

#[test]
fn a_rotated_out_admin_loses_authority_and_the_new_admin_gains_it() {
    let mut w = Workflow::people().with_benchmark(|_| {});
    let new_admin = Author::new("admin-2", w.root.network_id());
    let rotation = AdminRotation { epoch: 1, admins: vec![new_admin.public()], threshold: 1 };
    w.push(|w| &mut w.admin, Body::AdminRotation(rotation));
    let w = w.approve_benchmark(); // signed by the old admin
    let s = state(&w);
    assert_eq!((s.admin_epoch, s.admins.clone()), (1, vec![new_admin.public()]));
    assert_eq!(bench_status(&s, &w), Status::Pending);
    let mut w = w;
    w.admin = new_admin;
    let w = w.approve_benchmark();
    assert_eq!(bench_status(&state(&w), &w), Status::Approved);
}

#[test]
fn a_rotation_does_not_unrevoke_keys_the_previous_admins_revoked() {
    // Regression: rotations were computed first and revocations counted under the
    // last admins only, so handing over silently restored every revoked key.
    let mut w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .request_models()
        .approve_all();
    let key = w.committee[1].public();
    w.push(
        |w| &mut w.admin,
        Body::KeyRevocation(KeyRevocation { key, from_seq: 0, reason: "lost laptop".into() }),
    );
    let new_admin = Author::new("admin-2", w.root.network_id());
    let rotation = AdminRotation { epoch: 1, admins: vec![new_admin.public()], threshold: 1 };
    w.push(|w| &mut w.admin, Body::AdminRotation(rotation));
    let s = state(&w);
    assert_eq!(s.admin_epoch, 1);
    assert_eq!(s.revoked.get(&key), Some(&0), "the revocation carries into epoch 1");
    assert_eq!(assoc(&s, &w, model(&w, 0)), Status::Pending);
}

#[test]
fn an_epochs_revocations_apply_before_its_rotation_so_a_revoked_admins_signature_does_not_count() {
    // Two root admins, threshold one. Admin A revokes admin B; B, revoked, signs a
    // rotation that would hand the network to B alone.
    let keys = [testkit::key("admin-a"), testkit::key("admin-b")];
    let pubs: Vec<PublicKey> = keys.iter().map(PublicKey::from).collect();
    let root = testkit::root(&pubs, 1);
    let net = root.network_id();
    let (mut a, mut b) = (Author::new("admin-a", net), Author::new("admin-b", net));
    let coup = AdminRotation { epoch: 1, admins: vec![b.public()], threshold: 1 };
    let rotation = b.sign(Body::AdminRotation(coup));
    let revocation = a.sign(Body::KeyRevocation(KeyRevocation {
        key: b.public(),
        from_seq: 0,
        reason: "stolen".into(),
    }));
    for records in [vec![rotation.clone(), revocation.clone()], vec![revocation, rotation.clone()]]
    {
        let s = fold(&root, &records);
        assert_eq!((s.admin_epoch, s.admins.len()), (0, 2), "the rotation took effect");
        assert_eq!(s.revoked.get(&b.public()), Some(&0));
        let why = s.ignored.iter().find(|i| i.id == rotation.id).expect("the rotation is reported");
        assert!(why.reason.contains("revoked"), "{}", why.reason);
    }
}

#[test]
fn a_later_epochs_revocations_join_the_earlier_ones() {
    let mut w = Workflow::people().with_benchmark(|_| {});
    let mut new_admin = Author::new("admin-2", w.root.network_id());
    let (h0, h1) = (w.hospitals[0].public(), w.hospitals[1].public());
    w.push(
        |w| &mut w.admin,
        Body::KeyRevocation(KeyRevocation { key: h0, from_seq: 0, reason: "epoch 0".into() }),
    );
    let rotation = AdminRotation { epoch: 1, admins: vec![new_admin.public()], threshold: 1 };
    w.push(|w| &mut w.admin, Body::AdminRotation(rotation));
    // A revocation by someone who is no admin in any epoch changes nothing.
    w.push(
        |w| &mut w.owner,
        Body::KeyRevocation(KeyRevocation { key: h1, from_seq: 0, reason: "not mine".into() }),
    );
    let s = state(&w);
    assert_eq!(s.revoked.keys().copied().collect::<Vec<_>>(), vec![h0]);
    w.records.push(new_admin.sign(Body::KeyRevocation(KeyRevocation {
        key: h1,
        from_seq: 2,
        reason: "epoch 1".into(),
    })));
    let s = state(&w);
    assert_eq!((s.admin_epoch, s.revoked.get(&h0), s.revoked.get(&h1)), (1, Some(&0), Some(&2)));
}

#[test]
fn an_equivocating_member_is_reported_and_its_decisions_count_for_nothing() {
    let mut w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .request_models()
        .approve_all();
    let (b, m) = (w.benchmark, model(&w, 0));
    assert_eq!(assoc(&state(&w), &w, m), Status::Approved);
    // Member 1 signs a second, different record at a seq it already used.
    let c1 = w.committee[1].clone();
    let (seq, prev) =
        (c1.next_seq - 1, w.records.iter().rev().find(|r| r.signer == c1.public()).unwrap().prev);
    let fork = c1.sign_at(seq, prev, testkit::decide(b, m, Decision::Reject, None));
    w.records.push(fork.clone());
    let s = state(&w);
    assert_eq!(s.equivocations.len(), 1);
    assert_eq!(s.equivocations[0].author, c1.public());
    assert!(s.equivocations[0].ids.contains(&fork.id));
    assert_eq!(assoc(&s, &w, m), Status::Pending, "member 1's approvals no longer count");
}

#[test]
fn gaps_in_an_authors_chain_are_reported() {
    let w = Workflow::complete();
    let c0 = w.committee[0].public();
    let without_first: Vec<Record> = {
        let first = w.records.iter().find(|r| r.signer == c0 && r.seq == 0).unwrap().id;
        w.records.iter().filter(|r| r.id != first).cloned().collect()
    };
    let s = fold(&w.root, &without_first);
    let gap = s.gaps.iter().find(|g| g.author == c0).unwrap();
    assert_eq!(gap.missing, 1);
}

// ----- releases and the leaderboard --------------------------------------------

#[test]
fn a_release_signed_by_fewer_members_than_the_threshold_is_not_shown() {
    let w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results()
        .release(1, &[0], |_, _| 900_000);
    let s = state(&w);
    assert!(s.releases.is_empty());
    assert!(s.leaderboards.is_empty());
}

#[test]
fn a_release_signed_by_non_members_changes_nothing() {
    let w = Workflow::complete();
    let before = state(&w);
    let mut w2 = w.clone();
    // Two hospitals sign a release claiming model 0 wins.
    let mut entries = Vec::new();
    for m in &w.models {
        let mut metrics = std::collections::BTreeMap::new();
        let auc = if *m == w.models[0] { 999_999 } else { 1 };
        metrics.insert("auc".into(), protocol::metric::Figure::Millionths(auc));
        entries.push(ReleaseEntry { model: *m, dataset: Some("x".into()), datasets: 1, metrics });
    }
    let fake = Release {
        benchmark: w.benchmark,
        round: 99,
        policy: SharingPolicy::PerDataset,
        entries,
        seed: 1,
    };
    w2.push(|w| &mut w.hospitals[0], Body::Release(fake.clone()));
    w2.push(|w| &mut w.hospitals[1], Body::Release(fake));
    let after = state(&w2);
    assert_eq!(after.leaderboards, before.leaderboards);
    assert_eq!(after.releases, before.releases);
}

#[test]
fn a_later_round_supersedes_an_earlier_release() {
    let w = Workflow::complete().release(2, &[1, 2], |m, _| if m == 0 { 990_000 } else { 100_000 });
    let lb = &state(&w).leaderboards[&w.benchmark];
    assert_eq!(lb.release_round, 2);
    assert_eq!(lb.rows[0].model, w.models[0]);
}

#[test]
fn a_release_that_breaks_the_sharing_policy_is_not_shown() {
    // The benchmark only allows aggregates; a per-dataset table must not show.
    let w = Workflow::people()
        .with_benchmark(|b| b.sharing = SharingPolicy::Aggregate { min_datasets: 2 })
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results()
        .release(1, &[0, 1], |_, _| 900_000);
    assert!(state(&w).releases.is_empty());
}

#[test]
fn equal_values_share_a_rank_and_ties_order_by_model_id() {
    let w = Workflow::people()
        .with_benchmark(|_| {})
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results()
        .release(1, &[0, 1], |_, _| 700_000);
    let lb = &state(&w).leaderboards[&w.benchmark];
    assert_eq!(lb.rows.iter().map(|r| r.rank).collect::<Vec<_>>(), vec![1, 1]);
    assert!(lb.rows[0].model < lb.rows[1].model);
}

#[test]
fn lower_is_better_metrics_rank_ascending() {
    let w = Workflow::people()
        .with_benchmark(|b| b.higher_is_better = false)
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results()
        .release(1, &[0, 1], |m, _| 100_000 * (m as i64 + 1));
    let lb = &state(&w).leaderboards[&w.benchmark];
    assert_eq!(lb.rows[0].model, w.models[0]);
}

// ----- order independence, spelled out ------------------------------------------

#[test]
fn a_decision_that_arrives_before_its_subject_gives_the_same_state() {
    let w = Workflow::complete();
    let forwards = state(&w);
    let mut backwards = w.records.clone();
    backwards.reverse();
    assert_eq!(fold(&w.root, &backwards), forwards);
}

#[test]
fn the_state_round_trips_through_json_for_the_control_api() {
    let s = state(&Workflow::complete());
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains(&s.hash.to_hex()), "ids print as hex in JSON");
    let back: State = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn a_revoked_members_release_signature_counts_for_nothing_and_is_reported() {
    let mut w = Workflow::complete();
    let key = w.committee[1].public();
    w.push(
        |w| &mut w.admin,
        Body::KeyRevocation(KeyRevocation { key, from_seq: 0, reason: "compromised".into() }),
    );
    let s = state(&w);
    // Member 1 co-signed the only release: with its signature void, one of two remains.
    assert!(s.leaderboards.is_empty());
    let sig =
        w.records.iter().find(|r| r.signer == key && matches!(r.body, Body::Release(_))).unwrap();
    assert!(
        s.ignored.iter().any(|i| i.id == sig.id && i.reason.contains("no authority")),
        "{:?}",
        s.ignored
    );
}

// ----- results must reach every reader -------------------------------------------

fn reason_of(s: &State, id: &protocol::RecordId) -> Option<String> {
    s.results.iter().find(|r| r.id == *id).and_then(|r| r.reason).map(|r| r.into_owned())
}

#[test]
fn a_result_not_sealed_to_every_committee_member_and_the_owner_is_ignored_with_its_reason() {
    // Regression: a result sealed to nobody counted, and every member's release
    // then failed to open it, freezing the leaderboard.
    let w = Workflow::complete();
    let (c, h) = (&w.committee, &w.hospitals[0]);
    let x = |a: &Author| a.opening().public();
    let outsider = Author::new("outsider", w.root.network_id());
    let cases: Vec<(&str, Option<Vec<protocol::X25519Key>>, String)> = vec![
        ("sealed to nobody", Some(vec![]), "metrics are sealed to nobody".into()),
        (
            "missing one member",
            Some(vec![x(&c[0]), x(&c[1]), x(h)]),
            format!("metrics are not sealed to the committee member {}", c[2].public().short()),
        ),
        (
            "missing the owner",
            Some(vec![x(&c[0]), x(&c[1]), x(&c[2])]),
            format!("metrics are not sealed to the data owner {}", h.public().short()),
        ),
        (
            "sealed to an outsider",
            Some(vec![x(&outsider)]),
            format!("metrics are not sealed to the committee member {}", c[0].public().short()),
        ),
        ("an unknown scheme", None, "metrics are sealed with an unknown scheme".into()),
    ];
    let before = state(&w);
    for (case, recipients, reason) in cases {
        let mut w = w.clone();
        let (b, m, d) = (w.benchmark, w.models[0], w.datasets[0]);
        let body = match &recipients {
            Some(to) => testkit::sealed_result(b, m, d, 999_999, to),
            None => testkit::result(b, m, d, 999_999),
        };
        let bad = w.push(|w| &mut w.hospitals[0], body);
        let s = state(&w);
        assert_eq!(reason_of(&s, &bad.id).as_deref(), Some(reason.as_str()), "{case}");
        // The owner's earlier, well-sealed result still counts; nothing else moves.
        assert_eq!(counted_results(&s), 6, "{case}");
        assert_eq!(s.leaderboards, before.leaderboards, "{case}");
    }
}

#[test]
fn a_result_cannot_count_while_a_committee_member_has_no_profile_to_seal_to() {
    let w = Workflow::complete();
    let c2 = w.committee[2].public();
    let without: Vec<Record> = w
        .records
        .iter()
        .filter(|r| !(r.signer == c2 && matches!(r.body, Body::Profile(_))))
        .cloned()
        .collect();
    let s = fold(&w.root, &without);
    assert_eq!(counted_results(&s), 0);
    let why = format!(
        "committee member {} has published no profile with a key to seal results to",
        c2.short()
    );
    assert!(s.results.iter().all(|r| r.reason.as_deref() == Some(why.as_str())));
}

#[test]
fn a_revoked_member_need_not_be_a_recipient_and_a_new_profile_voids_nothing() {
    let mut w = Workflow::complete();
    // Member 0 publishes a new encryption key: results sealed to the old one stay.
    let fresh = Author::new("committee-0-new-key", w.root.network_id());
    let profile = fresh.profile("committee-0");
    w.push(|w| &mut w.committee[0], profile);
    assert_eq!(counted_results(&state(&w)), 6);
    // Member 2's key is revoked: a result need not (and should not) reach it.
    let c2 = w.committee[2].public();
    w.push(
        |w| &mut w.admin,
        Body::KeyRevocation(KeyRevocation { key: c2, from_seq: 0, reason: "stolen".into() }),
    );
    let (b, m, d) = (w.benchmark, w.models[0], w.datasets[0]);
    let to: Vec<_> =
        [&w.committee[0], &w.committee[1], &w.hospitals[0]].map(|a| a.opening().public()).into();
    let rerun = w.push(|w| &mut w.hospitals[0], testkit::sealed_result(b, m, d, 1, &to));
    let s = state(&w);
    assert!(s.results.iter().find(|r| r.id == rerun.id).is_some_and(|r| r.counts));
}

// ----- releases must match the results that count ----------------------------------

/// `w` with `release` signed by committee members 0 and 1 (the threshold).
fn signed_by_two(mut w: Workflow, release: &Release) -> (Workflow, Vec<Record>) {
    let sigs = [0, 1].map(|c| w.push(|w| &mut w.committee[c], Body::Release(release.clone())));
    (w, sigs.into())
}

/// The release `Workflow::release` would build now, as a value.
fn honest_release(w: &Workflow, round: u64) -> Release {
    let w = w.clone().release(round, &[0], |m, d| 600_000 + 1_000 * (m + d) as i64);
    match &w.records.last().expect("a release").body {
        Body::Release(r) => r.clone(),
        _ => unreachable!("the last record is the release"),
    }
}

#[test]
fn a_release_that_does_not_match_the_results_that_count_is_ignored_with_its_reason() {
    let w = Workflow::complete();
    let shown = state(&w).leaderboards[&w.benchmark].clone();
    let honest = honest_release(&w, 2);
    let unapproved = w.models[0].as_bytes().map(|b| b ^ 1);
    type Lie = fn(&mut Release, protocol::RecordId);
    let cases: [(&str, Lie, &str); 3] = [
        (
            "a dataset without a result",
            |r, _| r.entries[0].dataset = Some("site-00000000".into()),
            "release is not a complete table: its models show different datasets",
        ),
        (
            "a cell twice",
            |r, _| {
                let again = r.entries[0].clone();
                r.entries.push(again);
            },
            "release names a dataset twice for one model",
        ),
        (
            "a model without results",
            |r, m| r.entries[0].model = m,
            "release names a model that has no result that counts",
        ),
    ];
    for (case, lie, reason) in cases {
        let mut release = honest.clone();
        lie(&mut release, protocol::RecordId::from_bytes(unapproved));
        let (w, sigs) = signed_by_two(w.clone(), &release);
        let s = state(&w);
        assert_eq!(s.leaderboards[&w.benchmark], shown, "{case}: round 1 stays shown");
        for sig in &sigs {
            let why = s.ignored.iter().find(|i| i.id == sig.id).map(|i| i.reason.as_str());
            assert_eq!(why, Some(reason), "{case}");
        }
    }
    // The honest release of the same round shows.
    let (w, _) = signed_by_two(w, &honest);
    assert_eq!(state(&w).leaderboards[&w.benchmark].release_round, 2);
}

/// A workflow whose benchmark shares aggregates over at least two datasets, every
/// result counted, and no release yet.
fn aggregate_workflow() -> Workflow {
    Workflow::people()
        .with_benchmark(|b| b.sharing = SharingPolicy::Aggregate { min_datasets: 2 })
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results()
}

fn aggregate(w: &Workflow, datasets: u16) -> Release {
    Release {
        benchmark: w.benchmark,
        round: 1,
        policy: SharingPolicy::Aggregate { min_datasets: 2 },
        entries: w
            .models
            .iter()
            .map(|m| ReleaseEntry {
                model: *m,
                dataset: None,
                datasets,
                metrics: [("auc".to_string(), protocol::metric::Figure::Millionths(700_000))]
                    .into_iter()
                    .collect(),
            })
            .collect(),
        seed: 3,
    }
}

#[test]
fn a_release_that_lies_about_its_dataset_counts_is_ignored() {
    let w = aggregate_workflow();
    // Three datasets count per model: claiming four is a lie; three is true.
    let (lying, sigs) = signed_by_two(w.clone(), &aggregate(&w, 4));
    let s = state(&lying);
    assert!(s.leaderboards.is_empty());
    let why = "release claims more datasets for a model than it has results that count";
    assert!(sigs.iter().all(|r| s.ignored.iter().any(|i| i.id == r.id && i.reason == why)));
    let mut twice = aggregate(&w, 3);
    twice.entries.push(twice.entries[0].clone());
    let (w2, sigs) = signed_by_two(w.clone(), &twice);
    let s = state(&w2);
    assert!(s.leaderboards.is_empty());
    let why = "release lists a model's aggregate twice";
    assert!(sigs.iter().all(|r| s.ignored.iter().any(|i| i.id == r.id && i.reason == why)));
    let (honest, _) = signed_by_two(w.clone(), &aggregate(&w, 3));
    assert_eq!(state(&honest).leaderboards[&w.benchmark].rows[0].datasets, 3);
}

#[test]
fn a_committee_member_signing_a_release_the_policy_forbids_is_ignored_with_its_reason() {
    let w = aggregate_workflow();
    // Aggregates over one dataset reveal that dataset's value: the policy forbids it,
    // as it forbids per-dataset cells.
    let per_dataset = {
        let mut r = honest_release(&w, 1);
        r.policy = SharingPolicy::Aggregate { min_datasets: 2 };
        r
    };
    let forbidden = [("one dataset", aggregate(&w, 1)), ("per-dataset cells", per_dataset)];
    for (case, release) in forbidden {
        let (w, sigs) = signed_by_two(w.clone(), &release);
        let s = state(&w);
        assert!(s.releases.is_empty(), "{case}");
        for sig in &sigs {
            let why = s.ignored.iter().find(|i| i.id == sig.id).map(|i| i.reason.as_str());
            assert_eq!(why, Some("release breaks the benchmark's sharing policy"), "{case}");
        }
    }
}

// ----- release rounds ----------------------------------------------------------------

/// What members 1 and 2 sign with `build_release` after opening every counting
/// result (whose `auc` is `value(result)`), as the next round.
fn members_release(w: Workflow, value: impl Fn(&protocol::fold::ResultView) -> i64) -> Workflow {
    use protocol::leaderboard::{OpenedResult, build_release, next_round};
    let s = state(&w);
    let opened: Vec<OpenedResult> = s
        .results
        .iter()
        .filter(|r| r.counts)
        .map(|r| OpenedResult {
            model: r.model,
            dataset: r.dataset,
            metrics: [(
                "auc".to_string(),
                protocol::metric::MetricValue::float(value(&r) as f64 / 1e6),
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    let datasets = w.opened_details(&s, 1);
    let round = next_round(s.releases.get(&w.benchmark).map(|r| r.release.round)).unwrap();
    let b = &s.benchmarks[&w.benchmark].benchmark;
    let release = build_release(w.benchmark, b, &datasets, &opened, round);
    let mut w = w;
    for c in [1, 2] {
        w.push(|w| &mut w.committee[c], Body::Release(release.clone()));
    }
    w
}

#[test]
fn a_rerun_released_as_the_next_round_replaces_the_stale_values() {
    // Regression: a release's round was the number of results it covered, so the
    // release of a re-run had the round of the release it should replace, and the
    // content-hash tie-break could keep the stale values.
    let w = members_release(Workflow::complete(), |_| 400_000);
    let first = state(&w).leaderboards[&w.benchmark].clone();
    assert_eq!(first.release_round, 2, "after the testkit's round 1");
    let mut w = w;
    let (m, d) = (w.models[0], w.datasets[0]);
    let rerun = w.result(0, m, d, 111_111);
    let rerun = w.push(|w| &mut w.hospitals[0], rerun).id;
    let w = members_release(w, |r| if r.id == rerun { 111_111 } else { 400_000 });
    let lb = &state(&w).leaderboards[&w.benchmark];
    assert_eq!(lb.release_round, 3);
    let cell = lb
        .cells
        .iter()
        .find(|c| c.model == m && c.value == protocol::metric::Figure::Millionths(111_111));
    assert!(cell.is_some(), "the re-run's value is shown: {:?}", lb.cells);
}

#[test]
fn the_highest_complete_round_wins_and_an_incomplete_higher_one_changes_nothing() {
    let w = Workflow::complete();
    let shown = state(&w).leaderboards[&w.benchmark].clone();
    let w = w.release(7, &[2], |_, _| 1);
    assert_eq!(state(&w).leaderboards[&w.benchmark], shown, "round 7 has one signature of two");
    let w = w.release(3, &[0, 2], |_, _| 2);
    assert_eq!(state(&w).leaderboards[&w.benchmark].release_round, 3);
    let w = w.release(7, &[1], |_, _| 1);
    assert_eq!(state(&w).leaderboards[&w.benchmark].release_round, 7);
}

#[test]
fn a_release_stops_showing_once_its_results_stop_counting() {
    let mut w = Workflow::complete();
    // Hospital 2's key is revoked: its results, and the release that used them, go.
    let key = w.hospitals[2].public();
    w.push(
        |w| &mut w.admin,
        Body::KeyRevocation(KeyRevocation { key, from_seq: 0, reason: "breach".into() }),
    );
    let s = state(&w);
    assert!(s.leaderboards.is_empty());
    // The committee releases what still counts, and it shows.
    let w = w.release(2, &[0, 1], |_, _| 650_000);
    let lb = &state(&w).leaderboards[&w.benchmark];
    assert_eq!((lb.release_round, lb.rows[0].datasets), (2, 2));
}
