//! Benchmark execution on one prepared dataset: each model by priority (highest
//! first), `infer`, then the metrics container's `evaluate`; a results map and an
//! execution receipt per model. A model that fails is reported in
//! [`ExecutionReport::failed`] and stops the run (the models after it are not run)
//! unless `ignore_model_errors`; a finished execution (same dataset hash and image digests)
//! is reused unless `force`.
//!
//! Per model, under the execution folder: `<model id>/predictions/`,
//! `<model id>/results.yaml`, `<model id>/receipt.yaml`, `<model id>/logs/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protocol::record::{ExecutionLimits, ExecutionReceipt};
use protocol::seal::ReceiptKey;
use protocol::{Hash32, RecordId};
use serde::{Deserialize, Serialize};

use crate::dataset::{self, SUMMARY_YAML_BYTES_MAX, parse_results};
use crate::engine::{Engine, RunLimits, Runnable, TaskRun};
use crate::error::{RunnerError, describe};
use crate::treehash::tree_hash;

/// A model to run, with its effective priority (higher first).
#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub id: RecordId,
    pub priority: i32,
    pub container: Runnable,
}

/// Options of a benchmark execution.
#[derive(Clone, Debug, Default)]
pub struct ExecutionOptions {
    /// Keep going after a model fails, reporting the failure.
    pub ignore_model_errors: bool,
    /// Run again even when a finished execution is on disk.
    pub force: bool,
    pub limits: RunLimits,
}

/// The runner that signs its receipts with this name and version.
pub const RUNNER_VERSION: &str = concat!("medmesh-runner/", env!("CARGO_PKG_VERSION"));

/// Everything the runner knows about one execution. It stays on the site (in
/// `receipt.yaml`): the hashes of the outputs and the timings are functions of
/// the data, so the public receipt ([`LocalReceipt::public`]) carries only a
/// keyed commitment to the hashes and none of the timings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReceipt {
    pub model_image_digest: String,
    pub metrics_image_digest: String,
    pub dataset_hash: Hash32,
    /// Tree hash of the predictions folder.
    pub predictions_hash: Hash32,
    /// BLAKE3 of results.yaml.
    pub results_hash: Hash32,
    pub limits: ExecutionLimits,
    pub runner_version: String,
    pub infer_ms: u64,
    pub evaluate_ms: u64,
}

impl LocalReceipt {
    /// The receipt a result record carries: what anyone may check, and the
    /// outputs' hashes committed under `key` (held by the sealed metrics'
    /// recipients only).
    pub fn public(&self, key: &ReceiptKey) -> ExecutionReceipt {
        ExecutionReceipt {
            model_image_digest: self.model_image_digest.clone(),
            metrics_image_digest: self.metrics_image_digest.clone(),
            dataset_hash: self.dataset_hash,
            limits: self.limits.clone(),
            runner_version: self.runner_version.clone(),
            outputs_commitment: key.commit(&self.predictions_hash, &self.results_hash),
        }
    }
}

/// One model's finished execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRun {
    /// metric -> value from results.yaml.
    pub results: BTreeMap<String, protocol::metric::MetricValue>,
    pub receipt: LocalReceipt,
    /// Where results.yaml and the logs are.
    pub dir: PathBuf,
    /// Taken from an earlier run instead of running again.
    #[serde(skip)]
    pub reused: bool,
}

/// What a benchmark execution did, model by model, in the order run.
#[derive(Debug, Default)]
pub struct ExecutionReport {
    pub completed: Vec<(RecordId, ModelRun)>,
    pub failed: Vec<(RecordId, RunnerError)>,
    /// Models not run because an earlier one failed without `ignore_model_errors`.
    pub not_run: Vec<RecordId>,
}

/// Run every model on the prepared dataset at `dataset_root`, whose registered hash
/// is `dataset_hash` (checked first), then `metrics` on each model's predictions.
pub async fn run_benchmark(
    engine: &Engine,
    dataset_root: &Path,
    dataset_hash: Hash32,
    models: &[ModelEntry],
    metrics: &Runnable,
    execution_dir: &Path,
    options: &ExecutionOptions,
) -> Result<ExecutionReport, RunnerError> {
    let root = dataset_root.to_path_buf();
    dataset::blocking(move || dataset::check_dataset(&root, &dataset_hash)).await?;
    let mut order: Vec<&ModelEntry> = models.iter().collect();
    order.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    let mut report = ExecutionReport::default();
    for (i, m) in order.iter().enumerate() {
        let dir = execution_dir.join(m.id.to_hex());
        if let Some(done) =
            finished(&dir, dataset_hash, &m.container, metrics).filter(|_| !options.force)
        {
            tracing::info!(model = %m.id.short(), "execution already finished; reusing it");
            report.completed.push((m.id, done));
            continue;
        }
        match run_model(
            engine,
            dataset_root,
            dataset_hash,
            &m.container,
            metrics,
            &dir,
            &options.limits,
        )
        .await
        {
            Ok(run) => report.completed.push((m.id, run)),
            Err(e) if options.ignore_model_errors => {
                tracing::warn!(model = %m.id.short(), error = %describe(&e), "model failed; continuing");
                report.failed.push((m.id, e));
            }
            Err(e) => {
                tracing::warn!(model = %m.id.short(), error = %describe(&e), "model failed; stopping");
                report.failed.push((m.id, e));
                report.not_run = order[i + 1..].iter().map(|m| m.id).collect();
                break;
            }
        }
    }
    Ok(report)
}

/// A finished execution in `dir` for the same dataset and images, if there is one.
fn finished(
    dir: &Path,
    dataset_hash: Hash32,
    model: &Runnable,
    metrics: &Runnable,
) -> Option<ModelRun> {
    let path = dir.join("receipt.yaml");
    let len = std::fs::metadata(&path).ok()?.len();
    if len > SUMMARY_YAML_BYTES_MAX {
        return None;
    }
    let mut run: ModelRun = serde_yaml::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    let r = &run.receipt;
    let same = r.dataset_hash == dataset_hash
        && r.model_image_digest == model.image.digest
        && r.metrics_image_digest == metrics.image.digest;
    run.reused = true;
    same.then_some(run)
}

/// Run one model and the metrics on a prepared dataset (not re-hashed here), into `dir`.
pub async fn run_model(
    engine: &Engine,
    dataset_root: &Path,
    dataset_hash: Hash32,
    model: &Runnable,
    metrics: &Runnable,
    dir: &Path,
    limits: &RunLimits,
) -> Result<ModelRun, RunnerError> {
    let predictions = dir.join("predictions");
    let results_path = dir.join("results.yaml");
    for stale in [dir.join("receipt.yaml"), results_path.clone()] {
        let _ = std::fs::remove_file(stale);
    }
    if predictions.exists() {
        std::fs::remove_dir_all(&predictions).map_err(RunnerError::io(&predictions))?;
    }
    let logs = dir.join("logs");
    let infer = TaskRun {
        container: model,
        task: "infer",
        mounts: BTreeMap::from([
            ("data_path".to_string(), dataset::data_dir(dataset_root)),
            ("output_path".to_string(), predictions.clone()),
        ]),
        log_path: logs.join("infer.log"),
        scratch_dir: dir.join("tmp/infer"),
    };
    let inferred = engine.run_task(&infer, limits).await?;
    let hashed = predictions.clone();
    let predictions_hash =
        dataset::blocking(move || tree_hash(&[("predictions", &hashed)])).await?;
    let mut evaluate_mounts = BTreeMap::from([
        ("predictions".to_string(), predictions.clone()),
        ("labels".to_string(), dataset::labels_dir(dataset_root)),
        ("output_path".to_string(), results_path.clone()),
    ]);
    if metrics.spec.task("evaluate")?.outputs.iter().any(|p| p.name == "local_outputs_path") {
        evaluate_mounts.insert("local_outputs_path".into(), dir.join("local_outputs"));
    }
    let evaluate = TaskRun {
        container: metrics,
        task: "evaluate",
        mounts: evaluate_mounts,
        log_path: logs.join("evaluate.log"),
        scratch_dir: dir.join("tmp/evaluate"),
    };
    let evaluated = engine.run_task(&evaluate, limits).await?;
    let _ = std::fs::remove_dir_all(dir.join("tmp"));
    let results = parse_results(&results_path, &evaluate.log_path)?;
    let results_bytes = std::fs::read(&results_path).map_err(RunnerError::io(&results_path))?;
    let receipt = LocalReceipt {
        model_image_digest: model.image.digest.clone(),
        metrics_image_digest: metrics.image.digest.clone(),
        dataset_hash,
        predictions_hash,
        results_hash: Hash32::of(&results_bytes),
        limits: limits.receipt(),
        runner_version: RUNNER_VERSION.into(),
        infer_ms: inferred.duration_ms,
        evaluate_ms: evaluated.duration_ms,
    };
    let run = ModelRun { results, receipt, dir: dir.into(), reused: false };
    let receipt_path = dir.join("receipt.yaml");
    let text = serde_yaml::to_string(&run)
        .map_err(|e| RunnerError::Invalid { path: receipt_path.clone(), reason: e.to_string() })?;
    std::fs::write(&receipt_path, text).map_err(RunnerError::io(receipt_path))?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use protocol::seal::{Binding, OpeningKey, SeededRng, open_result, seal_result};

    use super::*;

    fn local() -> LocalReceipt {
        LocalReceipt {
            model_image_digest: format!("sha256:{}", "a".repeat(64)),
            metrics_image_digest: format!("sha256:{}", "b".repeat(64)),
            dataset_hash: Hash32::of(b"prepared"),
            predictions_hash: Hash32::of(b"predictions"),
            results_hash: Hash32::of(b"correct: 7\n"),
            limits: ExecutionLimits { memory_bytes: 1 << 30, nano_cpus: 1, pids: 64 },
            runner_version: RUNNER_VERSION.into(),
            infer_ms: 1234,
            evaluate_ms: 56,
        }
    }

    #[test]
    fn the_public_receipt_keeps_what_anyone_may_check_and_commits_to_the_outputs_for_the_recipients()
     {
        let binding = Binding {
            benchmark: RecordId::from_bytes([1; 32]),
            model: RecordId::from_bytes([2; 32]),
            dataset: RecordId::from_bytes([3; 32]),
        };
        let reader = OpeningKey::from_secret([4; 32]);
        let metrics: BTreeMap<String, protocol::metric::MetricValue> =
            [("correct".to_string(), protocol::metric::MetricValue::Int(7))].into();
        let (sealed, key) =
            seal_result(&metrics, &[reader.public()], binding, &mut SeededRng::new(b"r")).unwrap();
        let l = local();
        let public = l.public(&key);
        assert_eq!(public.dataset_hash, l.dataset_hash);
        assert_eq!(public.model_image_digest, l.model_image_digest);
        assert_eq!(public.runner_version, RUNNER_VERSION);
        // Neither output hash nor any timing is in the public receipt's bytes.
        let bytes = protocol::cbor::to_canonical(&public).unwrap();
        for h in [l.predictions_hash, l.results_hash] {
            assert!(!bytes.windows(32).any(|w| w == h.as_bytes()));
        }
        assert_ne!(public.outputs_commitment, l.results_hash);
        // A recipient derives the key and checks the commitment against the outputs.
        let (_, opened) = open_result(&sealed, &reader, binding).unwrap();
        assert_eq!(opened.commit(&l.predictions_hash, &l.results_hash), public.outputs_commitment);
    }
}
