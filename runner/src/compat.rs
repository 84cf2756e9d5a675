//! The compatibility test: preparator -> model -> metrics on a benchmark's demo
//! dataset (a folder, or a tarball pinned by BLAKE3, holding `paths.yaml` with
//! `data_path` and `labels_path`). A benchmark owner runs it before submitting; every
//! association request carries its outcome.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use protocol::Hash32;
use protocol::record::CompatibilityTest;

use crate::dataset::{self, PreparedDataset};
use crate::engine::{Engine, RunLimits, Runnable};
use crate::error::RunnerError;
use crate::execution::{self, ModelRun};

/// Largest demo dataset tarball unpacked.
pub const DEMO_TARBALL_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// Largest paths.yaml read.
pub const PATHS_YAML_BYTES_MAX: u64 = 64 * 1024;

/// What a passed compatibility test produced.
#[derive(Clone, Debug, PartialEq)]
pub struct CompatibilityOutcome {
    pub results: BTreeMap<String, protocol::metric::MetricValue>,
    /// BLAKE3 of results.yaml (stays local when the test ran on the owner's data).
    pub results_hash: Hash32,
    /// Preparator (when it ran), model and metrics image digests, in that order.
    pub image_digests: Vec<String>,
    pub prepared: PreparedDataset,
    pub model: ModelRun,
    /// The test ran on a data owner's own prepared data, not the public demo
    /// dataset: its results are private.
    pub on_private_data: bool,
}

impl CompatibilityOutcome {
    /// The outcome as an association request carries it. On the demo dataset the
    /// results' hash is public (anyone can run the test again); on a data owner's
    /// own data it is keyed with `key` (random, kept by the owner), so that it is
    /// no function of the data's results for anyone else.
    pub fn record(&self, key: &[u8; 32]) -> CompatibilityTest {
        let results_hash = if self.on_private_data {
            let mut h = blake3::Hasher::new_keyed(key);
            h.update(b"medmesh/compatibility-results/v1");
            h.update(self.results_hash.as_bytes());
            Hash32::from_bytes(*h.finalize().as_bytes())
        } else {
            self.results_hash
        };
        CompatibilityTest { passed: true, results_hash, image_digests: self.image_digests.clone() }
    }
}

/// The raw data and labels folders a demo dataset's `paths.yaml` names.
pub fn demo_paths(demo_dir: &Path) -> Result<(PathBuf, PathBuf), RunnerError> {
    let path = demo_dir.join("paths.yaml");
    let len = std::fs::metadata(&path).map_err(RunnerError::io(&path))?.len();
    if len > PATHS_YAML_BYTES_MAX {
        return Err(RunnerError::Invalid {
            path,
            reason: format!("{len} bytes; at most {PATHS_YAML_BYTES_MAX}"),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(RunnerError::io(&path))?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| RunnerError::Invalid {
        path: path.clone(),
        reason: format!("not valid YAML: {e}"),
    })?;
    let get = |key: &str| -> Result<PathBuf, RunnerError> {
        let rel = v.get(key).and_then(|x| x.as_str()).ok_or_else(|| RunnerError::Invalid {
            path: path.clone(),
            reason: format!("has no `{key}`"),
        })?;
        let rel = Path::new(rel);
        if !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(RunnerError::Invalid {
                path: path.clone(),
                reason: format!("`{key}` must be a relative path inside the demo dataset"),
            });
        }
        Ok(demo_dir.join(rel))
    };
    Ok((get("data_path")?, get("labels_path")?))
}

/// Check a demo dataset tarball against the benchmark's BLAKE3 and unpack it.
pub fn unpack_demo_dataset(
    tarball: &Path,
    expected: &Hash32,
    dest: &Path,
) -> Result<PathBuf, RunnerError> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(tarball).map_err(RunnerError::io(tarball))?;
    let actual = Hash32::from_bytes(*h.finalize().as_bytes());
    if &actual != expected {
        return Err(RunnerError::HashMismatch {
            path: tarball.into(),
            expected: expected.to_hex(),
            actual: actual.to_hex(),
        });
    }
    dataset::unpack_plain(tarball, dest, DEMO_TARBALL_BYTES_MAX)?;
    Ok(dest.into())
}

/// Prepare the demo dataset with `preparator` under `work_dir`, run `model` on it,
/// then `metrics`. `work_dir` must not exist or be empty.
pub async fn compatibility_test(
    engine: &Engine,
    demo_dir: &Path,
    preparator: &Runnable,
    model: &Runnable,
    metrics: &Runnable,
    work_dir: &Path,
    limits: &RunLimits,
) -> Result<CompatibilityOutcome, RunnerError> {
    let (raw_data, raw_labels) = demo_paths(demo_dir)?;
    let prepared = dataset::prepare_dataset(
        engine,
        preparator,
        &raw_data,
        &raw_labels,
        &work_dir.join("prepared"),
        limits,
    )
    .await?;
    let mut outcome =
        compatibility_test_prepared(engine, &prepared, model, metrics, work_dir, limits).await?;
    outcome.image_digests.insert(0, preparator.image.digest.clone());
    outcome.on_private_data = false;
    Ok(outcome)
}

/// The test on data already prepared (a data owner's own dataset, as MedPerf allows).
pub async fn compatibility_test_prepared(
    engine: &Engine,
    prepared: &PreparedDataset,
    model: &Runnable,
    metrics: &Runnable,
    work_dir: &Path,
    limits: &RunLimits,
) -> Result<CompatibilityOutcome, RunnerError> {
    let run = execution::run_model(
        engine,
        &prepared.root,
        prepared.prepared_hash,
        model,
        metrics,
        &work_dir.join("execution"),
        limits,
    )
    .await?;
    Ok(CompatibilityOutcome {
        results: run.results.clone(),
        results_hash: run.receipt.results_hash,
        image_digests: vec![model.image.digest.clone(), metrics.image.digest.clone()],
        prepared: prepared.clone(),
        model: run,
        on_private_data: true,
    })
}
