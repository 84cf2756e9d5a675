//! Admission (issue 12): in an admitted network a key's records count only once
//! the admins, at their threshold, have admitted it, and only for the roles they
//! granted. Order never matters.

use protocol::fold::Status;
use protocol::record::*;
use protocol::root::AdmissionMode;
use protocol::testkit::{self, Author, Workflow};
use protocol::{Record, State, fold};

fn state(w: &Workflow) -> State {
    fold(&w.root, &w.records)
}

fn ignored_reason(s: &State, r: &Record) -> Option<String> {
    s.ignored.iter().find(|i| i.id == r.id).map(|i| i.reason.clone())
}

/// The whole workflow in an admitted network, everyone admitted with their roles.
fn admitted_complete() -> Workflow {
    Workflow::people_in(AdmissionMode::Admitted)
        .with_benchmark(|_| {})
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results()
        .release(1, &[0, 1], |m, d| 800_000 + 50_000 * m as i64 + 1_000 * d as i64)
}

#[test]
fn an_admitted_network_runs_the_whole_workflow_once_everyone_is_admitted() {
    let w = admitted_complete();
    let s = state(&w);
    assert_eq!(s.admission, AdmissionMode::Admitted);
    assert_eq!(s.benchmarks[&w.benchmark].status, Status::Approved);
    assert_eq!(s.results.iter().filter(|r| r.counts).count(), 6);
    assert!(s.leaderboards.contains_key(&w.benchmark), "the release shows");
    // Everyone but the admin is listed as a member, with what it was granted.
    assert_eq!(s.members.len(), 3 + 1 + 3 + 2);
    let hospital = s.member(&w.hospitals[0].public()).unwrap();
    assert_eq!(hospital.roles, vec![MemberRole::DataOwner]);
    assert_eq!(hospital.admitted_by, vec![w.admin.public()]);
    assert!(s.member(&w.committee[0].public()).unwrap().roles.is_empty());
    assert!(s.admits(&w.admin.public()) && s.admits(&w.modelers[1].public()));
}

#[test]
fn the_same_workflow_in_an_open_network_needs_no_admission() {
    let w = Workflow::complete();
    let s = state(&w);
    assert_eq!(s.admission, AdmissionMode::Open);
    assert!(s.members.is_empty());
    assert_eq!(s.results.iter().filter(|r| r.counts).count(), 6);
}

#[test]
fn every_record_of_a_key_that_was_never_admitted_is_ignored() {
    let mut w = admitted_complete();
    let before = state(&w);
    let net = w.root.network_id();
    let mut stranger = Author::new("stranger", net);
    let profile = stranger.sign(stranger.profile("stranger"));
    let model = stranger.sign(testkit::container("stranger-model", &["infer"]));
    let request = stranger.sign(testkit::request(w.benchmark, Subject::Model(model.id), true));
    let vote = stranger.sign(testkit::decide(
        w.benchmark,
        Subject::Model(w.models[0]),
        Decision::Reject,
        None,
    ));
    for r in [&profile, &model, &request, &vote] {
        w.records.push(r.clone());
    }
    let s = state(&w);
    for r in [&profile, &model, &request, &vote] {
        let why = ignored_reason(&s, r).unwrap_or_else(|| panic!("{} not ignored", r.kind()));
        assert!(why.contains("not admitted"), "{why}");
    }
    assert!(!s.profiles.contains_key(&stranger.public()));
    assert!(!s.containers.contains_key(&model.id));
    assert_eq!(
        (s.benchmarks.clone(), s.associations.clone(), s.leaderboards.clone()),
        (before.benchmarks, before.associations, before.leaderboards),
        "nothing an outsider signs changes the views"
    );
}

#[test]
fn a_member_acts_only_within_the_roles_it_was_granted() {
    let mut w = admitted_complete();
    // A model owner (admitted as model_owner only) registers a dataset and a
    // benchmark.
    let dataset = w.push(
        |w| &mut w.modelers[0],
        testkit::dataset(
            "sneaky",
            w.benchmark,
            w.modelers[0].public(),
            w.prep,
            DatasetState::Operation,
            &w.readers(0),
        ),
    );
    let body = Body::Benchmark(testkit::benchmark(
        "model owner's benchmark",
        w.prep,
        w.reference,
        w.metrics,
        vec![w.committee[0].public()],
        1,
    ));
    let bench = w.push(|w| &mut w.modelers[0], body);
    // A hospital (data_owner only) registers a model container.
    let container =
        w.push(|w| &mut w.hospitals[0], testkit::container("hospital-model", &["infer"]));
    let s = state(&w);
    assert!(ignored_reason(&s, &dataset).unwrap().contains("data_owner"));
    assert!(ignored_reason(&s, &bench).unwrap().contains("benchmark_owner"));
    assert!(ignored_reason(&s, &container).unwrap().contains("model_owner"));
    assert!(!s.datasets.contains_key(&dataset.id) && !s.benchmarks.contains_key(&bench.id));
}

#[test]
fn admission_needs_the_admins_threshold_and_each_role_needs_it_too() {
    // Three root admins, threshold two.
    let keys: Vec<_> = (0..3).map(|i| testkit::key(&format!("admin-{i}"))).collect();
    let pubs: Vec<_> = keys.iter().map(protocol::PublicKey::from).collect();
    let root = testkit::root(&pubs, 2).with_admission(AdmissionMode::Admitted);
    let net = root.network_id();
    let mut admins: Vec<Author> = (0..3).map(|i| Author::new(&format!("admin-{i}"), net)).collect();
    let mut hospital = Author::new("hospital", net);
    let profile = hospital.sign(hospital.profile("hospital"));
    let k = hospital.public();

    let mut records = vec![profile.clone()];
    records.push(admins[0].sign(testkit::admission(
        k,
        0,
        &[MemberRole::DataOwner, MemberRole::ModelOwner],
    )));
    let s = fold(&root, &records);
    assert!(!s.admits(&k), "one admin of three (threshold two) does not admit");
    assert!(ignored_reason(&s, &profile).unwrap().contains("not admitted"));

    records.push(admins[1].sign(testkit::admission(k, 0, &[MemberRole::DataOwner])));
    let s = fold(&root, &records);
    let m = s.member(&k).expect("two admins admit");
    assert_eq!(m.roles, vec![MemberRole::DataOwner], "model_owner was granted by one admin only");
    assert_eq!(m.admitted_by, {
        let mut v = vec![pubs[0], pubs[1]];
        v.sort();
        v
    });
    assert!(s.profiles.contains_key(&k) && ignored_reason(&s, &profile).is_none());

    // A later admission by admin 1 that names no role supersedes its grant.
    records.push(admins[1].sign(testkit::admission(k, 0, &[])));
    let s = fold(&root, &records);
    assert!(s.member(&k).unwrap().roles.is_empty(), "data_owner now has one grant of two");
}

#[test]
fn admissions_by_non_admins_or_for_an_epoch_not_reached_are_ignored() {
    let mut w = Workflow::people_in(AdmissionMode::Admitted);
    let net = w.root.network_id();
    let newcomer = Author::new("newcomer", net);
    // A member (a hospital) admits a friend; the admin signs for epoch 1, which
    // no rotation has reached.
    let by_member = w.push(|w| &mut w.hospitals[0], testkit::admission(newcomer.public(), 0, &[]));
    let future = w.push(|w| &mut w.admin, testkit::admission(newcomer.public(), 1, &[]));
    let s = state(&w);
    assert!(!s.admits(&newcomer.public()));
    assert!(ignored_reason(&s, &by_member).unwrap().contains("not an admin"));
    assert!(ignored_reason(&s, &future).is_some());
}

#[test]
fn admissions_outlive_a_rotation_and_the_new_admins_admit_from_then_on() {
    let mut w = Workflow::people_in(AdmissionMode::Admitted);
    let net = w.root.network_id();
    let new_admin = Author::new("admin-2", net);
    let rotation = AdminRotation { epoch: 1, admins: vec![new_admin.public()], threshold: 1 };
    w.push(|w| &mut w.admin, Body::AdminRotation(rotation));
    let late = Author::new("late-hospital", net);
    let mut w = w;
    let old_admin = std::mem::replace(&mut w.admin, new_admin);
    w.push(|w| &mut w.admin, testkit::admission(late.public(), 1, &[MemberRole::DataOwner]));
    let s = state(&w);
    assert_eq!(s.admin_epoch, 1);
    assert!(s.admits(&w.hospitals[0].public()), "admitted in epoch 0, still a member");
    assert_eq!(s.member(&late.public()).unwrap().epoch, 1);
    assert!(s.admits(&old_admin.public()), "a former admin keeps taking part");
}

#[test]
fn a_revoked_admins_admissions_from_the_revoked_seq_on_count_for_nothing() {
    let keys: Vec<_> = (0..2).map(|i| testkit::key(&format!("admin-{i}"))).collect();
    let pubs: Vec<_> = keys.iter().map(protocol::PublicKey::from).collect();
    let root = testkit::root(&pubs, 1).with_admission(AdmissionMode::Admitted);
    let net = root.network_id();
    let (mut a, mut b) = (Author::new("admin-0", net), Author::new("admin-1", net));
    let crony = Author::new("crony", net);
    let admitted = b.sign(testkit::admission(crony.public(), 0, &[MemberRole::DataOwner]));
    let revocation = a.sign(Body::KeyRevocation(KeyRevocation {
        key: b.public(),
        from_seq: 0,
        reason: "stolen laptop".into(),
    }));
    let s = fold(&root, &[admitted.clone(), revocation]);
    assert!(!s.admits(&crony.public()));
}

#[test]
fn the_order_records_arrive_in_never_changes_an_admitted_networks_state() {
    let w = admitted_complete();
    let expected = state(&w).hash;
    let mut records = w.records.clone();
    // Several deterministic shuffles, admissions last in one of them.
    for round in 0..8u64 {
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ round;
        for i in (1..records.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            records.swap(i, (x % (i as u64 + 1)) as usize);
        }
        assert_eq!(fold(&w.root, &records).hash, expected, "shuffle {round}");
    }
    records.sort_by_key(|r| matches!(r.body, Body::Admission(_)));
    assert_eq!(fold(&w.root, &records).hash, expected, "admissions last");
}

#[test]
fn a_root_without_an_admission_field_is_open_and_keeps_its_network_id() {
    let root = testkit::root(
        &[testkit::Author::new("a", protocol::NetworkId::from_bytes([0; 32])).public()],
        1,
    );
    assert_eq!(root.admission, AdmissionMode::Open);
    let bytes = root.to_bytes();
    assert_eq!(protocol::NetworkRoot::from_bytes(&bytes).unwrap(), root);
    let admitted = root.clone().with_admission(AdmissionMode::Admitted);
    assert_ne!(admitted.network_id(), root.network_id(), "the mode is part of the network id");
    assert_eq!(protocol::NetworkRoot::from_bytes(&admitted.to_bytes()).unwrap(), admitted);
}

#[test]
fn role_lists_out_of_order_or_repeated_are_refused_at_decode() {
    let a = Author::new("admin", protocol::NetworkId::from_bytes([1; 32]));
    let bytes = a.sign_unchecked(
        0,
        None,
        Body::Admission(Admission {
            key: a.public(),
            epoch: 0,
            roles: vec![MemberRole::ModelOwner, MemberRole::DataOwner],
        }),
    );
    let e = Record::verify(&bytes, &a.network).unwrap_err();
    assert!(e.to_string().contains("sorted"), "{e}");
}
