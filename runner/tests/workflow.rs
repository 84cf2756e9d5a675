//! MedPerf's steps 3 to 5 on one site, end to end on the real Docker engine with the
//! example images and the Wisconsin breast cancer data: compatibility test on the
//! demo dataset, dataset preparation at a hospital, benchmark execution of two
//! models, and the errors a data owner can meet on the way.

mod common;

use std::collections::BTreeMap;

use protocol::RecordId;
use protocol::metric::MetricValue;
use runner::compat::compatibility_test;
use runner::dataset::{
    PrepareEvent, ReportSummary, check_dataset, dataset_details, export_dataset, import_dataset,
    prepare_dataset, prepare_dataset_watched, set_operational, statistics,
};
use runner::execution::{ExecutionOptions, ModelEntry, run_benchmark, run_model};
use runner::{Runnable, RunnerError, parse_manifest};

const METRIC_NAMES: [&str; 6] = ["accuracy", "auc", "cases", "f1", "sensitivity", "specificity"];

#[tokio::test]
async fn the_compatibility_test_runs_preparator_model_and_metrics_on_the_demo_dataset() {
    let Some((engine, images)) = common::setup().await else { return };
    let (prep, model, metrics) = (
        common::example("preparator", &images.preparator),
        common::example("model_logistic", &images.model_logistic),
        common::example("metrics", &images.metrics),
    );
    let work = tempfile::tempdir().unwrap();
    let outcome = compatibility_test(
        &engine,
        &common::demo_dir(),
        &prep,
        &model,
        &metrics,
        work.path(),
        &common::quick_limits(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.results.keys().map(String::as_str).collect::<Vec<_>>(), METRIC_NAMES);
    assert_eq!(outcome.results["cases"].as_f64(), Some(30.0));
    assert!(outcome.results["auc"].as_f64().unwrap() > 0.8, "{:?}", outcome.results);
    let record = outcome.record(&[7; 32]);
    assert!(record.passed);
    assert!(!outcome.on_private_data);
    assert_eq!(record.results_hash, outcome.results_hash, "the demo dataset is public");
    assert_eq!(
        record.image_digests,
        vec![
            images.preparator.digest.clone(),
            images.model_logistic.digest.clone(),
            images.metrics.digest.clone()
        ]
    );
    assert_eq!(outcome.prepared.statistics.get("cases"), Some(&MetricValue::Int(30)));
}

#[tokio::test]
async fn a_hospital_prepares_its_data_and_runs_the_benchmark_by_model_priority() {
    let Some((engine, images)) = common::setup().await else { return };
    let prep = common::example("preparator", &images.preparator);
    let metrics = common::example("metrics", &images.metrics);
    let limits = common::quick_limits();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("hospital_a");
    let (raw_data, raw_labels) = common::hospital_raw("hospital_a");

    // Step 3: prepare, check, describe, hash; the record carries metadata only.
    let prepared =
        prepare_dataset(&engine, &prep, &raw_data, &raw_labels, &root, &limits).await.unwrap();
    assert_eq!(prepared.statistics.get("cases"), Some(&MetricValue::Int(130)));
    let details = dataset_details(&prepared, "hospital-a", "WDBC share A", "site A", false);
    assert_eq!(details.num_cases, Some(130));
    assert!(details.num_cases.is_some(), "the example preparator counts its cases");
    assert!(details.validate().is_ok());
    let operational = set_operational(&root, RecordId::from_bytes([8; 32])).unwrap();
    assert_eq!(operational.prepared_hash, prepared.prepared_hash);
    check_dataset(&root, &prepared.prepared_hash).unwrap();

    // Step 5: both models, the higher priority first, then metrics on each.
    let (reference, challenger) = (RecordId::from_bytes([1; 32]), RecordId::from_bytes([2; 32]));
    let models = vec![
        ModelEntry {
            id: challenger,
            priority: 1,
            container: common::example("model_threshold", &images.model_threshold),
        },
        ModelEntry {
            id: reference,
            priority: 5,
            container: common::example("model_logistic", &images.model_logistic),
        },
    ];
    let options = ExecutionOptions { limits: limits.clone(), ..Default::default() };
    let exec_dir = work.path().join("executions");
    let report = run_benchmark(
        &engine,
        &root,
        prepared.prepared_hash,
        &models,
        &metrics,
        &exec_dir,
        &options,
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty());
    assert_eq!(
        report.completed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![reference, challenger]
    );
    for (_, run) in &report.completed {
        assert_eq!(run.results.keys().map(String::as_str).collect::<Vec<_>>(), METRIC_NAMES);
        assert_eq!(run.receipt.dataset_hash, prepared.prepared_hash);
        assert_eq!(run.receipt.metrics_image_digest, images.metrics.digest);
        assert_eq!(run.receipt.limits, limits.receipt());
        assert!(!run.reused);
    }
    assert_eq!(report.completed[0].1.receipt.model_image_digest, images.model_logistic.digest);
    assert_ne!(
        report.completed[0].1.receipt.predictions_hash,
        report.completed[1].1.receipt.predictions_hash
    );

    // Finished executions are not rerun unless forced.
    let again = run_benchmark(
        &engine,
        &root,
        prepared.prepared_hash,
        &models,
        &metrics,
        &exec_dir,
        &options,
    )
    .await
    .unwrap();
    assert!(again.completed.iter().all(|(_, r)| r.reused));
    assert_eq!(again.completed[0].1.results, report.completed[0].1.results);
    let forced = ExecutionOptions { force: true, ..options.clone() };
    let rerun = run_benchmark(
        &engine,
        &root,
        prepared.prepared_hash,
        &models[..1],
        &metrics,
        &exec_dir,
        &forced,
    )
    .await
    .unwrap();
    assert!(!rerun.completed[0].1.reused);
    assert_eq!(
        rerun.completed[0].1.results, report.completed[1].1.results,
        "deterministic model, same results"
    );
}

#[tokio::test]
async fn a_failing_model_stops_the_run_unless_model_errors_are_ignored() {
    let Some((engine, images)) = common::setup().await else { return };
    let work = tempfile::tempdir().unwrap();
    let limits = common::quick_limits();
    let root = work.path().join("hospital_b");
    let (raw_data, raw_labels) = common::hospital_raw("hospital_b");
    let prepared = prepare_dataset(
        &engine,
        &common::example("preparator", &images.preparator),
        &raw_data,
        &raw_labels,
        &root,
        &limits,
    )
    .await
    .unwrap();
    let metrics = common::example("metrics", &images.metrics);
    // A model whose weights are missing: its infer task exits non-zero.
    let mut broken = common::example("model_logistic", &images.model_logistic);
    broken.additional_files = Some(work.path().join("no-weights"));
    std::fs::create_dir_all(work.path().join("no-weights")).unwrap();
    let models = vec![
        ModelEntry { id: RecordId::from_bytes([1; 32]), priority: 9, container: broken },
        ModelEntry {
            id: RecordId::from_bytes([2; 32]),
            priority: 1,
            container: common::example("model_threshold", &images.model_threshold),
        },
    ];
    let strict = ExecutionOptions { limits: limits.clone(), ..Default::default() };
    let stopped = run_benchmark(
        &engine,
        &root,
        prepared.prepared_hash,
        &models,
        &metrics,
        &work.path().join("x1"),
        &strict,
    )
    .await
    .unwrap();
    // The failure is reported, not dropped, and the run stops at it.
    assert_eq!(stopped.failed.len(), 1);
    let (failed, err) = &stopped.failed[0];
    assert_eq!(*failed, RecordId::from_bytes([1; 32]));
    assert!(matches!(err, RunnerError::NonZeroExit { task, .. } if task == "infer"), "{err}");
    assert!(err.log_path().is_some_and(|p| p.exists()), "{err}");
    assert!(stopped.completed.is_empty());
    assert_eq!(stopped.not_run, vec![RecordId::from_bytes([2; 32])]);
    let lenient = ExecutionOptions { ignore_model_errors: true, ..strict };
    let report = run_benchmark(
        &engine,
        &root,
        prepared.prepared_hash,
        &models,
        &metrics,
        &work.path().join("x2"),
        &lenient,
    )
    .await
    .unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.completed.len(), 1);
    assert_eq!(report.completed[0].0, RecordId::from_bytes([2; 32]));
}

#[tokio::test]
async fn modified_prepared_data_is_caught_before_any_model_runs() {
    let Some((engine, images)) = common::setup().await else { return };
    let work = tempfile::tempdir().unwrap();
    let limits = common::quick_limits();
    let root = work.path().join("hospital_c");
    let (raw_data, raw_labels) = common::hospital_raw("hospital_c");
    let prepared = prepare_dataset(
        &engine,
        &common::example("preparator", &images.preparator),
        &raw_data,
        &raw_labels,
        &root,
        &limits,
    )
    .await
    .unwrap();

    // Moved to another machine and back, the hash still holds.
    let tarball = work.path().join("hospital_c.tar");
    assert_eq!(export_dataset(&root, &tarball).unwrap(), prepared.prepared_hash);
    let moved =
        import_dataset(&tarball, &work.path().join("elsewhere"), Some(&prepared.prepared_hash))
            .unwrap();
    assert_eq!(moved.statistics, prepared.statistics);

    let labels = root.join("labels/labels.csv");
    let tampered = std::fs::read_to_string(&labels).unwrap().replacen(",0\n", ",1\n", 1);
    std::fs::write(&labels, tampered).unwrap();
    let models = vec![ModelEntry {
        id: RecordId::from_bytes([1; 32]),
        priority: 0,
        container: common::example("model_logistic", &images.model_logistic),
    }];
    let options = ExecutionOptions { limits, ..Default::default() };
    let err = run_benchmark(
        &engine,
        &root,
        prepared.prepared_hash,
        &models,
        &common::example("metrics", &images.metrics),
        &work.path().join("x"),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RunnerError::HashMismatch { .. }), "{err}");
    assert!(!work.path().join("x").exists(), "nothing ran");
}

#[tokio::test]
async fn an_empty_statistics_file_is_an_error_naming_the_log() {
    let Some((engine, images)) = common::setup().await else { return };
    let stats_writer = r#"
image: medmesh/example-probe:1
tasks:
  statistics:
    run_args: { command: empty_statistics }
    input_volumes:
      data_path: { mount_path: /mlcommons/volumes/data, type: directory }
      labels_path: { mount_path: /mlcommons/volumes/labels, type: directory }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/statistics/statistics.yaml, type: file }
"#;
    let probe = common::inline(stats_writer, &images.probe);
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    std::fs::create_dir_all(root.path().join("labels")).unwrap();
    let err = statistics(&engine, &probe, root.path(), &common::quick_limits()).await.unwrap_err();
    assert!(
        matches!(err, RunnerError::BadStatistics { ref reason, .. } if reason == "empty"),
        "{err}"
    );
    assert!(err.to_string().contains("statistics.log"), "{err}");
}

#[tokio::test]
async fn results_that_are_not_a_mapping_are_an_error_naming_the_log() {
    let Some((engine, images)) = common::setup().await else { return };
    let bad_metrics = r#"
image: medmesh/example-probe:1
tasks:
  evaluate:
    run_args: { command: bad_results }
    input_volumes:
      predictions: { mount_path: /mlcommons/volumes/predictions, type: directory }
      labels: { mount_path: /mlcommons/volumes/labels, type: directory }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/results/results.yaml, type: file }
"#;
    let work = tempfile::tempdir().unwrap();
    let limits = common::quick_limits();
    let (raw_data, raw_labels) = runner::compat::demo_paths(&common::demo_dir()).unwrap();
    let root = work.path().join("demo");
    let prepared = prepare_dataset(
        &engine,
        &common::example("preparator", &images.preparator),
        &raw_data,
        &raw_labels,
        &root,
        &limits,
    )
    .await
    .unwrap();
    let model = common::example("model_logistic", &images.model_logistic);
    let err = run_model(
        &engine,
        &root,
        prepared.prepared_hash,
        &model,
        &common::inline(bad_metrics, &images.probe),
        &work.path().join("x"),
        &limits,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RunnerError::BadResults { ref reason, .. } if reason == "not a mapping"),
        "{err}"
    );
    assert!(err.to_string().contains("evaluate.log"), "{err}");
}

/// MedPerf's own test metrics container writes `error: .nan`: its results pass the
/// compatibility test and are kept as written.
#[tokio::test]
async fn a_metrics_container_that_writes_nan_passes_the_compatibility_test() {
    let Some((engine, images)) = common::setup().await else { return };
    let nan_metrics = r#"
container_type: DockerImage
image: medmesh/example-probe:1
tasks:
  evaluate:
    run_args: { command: nan_results }
    input_volumes:
      predictions: { mount_path: /mlcommons/volumes/predictions, type: directory }
      labels: { mount_path: /mlcommons/volumes/labels, type: directory }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/results/results.yaml, type: file }
"#;
    let work = tempfile::tempdir().unwrap();
    let outcome = compatibility_test(
        &engine,
        &common::demo_dir(),
        &common::example("preparator", &images.preparator),
        &common::example("model_logistic", &images.model_logistic),
        &common::inline(nan_metrics, &images.probe),
        work.path(),
        &common::quick_limits(),
    )
    .await
    .unwrap();
    assert!(outcome.record(&[7; 32]).passed);
    assert!(outcome.results["error"].as_f64().unwrap().is_nan());
    assert_eq!(outcome.results["auc"], MetricValue::float(0.5));
    assert_eq!(outcome.results["note"], MetricValue::Text("written by the probe".into()));
    let MetricValue::Map(per_class) = &outcome.results["per_class"] else {
        panic!("per_class is kept as a map: {:?}", outcome.results)
    };
    assert_eq!(per_class["malignant"], MetricValue::float(f64::NEG_INFINITY));
}

#[tokio::test]
async fn a_legacy_mlcube_metrics_container_gives_the_same_results_as_its_container_config() {
    let Some((engine, images)) = common::setup().await else { return };
    let work = tempfile::tempdir().unwrap();
    let limits = common::quick_limits();
    let (raw_data, raw_labels) = runner::compat::demo_paths(&common::demo_dir()).unwrap();
    let root = work.path().join("demo");
    let prepared = prepare_dataset(
        &engine,
        &common::example("preparator", &images.preparator),
        &raw_data,
        &raw_labels,
        &root,
        &limits,
    )
    .await
    .unwrap();
    let model = common::example("model_threshold", &images.model_threshold);
    let modern = common::example("metrics", &images.metrics);
    let legacy = Runnable {
        spec: parse_manifest(
            &std::fs::read_to_string(common::workspace_root().join("examples/metrics/mlcube.yaml"))
                .unwrap(),
        )
        .unwrap(),
        ..modern.clone()
    };
    let a = run_model(
        &engine,
        &root,
        prepared.prepared_hash,
        &model,
        &modern,
        &work.path().join("a"),
        &limits,
    )
    .await
    .unwrap();
    let b = run_model(
        &engine,
        &root,
        prepared.prepared_hash,
        &model,
        &legacy,
        &work.path().join("b"),
        &limits,
    )
    .await
    .unwrap();
    assert_eq!(a.results, b.results);
    assert_eq!(a.receipt.results_hash, b.receipt.results_hash);
    let _: BTreeMap<String, MetricValue> = a.results;
}

/// Container configs as MedPerf's documentation writes them: no `run_args`, so each
/// image runs with its own entrypoint and tells the task by what is mounted; the
/// preparator, like MedPerf's chest X-ray tutorial one, has no `sanity_check` task.
const DOCS_STYLE_PREPARATOR: &str = r#"
container_type: DockerImage
image: medmesh/example-preparator:1
tasks:
  prepare:
    input_volumes:
      data_path: { mount_path: /mlcommons/volumes/raw_data, type: directory }
      labels_path: { mount_path: /mlcommons/volumes/raw_labels, type: directory }
      parameters_file: { mount_path: /mlcommons/volumes/parameters/parameters_file.yaml, type: file }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/data, type: directory }
      output_labels_path: { mount_path: /mlcommons/volumes/labels, type: directory }
  statistics:
    input_volumes:
      data_path: { mount_path: /mlcommons/volumes/data, type: directory }
      labels_path: { mount_path: /mlcommons/volumes/labels, type: directory }
      parameters_file: { mount_path: /mlcommons/volumes/parameters/parameters_file.yaml, type: file }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/statistics/statistics.yaml, type: file }
"#;
const DOCS_STYLE_MODEL: &str = r#"
container_type: DockerImage
image: medmesh/example-model-logistic:1
tasks:
  infer:
    input_volumes:
      data_path: { mount_path: /mlcommons/volumes/data, type: directory }
      parameters_file: { mount_path: /mlcommons/volumes/parameters/parameters_file.yaml, type: file }
      additional_files: { mount_path: /mlcommons/volumes/additional_files, type: directory }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/predictions, type: directory }
"#;
const DOCS_STYLE_METRICS: &str = r#"
container_type: DockerImage
image: medmesh/example-metrics:1
tasks:
  evaluate:
    input_volumes:
      predictions: { mount_path: /mlcommons/volumes/predictions, type: directory }
      labels: { mount_path: /mlcommons/volumes/labels, type: directory }
      parameters_file: { mount_path: /mlcommons/volumes/parameters/parameters_file.yaml, type: file }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/results/results.yaml, type: file }
"#;

#[tokio::test]
async fn medperf_configs_without_run_args_run_the_images_as_they_are() {
    let Some((engine, images)) = common::setup().await else { return };
    let with = |yaml: &str, name: &str, image: &protocol::record::ImageRef| Runnable {
        spec: parse_manifest(yaml).unwrap(),
        ..common::example(name, image)
    };
    let prep = with(DOCS_STYLE_PREPARATOR, "preparator", &images.preparator);
    let model = with(DOCS_STYLE_MODEL, "model_logistic", &images.model_logistic);
    let metrics = with(DOCS_STYLE_METRICS, "metrics", &images.metrics);
    let work = tempfile::tempdir().unwrap();
    let outcome = compatibility_test(
        &engine,
        &common::demo_dir(),
        &prep,
        &model,
        &metrics,
        work.path(),
        &common::quick_limits(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.results.keys().map(String::as_str).collect::<Vec<_>>(), METRIC_NAMES);
    assert_eq!(outcome.prepared.statistics.get("cases"), Some(&MetricValue::Int(30)));
}

#[tokio::test]
async fn a_failed_preparation_names_its_log_and_can_be_retried_in_the_same_folder() {
    let Some((engine, images)) = common::setup().await else { return };
    let work = tempfile::tempdir().unwrap();
    let strict_params = work.path().join("strict.yaml");
    std::fs::write(&strict_params, "min_cases: 1000\n").unwrap();
    let strict = Runnable {
        parameters_file: Some(strict_params),
        ..common::example("preparator", &images.preparator)
    };
    let (raw_data, raw_labels) = runner::compat::demo_paths(&common::demo_dir()).unwrap();
    let root = work.path().join("demo");
    let limits = common::quick_limits();
    let err = prepare_dataset(&engine, &strict, &raw_data, &raw_labels, &root, &limits)
        .await
        .unwrap_err();
    let log = err.log_path().expect("a container ran").to_path_buf();
    assert!(std::fs::read_to_string(&log).unwrap().contains("at least 1000"), "{err}");
    let prepared = prepare_dataset(
        &engine,
        &common::example("preparator", &images.preparator),
        &raw_data,
        &raw_labels,
        &root,
        &limits,
    )
    .await
    .unwrap();
    assert_eq!(prepared.statistics.get("cases"), Some(&MetricValue::Int(30)));
    let again = prepare_dataset(
        &engine,
        &common::example("preparator", &images.preparator),
        &raw_data,
        &raw_labels,
        &root,
        &limits,
    )
    .await
    .unwrap_err();
    assert!(again.to_string().contains("already holds a prepared dataset"), "{again}");
}

/// MedPerf re-runs `prepare` over what an interrupted attempt left, and the
/// preparator resumes from its `report.yaml`; the progress of the report is told
/// while it runs.
#[tokio::test]
async fn an_interrupted_preparation_resumes_where_its_report_stopped() {
    let Some((engine, images)) = common::setup().await else { return };
    let config = r#"
container_type: DockerImage
image: medmesh/example-probe:1
tasks:
  prepare:
    run_args: { command: prepare_in_steps }
    input_volumes:
      data_path: { mount_path: /mlcommons/volumes/raw_data, type: directory }
      labels_path: { mount_path: /mlcommons/volumes/raw_labels, type: directory }
      parameters_file: { mount_path: /mlcommons/volumes/parameters/parameters.yaml, type: file }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/data, type: directory }
      output_labels_path: { mount_path: /mlcommons/volumes/labels, type: directory }
      report_file: { mount_path: /mlcommons/volumes/report/report.yaml, type: file }
  statistics:
    run_args: { command: count_statistics }
    input_volumes:
      data_path: { mount_path: /mlcommons/volumes/data, type: directory }
      labels_path: { mount_path: /mlcommons/volumes/labels, type: directory }
    output_volumes:
      output_path: { mount_path: /mlcommons/volumes/statistics/statistics.yaml, type: file }
"#;
    let work = tempfile::tempdir().unwrap();
    let params = work.path().join("parameters.yaml");
    std::fs::write(&params, "first_attempt_stops_after: 2\n").unwrap();
    let prep = Runnable { parameters_file: Some(params), ..common::inline(config, &images.probe) };
    let (raw_data, raw_labels) = runner::compat::demo_paths(&common::demo_dir()).unwrap();
    let root = work.path().join("resumed");
    let limits = common::quick_limits();
    let events = std::sync::Mutex::new(Vec::new());
    let record = |e: PrepareEvent| events.lock().unwrap().push(e);

    let first =
        prepare_dataset_watched(&engine, &prep, &raw_data, &raw_labels, &root, &limits, &record)
            .await;
    assert!(first.is_err(), "the first attempt is interrupted");
    let seen = std::mem::take(&mut *events.lock().unwrap());
    let reported: Vec<&ReportSummary> = seen
        .iter()
        .filter_map(|e| if let PrepareEvent::Report(r) = e { Some(r) } else { None })
        .collect();
    let last = reported.last().expect("the report's progress was told");
    assert_eq!(last.subjects, 6);
    assert_eq!(last.statuses.get("done"), Some(&2), "{last}");

    let prepared =
        prepare_dataset_watched(&engine, &prep, &raw_data, &raw_labels, &root, &limits, &record)
            .await
            .unwrap();
    let seen = events.lock().unwrap().clone();
    let Some(PrepareEvent::Resuming { report: Some(at) }) = seen.first() else {
        panic!("the second attempt says it resumes: {seen:?}")
    };
    assert_eq!(at.statuses.get("done"), Some(&2), "{at}");
    assert!(seen.contains(&PrepareEvent::Step("statistics")));
    let attempt = |i: u32| std::fs::read_to_string(root.join(format!("data/subject-{i}"))).unwrap();
    for i in 1..=2 {
        assert_eq!(attempt(i), "attempt 1\n", "subject {i} was prepared once, before");
    }
    for i in 3..=6 {
        assert_eq!(attempt(i), "attempt 2\n", "subject {i} was prepared on resuming");
    }
    assert_eq!(prepared.statistics.get("subjects"), Some(&MetricValue::Int(6)));
    assert!(!root.join(runner::dataset::ATTEMPT_FILE).exists());

    // Other parameters are another preparation: nothing is resumed.
    let other = work.path().join("other.yaml");
    std::fs::write(&other, "first_attempt_stops_after: 1\n").unwrap();
    let root2 = work.path().join("fresh");
    let prep2 = Runnable { parameters_file: Some(other), ..prep.clone() };
    let _ = prepare_dataset(&engine, &prep2, &raw_data, &raw_labels, &root2, &limits).await;
    events.lock().unwrap().clear();
    let _ =
        prepare_dataset_watched(&engine, &prep, &raw_data, &raw_labels, &root2, &limits, &record)
            .await;
    let seen = events.lock().unwrap().clone();
    assert!(
        !seen.iter().any(|e| matches!(e, PrepareEvent::Resuming { .. })),
        "an attempt with other parameters is replaced, not resumed: {seen:?}"
    );
}
