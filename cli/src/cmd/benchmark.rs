//! `medmesh benchmark`: submit, list, decide (admin), run, release (committee).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use protocol::record::{Decision, SharingPolicy};

use super::{Ctx, containers, parse_auto, parse_key, report};
use crate::ids::resolve;
use crate::output::{json, spinner, table};
use crate::workflow::{self, BenchmarkArgs};

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
        /// A committee member's public key (hex); repeat for each member.
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
    /// Run every approved model on one of your datasets and submit the results.
    Run {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        data: String,
        /// Keep going when a model fails.
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
            rank_metric,
            lower_is_better,
            skip_test,
        } => {
            let st = s.state()?;
            let args = BenchmarkArgs {
                name,
                description,
                docs_url,
                demo_dataset,
                data_preparator: resolve(&data_preparator, containers(&st), "container")?,
                reference_model: resolve(&reference_model, containers(&st), "container")?,
                metrics: resolve(&metrics, containers(&st), "container")?,
                committee: committee.iter().map(|k| parse_key(k)).collect::<anyhow::Result<_>>()?,
                threshold,
                dataset_auto_approval: parse_auto(&dataset_approval)?,
                model_auto_approval: parse_auto(&model_approval)?,
                sharing: match policy {
                    PolicyArg::PerDataset => SharingPolicy::PerDataset,
                    PolicyArg::Aggregate => SharingPolicy::Aggregate { min_datasets },
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
            let st = s.state()?;
            if ctx.json {
                return json(&st.benchmarks.values().collect::<Vec<_>>());
            }
            table(
                &["id", "name", "status", "committee", "policy", "metric"],
                st.benchmarks
                    .values()
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
            let st = s.state()?;
            let id = resolve(&id, st.benchmarks.keys().copied(), "benchmark")?;
            json(&st.benchmarks[&id])
        }
        BenchmarkCmd::Approve { id } => {
            let st = s.state()?;
            let id = resolve(&id, st.benchmarks.keys().copied(), "benchmark")?;
            let r = workflow::decide_benchmark(&s, id, Decision::Approve)?;
            report(ctx, "approval published", &r.id, &serde_json::Value::Null)
        }
        BenchmarkCmd::Reject { id } => {
            let st = s.state()?;
            let id = resolve(&id, st.benchmarks.keys().copied(), "benchmark")?;
            let r = workflow::decide_benchmark(&s, id, Decision::Reject)?;
            report(ctx, "rejection published", &r.id, &serde_json::Value::Null)
        }
        BenchmarkCmd::Run { benchmark, data, ignore_model_errors, force, no_submit } => {
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            let d = resolve(&data, st.datasets.keys().copied(), "dataset")?;
            let pb = spinner("running every approved model, then the metrics");
            let rep = workflow::run_benchmark(&s, &b, &d, ignore_model_errors, force);
            pb.finish_and_clear();
            let rep = rep?;
            let mut rows = Vec::new();
            for (m, run) in &rep.completed {
                let id = if no_submit {
                    None
                } else {
                    Some(workflow::submit_result(&s, &b, &d, m, run)?.id)
                };
                rows.push(serde_json::json!({ "model": m, "results": run.results, "result_record": id, "reused": run.reused }));
            }
            for (m, e) in &rep.failed {
                rows.push(serde_json::json!({ "model": m, "error": format!("{e:#}") }));
            }
            if ctx.json {
                return json(&rows);
            }
            table(
                &["model", "outcome", "result"],
                rep.completed
                    .iter()
                    .zip(rows.iter())
                    .map(|((m, run), row)| {
                        vec![
                            m.short(),
                            run.results
                                .iter()
                                .map(|(k, v)| format!("{k}={v:.3}"))
                                .collect::<Vec<_>>()
                                .join(" "),
                            row["result_record"]
                                .as_str()
                                .map(|s| s[..12].to_string())
                                .unwrap_or_else(|| "not submitted".into()),
                        ]
                    })
                    .chain(
                        rep.failed
                            .iter()
                            .map(|(m, e)| vec![m.short(), format!("failed: {e}"), String::new()]),
                    )
                    .collect(),
            )
        }
        BenchmarkCmd::Release { benchmark, auto_release, interval_ms } => {
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            if !auto_release {
                let r = workflow::release(&s, &b)?;
                return report(ctx, "release signed", &r.id, &serde_json::Value::Null);
            }
            let mut released = 0usize;
            loop {
                let st = s.state()?;
                let counting = st.results.iter().filter(|r| r.benchmark == b && r.counts).count();
                if counting > released {
                    let r = workflow::release(&s, &b)?;
                    released = counting;
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
