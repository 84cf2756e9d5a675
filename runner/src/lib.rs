//! The MedMesh container runner: MedPerf's steps 3 to 5 on one site, through the
//! local Docker engine (bollard). Data never leaves the machine; only hashes,
//! statistics and metrics come out.
//!
//! - [`manifest`]: MedPerf container configs and legacy `mlcube.yaml`, parsed into
//!   the protocol's [`protocol::record::Manifest`] plus per-task run arguments.
//! - [`engine`]: the Docker engine: image digests, loading/saving/building images,
//!   one sandboxed task run (no network, read-only inputs and root filesystem,
//!   limits, timeout, log file, container always removed).
//! - [`site`]: the site's policy (`site.yaml`): CPUs, memory, shared memory, pids,
//!   GPUs, timeouts per task and allowed engines, with MedPerf's `--gpus` and
//!   `--shm-size` overrides.
//! - [`treehash`]: the BLAKE3 tree hash of prepared data (binds relative paths,
//!   streams, uses every core), and MedPerf's SHA-256 scheme for comparison.
//! - [`dataset`]: the data owner's workflow: prepare -> sanity_check -> statistics
//!   -> hash -> dataset record; set_operational, check, export and import.
//! - [`compat`]: the compatibility test, preparator -> model -> metrics on a demo
//!   dataset.
//! - [`execution`]: benchmark execution: every model by priority on a prepared
//!   dataset, then metrics; results and execution receipts.
//! - [`examples`]: builds the example containers' static binaries and their
//!   `FROM scratch` images.
//! - [`private`]: private models' archives: encrypted for publication, and at a
//!   granted site decrypted to a temporary file, loaded and checked.
//! - [`error`]: what can go wrong, each with what to do and the log path.
//!
//! Architecture invariant: the runner never encodes or signs records; it returns
//! the protocol's record types for the caller to sign.

pub mod compat;
pub mod dataset;
pub mod engine;
pub mod error;
pub mod examples;
pub mod execution;
pub mod manifest;
pub mod private;
pub mod scaffold;
pub mod site;
pub mod treehash;
pub mod trial;

pub use engine::{Engine, RunLimits, Runnable, TaskReport, TaskRun};
pub use error::{ManifestError, RunnerError};
pub use manifest::{ContainerSpec, RunArgs, load_manifest, parse_manifest};
