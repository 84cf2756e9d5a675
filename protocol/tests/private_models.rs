//! The fold's rules for private models (MedPerf's encrypted models): who may
//! grant a model's key, to whom, and what a revocation stops. Each test builds
//! records from several keys with `testkit::Workflow` and asserts the state.

use protocol::private::{self, ModelKey};
use protocol::record::*;
use protocol::seal::{self, GrantBinding, SealError, SeededRng};
use protocol::testkit::{self, Workflow};
use protocol::{Hash32, RecordId, State, fold};

/// A benchmark with three hospitals' datasets, a private model of modeler 0
/// approved in it, datasets 0 and 1 approved and dataset 2 still pending.
struct Private {
    w: Workflow,
    model: RecordId,
    key: ModelKey,
}

fn private_container(key: &ModelKey) -> Body {
    let Body::Container(mut c) = testkit::container("private-model", &["infer"]) else {
        unreachable!("the testkit's container is a container")
    };
    let plaintext_size = 10_000;
    c.image_archive = Some(BlobRef {
        hash: Hash32::of(b"the encrypted archive"),
        size: private::ciphertext_len(plaintext_size),
    });
    c.encryption = Some(ArchiveEncryption {
        scheme: private::SCHEME.into(),
        key_check: key.check(),
        plaintext_size,
    });
    Body::Container(c)
}

fn setup() -> Private {
    let mut w = Workflow::people().with_benchmark(|_| {}).approve_benchmark().register_datasets();
    let key = ModelKey::generate(&mut SeededRng::new(b"model key"));
    let model = w.push(|w| &mut w.modelers[0], private_container(&key)).id;
    let b = w.benchmark;
    w.push(|w| &mut w.modelers[0], testkit::request(b, Subject::Model(model), true));
    let mut approve = vec![Subject::Model(model)];
    approve.extend(w.datasets[..2].iter().map(|d| Subject::Dataset(*d)));
    for s in approve {
        for c in 0..2 {
            w.push(|w| &mut w.committee[c], testkit::decide(b, s, Decision::Approve, None));
        }
    }
    Private { w, model, key }
}

fn state(p: &Private) -> State {
    fold(&p.w.root, &p.w.records)
}

impl Private {
    fn binding(&self, dataset: usize) -> GrantBinding {
        GrantBinding {
            model: self.model,
            benchmark: self.w.benchmark,
            dataset: self.w.datasets[dataset],
        }
    }

    /// The model's key sealed for hospital `to`, in a grant naming `dataset`.
    fn grant_body(&self, dataset: usize, to: usize) -> Body {
        let recipient = self.w.hospitals[to].opening().public();
        let sealed = seal::seal_model_key(
            &self.key,
            recipient,
            self.binding(dataset),
            &mut SeededRng::new(&[dataset as u8, to as u8]),
        )
        .unwrap();
        Body::ModelGrant(ModelGrant {
            model: self.model,
            benchmark: self.w.benchmark,
            dataset: self.w.datasets[dataset],
            key: sealed,
        })
    }

    /// Modeler 0 (the owner) grants dataset `i`'s owner the key.
    fn grant(&mut self, i: usize) -> RecordId {
        let body = self.grant_body(i, i);
        self.w.push(|w| &mut w.modelers[0], body).id
    }

    fn revoke(&mut self, dataset: Option<usize>) -> RecordId {
        let body = Body::ModelRevocation(ModelRevocation {
            model: self.model,
            dataset: dataset.map(|i| self.w.datasets[i]),
        });
        self.w.push(|w| &mut w.modelers[0], body).id
    }
}

fn ignored_because(s: &State, id: RecordId, why: &str) -> bool {
    s.ignored.iter().any(|i| i.id == id && i.reason.contains(why))
}

#[test]
fn a_grant_from_the_owner_counts_and_only_the_data_owner_opens_the_key() {
    let mut p = setup();
    let g = p.grant(0);
    let s = state(&p);
    let view = s.grant(&p.model, &p.w.datasets[0]).expect("the grant counts");
    assert_eq!(view.id, g);
    assert_eq!(view.grantee, p.w.hospitals[0].public());

    let Body::ModelGrant(grant) = &p.w.records.iter().find(|r| r.id == g).unwrap().body else {
        unreachable!()
    };
    let opened = seal::open_model_key(&grant.key, &p.w.hospitals[0].opening(), p.binding(0));
    assert_eq!(opened.unwrap(), p.key);
    // Another hospital, the committee, the benchmark owner and an outsider hold
    // the same record and open nothing.
    let outsider = testkit::Author::new("outsider", p.w.root.network_id());
    let others = [&p.w.hospitals[1], &p.w.committee[0], &p.w.owner, &outsider];
    for who in others {
        let err = seal::open_model_key(&grant.key, &who.opening(), p.binding(0)).unwrap_err();
        assert_eq!(err, SealError::NotARecipient);
    }
    // A copy of the grant under another dataset does not open, even for its owner.
    let err = seal::open_model_key(&grant.key, &p.w.hospitals[0].opening(), p.binding(1));
    assert_eq!(err.unwrap_err(), SealError::Tampered);
}

#[test]
fn a_grant_by_anyone_but_the_model_owner_is_ignored() {
    let mut p = setup();
    let body = p.grant_body(0, 0);
    let stray = p.w.push(|w| &mut w.modelers[1], body.clone()).id;
    let by_committee = p.w.push(|w| &mut w.committee[0], body).id;
    let s = state(&p);
    assert!(s.grant(&p.model, &p.w.datasets[0]).is_none());
    assert!(ignored_because(&s, stray, "only the model's owner"));
    assert!(ignored_because(&s, by_committee, "only the model's owner"));
}

#[test]
fn a_grant_for_a_dataset_whose_association_is_not_approved_is_ignored() {
    let mut p = setup();
    let g = p.grant(2);
    let s = state(&p);
    assert!(s.grant(&p.model, &p.w.datasets[2]).is_none());
    assert!(ignored_because(&s, g, "the dataset's association with the benchmark is not approved"));
}

#[test]
fn a_grant_sealed_to_someone_other_than_the_dataset_owner_is_ignored() {
    let mut p = setup();
    let body = p.grant_body(0, 1);
    let g = p.w.push(|w| &mut w.modelers[0], body).id;
    let s = state(&p);
    assert!(s.grant(&p.model, &p.w.datasets[0]).is_none());
    assert!(ignored_because(&s, g, "not sealed to the dataset owner's profile key"));
}

#[test]
fn a_grant_after_a_revocation_is_ignored_and_one_made_before_still_counts() {
    let mut p = setup();
    let before = p.grant(0);
    p.revoke(None);
    // Dataset 2 is approved after the revocation: its grant is ignored.
    let (b, d2) = (p.w.benchmark, p.w.datasets[2]);
    for c in 0..2 {
        p.w.push(
            |w| &mut w.committee[c],
            testkit::decide(b, Subject::Dataset(d2), Decision::Approve, None),
        );
    }
    let after = p.grant(2);
    let again = p.grant(1);
    let s = state(&p);
    assert_eq!(s.grant(&p.model, &p.w.datasets[0]).map(|g| g.id), Some(before));
    assert!(s.grant(&p.model, &p.w.datasets[2]).is_none());
    assert!(s.grant(&p.model, &p.w.datasets[1]).is_none());
    assert!(ignored_because(&s, after, "revoked"));
    assert!(ignored_because(&s, again, "revoked"));
    assert!(s.grant_revoked(&p.model, &p.w.datasets[2]));
}

#[test]
fn a_revocation_for_one_dataset_leaves_the_others_grantable() {
    let mut p = setup();
    p.revoke(Some(1));
    let refused = p.grant(1);
    let granted = p.grant(0);
    let s = state(&p);
    assert!(ignored_because(&s, refused, "revoked"));
    assert_eq!(s.grant(&p.model, &p.w.datasets[0]).map(|g| g.id), Some(granted));
    assert!(s.grant_revoked(&p.model, &p.w.datasets[1]));
    assert!(!s.grant_revoked(&p.model, &p.w.datasets[0]));
}

#[test]
fn a_revocation_by_anyone_but_the_model_owner_is_ignored() {
    let mut p = setup();
    let model = p.model;
    let stray = p.w.push(
        |w| &mut w.hospitals[1],
        Body::ModelRevocation(ModelRevocation { model, dataset: None }),
    );
    let g = p.grant(0);
    let s = state(&p);
    assert!(ignored_because(&s, stray.id, "only the model's owner"));
    assert_eq!(s.grant(&p.model, &p.w.datasets[0]).map(|g| g.id), Some(g));
    assert!(s.model_revocations.is_empty());
}

#[test]
fn grants_fold_to_the_same_state_in_any_order() {
    let mut p = setup();
    p.grant(0);
    p.revoke(Some(1));
    p.grant(1);
    let forward = state(&p);
    let mut reversed = p.w.records.clone();
    reversed.reverse();
    let backward = fold(&p.w.root, &reversed);
    assert_eq!(forward.hash, backward.hash);
    assert_eq!(forward.grants, backward.grants);
}

#[test]
fn an_encrypted_container_must_name_an_archive_of_the_ciphertext_length() {
    let key = ModelKey::generate(&mut SeededRng::new(b"k"));
    let Body::Container(mut c) = private_container(&key) else { unreachable!() };
    assert!(Body::Container(c.clone()).validate().is_ok());
    c.image_archive.as_mut().unwrap().size += 1;
    assert!(Body::Container(c.clone()).validate().is_err());
    c.image_archive = None;
    assert!(Body::Container(c).validate().is_err());
}

#[test]
fn a_container_without_encryption_encodes_as_before() {
    // Records signed before private models existed keep their bytes: the field
    // is left out of the encoding when absent.
    let Body::Container(c) = testkit::container("model", &["infer"]) else { unreachable!() };
    let bytes = protocol::cbor::to_canonical(&c).unwrap();
    assert!(!bytes.windows(10).any(|w| w == b"encryption"));
    assert_eq!(protocol::cbor::from_canonical::<Container>(&bytes).unwrap(), c);
}
