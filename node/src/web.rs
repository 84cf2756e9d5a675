//! The read-only leaderboard pages: HTML with the chart of the ranking metric
//! (each model a point with its bootstrap interval, on an axis that says where it
//! starts) and, where the sharing policy gives per-dataset values, the model x
//! dataset heatmap ([`crate::charts`]). Rendered from the derived state only, so
//! every node serves the same page for the same records; maud templates, so
//! every name is escaped by construction.

use maud::{DOCTYPE, Markup, html};
use protocol::fold::{BenchmarkView, Leaderboard, State, Status};
use protocol::record::{SharingPolicy, Subject};

use crate::charts;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#10151f}\
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #c5cbd6;padding:.3rem .6rem;text-align:right}\
th{background:#eef2f8}td.l,th.l{text-align:left}.muted{color:#4a5568}figcaption{color:#4a5568;font-size:.9rem}";

fn fixed(v: i64) -> String {
    format!("{:.4}", v as f64 / 1e6)
}

fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (STYLE) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// The page listing every benchmark with its state.
pub fn benchmarks_page(state: &State) -> String {
    let count = |b: &BenchmarkView, model: bool| {
        state
            .associations
            .iter()
            .filter(|a| {
                a.benchmark == b.id
                    && a.status == Status::Approved
                    && matches!(a.subject, Subject::Model(_)) == model
            })
            .count()
    };
    page(
        "MedMesh benchmarks",
        html! {
            h1 { "MedMesh benchmarks" }
            p.muted {
                "network " (state.network.short()) " · " (state.records) " records · state " (state.hash.short())
            }
            table #benchmarks {
                tr {
                    th.l scope="col" { "benchmark" } th.l scope="col" { "status" } th scope="col" { "models" }
                    th scope="col" { "datasets" } th scope="col" { "results" } th.l scope="col" { "leaderboard" }
                }
                @for v in state.benchmarks.values() {
                    tr {
                        td.l { (v.benchmark.name) }
                        td.l { (v.status.label()) }
                        td { (count(v, true)) }
                        td { (count(v, false)) }
                        td { (state.results.iter().filter(|r| r.benchmark == v.id && r.counts).count()) }
                        td.l {
                            @if state.leaderboards.contains_key(&v.id) {
                                a href={ "/benchmarks/" (v.id) "/leaderboard" } { "leaderboard" }
                            } @else {
                                span.muted { "not released yet" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The leaderboard page of one benchmark.
pub fn leaderboard_page(bench: &BenchmarkView, lb: Option<&Leaderboard>) -> String {
    let head = html! {
        p { a href="/" { "all benchmarks" } }
        h1 { (bench.benchmark.name) }
        p { (bench.benchmark.description) }
    };
    let Some(lb) = lb else {
        return page(
            &bench.benchmark.name,
            html! { (head) p #empty { "No results have been released for this benchmark yet." } },
        );
    };
    let policy = match lb.policy {
        SharingPolicy::PerDataset => "per dataset".to_string(),
        SharingPolicy::Aggregate { min_datasets } => {
            format!("aggregate over at least {min_datasets} datasets")
        }
    };
    page(
        &bench.benchmark.name,
        html! {
            (head)
            p.muted {
                "ranked by " (lb.metric) " (" (if lb.higher_is_better { "higher is better" } else { "lower is better" })
                ") · sharing policy: " (policy) " · release round " (lb.release_round)
            }
            (charts::interval_chart(lb))
            table #leaderboard {
                tr {
                    th scope="col" { "rank" } th.l scope="col" { "model" } th scope="col" { "value" }
                    th scope="col" { "95% interval" } th scope="col" { "mean rank" } th scope="col" { "datasets" }
                }
                @for r in &lb.rows {
                    tr {
                        td { (r.rank) }
                        td.l { (r.model_name) }
                        td { (r.value.to_string()) }
                        td {
                            @match (r.ci_low, r.ci_high) {
                                (Some(l), Some(h)) => { "[" (fixed(l)) ", " (fixed(h)) "]" }
                                _ => { "-" }
                            }
                        }
                        td { (r.mean_rank_milli.map(|m| format!("{:.2}", m as f64 / 1000.0)).unwrap_or_else(|| "-".into())) }
                        td { (r.datasets) }
                    }
                }
            }
            (charts::heatmap(lb))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::testkit::Workflow;

    #[test]
    fn the_page_has_a_point_per_model_an_interval_each_and_the_heatmap() {
        let w = Workflow::complete();
        let s = protocol::fold(&w.root, &w.records);
        let lb = &s.leaderboards[&w.benchmark];
        let html = leaderboard_page(&s.benchmarks[&w.benchmark], Some(lb));
        assert_eq!(html.matches("class=\"point\"").count(), 2);
        assert_eq!(html.matches("class=\"interval\"").count(), 2);
        assert_eq!(html.matches("class=\"cell\"").count(), 6);
        assert!(html.contains("axis starts at"));
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

    #[test]
    fn names_are_text() {
        let w = Workflow::people().with_benchmark(|b| {
            b.name = "<script>alert(1)</script>".into();
            b.description = "\"><img src=x>".into();
        });
        let s = protocol::fold(&w.root, &w.records);
        let html = leaderboard_page(&s.benchmarks[&w.benchmark], None);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script>") && !html.contains("<img"), "{html}");
        assert!(!benchmarks_page(&s).contains("<script>"));
    }
}
