//! `medmesh container new` and `medmesh container run-test`, as an author uses
//! them: no node, no network; the real binary and the real Docker engine.

mod common;

use std::path::Path;

use common::*;

#[test]
fn container_new_writes_a_project_the_contract_accepts_and_never_overwrites() {
    let t = TempDir::new("container-new");
    let home = t.0.join("home");
    for kind in ["preparator", "model", "metrics"] {
        let dir = t.0.join(kind);
        let o = ok(
            &home,
            &["--json", "container", "new", "--kind", kind, "--out", dir.to_str().unwrap()],
        );
        let v = json(&o);
        assert_eq!(v["image"], format!("{kind}:0.1"));
        let spec = runner::load_manifest(&dir.join("container_config.yaml")).unwrap();
        assert_eq!(spec.image, format!("{kind}:0.1"));
        for f in ["Dockerfile", "parameters.yaml", "demo/paths.yaml", "README.md"] {
            assert!(dir.join(f).exists(), "{kind}: {f}");
        }
        let again =
            medmesh(&home, &["container", "new", "--kind", kind, "--out", dir.to_str().unwrap()]);
        assert!(!again.status.success());
        assert!(stderr(&again).contains("is not empty"), "{}", stderr(&again));
    }
    let o = medmesh(&home, &["container", "new", "--kind", "metric", "--out", "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("use preparator, model or metrics"), "{}", stderr(&o));
}

/// The example preparator, model and metrics run one task each, as a site would,
/// chained through the folders run-test writes; a bad parameter name and a failing
/// task are reported with a non-zero exit.
#[test]
fn run_test_runs_one_task_in_the_sandbox_and_shows_what_a_site_sees() {
    let engine = medmesh_cli::workflow::engine().expect("a Docker engine");
    medmesh_cli::workflow::block_on(runner::examples::build_example_images(&engine, &workspace()))
        .unwrap()
        .expect("the example images build");
    let t = TempDir::new("run-test");
    let home = t.0.join("home");
    let ex = workspace().join("examples");
    let demo = ex.join("data/demo/raw");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        medmesh(&home, &args)
    };

    let prep_out = t.0.join("prep");
    let o = run(vec![
        "--json".into(),
        "container".into(),
        "run-test".into(),
        "--manifest".into(),
        s(&ex.join("preparator/container_config.yaml")),
        "--task".into(),
        "prepare".into(),
        "--parameters".into(),
        s(&ex.join("preparator/parameters.yaml")),
        "--out".into(),
        s(&prep_out),
        format!("data_path={}", s(&demo.join("data"))),
        format!("labels_path={}", s(&demo.join("labels"))),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["exit_code"], 0);
    assert!(!v["outputs"][0]["entries"].as_array().unwrap().is_empty(), "{v}");

    let model_out = t.0.join("model");
    let o = run(vec![
        "container".into(),
        "run-test".into(),
        "--manifest".into(),
        s(&ex.join("model_logistic/container_config.yaml")),
        "--task".into(),
        "infer".into(),
        "--parameters".into(),
        s(&ex.join("model_logistic/parameters.yaml")),
        "--additional-files".into(),
        s(&ex.join("model_logistic/additional_files")),
        "--out".into(),
        s(&model_out),
        format!("data_path={}", s(&prep_out.join("output_path"))),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("task infer of medmesh/example-model-logistic:1"), "{text}");
    assert!(text.contains(": ok, exit 0"), "{text}");

    let o = run(vec![
        "--json".into(),
        "container".into(),
        "run-test".into(),
        "--manifest".into(),
        s(&ex.join("metrics/container_config.yaml")),
        "--task".into(),
        "evaluate".into(),
        "--parameters".into(),
        s(&ex.join("metrics/parameters.yaml")),
        "--out".into(),
        s(&t.0.join("metrics")),
        format!("predictions={}", s(&model_out.join("output_path"))),
        format!("labels={}", s(&prep_out.join("output_labels_path"))),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert!(v["outputs"][0]["yaml"]["auc"].as_f64().unwrap() > 0.8, "{v}");

    // A misspelt parameter: named, with the nearest one.
    let o = run(vec![
        "container".into(),
        "run-test".into(),
        "--manifest".into(),
        s(&ex.join("metrics/container_config.yaml")),
        "--task".into(),
        "evaluate".into(),
        format!("prediction={}", s(&model_out.join("output_path"))),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("did you mean `predictions`?"), "{}", stderr(&o));

    // Labels that do not match the predictions: the container fails, the exit and
    // the log say so, and the command exits non-zero.
    let o = run(vec![
        "--json".into(),
        "container".into(),
        "run-test".into(),
        "--manifest".into(),
        s(&ex.join("metrics/container_config.yaml")),
        "--task".into(),
        "evaluate".into(),
        "--parameters".into(),
        s(&ex.join("metrics/parameters.yaml")),
        "--out".into(),
        s(&t.0.join("bad")),
        format!("predictions={}", s(&prep_out.join("output_labels_path"))),
        format!("labels={}", s(&prep_out.join("output_labels_path"))),
    ]);
    assert!(!o.status.success());
    let v = json(&o);
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["exit_code"].as_i64().unwrap() != 0, "{v}");
    assert!(stderr(&o).contains("see the log at"), "{}", stderr(&o));
}
