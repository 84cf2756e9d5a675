//! Tools for container authors: `container new` writes a Python project that
//! builds and runs as written, and `run-test` shows what a site would see.
//!
//! No registry is reachable, so the generated Dockerfile is built with its `FROM`
//! replaced by a local Debian + Python base: this machine's own Debian Python
//! (`/usr/bin/python3.11`, the libraries it links and its standard library)
//! imported into a `FROM scratch` image. Every other line is built as written.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protocol::metric::MetricValue;
use protocol::record::ImageRef;
use runner::compat::compatibility_test;
use runner::scaffold::{Kind, new_project};
use runner::trial::{TrialStatus, run_test};
use runner::{Engine, Runnable, load_manifest};

/// The host's Debian Python, which the base image is made of.
const HOST_PYTHON: &str = "/usr/bin/python3.11";
const HOST_STDLIB: &str = "/usr/lib/python3.11";
/// Parts of the standard library a container of this test never imports.
const STDLIB_SKIPPED: &[&str] = &[
    "test",
    "__pycache__",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "site-packages",
    "dist-packages",
    "lib2to3",
    "pydoc_data",
];
/// Test-owned image names.
const BASE_TAG: &str = "medmesh-runner-authoring/debian-python:1";

fn copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(src, dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
}

fn copy_tree(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let name = e.file_name();
        if STDLIB_SKIPPED.iter().any(|s| name == *s) {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            copy_tree(&path, &dst.join(&name));
        } else if path.is_file() {
            copy(&path, &dst.join(&name));
        }
    }
}

/// The base image, or `None` (outside CI) where this machine has no Debian Python.
async fn debian_python(engine: &Engine) -> Option<String> {
    if !Path::new(HOST_PYTHON).exists() {
        let why = format!("no {HOST_PYTHON} to make a Debian + Python base image of");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {why}");
        eprintln!("SKIPPED (not under CI): {why}");
        return None;
    }
    let ctx = tempfile::tempdir().unwrap();
    let root = ctx.path().join("rootfs");
    for bin in ["python3.11", "python3"] {
        copy(Path::new(HOST_PYTHON), &root.join("usr/bin").join(bin));
    }
    let ldd = std::process::Command::new("ldd").arg(HOST_PYTHON).output().expect("ldd runs");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line.split("=>").last().and_then(|r| r.split_whitespace().next());
        if let Some(lib) = lib.filter(|l| l.starts_with('/')) {
            copy(Path::new(lib), &root.join(lib.trim_start_matches('/')));
        }
    }
    copy_tree(Path::new(HOST_STDLIB), &root.join(HOST_STDLIB.trim_start_matches('/')));
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    engine.build_context(ctx.path(), None, BASE_TAG).await.expect("the base image builds");
    Some(BASE_TAG.to_string())
}

/// A generated project, built on the local base, as a site would run it.
async fn built(engine: &Engine, base: &str, kind: Kind, dir: &Path) -> Runnable {
    let image = format!("medmesh-runner-authoring/{kind:?}:1").to_lowercase();
    new_project(kind, &image, dir).unwrap();
    let digest = engine.build_context(dir, Some(base), &image).await.expect("the project builds");
    let af = dir.join("additional_files");
    Runnable {
        spec: load_manifest(&dir.join("container_config.yaml")).unwrap(),
        image: ImageRef { reference: image, digest },
        parameters_file: Some(dir.join("parameters.yaml")),
        additional_files: af.exists().then_some(af),
    }
}

fn mounts(pairs: &[(&str, &Path)]) -> BTreeMap<String, PathBuf> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_path_buf())).collect()
}

#[tokio::test]
async fn generated_projects_build_run_each_task_and_pass_the_compatibility_test() {
    let Some((engine, _)) = common::setup().await else { return };
    let Some(base) = debian_python(&engine).await else { return };
    let work = tempfile::tempdir().unwrap();
    let prep = built(&engine, &base, Kind::Preparator, &work.path().join("prep")).await;
    let model = built(&engine, &base, Kind::Model, &work.path().join("model")).await;
    let metrics = built(&engine, &base, Kind::Metrics, &work.path().join("metrics")).await;
    let demo = work.path().join("prep/demo");
    let limits = common::quick_limits();

    // `prepare` as a site runs it: the outputs a site would see.
    let out = work.path().join("run-prepare");
    let given = mounts(&[("data_path", &demo.join("data")), ("labels_path", &demo.join("labels"))]);
    let o = run_test(&engine, &prep, "prepare", &given, &out, &limits).await.unwrap();
    assert_eq!(o.status, TrialStatus::Ok, "{o:?}");
    assert_eq!(o.exit_code, Some(0));
    let data = o.outputs.iter().find(|x| x.name == "output_path").unwrap();
    assert_eq!(data.entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["cases.csv"]);

    // `statistics` on what `prepare` wrote: a mapping, shown as read.
    let prepared = mounts(&[
        ("data_path", &out.join("output_path")),
        ("labels_path", &out.join("output_labels_path")),
    ]);
    let o = run_test(&engine, &prep, "statistics", &prepared, &out, &limits).await.unwrap();
    assert_eq!(o.status, TrialStatus::Ok, "{o:?}");
    let stats = o.outputs[0].yaml.as_ref().expect("statistics read as YAML");
    assert_eq!(stats["cases"], MetricValue::Int(6));

    // The three together, on the project's own demo dataset.
    let outcome = compatibility_test(
        &engine,
        &demo,
        &prep,
        &model,
        &metrics,
        &work.path().join("compat"),
        &limits,
    )
    .await
    .unwrap();
    assert!(outcome.record(&[7; 32]).passed);
    assert_eq!(outcome.results["accuracy"], MetricValue::float(5.0 / 6.0));
    assert_eq!(outcome.results["sensitivity"], MetricValue::float(0.75));

    // Metrics over no predictions: NaN, which a site accepts as written.
    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let given = mounts(&[("predictions", &empty), ("labels", &demo.join("labels"))]);
    let o = run_test(&engine, &metrics, "evaluate", &given, &work.path().join("e"), &limits)
        .await
        .unwrap();
    assert_eq!(o.status, TrialStatus::Ok, "{o:?}");
    let results = o.outputs[0].yaml.as_ref().unwrap();
    assert!(results["accuracy"].as_f64().unwrap().is_nan(), "{results:?}");

    // A model given data it cannot read fails: the exit and the log's end say why.
    let bad = work.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("cases.csv"), "case,size\nc1,3\n").unwrap();
    let given = mounts(&[("data_path", &bad)]);
    let o =
        run_test(&engine, &model, "infer", &given, &work.path().join("i"), &limits).await.unwrap();
    assert_eq!(o.status, TrialStatus::Failed, "{o:?}");
    assert_eq!(o.exit_code, Some(1));
    assert!(o.log_tail.contains("KeyError: 'value'"), "{}", o.log_tail);
}

#[tokio::test]
async fn run_test_refuses_a_parameter_the_task_does_not_have() {
    let Some((engine, images)) = common::setup().await else { return };
    let metrics = common::example("metrics", &images.metrics);
    let work = tempfile::tempdir().unwrap();
    let given = mounts(&[("prediction", work.path())]);
    let e = run_test(&engine, &metrics, "evaluate", &given, work.path(), &common::quick_limits())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did you mean `predictions`?"), "{e}");
}
