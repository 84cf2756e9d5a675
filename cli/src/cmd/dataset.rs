//! `medmesh dataset`: prepare, register, mark operational, associate, check,
//! export and import datasets (only metadata ever leaves the site).

use std::path::PathBuf;

use clap::Subcommand;
use protocol::record::Subject;

use super::{Ctx, benchmark_id, dataset_id, report};
use crate::output::{json, spinner, table};
use crate::workflow;
use anyhow::Context as _;
use runner::dataset::PrepareEvent;

#[derive(Debug, Subcommand)]
pub enum DatasetCmd {
    /// Prepare raw data with a benchmark's data preparator (stays on this machine).
    Prepare {
        #[arg(short, long)]
        benchmark: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        data_path: PathBuf,
        #[arg(long)]
        labels_path: PathBuf,
    },
    /// Register a prepared dataset's metadata.
    Submit {
        #[arg(short, long)]
        benchmark: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "on site")]
        location: String,
        /// Let releases show this dataset's name (default: a pseudonym).
        #[arg(long)]
        public_name: bool,
    },
    /// Mark a dataset operational (its hash is recomputed).
    #[command(name = "set_operational", alias = "set-operational")]
    SetOperational { id: String },
    /// Request association with a benchmark (runs the compatibility test).
    Associate {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        data: String,
    },
    /// Re-hash a prepared dataset and compare with its registration.
    Check { id: String },
    /// Export a prepared dataset to a tarball (to move it between machines).
    Export {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a prepared dataset tarball under a local name.
    Import {
        tarball: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// List datasets, with the details you may read (the committee and the owner
    /// read sealed ones; others see "(sealed)").
    Ls {
        /// Only this benchmark's datasets (an id, id prefix or name).
        #[arg(short, long)]
        benchmark: Option<String>,
        /// Only your own datasets.
        #[arg(long)]
        mine: bool,
    },
    /// Show one dataset, with its details if you may read them.
    #[command(alias = "show")]
    View { id: String },
}

pub fn run(ctx: &Ctx, d: DatasetCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    match d {
        DatasetCmd::Prepare { benchmark, name, data_path, labels_path } => {
            let b = benchmark_id(&s, &benchmark)?;
            let pb = spinner("prepare");
            // MedPerf's report.yaml, as the preparator updates it, and each step.
            let on = |e: PrepareEvent| match e {
                PrepareEvent::Resuming { report } => pb.println(match report {
                    Some(r) => format!("resuming an interrupted preparation ({r})"),
                    None => "resuming an interrupted preparation".to_string(),
                }),
                PrepareEvent::Step(step) => pb.set_message(step.replace('_', " ")),
                PrepareEvent::Report(r) => pb.set_message(format!("prepare: {r}")),
            };
            let p = workflow::prepare_dataset(&s, &b, &name, &data_path, &labels_path, &on);
            pb.finish_and_clear();
            let p = p.context(
                "the preparation stopped; fix the cause and run the same command again: it \
                 resumes where the preparator's report says it stopped",
            )?;
            let v = serde_json::json!({ "name": name, "root": p.root, "prepared_hash": p.prepared_hash, "statistics": p.statistics });
            if ctx.json {
                return json(&v);
            }
            crate::say!(
                "prepared {name} ({}) in {}; register it with `medmesh dataset submit -b {} --name {name}`",
                p.prepared_hash.short(),
                p.root.display(),
                b.short()
            )?;
            Ok(())
        }
        DatasetCmd::Submit { benchmark, name, description, location, public_name } => {
            let b = benchmark_id(&s, &benchmark)?;
            let r = workflow::submit_dataset(&s, &b, &name, &description, &location, public_name)?;
            report(ctx, "dataset registered", &r.id, &serde_json::Value::Null)
        }
        DatasetCmd::SetOperational { id } => {
            let id = dataset_id(&s, &id)?;
            let r = workflow::set_operational(&s, &id)?;
            report(ctx, "dataset operational", &r.id, &serde_json::Value::Null)
        }
        DatasetCmd::Associate { benchmark, data } => {
            let b = benchmark_id(&s, &benchmark)?;
            let d = dataset_id(&s, &data)?;
            let pb = spinner("running the compatibility test on your prepared data");
            let out = workflow::associate(&s, &b, Subject::Dataset(d));
            pb.finish_and_clear();
            let (r, outcome) = out?;
            report(
                ctx,
                "association requested",
                &r.id,
                &serde_json::json!({ "compatibility_results": outcome.results }),
            )
        }
        DatasetCmd::Check { id } => {
            let id = dataset_id(&s, &id)?;
            let root = workflow::local_dataset(&s, &id)?;
            let view = crate::views::dataset(s.api(), &id)?;
            runner::dataset::check_dataset(&root, &view.prepared_hash)?;
            report(ctx, "dataset matches its registered hash", &id, &serde_json::Value::Null)
        }
        DatasetCmd::Export { id, out } => {
            let id = dataset_id(&s, &id)?;
            let root = workflow::local_dataset(&s, &id)?;
            let h = runner::dataset::export_dataset(&root, &out)?;
            report(
                ctx,
                &format!("exported to {} (prepared hash {})", out.display(), h.short()),
                &id,
                &serde_json::Value::Null,
            )
        }
        DatasetCmd::Import { tarball, name } => {
            let root = workflow::dataset_root(&s, &name);
            let p = runner::dataset::import_dataset(&tarball, &root, None)?;
            crate::say!("imported {name} ({}) into {}", p.prepared_hash.short(), root.display())?;
            Ok(())
        }
        DatasetCmd::Ls { benchmark, mine } => {
            // A paged, indexed query on the node, not the whole state.
            let b = benchmark.as_deref().map(|b| super::benchmark_id(&s, b)).transpose()?;
            let me = s.me();
            let list = crate::views::datasets(s.api.as_ref(), b.as_ref(), mine.then_some(&me))?;
            // The details this user may read: public ones, or sealed ones it opens.
            let rows: Vec<_> = list
                .iter()
                .map(|d| (d, workflow::dataset_details(&s, d).map(|x| x.details)))
                .collect();
            if ctx.json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(d, details)| serde_json::json!({ "dataset": d, "details": details }))
                    .collect();
                return json(&v);
            }
            table(
                &["id", "name", "benchmark", "state", "owner", "cases", "prepared hash"],
                rows.iter()
                    .map(|(d, details)| {
                        vec![
                            d.id.short(),
                            details.as_ref().map_or("(sealed)".into(), |x| x.name.clone()),
                            d.dataset.benchmark.short(),
                            format!("{:?}", d.state).to_lowercase(),
                            d.owner.short(),
                            details
                                .as_ref()
                                .and_then(|x| x.num_cases)
                                .map_or("-".into(), |n| n.to_string()),
                            d.prepared_hash.short(),
                        ]
                    })
                    .collect(),
            )
        }
        DatasetCmd::View { id } => {
            let id = dataset_id(&s, &id)?;
            let view = crate::views::dataset(s.api(), &id)?;
            let details = workflow::dataset_details(&s, &view).map(|x| x.details);
            json(&serde_json::json!({
                "dataset": view,
                "details": details,
                "details_readable": details.is_some(),
            }))
        }
    }
}
