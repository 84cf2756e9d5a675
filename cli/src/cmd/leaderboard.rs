//! `medmesh leaderboard`: a benchmark's leaderboard, from the committee's releases.

use protocol::{RecordId, State};

use super::Ctx;
use crate::ids::resolve;
use crate::output::{json, millionths, table};

/// Run `medmesh leaderboard -b BENCHMARK`.
pub fn run(ctx: &Ctx, benchmark: &str) -> anyhow::Result<()> {
    let s = ctx.session()?;
    // Two indexed queries on the node (the benchmarks, one leaderboard), not the
    // whole state.
    let list = crate::views::benchmarks(s.api.as_ref())?;
    let b =
        resolve(benchmark, list.iter().map(|b| (b.id, b.benchmark.name.as_str())), "benchmark")?;
    let name = list.iter().find(|v| v.id == b).map(|v| v.benchmark.name.as_str());
    let lb = crate::views::leaderboard(s.api.as_ref(), &b)?;
    print(ctx, name, &b, lb.as_ref())
}

/// Print a benchmark's leaderboard from a state the caller holds.
pub fn leaderboard(ctx: &Ctx, st: &State, b: &RecordId) -> anyhow::Result<()> {
    let name = st.benchmarks.get(b).map(|v| v.benchmark.name.as_str());
    print(ctx, name, b, st.leaderboards.get(b))
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
