//! Record kinds: every fact of the MedPerf workflow as an immutable, signed record.
//!
//! A [`Payload`] is what an author signs: the per-author chain position (`seq`,
//! `prev`) and a [`Body`] of one kind. These types are a wire and disk format:
//! fields are only ever added in a new `v`, never changed in place. Every type
//! denies unknown fields so that two decoders cannot disagree on what a record says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::RecordError;
use crate::ids::{Hash32, PublicKey, RecordId, X25519Key};
use crate::limits::*;
use crate::metric::{Figure, MetricValue};

/// The only payload version this crate reads and writes.
pub const PAYLOAD_VERSION: u64 = 1;

/// Opaque bytes that encode as a CBOR byte string (not an array of integers).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
                hex::decode(v).map(Bytes).map_err(E::custom)
            }
        }
        if d.is_human_readable() { d.deserialize_str(V) } else { d.deserialize_bytes(V) }
    }
}

/// What an author signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Payload format version, [`PAYLOAD_VERSION`].
    pub v: u64,
    /// Position in the author's chain, from 0.
    pub seq: u64,
    /// Id of the author's record at `seq - 1`; `None` exactly when `seq == 0`.
    pub prev: Option<RecordId>,
    /// The fact itself.
    pub body: Body,
}

/// One record kind each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    Profile(Profile),
    Container(Container),
    Benchmark(Benchmark),
    BenchmarkDecision(BenchmarkDecision),
    Dataset(Dataset),
    DatasetOperational(DatasetOperational),
    AssociationRequest(AssociationRequest),
    AssociationDecision(AssociationDecision),
    Result(ResultRecord),
    Release(Release),
    KeyRevocation(KeyRevocation),
    AdminRotation(AdminRotation),
    JoinRequest(JoinRequest),
    Admission(Admission),
    ModelGrant(ModelGrant),
    ModelRevocation(ModelRevocation),
}

impl Body {
    /// A stable lowercase name of the kind, for logs, tables and the control API.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Profile(_) => "profile",
            Body::Container(_) => "container",
            Body::Benchmark(_) => "benchmark",
            Body::BenchmarkDecision(_) => "benchmark_decision",
            Body::Dataset(_) => "dataset",
            Body::DatasetOperational(_) => "dataset_operational",
            Body::AssociationRequest(_) => "association_request",
            Body::AssociationDecision(_) => "association_decision",
            Body::Result(_) => "result",
            Body::Release(_) => "release",
            Body::KeyRevocation(_) => "key_revocation",
            Body::AdminRotation(_) => "admin_rotation",
            Body::JoinRequest(_) => "join_request",
            Body::Admission(_) => "admission",
            Body::ModelGrant(_) => "model_grant",
            Body::ModelRevocation(_) => "model_revocation",
        }
    }
}

/// A participant's public profile. The latest (highest `seq`) one counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub organisation: String,
    /// Results are encrypted to this key (committee members and data owners).
    pub x25519: X25519Key,
}

/// How a container's parameters are laid out, as MedPerf and MLCube write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestFormat {
    /// MedPerf's container config: `input_volumes` / `output_volumes` with mount paths.
    ContainerConfig,
    /// Legacy `mlcube.yaml`: `parameters.inputs` / `.outputs`, `--name=path` arguments.
    Mlcube,
}

/// Whether a parameter is a file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    File,
    Directory,
}

/// One input or output of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
    /// Where it is mounted inside the container (container-config format).
    pub mount_path: Option<String>,
    /// Default relative path (MLCube format), e.g. `predictions/`.
    pub default: Option<String>,
    /// The task runs without it.
    pub optional: bool,
}

/// How to start one task beyond its mounts (MedPerf's `run_args`; MLCube's task
/// `entrypoint`), so that a container runs from its record exactly as from its
/// manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunArgs {
    /// Replaces the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command (container config); for MLCube manifests, the
    /// arguments that come before `<task> --name=path...`.
    pub command: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
}

/// One task of a container (`prepare`, `sanity_check`, `statistics`, `infer`, `evaluate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub name: String,
    pub inputs: Vec<Param>,
    pub outputs: Vec<Param>,
    pub run_args: RunArgs,
}

/// A container's manifest: the tasks it offers and their parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: ManifestFormat,
    pub tasks: Vec<Task>,
}

impl Manifest {
    /// The task called `name`, if the manifest has it.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

/// The image a container runs, pinned by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    /// A human reference such as `medmesh/example-model:1`.
    pub reference: String,
    /// `sha256:` and 64 lowercase hex digits: the image id as Docker reports it.
    pub digest: String,
}

/// A blob on the network: named by the BLAKE3 of its bytes, with its size, so
/// that a fetch from any peer is bounded and checked before a byte is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRef {
    pub hash: Hash32,
    pub size: u64,
}

/// Files that travel beside an image (a model's weights), pinned by hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdditionalFiles {
    /// A tar of the folder (regular files and folders only), fetched from peers.
    pub blob: BlobRef,
    /// BLAKE3 tree hash of the files, checked after unpacking.
    pub hash: Hash32,
}

/// A container: data preparator, model or metrics. Its author is its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub name: String,
    pub manifest: Manifest,
    pub image: ImageRef,
    /// MedPerf's `DockerArchive`: the image's `docker save` archive, fetched from
    /// peers and loaded, then checked against `image.digest` before anything runs.
    /// None: a `DockerImage` the site's engine must already hold.
    pub image_archive: Option<BlobRef>,
    /// The parameters file (MedPerf's `parameters.yaml`), carried in the record
    /// itself: it is small, and every runner of the container needs it.
    pub parameters: Option<String>,
    pub additional_files: Option<AdditionalFiles>,
    /// MedPerf's `EncryptedDockerArchive`: `image_archive` is encrypted, and only
    /// sites the owner grants the key to ([`ModelGrant`]) can load it. Absent
    /// from the encoding when `None`, so records signed before private models
    /// keep their bytes and ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<ArchiveEncryption>,
}

/// How a private container's image archive is encrypted ([`crate::private`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveEncryption {
    /// [`crate::private::SCHEME`].
    pub scheme: String,
    /// [`crate::private::ModelKey::check`] of the content key: a grantee refuses a
    /// granted key that does not match it before decrypting anything.
    pub key_check: Hash32,
    /// The size of the `docker save` archive before encryption; the blob is
    /// [`crate::private::ciphertext_len`] of it.
    pub plaintext_size: u64,
}

/// Auto-approval of association requests, per benchmark and per subject kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AutoApproval {
    /// Every request waits for the committee.
    Never,
    /// Every request with a passed compatibility test is approved.
    Always,
    /// Requests from these keys are approved; others wait.
    Allowlist(Vec<PublicKey>),
}

/// What the committee lets everyone see of results.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SharingPolicy {
    /// One figure per model over all datasets, shown once `min_datasets` contribute.
    Aggregate { min_datasets: u16 },
    /// The model x dataset table; dataset names pseudonymised unless the owner allowed.
    PerDataset,
}

/// Who reads a dataset's details (name, description, location, statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailsAudience {
    /// The committee and the dataset's owner: details are sealed to them (as
    /// MedPerf's server alone sees statistics). An owner may still publish its own
    /// details in the clear.
    Committee,
    /// Everyone: details travel in the clear.
    Public,
}

/// What the committee's releases may disclose beyond the sharing policy, and who
/// reads datasets' details. The fold checks every release against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disclosure {
    pub dataset_details: DetailsAudience,
    /// Released values are multiples of this many millionths (1: as measured;
    /// 10_000: two decimals).
    pub precision: u64,
    /// A per-dataset cell is released only for a dataset with at least this many
    /// cases (its sealed `num_cases`; unknown counts as 0). 0: none suppressed.
    pub min_cases: u64,
    /// The metrics a release may show; empty: every metric.
    pub metrics: Vec<String>,
}

impl Default for Disclosure {
    fn default() -> Self {
        Self {
            dataset_details: DetailsAudience::Committee,
            precision: 1,
            min_cases: 0,
            metrics: Vec::new(),
        }
    }
}

/// The benchmark's demo dataset, used by compatibility tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoDataset {
    /// BLAKE3 of the demo tarball: the blob peers serve it under.
    pub hash: Hash32,
    /// The tarball's size in bytes.
    pub size: u64,
}

impl DemoDataset {
    /// The blob holding the tarball.
    pub fn blob(&self) -> BlobRef {
        BlobRef { hash: self.hash, size: self.size }
    }
}

/// A benchmark. Its author is the benchmark owner; the admin approves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    pub name: String,
    pub description: String,
    pub docs_url: String,
    pub demo_dataset: DemoDataset,
    pub data_preparator: RecordId,
    pub reference_model: RecordId,
    pub metrics: RecordId,
    pub committee: Vec<PublicKey>,
    /// Distinct committee members needed to approve an association or a release.
    pub threshold: u16,
    pub dataset_auto_approval: AutoApproval,
    pub model_auto_approval: AutoApproval,
    pub sharing: SharingPolicy,
    pub disclosure: Disclosure,
    /// The metric (a key of the metrics container's results.yaml) to rank by.
    pub rank_metric: String,
    pub higher_is_better: bool,
}

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// An admin's decision on a benchmark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkDecision {
    pub benchmark: RecordId,
    pub decision: Decision,
}

/// MedPerf's dataset states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetState {
    Development,
    Operation,
}

/// A registered dataset: metadata only, never the data. Its author is its owner.
/// In the clear only what the fold needs; the details ([`DatasetDetails`]) and
/// the key of the dataset's pseudonym are sealed to the benchmark's committee
/// and the owner. The details are also in the clear when the benchmark's
/// [`Disclosure`] says so (or the owner chooses to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// The benchmark whose committee reads the sealed part.
    pub benchmark: RecordId,
    pub data_preparator: RecordId,
    /// BLAKE3 tree hash of the prepared data and labels.
    pub prepared_hash: Hash32,
    pub state: DatasetState,
    /// The details in the clear, when public.
    pub public_details: Option<DatasetDetails>,
    /// [`SealedDetails`], sealed with [`crate::seal::seal_details`].
    pub sealed: Sealed,
}

/// What MedPerf's server alone sees of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetDetails {
    pub name: String,
    pub description: String,
    pub location: String,
    /// statistics.yaml as the preparator wrote it (top-level key -> value).
    pub statistics: BTreeMap<String, MetricValue>,
    /// Cases in the prepared data, when the statistics say.
    pub num_cases: Option<u64>,
    /// The owner lets releases show this dataset's name (else a pseudonym).
    pub name_public: bool,
}

/// The sealed part of a dataset record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedDetails {
    pub details: DatasetDetails,
    /// 32 random bytes chosen by the owner: the dataset's pseudonym in releases
    /// is keyed with it ([`crate::leaderboard::pseudonym`]), so nobody who cannot
    /// open this can tie a pseudonym to a dataset.
    pub pseudonym_key: Bytes,
}

impl DatasetDetails {
    /// Check every bound.
    pub fn validate(&self) -> Result<(), RecordError> {
        name("dataset.details.name", &self.name)?;
        text("dataset.details.description", &self.description, TEXT_BYTES_MAX)?;
        text("dataset.details.location", &self.location, TEXT_BYTES_MAX)?;
        if self.statistics.len() > STATISTICS_ENTRIES_MAX {
            return Err(RecordError::Invalid {
                field: "dataset.details.statistics",
                reason: format!(
                    "{} entries; at most {STATISTICS_ENTRIES_MAX}",
                    self.statistics.len()
                ),
            });
        }
        for (k, v) in &self.statistics {
            name("dataset.details.statistics.key", k)?;
            v.check(TEXT_BYTES_MAX).map_err(|e| RecordError::Invalid {
                field: "dataset.details.statistics.value",
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// The owner marks a dataset operational (one way, as in MedPerf), with the hash
/// recomputed at that moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetOperational {
    pub dataset: RecordId,
    pub prepared_hash: Hash32,
}

/// What an association is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Dataset(RecordId),
    Model(RecordId),
}

impl Subject {
    pub fn id(&self) -> RecordId {
        match self {
            Subject::Dataset(id) | Subject::Model(id) => *id,
        }
    }
}

/// The outcome of the compatibility test (preparator -> model -> metrics on the
/// demo dataset, or on the data owner's prepared data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatibilityTest {
    pub passed: bool,
    /// On the benchmark's (public) demo dataset: BLAKE3 of the results.yaml the
    /// test produced. On a data owner's own data: BLAKE3 of it keyed with a random
    /// key the owner keeps, so that it says nothing about the data's results to
    /// anyone without that key (a commitment the owner may open to the committee).
    pub results_hash: Hash32,
    /// Image digests of the three containers used.
    pub image_digests: Vec<String>,
}

/// A dataset or model owner asks to join a benchmark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociationRequest {
    pub benchmark: RecordId,
    pub subject: Subject,
    pub compatibility: CompatibilityTest,
}

/// A committee member's decision on an association, with the model's priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssociationDecision {
    pub benchmark: RecordId,
    pub subject: Subject,
    pub decision: Decision,
    /// For models: higher runs first. The effective priority is the lower median of
    /// the approving members' values.
    pub priority: Option<i32>,
}

/// Result metrics, encrypted to each recipient (HPKE); opaque to the fold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Names the encryption suite, e.g. `hpke-x25519-sha256-chacha20poly1305`.
    pub scheme: String,
    pub recipients: Vec<SealedFor>,
    pub ciphertext: Bytes,
}

/// The content key, encapsulated for one recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedFor {
    pub recipient: X25519Key,
    pub encapsulated: Bytes,
}

/// Limits a task ran under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionLimits {
    pub memory_bytes: u64,
    pub nano_cpus: u64,
    pub pids: u64,
}

/// What was run and on what: only what anyone may check. Nothing in it is a
/// function of a prediction, a label or a metric: the hashes of the outputs enter
/// only through `outputs_commitment`, keyed with a secret that only the sealed
/// metrics' recipients can derive ([`crate::seal::ReceiptKey`]). Timings stay in
/// the owner's local receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionReceipt {
    pub model_image_digest: String,
    pub metrics_image_digest: String,
    pub dataset_hash: Hash32,
    pub limits: ExecutionLimits,
    /// The runner that ran it, e.g. `medmesh-runner/0.1.0`.
    pub runner_version: String,
    /// Keyed BLAKE3 of the predictions' and the results file's hashes.
    pub outputs_commitment: Hash32,
}

/// A benchmark result, submitted by the dataset's owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRecord {
    pub benchmark: RecordId,
    pub model: RecordId,
    pub dataset: RecordId,
    pub metrics: Sealed,
    pub receipt: ExecutionReceipt,
}

/// One line of a release: a model's released metrics, over one dataset
/// (`per_dataset`) or all of them (`aggregate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseEntry {
    pub model: RecordId,
    /// The dataset's name or pseudonym; `None` in an aggregate release.
    pub dataset: Option<String>,
    /// How many datasets this figure covers.
    pub datasets: u16,
    /// Metric name (nested metrics by dotted path) -> millionths or NaN.
    pub metrics: BTreeMap<String, Figure>,
}

/// What the committee publishes for everyone. Shown once `threshold` distinct
/// members have signed identical content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub benchmark: RecordId,
    /// Later rounds supersede earlier ones.
    pub round: u64,
    pub policy: SharingPolicy,
    pub entries: Vec<ReleaseEntry>,
    /// Seed for bootstrap confidence intervals, so every node computes the same.
    pub seed: u64,
}

/// The admins (at threshold) revoke a key: its records from `from_seq` on lose
/// authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRevocation {
    pub key: PublicKey,
    pub from_seq: u64,
    pub reason: String,
}

/// What an admitted key may do beyond taking part (profiles, committee decisions,
/// releases), as MedPerf's administration grants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Registers datasets and publishes their results.
    DataOwner,
    /// Registers model containers.
    ModelOwner,
    /// Creates benchmarks (and their preparation and metrics containers).
    BenchmarkOwner,
}

impl MemberRole {
    pub const ALL: [MemberRole; 3] =
        [MemberRole::DataOwner, MemberRole::ModelOwner, MemberRole::BenchmarkOwner];

    /// The name used in records, flags and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberRole::DataOwner => "data_owner",
            MemberRole::ModelOwner => "model_owner",
            MemberRole::BenchmarkOwner => "benchmark_owner",
        }
    }

    /// This role as a bit of a [`MemberRoles`] set.
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MemberRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let norm = s.trim().replace('-', "_");
        MemberRole::ALL.into_iter().find(|r| r.as_str() == norm).ok_or_else(|| {
            format!("unknown role {s:?}: expected data_owner, model_owner or benchmark_owner")
        })
    }
}

/// A set of roles, as the fold keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemberRoles(u8);

impl MemberRoles {
    /// Every role (admins have them all; so does every key of an open network).
    pub const ALL: MemberRoles = MemberRoles(0b111);

    pub fn of(roles: &[MemberRole]) -> Self {
        MemberRoles(roles.iter().fold(0, |acc, r| acc | r.bit()))
    }
    pub fn contains(&self, r: MemberRole) -> bool {
        self.0 & r.bit() != 0
    }
    pub fn insert(&mut self, r: MemberRole) {
        self.0 |= r.bit();
    }
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    /// The roles in their fixed order.
    pub fn to_vec(&self) -> Vec<MemberRole> {
        MemberRole::ALL.into_iter().filter(|r| self.contains(*r)).collect()
    }
}

/// A key asks to join an admitted network. Honest nodes keep it in a bounded pool
/// (not the store) until the admins admit the key; the admins read it with
/// `medmesh network requests`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub name: String,
    pub organisation: String,
    /// The roles asked for, sorted, each once.
    pub roles: Vec<MemberRole>,
    /// Why, and how the admins can check who is asking (free text).
    pub message: String,
}

/// An admin admits `key` to an admitted network with `roles`. The key is a member
/// once `threshold(epoch)` admins of `epoch` have signed an admission of it with
/// that epoch (each admin's latest admission of the key counts); a role is granted
/// once that many of them grant it. Admissions outlive the epoch that signed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    pub key: PublicKey,
    /// The admin epoch whose admins sign (the current one when signing).
    pub epoch: u64,
    /// Sorted, each once; empty admits a key that only takes part (a committee
    /// member, say).
    pub roles: Vec<MemberRole>,
}

/// A private model's owner gives its content key to the owner of a dataset
/// approved in a benchmark the model is approved in (MedPerf's `grant_access`).
/// Counts only from the container's owner, for approved associations, sealed to
/// the dataset owner's profile key, and not after a [`ModelRevocation`] covering
/// the dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelGrant {
    pub model: RecordId,
    pub benchmark: RecordId,
    pub dataset: RecordId,
    /// The [`crate::private::ModelKey`], sealed with
    /// [`crate::seal::seal_model_key`] to the dataset owner alone.
    pub key: Sealed,
}

/// A private model's owner stops granting its key: to one dataset, or to every
/// dataset (`None`). Grants the owner signs later in its chain are ignored; a
/// grant made before stays (its recipient already holds the key). A new
/// container version has a new key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRevocation {
    pub model: RecordId,
    pub dataset: Option<RecordId>,
}

/// The admins of epoch `epoch - 1` (at their threshold) hand over to a new set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRotation {
    pub epoch: u64,
    pub admins: Vec<PublicKey>,
    pub threshold: u16,
}

// ---------------------------------------------------------------------------
// Bounds. Checked on every decoded payload and before every signature.

/// A role list: sorted, each once (so one set of roles has one encoding).
fn roles(field: &'static str, roles: &[MemberRole]) -> Result<(), RecordError> {
    if roles.windows(2).any(|w| w[0] >= w[1]) {
        return Err(RecordError::Invalid {
            field,
            reason: "roles must be sorted (data_owner, model_owner, benchmark_owner) and each given once"
                .into(),
        });
    }
    Ok(())
}

fn text(field: &'static str, s: &str, max: usize) -> Result<(), RecordError> {
    if s.len() > max {
        return Err(RecordError::Invalid {
            field,
            reason: format!("{} bytes; at most {max}", s.len()),
        });
    }
    Ok(())
}

fn name(field: &'static str, s: &str) -> Result<(), RecordError> {
    if s.trim().is_empty() {
        return Err(RecordError::Invalid { field, reason: "must not be empty".into() });
    }
    text(field, s, NAME_BYTES_MAX)
}

fn list<T>(field: &'static str, l: &[T], max: usize) -> Result<(), RecordError> {
    if l.len() > max {
        return Err(RecordError::Invalid {
            field,
            reason: format!("{} items; at most {max}", l.len()),
        });
    }
    Ok(())
}

fn digest(field: &'static str, d: &str) -> Result<(), RecordError> {
    let ok = d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !ok {
        return Err(RecordError::Invalid {
            field,
            reason: "must be `sha256:` and 64 lowercase hex digits".into(),
        });
    }
    Ok(())
}

fn blob(field: &'static str, b: &BlobRef) -> Result<(), RecordError> {
    if b.size > BLOB_BYTES_MAX {
        return Err(RecordError::Invalid {
            field,
            reason: format!("{} bytes; a blob has at most {BLOB_BYTES_MAX}", b.size),
        });
    }
    Ok(())
}

fn no_duplicate_keys(field: &'static str, keys: &[PublicKey]) -> Result<(), RecordError> {
    let mut sorted = keys.to_vec();
    sorted.sort();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(RecordError::Invalid { field, reason: "lists the same key twice".into() });
    }
    Ok(())
}

fn threshold(field: &'static str, t: u16, n: usize) -> Result<(), RecordError> {
    if t == 0 || usize::from(t) > n {
        return Err(RecordError::Invalid {
            field,
            reason: format!("threshold {t} must be between 1 and {n}"),
        });
    }
    Ok(())
}

fn sealed(field: &'static str, s: &Sealed) -> Result<(), RecordError> {
    name(field, &s.scheme)?;
    list(field, &s.recipients, COMMITTEE_LEN_MAX + 1)?;
    if s.ciphertext.0.len() > SEALED_BYTES_MAX {
        return Err(RecordError::Invalid {
            field,
            reason: format!("{} bytes; at most {SEALED_BYTES_MAX}", s.ciphertext.0.len()),
        });
    }
    for r in &s.recipients {
        if r.encapsulated.0.len() > 256 {
            return Err(RecordError::Invalid {
                field,
                reason: "an encapsulated key of more than 256 bytes".into(),
            });
        }
    }
    Ok(())
}

impl Payload {
    /// Check every bound and the chain rule (`prev` is `None` exactly at `seq` 0).
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.v != PAYLOAD_VERSION {
            return Err(RecordError::UnsupportedVersion(self.v));
        }
        if (self.seq == 0) != self.prev.is_none() {
            return Err(RecordError::Invalid {
                field: "prev",
                reason: "must be absent at seq 0 and present after".into(),
            });
        }
        self.body.validate()
    }
}

impl Body {
    /// Check every bound of the record's content.
    pub fn validate(&self) -> Result<(), RecordError> {
        match self {
            Body::Profile(p) => {
                name("profile.name", &p.name)?;
                text("profile.organisation", &p.organisation, NAME_BYTES_MAX)
            }
            Body::Container(c) => {
                name("container.name", &c.name)?;
                text("container.image.reference", &c.image.reference, TEXT_BYTES_MAX)?;
                digest("container.image.digest", &c.image.digest)?;
                if let Some(p) = &c.parameters {
                    text("container.parameters", p, PARAMETERS_BYTES_MAX)?;
                }
                if let Some(a) = &c.additional_files {
                    blob("container.additional_files.blob", &a.blob)?;
                }
                if let Some(a) = &c.image_archive {
                    blob("container.image_archive", a)?;
                }
                if let Some(e) = &c.encryption {
                    if e.scheme != crate::private::SCHEME {
                        return Err(RecordError::Invalid {
                            field: "container.encryption.scheme",
                            reason: format!("must be {}", crate::private::SCHEME),
                        });
                    }
                    let expected = (e.plaintext_size <= BLOB_BYTES_MAX)
                        .then(|| crate::private::ciphertext_len(e.plaintext_size));
                    match (&c.image_archive, expected) {
                        (Some(a), Some(n)) if a.size == n => {}
                        _ => {
                            return Err(RecordError::Invalid {
                                field: "container.encryption",
                                reason: "an encrypted container needs an image archive whose size is the ciphertext length of plaintext_size".into(),
                            });
                        }
                    }
                }
                list("container.manifest.tasks", &c.manifest.tasks, LIST_LEN_MAX)?;
                if c.manifest.tasks.is_empty() {
                    return Err(RecordError::Invalid {
                        field: "container.manifest.tasks",
                        reason: "must not be empty".into(),
                    });
                }
                for t in &c.manifest.tasks {
                    name("container.manifest.tasks.name", &t.name)?;
                    list("container.manifest.tasks.inputs", &t.inputs, LIST_LEN_MAX)?;
                    list("container.manifest.tasks.outputs", &t.outputs, LIST_LEN_MAX)?;
                    let ra = &t.run_args;
                    for words in [&ra.entrypoint, &ra.command].into_iter().flatten() {
                        list("container.manifest.tasks.run_args", words, LIST_LEN_MAX)?;
                        for w in words {
                            text("container.manifest.tasks.run_args", w, TEXT_BYTES_MAX)?;
                        }
                    }
                    if ra.environment.len() > LIST_LEN_MAX {
                        return Err(RecordError::Invalid {
                            field: "container.manifest.tasks.run_args.environment",
                            reason: format!("at most {LIST_LEN_MAX} entries"),
                        });
                    }
                    for (k, v) in &ra.environment {
                        name("container.manifest.tasks.run_args.environment", k)?;
                        text("container.manifest.tasks.run_args.environment", v, TEXT_BYTES_MAX)?;
                    }
                    for p in t.inputs.iter().chain(&t.outputs) {
                        name("container.manifest.param.name", &p.name)?;
                        if let Some(m) = &p.mount_path {
                            text("container.manifest.param.mount_path", m, TEXT_BYTES_MAX)?;
                        }
                        if let Some(d) = &p.default {
                            text("container.manifest.param.default", d, TEXT_BYTES_MAX)?;
                        }
                    }
                }
                crate::contract::check_manifest(&c.manifest).map_err(|e| RecordError::Invalid {
                    field: "container.manifest",
                    reason: e.to_string(),
                })
            }
            Body::Benchmark(b) => {
                name("benchmark.name", &b.name)?;
                text("benchmark.description", &b.description, TEXT_BYTES_MAX)?;
                text("benchmark.docs_url", &b.docs_url, TEXT_BYTES_MAX)?;
                blob("benchmark.demo_dataset", &b.demo_dataset.blob())?;
                list("benchmark.committee", &b.committee, COMMITTEE_LEN_MAX)?;
                no_duplicate_keys("benchmark.committee", &b.committee)?;
                threshold("benchmark.threshold", b.threshold, b.committee.len())?;
                for a in [&b.dataset_auto_approval, &b.model_auto_approval] {
                    if let AutoApproval::Allowlist(keys) = a {
                        list("benchmark.auto_approval.allowlist", keys, LIST_LEN_MAX)?;
                    }
                }
                if b.disclosure.precision == 0 {
                    return Err(RecordError::Invalid {
                        field: "benchmark.disclosure.precision",
                        reason: "must be at least 1 (millionths)".into(),
                    });
                }
                list("benchmark.disclosure.metrics", &b.disclosure.metrics, 64)?;
                for m in &b.disclosure.metrics {
                    name("benchmark.disclosure.metrics", m)?;
                }
                if let SharingPolicy::Aggregate { min_datasets: 0 } = b.sharing {
                    return Err(RecordError::Invalid {
                        field: "benchmark.sharing",
                        reason: "min_datasets must be at least 1".into(),
                    });
                }
                name("benchmark.rank_metric", &b.rank_metric)
            }
            Body::BenchmarkDecision(_) | Body::DatasetOperational(_) => Ok(()),
            Body::Dataset(d) => {
                if let Some(p) = &d.public_details {
                    p.validate()?;
                }
                sealed("dataset.sealed", &d.sealed)
            }
            Body::AssociationRequest(r) => {
                list(
                    "association_request.compatibility.image_digests",
                    &r.compatibility.image_digests,
                    16,
                )?;
                for d in &r.compatibility.image_digests {
                    digest("association_request.compatibility.image_digests", d)?;
                }
                Ok(())
            }
            Body::AssociationDecision(_) => Ok(()),
            Body::Result(r) => {
                sealed("result.metrics", &r.metrics)?;
                name("result.receipt.runner_version", &r.receipt.runner_version)?;
                digest("result.receipt.model_image_digest", &r.receipt.model_image_digest)?;
                digest("result.receipt.metrics_image_digest", &r.receipt.metrics_image_digest)
            }
            Body::Release(r) => {
                list("release.entries", &r.entries, LIST_LEN_MAX)?;
                for e in &r.entries {
                    if let Some(d) = &e.dataset {
                        name("release.entries.dataset", d)?;
                    }
                    if e.metrics.len() > 64 {
                        return Err(RecordError::Invalid {
                            field: "release.entries.metrics",
                            reason: "at most 64 metrics".into(),
                        });
                    }
                    for k in e.metrics.keys() {
                        name("release.entries.metrics.name", k)?;
                    }
                }
                Ok(())
            }
            Body::KeyRevocation(k) => text("key_revocation.reason", &k.reason, TEXT_BYTES_MAX),
            Body::JoinRequest(j) => {
                name("join_request.name", &j.name)?;
                text("join_request.organisation", &j.organisation, NAME_BYTES_MAX)?;
                text("join_request.message", &j.message, TEXT_BYTES_MAX)?;
                roles("join_request.roles", &j.roles)
            }
            Body::Admission(a) => roles("admission.roles", &a.roles),
            Body::ModelGrant(g) => sealed("model_grant.key", &g.key),
            Body::ModelRevocation(_) => Ok(()),
            Body::AdminRotation(a) => {
                if a.epoch == 0 {
                    return Err(RecordError::Invalid {
                        field: "admin_rotation.epoch",
                        reason: "epoch 0 is the network root".into(),
                    });
                }
                list("admin_rotation.admins", &a.admins, ADMINS_LEN_MAX)?;
                no_duplicate_keys("admin_rotation.admins", &a.admins)?;
                threshold("admin_rotation.threshold", a.threshold, a.admins.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ciborium::Value;

    use super::*;

    /// Regression: a container record whose additional files were "located" at
    /// `/etc` made `benchmark run` copy the hospital's own `/etc`. Records now name
    /// blobs by hash and size; a record with a location does not decode.
    #[test]
    fn a_container_naming_its_additional_files_by_a_local_path_does_not_decode() {
        let Body::Container(mut c) = crate::testkit::container("model", &["infer"]) else {
            panic!("the testkit's container is a container")
        };
        c.additional_files = Some(AdditionalFiles {
            blob: BlobRef { hash: Hash32::of(b"weights.tar"), size: 11 },
            hash: Hash32::of(b"tree"),
        });
        let good = crate::cbor::to_canonical(&c).unwrap();
        assert_eq!(crate::cbor::from_canonical::<Container>(&good).unwrap(), c);

        let mut v = Value::serialized(&c).unwrap();
        let Value::Map(fields) = &mut v else { panic!("a container is a map") };
        for (k, val) in fields.iter_mut() {
            if k.as_text() == Some("additional_files") {
                *val = Value::Map(vec![
                    (Value::Text("location".into()), Value::Text("/etc".into())),
                    (Value::Text("hash".into()), Value::Bytes(vec![7; 32])),
                ]);
            }
        }
        let bad = crate::cbor::to_canonical(&v).unwrap();
        let err = crate::cbor::from_canonical::<Container>(&bad).unwrap_err().to_string();
        assert!(err.contains("location"), "{err}");
    }

    #[test]
    fn a_blob_larger_than_any_record_may_declare_is_refused() {
        let Body::Container(mut c) = crate::testkit::container("model", &["infer"]) else {
            panic!("the testkit's container is a container")
        };
        c.image_archive = Some(BlobRef { hash: Hash32::of(b"x"), size: BLOB_BYTES_MAX + 1 });
        let err = Body::Container(c).validate().unwrap_err();
        assert!(
            matches!(err, RecordError::Invalid { field: "container.image_archive", .. }),
            "{err}"
        );
    }
}
