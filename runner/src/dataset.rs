//! The data owner's workflow, as MedPerf runs it: `prepare` -> `sanity_check` ->
//! `statistics` (must be a non-empty mapping) -> the tree hash of the prepared data
//! and labels -> the fields of a dataset record. Then `set_operational` (hash
//! recomputed), `check` (re-hash and compare), and export/import of a prepared
//! dataset as a tarball, to move it between machines.
//!
//! A prepared dataset is a folder:
//!
//! ```text
//! <root>/data/               prepared data (output_path)
//! <root>/labels/             prepared labels (output_labels_path)
//! <root>/statistics.yaml     what the statistics task wrote
//! <root>/metadata/, report.yaml   when the preparator declares them
//! <root>/logs/<task>.log     one log per container task
//! <root>/medmesh-dataset.yaml    the prepared hash and statistics, for check/export
//! ```
//!
//! Only `data/` and `labels/` are hashed.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use protocol::limits::{NAME_BYTES_MAX, STATISTICS_ENTRIES_MAX, TEXT_BYTES_MAX};
use protocol::metric::MetricValue;
use protocol::record::{DatasetDetails, DatasetOperational};
use protocol::{Hash32, RecordId};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::engine::{Engine, RunLimits, Runnable, TaskRun};
use crate::error::RunnerError;
use crate::treehash::tree_hash;

/// Largest statistics.yaml or results.yaml read.
pub const SUMMARY_YAML_BYTES_MAX: u64 = 1024 * 1024;
/// Deepest nesting kept in statistics or results.
pub const SUMMARY_DEPTH_MAX: usize = 8;
/// Largest dataset tarball imported.
pub const DATASET_TARBALL_BYTES_MAX: u64 = 1024 * 1024 * 1024 * 1024;
/// The file in a prepared dataset's folder that records its hash.
pub const DATASET_INFO_FILE: &str = "medmesh-dataset.yaml";

/// A prepared dataset on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedDataset {
    pub root: PathBuf,
    pub prepared_hash: Hash32,
    /// statistics.yaml as the preparator wrote it.
    pub statistics: BTreeMap<String, MetricValue>,
    /// Digest of the preparator image that prepared it.
    pub preparator_digest: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasetInfo {
    prepared_hash: Hash32,
    preparator_digest: String,
    statistics: BTreeMap<String, MetricValue>,
}

pub fn data_dir(root: &Path) -> PathBuf {
    root.join("data")
}

pub fn labels_dir(root: &Path) -> PathBuf {
    root.join("labels")
}

pub fn statistics_file(root: &Path) -> PathBuf {
    root.join("statistics.yaml")
}

fn log_file(root: &Path, task: &str) -> PathBuf {
    root.join("logs").join(format!("{task}.log"))
}

/// The tree hash of a prepared dataset's data and labels.
pub fn dataset_hash(root: &Path) -> Result<Hash32, RunnerError> {
    let (data, labels) = (data_dir(root), labels_dir(root));
    tree_hash(&[("data", &data), ("labels", &labels)])
}

/// Run blocking file work (hashing) off the async runtime's threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RunnerError> + Send + 'static,
) -> Result<T, RunnerError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(RunnerError::Invalid {
            path: PathBuf::from("."),
            reason: format!("a hashing task failed: {e}"),
        })
    })
}

/// What happens during a preparation, for a progress display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrepareEvent {
    /// An earlier attempt on the same raw data, preparator and parameters was
    /// interrupted; `prepare` runs again over what it left (as MedPerf does), and
    /// the preparator picks up where its report says it stopped.
    Resuming { report: Option<ReportSummary> },
    /// A task starts (`prepare`, `sanity_check`, `statistics`) or the hashing.
    Step(&'static str),
    /// `report.yaml` changed while `prepare` ran.
    Report(ReportSummary),
}

/// How often `report.yaml` is read while `prepare` runs.
pub const REPORT_POLL_MS: u64 = 500;
/// The file that names an unfinished preparation (what it prepares from, with what).
pub const ATTEMPT_FILE: &str = "medmesh-prepare-attempt.yaml";

/// MedPerf's preparation report summarized as MedPerf summarizes it: the share of
/// subjects at each status. The report is a mapping of columns (`status`,
/// `comment`, ...) each mapping a subject to its value, as the preparator writes it
/// with pandas; a mapping of subjects each with a `status` is read too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSummary {
    pub subjects: u64,
    /// Status (as text) -> subjects at it.
    pub statuses: BTreeMap<String, u64>,
}

impl std::fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} subjects", self.subjects)?;
        for (i, (status, n)) in self.statuses.iter().enumerate() {
            let pct = n * 100 / self.subjects.max(1);
            write!(f, "{} status {status}: {pct}%", if i == 0 { ";" } else { "," })?;
        }
        Ok(())
    }
}

/// `report.yaml` summarized, or `None` when it is missing, empty, unreadable or
/// holds no statuses (a report is the preparator's business; it never fails a run).
pub fn report_summary(path: &Path) -> Option<ReportSummary> {
    let MetricValue::Map(report) = read_mapping(path).ok().map(MetricValue::Map)? else {
        return None;
    };
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    match report.get("status") {
        Some(MetricValue::Map(by_subject)) => {
            for v in by_subject.values() {
                *statuses.entry(v.to_string()).or_default() += 1;
            }
        }
        _ => {
            for row in report.values() {
                if let MetricValue::Map(row) = row
                    && let Some(v) = row.get("status")
                {
                    *statuses.entry(v.to_string()).or_default() += 1;
                }
            }
        }
    }
    let subjects = statuses.values().sum();
    (subjects > 0).then_some(ReportSummary { subjects, statuses })
}

/// What an attempt prepares from and with: a later attempt resumes it only when
/// all of it is the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attempt {
    preparator_digest: String,
    raw_data: PathBuf,
    raw_labels: PathBuf,
    /// BLAKE3 of the parameters file, when there is one.
    parameters: Option<Hash32>,
}

impl Attempt {
    fn of(preparator: &Runnable, raw_data: &Path, raw_labels: &Path) -> Result<Self, RunnerError> {
        let parameters = match &preparator.parameters_file {
            Some(p) => Some(Hash32::of(&std::fs::read(p).map_err(RunnerError::io(p))?)),
            None => None,
        };
        let abs = |p: &Path| p.canonicalize().map_err(RunnerError::io(p));
        Ok(Self {
            preparator_digest: preparator.image.digest.clone(),
            raw_data: abs(raw_data)?,
            raw_labels: abs(raw_labels)?,
            parameters,
        })
    }

    fn read(root: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(root.join(ATTEMPT_FILE)).ok()?;
        serde_yaml::from_str(&text).ok()
    }

    fn write(&self, root: &Path) -> Result<(), RunnerError> {
        let path = root.join(ATTEMPT_FILE);
        let text = serde_yaml::to_string(self)
            .map_err(|e| RunnerError::Invalid { path: path.clone(), reason: e.to_string() })?;
        std::fs::write(&path, text).map_err(RunnerError::io(path))
    }
}

/// Run the preparator's `prepare`, `sanity_check` (when it has one) and `statistics`
/// on raw data and labels into `root`, then hash the result. `root` must not hold a
/// prepared dataset already. An interrupted attempt on the same raw data with the
/// same preparator and parameters is resumed; what any other attempt left is
/// replaced.
pub async fn prepare_dataset(
    engine: &Engine,
    preparator: &Runnable,
    raw_data: &Path,
    raw_labels: &Path,
    root: &Path,
    limits: &RunLimits,
) -> Result<PreparedDataset, RunnerError> {
    prepare_dataset_watched(engine, preparator, raw_data, raw_labels, root, limits, &|_| {}).await
}

/// [`prepare_dataset`], telling `on` what happens (steps, resumption, and each
/// change of `report.yaml` while `prepare` runs).
pub async fn prepare_dataset_watched(
    engine: &Engine,
    preparator: &Runnable,
    raw_data: &Path,
    raw_labels: &Path,
    root: &Path,
    limits: &RunLimits,
    on: &(dyn Fn(PrepareEvent) + Sync),
) -> Result<PreparedDataset, RunnerError> {
    if root.join(DATASET_INFO_FILE).exists() {
        return Err(RunnerError::Invalid {
            path: root.into(),
            reason: "already holds a prepared dataset; prepare into a new folder".into(),
        });
    }
    let attempt = Attempt::of(preparator, raw_data, raw_labels)?;
    let report_path = root.join("report.yaml");
    if Attempt::read(root).as_ref() == Some(&attempt) {
        tracing::info!(root = %root.display(), "resuming an interrupted preparation");
        on(PrepareEvent::Resuming { report: report_summary(&report_path) });
        clear_scratch(root)?;
    } else {
        clear_failed_attempt(root)?;
    }
    std::fs::create_dir_all(root).map_err(RunnerError::io(root))?;
    attempt.write(root)?;
    let mounts = BTreeMap::from([
        ("data_path".to_string(), raw_data.to_path_buf()),
        ("labels_path".to_string(), raw_labels.to_path_buf()),
        ("output_path".to_string(), data_dir(root)),
        ("output_labels_path".to_string(), labels_dir(root)),
    ]);
    let mounts = with_optional_mounts(preparator, "prepare", root, mounts)?;
    on(PrepareEvent::Step("prepare"));
    {
        let prepare = run(engine, preparator, "prepare", mounts, root, limits);
        tokio::pin!(prepare);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(REPORT_POLL_MS));
        let mut last = None;
        let done = loop {
            tokio::select! {
                done = &mut prepare => break done,
                _ = tick.tick() => {
                    let now = report_summary(&report_path);
                    if now.is_some() && now != last {
                        on(PrepareEvent::Report(now.clone().expect("checked")));
                        last = now;
                    }
                }
            }
        };
        // The report as `prepare` left it, finished or not.
        if let Some(end) = report_summary(&report_path).filter(|r| Some(r) != last.as_ref()) {
            on(PrepareEvent::Report(end));
        }
        done?;
    }
    if preparator.spec.manifest.task("sanity_check").is_some() {
        on(PrepareEvent::Step("sanity_check"));
        sanity_check(engine, preparator, root, limits).await?;
    } else {
        // MedPerf's newer preparators check inside `statistics`.
        tracing::info!("the preparator has no sanity_check task; statistics must pass instead");
    }
    on(PrepareEvent::Step("statistics"));
    let statistics = statistics(engine, preparator, root, limits).await?;
    on(PrepareEvent::Step("hash"));
    let hashed = root.to_path_buf();
    let prepared_hash = blocking(move || dataset_hash(&hashed)).await?;
    let info = DatasetInfo {
        prepared_hash,
        preparator_digest: preparator.image.digest.clone(),
        statistics: statistics.clone(),
    };
    write_info(root, &info)?;
    let attempt_file = root.join(ATTEMPT_FILE);
    std::fs::remove_file(&attempt_file).map_err(RunnerError::io(&attempt_file))?;
    tracing::info!(root = %root.display(), hash = %prepared_hash.short(), "dataset prepared");
    Ok(PreparedDataset {
        root: root.into(),
        prepared_hash,
        statistics,
        preparator_digest: info.preparator_digest,
    })
}

/// Remove what a failed `prepare` left in `root` (only the names this module writes;
/// the logs stay until the next run overwrites them).
fn clear_failed_attempt(root: &Path) -> Result<(), RunnerError> {
    for dir in ["data", "labels", "metadata"] {
        let p = root.join(dir);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(RunnerError::io(&p))?;
        }
    }
    let p = root.join("report.yaml");
    if p.exists() {
        std::fs::remove_file(&p).map_err(RunnerError::io(&p))?;
    }
    clear_scratch(root)
}

/// Remove what no attempt resumes from: the tasks' scratch folders and the last
/// statistics.
fn clear_scratch(root: &Path) -> Result<(), RunnerError> {
    for p in [root.join("tmp"), root.join(ATTEMPT_FILE), root.join("statistics.yaml")] {
        if p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(RunnerError::io(&p))?;
        } else if p.exists() {
            std::fs::remove_file(&p).map_err(RunnerError::io(&p))?;
        }
    }
    Ok(())
}

/// Add MedPerf's optional preparator parameters a task declares: `metadata_path`
/// (a folder in the dataset) and `report_file` (`report.yaml`).
fn with_optional_mounts(
    c: &Runnable,
    task: &str,
    root: &Path,
    mut mounts: BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, PathBuf>, RunnerError> {
    let t = c.spec.task(task)?;
    for p in t.inputs.iter().chain(&t.outputs) {
        let path = match p.name.as_str() {
            "metadata_path" => root.join("metadata"),
            "report_file" => root.join("report.yaml"),
            _ => continue,
        };
        if t.inputs.iter().any(|i| i.name == p.name) && p.name == "metadata_path" {
            std::fs::create_dir_all(&path).map_err(RunnerError::io(&path))?;
        }
        mounts.entry(p.name.clone()).or_insert(path);
    }
    Ok(mounts)
}

async fn run(
    engine: &Engine,
    c: &Runnable,
    task: &str,
    mounts: BTreeMap<String, PathBuf>,
    root: &Path,
    limits: &RunLimits,
) -> Result<(), RunnerError> {
    let scratch = root.join("tmp").join(task);
    let run = TaskRun {
        container: c,
        task,
        mounts,
        log_path: log_file(root, task),
        scratch_dir: scratch.clone(),
    };
    let result = engine.run_task(&run, limits).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|_| ())
}

/// The preparator's `sanity_check` on a prepared dataset; a non-zero exit fails it.
pub async fn sanity_check(
    engine: &Engine,
    preparator: &Runnable,
    root: &Path,
    limits: &RunLimits,
) -> Result<(), RunnerError> {
    let mounts = BTreeMap::from([
        ("data_path".to_string(), data_dir(root)),
        ("labels_path".to_string(), labels_dir(root)),
    ]);
    let mounts = with_optional_mounts(preparator, "sanity_check", root, mounts)?;
    run(engine, preparator, "sanity_check", mounts, root, limits).await
}

/// The preparator's `statistics` on a prepared dataset: a non-empty mapping,
/// flattened.
pub async fn statistics(
    engine: &Engine,
    preparator: &Runnable,
    root: &Path,
    limits: &RunLimits,
) -> Result<BTreeMap<String, MetricValue>, RunnerError> {
    let out = statistics_file(root);
    // A file output is not truncated (a resumed report keeps its content): drop
    // what an earlier run wrote, so only this run's statistics are read.
    if out.exists() {
        std::fs::remove_file(&out).map_err(RunnerError::io(&out))?;
    }
    let mounts = BTreeMap::from([
        ("data_path".to_string(), data_dir(root)),
        ("labels_path".to_string(), labels_dir(root)),
        ("output_path".to_string(), out.clone()),
    ]);
    let mounts = with_optional_mounts(preparator, "statistics", root, mounts)?;
    run(engine, preparator, "statistics", mounts, root, limits).await?;
    parse_statistics(&out, &log_file(root, "statistics"))
}

/// Statistics keys that give the number of cases, in the order they are tried.
pub const NUM_CASES_KEYS: [&str; 4] = ["num_cases", "cases", "num_samples", "samples"];

/// A dataset's details (what the record seals to the committee and the owner),
/// for the CLI to seal and sign. The case count comes from the statistics, when
/// one of [`NUM_CASES_KEYS`] holds a whole number.
pub fn dataset_details(
    prepared: &PreparedDataset,
    name: &str,
    description: &str,
    location: &str,
    name_public: bool,
) -> DatasetDetails {
    let num_cases = NUM_CASES_KEYS.iter().find_map(|k| match prepared.statistics.get(*k) {
        Some(MetricValue::Int(n)) => u64::try_from(*n).ok(),
        Some(MetricValue::Text(t)) => t.trim().parse::<u64>().ok(),
        _ => None,
    });
    DatasetDetails {
        name: name.into(),
        description: description.into(),
        location: location.into(),
        statistics: prepared.statistics.clone(),
        num_cases,
        name_public,
    }
}

/// Re-hash the prepared data and build the record that marks `dataset` operational.
pub fn set_operational(root: &Path, dataset: RecordId) -> Result<DatasetOperational, RunnerError> {
    let prepared_hash = dataset_hash(root)?;
    let mut info = read_info(root)?;
    info.prepared_hash = prepared_hash;
    write_info(root, &info)?;
    Ok(DatasetOperational { dataset, prepared_hash })
}

/// Re-hash the prepared data and compare with `expected` (the registered hash).
pub fn check_dataset(root: &Path, expected: &Hash32) -> Result<(), RunnerError> {
    let actual = dataset_hash(root)?;
    if &actual != expected {
        return Err(RunnerError::HashMismatch {
            path: root.into(),
            expected: expected.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(())
}

/// Open a prepared dataset folder: its recorded hash and statistics (not re-hashed;
/// call [`check_dataset`] for that).
pub fn open_dataset(root: &Path) -> Result<PreparedDataset, RunnerError> {
    let info = read_info(root)?;
    Ok(PreparedDataset {
        root: root.into(),
        prepared_hash: info.prepared_hash,
        statistics: info.statistics,
        preparator_digest: info.preparator_digest,
    })
}

fn write_info(root: &Path, info: &DatasetInfo) -> Result<(), RunnerError> {
    let path = root.join(DATASET_INFO_FILE);
    let text = serde_yaml::to_string(info)
        .map_err(|e| RunnerError::Invalid { path: path.clone(), reason: e.to_string() })?;
    std::fs::write(&path, text).map_err(RunnerError::io(path))
}

fn read_info(root: &Path) -> Result<DatasetInfo, RunnerError> {
    let path = root.join(DATASET_INFO_FILE);
    let text = read_bounded(&path, SUMMARY_YAML_BYTES_MAX)?;
    serde_yaml::from_str(&text).map_err(|e| RunnerError::Invalid {
        path,
        reason: format!("is not a prepared dataset's info: {e}"),
    })
}

fn read_bounded(path: &Path, max: u64) -> Result<String, RunnerError> {
    let len = std::fs::metadata(path).map_err(RunnerError::io(path))?.len();
    if len > max {
        return Err(RunnerError::Invalid {
            path: path.into(),
            reason: format!("{len} bytes; at most {max}"),
        });
    }
    std::fs::read_to_string(path).map_err(RunnerError::io(path))
}

/// A YAML value kept as written ([`MetricValue`]): tags are dropped (their value
/// kept), keys that are numbers or booleans become their text.
fn to_metric(v: &Value, depth: usize) -> Result<MetricValue, String> {
    if depth > SUMMARY_DEPTH_MAX {
        return Err(format!("nested deeper than {SUMMARY_DEPTH_MAX}"));
    }
    Ok(match v {
        Value::Null => MetricValue::Null,
        Value::Bool(b) => MetricValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => MetricValue::Int(i),
            None => MetricValue::float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => MetricValue::Text(s.clone()),
        Value::Sequence(items) => MetricValue::List(
            items.iter().map(|v| to_metric(v, depth + 1)).collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                out.insert(key_text(k)?, to_metric(v, depth + 1)?);
            }
            MetricValue::Map(out)
        }
        Value::Tagged(t) => to_metric(&t.value, depth + 1)?,
    })
}

fn key_text(k: &Value) -> Result<String, String> {
    match k {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err("has a key that is not text".into()),
    }
}

/// A non-empty YAML mapping at `path`, kept as written; `Err(reason)` otherwise.
fn read_mapping(path: &Path) -> Result<BTreeMap<String, MetricValue>, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("unreadable ({e})"))?.len();
    if len > SUMMARY_YAML_BYTES_MAX {
        return Err(format!("{len} bytes, more than {SUMMARY_YAML_BYTES_MAX}"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("unreadable ({e})"))?;
    if text.trim().is_empty() {
        return Err("empty".into());
    }
    let v: Value = serde_yaml::from_str(&text).map_err(|e| format!("not valid YAML ({e})"))?;
    let MetricValue::Map(out) = to_metric(&v, 0)? else {
        return Err("not a mapping".into());
    };
    if out.is_empty() {
        return Err("an empty mapping".into());
    }
    MetricValue::Map(out.clone()).check(TEXT_BYTES_MAX).map_err(|e| e.to_string())?;
    for k in out.keys() {
        if k.trim().is_empty() || k.len() > NAME_BYTES_MAX {
            return Err(format!("the key `{k}` is empty or longer than {NAME_BYTES_MAX} bytes"));
        }
    }
    Ok(out)
}

/// statistics.yaml as the dataset record carries it: kept as the preparator wrote
/// it (NaN, infinities, nested maps and text included).
pub fn parse_statistics(
    path: &Path,
    log: &Path,
) -> Result<BTreeMap<String, MetricValue>, RunnerError> {
    let bad =
        |reason: String| RunnerError::BadStatistics { path: path.into(), reason, log: log.into() };
    let out = read_mapping(path).map_err(bad)?;
    if out.len() > STATISTICS_ENTRIES_MAX {
        return Err(bad(format!("{} entries, more than {STATISTICS_ENTRIES_MAX}", out.len())));
    }
    Ok(out)
}

/// results.yaml as metric -> value, kept as the metrics container wrote it (NaN,
/// infinities, nested maps and text included; MedPerf's own test metrics write
/// `error: .nan`). Releases carry its numbers ([`protocol::leaderboard`]).
pub fn parse_results(
    path: &Path,
    log: &Path,
) -> Result<BTreeMap<String, MetricValue>, RunnerError> {
    read_mapping(path).map_err(|reason| RunnerError::BadResults {
        path: path.into(),
        reason,
        log: log.into(),
    })
}

/// Write a prepared dataset (data, labels, statistics, info) as a tarball, after
/// checking it still has its recorded hash. Returns that hash.
pub fn export_dataset(root: &Path, tarball: &Path) -> Result<Hash32, RunnerError> {
    let info = read_info(root)?;
    check_dataset(root, &info.prepared_hash)?;
    let file = std::fs::File::create(tarball).map_err(RunnerError::io(tarball))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    for dir in ["data", "labels"] {
        let p = root.join(dir);
        if p.exists() {
            tar.append_dir_all(dir, &p).map_err(RunnerError::io(&p))?;
        }
    }
    for f in [DATASET_INFO_FILE, "statistics.yaml"] {
        let p = root.join(f);
        if p.exists() {
            tar.append_path_with_name(&p, f).map_err(RunnerError::io(&p))?;
        }
    }
    tar.into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .map_err(RunnerError::io(tarball))?;
    Ok(info.prepared_hash)
}

/// Unpack a tarball (a dataset, additional files) into `root` (new or empty), refusing links and paths
/// that leave it, then re-hash: the result must match its recorded hash and, when
/// given, `expected` (the registered hash).
pub fn import_dataset(
    tarball: &Path,
    root: &Path,
    expected: Option<&Hash32>,
) -> Result<PreparedDataset, RunnerError> {
    unpack_plain(tarball, root, DATASET_TARBALL_BYTES_MAX)?;
    let info = read_info(root)?;
    check_dataset(root, &info.prepared_hash)?;
    if let Some(e) = expected {
        check_dataset(root, e)?;
    }
    open_dataset(root)
}

/// Unpack a tarball of plain files and folders into `root` (new or empty).
pub fn unpack_plain(tarball: &Path, root: &Path, max_bytes: u64) -> Result<(), RunnerError> {
    if root.exists() && std::fs::read_dir(root).map_err(RunnerError::io(root))?.next().is_some() {
        return Err(RunnerError::Invalid {
            path: root.into(),
            reason: "already holds files; unpack into a new folder".into(),
        });
    }
    std::fs::create_dir_all(root).map_err(RunnerError::io(root))?;
    let file = std::fs::File::open(tarball).map_err(RunnerError::io(tarball))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut total = 0u64;
    for entry in archive.entries().map_err(RunnerError::io(tarball))? {
        let mut entry = entry.map_err(RunnerError::io(tarball))?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(RunnerError::io(tarball))?.into_owned();
        let safe = path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !safe || !(kind.is_file() || kind.is_dir()) {
            return Err(RunnerError::Invalid {
                path: tarball.into(),
                reason: format!(
                    "entry {} is a link, special file or leaves the folder",
                    path.display()
                ),
            });
        }
        total += entry.size();
        if total > max_bytes {
            return Err(RunnerError::Invalid {
                path: tarball.into(),
                reason: format!("unpacks to more than {max_bytes} bytes"),
            });
        }
        entry.unpack_in(root).map_err(RunnerError::io(root))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exactly what PyYAML 6 writes for `yaml.dump` of NaN, infinities, a shared
    /// mapping (an anchor and an alias), strings and a nested list.
    const PYYAML_DUMP: &str = "down: -.inf\nerror: .nan\nleft: &id001\n  dice: 0.9\n  hd95: 12.5\nname: ok\nnested:\n  a:\n  - 1\n  - 2\nright: *id001\nup: .inf\n";

    #[test]
    fn the_yaml_reader_reads_pyyamls_nan_infinities_and_aliases() {
        let v: serde_yaml::Value = serde_yaml::from_str(PYYAML_DUMP).unwrap();
        let f = |k: &str| v[k].as_f64().unwrap();
        assert!(f("error").is_nan(), ".nan");
        assert_eq!(f("up"), f64::INFINITY, ".inf");
        assert_eq!(f("down"), f64::NEG_INFINITY, "-.inf");
        assert_eq!(v["right"], v["left"], "an alias reads as its anchor's value");
        assert_eq!(v["right"]["hd95"].as_f64(), Some(12.5));
        assert_eq!(v["name"].as_str(), Some("ok"));
        assert_eq!(v["nested"]["a"][1].as_i64(), Some(2));
    }

    fn yaml(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn statistics_and_results_keep_what_pyyaml_wrote() {
        let (_d, p) = yaml(PYYAML_DUMP);
        for kept in [
            parse_statistics(&p, Path::new("log")).unwrap(),
            parse_results(&p, Path::new("log")).unwrap(),
        ] {
            assert!(kept["error"].as_f64().unwrap().is_nan(), ".nan is kept");
            assert_eq!(kept["up"], MetricValue::float(f64::INFINITY));
            assert_eq!(kept["down"], MetricValue::float(f64::NEG_INFINITY));
            assert_eq!(kept["name"], MetricValue::Text("ok".into()));
            assert_eq!(kept["right"], kept["left"], "an alias is its anchor's value");
            let MetricValue::Map(left) = &kept["left"] else { panic!("a nested map") };
            assert_eq!(left["hd95"], MetricValue::float(12.5));
            let MetricValue::Map(nested) = &kept["nested"] else { panic!("a nested map") };
            assert_eq!(
                nested["a"],
                MetricValue::List(vec![MetricValue::Int(1), MetricValue::Int(2)])
            );
        }
    }

    #[test]
    fn a_report_is_summarized_by_status_in_either_layout() {
        // pandas' column layout, as MedPerf's RANO preparator writes it.
        let (_d, p) = yaml("status:\n  a: 1\n  b: 3\n  c: 3\n  d: 3\ncomment:\n  a: x\n");
        let s = report_summary(&p).unwrap();
        assert_eq!(s.subjects, 4);
        assert_eq!(s.to_string(), "4 subjects; status 1: 25%, status 3: 75%");
        // One mapping per subject.
        let (_d, p) = yaml("a: {status: done}\nb: {status: running}\n");
        assert_eq!(report_summary(&p).unwrap().statuses.get("done"), Some(&1));
        for text in ["", "just text\n", "a: 1\n"] {
            let (_d, p) = yaml(text);
            assert_eq!(report_summary(&p), None, "{text:?}");
        }
    }

    #[test]
    fn empty_or_non_mapping_statistics_are_refused_with_the_log_path() {
        for text in ["", "   \n", "{}", "- a\n- b\n", "just text\n"] {
            let (_d, p) = yaml(text);
            let err = parse_statistics(&p, Path::new("/logs/statistics.log")).unwrap_err();
            assert!(matches!(err, RunnerError::BadStatistics { .. }), "{text:?}: {err}");
            assert!(err.to_string().contains("/logs/statistics.log"), "{err}");
        }
    }

    #[test]
    fn results_must_be_a_non_empty_mapping_and_nan_is_accepted() {
        // What MedPerf's own test metrics container writes.
        let (_d, p) = yaml("auc: 0.9\nerror: .nan\nper_class:\n  malignant: 0.8\n");
        let r = parse_results(&p, Path::new("log")).unwrap();
        assert!(r["error"].as_f64().unwrap().is_nan());
        for text in ["", "{}", "- 1\n", "just text\n", "null\n"] {
            let (_d, p) = yaml(text);
            assert!(
                matches!(parse_results(&p, Path::new("log")), Err(RunnerError::BadResults { .. })),
                "{text:?}"
            );
        }
    }

    fn prepared(root: &Path) {
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(root.join("labels")).unwrap();
        std::fs::write(root.join("data/features.csv"), "case_id,x\n1,2\n").unwrap();
        std::fs::write(root.join("labels/labels.csv"), "case_id,label\n1,0\n").unwrap();
        std::fs::write(root.join("statistics.yaml"), "cases: 1\n").unwrap();
        let info = DatasetInfo {
            prepared_hash: dataset_hash(root).unwrap(),
            preparator_digest: "sha256:00".into(),
            statistics: [("error".to_string(), MetricValue::float(f64::NAN))].into(),
        };
        write_info(root, &info).unwrap();
    }

    #[test]
    fn check_finds_a_changed_prepared_file() {
        let dir = tempfile::tempdir().unwrap();
        prepared(dir.path());
        let hash = open_dataset(dir.path()).unwrap().prepared_hash;
        check_dataset(dir.path(), &hash).unwrap();
        std::fs::write(dir.path().join("labels/labels.csv"), "case_id,label\n1,1\n").unwrap();
        assert!(matches!(check_dataset(dir.path(), &hash), Err(RunnerError::HashMismatch { .. })));
        let op = set_operational(dir.path(), RecordId::from_bytes([1; 32])).unwrap();
        assert_ne!(op.prepared_hash, hash);
        check_dataset(dir.path(), &op.prepared_hash).unwrap();
    }

    #[test]
    fn an_exported_dataset_imports_elsewhere_with_the_same_hash() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        prepared(a.path());
        let tarball = a.path().join("export.tar");
        let hash = export_dataset(a.path(), &tarball).unwrap();
        let imported = import_dataset(&tarball, &b.path().join("ds"), Some(&hash)).unwrap();
        assert_eq!(imported.prepared_hash, hash);
        let other = Hash32::from_bytes([9; 32]);
        let err = import_dataset(&tarball, &b.path().join("ds2"), Some(&other)).unwrap_err();
        assert!(matches!(err, RunnerError::HashMismatch { .. }), "{err}");
    }

    #[test]
    fn a_tarball_entry_that_leaves_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = dir.path().join("evil.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_link_name("/etc/passwd").unwrap();
        h.set_cksum();
        tar.append_data(&mut h, "data/link", &b"x"[..]).unwrap();
        tar.finish().unwrap();
        drop(tar);
        let err = unpack_plain(&tarball, &dir.path().join("out"), 1 << 20).unwrap_err().to_string();
        assert!(err.contains("link"), "{err}");
    }
}
