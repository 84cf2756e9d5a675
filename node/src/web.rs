//! The read-only leaderboard pages: HTML with an SVG chart (the ranking metric per
//! model with its bootstrap interval) and, where the sharing policy gives
//! per-dataset values, a model x dataset heatmap. Rendered from the derived state
//! only, so every node serves the same page for the same records.

use std::fmt::Write as _;

use protocol::fold::{BenchmarkView, Leaderboard, State, Status};
use protocol::metric::Figure;
use protocol::record::SharingPolicy;

/// Escape text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn fixed(v: i64) -> String {
    format!("{:.4}", v as f64 / 1e6)
}

/// A released figure: four decimals, or `NaN` (ranked last, drawn without a bar).
fn figure(v: Figure) -> String {
    v.to_string()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2430}\
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccd;padding:.3rem .6rem;text-align:right}\
th{background:#eef}td.l,th.l{text-align:left}.muted{color:#667}svg text{font-size:12px}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// The page listing every benchmark with its state.
pub fn benchmarks_page(state: &State) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>MedMesh benchmarks</h1><p class=\"muted\">network {} &middot; {} records &middot; state {}</p>",
        state.network.short(),
        state.records,
        state.hash.short()
    );
    b.push_str("<table id=\"benchmarks\"><tr><th class=\"l\">benchmark</th><th class=\"l\">status</th><th>models</th><th>datasets</th><th>results</th><th class=\"l\">leaderboard</th></tr>");
    for v in state.benchmarks.values() {
        let count = |model: bool| {
            state
                .associations
                .iter()
                .filter(|a| {
                    a.benchmark == v.id
                        && a.status == Status::Approved
                        && matches!(a.subject, protocol::record::Subject::Model(_)) == model
                })
                .count()
        };
        let results = state.results.iter().filter(|r| r.benchmark == v.id && r.counts).count();
        let link = if state.leaderboards.contains_key(&v.id) {
            format!("<a href=\"/benchmarks/{}/leaderboard\">leaderboard</a>", v.id)
        } else {
            "<span class=\"muted\">not released yet</span>".into()
        };
        let _ = write!(
            b,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{link}</td></tr>",
            escape(&v.benchmark.name),
            v.status.label(),
            count(true),
            count(false),
            results
        );
    }
    b.push_str("</table>");
    page("MedMesh benchmarks", &b)
}

/// The SVG bar chart: one bar per model with its interval as a whisker.
pub fn chart_svg(lb: &Leaderboard) -> String {
    const ROW: i64 = 28;
    const LEFT: i64 = 220;
    const WIDTH: i64 = 420;
    let height = ROW * lb.rows.len() as i64 + 30;
    // Zoom on the values: models often differ in the third decimal.
    let numbers = || lb.rows.iter().filter_map(|r| Some((r, r.value.millionths()?)));
    let top = numbers().map(|(r, v)| r.ci_high.unwrap_or(v).max(v)).max().unwrap_or(1_000_000);
    let bottom = numbers().map(|(r, v)| r.ci_low.unwrap_or(v).min(v)).min().unwrap_or(0);
    let pad = ((top - bottom) / 5).max(1_000);
    let (lo, hi) = ((bottom - pad).max(0).min(bottom), top + pad);
    let span = (hi - lo).max(1);
    let x =
        |v: i64| LEFT + 4 + ((v - lo).max(0) as i128 * (WIDTH - 4) as i128 / span as i128) as i64;
    let mut s = format!(
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{} per model\">",
        LEFT + WIDTH + 90,
        escape(&lb.metric)
    );
    for (i, r) in lb.rows.iter().enumerate() {
        let y = 10 + ROW * i as i64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}. {}</text><rect class=\"bar\" x=\"{LEFT}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"#4a7bd0\"><title>{}</title></rect>",
            LEFT - 8,
            y + 15,
            r.rank,
            escape(&r.model_name),
            r.value.millionths().map_or(0, |v| x(v) - LEFT),
            ROW - 8,
            figure(r.value)
        );
        if let (Some(lo), Some(up)) = (r.ci_low, r.ci_high) {
            let cy = y + (ROW - 8) / 2;
            let _ = write!(
                s,
                "<line class=\"ci\" x1=\"{}\" x2=\"{}\" y1=\"{cy}\" y2=\"{cy}\" stroke=\"#1d2430\" stroke-width=\"2\"/>",
                x(lo),
                x(up)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            r.value.millionths().map_or(LEFT, |v| x(r.ci_high.unwrap_or(v).max(v))) + 6,
            y + 15,
            figure(r.value)
        );
    }
    let axis_y = 10 + ROW * lb.rows.len() as i64 + 12;
    let _ = write!(
        s,
        "<text class=\"muted\" x=\"{LEFT}\" y=\"{axis_y}\">{}</text><text x=\"{}\" y=\"{axis_y}\" text-anchor=\"end\">{}</text>",
        fixed(lo),
        LEFT + WIDTH,
        fixed(hi)
    );
    s.push_str("</svg>");
    s
}

/// The model x dataset heatmap (per-dataset policies only).
pub fn heatmap(lb: &Leaderboard) -> String {
    if lb.cells.is_empty() {
        return String::new();
    }
    let (lo, hi) = lb
        .cells
        .iter()
        .filter_map(|c| c.value.millionths())
        .fold((i64::MAX, i64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    let mut s = String::from("<table id=\"heatmap\"><tr><th class=\"l\">model</th>");
    for d in &lb.datasets {
        let _ = write!(s, "<th>{}</th>", escape(d));
    }
    s.push_str("</tr>");
    for r in &lb.rows {
        let _ = write!(s, "<tr><td class=\"l\">{}</td>", escape(&r.model_name));
        for d in &lb.datasets {
            match lb.cells.iter().find(|c| c.model == r.model && &c.dataset == d) {
                Some(c) if c.value == Figure::NaN => s.push_str("<td class=\"muted\">NaN</td>"),
                Some(c) => {
                    let v = c.value.millionths().unwrap_or(lo);
                    let t = if hi > lo { (v - lo) as f64 / (hi - lo) as f64 } else { 1.0 };
                    let light = 92.0 - 45.0 * t;
                    let ink = if t > 0.55 { "#fff" } else { "#1d2430" };
                    let _ = write!(
                        s,
                        "<td class=\"cell\" style=\"background:hsl(215,60%,{light:.0}%);color:{ink}\">{}</td>",
                        figure(c.value)
                    );
                }
                None => s.push_str("<td class=\"muted\">-</td>"),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The leaderboard page of one benchmark.
pub fn leaderboard_page(bench: &BenchmarkView, lb: Option<&Leaderboard>) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p><a href=\"/\">all benchmarks</a></p><h1>{}</h1><p>{}</p>",
        escape(&bench.benchmark.name),
        escape(&bench.benchmark.description)
    );
    let Some(lb) = lb else {
        b.push_str("<p id=\"empty\">No results have been released for this benchmark yet.</p>");
        return page(&bench.benchmark.name, &b);
    };
    let policy = match lb.policy {
        SharingPolicy::PerDataset => "per dataset".to_string(),
        SharingPolicy::Aggregate { min_datasets } => {
            format!("aggregate over at least {min_datasets} datasets")
        }
    };
    let _ = write!(
        b,
        "<p class=\"muted\">ranked by {} ({}) &middot; sharing policy: {policy} &middot; release round {}</p>",
        escape(&lb.metric),
        if lb.higher_is_better { "higher is better" } else { "lower is better" },
        lb.release_round
    );
    b.push_str(&chart_svg(lb));
    b.push_str("<table id=\"leaderboard\"><tr><th>rank</th><th class=\"l\">model</th><th>value</th><th>95% interval</th><th>mean rank</th><th>datasets</th></tr>");
    for r in &lb.rows {
        let ci = match (r.ci_low, r.ci_high) {
            (Some(l), Some(h)) => format!("[{}, {}]", fixed(l), fixed(h)),
            _ => "-".into(),
        };
        let mr = r
            .mean_rank_milli
            .map(|m| format!("{:.2}", m as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{ci}</td><td>{mr}</td><td>{}</td></tr>",
            r.rank,
            escape(&r.model_name),
            figure(r.value),
            r.datasets
        );
    }
    b.push_str("</table>");
    b.push_str(&heatmap(lb));
    page(&bench.benchmark.name, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::testkit::Workflow;

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn the_page_has_a_bar_per_model_a_whisker_per_interval_and_the_heatmap() {
        let w = Workflow::complete();
        let s = protocol::fold(&w.root, &w.records);
        let lb = &s.leaderboards[&w.benchmark];
        let html = leaderboard_page(&s.benchmarks[&w.benchmark], Some(lb));
        assert_eq!(html.matches("class=\"bar\"").count(), 2);
        assert_eq!(html.matches("class=\"ci\"").count(), 2);
        assert_eq!(html.matches("class=\"cell\"").count(), 6);
        assert!(html.contains("model-1"));
    }

    #[test]
    fn a_benchmark_without_a_release_says_so() {
        let w = Workflow::people().with_benchmark(|_| {});
        let s = protocol::fold(&w.root, &w.records);
        let html = leaderboard_page(&s.benchmarks[&w.benchmark], None);
        assert!(html.contains("No results have been released"));
        assert!(benchmarks_page(&s).contains("not released yet"));
    }
}
