//! Competing model: a soft threshold on one feature. `weights.yaml` (additional
//! files) names the feature, the threshold and a scale: p = sigmoid((x - t) / scale).

use examples::{
    FEATURES, Failure, main_with, parse_number, read_features, read_flat_yaml, sigmoid,
    write_predictions,
};

fn main() {
    main_with(
        || Some("infer".into()),
        |inv| {
            if inv.task != "infer" {
                return Err(Failure(format!("unknown task `{}`", inv.task)));
            }
            let w = read_flat_yaml(
                &inv.path("additional_files", "/mlcommons/volumes/additional_files")
                    .join("weights.yaml"),
            )?;
            let get =
                |k: &str| w.get(k).ok_or_else(|| Failure(format!("weights.yaml has no `{k}`")));
            let feature = get("feature")?;
            let j = FEATURES
                .iter()
                .position(|f| f == feature)
                .ok_or_else(|| Failure(format!("unknown feature `{feature}`")))?;
            let (t, scale) = (parse_number(get("threshold")?)?, parse_number(get("scale")?)?);
            if scale <= 0.0 {
                return Err(Failure("scale must be positive".into()));
            }
            let preds: Vec<(String, f64)> =
                read_features(&inv.path("data_path", "/mlcommons/volumes/data"))?
                    .into_iter()
                    .map(|(id, x)| (id, sigmoid((x[j] - t) / scale)))
                    .collect();
            eprintln!("{} predictions", preds.len());
            write_predictions(&inv.path("output_path", "/mlcommons/volumes/predictions"), &preds)
        },
    );
}
