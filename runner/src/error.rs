//! Errors a user can act on. Every message names the problem and what to do, and,
//! when a container ran, the path of its log.

use std::path::PathBuf;

/// A manifest (MedPerf container config or legacy `mlcube.yaml`) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid YAML: {0}; fix the file and submit it again")]
    Yaml(String),
    #[error("manifest is {0} bytes, at most {max} are read; is this the right file?", max = crate::manifest::MANIFEST_BYTES_MAX)]
    TooLarge(u64),
    #[error(
        "manifest has neither `container_type`/`image` (MedPerf container config) nor `docker.image` (mlcube.yaml); add the image reference"
    )]
    NoImage,
    #[error("manifest has no tasks; add at least one under `tasks`")]
    NoTasks,
    #[error(
        "manifest has no task `{task}` (it has: {available}); this container cannot play that role"
    )]
    UnknownTask { task: String, available: String },
    #[error(
        "task `{task}`: volume `{param}` has no `mount_path`; give the absolute path where the container expects it"
    )]
    MissingMountPath { task: String, param: String },
    #[error(
        "task `{task}`: volume `{param}` has mount_path `{path}`, which is not an absolute container path without `..`"
    )]
    BadMountPath { task: String, param: String, path: String },
    #[error("task `{task}`: parameter `{param}` has type `{found}`; use `file` or `directory`")]
    BadType { task: String, param: String, found: String },
    #[error(
        "task `{task}`: run_args `{key}` is not allowed (allowed: command, entrypoint, environment, shm_size, gpus)"
    )]
    RunArg { task: String, key: String },
    #[error("task `{task}`: {reason}")]
    Task { task: String, reason: String },
    #[error("{place} has an unknown key `{key}`{}; the keys are {allowed}", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownKey { place: String, key: String, suggestion: Option<&'static str>, allowed: String },
    #[error("container_type `{found}` {}{}; use `DockerImage` with the image loaded in the site's engine", if *known { "is MedPerf's but not run by MedMesh yet" } else { "is not one MedPerf knows" }, suggestion.filter(|s| *s != found).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    ContainerType { found: String, known: bool, suggestion: Option<&'static str> },
    /// The manifest disagrees with MedPerf's container contract (a known input
    /// declared as an output, an unknown task or parameter, overlapping mounts).
    #[error(transparent)]
    Contract(#[from] protocol::contract::ContractError),
}

/// Everything the runner can report.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(
        "no Docker engine: {reason}; start the Docker daemon (or set DOCKER_HOST) and try again"
    )]
    NoEngine { reason: String },
    // The source's text is not repeated here: `{:#}` prints it after a colon.
    #[error("the Docker engine failed while {during}")]
    Engine {
        during: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error(
        "image `{reference}` is not in the local Docker engine; load it from its `docker save` tarball (no registry is used) and try again"
    )]
    ImageMissing { reference: String },
    #[error(
        "image `{reference}` is {actual}, but the container record pins {expected}; refusing to run it: load the exact image the record names"
    )]
    DigestMismatch { reference: String, expected: String, actual: String },
    // Transparent: every ManifestError names the manifest, and a prefix with `{0}`
    // would print the message twice under `{:#}` (once here, once as the source).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("task `{task}` needs `{param}`, but no path was given for it")]
    MissingParam { task: String, param: String },
    #[error("task `{task}`: input `{param}` at {path} does not exist; check the path")]
    MissingInput { task: String, param: String, path: PathBuf },
    #[error("task `{task}` of `{image}` exited with code {code}; see the log at {log}")]
    NonZeroExit { task: String, image: String, code: i64, log: PathBuf },
    #[error(
        "task `{task}` of `{image}` ran past its {timeout_ms} ms timeout and was killed; raise the `{task}` timeout if the data is large, or see the log at {log}"
    )]
    Timeout { task: String, image: String, timeout_ms: u64, log: PathBuf },
    #[error(
        "task `{task}` of `{image}` was killed for using more than its {memory_bytes} bytes of memory; raise the memory limit, or see the log at {log}"
    )]
    OutOfMemory { task: String, image: String, memory_bytes: u64, log: PathBuf },
    #[error(
        "task `{task}` finished but did not write its output `{param}` at {path}; the container does not follow the contract, see the log at {log}"
    )]
    MissingOutput { task: String, param: String, path: PathBuf, log: PathBuf },
    #[error(
        "statistics at {path} are {reason}; the preparator's `statistics` task must write a non-empty YAML mapping, see the log at {log}"
    )]
    BadStatistics { path: PathBuf, reason: String, log: PathBuf },
    #[error(
        "results at {path} are {reason}; the metrics container must write a non-empty YAML mapping of metric to number, see the log at {log}"
    )]
    BadResults { path: PathBuf, reason: String, log: PathBuf },
    #[error(
        "prepared data at {path} hashes to {actual}, not the registered {expected}: it changed since it was prepared; prepare it again or restore it"
    )]
    HashMismatch { path: PathBuf, expected: String, actual: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("i/o error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the Docker engine refused {during}: {reason}; check that the tarball is a `docker save` archive or the build context is valid"
    )]
    ImageRejected { during: String, reason: String },
    #[error(
        "building the example binaries failed: {0}; run the cargo command in examples/README.md to see why"
    )]
    Build(String),
}

/// An error and its sources, as `anyhow`'s `{:#}` prints them: "what: why: why".
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl RunnerError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RunnerError {
        let path = path.into();
        move |source| RunnerError::Io { path, source }
    }

    pub(crate) fn engine(
        during: impl Into<String>,
    ) -> impl FnOnce(bollard::errors::Error) -> RunnerError {
        let during = during.into();
        move |source| RunnerError::Engine { during, source }
    }

    /// The container log this error points at, if a container ran.
    pub fn log_path(&self) -> Option<&std::path::Path> {
        match self {
            RunnerError::NonZeroExit { log, .. }
            | RunnerError::Timeout { log, .. }
            | RunnerError::OutOfMemory { log, .. }
            | RunnerError::MissingOutput { log, .. }
            | RunnerError::BadStatistics { log, .. }
            | RunnerError::BadResults { log, .. } => Some(log),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_names_its_path_and_says_its_cause_once() {
        let e = RunnerError::Io {
            path: "/data/hospital_a/paths.yaml".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let text = describe(&e);
        assert!(text.contains("/data/hospital_a/paths.yaml"), "{text}");
        let cause = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
        assert_eq!(text.matches(&cause).count(), 1, "{text}");
    }

    #[test]
    fn a_manifest_error_is_said_once() {
        let e = RunnerError::from(ManifestError::NoTasks);
        let text = describe(&e);
        assert_eq!(text.matches("manifest has no tasks").count(), 1, "{text}");
    }
}
