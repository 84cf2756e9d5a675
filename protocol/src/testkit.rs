//! Deterministic keys, author chains and a complete MedPerf workflow as records:
//! for unit tests, property tests, benches and the node's integration tests.
//! Nothing here is used by production code paths.

use std::collections::BTreeMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::SigningKey;

use crate::contract::{Role, TaskKind};
use crate::envelope::Record;
use crate::ids::{Hash32, NetworkId, PublicKey, RecordId, X25519Key};
use crate::record::*;
use crate::root::NetworkRoot;
use crate::seal::{Binding, DetailsBinding, OpeningKey, SeededRng, seal, seal_details};

/// A signing key derived from a label: the same label gives the same key.
pub fn key(label: &str) -> SigningKey {
    SigningKey::from_bytes(&blake3::derive_key("medmesh testkit key", label.as_bytes()))
}

/// An author signing records in chain order.
#[derive(Clone, Debug)]
pub struct Author {
    pub key: SigningKey,
    pub network: NetworkId,
    pub next_seq: u64,
    pub prev: Option<RecordId>,
}

impl Author {
    pub fn new(label: &str, network: NetworkId) -> Self {
        Self { key: key(label), network, next_seq: 0, prev: None }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::from(&self.key)
    }

    /// The X25519 key pair this author opens results with, derived from its key.
    pub fn opening(&self) -> OpeningKey {
        OpeningKey::from_secret(blake3::derive_key("medmesh testkit x25519", self.key.as_bytes()))
    }

    /// A profile publishing [`Author::opening`]'s public key.
    pub fn profile(&self, name: &str) -> Body {
        Body::Profile(Profile {
            name: name.into(),
            organisation: "testkit".into(),
            x25519: self.opening().public(),
        })
    }

    /// Sign `body` as the next record of this author's chain.
    pub fn sign(&mut self, body: Body) -> Record {
        let r = Record::sign(&self.key, self.network, self.next_seq, self.prev, body)
            .expect("testkit bodies are valid");
        self.next_seq += 1;
        self.prev = Some(r.id);
        r
    }

    /// Sign at an explicit chain position without advancing (to equivocate).
    pub fn sign_at(&self, seq: u64, prev: Option<RecordId>, body: Body) -> Record {
        Record::sign(&self.key, self.network, seq, prev, body).expect("testkit bodies are valid")
    }

    /// The envelope bytes of `body` at `seq`, correctly signed but with no check of
    /// its bounds (a name too long, a list too long): for tests of what a node does
    /// with a record that is signed and still breaks a rule.
    pub fn sign_unchecked(&self, seq: u64, prev: Option<RecordId>, body: Body) -> Vec<u8> {
        let payload = crate::cbor::to_canonical(&Payload { v: PAYLOAD_VERSION, seq, prev, body })
            .expect("a payload encodes");
        crate::envelope::sign_unchecked(&self.key, self.network, payload)
            .expect("an envelope encodes")
    }

    /// The envelope bytes of `body` at `seq` with a hand-made signature whose
    /// nonce commitment is `R' = rB + offset` (`r` derived from `label`), and
    /// `s = r + H(R' || A || M) a`. With `offset` a torsion point ([`torsion`]) of
    /// order 2, 4 or 8 this is the signature that passes a cofactorless batch
    /// equation whenever the batch's random coefficient for it is a multiple of
    /// that order (and a cofactored check always) but fails `verify_strict`. Its
    /// bytes look honest; nodes must refuse it on every path.
    pub fn sign_with_nonce_offset(
        &self,
        seq: u64,
        prev: Option<RecordId>,
        body: Body,
        label: &str,
        offset: EdwardsPoint,
    ) -> Vec<u8> {
        let r = nonce(label);
        let big_r = (ED25519_BASEPOINT_POINT * r + offset).compress();
        self.sign_with_raw_r(seq, prev, body, r, *big_r.as_bytes())
    }

    /// The envelope bytes of `body` at `seq` with `R` the identity and `s = ka`:
    /// the signature equation holds exactly, so every batch accepts it, while
    /// `verify_strict` refuses an `R` of small order. Nodes must refuse it on
    /// every path.
    pub fn sign_with_identity_r(&self, seq: u64, prev: Option<RecordId>, body: Body) -> Vec<u8> {
        let identity = EdwardsPoint::default().compress().to_bytes();
        self.sign_with_raw_r(seq, prev, body, Scalar::ZERO, identity)
    }

    /// The envelope bytes of `body` at `seq` signed as `R || r + H(R || A || M) a`
    /// with `R` written exactly as given (any spelling, any point) and `r` the
    /// caller's: for signatures that only a hostile signer would make.
    pub fn sign_with_raw_r(
        &self,
        seq: u64,
        prev: Option<RecordId>,
        body: Body,
        r: Scalar,
        big_r: [u8; 32],
    ) -> Vec<u8> {
        use sha2::Digest as _;
        let payload = crate::cbor::to_canonical(&Payload { v: PAYLOAD_VERSION, seq, prev, body })
            .expect("a payload encodes");
        let message = crate::envelope::tbs(&self.network, self.public().as_bytes(), &payload);
        let mut h = sha2::Sha512::new();
        h.update(big_r);
        h.update(self.public().as_bytes());
        h.update(&message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * self.key.to_scalar();
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&big_r);
        signature[32..].copy_from_slice(s.as_bytes());
        crate::envelope::envelope_unchecked(self.network, self.public(), payload, signature)
            .expect("an envelope encodes")
    }
}

/// Whether a batch equation (as ed25519-dalek's `verify_batch` computes it) would
/// accept these envelopes of `network` together; false if one does not decode.
/// For tests that show what batch verification would have let in.
pub fn batch_equation_accepts(network: &NetworkId, envelopes: &[&[u8]]) -> bool {
    let items: Result<Vec<_>, _> =
        envelopes.iter().map(|b| crate::envelope::Unverified::decode(b, network)).collect();
    items.is_ok_and(|items| crate::envelope::batch_equation_accepts(&items))
}

/// A nonce scalar derived from a label (deterministic, like the keys).
pub fn nonce(label: &str) -> Scalar {
    Scalar::from_bytes_mod_order(blake3::derive_key("medmesh testkit nonce", label.as_bytes()))
}

/// A torsion point of exactly `order` (1, 2, 4 or 8; anything else is taken as 8).
pub fn torsion(order: u8) -> EdwardsPoint {
    // A point of order 8; its multiples by 2 and 4 have order 4 and 2.
    let t8 =
        CompressedEdwardsY(crate::curve::ORDER_8_POINT).decompress().expect("a point of order 8");
    let times = match order {
        1 => 8u8,
        2 => 4,
        4 => 2,
        _ => 1,
    };
    t8 * Scalar::from(times)
}

/// An admission of `key` for `epoch` with `roles` (sorted here).
pub fn admission(key: PublicKey, epoch: u64, roles: &[MemberRole]) -> Body {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    Body::Admission(Admission { key, epoch, roles })
}

/// A join request asking for `roles` (sorted here).
pub fn join_request(name: &str, roles: &[MemberRole]) -> Body {
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    Body::JoinRequest(JoinRequest {
        name: name.into(),
        organisation: format!("{name} organisation"),
        roles,
        message: "please admit us".into(),
    })
}

/// A network root with the given admins.
pub fn root(admins: &[PublicKey], threshold: u16) -> NetworkRoot {
    NetworkRoot::new("testnet", admins.to_vec(), threshold, Hash32::of(b"testkit"))
        .expect("valid testkit root")
}

fn digest(label: &str) -> String {
    format!("sha256:{}", hex::encode(blake3::hash(label.as_bytes()).as_bytes()))
}

fn param(name: &str, kind: ParamKind) -> Param {
    Param {
        name: name.into(),
        kind,
        mount_path: Some(format!("/mlcube_io/{name}")),
        default: None,
        optional: false,
    }
}

/// A container record body with one task per name, each reading the task's first
/// input in MedPerf's contract (`data_path`, or `predictions` for `evaluate`) and
/// writing its first output, if it has one. A name outside the contract gets
/// `data_path` and `output_path` (and makes the record invalid).
pub fn container(name: &str, tasks: &[&str]) -> Body {
    let first = |task: &str, role: Role| match TaskKind::from_name(task) {
        Some(kind) => kind.names(role).next(),
        None => Some(if role == Role::Input { "data_path" } else { "output_path" }),
    };
    Body::Container(Container {
        name: name.into(),
        manifest: Manifest {
            format: ManifestFormat::ContainerConfig,
            tasks: tasks
                .iter()
                .map(|t| Task {
                    name: (*t).into(),
                    inputs: first(t, Role::Input)
                        .map(|p| param(p, ParamKind::Directory))
                        .into_iter()
                        .collect(),
                    outputs: first(t, Role::Output)
                        .map(|p| param(p, ParamKind::Directory))
                        .into_iter()
                        .collect(),
                    run_args: RunArgs::default(),
                })
                .collect(),
        },
        image: ImageRef { reference: format!("medmesh/{name}:1"), digest: digest(name) },
        image_archive: None,
        parameters: None,
        additional_files: None,
        encryption: None,
    })
}

/// A benchmark body over the three containers, with the given committee.
pub fn benchmark(
    name: &str,
    prep: RecordId,
    model: RecordId,
    metrics: RecordId,
    committee: Vec<PublicKey>,
    threshold: u16,
) -> Benchmark {
    Benchmark {
        name: name.into(),
        description: format!("{name}: a test benchmark"),
        docs_url: "https://example.org/docs".into(),
        demo_dataset: DemoDataset { hash: Hash32::of(b"demo"), size: 4 },
        data_preparator: prep,
        reference_model: model,
        metrics,
        committee,
        threshold,
        dataset_auto_approval: AutoApproval::Never,
        model_auto_approval: AutoApproval::Never,
        sharing: SharingPolicy::PerDataset,
        disclosure: Disclosure::default(),
        rank_metric: "auc".into(),
        higher_is_better: true,
    }
}

/// A dataset's details and pseudonym key, as its owner seals them (the key is
/// derived from the name, so tests are reproducible).
pub fn details(name: &str) -> SealedDetails {
    let mut statistics = BTreeMap::new();
    statistics.insert("samples".to_string(), crate::metric::MetricValue::Int(120));
    SealedDetails {
        details: DatasetDetails {
            name: name.into(),
            description: format!("{name} data"),
            location: "on site".into(),
            statistics,
            num_cases: Some(120),
            name_public: false,
        },
        pseudonym_key: Bytes(
            blake3::derive_key("medmesh testkit pseudonym", name.as_bytes()).to_vec(),
        ),
    }
}

/// A dataset body of `owner` for `benchmark`, prepared with `prep`, its details
/// sealed (for real, with a seeded RNG) to `readers`; to nobody when empty,
/// which the fold refuses once it knows the benchmark.
pub fn dataset(
    name: &str,
    benchmark: RecordId,
    owner: PublicKey,
    prep: RecordId,
    state: DatasetState,
    readers: &[X25519Key],
) -> Body {
    let binding = DetailsBinding { benchmark, owner };
    let mut rng = SeededRng::new(name.as_bytes());
    let sealed =
        seal_details(&details(name), readers, binding, &mut rng).unwrap_or_else(|_| Sealed {
            scheme: crate::seal::SCHEME.into(),
            recipients: Vec::new(),
            ciphertext: Bytes(vec![0; 32]),
        });
    Body::Dataset(Dataset {
        benchmark,
        data_preparator: prep,
        prepared_hash: Hash32::of(name.as_bytes()),
        state,
        public_details: None,
        sealed,
    })
}

/// A dataset body whose sealed part names `readers` under the real scheme but
/// holds opaque bytes: the fold accepts it (it cannot tell), so benches can build
/// many without paying for HPKE. Never for tests that open details.
pub fn dataset_to(
    name: &str,
    benchmark: RecordId,
    prep: RecordId,
    state: DatasetState,
    readers: &[X25519Key],
) -> Body {
    Body::Dataset(Dataset {
        benchmark,
        data_preparator: prep,
        prepared_hash: Hash32::of(name.as_bytes()),
        state,
        public_details: None,
        sealed: Sealed {
            scheme: crate::seal::SCHEME.into(),
            recipients: readers
                .iter()
                .map(|k| SealedFor { recipient: *k, encapsulated: Bytes(vec![1; 48]) })
                .collect(),
            ciphertext: Bytes(vec![0; 1040]),
        },
    })
}

/// An association request with a compatibility test outcome.
pub fn request(benchmark: RecordId, subject: Subject, passed: bool) -> Body {
    Body::AssociationRequest(AssociationRequest {
        benchmark,
        subject,
        compatibility: CompatibilityTest {
            passed,
            results_hash: Hash32::of(b"results"),
            image_digests: vec![digest("prep")],
        },
    })
}

/// A committee decision.
pub fn decide(
    benchmark: RecordId,
    subject: Subject,
    decision: Decision,
    priority: Option<i32>,
) -> Body {
    Body::AssociationDecision(AssociationDecision { benchmark, subject, decision, priority })
}

/// The start every synthetic federation of the benches shares: a root with one
/// admin; a committee of three that publish profiles (results count only when
/// sealed to every member, by profile); `benchmarks` benchmarks of the owner's
/// (three containers each, two approvals needed, `adjust` applied), each approved
/// by the admin; and `models` models approved in every benchmark.
pub struct Federation {
    pub root: NetworkRoot,
    pub committee: Vec<Author>,
    /// The committee's opening keys, in committee order.
    pub readers: Vec<X25519Key>,
    /// Each benchmark's id and its data preparator's.
    pub benchmarks: Vec<(RecordId, RecordId)>,
    pub models: Vec<RecordId>,
    /// Every record above, in signing order.
    pub records: Vec<Record>,
}

/// What one synthetic hospital signs in a [`Federation`]: its profile, an
/// operational dataset per benchmark (details sealed to the committee and
/// itself), each dataset's association request, and a result per model.
pub struct Hospital {
    pub key: PublicKey,
    /// (benchmark, dataset) pairs, in benchmark order.
    pub datasets: Vec<(RecordId, RecordId)>,
    /// Every record it signed, in signing order.
    pub records: Vec<Record>,
}

impl Federation {
    /// Hospital number `h`: deterministic, and independent of every other
    /// hospital, so callers may sign many in parallel.
    pub fn hospital(&self, h: usize) -> Hospital {
        let mut hosp = Author::new(&format!("h{h}"), self.root.network_id());
        let mut to = self.readers.clone();
        to.push(hosp.opening().public());
        let mut records = vec![hosp.sign(hosp.profile("hospital"))];
        let mut datasets = Vec::new();
        for (b, prep) in &self.benchmarks {
            let d =
                hosp.sign(dataset_to(&format!("d{h}"), *b, *prep, DatasetState::Operation, &to));
            datasets.push((*b, d.id));
            records.push(d);
        }
        for (b, d) in &datasets {
            records.push(hosp.sign(request(*b, Subject::Dataset(*d), true)));
            for m in &self.models {
                records.push(hosp.sign(result_to(*b, *m, *d, h as u64, &to)));
            }
        }
        Hospital { key: hosp.public(), datasets, records }
    }
}

/// See [`Federation`].
pub fn federation(benchmarks: usize, models: usize, adjust: impl Fn(&mut Benchmark)) -> Federation {
    let admin_key = key("admin");
    let root = self::root(&[PublicKey::from(&admin_key)], 1);
    let net = root.network_id();
    let mut admin = Author::new("admin", net);
    let mut owner = Author::new("owner", net);
    let mut committee: Vec<Author> = (0..3).map(|i| Author::new(&format!("c{i}"), net)).collect();
    let mut records = Vec::new();
    let mut readers = Vec::new();
    for c in &mut committee {
        readers.push(c.opening().public());
        records.push(c.sign(c.profile("member")));
    }
    let mut benches = Vec::new();
    for b in 0..benchmarks {
        let ids: Vec<RecordId> = ["prep", "ref", "metrics"]
            .iter()
            .map(|n| {
                let r = owner.sign(container(&format!("{n}-{b}"), &["infer"]));
                let id = r.id;
                records.push(r);
                id
            })
            .collect();
        let mut bench = benchmark(
            &format!("bench-{b}"),
            ids[0],
            ids[1],
            ids[2],
            committee.iter().map(Author::public).collect(),
            2,
        );
        adjust(&mut bench);
        let r = owner.sign(Body::Benchmark(bench));
        benches.push((r.id, ids[0]));
        records.push(r);
        records.push(admin.sign(Body::BenchmarkDecision(BenchmarkDecision {
            benchmark: benches[b].0,
            decision: Decision::Approve,
        })));
    }
    let bench_ids: Vec<RecordId> = benches.iter().map(|(b, _)| *b).collect();
    let (models, model_records) = approved_models(net, &bench_ids, &mut committee, models);
    records.extend(model_records);
    Federation { root, committee, readers, benchmarks: benches, models, records }
}

/// `count` models, each signed by an owner of its own (`mo0`, `mo1`, ...), each
/// asking to join every one of `benchmarks` and approved there (priority 1) by the
/// first two of `committee`: the models' ids, and the records in signing order.
fn approved_models(
    network: NetworkId,
    benchmarks: &[RecordId],
    committee: &mut [Author],
    count: usize,
) -> (Vec<RecordId>, Vec<Record>) {
    let mut models = Vec::new();
    let mut records = Vec::new();
    for m in 0..count {
        let mut mo = Author::new(&format!("mo{m}"), network);
        let r = mo.sign(container(&format!("model-{m}"), &["infer"]));
        let model = r.id;
        records.push(r);
        for b in benchmarks {
            records.push(mo.sign(request(*b, Subject::Model(model), true)));
            for c in committee.iter_mut().take(2) {
                records.push(c.sign(decide(*b, Subject::Model(model), Decision::Approve, Some(1))));
            }
        }
        models.push(model);
    }
    (models, records)
}

/// A result body whose `auc` is sealed (for real, with a seeded RNG) to
/// `recipients`.
pub fn sealed_result(
    benchmark: RecordId,
    model: RecordId,
    dataset: RecordId,
    auc: i64,
    recipients: &[X25519Key],
) -> Body {
    let Body::Result(mut r) = result(benchmark, model, dataset, auc as u64) else {
        unreachable!("result() builds a result")
    };
    // The container writes a float; releases carry it back as millionths.
    let metrics: BTreeMap<String, crate::metric::MetricValue> =
        [("auc".to_string(), crate::metric::MetricValue::float(auc as f64 / 1e6))]
            .into_iter()
            .collect();
    let binding = Binding { benchmark, model, dataset };
    let mut rng = SeededRng::new(
        &[&benchmark.as_bytes()[..], &model.as_bytes()[..], &dataset.as_bytes()[..]].concat(),
    );
    r.metrics = seal(&metrics, recipients, binding, &mut rng).unwrap_or_else(|_| Sealed {
        // Sealed to nobody: what a hostile owner may publish.
        scheme: crate::seal::SCHEME.into(),
        recipients: Vec::new(),
        ciphertext: Bytes(vec![0; 32]),
    });
    Body::Result(r)
}

/// A result body that names `recipients` under the real scheme but holds opaque
/// bytes nobody can open: the fold counts it (it cannot tell), so benches can
/// build millions without paying for HPKE. Never for tests that open results.
pub fn result_to(
    benchmark: RecordId,
    model: RecordId,
    dataset: RecordId,
    salt: u64,
    recipients: &[X25519Key],
) -> Body {
    let Body::Result(mut r) = result(benchmark, model, dataset, salt) else {
        unreachable!("result() builds a result")
    };
    r.metrics.scheme = crate::seal::SCHEME.into();
    r.metrics.recipients = recipients
        .iter()
        .map(|k| SealedFor { recipient: *k, encapsulated: Bytes(vec![1; 48]) })
        .collect();
    Body::Result(r)
}

/// A result body with an opaque sealed blob (an unknown scheme, so it never
/// counts): for tests of everything but counting.
pub fn result(benchmark: RecordId, model: RecordId, dataset: RecordId, salt: u64) -> Body {
    Body::Result(ResultRecord {
        benchmark,
        model,
        dataset,
        metrics: Sealed {
            scheme: "test-opaque".into(),
            recipients: vec![SealedFor {
                recipient: X25519Key::from_bytes([9; 32]),
                encapsulated: Bytes(vec![1; 32]),
            }],
            ciphertext: Bytes(salt.to_le_bytes().repeat(8)),
        },
        receipt: ExecutionReceipt {
            model_image_digest: digest("model"),
            metrics_image_digest: digest("metrics"),
            dataset_hash: Hash32::of(b"d"),
            limits: ExecutionLimits { memory_bytes: 1 << 30, nano_cpus: 1_000_000_000, pids: 256 },
            runner_version: "medmesh-runner/testkit".into(),
            outputs_commitment: Hash32::of(&salt.to_le_bytes()),
        },
    })
}

/// A complete MedPerf workflow: admin, a committee of three with threshold two, a
/// benchmark owner, three hospitals and two model owners, every step signed.
#[derive(Clone, Debug)]
pub struct Workflow {
    pub root: NetworkRoot,
    pub admin: Author,
    pub committee: Vec<Author>,
    pub owner: Author,
    pub hospitals: Vec<Author>,
    pub modelers: Vec<Author>,
    pub prep: RecordId,
    pub reference: RecordId,
    pub metrics: RecordId,
    pub models: Vec<RecordId>,
    pub benchmark: RecordId,
    pub datasets: Vec<RecordId>,
    pub records: Vec<Record>,
}

impl Workflow {
    /// Network, people and containers; no benchmark yet.
    pub fn people() -> Self {
        Self::people_in(crate::root::AdmissionMode::Open)
    }

    /// As [`Workflow::people`] in a network with the given admission mode. In an
    /// admitted network the admin first admits everyone with the roles their part
    /// needs (the committee with none).
    pub fn people_in(mode: crate::root::AdmissionMode) -> Self {
        let admin_key = key("admin");
        let root = root(&[PublicKey::from(&admin_key)], 1).with_admission(mode);
        let net = root.network_id();
        let mut w = Workflow {
            admin: Author::new("admin", net),
            committee: (0..3).map(|i| Author::new(&format!("committee-{i}"), net)).collect(),
            owner: Author::new("benchmark-owner", net),
            hospitals: (0..3).map(|i| Author::new(&format!("hospital-{i}"), net)).collect(),
            modelers: (0..2).map(|i| Author::new(&format!("model-owner-{i}"), net)).collect(),
            root,
            prep: RecordId::from_bytes([0; 32]),
            reference: RecordId::from_bytes([0; 32]),
            metrics: RecordId::from_bytes([0; 32]),
            models: Vec::new(),
            benchmark: RecordId::from_bytes([0; 32]),
            datasets: Vec::new(),
            records: Vec::new(),
        };
        if !mode.is_open() {
            let mut grants: Vec<(PublicKey, &[MemberRole])> = Vec::new();
            grants.extend(w.committee.iter().map(|a| (a.public(), &[][..])));
            grants.push((w.owner.public(), &[MemberRole::BenchmarkOwner]));
            grants.extend(w.hospitals.iter().map(|a| (a.public(), &[MemberRole::DataOwner][..])));
            grants.extend(w.modelers.iter().map(|a| (a.public(), &[MemberRole::ModelOwner][..])));
            for (key, roles) in grants {
                w.push(|w| &mut w.admin, admission(key, 0, roles));
            }
        }
        // Committee members and data owners publish the keys results are sealed to.
        for i in 0..w.committee.len() {
            w.push(|w| &mut w.committee[i], w.committee[i].profile(&format!("committee-{i}")));
        }
        for i in 0..w.hospitals.len() {
            w.push(|w| &mut w.hospitals[i], w.hospitals[i].profile(&format!("hospital-{i}")));
        }
        w.prep = w.push_owner(container("prep", &["prepare", "sanity_check", "statistics"]));
        w.reference = w.push_owner(container("reference-model", &["infer"]));
        w.metrics = w.push_owner(container("metrics", &["evaluate"]));
        for i in 0..w.modelers.len() {
            let r = w.modelers[i].sign(container(&format!("model-{i}"), &["infer"]));
            w.models.push(r.id);
            w.records.push(r);
        }
        w
    }

    fn push_owner(&mut self, body: Body) -> RecordId {
        let r = self.owner.sign(body);
        let id = r.id;
        self.records.push(r);
        id
    }

    /// Sign with `who` and keep the record.
    pub fn push(&mut self, who: impl FnOnce(&mut Self) -> &mut Author, body: Body) -> Record {
        let r = who(self).sign(body);
        self.records.push(r.clone());
        r
    }

    /// Submit the benchmark (not yet approved) with `edit` applied.
    pub fn with_benchmark(mut self, edit: impl FnOnce(&mut Benchmark)) -> Self {
        let committee: Vec<_> = self.committee.iter().map(Author::public).collect();
        let mut b =
            benchmark("tumour-bench", self.prep, self.reference, self.metrics, committee, 2);
        edit(&mut b);
        self.benchmark = self.push_owner(Body::Benchmark(b));
        self
    }

    /// The admin approves the benchmark.
    pub fn approve_benchmark(mut self) -> Self {
        let b = self.benchmark;
        self.push(
            |w| &mut w.admin,
            Body::BenchmarkDecision(BenchmarkDecision {
                benchmark: b,
                decision: Decision::Approve,
            }),
        );
        self
    }

    /// Every hospital registers an operational dataset and requests association.
    pub fn register_datasets(mut self) -> Self {
        for i in 0..self.hospitals.len() {
            let body = self.dataset(i, &format!("hospital-{i}"), DatasetState::Operation);
            let d = self.push(|w| &mut w.hospitals[i], body).id;
            self.datasets.push(d);
            let b = self.benchmark;
            self.push(|w| &mut w.hospitals[i], request(b, Subject::Dataset(d), true));
        }
        self
    }

    /// Every model owner requests association of its model.
    pub fn request_models(mut self) -> Self {
        for i in 0..self.modelers.len() {
            let (b, m) = (self.benchmark, self.models[i]);
            self.push(|w| &mut w.modelers[i], request(b, Subject::Model(m), true));
        }
        self
    }

    /// Committee members 0 and 1 approve every requested association.
    pub fn approve_all(mut self) -> Self {
        let b = self.benchmark;
        let subjects: Vec<Subject> = self
            .datasets
            .iter()
            .map(|d| Subject::Dataset(*d))
            .chain(self.models.iter().map(|m| Subject::Model(*m)))
            .collect();
        for s in subjects {
            for c in 0..2 {
                self.push(|w| &mut w.committee[c], decide(b, s, Decision::Approve, Some(1)));
            }
        }
        self
    }

    /// A dataset of hospital `i` for the workflow's benchmark, its details sealed
    /// to [`Workflow::readers`].
    pub fn dataset(&self, hospital: usize, name: &str, state: DatasetState) -> Body {
        dataset(
            name,
            self.benchmark,
            self.hospitals[hospital].public(),
            self.prep,
            state,
            &self.readers(hospital),
        )
    }

    /// The dataset details committee member `member` opens from `state`: what it
    /// builds releases with. Datasets it cannot open are left out.
    pub fn opened_details(
        &self,
        state: &crate::fold::State,
        member: usize,
    ) -> BTreeMap<RecordId, SealedDetails> {
        let key = self.committee[member].opening();
        state
            .datasets
            .iter()
            .filter_map(|(id, v)| {
                let binding = DetailsBinding { benchmark: v.dataset.benchmark, owner: v.owner };
                crate::seal::open_details(&v.dataset.sealed, &key, binding).ok().map(|d| (*id, d))
            })
            .collect()
    }

    /// Who must be able to read hospital `i`'s results: the committee and `i`.
    pub fn readers(&self, hospital: usize) -> Vec<X25519Key> {
        self.committee
            .iter()
            .chain([&self.hospitals[hospital]])
            .map(|a| a.opening().public())
            .collect()
    }

    /// Hospital `i`'s result for `model` on `dataset`, sealed to [`Workflow::readers`].
    pub fn result(&self, hospital: usize, model: RecordId, dataset: RecordId, auc: i64) -> Body {
        sealed_result(self.benchmark, model, dataset, auc, &self.readers(hospital))
    }

    /// Each hospital submits a result for each model.
    pub fn submit_results(mut self) -> Self {
        for i in 0..self.hospitals.len() {
            for m in self.models.clone() {
                let body = self.result(i, m, self.datasets[i], 500_000 + i as i64);
                self.push(|w| &mut w.hospitals[i], body);
            }
        }
        self
    }

    /// A per-dataset release of the results that count now, with `auc` values
    /// `value(model index, dataset index)`, signed by committee members `signers`.
    pub fn release(
        mut self,
        round: u64,
        signers: &[usize],
        value: impl Fn(usize, usize) -> i64,
    ) -> Self {
        let state = crate::fold::fold(&self.root, &self.records);
        let mut entries = Vec::new();
        for r in state.results.iter().filter(|r| r.counts && r.benchmark == self.benchmark) {
            let mi = self.models.iter().position(|m| *m == r.model);
            let di = self.datasets.iter().position(|d| *d == r.dataset);
            let (Some(mi), Some(di)) = (mi, di) else { continue };
            let mut metrics = BTreeMap::new();
            metrics.insert("auc".to_string(), crate::metric::Figure::Millionths(value(mi, di)));
            let name = format!("hospital-{di}");
            entries.push(ReleaseEntry {
                model: r.model,
                dataset: Some(crate::disclosure::dataset_label(&self.benchmark, &details(&name))),
                datasets: 1,
                metrics,
            });
        }
        entries.sort_by(|a, b| (a.model, &a.dataset).cmp(&(b.model, &b.dataset)));
        let release = Release {
            benchmark: self.benchmark,
            round,
            policy: SharingPolicy::PerDataset,
            entries,
            seed: 7,
        };
        for &c in signers {
            self.push(|w| &mut w.committee[c], Body::Release(release.clone()));
        }
        self
    }

    /// The whole workflow, ending with a release signed by two members in which
    /// model 1 beats model 0.
    pub fn complete() -> Self {
        Self::people()
            .with_benchmark(|_| {})
            .approve_benchmark()
            .register_datasets()
            .request_models()
            .approve_all()
            .submit_results()
            .release(1, &[0, 1], |m, d| 800_000 + 50_000 * m as i64 + 1_000 * d as i64)
    }
}

/// Results whose metrics are counts over a hospital's cases, as a classifier's
/// metrics container reports them, and the outsider's dictionary attack on them:
/// for the privacy tests of every crate.
pub mod counted {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::seal::{ReceiptKey, seal_result};

    /// Each hospital's true case count, which the attacker is assumed to know.
    pub const CASES: [u64; 3] = [10, 12, 14];
    /// Correct answers of (hospital, model): hospital 0 scores 7 of 10 with model 0.
    pub const CORRECT: [[u64; 2]; 3] = [[7, 9], [8, 11], [10, 12]];
    /// Releases round to one decimal and show only the error rate.
    pub const PRECISION: u64 = 100_000;

    /// The whole workflow up to results, every result sealed for real with its
    /// receipt built as the runner builds it, under `sharing`; the benchmark ranks
    /// by error rate and releases only it, at [`PRECISION`].
    pub fn workflow(sharing: SharingPolicy) -> Workflow {
        Workflow::people()
            .with_benchmark(|b| {
                b.sharing = sharing;
                b.rank_metric = "error".into();
                b.higher_is_better = false;
                b.disclosure = Disclosure {
                    precision: PRECISION,
                    metrics: vec!["error".into()],
                    ..Disclosure::default()
                };
            })
            .approve_benchmark()
            .register_datasets()
            .request_models()
            .approve_all()
            .submit_counted_results(&CASES, |h, m| CORRECT[h][m])
    }

    /// The results.yaml a metrics container writes for `correct` of `cases`.
    pub fn results_yaml(correct: u64, cases: u64) -> String {
        let incorrect = cases - correct;
        let error = incorrect as f64 / cases.max(1) as f64;
        format!("cases: {cases}\ncorrect: {correct}\nerror: {error:.6}\nincorrect: {incorrect}\n")
    }

    /// The metrics of that results file as the container wrote them, as a
    /// result seals them.
    pub fn metrics(correct: u64, cases: u64) -> BTreeMap<String, crate::metric::MetricValue> {
        use crate::metric::MetricValue;
        let incorrect = cases - correct;
        [
            ("cases".to_string(), MetricValue::Int(cases as i64)),
            ("correct".to_string(), MetricValue::Int(correct as i64)),
            ("error".to_string(), MetricValue::float(incorrect as f64 / cases.max(1) as f64)),
            ("incorrect".to_string(), MetricValue::Int(incorrect as i64)),
        ]
        .into_iter()
        .collect()
    }

    /// The tree hash a model's predictions would have (it depends on the outcome).
    pub fn predictions_hash(correct: u64, cases: u64) -> Hash32 {
        Hash32::of(format!("predictions {correct}/{cases}").as_bytes())
    }

    /// A result of `correct` of `cases`, sealed to `readers`, its receipt built as
    /// the runner builds it (outputs committed under the result's receipt key).
    pub fn result(
        binding: Binding,
        correct: u64,
        cases: u64,
        readers: &[X25519Key],
        rng: &mut SeededRng,
    ) -> Body {
        let (sealed, key): (Sealed, ReceiptKey) =
            seal_result(&metrics(correct, cases), readers, binding, rng).expect("sealable");
        let results_hash = Hash32::of(results_yaml(correct, cases).as_bytes());
        Body::Result(ResultRecord {
            benchmark: binding.benchmark,
            model: binding.model,
            dataset: binding.dataset,
            metrics: sealed,
            receipt: ExecutionReceipt {
                model_image_digest: digest("model"),
                metrics_image_digest: digest("metrics"),
                dataset_hash: Hash32::of(b"prepared"),
                limits: ExecutionLimits {
                    memory_bytes: 1 << 30,
                    nano_cpus: 1_000_000_000,
                    pids: 256,
                },
                runner_version: "medmesh-runner/testkit".into(),
                outputs_commitment: key.commit(&predictions_hash(correct, cases), &results_hash),
            },
        })
    }

    impl Workflow {
        /// Each hospital `i` submits, for each model `m`, `correct(i, m)` of
        /// `cases[i]`, sealed to the committee and itself.
        pub fn submit_counted_results(
            mut self,
            cases: &[u64],
            correct: impl Fn(usize, usize) -> u64,
        ) -> Self {
            let mut rng = SeededRng::new(b"counted results");
            for (i, n) in cases.iter().enumerate().take(self.hospitals.len()) {
                for (mi, m) in self.models.clone().into_iter().enumerate() {
                    let binding =
                        Binding { benchmark: self.benchmark, model: m, dataset: self.datasets[i] };
                    let body = result(binding, correct(i, mi), *n, &self.readers(i), &mut rng);
                    self.push(|w| &mut w.hospitals[i], body);
                }
            }
            self
        }
    }

    impl Workflow {
        /// The release committee member `members[0]` builds from the results it
        /// opens (as `medmesh benchmark release` does), signed by each of `members`.
        pub fn members_release(mut self, members: &[usize]) -> Self {
            let state = crate::fold::fold(&self.root, &self.records);
            let key = self.committee[members[0]].opening();
            let opened: Vec<crate::leaderboard::OpenedResult> = state
                .results
                .iter()
                .filter(|r| r.counts && r.benchmark == self.benchmark)
                .filter_map(|r| {
                    let record = self.records.iter().find(|x| x.id == r.id)?;
                    let Body::Result(x) = &record.body else { return None };
                    let binding =
                        Binding { benchmark: x.benchmark, model: x.model, dataset: x.dataset };
                    let metrics = crate::seal::open(&x.metrics, &key, binding).ok()?;
                    Some(crate::leaderboard::OpenedResult {
                        model: r.model,
                        dataset: r.dataset,
                        metrics,
                    })
                })
                .collect();
            let datasets = self.opened_details(&state, members[0]);
            let shown = state.releases.get(&self.benchmark).map(|r| &r.release);
            let round = crate::leaderboard::next_round(shown.map(|r| r.round)).expect("rounds");
            let b = &state.benchmarks[&self.benchmark].benchmark;
            let release = crate::leaderboard::build_release_after(
                self.benchmark,
                b,
                &datasets,
                &opened,
                round,
                shown,
            );
            for &c in members {
                self.push(|w| &mut w.committee[c], Body::Release(release.clone()));
            }
            self
        }
    }

    fn contains(corpus: &[u8], needle: &[u8]) -> bool {
        !needle.is_empty() && corpus.windows(needle.len()).any(|w| w == needle)
    }

    /// What a dictionary attack learns about one result of a hospital whose case
    /// count is known.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Recovered {
        /// Candidate counts whose results file, metrics or their hashes appear
        /// somewhere in the public bytes.
        pub matched: BTreeSet<u64>,
        /// Candidate counts whose sealed metrics would have the observed length.
        pub same_length: BTreeSet<u64>,
    }

    impl Recovered {
        /// Nothing learnt: no candidate matched, and the length rules none out.
        pub fn nothing(&self, cases: u64) -> bool {
            self.matched.is_empty() && self.same_length.len() as u64 == cases + 1
        }
    }

    /// The outsider's attack: every possible results file of a hospital with
    /// `cases` cases (`correct` from 0 to `cases`), hashed and encoded every way
    /// the protocol ever published them, searched for in `corpus` (every public
    /// byte); and each candidate's sealed length against `sealed_len`, the length
    /// of the result's ciphertext.
    pub fn dictionary_attack(corpus: &[u8], cases: u64, sealed_len: usize) -> Recovered {
        let mut matched = BTreeSet::new();
        let mut same_length = BTreeSet::new();
        let probe = OpeningKey::from_secret([0x55; 32]).public();
        let binding = Binding {
            benchmark: RecordId::from_bytes([0; 32]),
            model: RecordId::from_bytes([0; 32]),
            dataset: RecordId::from_bytes([0; 32]),
        };
        for c in 0..=cases {
            let yaml = results_yaml(c, cases);
            let plain = crate::cbor::to_canonical(&metrics(c, cases)).expect("encodes");
            let needles: [Vec<u8>; 4] = [
                Hash32::of(yaml.as_bytes()).as_bytes().to_vec(),
                plain.clone(),
                Hash32::of(&plain).as_bytes().to_vec(),
                predictions_hash(c, cases).as_bytes().to_vec(),
            ];
            if needles.iter().any(|n| contains(corpus, n)) {
                matched.insert(c);
            }
            let mut rng = SeededRng::new(b"attacker");
            let len = crate::seal::seal(&metrics(c, cases), &[probe], binding, &mut rng)
                .map(|s| s.ciphertext.0.len())
                .unwrap_or(0);
            if len == sealed_len {
                same_length.insert(c);
            }
        }
        Recovered { matched, same_length }
    }

    /// Which of the hospitals with these case counts could have produced a
    /// released `error` value (millionths), under the release's `precision`.
    pub fn who_fits(released_error: i64, precision: u64, cases: &[u64]) -> Vec<usize> {
        (0..cases.len())
            .filter(|&h| {
                (0..=cases[h]).any(|c| {
                    let error = metrics(c, cases[h])["error"].as_f64().unwrap_or(f64::NAN);
                    match crate::metric::Figure::from_f64(error) {
                        crate::metric::Figure::Millionths(e) => {
                            crate::disclosure::round_value(e, precision) == released_error
                        }
                        crate::metric::Figure::NaN => false,
                    }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RecordError;

    #[test]
    fn sign_unchecked_signs_what_sign_signs_and_also_what_it_refuses() {
        let a = Author::new("unchecked", NetworkId::from_bytes([3; 32]));
        let valid = a.sign_at(0, None, container("ok", &["infer"]));
        assert_eq!(a.sign_unchecked(0, None, container("ok", &["infer"])), valid.bytes.to_vec());
        let long = "n".repeat(crate::limits::NAME_BYTES_MAX + 1);
        let bytes = a.sign_unchecked(0, None, container(&long, &["infer"]));
        assert!(matches!(
            Record::verify(&bytes, &a.network),
            Err(RecordError::Invalid { field: "container.name", .. })
        ));
    }
}
