//! `medmesh test`: the compatibility test (preparator -> model -> metrics).

use clap::Subcommand;

use super::{Ctx, benchmark_id, container_id};
use crate::output::{json, spinner, table};
use crate::workflow;

#[derive(Debug, Subcommand)]
pub enum TestCmd {
    /// Run the compatibility test: preparator -> model -> metrics on the demo dataset.
    Run {
        #[arg(short, long)]
        benchmark: String,
        /// The model to test (default: the benchmark's reference model).
        #[arg(short, long)]
        model: Option<String>,
    },
}

/// Run `medmesh test ...`.
pub fn run(ctx: &Ctx, t: TestCmd) -> anyhow::Result<()> {
    match t {
        TestCmd::Run { benchmark, model } => {
            let s = ctx.session()?;
            let b = benchmark_id(&s, &benchmark)?;
            let bench = crate::views::benchmark(s.api(), &b)?.benchmark;
            let m = match model {
                Some(m) => container_id(&s, &m)?,
                None => bench.reference_model,
            };
            let pb = spinner("preparator -> model -> metrics on the demo dataset");
            let outcome = workflow::compatibility_test(&s, &bench, &m, None);
            pb.finish_and_clear();
            let outcome = outcome?;
            if ctx.json {
                return json(
                    &serde_json::json!({ "passed": true, "results": outcome.results, "results_hash": outcome.results_hash }),
                );
            }
            crate::say!("compatibility test passed")?;
            table(
                &["metric", "value"],
                outcome.results.iter().map(|(k, v)| vec![k.clone(), format!("{v:.4}")]).collect(),
            )
        }
    }
}
