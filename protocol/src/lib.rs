//! MedMesh's protocol: what every node agrees on, with no I/O.
//!
//! - [`cbor`]: canonical CBOR (RFC 8949 4.2.1) and a strict decoder.
//! - [`ids`]: keys, record ids and hashes, validated when built.
//! - [`root`]: the network root, the trust anchor whose hash is the network id.
//! - [`record`]: every record kind of the MedPerf workflow, with its bounds.
//! - [`contract`]: MedPerf's container contract: per task, which parameters are
//!   inputs (always read-only) and outputs; every container manifest is checked
//!   against it.
//! - [`envelope`]: signing, strict decoding and verification of records.
//! - [`metric`]: statistics and metric values kept as the container wrote them
//!   (NaN and infinities included), and the figures releases publish.
//! - [`seal`]: result metrics and dataset details encrypted to the committee and
//!   the data owner (HPKE).
//! - [`private`]: private models: the streaming cipher of an encrypted image
//!   archive and its content key (granted with [`seal::seal_model_key`]).
//! - [`disclosure`]: what a release may show (rounding, metrics, pseudonyms).
//! - [`fold`]: the deterministic fold of a record set into [`fold::State`]:
//!   approvals, associations, results, releases and leaderboards.
//! - [`leaderboard`]: releases built from opened results, and the leaderboard.
//! - [`riblt`]: rateless invertible Bloom lookup tables, the set reconciliation
//!   catch-up sync starts with (coded symbols, a bounded decoder).
//! - [`testkit`]: deterministic keys and record chains for tests and benches.
//!
//! Architecture invariant: this crate does no I/O, spawns nothing, reads no clock,
//! and is the only crate that encodes or decodes records.

pub mod cbor;
pub mod contract;
mod curve;
pub mod disclosure;
pub mod envelope;
pub mod error;
pub mod fold;
pub mod ids;
pub mod leaderboard;
pub mod limits;
pub mod metric;
pub mod private;
pub mod record;
pub mod riblt;
pub mod root;
pub mod seal;
pub mod testkit;

pub use ed25519_dalek::SigningKey;
pub use envelope::{Record, Unverified, verify_batch};
pub use error::{CborError, IdError, RecordError, RootError, SignatureError};
pub use fold::{Admitted, Ledger, State, fold};
pub use ids::{Hash32, NetworkId, PublicKey, RecordId, SignatureBytes, X25519Key};
pub use root::{AdmissionMode, NetworkRoot};
