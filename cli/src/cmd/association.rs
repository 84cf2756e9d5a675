//! `medmesh association`: list associations; the committee's decisions on them.

use anyhow::bail;
use clap::{Args, Subcommand};
use protocol::RecordId;
use protocol::record::{Decision, Subject};

use super::{Ctx, benchmark_id, container_id, dataset_id_in, report};
use crate::output::{json, table};
use crate::workflow;

#[derive(Debug, Args)]
pub struct AssocTarget {
    #[arg(short, long)]
    benchmark: String,
    #[arg(short, long, conflicts_with = "model", required_unless_present = "model")]
    data: Option<String>,
    #[arg(short, long)]
    model: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AssociationCmd {
    /// List associations.
    Ls {
        #[arg(short, long)]
        benchmark: Option<String>,
    },
    /// Approve an association (committee).
    Approve {
        #[command(flatten)]
        target: AssocTarget,
        /// Model priority (higher runs first).
        #[arg(long)]
        priority: Option<i32>,
    },
    /// Reject an association (committee).
    Reject {
        #[command(flatten)]
        target: AssocTarget,
    },
    /// Set a model's priority (committee; re-approves with the priority).
    #[command(name = "set_priority", alias = "set-priority")]
    SetPriority {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        model: String,
        #[arg(long)]
        priority: i32,
    },
}

fn target(s: &crate::workflow::Session, t: &AssocTarget) -> anyhow::Result<(RecordId, Subject)> {
    let b = benchmark_id(s, &t.benchmark)?;
    let subject = match (&t.data, &t.model) {
        (Some(d), _) => Subject::Dataset(dataset_id_in(s, d, Some(&b))?),
        (None, Some(m)) => Subject::Model(container_id(s, m)?),
        (None, None) => bail!("give --data or --model"),
    };
    Ok((b, subject))
}

/// `association ls`: a paged, indexed query on the node, not the whole state.
fn ls(ctx: &Ctx, s: &crate::workflow::Session, benchmark: Option<&str>) -> anyhow::Result<()> {
    let b = benchmark.map(|b| benchmark_id(s, b)).transpose()?;
    let list = crate::views::associations(s.api.as_ref(), b.as_ref())?;
    if ctx.json {
        return json(&list);
    }
    table(
        &["benchmark", "kind", "subject", "status", "approvals", "priority"],
        list.iter()
            .map(|a| {
                let (kind, id) = match a.subject {
                    Subject::Dataset(d) => ("dataset", d),
                    Subject::Model(m) => ("model", m),
                };
                vec![
                    a.benchmark.short(),
                    kind.into(),
                    id.short(),
                    format!("{}{}", a.status.label(), if a.auto_approved { " (auto)" } else { "" }),
                    a.approvals.len().to_string(),
                    a.priority.to_string(),
                ]
            })
            .collect(),
    )
}

pub fn run(ctx: &Ctx, a: AssociationCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    match a {
        AssociationCmd::Ls { benchmark } => ls(ctx, &s, benchmark.as_deref()),
        AssociationCmd::Approve { target: t, priority } => {
            let (b, subj) = target(&s, &t)?;
            let r = workflow::decide_association(&s, b, subj, Decision::Approve, priority)?;
            report(ctx, "approval published", &r.id, &serde_json::Value::Null)
        }
        AssociationCmd::Reject { target: t } => {
            let (b, subj) = target(&s, &t)?;
            let r = workflow::decide_association(&s, b, subj, Decision::Reject, None)?;
            report(ctx, "rejection published", &r.id, &serde_json::Value::Null)
        }
        AssociationCmd::SetPriority { benchmark, model, priority } => {
            let t = AssocTarget { benchmark, data: None, model: Some(model) };
            let (b, subj) = target(&s, &t)?;
            let r = workflow::decide_association(&s, b, subj, Decision::Approve, Some(priority))?;
            report(ctx, "priority published", &r.id, &serde_json::Value::Null)
        }
    }
}
