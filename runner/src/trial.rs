//! One task of a container, run locally for its author (`medmesh container
//! run-test`): the same sandbox and limits a site would use, and what a site would
//! see afterwards: the exit, the log, every output, and whether the outputs meet
//! the contract (statistics and results must be non-empty YAML mappings).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protocol::metric::MetricValue;
use protocol::record::ParamKind;
use serde::Serialize;

use crate::dataset::{parse_results, parse_statistics};
use crate::engine::{Engine, RunLimits, Runnable, TaskRun};
use crate::error::{RunnerError, describe};

/// Most bytes of the log's end shown.
pub const LOG_TAIL_BYTES_MAX: u64 = 4096;
/// Most files listed per output folder.
pub const OUTPUT_ENTRIES_MAX: usize = 100;

/// How the task ended, as a site would see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    /// Exit 0 and every output meets the contract.
    Ok,
    /// The container exited non-zero.
    Failed,
    /// It ran past the task's timeout and was killed.
    Timeout,
    /// It used more than its memory and was killed.
    OutOfMemory,
    /// Exit 0, but an output is missing or does not meet the contract.
    BadOutput,
}

/// One output of the task, as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialOutput {
    pub name: String,
    pub path: PathBuf,
    pub kind: &'static str,
    /// Files under a folder output (relative path, bytes), at most
    /// [`OUTPUT_ENTRIES_MAX`]; the file itself for a file output.
    pub entries: Vec<(String, u64)>,
    /// A file output read as YAML, when it is a mapping (results, statistics).
    pub yaml: Option<BTreeMap<String, MetricValue>>,
}

/// What `run-test` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialOutcome {
    pub task: String,
    pub image: String,
    pub image_digest: String,
    pub status: TrialStatus,
    /// The container's exit code, when it exited by itself.
    pub exit_code: Option<i64>,
    /// Why the status is not `ok`.
    pub message: Option<String>,
    pub log_path: PathBuf,
    /// The end of the log.
    pub log_tail: String,
    pub outputs: Vec<TrialOutput>,
}

/// Run `task` of `container` with `given` host paths by parameter name. Outputs
/// not given go under `out_dir` (a folder output as `out_dir/<name>`, a file output
/// by its mount path's file name); the log goes to `out_dir/logs/<task>.log`.
/// Engine and contract failures of the container come back as an outcome; errors
/// of the caller (an unknown task, a missing input, no engine) as `Err`.
pub async fn run_test(
    engine: &Engine,
    container: &Runnable,
    task: &str,
    given: &BTreeMap<String, PathBuf>,
    out_dir: &Path,
    limits: &RunLimits,
) -> Result<TrialOutcome, RunnerError> {
    let t = container.spec.task(task)?;
    let known: Vec<&str> =
        t.inputs.iter().chain(&t.outputs).map(|p| p.name.as_str()).collect::<Vec<_>>();
    for name in given.keys() {
        if !known.contains(&name.as_str()) {
            return Err(RunnerError::Invalid {
                path: out_dir.into(),
                reason: format!(
                    "task `{task}` has no parameter `{name}`{}; its parameters are {}",
                    protocol::contract::nearest(name, known.iter().copied())
                        .map(|n| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_default(),
                    known.join(", ")
                ),
            });
        }
    }
    let mut mounts = given.clone();
    for p in &t.outputs {
        mounts.entry(p.name.clone()).or_insert_with(|| match p.kind {
            ParamKind::Directory => out_dir.join(&p.name),
            ParamKind::File => {
                let file = p
                    .mount_path
                    .as_deref()
                    .or(p.default.as_deref())
                    .and_then(|m| Path::new(m).file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| format!("{}.yaml", p.name));
                out_dir.join(file)
            }
        });
    }
    // A file output is never truncated by the engine: start from a clean one.
    for p in t.outputs.iter().filter(|p| p.kind == ParamKind::File) {
        let path = &mounts[&p.name];
        if path.is_file() {
            std::fs::remove_file(path).map_err(RunnerError::io(path))?;
        }
    }
    let log_path = out_dir.join("logs").join(format!("{task}.log"));
    let scratch = out_dir.join("tmp").join(task);
    let run = TaskRun {
        container,
        task,
        mounts: mounts.clone(),
        log_path: log_path.clone(),
        scratch_dir: scratch.clone(),
    };
    let result = engine.run_task(&run, limits).await;
    let _ = std::fs::remove_dir_all(&scratch);
    let (mut status, exit_code, mut message) = match result {
        Ok(_) => (TrialStatus::Ok, Some(0), None),
        Err(e @ RunnerError::NonZeroExit { code, .. }) => {
            (TrialStatus::Failed, Some(code), Some(describe(&e)))
        }
        Err(e @ RunnerError::Timeout { .. }) => (TrialStatus::Timeout, None, Some(describe(&e))),
        Err(e @ RunnerError::OutOfMemory { .. }) => {
            (TrialStatus::OutOfMemory, None, Some(describe(&e)))
        }
        Err(e @ RunnerError::MissingOutput { .. }) => {
            (TrialStatus::BadOutput, Some(0), Some(describe(&e)))
        }
        Err(e) => return Err(e),
    };
    let mut outputs = Vec::new();
    for p in &t.outputs {
        let path = mounts[&p.name].clone();
        let (kind, entries, yaml) = match p.kind {
            ParamKind::Directory => ("directory", list_files(&path), None),
            ParamKind::File => {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let name = path.file_name().map(|f| f.to_string_lossy().into_owned());
                let yaml = parse_statistics(&path, &log_path).ok();
                ("file", vec![(name.unwrap_or_default(), size)], yaml)
            }
        };
        outputs.push(TrialOutput { name: p.name.clone(), path, kind, entries, yaml });
    }
    // What a site checks after the task: statistics and results are non-empty mappings.
    if status == TrialStatus::Ok {
        let check = match task {
            "statistics" => mounts
                .get("output_path")
                .map(|p| parse_statistics(p, &log_path).map(|_| ()))
                .transpose(),
            "evaluate" => mounts
                .get("output_path")
                .map(|p| parse_results(p, &log_path).map(|_| ()))
                .transpose(),
            _ => Ok(None),
        };
        if let Err(e) = check {
            status = TrialStatus::BadOutput;
            message = Some(describe(&e));
        }
    }
    Ok(TrialOutcome {
        task: task.into(),
        image: container.image.reference.clone(),
        image_digest: container.image.digest.clone(),
        status,
        exit_code,
        message,
        log_tail: log_tail(&log_path),
        log_path,
        outputs,
    })
}

fn list_files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) if out.len() < OUTPUT_ENTRIES_MAX => {
                    let rel = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
                    out.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}

fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES_MAX)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
