//! `medmesh leaderboard`: a benchmark's leaderboard, from the committee's releases.

use protocol::RecordId;

use super::Ctx;
use crate::output::{json, millionths, table};

/// Run `medmesh leaderboard -b BENCHMARK`.
pub fn run(ctx: &Ctx, benchmark: &str) -> anyhow::Result<()> {
    let s = ctx.session()?;
    // Indexed queries on the node (a lookup, one benchmark, one leaderboard),
    // not the whole state.
    let b = super::benchmark_id(&s, benchmark)?;
    let view = crate::views::benchmark(s.api(), &b)?;
    let lb = crate::views::leaderboard(s.api(), &b)?;
    print(ctx, Some(view.benchmark.name.as_str()), &b, lb.as_ref())
}

fn print(
    ctx: &Ctx,
    name: Option<&str>,
    b: &RecordId,
    lb: Option<&protocol::fold::Leaderboard>,
) -> anyhow::Result<()> {
    let Some(lb) = lb else {
        if ctx.json {
            return json(&serde_json::Value::Null);
        }
        crate::say!(
            "no results released yet for benchmark {}; the committee publishes them with `medmesh benchmark release`",
            b.short()
        )?;
        return Ok(());
    };
    if ctx.json {
        return json(lb);
    }
    crate::say!(
        "leaderboard of {} by {} ({}), release round {}",
        name.unwrap_or("?"),
        lb.metric,
        if lb.higher_is_better { "higher is better" } else { "lower is better" },
        lb.release_round
    )?;
    leaderboard_table(lb, true)
}

/// The leaderboard as a table (with model ids when `ids`).
pub fn leaderboard_table(lb: &protocol::fold::Leaderboard, ids: bool) -> anyhow::Result<()> {
    let mut header = vec!["rank", "model"];
    if ids {
        header.push("id");
    }
    header.extend([lb.metric.as_str(), "95% interval", "mean rank", "datasets"]);
    table(
        &header,
        lb.rows
            .iter()
            .map(|r| {
                let mut row = vec![r.rank.to_string(), r.model_name.clone()];
                if ids {
                    row.push(r.model.short());
                }
                row.extend([
                    r.value.to_string(),
                    match (r.ci_low, r.ci_high) {
                        (Some(l), Some(h)) => format!("[{}, {}]", millionths(l), millionths(h)),
                        _ => "-".into(),
                    },
                    r.mean_rank_milli
                        .map(|m| format!("{:.2}", m as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into()),
                    r.datasets.to_string(),
                ]);
                row
            })
            .collect(),
    )
}
