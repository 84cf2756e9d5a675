//! The signed envelope, specified by what it accepts and refuses.

use protocol::cbor;
use protocol::error::{CborError, RecordError};
use protocol::limits::ENVELOPE_BYTES_MAX;
use protocol::record::{Body, Profile};
use protocol::testkit::{self, Author};
use protocol::{NetworkId, Record, Unverified, X25519Key, verify_batch};

fn net() -> NetworkId {
    testkit::root(&[testkit::Author::new("admin", NetworkId::from_bytes([0; 32])).public()], 1)
        .network_id()
}

fn profile(name: &str) -> Body {
    Body::Profile(Profile {
        name: name.into(),
        organisation: "General Hospital".into(),
        x25519: X25519Key::from_bytes([3; 32]),
    })
}

#[test]
fn a_signed_record_verifies_as_received_with_the_same_id() {
    let mut a = Author::new("alice", net());
    let r = a.sign(profile("Alice"));
    let back = Record::verify(&r.bytes, &net()).unwrap();
    assert_eq!(back, r);
    assert_eq!(Record::peek_id(&r.bytes).unwrap(), r.id);
}

#[test]
fn signing_is_deterministic_and_the_id_does_not_cover_the_signature() {
    // Ed25519 signatures are deterministic, so re-signing gives the same bytes; the id
    // is computed from the to-be-signed bytes, so even a different valid signature of
    // the same content could not change it.
    let a = Author::new("alice", net());
    let one = a.sign_at(0, None, profile("Alice"));
    let two = a.sign_at(0, None, profile("Alice"));
    assert_eq!(one.id, two.id);
    assert_eq!(one.bytes, two.bytes);
}

#[test]
fn the_same_content_by_two_authors_has_two_ids() {
    let a = Author::new("alice", net()).sign_at(0, None, profile("X"));
    let b = Author::new("bob", net()).sign_at(0, None, profile("X"));
    assert_ne!(a.id, b.id);
}

#[test]
fn a_flipped_payload_bit_is_a_bad_signature() {
    let r = Author::new("alice", net()).sign_at(0, None, profile("Alice"));
    let mut bytes = r.bytes.to_vec();
    // The name "Alice" sits inside the payload; change one letter, keeping it canonical.
    let at = bytes.windows(5).position(|w| w == b"Alice").unwrap();
    bytes[at] = b'B';
    assert_eq!(Record::verify(&bytes, &net()), Err(RecordError::BadSignature));
}

#[test]
fn a_flipped_signature_bit_is_a_bad_signature() {
    let r = Author::new("alice", net()).sign_at(0, None, profile("Alice"));
    let mut bytes = r.bytes.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(Record::verify(&bytes, &net()), Err(RecordError::BadSignature));
}

#[test]
fn a_record_of_another_network_is_refused_as_wrong_network() {
    let other = NetworkId::from_bytes([42; 32]);
    let r = Author::new("alice", other).sign_at(0, None, profile("Alice"));
    assert!(
        matches!(Record::verify(&r.bytes, &net()), Err(RecordError::WrongNetwork { found, .. }) if found == other)
    );
}

#[test]
fn oversized_bytes_are_refused_before_decoding() {
    let bytes = vec![0u8; ENVELOPE_BYTES_MAX + 1];
    assert!(matches!(Record::verify(&bytes, &net()), Err(RecordError::TooLarge { .. })));
}

#[test]
fn truncated_envelopes_are_refused_at_every_length() {
    let r = Author::new("alice", net()).sign_at(0, None, profile("Alice"));
    for cut in 0..r.bytes.len() {
        let err = Record::verify(&r.bytes[..cut], &net()).unwrap_err();
        assert_eq!(err.kind(), "bad_envelope", "cut at {cut}: {err}");
    }
}

#[test]
fn deeply_nested_cbor_is_refused_without_overflow() {
    let mut bytes = vec![0x81u8; 50_000];
    bytes.push(0);
    assert_eq!(
        Record::verify(&bytes, &net()),
        Err(RecordError::Envelope(CborError::TooDeep { max: 16 }))
    );
}

#[test]
fn a_non_canonical_envelope_is_refused_even_with_a_valid_signature() {
    // Re-encode the envelope array with a non-minimal length prefix (0x98 0x05 for 5).
    let r = Author::new("alice", net()).sign_at(0, None, profile("Alice"));
    assert_eq!(r.bytes[0], 0x85);
    let mut bytes = vec![0x98, 0x05];
    bytes.extend_from_slice(&r.bytes[1..]);
    assert_eq!(Record::verify(&bytes, &net()), Err(RecordError::Envelope(CborError::NonCanonical)));
}

#[test]
fn a_weak_signer_key_is_refused() {
    // Build an envelope by hand whose signer is the identity point.
    let r = Author::new("alice", net()).sign_at(0, None, profile("Alice"));
    let mut v: ciborium::Value = cbor::parse_canonical(&r.bytes).unwrap();
    let arr = match &mut v {
        ciborium::Value::Array(a) => a,
        _ => unreachable!(),
    };
    let mut identity = [0u8; 32];
    identity[0] = 1;
    arr[2] = ciborium::Value::Bytes(identity.to_vec());
    let bytes = cbor::to_canonical(&v).unwrap();
    assert!(matches!(
        Record::verify(&bytes, &net()),
        Err(RecordError::BadSignerKey(protocol::IdError::WeakKey))
    ));
}

#[test]
fn unknown_fields_in_a_payload_are_refused() {
    let r = Author::new("alice", net()).sign_at(0, None, profile("Alice"));
    let v: ciborium::Value = cbor::parse_canonical(&r.bytes).unwrap();
    let payload = match &v {
        ciborium::Value::Array(a) => a[3].as_bytes().unwrap().clone(),
        _ => unreachable!(),
    };
    let mut p = cbor::parse_canonical(&payload).unwrap();
    if let ciborium::Value::Map(m) = &mut p {
        m.push((ciborium::Value::Text("extra".into()), ciborium::Value::Bool(true)));
    }
    let p = cbor::to_canonical(&p).unwrap();
    assert!(matches!(
        cbor::from_canonical::<protocol::record::Payload>(&p),
        Err(CborError::Schema(_))
    ));
}

#[test]
fn bounds_on_strings_are_enforced_when_signing() {
    let a = Author::new("alice", net());
    let long = "x".repeat(10_000);
    let err = Record::sign(&a.key, net(), 0, None, profile(&long)).unwrap_err();
    assert!(matches!(err, RecordError::Invalid { field: "profile.name", .. }), "{err}");
}

#[test]
fn the_chain_rule_is_enforced_prev_exactly_after_seq_zero() {
    let a = Author::new("alice", net());
    let err = Record::sign(&a.key, net(), 3, None, profile("A")).unwrap_err();
    assert!(matches!(err, RecordError::Invalid { field: "prev", .. }));
}

#[test]
fn batch_verification_accepts_good_records_and_names_the_forged_one() {
    let mut a = Author::new("alice", net());
    let mut items: Vec<Vec<u8>> =
        (0..20).map(|i| a.sign(profile(&format!("v{i}"))).bytes.to_vec()).collect();
    let last = items[7].len() - 1;
    items[7][last] ^= 0x40;
    let decoded: Vec<Unverified> =
        items.iter().map(|b| Unverified::decode(b, &net()).unwrap()).collect();
    let out = verify_batch(decoded);
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 19);
    assert_eq!(out[7], Err(RecordError::BadSignature));
}

#[test]
fn a_container_record_whose_manifest_declares_an_input_as_an_output_is_refused_by_every_node() {
    // A model that asks for the hospital's data as a writable output: signed by its
    // owner, it still never verifies, so no node stores, folds or forwards it.
    let mut body = testkit::container("tamperer", &["infer"]);
    let Body::Container(c) = &mut body else { unreachable!("testkit::container") };
    let data = c.manifest.tasks[0].inputs.remove(0);
    assert_eq!(data.name, "data_path");
    c.manifest.tasks[0].outputs.push(data);
    let bytes = Author::new("model-owner", net()).sign_unchecked(0, None, body);
    let err = Record::verify(&bytes, &net()).unwrap_err();
    assert!(
        matches!(&err, RecordError::Invalid { field: "container.manifest", reason }
            if reason.contains("`data_path` is an input")),
        "{err}"
    );
    assert_eq!(err.kind(), "invalid_field");
}
