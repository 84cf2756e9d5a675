//! The signed envelope, specified by what it accepts and refuses.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use protocol::cbor;
use protocol::error::{CborError, RecordError};
use protocol::limits::ENVELOPE_BYTES_MAX;
use protocol::record::{Body, Profile};
use protocol::testkit::{self, Author};
use protocol::{IdError, NetworkId, Record, SignatureError, Unverified, X25519Key, verify_batch};

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
    // The lowest bit of s: the signature stays well formed and no longer verifies.
    let s_low = items[7].len() - 32;
    items[7][s_low] ^= 1;
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

// One signature rule on every path. A node verifies a record that comes alone
// (gossip, a submission) and many at once (a sync page, an import, its own store
// at start) with the same check, `verify_strict`: a batch equation would accept
// signatures that the strict check refuses, and nodes would then hold different
// record sets depending on how a record reached them.

/// The parts of an envelope as dalek sees them: message, signature, key.
fn parts(bytes: &[u8]) -> (Vec<u8>, ed25519_dalek::Signature, ed25519_dalek::VerifyingKey) {
    let v: ciborium::Value = cbor::parse_canonical(bytes).unwrap();
    let a = v.as_array().unwrap();
    let (network, signer, payload, signature) = (
        a[1].as_bytes().unwrap(),
        a[2].as_bytes().unwrap(),
        a[3].as_bytes().unwrap(),
        a[4].as_bytes().unwrap(),
    );
    let mut message = b"medmesh/record/v1\0".to_vec();
    message.extend_from_slice(network);
    message.extend_from_slice(signer);
    message.extend_from_slice(payload);
    let signature = ed25519_dalek::Signature::from_slice(signature).unwrap();
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&signer.as_slice().try_into().unwrap()).unwrap();
    (message, signature, key)
}

/// The envelope with its signer or signature bytes replaced (index 2 or 4).
fn with_field(bytes: &[u8], index: usize, value: &[u8]) -> Vec<u8> {
    let mut v: ciborium::Value = cbor::parse_canonical(bytes).unwrap();
    if let ciborium::Value::Array(a) = &mut v {
        a[index] = ciborium::Value::Bytes(value.to_vec());
    }
    cbor::to_canonical(&v).unwrap()
}

/// What dalek's batch verification says of `bytes` among `honest` others.
fn batch_accepts(bytes: &[u8], honest: &[Vec<u8>]) -> bool {
    let all: Vec<_> =
        std::iter::once(bytes).chain(honest.iter().map(|b| b.as_slice())).map(parts).collect();
    let messages: Vec<&[u8]> = all.iter().map(|p| p.0.as_slice()).collect();
    let signatures: Vec<_> = all.iter().map(|p| p.1).collect();
    let keys: Vec<_> = all.iter().map(|p| p.2).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// The cofactored equation `8 (sB - kA - R) = 0`.
fn cofactored_accepts(bytes: &[u8]) -> bool {
    use sha2::Digest as _;
    let (message, signature, key) = parts(bytes);
    let r_bytes = signature.r_bytes();
    let r = CompressedEdwardsY(*r_bytes).decompress().unwrap();
    let a = CompressedEdwardsY(key.to_bytes()).decompress().unwrap();
    let s = Scalar::from_canonical_bytes(*signature.s_bytes()).unwrap();
    let mut h = sha2::Sha512::new();
    h.update(r_bytes);
    h.update(key.as_bytes());
    h.update(&message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    (ED25519_BASEPOINT_POINT * s - a * k - r).mul_by_cofactor() == EdwardsPoint::default()
}

#[test]
fn a_signature_whose_r_has_a_small_order_component_is_refused_alone_and_in_a_batch_though_batch_equations_take_it()
 {
    let mallory = Author::new("mallory", net());
    let mut honest_author = Author::new("honest", net());
    let honest: Vec<Vec<u8>> =
        (0..40).map(|i| honest_author.sign(profile(&format!("h{i}"))).bytes.to_vec()).collect();
    for order in [2u8, 4, 8] {
        let t = protocol::testkit::torsion(order);
        let bytes = mallory.sign_with_nonce_offset(0, None, profile("M"), "torsion", t);
        // Strict verification refuses it; the cofactored equation accepts it; the
        // batch equation accepts it in some batches (when the batch's random
        // coefficient for it is a multiple of the order): a node that verified
        // pages and its store as a batch took it about 1 time in `order`.
        let (message, signature, key) = parts(&bytes);
        assert!(key.verify_strict(&message, &signature).is_err(), "order {order}");
        assert!(cofactored_accepts(&bytes), "order {order}");
        let taken = (0..honest.len()).filter(|n| batch_accepts(&bytes, &honest[..*n])).count();
        assert!(
            taken > 0 && taken < honest.len(),
            "order {order}: {taken} of {} batches",
            honest.len()
        );
        // MedMesh refuses it alone and among honest records in a batch, always.
        assert_eq!(Record::verify(&bytes, &net()), Err(RecordError::BadSignature), "order {order}");
        for n in 0..honest.len() {
            let items: Vec<Unverified> = std::iter::once(&bytes)
                .chain(&honest[..n])
                .map(|b| Unverified::decode(b, &net()).unwrap())
                .collect();
            let out = verify_batch(items);
            assert_eq!(out[0], Err(RecordError::BadSignature), "order {order}, batch of {}", n + 1);
            assert!(out[1..].iter().all(|r| r.is_ok()));
        }
    }
}

#[test]
fn a_signature_whose_r_is_the_identity_passes_every_batch_and_is_refused_at_decode() {
    let mallory = Author::new("mallory", net());
    // R = 0B, s = r + ka with r = 0: the equation sB = R + kA holds exactly.
    let bytes = mallory.sign_with_identity_r(0, None, profile("M"));
    let (message, signature, key) = parts(&bytes);
    assert_eq!(signature.r_bytes(), EdwardsPoint::default().compress().as_bytes());
    assert!(key.verify_strict(&message, &signature).is_err());
    assert!(batch_accepts(&bytes, &[]));
    assert_eq!(
        Record::verify(&bytes, &net()),
        Err(RecordError::MalformedSignature(SignatureError::RSmallOrder))
    );
}

/// Every 32-byte string that is a second spelling of a curve point: a y of p or
/// more (p + 0 ..= p + 18), or the sign bit set on a point whose x is 0.
fn second_spellings() -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for k in 0..19u8 {
        for sign in [0u8, 0x80] {
            let mut b = [0xffu8; 32];
            b[0] = 0xed + k;
            b[31] = 0x7f | sign;
            if CompressedEdwardsY(b).decompress().is_some() {
                out.push(b);
            }
        }
    }
    for y in [EdwardsPoint::default(), protocol::testkit::torsion(2)] {
        let mut b = y.compress().to_bytes();
        b[31] |= 0x80;
        out.push(b);
    }
    out
}

#[test]
fn second_spellings_of_points_are_refused_as_signer_keys_and_as_r() {
    let spellings = second_spellings();
    assert!(spellings.len() >= 4, "{} non-canonical encodings decode", spellings.len());
    let r = Author::new("alice", net()).sign_at(0, None, profile("Alice"));
    let mallory = Author::new("mallory", net());
    for b in &spellings {
        let as_key = with_field(&r.bytes, 2, b);
        assert_eq!(
            Record::verify(&as_key, &net()),
            Err(RecordError::BadSignerKey(IdError::NonCanonicalKey)),
            "{}",
            hex::encode(b)
        );
        let as_r = mallory.sign_with_raw_r(0, None, profile("M"), Scalar::ZERO, *b);
        assert_eq!(
            Record::verify(&as_r, &net()),
            Err(RecordError::MalformedSignature(SignatureError::RNonCanonical)),
            "{}",
            hex::encode(b)
        );
    }
    // The identity spelled with the sign bit set, with r = 0: every batch takes it
    // (R decodes to the identity and s = kA's discrete log); strict verification
    // does not.
    let mut spelled_identity = EdwardsPoint::default().compress().to_bytes();
    spelled_identity[31] |= 0x80;
    assert!(spellings.contains(&spelled_identity));
    let bytes = mallory.sign_with_raw_r(0, None, profile("M"), Scalar::ZERO, spelled_identity);
    let (message, signature, key) = parts(&bytes);
    assert!(key.verify_strict(&message, &signature).is_err());
    assert!(batch_accepts(&bytes, &[]));
}

#[test]
fn a_signer_key_with_a_small_order_component_is_judged_alike_alone_and_in_a_batch() {
    // Such a key (aB + T) is a valid key: verify_strict judges its signatures the
    // same way on every path. A signature made for another key does not verify.
    let alice = Author::new("alice", net());
    let r = alice.sign_at(0, None, profile("Alice"));
    let a = CompressedEdwardsY(*alice.public().as_bytes()).decompress().unwrap();
    for order in [2u8, 4, 8] {
        let mixed = (a + protocol::testkit::torsion(order)).compress();
        assert!(protocol::PublicKey::from_bytes(mixed.to_bytes()).is_ok());
        let bytes = with_field(&r.bytes, 2, mixed.as_bytes());
        assert_eq!(Record::verify(&bytes, &net()), Err(RecordError::BadSignature));
        let u = Unverified::decode(&bytes, &net()).unwrap();
        assert_eq!(verify_batch(vec![u]), vec![Err(RecordError::BadSignature)]);
    }
}

#[test]
fn a_signature_with_an_unreduced_s_is_refused_at_decode() {
    // s + l is a second spelling of the same signature.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let r = Author::new("alice", net()).sign_at(0, None, profile("Alice"));
    let (_, signature, _) = parts(&r.bytes);
    let mut sig = signature.to_bytes();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = sig[32 + i] as u16 + L[i] as u16 + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    let bytes = with_field(&r.bytes, 4, &sig);
    assert_eq!(
        Record::verify(&bytes, &net()),
        Err(RecordError::MalformedSignature(SignatureError::SNonCanonical))
    );
}

#[test]
fn strict_and_batch_verification_accept_the_same_records() {
    // Honest records, a forged one, and one of each malformed kind: whatever
    // decodes, the batch and the single checks agree on, record by record.
    let mut alice = Author::new("alice", net());
    let mallory = Author::new("mallory", net());
    let mut items: Vec<Vec<u8>> =
        (0..8).map(|i| alice.sign(profile(&format!("a{i}"))).bytes.to_vec()).collect();
    let mut forged = alice.sign(profile("forged")).bytes.to_vec();
    let s_low = forged.len() - 32;
    forged[s_low] ^= 1;
    items.push(forged);
    for order in [2u8, 4, 8] {
        let t = protocol::testkit::torsion(order);
        items.push(mallory.sign_with_nonce_offset(0, None, profile("M"), &format!("t{order}"), t));
    }
    items.push(mallory.sign_with_identity_r(0, None, profile("identity")));
    let decoded: Vec<Unverified> =
        items.iter().filter_map(|b| Unverified::decode(b, &net()).ok()).collect();
    assert_eq!(decoded.len(), 12, "only the identity R is refused at decode");
    let single: Vec<_> = decoded.iter().cloned().map(Unverified::verify).collect();
    assert_eq!(verify_batch(decoded), single);
    assert_eq!(single.iter().filter(|r| r.is_ok()).count(), 8);
}
