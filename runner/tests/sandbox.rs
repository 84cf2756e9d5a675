//! The sandbox every container task runs in, checked on the real Docker engine with
//! the `probe` example image, which tries what a hostile container would.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use protocol::contract::{Role, TaskKind};
use protocol::record::ImageRef;
use runner::{RunnerError, TaskRun};

/// A manifest for the probe: `task` (a task of MedPerf's contract) runs `behaviour`,
/// with each input and output mounted at the path given.
fn probe_yaml(
    task: &str,
    behaviour: &str,
    inputs: &[(&str, &str)],
    outputs: &[(&str, &str)],
) -> String {
    let volumes = |key: &str, list: &[(&str, &str)]| {
        if list.is_empty() {
            return String::new();
        }
        let mut v = format!("    {key}:\n");
        for (name, mount) in list {
            v += &format!("      {name}: {{ mount_path: {mount}, type: directory }}\n");
        }
        v
    };
    format!(
        "container_type: DockerImage\nimage: medmesh/example-probe:1\ntasks:\n  {task}:\n    run_args: {{ command: {behaviour} }}\n{}{}",
        volumes("input_volumes", inputs),
        volumes("output_volumes", outputs)
    )
}

const DATA: &str = "/mlcommons/volumes/data";
const OUTPUT: &str = "/mlcommons/volumes/output";

/// Run the probe as a model doing `behaviour`, with `inputs` declared (and given by
/// the runner's defaults) and `output_path` where it writes its outcome; the outcome.
async fn outcome_of(
    engine: &runner::Engine,
    images: &runner::examples::ExampleImages,
    behaviour: &str,
    inputs: &[(&str, &str)],
    limits: &runner::RunLimits,
) -> String {
    let probe = common::inline(
        &probe_yaml("infer", behaviour, inputs, &[("output_path", OUTPUT)]),
        &images.probe,
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    engine
        .run_task(&task(&probe, "infer", dir.path(), &[("output_path", &out)]), limits)
        .await
        .unwrap();
    std::fs::read_to_string(out.join("outcome")).unwrap()
}

/// The probe as a model doing `behaviour`, with no volumes.
fn probe(images: &runner::examples::ExampleImages, behaviour: &str) -> runner::Runnable {
    common::inline(&probe_yaml("infer", behaviour, &[], &[]), &images.probe)
}

fn task<'a>(
    c: &'a runner::Runnable,
    name: &'a str,
    dir: &Path,
    mounts: &[(&str, &Path)],
) -> TaskRun<'a> {
    TaskRun {
        container: c,
        task: name,
        mounts: mounts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_path_buf()))
            .collect::<BTreeMap<_, _>>(),
        log_path: dir.join(format!("{name}.log")),
        scratch_dir: dir.join("tmp"),
    }
}

#[tokio::test]
async fn a_container_cannot_reach_the_network() {
    let Some((engine, images)) = common::setup().await else { return };
    // The host listens; with a network the probe reaches it through its gateway.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let control = std::env::temp_dir().join(format!("medmesh-net-control-{port}"));
    std::fs::create_dir_all(&control).unwrap();
    assert!(
        run_with_network(&engine, &images.probe.digest, port, &control)
            .await
            .starts_with("reached"),
        "the control could not reach the host; the test would prove nothing"
    );
    let _ = std::fs::remove_dir_all(&control);

    let manifest = probe_yaml("infer", "network", &[], &[("output_path", OUTPUT)]).replace(
        "run_args: { command: network }",
        &format!("run_args: {{ command: network, environment: {{ PROBE_PORT: \"{port}\" }} }}"),
    );
    let probe = common::inline(&manifest, &images.probe);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    engine
        .run_task(
            &task(&probe, "infer", dir.path(), &[("output_path", &out)]),
            &common::quick_limits(),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(out.join("outcome")).unwrap(), "unreachable");
}

/// The probe's `network` task in a plain container on the default bridge network.
async fn run_with_network(engine: &runner::Engine, image: &str, port: u16, out: &Path) -> String {
    use bollard::models::{ContainerCreateBody, HostConfig};
    let docker = engine.docker();
    let body = ContainerCreateBody {
        image: Some(image.into()),
        cmd: Some(vec!["network".into()]),
        env: Some(vec![format!("PROBE_PORT={port}")]),
        host_config: Some(HostConfig {
            binds: Some(vec![format!("{}:/mlcommons/volumes/output", out.display())]),
            // As the engine sets for tasks: Podman refuses to start a container
            // whose inherited open-files and process limits it cannot set.
            ulimits: Some(vec![
                bollard::models::ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(runner::engine::TASK_OPEN_FILES_MAX),
                    hard: Some(runner::engine::TASK_OPEN_FILES_MAX),
                },
                bollard::models::ResourcesUlimits {
                    name: Some("nproc".into()),
                    soft: Some(runner::engine::TASK_PROCESSES_MAX),
                    hard: Some(runner::engine::TASK_PROCESSES_MAX),
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = docker
        .create_container(None::<bollard::query_parameters::CreateContainerOptions>, body)
        .await
        .unwrap()
        .id;
    docker
        .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .unwrap();
    let mut wait =
        docker.wait_container(&id, None::<bollard::query_parameters::WaitContainerOptions>);
    while futures_util::StreamExt::next(&mut wait).await.is_some() {}
    let options =
        bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() };
    docker.remove_container(&id, Some(options)).await.unwrap();
    std::fs::read_to_string(out.join("outcome")).unwrap_or_default()
}

/// A folder of "hospital data" with one file, and what the probe must leave intact.
fn precious(dir: &Path, name: &str) -> std::path::PathBuf {
    let input = dir.join(name);
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("case.csv"), "precious").unwrap();
    input
}

fn untouched(input: &Path) -> bool {
    std::fs::read_to_string(input.join("case.csv")).is_ok_and(|s| s == "precious")
        && !input.join("tampered").exists()
}

#[tokio::test]
async fn no_task_can_write_any_of_its_inputs() {
    let Some((engine, images)) = common::setup().await else { return };
    let limits = common::quick_limits();
    let dir = tempfile::tempdir().unwrap();

    // Control: the same probe, given a folder as a real output, does tamper with it.
    let out = dir.path().join("control-out");
    let scratch = precious(dir.path(), "control-data");
    let control = common::inline(
        &probe_yaml(
            "prepare",
            "write_input",
            &[],
            &[("output_path", OUTPUT), ("output_labels_path", DATA)],
        ),
        &images.probe,
    );
    engine
        .run_task(
            &task(
                &control,
                "prepare",
                dir.path(),
                &[("output_path", &out), ("output_labels_path", &scratch)],
            ),
            &limits,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(out.join("outcome")).unwrap(), "input writable");
    assert!(!untouched(&scratch), "the control proves the probe can tamper");

    // Every input of every task kind, mounted where the probe writes: read-only.
    for kind in TaskKind::ALL {
        let output = kind.names(Role::Output).next();
        for input in kind.names(Role::Input) {
            let case = format!("{}-{input}", kind.name());
            let data = precious(dir.path(), &case);
            let out = dir.path().join(format!("{case}-out"));
            let outputs: Vec<(&str, &str)> = output.map(|o| (o, OUTPUT)).into_iter().collect();
            let probe = common::inline(
                &probe_yaml(kind.name(), "write_input", &[(input, DATA)], &outputs),
                &images.probe,
            );
            let mut mounts = vec![(input, data.as_path())];
            mounts.extend(output.map(|o| (o, out.as_path())));
            let report = engine
                .run_task(&task(&probe, kind.name(), dir.path(), &mounts), &limits)
                .await
                .unwrap();
            let log = std::fs::read_to_string(&report.log_path).unwrap();
            assert!(log.contains("probe outcome: input read-only"), "{case}: {log}");
            assert!(untouched(&data), "{case}: the input was changed");
        }
    }
}

#[tokio::test]
async fn a_manifest_that_declares_an_input_as_an_output_never_runs_even_when_built_by_hand() {
    let Some((engine, images)) = common::setup().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        probe_yaml("infer", "write_input", &[], &[("data_path", DATA), ("output_path", OUTPUT)]);
    // Parsing refuses it, naming the input and its task...
    let err = runner::parse_manifest(&yaml).unwrap_err();
    assert!(err.to_string().contains("`data_path` is an input"), "{err}");
    // ...and a runnable assembled around the parser (as from a record that skipped
    // validation) is refused by the engine before a container starts.
    let ok = probe_yaml("infer", "write_input", &[("data_path", DATA)], &[("output_path", OUTPUT)]);
    let mut forged = common::inline(&ok, &images.probe);
    let t = &mut forged.spec.manifest.tasks[0];
    let data = t.inputs.remove(0);
    t.outputs.push(data);
    let input = precious(dir.path(), "data");
    let out = dir.path().join("out");
    let err = engine
        .run_task(
            &task(&forged, "infer", dir.path(), &[("data_path", &input), ("output_path", &out)]),
            &common::quick_limits(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::Manifest(runner::ManifestError::Contract(_))), "{err}");
    assert!(untouched(&input));
    assert!(!out.join("outcome").exists(), "nothing ran");
}

#[tokio::test]
async fn a_container_cannot_write_its_root_filesystem() {
    let Some((engine, images)) = common::setup().await else { return };
    let outcome = outcome_of(&engine, &images, "write_rootfs", &[], &common::quick_limits()).await;
    assert_eq!(outcome, "rootfs read-only");
}

#[tokio::test]
async fn a_model_without_additional_files_gets_an_empty_folder_and_a_writable_home() {
    let Some((engine, images)) = common::setup().await else { return };
    // `common::inline` gives the runnable no additional files.
    let files = [("additional_files", "/mlcommons/volumes/additional_files")];
    let outcome =
        outcome_of(&engine, &images, "home_and_files", &files, &common::quick_limits()).await;
    assert_eq!(outcome, "home writable; additional_files 0 entries");
}

#[tokio::test]
async fn a_task_gets_the_shared_memory_the_site_allows() {
    let Some((engine, images)) = common::setup().await else { return };
    let limits = runner::RunLimits { shm_bytes: 96 * 1024 * 1024, ..common::quick_limits() };
    assert_eq!(outcome_of(&engine, &images, "shm", &[], &limits).await, "shm 98304k");
}

#[test]
fn gpus_become_the_device_requests_docker_run_gpus_sends() {
    use runner::site::Gpus;
    assert!(runner::engine::device_requests(&Gpus::None).is_none());
    let all = runner::engine::device_requests(&Gpus::All).unwrap();
    assert_eq!(
        (all[0].count, all[0].capabilities.clone()),
        (Some(-1), Some(vec![vec!["gpu".to_string()]]))
    );
    let two =
        runner::engine::device_requests(&Gpus::Devices(vec!["0".into(), "1".into()])).unwrap();
    assert_eq!(two[0].device_ids, Some(vec!["0".to_string(), "1".to_string()]));
}

/// Runs only where the engine has a GPU (an NVIDIA device and runtime); says so
/// when it did not run.
#[tokio::test]
async fn a_task_given_all_gpus_sees_them_where_there_are_any() {
    let Some((engine, images)) = common::setup().await else { return };
    let info = engine.docker().info().await.unwrap();
    let nvidia = info.runtimes.unwrap_or_default().contains_key("nvidia");
    if !nvidia || !Path::new("/dev/nvidia0").exists() {
        eprintln!("GPU test did not run: no NVIDIA GPU and runtime on this machine");
        return;
    }
    let limits = runner::RunLimits { gpus: runner::site::Gpus::All, ..common::quick_limits() };
    let outcome = outcome_of(&engine, &images, "gpus", &[], &limits).await;
    assert_ne!(outcome, "gpu devices 0", "{outcome}");
}

#[tokio::test]
async fn an_image_whose_digest_differs_from_the_record_is_refused() {
    let Some((engine, images)) = common::setup().await else { return };
    // The probe's manifest, but the record pins the metrics image's digest.
    let pinned = ImageRef {
        reference: images.probe.reference.clone(),
        digest: images.metrics.digest.clone(),
    };
    let probe = common::inline(&probe_yaml("infer", "fail", &[], &[]), &pinned);
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "infer", dir.path(), &[]), &common::quick_limits())
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&images.metrics.digest), "{err}");
}

#[tokio::test]
async fn an_image_missing_from_the_engine_is_reported_as_missing() {
    let Some((engine, _)) = common::setup().await else { return };
    let absent = ImageRef {
        reference: "medmesh/not-loaded-anywhere:0".into(),
        digest: format!("sha256:{}", "0".repeat(64)),
    };
    let probe = common::inline(&probe_yaml("infer", "fail", &[], &[]), &absent);
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "infer", dir.path(), &[]), &common::quick_limits())
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::ImageMissing { .. }), "{err}");
}

#[tokio::test]
async fn a_non_zero_exit_is_reported_with_its_code_and_log() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = probe(&images, "fail");
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "infer", dir.path(), &[]), &common::quick_limits())
        .await
        .unwrap_err();
    let RunnerError::NonZeroExit { code, log, .. } = &err else { panic!("{err}") };
    assert_eq!(*code, 3);
    assert!(std::fs::read_to_string(log).unwrap().contains("failing on purpose"));
    assert!(err.to_string().contains(&log.display().to_string()));
    // Removed whatever happened: no container of this task is left, stopped or not.
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("medmesh.scratch={}", dir.path().join("tmp").display())],
    )]);
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    assert!(engine.docker().list_containers(Some(options)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_task_past_its_timeout_is_killed_and_reported() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = probe(&images, "sleep");
    let dir = tempfile::tempdir().unwrap();
    let limits = runner::RunLimits { infer_timeout_ms: 1_500, ..common::quick_limits() };
    let started = std::time::Instant::now();
    let err = engine.run_task(&task(&probe, "infer", dir.path(), &[]), &limits).await.unwrap_err();
    assert!(matches!(err, RunnerError::Timeout { timeout_ms: 1_500, .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn a_task_over_its_memory_limit_is_reported_as_out_of_memory() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = probe(&images, "oom");
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "infer", dir.path(), &[]), &common::quick_limits())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunnerError::OutOfMemory { memory_bytes, .. } if memory_bytes == 64 * 1024 * 1024),
        "{err}"
    );
    assert!(err.log_path().is_some());
}

#[tokio::test]
async fn a_task_the_manifest_lacks_is_refused_before_anything_runs() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = probe(&images, "fail");
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "evaluate", dir.path(), &[]), &common::quick_limits())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RunnerError::Manifest(runner::ManifestError::UnknownTask { .. })),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_input_is_named_before_anything_runs() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = common::inline(
        &probe_yaml("infer", "write_input", &[("data_path", DATA)], &[("output_path", OUTPUT)]),
        &images.probe,
    );
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let out = dir.path().join("out");
    let err = engine
        .run_task(
            &task(&probe, "infer", dir.path(), &[("data_path", &gone), ("output_path", &out)]),
            &common::quick_limits(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::MissingInput { .. }), "{err}");
}

#[tokio::test]
async fn a_saved_image_loads_back_with_the_same_digest() {
    let Some((engine, images)) = common::setup().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("probe.tar");
    engine.save_image(&images.probe.reference, &tarball).await.unwrap();
    engine.load_verified_image(&tarball, &images.probe).await.unwrap();
    assert_eq!(engine.image_digest(&images.probe.reference).await.unwrap(), images.probe.digest);
    let other = protocol::record::ImageRef {
        reference: images.probe.reference.clone(),
        digest: images.metrics.digest.clone(),
    };
    assert!(matches!(
        engine.load_verified_image(&tarball, &other).await,
        Err(RunnerError::DigestMismatch { .. })
    ));
}

#[tokio::test]
async fn tasks_beyond_the_concurrency_bound_wait_their_turn() {
    let Some((_, images)) = common::setup().await else { return };
    let engine = runner::Engine::connect(1).await.unwrap();
    assert_eq!(engine.concurrent_runs(), 1);
    let probe = probe(&images, "sleep");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let limits = runner::RunLimits { infer_timeout_ms: 1_000, ..common::quick_limits() };
    let started = std::time::Instant::now();
    let (ta, tb) = (task(&probe, "infer", a.path(), &[]), task(&probe, "infer", b.path(), &[]));
    let (ra, rb) = tokio::join!(engine.run_task(&ta, &limits), engine.run_task(&tb, &limits));
    assert!(
        matches!(ra, Err(RunnerError::Timeout { .. }))
            && matches!(rb, Err(RunnerError::Timeout { .. }))
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(2_000),
        "ran one after the other: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_cancelled_task_leaves_no_container_behind() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = probe(&images, "sleep");
    let dir = tempfile::tempdir().unwrap();
    let run = task(&probe, "infer", dir.path(), &[]);
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(1_500),
        engine.run_task(&run, &common::quick_limits()),
    )
    .await;
    assert!(cancelled.is_err(), "the task was still running");
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("medmesh.scratch={}", dir.path().join("tmp").display())],
    )]);
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(filters),
        ..Default::default()
    };
    for _ in 0..100 {
        if engine.docker().list_containers(Some(options.clone())).await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the cancelled task's container is still there");
}

#[tokio::test]
async fn a_tarball_that_is_not_an_image_is_refused_by_name() {
    let Some((engine, _)) = common::setup().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("not-an-image.tar");
    std::fs::write(&tarball, b"these bytes are not a docker save archive").unwrap();
    let err = engine.load_image(&tarball).await.unwrap_err();
    assert!(matches!(err, RunnerError::ImageRejected { .. } | RunnerError::Engine { .. }), "{err}");
    assert!(err.to_string().contains("not-an-image.tar"), "{err}");
}
