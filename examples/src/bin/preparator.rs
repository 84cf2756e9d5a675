//! Example data preparator: tasks `prepare`, `sanity_check` and `statistics`.
//!
//! Raw layout: `<data_path>/cases.csv` (case_id and the 30 UCI features) and
//! `<labels_path>/diagnosis.csv` (case_id, `malignant` or `benign`). Prepared layout:
//! `<output_path>/features.csv` and `<output_labels_path>/labels.csv` (case_id, label
//! with malignant = 1). Cases with a missing or non-numeric feature are dropped.

use std::fmt::Write as _;
use std::path::Path;

use examples::{
    FEATURES, Failure, Invocation, Outcome, Table, main_with, read_features, read_flat_yaml,
    read_pairs, write_flat_yaml,
};

const RAW_DATA: &str = "/mlcommons/volumes/raw_data";
const RAW_LABELS: &str = "/mlcommons/volumes/raw_labels";
const DATA: &str = "/mlcommons/volumes/data";
const LABELS: &str = "/mlcommons/volumes/labels";
const PARAMETERS: &str = "/mlcommons/volumes/parameters/parameters_file.yaml";
const STATISTICS: &str = "/mlcommons/volumes/statistics/statistics.yaml";

fn main() {
    main_with(task_from_mounts, |inv| match inv.task.as_str() {
        "prepare" => prepare(inv),
        "sanity_check" => sanity_check(
            &inv.path("data_path", DATA),
            &inv.path("labels_path", LABELS),
            min_cases(inv)?,
        ),
        "statistics" => statistics(inv),
        other => Err(Failure(format!("unknown task `{other}`"))),
    });
}

/// With no task named, MedPerf's mounts tell which one this is: raw data is only
/// mounted for `prepare`, a statistics folder only for `statistics`.
fn task_from_mounts() -> Option<String> {
    let task = if Path::new(RAW_DATA).exists() {
        "prepare"
    } else if Path::new(STATISTICS).parent().is_some_and(Path::exists) {
        "statistics"
    } else {
        "sanity_check"
    };
    Some(task.into())
}

fn min_cases(inv: &Invocation) -> Result<usize, Failure> {
    let params = read_flat_yaml(&inv.path("parameters_file", PARAMETERS))?;
    Ok(params.get("min_cases").map(|v| v.parse()).transpose()?.unwrap_or(1))
}

fn prepare(inv: &Invocation) -> Outcome {
    let min = min_cases(inv)?;
    let raw = Table::read(&inv.path("data_path", RAW_DATA).join("cases.csv"))?;
    let diagnosis = Table::read(&inv.path("labels_path", RAW_LABELS).join("diagnosis.csv"))?;
    let (did, dcol) = (diagnosis.column("case_id")?, diagnosis.column("diagnosis")?);
    let mut labels = std::collections::BTreeMap::new();
    for r in &diagnosis.rows {
        let y = match r[dcol].as_str() {
            "malignant" => 1,
            "benign" => 0,
            other => {
                return Err(Failure(format!(
                    "case {}: diagnosis `{other}` is neither malignant nor benign",
                    r[did]
                )));
            }
        };
        labels.insert(r[did].clone(), y);
    }
    let id = raw.column("case_id")?;
    let cols: Vec<usize> = FEATURES.iter().map(|f| raw.column(f)).collect::<Result<_, _>>()?;
    let mut features = format!("case_id,{}\n", FEATURES.join(","));
    let mut label_out = String::from("case_id,label\n");
    let (mut kept, mut dropped) = (0usize, 0usize);
    for r in &raw.rows {
        let ok = cols.iter().all(|&c| r[c].parse::<f64>().is_ok_and(f64::is_finite));
        match (ok, labels.get(&r[id])) {
            (true, Some(y)) => {
                let values: Vec<&str> = cols.iter().map(|&c| r[c].as_str()).collect();
                let _ = writeln!(features, "{},{}", r[id], values.join(","));
                let _ = writeln!(label_out, "{},{y}", r[id]);
                kept += 1;
            }
            _ => dropped += 1,
        }
    }
    if kept < min {
        return Err(Failure(format!("{kept} usable cases; the benchmark needs at least {min}")));
    }
    let (out, out_labels) = (inv.path("output_path", DATA), inv.path("output_labels_path", LABELS));
    std::fs::write(out.join("features.csv"), features)?;
    std::fs::write(out_labels.join("labels.csv"), label_out)?;
    eprintln!("prepared {kept} cases, dropped {dropped}");
    Ok(())
}

fn sanity_check(data: &Path, labels: &Path, min: usize) -> Outcome {
    let features = read_features(data)?;
    let labels = read_pairs(&labels.join("labels.csv"), "label")?;
    if features.len() < min {
        return Err(Failure(format!("{} cases; at least {min} needed", features.len())));
    }
    if features.len() != labels.len() {
        return Err(Failure(format!(
            "{} feature rows but {} labels",
            features.len(),
            labels.len()
        )));
    }
    for (id, _) in &features {
        match labels.get(id) {
            Some(y) if *y == 0.0 || *y == 1.0 => {}
            Some(y) => return Err(Failure(format!("case {id}: label {y} is not 0 or 1"))),
            None => return Err(Failure(format!("case {id} has no label"))),
        }
    }
    eprintln!("sanity check passed on {} cases", features.len());
    Ok(())
}

fn statistics(inv: &Invocation) -> Outcome {
    let (data, labels) = (inv.path("data_path", DATA), inv.path("labels_path", LABELS));
    sanity_check(&data, &labels, min_cases(inv)?)?;
    let features = read_features(&data)?;
    let labels = read_pairs(&labels.join("labels.csv"), "label")?;
    let n = features.len() as f64;
    let malignant = labels.values().filter(|y| **y == 1.0).count();
    let mean = |f: &str| -> f64 {
        let j = FEATURES.iter().position(|x| *x == f).unwrap_or(0);
        features.iter().map(|(_, x)| x[j]).sum::<f64>() / n
    };
    let entries = vec![
        ("cases".to_string(), features.len().to_string()),
        ("malignant".to_string(), malignant.to_string()),
        ("benign".to_string(), (features.len() - malignant).to_string()),
        ("malignant_fraction".to_string(), format!("{:.4}", malignant as f64 / n)),
        ("mean_radius_mean".to_string(), format!("{:.4}", mean("mean_radius"))),
        ("worst_area_mean".to_string(), format!("{:.4}", mean("worst_area"))),
    ];
    write_flat_yaml(&inv.path("output_path", STATISTICS), &entries)
}
