//! `medmesh model`: request a model's association with a benchmark; for private
//! models, grant and revoke their key (MedPerf's `grant_access` and
//! `revoke_user_access`).

use clap::Subcommand;
use protocol::record::Subject;

use super::{Ctx, benchmark_id, container_id, dataset_id, report};
use crate::output::{json, spinner, table};
use crate::workflow::{self, GrantOutcome};

/// How often `model grant --follow` looks for newly approved datasets.
const FOLLOW_INTERVAL_MS_DEFAULT: u64 = 5_000;

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Request association of your model with a benchmark (runs the compatibility test).
    Associate {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        model: String,
    },
    /// Grant your private model's key to the owner of every dataset approved in a
    /// benchmark the model is approved in and not granted yet (or only --dataset).
    /// Each grant is a record sealed to that data owner alone.
    Grant {
        /// The private model (name or id prefix).
        model: String,
        /// Only this dataset (id prefix; names are sealed to the committee).
        #[arg(short, long)]
        dataset: Option<String>,
        /// Keep running: grant each dataset as soon as its association is
        /// approved (with -y; stop with Ctrl-C).
        #[arg(long, conflicts_with = "dataset")]
        follow: bool,
        /// How often --follow looks for new approvals, in milliseconds.
        #[arg(long, default_value_t = FOLLOW_INTERVAL_MS_DEFAULT)]
        interval_ms: u64,
    },
    /// Stop granting your private model's key: to --dataset, or to every dataset.
    /// Sites granted before keep the key; submit a new version to re-key.
    Revoke {
        /// The private model (name or id prefix).
        model: String,
        /// Only this dataset (id prefix).
        #[arg(short, long)]
        dataset: Option<String>,
    },
}

/// Run `medmesh model ...`.
pub fn run(ctx: &Ctx, m: ModelCmd) -> anyhow::Result<()> {
    match m {
        ModelCmd::Associate { benchmark, model } => {
            let s = ctx.session()?;
            let b = benchmark_id(&s, &benchmark)?;
            let m = container_id(&s, &model)?;
            let pb = spinner("running the compatibility test on the demo dataset");
            let out = workflow::associate(&s, &b, Subject::Model(m));
            pb.finish_and_clear();
            let (r, outcome) = out?;
            report(
                ctx,
                "association requested",
                &r.id,
                &serde_json::json!({ "compatibility_results": outcome.results }),
            )
        }
        ModelCmd::Grant { model, dataset, follow, interval_ms } => {
            let s = ctx.session()?;
            let m = container_id(&s, &model)?;
            let d = dataset.map(|d| dataset_id(&s, &d)).transpose()?;
            if !follow {
                let out = workflow::grant_model(&s, &m, d)?;
                return show_grants(ctx, &out);
            }
            loop {
                let out = workflow::grant_model(&s, &m, None)?;
                let new: Vec<GrantOutcome> =
                    out.into_iter().filter(|o| o.record.is_some()).collect();
                if !new.is_empty() {
                    show_grants(ctx, &new)?;
                }
                std::thread::sleep(std::time::Duration::from_millis(interval_ms.max(100)));
            }
        }
        ModelCmd::Revoke { model, dataset } => {
            let s = ctx.session()?;
            let m = container_id(&s, &model)?;
            let d = dataset.map(|d| dataset_id(&s, &d)).transpose()?;
            let r = workflow::revoke_model(&s, &m, d)?;
            report(ctx, "grants revoked", &r.id, &serde_json::Value::Null)
        }
    }
}

fn show_grants(ctx: &Ctx, out: &[GrantOutcome]) -> anyhow::Result<()> {
    if ctx.json {
        return json(&out);
    }
    if out.is_empty() {
        crate::say!(
            "no dataset to grant: none is approved yet in a benchmark this model is approved in"
        )?;
        return Ok(());
    }
    table(
        &["dataset", "benchmark", "owner", "status", "grant"],
        out.iter()
            .map(|o| {
                vec![
                    o.dataset.short(),
                    o.benchmark.short(),
                    o.grantee.short(),
                    o.status.replace('_', " "),
                    o.record.map(|r| r.short()).unwrap_or_default(),
                ]
            })
            .collect(),
    )
}
