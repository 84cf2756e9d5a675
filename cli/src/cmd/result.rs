//! `medmesh result`: submit, list and open results of benchmark executions.

use clap::Subcommand;

use super::{Ctx, benchmark_id, dataset_id};
use crate::output::{json, table};
use crate::workflow;

#[derive(Debug, Subcommand)]
pub enum ResultCmd {
    /// Submit the finished results of `benchmark run` for one dataset.
    Submit {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        data: String,
    },
    /// List results.
    Ls {
        #[arg(short, long)]
        benchmark: Option<String>,
    },
    /// Show one result (its metrics if you may read them).
    View { id: String },
}

pub fn run(ctx: &Ctx, r: ResultCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    match r {
        ResultCmd::Submit { benchmark, data } => {
            let b = benchmark_id(&s, &benchmark)?;
            let d = dataset_id(&s, &data)?;
            let rep = workflow::run_benchmark(&s, &b, &d, None, true, false)?;
            for f in &rep.failed {
                eprintln!("model {} did not finish: {}", f.model.short(), f.reason);
            }
            let mut ids = Vec::new();
            for (m, run) in &rep.completed {
                if workflow::model_approved(&s, &b, m)? {
                    ids.push(workflow::submit_result(&s, &b, &d, m, run)?.id);
                }
            }
            if ctx.json {
                return json(&ids);
            }
            crate::say!("{} results submitted", ids.len())?;
            Ok(())
        }
        ResultCmd::Ls { benchmark } => {
            // A paged, indexed query on the node, not the whole state.
            let b = benchmark.as_deref().map(|b| benchmark_id(&s, b)).transpose()?;
            let list = crate::views::results(s.api.as_ref(), b.as_ref())?;
            if ctx.json {
                return json(&list);
            }
            table(
                &["id", "benchmark", "model", "dataset", "counts"],
                list.iter()
                    .map(|r| {
                        vec![
                            r.id.short(),
                            r.benchmark.short(),
                            r.model.short(),
                            r.dataset.short(),
                            if r.counts {
                                "yes".into()
                            } else {
                                format!("no: {}", r.reason.as_deref().unwrap_or(""))
                            },
                        ]
                    })
                    .collect(),
            )
        }
        ResultCmd::View { id } => {
            let id = crate::views::resolve(s.api(), "result", "result", &id)?;
            let view = crate::views::result(s.api(), &id)?;
            // As the metrics container wrote them (a non-finite float as
            // {"$float": ".nan"}, see protocol::metric).
            let metrics = match workflow::open_result(&s, &id) {
                Ok((_, m)) => serde_json::to_value(m)?,
                Err(e) => serde_json::Value::String(format!("sealed ({e})")),
            };
            json(&serde_json::json!({ "result": view, "metrics": metrics }))
        }
    }
}
