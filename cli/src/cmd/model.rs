//! `medmesh model`: request a model's association with a benchmark.

use clap::Subcommand;
use protocol::record::Subject;

use super::{Ctx, benchmarks, containers, report};
use crate::ids::resolve;
use crate::output::spinner;
use crate::workflow;

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Request association of your model with a benchmark (runs the compatibility test).
    Associate {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        model: String,
    },
}

/// Run `medmesh model ...`.
pub fn run(ctx: &Ctx, m: ModelCmd) -> anyhow::Result<()> {
    match m {
        ModelCmd::Associate { benchmark, model } => {
            let s = ctx.session()?;
            let st = s.state()?;
            let b = resolve(&benchmark, benchmarks(&st), "benchmark")?;
            let m = resolve(&model, containers(&st), "container")?;
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
    }
}
