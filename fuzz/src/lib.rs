//! The bodies of MedMesh's fuzz targets, one per decoder that takes bytes from
//! outside: signed records (decode, verify, fold), the strict canonical CBOR
//! parser, the catch-up sync messages (the libp2p codec's CBOR and negentropy
//! frames), MedPerf/MLCube container manifests, and a private model's encrypted
//! image archive (a blob any peer may serve).
//!
//! Each body must never panic on any input; where an input is accepted, the
//! paired assertions below must hold. `fuzz_targets/` wraps them for cargo fuzz
//! (libFuzzer, nightly); `src/bin/stable_fuzz.rs` drives them with a seeded
//! mutation loop on the stable toolchain. `corpus/<target>/seed-*` are the seeds
//! (regenerate with `cargo run --no-default-features --bin stable-fuzz -- seed`).

use std::sync::OnceLock;

use node::sync::{IdSnapshot, Initiator, SyncRequest, SyncResponse};
use protocol::{NetworkRoot, Record, RecordId, Unverified};

/// Ids in the responder's and initiator's sets for the sync target.
pub const SYNC_SNAPSHOT_IDS: u64 = 200;

/// The network every seed record is signed for (the testkit workflow's root).
pub fn root() -> &'static NetworkRoot {
    static ROOT: OnceLock<NetworkRoot> = OnceLock::new();
    ROOT.get_or_init(|| protocol::testkit::Workflow::people().root)
}

/// A signed record from a peer: peek, decode, verify (single and batch), and fold.
pub fn record(data: &[u8]) {
    let root = root();
    let net = root.network_id();
    let peeked = Record::peek_id(data);
    let single = Record::verify(data, &net);
    if let Ok(r) = &single {
        // A verified record is exactly the bytes received, its id is the one the
        // cheap peek computes, and it verifies again from its stored bytes.
        assert_eq!(&*r.bytes, data, "verify must keep the received bytes");
        assert_eq!(peeked.as_ref().ok(), Some(&r.id), "peek_id and verify disagree");
        let again = Record::verify(&r.bytes, &net).expect("stored bytes verify again");
        assert_eq!(again.id, r.id);
        let state = protocol::fold(root, std::slice::from_ref(r));
        assert_eq!(state.records, 1);
    }
    if let Ok(u) = Unverified::decode(data, &net) {
        let batch = protocol::verify_batch(vec![u]);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].is_ok(), single.is_ok(), "batch and single verification disagree");
    }
}

/// The strict canonical CBOR parser: whatever it accepts re-encodes to the same bytes.
pub fn cbor(data: &[u8]) {
    if let Ok(v) = protocol::cbor::parse_canonical(data) {
        let again = protocol::cbor::to_canonical(&v).expect("a parsed value encodes");
        assert_eq!(again, data, "accepted CBOR is not canonical");
    }
}

fn snapshot(offset: u64) -> IdSnapshot {
    IdSnapshot::from_ids(
        (0..SYNC_SNAPSHOT_IDS).map(|i| {
            RecordId::from_bytes(*blake3::hash(&(i * 2 + offset).to_le_bytes()).as_bytes())
        }),
    )
}

/// Sync messages from a peer. The first byte picks what the rest is: a request or
/// a response as the libp2p codec decodes it, a negentropy frame for the
/// (stateless) responder, or a responder's answer to our initiator.
pub fn sync(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 4 {
        0 => {
            if let Ok(req) = cbor4ii::serde::from_slice::<SyncRequest>(rest) {
                let _ =
                    cbor4ii::serde::to_vec(Vec::new(), &req).expect("a decoded request encodes");
                // A sketch request (its estimator included) is answered with at
                // most the kept symbols.
                if let SyncRequest::Sketch { start, count, set_len, estimator, .. } = req {
                    static SKETCH: OnceLock<protocol::riblt::Sketch> = OnceLock::new();
                    let sketch = SKETCH.get_or_init(|| {
                        let ids: Vec<RecordId> = (0..SYNC_SNAPSHOT_IDS)
                            .map(|i| {
                                RecordId::from_bytes(*blake3::hash(&i.to_le_bytes()).as_bytes())
                            })
                            .collect();
                        protocol::riblt::Sketch::from_ids(protocol::riblt::SKETCH_SYMBOLS_MAX, &ids)
                    });
                    if let SyncResponse::Sketch { symbols, .. } =
                        node::sync::answer_sketch(sketch, start, count, set_len, &estimator)
                    {
                        let max = protocol::riblt::SKETCH_SYMBOLS_MAX as usize;
                        assert!(symbols.len() <= max * protocol::riblt::SYMBOL_BYTES);
                    }
                }
            }
        }
        1 => {
            if let Ok(resp) = cbor4ii::serde::from_slice::<SyncResponse>(rest) {
                let _ =
                    cbor4ii::serde::to_vec(Vec::new(), &resp).expect("a decoded response encodes");
            }
        }
        2 => {
            static THEIRS: OnceLock<IdSnapshot> = OnceLock::new();
            let theirs = THEIRS.get_or_init(|| snapshot(0));
            if let Ok(answer) = node::sync::respond(theirs, rest) {
                assert!(
                    answer.len() as u64 <= node::sync::FRAME_BYTES_MAX + 1024,
                    "answer exceeds the frame limit"
                );
            }
        }
        _ => {
            let Ok((mut init, _first)) = Initiator::start(snapshot(1)) else { return };
            if let Ok(Some(next)) = init.step(rest) {
                assert!(
                    next.len() as u64 <= node::sync::FRAME_BYTES_MAX + 1024,
                    "next frame exceeds the limit"
                );
            }
            assert!(
                init.need.len() as u64 <= rest.len() as u64 / 32 + 1,
                "needs more ids than the answer names"
            );
        }
    }
}

/// A container manifest file (MedPerf container config or legacy mlcube.yaml).
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = runner::parse_manifest(text);
}

/// The key the `private` target decrypts under.
fn private_key() -> &'static protocol::private::ModelKey {
    static KEY: OnceLock<protocol::private::ModelKey> = OnceLock::new();
    KEY.get_or_init(|| {
        protocol::private::ModelKey::generate(&mut protocol::seal::SeededRng::new(b"fuzz"))
    })
}

/// A private model's encrypted archive from a peer: decrypting never panics, and
/// what decrypts is exactly what the key seals (one ciphertext per plaintext).
pub fn private(data: &[u8]) {
    let key = private_key();
    if let Ok(plain) = protocol::private::decrypt(key, &key.check(), data) {
        assert_eq!(protocol::private::encrypt(key, &plain), data, "a second ciphertext opened");
    }
}

/// Seed inputs for each target, by target name.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let w = protocol::testkit::Workflow::complete();
    let picks: Vec<&Record> = [
        "container",
        "benchmark",
        "benchmark_decision",
        "dataset",
        "association_request",
        "association_decision",
        "result",
        "release",
    ]
    .iter()
    .filter_map(|k| w.records.iter().find(|r| r.kind() == *k))
    .collect();
    let records: Vec<Vec<u8>> = picks.iter().map(|r| r.bytes.to_vec()).collect();
    let mut cbor: Vec<Vec<u8>> = records.clone();
    for r in &picks {
        if let Ok(ciborium::Value::Array(items)) = protocol::cbor::parse_canonical(&r.bytes)
            && let Some(ciborium::Value::Bytes(payload)) = items.get(3)
        {
            cbor.push(payload.clone());
        }
    }
    let net = root().network_id();
    let (_, first) = Initiator::start(snapshot(1)).expect("initiate");
    let answer = node::sync::respond(&snapshot(0), &first).expect("respond");
    let enc = |v: &dyn Fn() -> Vec<u8>| v();
    let mut sync = vec![
        [
            &[0u8][..],
            &enc(&|| {
                cbor4ii::serde::to_vec(
                    Vec::new(),
                    &SyncRequest::Reconcile {
                        network: net.as_bytes().to_vec(),
                        msg: first.clone(),
                    },
                )
                .expect("encode")
            }),
        ]
        .concat(),
        [
            &[0u8][..],
            &enc(&|| {
                cbor4ii::serde::to_vec(
                    Vec::new(),
                    &SyncRequest::Fetch {
                        ids: picks.iter().map(|r| r.id.as_bytes().to_vec().into()).collect(),
                    },
                )
                .expect("encode")
            }),
        ]
        .concat(),
        [
            &[1u8][..],
            &enc(&|| {
                cbor4ii::serde::to_vec(
                    Vec::new(),
                    &SyncResponse::Records {
                        records: records.iter().take(2).cloned().map(Into::into).collect(),
                        truncated: false,
                    },
                )
                .expect("encode")
            }),
        ]
        .concat(),
        [
            &[1u8][..],
            &enc(&|| {
                cbor4ii::serde::to_vec(
                    Vec::new(),
                    &SyncResponse::Refused { reason: "wrong network".into() },
                )
                .expect("encode")
            }),
        ]
        .concat(),
        [&[2u8][..], &first[..]].concat(),
        [&[3u8][..], &answer[..]].concat(),
    ];
    sync.push(
        [
            &[1u8][..],
            &enc(&|| {
                cbor4ii::serde::to_vec(Vec::new(), &SyncResponse::Reconcile { msg: answer.clone() })
                    .expect("encode")
            }),
        ]
        .concat(),
    );
    // A first sketch request with an estimator (of a set the responder does not
    // share: an estimated difference of about a hundred).
    let estimator = protocol::riblt::Sketch::from_ids(
        1,
        &(0..100u64)
            .map(|i| RecordId::from_bytes(*blake3::hash(&(i + 1 << 32).to_le_bytes()).as_bytes()))
            .collect::<Vec<_>>(),
    )
    .estimator()
    .encode();
    sync.push(
        [
            &[0u8][..],
            &enc(&|| {
                cbor4ii::serde::to_vec(
                    Vec::new(),
                    &SyncRequest::Sketch {
                        network: net.as_bytes().to_vec(),
                        start: 0,
                        count: 32,
                        set_len: 100,
                        estimator: estimator.clone(),
                    },
                )
                .expect("encode")
            }),
        ]
        .concat(),
    );
    let manifests: Vec<Vec<u8>> = [
        include_str!("../../examples/preparator/container_config.yaml"),
        include_str!("../../examples/model_logistic/container_config.yaml"),
        include_str!("../../examples/metrics/container_config.yaml"),
        include_str!("../../examples/metrics/mlcube.yaml"),
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let key = private_key();
    let sealed = protocol::private::encrypt(key, b"a small image archive");
    let private = vec![
        protocol::private::encrypt(key, b""),
        sealed.clone(),
        protocol::private::encrypt(key, &[7u8; 3000]),
        sealed[..sealed.len() - 1].to_vec(),
    ];
    vec![
        ("record", records),
        ("cbor", cbor),
        ("sync", sync),
        ("manifest", manifests),
        ("private", private),
    ]
}

/// The target body by name.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    match name {
        "record" => Some(record),
        "cbor" => Some(cbor),
        "sync" => Some(sync),
        "manifest" => Some(manifest),
        "private" => Some(private),
        _ => None,
    }
}
