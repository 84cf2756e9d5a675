//! The Docker engine, through bollard: connect, check and move images, run one task
//! in a sandbox.
//!
//! Every task runs with: the image pinned by digest (the container is created from
//! the image id, so a re-tag between check and run changes nothing), inputs
//! bind-mounted read-only and only the outputs MedPerf's contract names for the task
//! kind read-write (the manifest has no say), a private `/tmp`, no network, a
//! read-only root filesystem, all capabilities dropped, no-new-privileges, the
//! caller's uid:gid, memory with no swap, CPU and pids limits, and a timeout. The log
//! is streamed to a file as the task runs; the container is removed whatever happens;
//! at most [`Engine::concurrent_runs`] tasks run at once.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, DeviceRequest, HostConfig, Mount, MountType, ResourcesUlimits,
};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ImportImageOptions, KillContainerOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt as _;
use protocol::contract::{ContractError, Role, TaskKind, check_manifest, nearest};
use protocol::record::{ExecutionLimits, ImageRef, ManifestFormat, ParamKind};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;

use crate::error::{ManifestError, RunnerError};
use crate::manifest::ContainerSpec;
use crate::site::{EngineKind, Gpus, Host};

/// Default memory limit of a task (no swap on top).
pub const TASK_MEMORY_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// Default CPU limit of a task, in billionths of a core.
pub const TASK_NANO_CPUS_DEFAULT: u64 = 1_000_000_000;
/// Default process limit of a task.
pub const TASK_PIDS_DEFAULT: u64 = 256;
/// Shared memory of a task without a site policy: Docker's own default. A site's
/// policy (`crate::site`) gives more.
pub const TASK_SHM_BYTES_MIN: u64 = 64 * 1024 * 1024;
/// Open files a task may hold, and processes its uid may have (soft and hard). Set
/// explicitly: Podman otherwise asks for 1,048,576 files and 4,194,304 processes,
/// which an engine whose own hard limits are lower (nested, rootless) cannot grant,
/// and every container fails to start. The cgroup's pids limit stays the real bound.
pub const TASK_OPEN_FILES_MAX: i64 = 16_384;
pub const TASK_PROCESSES_MAX: i64 = 16_384;
/// The exit status of a process killed by SIGKILL (128 + 9).
const SIGKILL_EXIT: i64 = 137;
/// Default timeouts, per task kind.
pub const PREPARE_TIMEOUT_MS_DEFAULT: u64 = 60 * 60 * 1000;
pub const SANITY_CHECK_TIMEOUT_MS_DEFAULT: u64 = 10 * 60 * 1000;
pub const STATISTICS_TIMEOUT_MS_DEFAULT: u64 = 10 * 60 * 1000;
pub const INFER_TIMEOUT_MS_DEFAULT: u64 = 60 * 60 * 1000;
pub const EVALUATE_TIMEOUT_MS_DEFAULT: u64 = 10 * 60 * 1000;
/// Tasks of other names.
pub const OTHER_TIMEOUT_MS_DEFAULT: u64 = 10 * 60 * 1000;
/// Container tasks running at once, per engine handle, by default.
pub const CONCURRENT_RUNS_DEFAULT: usize = 2;
/// A task's log file is cut at this size (the rest is dropped, and the cut noted).
pub const TASK_LOG_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// How long to wait for the log stream to drain after a container stops.
pub const LOG_DRAIN_TIMEOUT_MS: u64 = 5_000;
/// Timeout on each Docker API call that is not a task's own run.
pub const ENGINE_CALL_TIMEOUT_S: u64 = 120;
/// Longest an image load, save or build may take.
pub const IMAGE_TRANSFER_TIMEOUT_S: u64 = 30 * 60;
/// Largest image tarball loaded or saved.
pub const IMAGE_TARBALL_BYTES_MAX: u64 = 32 * 1024 * 1024 * 1024;
/// Label on every container the runner starts, to find leftovers after a crash.
pub const RUNNER_LABEL: &str = "medmesh.runner";
/// Read size when streaming an image tarball to the engine.
const TARBALL_CHUNK_BYTES: usize = 1024 * 1024;

/// Resource limits and timeouts for container tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLimits {
    pub memory_bytes: u64,
    pub nano_cpus: u64,
    pub pids: u64,
    /// Size of the task's `/dev/shm`.
    pub shm_bytes: u64,
    /// GPUs, through the engine's device requests.
    pub gpus: Gpus,
    pub prepare_timeout_ms: u64,
    pub sanity_check_timeout_ms: u64,
    pub statistics_timeout_ms: u64,
    pub infer_timeout_ms: u64,
    pub evaluate_timeout_ms: u64,
    pub other_timeout_ms: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            memory_bytes: TASK_MEMORY_BYTES_DEFAULT,
            nano_cpus: TASK_NANO_CPUS_DEFAULT,
            pids: TASK_PIDS_DEFAULT,
            shm_bytes: TASK_SHM_BYTES_MIN,
            gpus: Gpus::None,
            prepare_timeout_ms: PREPARE_TIMEOUT_MS_DEFAULT,
            sanity_check_timeout_ms: SANITY_CHECK_TIMEOUT_MS_DEFAULT,
            statistics_timeout_ms: STATISTICS_TIMEOUT_MS_DEFAULT,
            infer_timeout_ms: INFER_TIMEOUT_MS_DEFAULT,
            evaluate_timeout_ms: EVALUATE_TIMEOUT_MS_DEFAULT,
            other_timeout_ms: OTHER_TIMEOUT_MS_DEFAULT,
        }
    }
}

impl RunLimits {
    /// The timeout of the task called `task`.
    pub fn timeout_ms(&self, task: &str) -> u64 {
        match task {
            "prepare" => self.prepare_timeout_ms,
            "sanity_check" => self.sanity_check_timeout_ms,
            "statistics" => self.statistics_timeout_ms,
            "infer" => self.infer_timeout_ms,
            "evaluate" => self.evaluate_timeout_ms,
            _ => self.other_timeout_ms,
        }
    }

    /// The limits as an execution receipt records them.
    pub fn receipt(&self) -> ExecutionLimits {
        ExecutionLimits {
            memory_bytes: self.memory_bytes,
            nano_cpus: self.nano_cpus,
            pids: self.pids,
        }
    }
}

/// A container ready to run: its parsed manifest, the image pinned by digest, and
/// the files that travel with it.
#[derive(Clone, Debug)]
pub struct Runnable {
    pub spec: ContainerSpec,
    pub image: ImageRef,
    /// Mounted as the `parameters_file` input when a task declares one.
    pub parameters_file: Option<PathBuf>,
    /// Mounted as the `additional_files` input when a task declares one.
    pub additional_files: Option<PathBuf>,
}

/// One task to run.
#[derive(Clone, Debug)]
pub struct TaskRun<'a> {
    pub container: &'a Runnable,
    pub task: &'a str,
    /// Host path of each parameter, by name. `parameters_file` and
    /// `additional_files` come from the [`Runnable`] when not given here.
    pub mounts: BTreeMap<String, PathBuf>,
    /// Where the container's stdout and stderr go.
    pub log_path: PathBuf,
    /// A host folder for the container's `/tmp`.
    pub scratch_dir: PathBuf,
}

/// What a finished task reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskReport {
    pub duration_ms: u64,
    pub log_path: PathBuf,
    pub image_digest: String,
}

/// A handle on the local Docker engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    slots: Arc<Semaphore>,
    concurrent_runs: usize,
}

fn timeout_call() -> Duration {
    Duration::from_secs(ENGINE_CALL_TIMEOUT_S)
}

/// Run one engine call under [`ENGINE_CALL_TIMEOUT_S`].
async fn call<T>(
    during: &str,
    f: impl std::future::Future<Output = Result<T, BollardError>>,
) -> Result<T, RunnerError> {
    match tokio::time::timeout(timeout_call(), f).await {
        Ok(r) => r.map_err(RunnerError::engine(during)),
        Err(_) => Err(RunnerError::Engine {
            during: during.into(),
            source: BollardError::RequestTimeoutError,
        }),
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code: 404, .. })
}

static CONTAINER_SEQ: AtomicU64 = AtomicU64::new(0);

fn container_name(task: &str) -> String {
    let seq = CONTAINER_SEQ.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tag = blake3::hash(format!("{}:{now}:{seq}", std::process::id()).as_bytes());
    let safe: String =
        task.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(32).collect();
    format!("medmesh-{safe}-{}", &tag.to_hex()[..12])
}

impl Engine {
    /// Connect to the local engine (DOCKER_HOST or the default socket) and agree on an
    /// API version. At most `concurrent_runs` tasks run at once through this handle.
    pub async fn connect(concurrent_runs: usize) -> Result<Self, RunnerError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| RunnerError::NoEngine { reason: e.to_string() })?;
        Self::negotiated(docker, concurrent_runs).await
    }

    /// Connect to the engine listening on the unix socket `path` (a second,
    /// separate engine on the same machine, as a site of its own).
    pub async fn connect_socket(path: &str, concurrent_runs: usize) -> Result<Self, RunnerError> {
        let docker =
            Docker::connect_with_socket(path, ENGINE_CALL_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
                .map_err(|e| RunnerError::NoEngine { reason: format!("{path}: {e}") })?;
        Self::negotiated(docker, concurrent_runs).await
    }

    async fn negotiated(docker: Docker, concurrent_runs: usize) -> Result<Self, RunnerError> {
        let docker = match tokio::time::timeout(timeout_call(), docker.negotiate_version()).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => return Err(RunnerError::NoEngine { reason: e.to_string() }),
            Err(_) => {
                return Err(RunnerError::NoEngine {
                    reason: "the engine did not answer in time".into(),
                });
            }
        };
        let concurrent_runs = concurrent_runs.max(1);
        Ok(Self { docker, slots: Arc::new(Semaphore::new(concurrent_runs)), concurrent_runs })
    }

    /// What the engine's machine has (CPUs and memory), for a site's default limits.
    pub async fn host(&self) -> Result<Host, RunnerError> {
        let info = call("reading the engine's information", self.docker.info()).await?;
        let cpus = info.ncpu.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
        let memory = info.mem_total.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
        Ok(Host {
            cpus: cpus.unwrap_or_else(|| {
                std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1)
            }),
            memory_bytes: memory.unwrap_or(TASK_MEMORY_BYTES_DEFAULT),
        })
    }

    /// Which engine this is: Podman's Docker-compatible API names itself among the
    /// version's components.
    pub async fn kind(&self) -> Result<EngineKind, RunnerError> {
        let v = call("reading the engine's version", self.docker.version()).await?;
        let podman = v
            .components
            .unwrap_or_default()
            .iter()
            .any(|c| c.name.to_ascii_lowercase().contains("podman"));
        Ok(if podman { EngineKind::Podman } else { EngineKind::Docker })
    }

    /// How many tasks may run at once.
    pub fn concurrent_runs(&self) -> usize {
        self.concurrent_runs
    }

    /// The bollard client, for what this crate does not wrap.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The image id (`sha256:...`, the digest of its config) of a local image.
    pub async fn image_digest(&self, reference: &str) -> Result<String, RunnerError> {
        match tokio::time::timeout(timeout_call(), self.docker.inspect_image(reference)).await {
            Ok(Ok(info)) => {
                info.id.ok_or_else(|| RunnerError::ImageMissing { reference: reference.into() })
            }
            Ok(Err(e)) if is_not_found(&e) => {
                Err(RunnerError::ImageMissing { reference: reference.into() })
            }
            Ok(Err(e)) => Err(RunnerError::engine(format!("inspecting image {reference}"))(e)),
            Err(_) => Err(RunnerError::Engine {
                during: format!("inspecting image {reference}"),
                source: BollardError::RequestTimeoutError,
            }),
        }
    }

    /// Check that the local image `image.reference` is exactly `image.digest`.
    pub async fn verify_image(&self, image: &ImageRef) -> Result<(), RunnerError> {
        let actual = self.image_digest(&image.reference).await?;
        if actual != image.digest {
            return Err(RunnerError::DigestMismatch {
                reference: image.reference.clone(),
                expected: image.digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Load a `docker save` tarball (as a peer sends it) into the engine.
    pub async fn load_image(&self, tarball: &Path) -> Result<(), RunnerError> {
        let len = tokio::fs::metadata(tarball).await.map_err(RunnerError::io(tarball))?.len();
        if len > IMAGE_TARBALL_BYTES_MAX {
            return Err(RunnerError::Invalid {
                path: tarball.into(),
                reason: format!("{len} bytes; at most {IMAGE_TARBALL_BYTES_MAX}"),
            });
        }
        let file = tokio::fs::File::open(tarball).await.map_err(RunnerError::io(tarball))?;
        let chunks = futures_util::stream::unfold(file, |mut f| async move {
            use tokio::io::AsyncReadExt as _;
            let mut buf = vec![0u8; TARBALL_CHUNK_BYTES];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes_of(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let during = format!("loading image tarball {}", tarball.display());
        let progress = self.docker.import_image_stream(ImportImageOptions::default(), chunks, None);
        drain(&during, progress).await
    }

    /// Load a `docker save` tarball and check that it holds `image` (by reference and
    /// digest), as a container record pins it.
    pub async fn load_verified_image(
        &self,
        tarball: &Path,
        image: &ImageRef,
    ) -> Result<(), RunnerError> {
        self.load_image(tarball).await?;
        self.verify_image(image).await
    }

    /// Remove an image (by id or reference) and its tags from the engine.
    pub async fn remove_image(&self, image: &str) -> Result<(), RunnerError> {
        let opts =
            bollard::query_parameters::RemoveImageOptions { force: true, ..Default::default() };
        call(&format!("removing image {image}"), self.docker.remove_image(image, Some(opts), None))
            .await
            .map(|_| ())
    }

    /// Write `reference` as a `docker save` tarball, to send to a peer.
    pub async fn save_image(&self, reference: &str, out: &Path) -> Result<(), RunnerError> {
        let saved = match tokio::time::timeout(
            Duration::from_secs(IMAGE_TRANSFER_TIMEOUT_S),
            self.save_image_inner(reference, out),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(RunnerError::Engine {
                during: format!("saving image {reference}"),
                source: BollardError::RequestTimeoutError,
            }),
        };
        if saved.is_err() {
            let _ = tokio::fs::remove_file(out).await;
        }
        saved
    }

    async fn save_image_inner(&self, reference: &str, out: &Path) -> Result<(), RunnerError> {
        let mut file = tokio::fs::File::create(out).await.map_err(RunnerError::io(out))?;
        let mut stream = self.docker.export_image(reference);
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(RunnerError::engine(format!("saving image {reference}")))?;
            written += chunk.len() as u64;
            if written > IMAGE_TARBALL_BYTES_MAX {
                return Err(RunnerError::Invalid {
                    path: out.into(),
                    reason: format!("image is over {IMAGE_TARBALL_BYTES_MAX} bytes"),
                });
            }
            file.write_all(&chunk).await.map_err(RunnerError::io(out))?;
        }
        file.flush().await.map_err(RunnerError::io(out))?;
        Ok(())
    }

    /// Build an image `FROM scratch` holding one static binary as `/app`, its
    /// entrypoint, with no pull; returns the image digest.
    pub async fn build_scratch_image(
        &self,
        binary: &Path,
        tag: &str,
    ) -> Result<String, RunnerError> {
        self.build_scratch_image_of(&[("app", binary)], Some("/app"), tag).await
    }

    /// Build a `FROM scratch` image holding `files` (each `(name in /, host path)`,
    /// executable) with an optional entrypoint, tagged `tag`; returns its digest.
    pub async fn build_scratch_image_of(
        &self,
        files: &[(&str, &Path)],
        entrypoint: Option<&str>,
        tag: &str,
    ) -> Result<String, RunnerError> {
        let mut dockerfile = String::from("FROM scratch\n");
        for (name, _) in files {
            dockerfile.push_str(&format!("COPY {name} /{name}\n"));
        }
        if let Some(e) = entrypoint {
            dockerfile.push_str(&format!("ENTRYPOINT [\"{e}\"]\n"));
        }
        let mut ctx = tar::Builder::new(Vec::new());
        let mut append = |name: &str, data: &[u8], mode: u32, path: &Path| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(0);
            h.set_cksum();
            ctx.append_data(&mut h, name, data).map_err(RunnerError::io(path))
        };
        append("Dockerfile", dockerfile.as_bytes(), 0o644, Path::new("Dockerfile"))?;
        for (name, path) in files {
            let bin = tokio::fs::read(path).await.map_err(RunnerError::io(path))?;
            append(name, &bin, 0o755, path)?;
        }
        let ctx = ctx.into_inner().map_err(RunnerError::io(Path::new(tag)))?;
        let options = BuildImageOptions {
            t: Some(tag.into()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let stream =
            self.docker.build_image(options, None, Some(bollard::body_full(bytes_of(ctx))));
        drain(&format!("building image {tag}"), stream).await?;
        self.image_digest(tag).await
    }

    /// Build the image of the build context `dir` (its `Dockerfile`), tagged `tag`,
    /// without pulling; `from`, when given, replaces the image every `FROM` line
    /// names (to build on a local base when no registry is reachable). Returns the
    /// image id.
    pub async fn build_context(
        &self,
        dir: &Path,
        from: Option<&str>,
        tag: &str,
    ) -> Result<String, RunnerError> {
        let dockerfile = dir.join("Dockerfile");
        let mut text =
            tokio::fs::read_to_string(&dockerfile).await.map_err(RunnerError::io(&dockerfile))?;
        if let Some(base) = from {
            text = text
                .lines()
                .map(|l| {
                    if l.trim_start().to_ascii_uppercase().starts_with("FROM ") {
                        format!("FROM {base}")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            text.push('\n');
        }
        let root = dir.to_path_buf();
        let ctx = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, RunnerError> {
            let mut b = tar::Builder::new(Vec::new());
            b.follow_symlinks(true);
            for entry in std::fs::read_dir(&root).map_err(RunnerError::io(&root))? {
                let entry = entry.map_err(RunnerError::io(&root))?;
                let name = entry.file_name();
                if name == "Dockerfile" {
                    continue;
                }
                let path = entry.path();
                if path.is_dir() {
                    b.append_dir_all(&name, &path).map_err(RunnerError::io(&path))?;
                } else {
                    b.append_path_with_name(&path, &name).map_err(RunnerError::io(&path))?;
                }
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, "Dockerfile", text.as_bytes()).map_err(RunnerError::io(&root))?;
            b.into_inner().map_err(RunnerError::io(&root))
        })
        .await
        .map_err(|e| RunnerError::Build(format!("packing the build context failed: {e}")))??;
        let options = BuildImageOptions {
            t: Some(tag.into()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let stream =
            self.docker.build_image(options, None, Some(bollard::body_full(bytes_of(ctx))));
        drain(&format!("building image {tag}"), stream).await?;
        self.image_digest(tag).await
    }

    /// Run one task of a container in the sandbox and wait for it.
    pub async fn run_task(
        &self,
        run: &TaskRun<'_>,
        limits: &RunLimits,
    ) -> Result<TaskReport, RunnerError> {
        let c = run.container;
        let task = c.spec.task(run.task)?;
        let timeout_ms = limits.timeout_ms(run.task);
        let _slot =
            self.slots.acquire().await.map_err(|_| RunnerError::NoEngine {
                reason: "the engine handle was closed".into(),
            })?;
        self.verify_image(&c.image).await?;

        std::fs::create_dir_all(&run.scratch_dir).map_err(RunnerError::io(&run.scratch_dir))?;
        if let Some(parent) = run.log_path.parent() {
            std::fs::create_dir_all(parent).map_err(RunnerError::io(parent))?;
        }
        let owner =
            std::fs::metadata(&run.scratch_dir).map_err(RunnerError::io(&run.scratch_dir))?;
        let (mounts, args) = self.mounts(run)?;

        let ra = c.spec.run_args(run.task);
        let cmd = match c.spec.manifest.format {
            ManifestFormat::ContainerConfig => ra.command.clone(),
            ManifestFormat::Mlcube => {
                let mut v = ra.command.clone().unwrap_or_default();
                if ra.entrypoint.is_none() {
                    v.push(task.name.clone());
                }
                v.extend(args);
                Some(v)
            }
        };
        let body = ContainerCreateBody {
            image: Some(c.image.digest.clone()),
            entrypoint: ra.entrypoint.clone(),
            cmd,
            env: Some(environment(&ra.environment)),
            user: Some(format!("{}:{}", owner.uid(), owner.gid())),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                (RUNNER_LABEL.to_string(), "1".to_string()),
                ("medmesh.task".to_string(), run.task.to_string()),
                // Which run a container belongs to, for cleanup checks and debugging.
                ("medmesh.scratch".to_string(), run.scratch_dir.display().to_string()),
            ])),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                network_mode: Some("none".into()),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX)),
                memory_swap: Some(i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX)),
                nano_cpus: Some(i64::try_from(limits.nano_cpus).unwrap_or(i64::MAX)),
                pids_limit: Some(i64::try_from(limits.pids).unwrap_or(i64::MAX)),
                shm_size: Some(i64::try_from(limits.shm_bytes).unwrap_or(i64::MAX)),
                device_requests: device_requests(&limits.gpus),
                ulimits: Some(vec![
                    ResourcesUlimits {
                        name: Some("nofile".into()),
                        soft: Some(TASK_OPEN_FILES_MAX),
                        hard: Some(TASK_OPEN_FILES_MAX),
                    },
                    ResourcesUlimits {
                        name: Some("nproc".into()),
                        soft: Some(TASK_PROCESSES_MAX),
                        hard: Some(TASK_PROCESSES_MAX),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = container_name(run.task);
        let created = call(
            "creating the container",
            self.docker.create_container(
                Some(CreateContainerOptions { name: Some(name.clone()), ..Default::default() }),
                body,
            ),
        )
        .await?;
        let id = created.id;
        // Removes the container if this future is dropped before the end (cancelled).
        let mut guard = RemoveOnDrop { docker: self.docker.clone(), id: Some(id.clone()) };
        tracing::info!(container = %name, image = %c.image.reference, task = run.task, "task starting");
        let outcome = self.start_and_wait(&id, run, timeout_ms, limits).await;
        guard.id = None;
        let removed = call(
            "removing the container",
            self.docker.remove_container(
                &id,
                Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }),
            ),
        )
        .await;
        if let Err(e) = &removed {
            tracing::warn!(container = %name, error = %e, "container not removed");
        }
        let report = outcome?;
        removed?;
        tracing::info!(container = %name, task = run.task, duration_ms = report.duration_ms, "task finished");
        Ok(report)
    }

    /// Remove every container the runner started that is still there (after a crash
    /// or a kill). Returns how many were removed.
    pub async fn remove_leftovers(&self) -> Result<usize, RunnerError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{RUNNER_LABEL}=1")])]);
        let options = bollard::query_parameters::ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let found =
            call("listing leftover containers", self.docker.list_containers(Some(options))).await?;
        let mut removed = 0;
        for c in found {
            let Some(id) = c.id else { continue };
            call(
                "removing a leftover container",
                self.docker.remove_container(
                    &id,
                    Some(RemoveContainerOptions { force: true, v: true, ..Default::default() }),
                ),
            )
            .await?;
            removed += 1;
        }
        Ok(removed)
    }

    async fn start_and_wait(
        &self,
        id: &str,
        run: &TaskRun<'_>,
        timeout_ms: u64,
        limits: &RunLimits,
    ) -> Result<TaskReport, RunnerError> {
        let c = run.container;
        let started = Instant::now();
        call(
            "starting the container",
            self.docker.start_container(id, None::<StartContainerOptions>),
        )
        .await?;
        let logs =
            tokio::spawn(write_log(self.docker.clone(), id.to_string(), run.log_path.clone()));

        let mut wait = self.docker.wait_container(id, None::<WaitContainerOptions>);
        let waited = tokio::time::timeout(Duration::from_millis(timeout_ms), wait.next()).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let timed_out = waited.is_err();
        if timed_out {
            let _ = call(
                "killing the container",
                self.docker
                    .kill_container(id, Some(KillContainerOptions { signal: "SIGKILL".into() })),
            )
            .await;
            let mut wait = self.docker.wait_container(id, None::<WaitContainerOptions>);
            let _ = tokio::time::timeout(timeout_call(), wait.next()).await;
        }
        match tokio::time::timeout(Duration::from_millis(LOG_DRAIN_TIMEOUT_MS), logs).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(log = %run.log_path.display(), error = %e, "container log incomplete")
            }
            _ => {
                tracing::warn!(log = %run.log_path.display(), "container log did not drain in time")
            }
        }
        let image = c.image.reference.clone();
        let log = run.log_path.clone();
        if timed_out {
            return Err(RunnerError::Timeout { task: run.task.into(), image, timeout_ms, log });
        }
        let code = match waited {
            Ok(Some(Ok(r))) => r.status_code,
            Ok(Some(Err(BollardError::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(e))) => return Err(RunnerError::engine("waiting for the container")(e)),
            Ok(None) | Err(_) => {
                return Err(RunnerError::Engine {
                    during: "waiting for the container".into(),
                    source: BollardError::RequestTimeoutError,
                });
            }
        };
        let state =
            call("inspecting the container", self.docker.inspect_container(id, None)).await?.state;
        // A child killed for memory while the main process still exits 0 is success.
        let mut oom = state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false);
        // Podman on cgroup v1 does not report an OOM kill: a SIGKILL (137) that the
        // runner did not send (it sends one only past the timeout) is the kernel's.
        if !oom && code == SIGKILL_EXIT && self.kind().await? == EngineKind::Podman {
            oom = true;
        }
        if oom && code != 0 {
            return Err(RunnerError::OutOfMemory {
                task: run.task.into(),
                image,
                memory_bytes: limits.memory_bytes,
                log,
            });
        }
        if code != 0 {
            return Err(RunnerError::NonZeroExit { task: run.task.into(), image, code, log });
        }
        Ok(TaskReport { duration_ms, log_path: log, image_digest: c.image.digest.clone() })
    }

    /// The bind mounts of a task and, for MLCube manifests, its `--name=path` arguments.
    ///
    /// Whether a mount is writable is MedPerf's contract's decision, never the
    /// manifest's: only a parameter the contract names as an output of this task
    /// kind is mounted read-write; data, labels, parameters, additional files and
    /// predictions are read-only whatever the manifest declares (and a manifest that
    /// declares one of them as an output is refused before anything runs).
    fn mounts(&self, run: &TaskRun<'_>) -> Result<(Vec<Mount>, Vec<String>), RunnerError> {
        let c = run.container;
        let task = c.spec.task(run.task)?;
        check_manifest(&c.spec.manifest).map_err(ManifestError::from)?;
        let kind = TaskKind::from_name(run.task).ok_or_else(|| {
            ManifestError::from(ContractError::UnknownTask {
                task: run.task.into(),
                suggestion: nearest(run.task, TaskKind::ALL.map(TaskKind::name)),
            })
        })?;
        let mut mounts = vec![bind(&run.scratch_dir, "/tmp", false)];
        let mut args = Vec::new();
        let mut index = 0usize;
        for (param, declared_output) in
            task.inputs.iter().map(|p| (p, false)).chain(task.outputs.iter().map(|p| (p, true)))
        {
            let is_output = declared_output && kind.role(&param.name) == Some(Role::Output);
            let given =
                run.mounts.get(&param.name).cloned().or_else(|| match param.name.as_str() {
                    "parameters_file" => c.parameters_file.clone(),
                    "additional_files" => c.additional_files.clone(),
                    _ => None,
                });
            // As MedPerf does, a model that declares additional files gets the folder
            // even when it has none: an empty one, read-only like every input.
            let given = match given {
                None if param.name == "additional_files" => {
                    let empty = run.scratch_dir.join(EMPTY_DIR);
                    std::fs::create_dir_all(&empty).map_err(RunnerError::io(&empty))?;
                    Some(empty)
                }
                given => given,
            };
            let Some(host) = given else {
                if param.optional {
                    continue;
                }
                return Err(RunnerError::MissingParam {
                    task: run.task.into(),
                    param: param.name.clone(),
                });
            };
            if is_output {
                prepare_output(&host, param.kind)?;
            } else if !host.exists() {
                return Err(RunnerError::MissingInput {
                    task: run.task.into(),
                    param: param.name.clone(),
                    path: host,
                });
            }
            let host = std::fs::canonicalize(&host).map_err(RunnerError::io(&host))?;
            let target = match (&param.mount_path, c.spec.manifest.format) {
                (Some(m), ManifestFormat::ContainerConfig) => m.clone(),
                _ => {
                    let base = format!("/mlcube_io{index}");
                    index += 1;
                    let target = match param.kind {
                        ParamKind::Directory => base,
                        ParamKind::File => {
                            let file = host
                                .file_name()
                                .map(|f| f.to_string_lossy().into_owned())
                                .unwrap_or_else(|| "file".into());
                            format!("{base}/{file}")
                        }
                    };
                    args.push(format!("--{}={target}", param.name));
                    target
                }
            };
            mounts.push(bind(&host, &target, !is_output));
        }
        Ok((mounts, args))
    }
}

/// GPUs as the engine's device requests (what `docker run --gpus` sends).
pub fn device_requests(gpus: &Gpus) -> Option<Vec<DeviceRequest>> {
    let request = |count: Option<i64>, device_ids: Option<Vec<String>>| DeviceRequest {
        driver: Some(String::new()),
        count,
        device_ids,
        capabilities: Some(vec![vec!["gpu".to_string()]]),
        options: Some(HashMap::new()),
    };
    match gpus {
        Gpus::None => None,
        Gpus::All => Some(vec![request(Some(-1), None)]),
        Gpus::Count(n) => Some(vec![request(Some(i64::from(*n)), None)]),
        Gpus::Devices(ids) => Some(vec![request(None, Some(ids.clone()))]),
    }
}

/// The folder, inside a task's scratch folder, mounted as `additional_files` for a
/// model that has none.
const EMPTY_DIR: &str = ".medmesh-no-additional-files";

/// A task's environment: `HOME` is the writable scratch folder (the root filesystem
/// is read-only and the task runs as the site's uid, which has no home in the image;
/// Python libraries write caches there), unless the manifest sets it; then the
/// manifest's own variables.
fn environment(manifest: &BTreeMap<String, String>) -> Vec<String> {
    let mut env = Vec::with_capacity(manifest.len() + 1);
    if !manifest.contains_key("HOME") {
        env.push("HOME=/tmp".to_string());
    }
    env.extend(manifest.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// Consume an engine progress stream (image load or build) under
/// [`IMAGE_TRANSFER_TIMEOUT_S`], failing on the first error it reports.
async fn drain(
    during: &str,
    stream: impl futures_util::Stream<Item = Result<bollard::models::BuildInfo, BollardError>>,
) -> Result<(), RunnerError> {
    let consume = async {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let info = item.map_err(RunnerError::engine(during))?;
            if let Some(detail) = info.error_detail {
                return Err(RunnerError::ImageRejected {
                    during: during.into(),
                    reason: detail.message.unwrap_or_default(),
                });
            }
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(IMAGE_TRANSFER_TIMEOUT_S), consume).await {
        Ok(r) => r,
        Err(_) => Err(RunnerError::Engine {
            during: during.into(),
            source: BollardError::RequestTimeoutError,
        }),
    }
}

/// Force-removes a container when dropped while still armed (`id` set).
struct RemoveOnDrop {
    docker: Docker,
    id: Option<String>,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(container = %id, "task cancelled outside a runtime; container left for remove_leftovers");
            return;
        };
        let docker = self.docker.clone();
        handle.spawn(async move {
            let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
            if let Err(e) = docker.remove_container(&id, Some(options)).await {
                tracing::warn!(container = %id, error = %e, "cancelled task's container not removed");
            }
        });
    }
}

fn bytes_of(v: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(v)
}

/// A bind mount of `host` at `target` in a container.
pub fn bind(host: &Path, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.into()),
        source: Some(host.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// Outputs exist before the container starts: a directory, or an empty file (a stale
/// one from an earlier run is emptied, so that it cannot pass for new output).
fn prepare_output(host: &Path, kind: ParamKind) -> Result<(), RunnerError> {
    match kind {
        ParamKind::Directory => std::fs::create_dir_all(host).map_err(RunnerError::io(host)),
        ParamKind::File => {
            if let Some(parent) = host.parent() {
                std::fs::create_dir_all(parent).map_err(RunnerError::io(parent))?;
            }
            // Created when missing, never truncated: MedPerf's report.yaml carries
            // a resumed preparation's progress. Callers remove stale outputs.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(host)
                .map(|_| ())
                .map_err(RunnerError::io(host))
        }
    }
}

/// Follow a container's stdout and stderr into `path`, up to [`TASK_LOG_BYTES_MAX`].
async fn write_log(docker: Docker, id: String, path: PathBuf) -> Result<(), RunnerError> {
    let mut file = tokio::fs::File::create(&path).await.map_err(RunnerError::io(&path))?;
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        tail: "all".into(),
        ..Default::default()
    };
    let mut stream = docker.logs(&id, Some(options));
    let mut written = 0u64;
    let mut cut = false;
    while let Some(item) = stream.next().await {
        let Ok(out) = item else { break };
        let bytes = out.into_bytes();
        if written + bytes.len() as u64 > TASK_LOG_BYTES_MAX {
            if !cut {
                file.write_all(b"\n[medmesh: log cut at TASK_LOG_BYTES_MAX]\n")
                    .await
                    .map_err(RunnerError::io(&path))?;
                cut = true;
            }
            continue;
        }
        written += bytes.len() as u64;
        file.write_all(&bytes).await.map_err(RunnerError::io(&path))?;
    }
    file.flush().await.map_err(RunnerError::io(&path))
}
