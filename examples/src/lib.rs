//! What the example containers share: the MLCube/MedPerf argument convention, a small
//! CSV reader, and `key: value` YAML in and out.
//!
//! Each example binary is called as `<binary> <task> [--name=path]...`. A parameter
//! that is not given on the command line falls back to the mount path MedPerf's
//! container config gives it (`/mlcommons/volumes/...`), so the same image runs under
//! both manifest formats.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The feature columns, in the order of the UCI data.
pub const FEATURES: [&str; 30] = [
    "mean_radius",
    "mean_texture",
    "mean_perimeter",
    "mean_area",
    "mean_smoothness",
    "mean_compactness",
    "mean_concavity",
    "mean_concave_points",
    "mean_symmetry",
    "mean_fractal_dimension",
    "radius_error",
    "texture_error",
    "perimeter_error",
    "area_error",
    "smoothness_error",
    "compactness_error",
    "concavity_error",
    "concave_points_error",
    "symmetry_error",
    "fractal_dimension_error",
    "worst_radius",
    "worst_texture",
    "worst_perimeter",
    "worst_area",
    "worst_smoothness",
    "worst_compactness",
    "worst_concavity",
    "worst_concave_points",
    "worst_symmetry",
    "worst_fractal_dimension",
];

/// Largest CSV or YAML file an example reads.
pub const INPUT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// A failure that ends the task with exit code 1 and a message on stderr.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

pub type Outcome = Result<(), Failure>;

/// The task name and the `--name=path` parameters of one invocation.
pub struct Invocation {
    pub task: String,
    params: BTreeMap<String, String>,
}

impl Invocation {
    /// Parse `std::env::args()`. With no task named (a MedPerf container config
    /// without `run_args.command` runs the image as it is), `default_task` picks one.
    pub fn from_env(default_task: fn() -> Option<String>) -> Result<Self, Failure> {
        let mut args = std::env::args().skip(1).peekable();
        let named = args.next_if(|a| !a.starts_with("--"));
        let task = named
            .or_else(default_task)
            .ok_or_else(|| Failure("usage: <task> [--name=path]...".into()))?;
        let mut params = BTreeMap::new();
        for a in args {
            let (k, v) = a
                .strip_prefix("--")
                .and_then(|kv| kv.split_once('='))
                .ok_or_else(|| Failure(format!("argument `{a}` is not --name=path")))?;
            params.insert(k.to_string(), v.to_string());
        }
        Ok(Self { task, params })
    }

    /// The path of parameter `name`, or MedPerf's default mount path for it.
    pub fn path(&self, name: &str, default_mount: &str) -> PathBuf {
        PathBuf::from(self.params.get(name).map(String::as_str).unwrap_or(default_mount))
    }
}

/// Run `f`, print its failure and exit non-zero. `default_task` names the task when
/// the command line does not.
pub fn main_with(default_task: fn() -> Option<String>, f: impl FnOnce(&Invocation) -> Outcome) {
    let result = Invocation::from_env(default_task).and_then(|inv| {
        eprintln!("task {}", inv.task);
        f(&inv)
    });
    if let Err(Failure(msg)) = result {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

/// Read a whole text file, bounded.
pub fn read_text(path: &Path) -> Result<String, Failure> {
    let len =
        std::fs::metadata(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?.len();
    if len > INPUT_BYTES_MAX {
        return Err(Failure(format!("{}: {len} bytes; at most {INPUT_BYTES_MAX}", path.display())));
    }
    std::fs::read_to_string(path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// A CSV table with a header row. No quoting: the example data has none.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn read(path: &Path) -> Result<Self, Failure> {
        let text = read_text(path)?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| Failure(format!("{}: empty file", path.display())))?
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for (i, l) in lines.enumerate() {
            let row: Vec<String> = l.split(',').map(|s| s.trim().to_string()).collect();
            if row.len() != header.len() {
                return Err(Failure(format!(
                    "{} line {}: {} fields, header has {}",
                    path.display(),
                    i + 2,
                    row.len(),
                    header.len()
                )));
            }
            rows.push(row);
        }
        Ok(Self { header, rows })
    }

    pub fn column(&self, name: &str) -> Result<usize, Failure> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Failure(format!("no column `{name}`")))
    }
}

/// Feature vectors by case id, from a prepared `features.csv`.
pub fn read_features(dir: &Path) -> Result<Vec<(String, Vec<f64>)>, Failure> {
    let t = Table::read(&dir.join("features.csv"))?;
    let id = t.column("case_id")?;
    let cols: Vec<usize> = FEATURES.iter().map(|f| t.column(f)).collect::<Result<_, _>>()?;
    t.rows
        .iter()
        .map(|r| {
            let x = cols.iter().map(|&c| parse_number(&r[c])).collect::<Result<Vec<_>, _>>()?;
            Ok((r[id].clone(), x))
        })
        .collect()
}

/// A `case_id,<value>` file as a map.
pub fn read_pairs(path: &Path, value_column: &str) -> Result<BTreeMap<String, f64>, Failure> {
    let t = Table::read(path)?;
    let id = t.column("case_id")?;
    let v = t.column(value_column)?;
    let mut out = BTreeMap::new();
    for r in &t.rows {
        if out.insert(r[id].clone(), parse_number(&r[v])?).is_some() {
            return Err(Failure(format!("{}: case {} appears twice", path.display(), r[id])));
        }
    }
    Ok(out)
}

pub fn parse_number(s: &str) -> Result<f64, Failure> {
    let v: f64 = s.parse().map_err(|_| Failure(format!("`{s}` is not a number")))?;
    if !v.is_finite() {
        return Err(Failure(format!("`{s}` is not finite")));
    }
    Ok(v)
}

/// Flat `key: value` YAML (the parameters files), comments and blank lines skipped.
pub fn read_flat_yaml(path: &Path) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for line in read_text(path)?.lines() {
        let line = line.split('#').next().unwrap_or("").trim_end();
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| Failure(format!("{}: `{line}` is not key: value", path.display())))?;
        out.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
    }
    Ok(out)
}

/// Write `key: value` lines (values are numbers or plain words).
pub fn write_flat_yaml(path: &Path, entries: &[(String, String)]) -> Outcome {
    let mut s = String::new();
    for (k, v) in entries {
        let _ = writeln!(s, "{k}: {v}");
    }
    std::fs::write(path, s).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// Predictions as `case_id,probability`.
pub fn write_predictions(dir: &Path, preds: &[(String, f64)]) -> Outcome {
    let mut s = String::from("case_id,probability\n");
    for (id, p) in preds {
        let _ = writeln!(s, "{id},{p:.6}");
    }
    let path = dir.join("predictions.csv");
    std::fs::write(&path, s).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}
