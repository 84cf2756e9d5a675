//! What everyone reads: benchmarks, containers, datasets, associations, results
//! and leaderboards, with search and paging; all from the node's derived state.

use axum::Extension;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use protocol::fold::Status;
use protocol::record::Subject;
use protocol::{PublicKey, RecordId};

use super::auth::Signed;
use super::layout::{self, ListQuery, columns, status};
use node::charts;

use super::{Page, Shared, Snapshot, UiError, snapshot};
use crate::workflow;

/// A record id from a path: full hex, or a unique prefix of a known id.
pub fn parse_id(s: &str, known: impl Iterator<Item = RecordId>) -> Result<RecordId, UiError> {
    if let Ok(id) = s.parse::<RecordId>() {
        return Ok(id);
    }
    let s = s.to_ascii_lowercase();
    let hits: Vec<RecordId> = known.filter(|id| id.to_hex().starts_with(&s)).collect();
    match hits.as_slice() {
        [one] if s.len() >= crate::ids::PREFIX_DIGITS_MIN => Ok(*one),
        _ => {
            Err(UiError(anyhow::anyhow!("`{s}` names no single record; follow a link from a list")))
        }
    }
}

/// A key as people know it: its profile's name, or its short form.
pub fn who(snap: &Snapshot, k: &PublicKey) -> String {
    match snap.state.profiles.get(k) {
        Some(p) => format!("{} ({})", p.profile.name, k.short()),
        None => k.short(),
    }
}

pub fn container_name(snap: &Snapshot, id: &RecordId) -> String {
    snap.state.containers.get(id).map(|c| c.container.name.clone()).unwrap_or_else(|| id.short())
}

pub fn benchmark_name(snap: &Snapshot, id: &RecordId) -> String {
    snap.state.benchmarks.get(id).map(|b| b.benchmark.name.clone()).unwrap_or_else(|| id.short())
}

/// A dataset's name where this user may read it, else "sealed" with its id.
pub fn dataset_name(snap: &Snapshot, id: &RecordId) -> String {
    snap.state
        .datasets
        .get(id)
        .and_then(|v| workflow::dataset_details(&snap.session, v))
        .map(|d| d.details.name)
        .unwrap_or_else(|| format!("(sealed) {}", id.short()))
}

pub fn subject_name(snap: &Snapshot, s: &Subject) -> (&'static str, String) {
    match s {
        Subject::Dataset(d) => ("dataset", dataset_name(snap, d)),
        Subject::Model(m) => ("model", container_name(snap, m)),
    }
}

/// A dataset's state in MedPerf's words.
pub fn state_label(s: protocol::record::DatasetState) -> &'static str {
    match s {
        protocol::record::DatasetState::Development => "development",
        protocol::record::DatasetState::Operation => "operational",
    }
}

fn done(snap: Snapshot, signed: &Signed, title: &str, body: Markup) -> Page {
    Ok(layout::page(title, &snap.me, &snap.state, &signed.csrf, body))
}

/// `GET /`: who I am and what waits for me.
pub async fn home(State(ui): State<Shared>, Extension(signed): Extension<Signed>) -> Page {
    let snap = snapshot(&ui).await?;
    let st = &snap.state;
    let me = &snap.me;
    let waiting = super::committee::waiting(&snap).len();
    let roles: Vec<&str> = [
        (me.admin, "admin"),
        (me.data_owner, "data owner"),
        (me.model_owner, "model owner"),
        (me.benchmark_owner, "benchmark owner"),
        (me.committee(st), "committee member"),
    ]
    .into_iter()
    .filter_map(|(on, r)| on.then_some(r))
    .collect();
    let mine: Vec<_> = st.benchmarks.values().filter(|b| b.owner == me.key).collect();
    let body = html! {
        p { "Signed in as " strong { (who(&snap, &me.key)) } ", key " code { (me.key.to_hex()) } }
        p { "Roles: " (if roles.is_empty() { "none yet (ask an admin to admit you)".to_string() } else { roles.join(", ") }) }
        @if me.name.is_none() {
            p.bad { "You have not published a profile: results cannot be sealed to you until you do (`medmesh profile publish`)." }
        }
        ul {
            li { a href="/benchmarks" { (st.benchmarks.len()) " benchmarks" } }
            li { a href="/containers" { (st.containers.len()) " containers" } }
            li { a href="/datasets" { (st.datasets.len()) " datasets" } }
            li { a href="/associations" { (st.associations.len()) " associations" } }
            li { a href="/results" { (st.results.len()) " results" } }
            @if me.committee(st) { li { a #waiting href="/decisions" { (waiting) " decisions waiting for you" } } }
            @for b in &mine { li { a href={ "/owner/" (b.id) } { "Preparation dashboard of " (b.benchmark.name) } } }
        }
        (super::account::forms(&snap, &signed.csrf))
    };
    done(snap, &signed, "MedMesh", body)
}

/// `GET /benchmarks`.
pub async fn benchmarks(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let snap = snapshot(&ui).await?;
    let items: Vec<_> = snap
        .state
        .benchmarks
        .values()
        .filter(|b| q.hit(&[&b.benchmark.name, &b.benchmark.description, &b.id.to_hex()]))
        .collect();
    let body = q.list("/benchmarks", items, |items| html! {
        table #benchmarks {
            caption.muted { "Benchmarks, by id" }
            (columns(&["name", "status", "owner", "committee", "leaderboard"]))
            tbody {
                @for b in items {
                    tr {
                        td { a href={ "/benchmarks/" (b.id) } { (b.benchmark.name) } }
                        td { (status(b.status.label())) }
                        td { (who(&snap, &b.owner)) }
                        td { (b.benchmark.committee.len()) ", " (b.benchmark.threshold) " must agree" }
                        td { @if snap.state.leaderboards.contains_key(&b.id) { a href={ "/benchmarks/" (b.id) "/leaderboard" } { "leaderboard" } } @else { span.muted { "not released yet" } } }
                    }
                }
            }
        }
    });
    done(snap, &signed, "Benchmarks", body)
}

/// `GET /benchmarks/{id}`: one benchmark, its containers, associations and results.
pub async fn benchmark(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Page {
    let snap = snapshot(&ui).await?;
    let id = parse_id(&id, snap.state.benchmarks.keys().copied())?;
    let b = snap.state.benchmarks.get(&id).ok_or_else(|| {
        UiError(anyhow::anyhow!("benchmark {} is unknown to the node", id.short()))
    })?;
    let assoc: Vec<_> = snap.state.associations.iter().filter(|a| a.benchmark == id).collect();
    let results = snap.state.results.iter().filter(|r| r.benchmark == id && r.counts).count();
    let bench = &b.benchmark;
    let title = format!("Benchmark {}", bench.name);
    let body = html! {
        p { (bench.description) }
        dl {
            dt { "status" } dd { (status(b.status.label())) }
            dt { "owner" } dd { (who(&snap, &b.owner)) }
            dt { "data preparator" } dd { (container_name(&snap, &bench.data_preparator)) }
            dt { "reference model" } dd { (container_name(&snap, &bench.reference_model)) }
            dt { "metrics" } dd { (container_name(&snap, &bench.metrics)) }
            dt { "ranked by" } dd { (bench.rank_metric) (if bench.higher_is_better { " (higher is better)" } else { " (lower is better)" }) }
            dt { "committee" } dd { ul { @for k in &bench.committee { li { (who(&snap, k)) } } } (bench.threshold) " must agree" }
            dt { "results that count" } dd { (results) }
            dt { "id" } dd { code { (id.to_hex()) } }
        }
        p {
            @if snap.state.leaderboards.contains_key(&id) { a href={ "/benchmarks/" (id) "/leaderboard" } { "Leaderboard" } " · " }
            a href={ "/associations?benchmark=" (id) } { "Associations" }
            @if b.owner == snap.me.key { " · " a href={ "/owner/" (id) } { "Preparation dashboard" } }
        }
        h2 { "Associations" }
        (associations_table(&snap, &assoc))
    };
    done(snap, &signed, &title, body)
}

pub fn associations_table(snap: &Snapshot, list: &[&protocol::fold::AssociationView]) -> Markup {
    html! {
        table.associations {
            (columns(&["benchmark", "kind", "subject", "status", "approvals", "priority"]))
            tbody {
                @for a in list {
                    @let (kind, name) = subject_name(snap, &a.subject);
                    tr {
                        td { a href={ "/benchmarks/" (a.benchmark) } { (benchmark_name(snap, &a.benchmark)) } }
                        td { (kind) }
                        td { (name) }
                        td { (status(a.status.label())) @if a.auto_approved { " (auto)" } }
                        td.n { (a.approvals.len()) }
                        td.n { (a.priority) }
                    }
                }
            }
        }
    }
}

/// `GET /benchmarks/{id}/leaderboard`: the chart, the heatmap and the table.
pub async fn leaderboard(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Page {
    let snap = snapshot(&ui).await?;
    let id = parse_id(&id, snap.state.benchmarks.keys().copied())?;
    let name = benchmark_name(&snap, &id);
    let Some(lb) = snap.state.leaderboards.get(&id).cloned() else {
        let body = html! { p #no-leaderboard { "No release yet: the committee has not released results of this benchmark." } };
        return done(snap, &signed, &format!("Leaderboard of {name}"), body);
    };
    // The other released metrics (the ranking one has its own column).
    let metrics: Vec<String> = lb
        .rows
        .first()
        .map(|r| r.metrics.keys().filter(|m| **m != lb.metric).cloned().collect())
        .unwrap_or_default();
    let body = html! {
        p.muted { "Release round " (lb.release_round) ", ranked by " (lb.metric) (if lb.higher_is_better { " (higher is better)" } else { " (lower is better)" }) "." }
        (charts::interval_chart(&lb))
        (charts::heatmap(&lb))
        table #leaderboard {
            thead { tr {
                th scope="col" { "rank" } th scope="col" { "model" } th scope="col" { (lb.metric) }
                th scope="col" { "95% interval" } th scope="col" { "datasets" }
                @for m in &metrics { th scope="col" { (m) } }
            } }
            tbody {
                @for r in &lb.rows {
                    tr {
                        td.n { (r.rank) }
                        td { (r.model_name) }
                        td.n { (r.value.to_string()) }
                        td.n { @if let (Some(l), Some(h)) = (r.ci_low, r.ci_high) { (crate::output::millionths(l)) " – " (crate::output::millionths(h)) } @else { "–" } }
                        td.n { (r.datasets) }
                        @for m in &metrics { td.n { (r.metrics.get(m).map(|f| f.to_string()).unwrap_or_default()) } }
                    }
                }
            }
        }
    };
    done(snap, &signed, &format!("Leaderboard of {name}"), body)
}

/// `GET /leaderboards`.
pub async fn leaderboards(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let snap = snapshot(&ui).await?;
    let items: Vec<_> = snap
        .state
        .leaderboards
        .iter()
        .filter(|(id, _)| q.hit(&[&benchmark_name(&snap, id)]))
        .collect();
    let body = q.list("/leaderboards", items, |items| html! {
        table {
            (columns(&["benchmark", "round", "models", "leader"]))
            tbody {
                @for (id, lb) in items {
                    tr {
                        td { a href={ "/benchmarks/" (id) "/leaderboard" } { (benchmark_name(&snap, id)) } }
                        td.n { (lb.release_round) }
                        td.n { (lb.rows.len()) }
                        td { (lb.rows.first().map(|r| r.model_name.clone()).unwrap_or_default()) }
                    }
                }
            }
        }
    });
    done(snap, &signed, "Leaderboards", body)
}

/// `GET /containers`.
pub async fn containers(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let snap = snapshot(&ui).await?;
    let items: Vec<_> = snap
        .state
        .containers
        .values()
        .filter(|c| q.hit(&[&c.container.name, &c.container.image.reference, &c.id.to_hex()]))
        .collect();
    let body = q.list("/containers", items, |items| html! {
        table #containers {
            (columns(&["name", "image", "owner", "runs in", "id"]))
            tbody {
                @for c in items {
                    @let runs: Vec<String> = snap.state.associations.iter()
                        .filter(|a| a.subject == Subject::Model(c.id) && a.status == Status::Approved)
                        .map(|a| benchmark_name(&snap, &a.benchmark)).collect();
                    tr {
                        td { (c.container.name) }
                        td { code { (c.container.image.reference) } }
                        td { (who(&snap, &c.owner)) }
                        td { (runs.join(", ")) }
                        td { code { (c.id.short()) } }
                    }
                }
            }
        }
    });
    done(snap, &signed, "Containers", body)
}

/// `GET /datasets`: names only where this user may read them.
pub async fn datasets(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let snap = snapshot(&ui).await?;
    let items: Vec<_> = snap
        .state
        .datasets
        .values()
        .map(|v| (v, dataset_name(&snap, &v.id)))
        .filter(|(v, name)| {
            q.hit(&[name, &benchmark_name(&snap, &v.dataset.benchmark), &v.id.to_hex()])
        })
        .collect();
    let list = q.list("/datasets", items, |items| {
        html! {
            table #datasets {
                (columns(&["name", "benchmark", "state", "owner", "prepared hash"]))
                tbody {
                    @for (v, name) in items {
                        tr {
                            td { (name) }
                            td { (benchmark_name(&snap, &v.dataset.benchmark)) }
                            td { (status(state_label(v.state))) }
                            td { (who(&snap, &v.owner)) }
                            td { code { (v.prepared_hash.short()) } }
                        }
                    }
                }
            }
        }
    });
    let body = html! {
        p.muted { "A dataset's name and details are sealed to its benchmark's committee and its owner, unless the benchmark makes them public." }
        (list)
    };
    done(snap, &signed, "Datasets", body)
}

/// `GET /associations`.
pub async fn associations(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let snap = snapshot(&ui).await?;
    let bench = (!q.benchmark.is_empty())
        .then(|| parse_id(&q.benchmark, snap.state.benchmarks.keys().copied()))
        .transpose()?;
    let items: Vec<_> = snap
        .state
        .associations
        .iter()
        .filter(|a| bench.is_none_or(|b| a.benchmark == b))
        .filter(|a| {
            let (kind, name) = subject_name(&snap, &a.subject);
            q.hit(&[kind, &name, &benchmark_name(&snap, &a.benchmark), a.status.label()])
        })
        .collect();
    let body = q.list("/associations", items, |items| associations_table(&snap, items));
    done(snap, &signed, "Associations", body)
}

/// `GET /results`: every result record; its metrics are sealed (the data owner
/// opens its own on "My data").
pub async fn results(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let snap = snapshot(&ui).await?;
    let items: Vec<_> = snap
        .state
        .results
        .iter()
        .filter(|r| {
            q.hit(&[
                &benchmark_name(&snap, &r.benchmark),
                &container_name(&snap, &r.model),
                &dataset_name(&snap, &r.dataset),
            ])
        })
        .collect();
    let list = q.list("/results", items, |items| html! {
        table #results {
            (columns(&["benchmark", "model", "dataset", "counts", "submitted by"]))
            tbody {
                @for r in items {
                    tr {
                        td { (benchmark_name(&snap, &r.benchmark)) }
                        td { (container_name(&snap, &r.model)) }
                        td { (dataset_name(&snap, &r.dataset)) }
                        td { @if r.counts { (status("counts")) } @else { (status("ignored")) " " (r.reason.clone().unwrap_or_default()) } }
                        td {
                            (who(&snap, &r.submitter))
                            @if r.submitter == snap.me.key { " · " a href={ "/data/results/" (r.id) } { "open" } }
                        }
                    }
                }
            }
        }
    });
    let body = html! {
        p.muted { "Metrics are sealed to the committee and the data owner; the leaderboard shows what the committee released." }
        (list)
    };
    done(snap, &signed, "Results", body)
}
