//! `medmesh container new`: a small Python project that follows MedPerf's container
//! contract, for a data preparator, a model or a metrics container.
//!
//! ```text
//! <dir>/container_config.yaml   MedPerf's config: container_type, image, tasks
//! <dir>/parameters.yaml         the parameters file, mounted read-only
//! <dir>/project/<kind>.py       the tasks, Python's standard library only
//! <dir>/Dockerfile              on a Debian (bookworm) Python base
//! <dir>/additional_files/       a model's extra files (weights), empty to start
//! <dir>/demo/                   a tiny demo dataset with MedPerf's paths.yaml
//! ```
//!
//! The three kinds work together on the demo data: cases are rows `case,value` in
//! CSV files, labels are rows `case,label`; the preparator copies and checks them,
//! the model predicts `1` when `value >= threshold`, the metrics container writes
//! the accuracy.

use std::path::{Path, PathBuf};

use crate::error::RunnerError;

/// What a container is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Preparator,
    Model,
    Metrics,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "preparator" | "data_preparator" => Ok(Kind::Preparator),
            "model" => Ok(Kind::Model),
            "metrics" => Ok(Kind::Metrics),
            other => Err(format!("`{other}` is not a kind: use preparator, model or metrics")),
        }
    }
}

impl Kind {
    fn script(self) -> &'static str {
        match self {
            Kind::Preparator => "preparator.py",
            Kind::Model => "model.py",
            Kind::Metrics => "metrics.py",
        }
    }
}

/// The base image the Dockerfile names. The generated code needs Python 3 and its
/// standard library only.
pub const BASE_IMAGE: &str = "python:3.11-slim-bookworm";

/// Write a new project for `kind` into `dir` (created; it must not exist or be
/// empty), with `image` as the config's image. Returns the files written.
pub fn new_project(kind: Kind, image: &str, dir: &Path) -> Result<Vec<PathBuf>, RunnerError> {
    let bad = |reason: String| RunnerError::Invalid { path: dir.into(), reason };
    if image.is_empty()
        || image.chars().any(|c| c.is_whitespace() || c.is_ascii_uppercase())
        || image.len() > protocol::limits::NAME_BYTES_MAX
    {
        return Err(bad(format!(
            "`{image}` is not an image reference: lowercase, no spaces, like my-org/model:0.1"
        )));
    }
    if dir.exists() && std::fs::read_dir(dir).map_err(RunnerError::io(dir))?.next().is_some() {
        return Err(bad("is not empty; give a new folder".into()));
    }
    let script = kind.script();
    let mut files: Vec<(String, String)> = vec![
        ("container_config.yaml".into(), config(kind, image)),
        ("parameters.yaml".into(), parameters(kind).into()),
        (format!("project/{script}"), python(kind)),
        ("Dockerfile".into(), dockerfile()),
        ("demo/paths.yaml".into(), "data_path: data\nlabels_path: labels\n".into()),
        ("demo/data/cases.csv".into(), DEMO_CASES.into()),
        ("demo/labels/labels.csv".into(), DEMO_LABELS.into()),
        ("README.md".into(), readme(kind, image)),
    ];
    if kind == Kind::Model {
        files.push(("additional_files/README.md".into(), ADDITIONAL_FILES_README.into()));
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(RunnerError::io(parent))?;
        }
        std::fs::write(&path, text).map_err(RunnerError::io(&path))?;
        written.push(path);
    }
    Ok(written)
}

const DEMO_CASES: &str = "case,value\nc1,0.9\nc2,0.2\nc3,0.7\nc4,0.4\nc5,0.6\nc6,0.1\n";
const DEMO_LABELS: &str = "case,label\nc1,1\nc2,0\nc3,1\nc4,1\nc5,1\nc6,0\n";
const ADDITIONAL_FILES_README: &str = "Files the model needs at inference (weights), mounted \
read-only at /mlcommons/volumes/additional_files. Register them with \
`medmesh container submit --additional-files additional_files/`.\n";

fn volume(name: &str, mount: &str, kind: &str) -> String {
    format!("      {name}:\n        mount_path: {mount}\n        type: {kind}\n")
}

fn task(name: &str, script: &str, inputs: &[String], outputs: &[String]) -> String {
    let mut s = format!(
        "  {name}:\n    run_args:\n      command: python3 /project/{script} {name}\n    input_volumes:\n"
    );
    inputs.iter().for_each(|v| s.push_str(v));
    if !outputs.is_empty() {
        s.push_str("    output_volumes:\n");
        outputs.iter().for_each(|v| s.push_str(v));
    }
    s
}

const PARAMETERS_MOUNT: &str = "/mlcommons/volumes/parameters/parameters.yaml";

fn config(kind: Kind, image: &str) -> String {
    let script = kind.script();
    let params = volume("parameters_file", PARAMETERS_MOUNT, "file");
    let mut s = format!(
        "# MedPerf container config, written by `medmesh container new`.\ncontainer_type: DockerImage\nimage: {image}\ntasks:\n"
    );
    match kind {
        Kind::Preparator => {
            let prepared = [
                volume("data_path", "/mlcommons/volumes/data", "directory"),
                volume("labels_path", "/mlcommons/volumes/labels", "directory"),
                params.clone(),
            ];
            s += &task(
                "prepare",
                script,
                &[
                    volume("data_path", "/mlcommons/volumes/raw_data", "directory"),
                    volume("labels_path", "/mlcommons/volumes/raw_labels", "directory"),
                    params.clone(),
                ],
                &[
                    volume("output_path", "/mlcommons/volumes/data", "directory"),
                    volume("output_labels_path", "/mlcommons/volumes/labels", "directory"),
                ],
            );
            s += &task("sanity_check", script, &prepared, &[]);
            s += &task(
                "statistics",
                script,
                &prepared,
                &[volume("output_path", "/mlcommons/volumes/statistics/statistics.yaml", "file")],
            );
        }
        Kind::Model => {
            s += &task(
                "infer",
                script,
                &[
                    volume("data_path", "/mlcommons/volumes/data", "directory"),
                    params,
                    volume("additional_files", "/mlcommons/volumes/additional_files", "directory"),
                ],
                &[volume("output_path", "/mlcommons/volumes/predictions", "directory")],
            );
        }
        Kind::Metrics => {
            s += &task(
                "evaluate",
                script,
                &[
                    volume("predictions", "/mlcommons/volumes/predictions", "directory"),
                    volume("labels", "/mlcommons/volumes/labels", "directory"),
                    params,
                ],
                &[volume("output_path", "/mlcommons/volumes/results/results.yaml", "file")],
            );
        }
    }
    s
}

fn parameters(kind: Kind) -> &'static str {
    match kind {
        Kind::Preparator => "# Read by project/preparator.py.\nmin_cases: 1\n",
        Kind::Model => "# Read by project/model.py.\nthreshold: 0.5\n",
        Kind::Metrics => "# Read by project/metrics.py.\npositive_label: 1\n",
    }
}

fn dockerfile() -> String {
    format!(
        "# A Debian (bookworm) base with Python 3. MedPerf runs the command that\n\
         # container_config.yaml gives each task; the sandbox has no network, a\n\
         # read-only root, HOME=/tmp and the site's uid.\n\
         FROM {BASE_IMAGE}\n\
         ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1\n\
         COPY project /project\n"
    )
}

fn readme(kind: Kind, image: &str) -> String {
    let task = match kind {
        Kind::Preparator => {
            "prepare data_path=demo/data labels_path=demo/labels --parameters parameters.yaml"
        }
        Kind::Model => {
            "infer data_path=demo/data --parameters parameters.yaml --additional-files additional_files"
        }
        Kind::Metrics => {
            "evaluate predictions=PREDICTIONS labels=demo/labels --parameters parameters.yaml"
        }
    };
    format!(
        "# {image}\n\nWritten by `medmesh container new`. Build, try one task as a site would run it, register:\n\n\
         ```sh\ndocker build -t {image} .\nmedmesh container run-test --manifest container_config.yaml --task {task}\n\
         medmesh container submit --name NAME --manifest container_config.yaml --parameters parameters.yaml\n```\n"
    )
}

const PY_COMMON: &str = r##"import csv
import math
import os
import sys


def parameters(path="/mlcommons/volumes/parameters/parameters.yaml"):
    """The flat `key: value` parameters file (no YAML library needed)."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if ":" in line:
                    key, value = line.split(":", 1)
                    out[key.strip()] = value.strip().strip('"')
    return out


def rows(folder):
    """Every row of every CSV file in `folder`, as dicts."""
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".csv"):
            with open(os.path.join(folder, name), newline="") as f:
                out.extend(csv.DictReader(f))
    return out


def yaml_number(x):
    """A number as YAML writes it (.nan, .inf, -.inf included)."""
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    return repr(float(x))


def main(tasks):
    if len(sys.argv) < 2 or sys.argv[1] not in tasks:
        sys.exit("usage: %s {%s}" % (sys.argv[0], ",".join(tasks)))
    tasks[sys.argv[1]]()
"##;

fn python(kind: Kind) -> String {
    let body = match kind {
        Kind::Preparator => PY_PREPARATOR,
        Kind::Model => PY_MODEL,
        Kind::Metrics => PY_METRICS,
    };
    format!("{PY_COMMON}\n{body}")
}

const PY_PREPARATOR: &str = r##"
RAW_DATA = "/mlcommons/volumes/raw_data"
RAW_LABELS = "/mlcommons/volumes/raw_labels"
DATA = "/mlcommons/volumes/data"
LABELS = "/mlcommons/volumes/labels"
STATISTICS = "/mlcommons/volumes/statistics/statistics.yaml"


def copy_csv(src, dst):
    for name in sorted(os.listdir(src)):
        if name.endswith(".csv"):
            with open(os.path.join(src, name), "rb") as f, open(os.path.join(dst, name), "wb") as g:
                g.write(f.read())


def prepare():
    """Raw data and labels -> the benchmark's format (here: the same CSV files)."""
    copy_csv(RAW_DATA, DATA)
    copy_csv(RAW_LABELS, LABELS)


def sanity_check():
    """A non-zero exit fails the preparation."""
    cases = rows(DATA)
    minimum = int(parameters().get("min_cases", "1"))
    if len(cases) < minimum:
        sys.exit("%d cases, fewer than min_cases %d" % (len(cases), minimum))
    labelled = {r["case"] for r in rows(LABELS)}
    missing = [r["case"] for r in cases if r["case"] not in labelled]
    if missing:
        sys.exit("cases without a label: %s" % ", ".join(missing))


def statistics():
    """A non-empty YAML mapping; the dataset record carries it."""
    cases = rows(DATA)
    labels = [r["label"] for r in rows(LABELS)]
    with open(STATISTICS, "w") as f:
        f.write("cases: %d\n" % len(cases))
        f.write("positives: %d\n" % labels.count("1"))


if __name__ == "__main__":
    main({"prepare": prepare, "sanity_check": sanity_check, "statistics": statistics})
"##;

const PY_MODEL: &str = r##"
DATA = "/mlcommons/volumes/data"
ADDITIONAL_FILES = "/mlcommons/volumes/additional_files"
PREDICTIONS = "/mlcommons/volumes/predictions"


def infer():
    """Prepared data -> predictions (labels are never mounted for a model)."""
    threshold = float(parameters().get("threshold", "0.5"))
    # Weights would be read from ADDITIONAL_FILES; it is mounted even when empty.
    with open(os.path.join(PREDICTIONS, "predictions.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["case", "prediction"])
        for r in rows(DATA):
            out.writerow([r["case"], 1 if float(r["value"]) >= threshold else 0])


if __name__ == "__main__":
    main({"infer": infer})
"##;

const PY_METRICS: &str = r##"
PREDICTIONS = "/mlcommons/volumes/predictions"
LABELS = "/mlcommons/volumes/labels"
RESULTS = "/mlcommons/volumes/results/results.yaml"


def evaluate():
    """Predictions and labels -> results.yaml, a non-empty mapping of metrics."""
    positive = parameters().get("positive_label", "1")
    predicted = {r["case"]: r["prediction"] for r in rows(PREDICTIONS)}
    labels = {r["case"]: r["label"] for r in rows(LABELS)}
    scored = [c for c in labels if c in predicted]
    right = sum(1 for c in scored if predicted[c] == labels[c])
    positives = [c for c in scored if labels[c] == positive]
    found = sum(1 for c in positives if predicted[c] == positive)
    nan = float("nan")
    with open(RESULTS, "w") as f:
        f.write("accuracy: %s\n" % yaml_number(right / len(scored) if scored else nan))
        f.write("sensitivity: %s\n" % yaml_number(found / len(positives) if positives else nan))
        f.write("cases: %d\n" % len(scored))


if __name__ == "__main__":
    main({"evaluate": evaluate})
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_writes_a_config_the_contract_accepts() {
        for kind in [Kind::Preparator, Kind::Model, Kind::Metrics] {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("p");
            new_project(kind, "my-org/thing:0.1", &root).unwrap();
            let spec = crate::load_manifest(&root.join("container_config.yaml")).unwrap();
            assert_eq!(spec.image, "my-org/thing:0.1");
            assert!(root.join("Dockerfile").exists() && root.join("demo/paths.yaml").exists());
            let df = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
            assert!(df.contains(&format!("FROM {BASE_IMAGE}")), "{df}");
        }
    }

    #[test]
    fn a_project_is_never_written_over_files_or_with_a_bad_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep"), "x").unwrap();
        let e = new_project(Kind::Model, "m:1", dir.path()).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        let e = new_project(Kind::Model, "My Model", &dir.path().join("n")).unwrap_err();
        assert!(e.to_string().contains("not an image reference"), "{e}");
        assert_eq!(
            "metric".parse::<Kind>().unwrap_err(),
            "`metric` is not a kind: use preparator, model or metrics"
        );
    }
}
