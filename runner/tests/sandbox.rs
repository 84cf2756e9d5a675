//! The sandbox every container task runs in, checked on the real Docker engine with
//! the `probe` example image, which tries what a hostile container would.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use protocol::record::ImageRef;
use runner::{RunnerError, TaskRun};

const PROBE: &str = r#"
container_type: DockerImage
image: medmesh/example-probe:1
tasks:
  network:
    run_args: { command: network }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/output, type: directory }
  write_rootfs:
    run_args: { command: write_rootfs }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/output, type: directory }
  write_input:
    run_args: { command: write_input }
    input_volumes:
      data_path: { mount_path: /mlcommons/volumes/data, type: directory }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/output, type: directory }
  fail:
    run_args: { command: fail }
  sleep:
    run_args: { command: sleep }
  oom:
    run_args: { command: oom }
"#;

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

    let manifest = PROBE.replace(
        "run_args: { command: network }",
        &format!("run_args: {{ command: network, environment: {{ PROBE_PORT: \"{port}\" }} }}"),
    );
    let probe = common::inline(&manifest, &images.probe);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    engine
        .run_task(
            &task(&probe, "network", dir.path(), &[("output_path", &out)]),
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

#[tokio::test]
async fn a_container_cannot_write_its_inputs_nor_its_root_filesystem() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = common::inline(PROBE, &images.probe);
    let dir = tempfile::tempdir().unwrap();
    let (input, out) = (dir.path().join("input"), dir.path().join("out"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("case.csv"), "precious").unwrap();
    let limits = common::quick_limits();
    // Control: mounted read-write, the same probe does tamper with a folder.
    let writable = PROBE.replace(
        "    input_volumes:\n      data_path: { mount_path: /mlcommons/volumes/data, type: directory }\n    output_volumes:\n",
        "    output_volumes:\n      data_path: { mount_path: /mlcommons/volumes/data, type: directory }\n",
    );
    assert_ne!(writable, PROBE);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("case.csv"), "expendable").unwrap();
    let control = common::inline(&writable, &images.probe);
    engine
        .run_task(
            &task(
                &control,
                "write_input",
                dir.path(),
                &[("data_path", &scratch), ("output_path", &out)],
            ),
            &limits,
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("outcome")).unwrap(),
        "input writable",
        "the control proves the probe can tamper"
    );

    engine
        .run_task(
            &task(
                &probe,
                "write_input",
                dir.path(),
                &[("data_path", &input), ("output_path", &out)],
            ),
            &limits,
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(out.join("outcome")).unwrap(), "input read-only");
    assert_eq!(std::fs::read_to_string(input.join("case.csv")).unwrap(), "precious");
    assert!(!input.join("tampered").exists());
    engine
        .run_task(&task(&probe, "write_rootfs", dir.path(), &[("output_path", &out)]), &limits)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(out.join("outcome")).unwrap(), "rootfs read-only");
}

#[tokio::test]
async fn an_image_whose_digest_differs_from_the_record_is_refused() {
    let Some((engine, images)) = common::setup().await else { return };
    // The probe's manifest, but the record pins the metrics image's digest.
    let pinned = ImageRef {
        reference: images.probe.reference.clone(),
        digest: images.metrics.digest.clone(),
    };
    let probe = common::inline(PROBE, &pinned);
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "fail", dir.path(), &[]), &common::quick_limits())
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
    let probe = common::inline(PROBE, &absent);
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "fail", dir.path(), &[]), &common::quick_limits())
        .await
        .unwrap_err();
    assert!(matches!(err, RunnerError::ImageMissing { .. }), "{err}");
}

#[tokio::test]
async fn a_non_zero_exit_is_reported_with_its_code_and_log() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = common::inline(PROBE, &images.probe);
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "fail", dir.path(), &[]), &common::quick_limits())
        .await
        .unwrap_err();
    let RunnerError::NonZeroExit { code, log, .. } = &err else { panic!("{err}") };
    assert_eq!(*code, 3);
    assert!(std::fs::read_to_string(log).unwrap().contains("failing on purpose"));
    assert!(err.to_string().contains(&log.display().to_string()));
    // Removed whatever happened: no container of this task is left, stopped or not.
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec!["medmesh.task=fail".to_string()],
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
    let probe = common::inline(PROBE, &images.probe);
    let dir = tempfile::tempdir().unwrap();
    let limits = runner::RunLimits { other_timeout_ms: 1_500, ..common::quick_limits() };
    let started = std::time::Instant::now();
    let err = engine.run_task(&task(&probe, "sleep", dir.path(), &[]), &limits).await.unwrap_err();
    assert!(matches!(err, RunnerError::Timeout { timeout_ms: 1_500, .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test]
async fn a_task_over_its_memory_limit_is_reported_as_out_of_memory() {
    let Some((engine, images)) = common::setup().await else { return };
    let probe = common::inline(PROBE, &images.probe);
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "oom", dir.path(), &[]), &common::quick_limits())
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
    let probe = common::inline(PROBE, &images.probe);
    let dir = tempfile::tempdir().unwrap();
    let err = engine
        .run_task(&task(&probe, "infer", dir.path(), &[]), &common::quick_limits())
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
    let probe = common::inline(PROBE, &images.probe);
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let out = dir.path().join("out");
    let err = engine
        .run_task(
            &task(
                &probe,
                "write_input",
                dir.path(),
                &[("data_path", &gone), ("output_path", &out)],
            ),
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
    let probe = common::inline(PROBE, &images.probe);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let limits = runner::RunLimits { other_timeout_ms: 1_000, ..common::quick_limits() };
    let started = std::time::Instant::now();
    let (ta, tb) = (task(&probe, "sleep", a.path(), &[]), task(&probe, "sleep", b.path(), &[]));
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
    let probe = common::inline(
        r#"
image: medmesh/example-probe:1
tasks:
  cancelled_sleep:
    run_args: { command: sleep }
"#,
        &images.probe,
    );
    let dir = tempfile::tempdir().unwrap();
    let run = task(&probe, "cancelled_sleep", dir.path(), &[]);
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(1_500),
        engine.run_task(&run, &common::quick_limits()),
    )
    .await;
    assert!(cancelled.is_err(), "the task was still running");
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec!["medmesh.task=cancelled_sleep".to_string()],
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
