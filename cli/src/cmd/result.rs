//! `medmesh result`: submit, list and open results of benchmark executions.

use clap::Subcommand;

use super::{Ctx, benchmark_id, benchmarks, datasets};
use crate::ids::resolve;
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
            let st = s.state()?;
            let b = resolve(&benchmark, benchmarks(&st), "benchmark")?;
            let d = resolve(&data, &datasets(&s, &st), "dataset")?;
            let rep = workflow::run_benchmark(&s, &b, &d, None, true, false)?;
            for f in &rep.failed {
                eprintln!("model {} did not finish: {}", f.model.short(), f.reason);
            }
            let mut ids = Vec::new();
            for (m, run) in
                rep.completed.iter().filter(|(m, _)| workflow::model_approved(&st, &b, m))
            {
                ids.push(workflow::submit_result(&s, &b, &d, m, run)?.id);
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
            let st = s.state()?;
            let id = resolve(&id, st.results.iter().map(|r| r.id), "result")?;
            let view = st.results.iter().find(|r| r.id == id).expect("resolved from this list");
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
