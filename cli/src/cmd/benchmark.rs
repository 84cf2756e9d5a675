//! `medmesh benchmark`: submit, list, decide (admin), run, release (committee).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use protocol::record::{Decision, DetailsAudience, Disclosure, SharingPolicy};

use super::{Ctx, benchmark_id, container_id, dataset_id, parse_auto, parse_key, report};
use crate::output::{json, spinner, table};
use crate::workflow::{self, BenchmarkArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DetailsArg {
    /// Sealed to the committee and the dataset's owner.
    Committee,
    /// In the clear for everyone.
    Public,
}

/// A step such as 0.01 as millionths; refused unless it is at least one millionth.
fn precision_millionths(step: f64) -> anyhow::Result<u64> {
    let m = (step * 1e6).round();
    if !(1.0..=1e15).contains(&m) {
        anyhow::bail!(
            "--precision {step} must be a step between 0.000001 and 1e9 (e.g. 0.01 for two decimals)"
        );
    }
    Ok(m as u64)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PolicyArg {
    /// The model x dataset table.
    PerDataset,
    /// One figure per model over all datasets.
    Aggregate,
}

// Parsed once per process: boxing `Submit` to even out the variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum BenchmarkCmd {
    /// Submit a benchmark (runs the compatibility test first).
    Submit {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "")]
        docs_url: String,
        /// Demo dataset: a folder with paths.yaml, or a tarball of one.
        #[arg(long)]
        demo_dataset: PathBuf,
        #[arg(long)]
        data_preparator: String,
        #[arg(long)]
        reference_model: String,
        #[arg(long)]
        metrics: String,
        /// A committee member's public key (hex), or `me` for your own; repeat for
        /// each member.
        #[arg(long = "committee", required = true)]
        committee: Vec<String>,
        /// Members needed to approve an association or a release.
        #[arg(long)]
        threshold: u16,
        /// never, always, or allowlist:KEY,KEY
        #[arg(long, default_value = "never")]
        dataset_approval: String,
        /// never, always, or allowlist:KEY,KEY
        #[arg(long, default_value = "never")]
        model_approval: String,
        #[arg(long, value_enum, default_value = "per-dataset")]
        policy: PolicyArg,
        /// With --policy aggregate: datasets a figure must cover.
        #[arg(long, default_value_t = 2)]
        min_datasets: u16,
        /// Who reads datasets' details (name, description, location, statistics):
        /// the committee and each owner (sealed), or everyone.
        #[arg(long, value_enum, default_value = "committee")]
        dataset_details: DetailsArg,
        /// Round released values to this step (e.g. 0.01); 0.000001 keeps them as measured.
        #[arg(long, default_value_t = 0.000001)]
        precision: f64,
        /// Leave out of per-dataset releases the datasets with fewer cases.
        #[arg(long, default_value_t = 0)]
        min_cases: u64,
        /// A metric releases may show; repeat for each (default: every metric).
        /// Leave out counts (cases, correct...) that tie a value to a site's size.
        #[arg(long = "release-metric")]
        release_metrics: Vec<String>,
        #[arg(long, default_value = "auc")]
        rank_metric: String,
        #[arg(long)]
        lower_is_better: bool,
        /// Skip the compatibility test (not recommended).
        #[arg(long)]
        skip_test: bool,
    },
    /// List benchmarks.
    Ls,
    /// Show one benchmark.
    View { id: String },
    /// Approve a benchmark (admin).
    Approve { id: String },
    /// Reject a benchmark (admin).
    Reject { id: String },
    /// Run the reference model and every approved model on one of your datasets and
    /// submit the results.
    Run {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        data: String,
        /// Run only this model (an id, id prefix or name): the reference model or an
        /// approved one.
        #[arg(short, long)]
        model: Option<String>,
        /// Keep going when a model fails (its failure is reported).
        #[arg(long)]
        ignore_model_errors: bool,
        /// Run again even if finished.
        #[arg(long)]
        force: bool,
        /// Do not submit the results.
        #[arg(long)]
        no_submit: bool,
    },
    /// Publish the results the committee's sharing policy allows (committee).
    Release {
        #[arg(short, long)]
        benchmark: String,
        /// Keep watching and release again whenever new results arrive (Ctrl-C stops).
        #[arg(long)]
        auto_release: bool,
        /// How often to look for new results with --auto-release, in milliseconds.
        #[arg(long, default_value_t = 5_000)]
        interval_ms: u64,
    },
}

pub fn run(ctx: &Ctx, b: BenchmarkCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    match b {
        BenchmarkCmd::Submit {
            name,
            description,
            docs_url,
            demo_dataset,
            data_preparator,
            reference_model,
            metrics,
            committee,
            threshold,
            dataset_approval,
            model_approval,
            policy,
            min_datasets,
            dataset_details,
            precision,
            min_cases,
            release_metrics,
            rank_metric,
            lower_is_better,
            skip_test,
        } => {
            let args = BenchmarkArgs {
                name,
                description,
                docs_url,
                demo_dataset,
                data_preparator: container_id(&s, &data_preparator)?,
                reference_model: container_id(&s, &reference_model)?,
                metrics: container_id(&s, &metrics)?,
                committee: committee
                    .iter()
                    .map(|k| if k == "me" { Ok(s.me()) } else { parse_key(k) })
                    .collect::<anyhow::Result<_>>()?,
                threshold,
                dataset_auto_approval: parse_auto(&dataset_approval)?,
                model_auto_approval: parse_auto(&model_approval)?,
                sharing: match policy {
                    PolicyArg::PerDataset => SharingPolicy::PerDataset,
                    PolicyArg::Aggregate => SharingPolicy::Aggregate { min_datasets },
                },
                disclosure: Disclosure {
                    dataset_details: match dataset_details {
                        DetailsArg::Committee => DetailsAudience::Committee,
                        DetailsArg::Public => DetailsAudience::Public,
                    },
                    precision: precision_millionths(precision)?,
                    min_cases,
                    metrics: release_metrics,
                },
                rank_metric,
                higher_is_better: !lower_is_better,
                skip_test,
            };
            let pb = spinner("running the compatibility test with the reference model");
            let r = workflow::submit_benchmark(&s, &args);
            pb.finish_and_clear();
            let r = r?;
            report(
                ctx,
                "benchmark submitted; waiting for the admin's approval",
                &r.id,
                &serde_json::Value::Null,
            )
        }
        BenchmarkCmd::Ls => {
            let list = crate::views::benchmarks(s.api.as_ref())?;
            if ctx.json {
                return json(&list);
            }
            table(
                &["id", "name", "status", "committee", "policy", "metric"],
                list.iter()
                    .map(|b| {
                        vec![
                            b.id.short(),
                            b.benchmark.name.clone(),
                            b.status.label().into(),
                            format!("{} of {}", b.benchmark.threshold, b.benchmark.committee.len()),
                            match b.benchmark.sharing {
                                SharingPolicy::PerDataset => "per dataset".into(),
                                SharingPolicy::Aggregate { min_datasets } => {
                                    format!("aggregate (>= {min_datasets})")
                                }
                            },
                            b.benchmark.rank_metric.clone(),
                        ]
                    })
                    .collect(),
            )
        }
        BenchmarkCmd::View { id } => {
            let id = benchmark_id(&s, &id)?;
            json(&crate::views::benchmark(s.api(), &id)?)
        }
        BenchmarkCmd::Approve { id } => {
            let id = benchmark_id(&s, &id)?;
            let r = workflow::decide_benchmark(&s, id, Decision::Approve)?;
            report(ctx, "approval published", &r.id, &serde_json::Value::Null)
        }
        BenchmarkCmd::Reject { id } => {
            let id = benchmark_id(&s, &id)?;
            let r = workflow::decide_benchmark(&s, id, Decision::Reject)?;
            report(ctx, "rejection published", &r.id, &serde_json::Value::Null)
        }
        BenchmarkCmd::Run { benchmark, data, model, ignore_model_errors, force, no_submit } => {
            let b = benchmark_id(&s, &benchmark)?;
            let d = dataset_id(&s, &data)?;
            let only = model.map(|m| container_id(&s, &m)).transpose()?;
            let pb =
                spinner("running the reference model and every approved model, then the metrics");
            let rep = workflow::run_benchmark(&s, &b, &d, only, ignore_model_errors, force);
            pb.finish_and_clear();
            let rep = rep?;
            let rows = workflow::publish_run(&s, &b, &d, &rep, no_submit)?;
            let unfinished = rows.iter().filter(|r| r.status != "completed").count();
            if ctx.json {
                json(&rows)?;
            } else {
                table(
                    &["model", "name", "outcome", "execution", "result"],
                    rows.iter()
                        .map(|r| {
                            vec![
                                format!(
                                    "{}{}",
                                    r.model.short(),
                                    if r.reference { " (reference)" } else { "" }
                                ),
                                r.name.clone(),
                                match (&r.error, &r.results) {
                                    (Some(e), _) => format!("{}: {e}", r.status.replace('_', " ")),
                                    (None, Some(res)) => res
                                        .iter()
                                        .map(|(k, v)| format!("{k}={v:.3}"))
                                        .collect::<Vec<_>>()
                                        .join(" "),
                                    (None, None) => r.status.replace('_', " "),
                                },
                                match (&r.execution_dir, r.reused) {
                                    (Some(dir), true) => format!("reused {}", dir.display()),
                                    (Some(dir), false) => format!("ran into {}", dir.display()),
                                    (None, _) => r
                                        .log
                                        .as_ref()
                                        .map(|l| format!("log {}", l.display()))
                                        .unwrap_or_default(),
                                },
                                r.publication.clone(),
                            ]
                        })
                        .collect(),
                )?;
            }
            if unfinished > 0 && !ignore_model_errors {
                anyhow::bail!(
                    "{unfinished} of {} models did not finish (see above); fix them, or pass --ignore-model-errors to run the others anyway",
                    rows.len()
                );
            }
            Ok(())
        }
        BenchmarkCmd::Release { benchmark, auto_release, interval_ms } => {
            let b = benchmark_id(&s, &benchmark)?;
            if !auto_release {
                let r = workflow::release(&s, &b)?;
                return report(ctx, "release signed", &r.id, &serde_json::Value::Null);
            }
            let mut released = 0usize;
            loop {
                let p = [("benchmark", b.to_hex()), ("counts", "true".to_string())];
                let counting = crate::views::results_where(s.api(), &p)?.len();
                if counting > released {
                    released = counting;
                    let r = match workflow::release(&s, &b) {
                        Err(e) if e.downcast_ref::<workflow::NothingToRelease>().is_some() => {
                            eprintln!("{e}; waiting for more results");
                            continue;
                        }
                        r => r?,
                    };
                    report(
                        ctx,
                        &format!("release signed covering {counting} results"),
                        &r.id,
                        &serde_json::Value::Null,
                    )?;
                }
                std::thread::sleep(std::time::Duration::from_millis(interval_ms.max(100)));
            }
        }
    }
}
