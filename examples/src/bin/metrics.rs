//! Metrics container, task `evaluate`: AUC (Mann-Whitney, ties count half),
//! accuracy, sensitivity, specificity and F1 at the parameters file's `threshold`
//! (default 0.5), malignant being the positive class. Writes results.yaml.

use examples::{Failure, main_with, read_flat_yaml, read_pairs, write_flat_yaml};

fn main() {
    main_with(
        || Some("evaluate".into()),
        |inv| {
            if inv.task != "evaluate" {
                return Err(Failure(format!("unknown task `{}`", inv.task)));
            }
            let params = read_flat_yaml(
                &inv.path("parameters_file", "/mlcommons/volumes/parameters/parameters_file.yaml"),
            )?;
            let threshold: f64 =
                params.get("threshold").map(|v| v.parse()).transpose()?.unwrap_or(0.5);
            let preds = read_pairs(
                &inv.path("predictions", "/mlcommons/volumes/predictions").join("predictions.csv"),
                "probability",
            )?;
            let labels = read_pairs(
                &inv.path("labels", "/mlcommons/volumes/labels").join("labels.csv"),
                "label",
            )?;
            let mut pairs = Vec::with_capacity(labels.len());
            for (id, y) in &labels {
                let p =
                    preds.get(id).ok_or_else(|| Failure(format!("no prediction for case {id}")))?;
                pairs.push((*p, *y == 1.0));
            }
            if preds.len() != labels.len() {
                return Err(Failure(format!(
                    "{} predictions for {} labelled cases",
                    preds.len(),
                    labels.len()
                )));
            }
            let (pos, neg): (Vec<f64>, Vec<f64>) = (
                pairs.iter().filter(|(_, y)| *y).map(|(p, _)| *p).collect(),
                pairs.iter().filter(|(_, y)| !*y).map(|(p, _)| *p).collect(),
            );
            if pos.is_empty() || neg.is_empty() {
                return Err(Failure("AUC needs both malignant and benign cases".into()));
            }
            let mut wins = 0.0;
            for p in &pos {
                for n in &neg {
                    wins += if p > n {
                        1.0
                    } else if p == n {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
            let auc = wins / (pos.len() * neg.len()) as f64;
            let count = |want_pos: bool, pred_pos: bool| {
                pairs
                    .iter()
                    .filter(|(p, y)| *y == want_pos && (*p >= threshold) == pred_pos)
                    .count() as f64
            };
            let (tp, fn_, tn, fp) =
                (count(true, true), count(true, false), count(false, false), count(false, true));
            let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
            let entries = [
                ("auc", auc),
                ("accuracy", ratio(tp + tn, tp + tn + fp + fn_)),
                ("sensitivity", ratio(tp, tp + fn_)),
                ("specificity", ratio(tn, tn + fp)),
                ("f1", ratio(2.0 * tp, 2.0 * tp + fp + fn_)),
                ("cases", pairs.len() as f64),
            ]
            .map(|(k, v)| (k.to_string(), format!("{v:.6}")));
            write_flat_yaml(
                &inv.path("output_path", "/mlcommons/volumes/results/results.yaml"),
                &entries,
            )
        },
    );
}
