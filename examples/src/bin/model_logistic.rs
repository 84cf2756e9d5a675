//! Reference model: logistic regression on the 30 standardised features. Weights
//! (`weights.csv`: feature, mean, std, coef; a `bias` row) come as additional files.

use examples::{
    FEATURES, Failure, Table, main_with, parse_number, read_features, sigmoid, write_predictions,
};

fn main() {
    main_with(
        || Some("infer".into()),
        |inv| {
            if inv.task != "infer" {
                return Err(Failure(format!("unknown task `{}`", inv.task)));
            }
            let weights = Table::read(
                &inv.path("additional_files", "/mlcommons/volumes/additional_files")
                    .join("weights.csv"),
            )?;
            let (name, mean, std, coef) = (
                weights.column("feature")?,
                weights.column("mean")?,
                weights.column("std")?,
                weights.column("coef")?,
            );
            let mut w = vec![(0.0, 1.0, 0.0); FEATURES.len()];
            let mut bias = None;
            for r in &weights.rows {
                let row =
                    (parse_number(&r[mean])?, parse_number(&r[std])?, parse_number(&r[coef])?);
                if r[name] == "bias" {
                    bias = Some(row.2);
                } else {
                    let j = FEATURES
                        .iter()
                        .position(|f| *f == r[name])
                        .ok_or_else(|| Failure(format!("unknown feature `{}`", r[name])))?;
                    if row.1 <= 0.0 {
                        return Err(Failure(format!("feature {}: std must be positive", r[name])));
                    }
                    w[j] = row;
                }
            }
            let bias = bias.ok_or_else(|| Failure("weights.csv has no bias row".into()))?;
            let preds: Vec<(String, f64)> =
                read_features(&inv.path("data_path", "/mlcommons/volumes/data"))?
                    .into_iter()
                    .map(|(id, x)| {
                        let z: f64 =
                            x.iter().zip(&w).map(|(v, (m, s, c))| (v - m) / s * c).sum::<f64>()
                                + bias;
                        (id, sigmoid(z))
                    })
                    .collect();
            eprintln!("{} predictions", preds.len());
            write_predictions(&inv.path("output_path", "/mlcommons/volumes/predictions"), &preds)
        },
    );
}
