//! What everyone reads: benchmarks, containers, datasets, associations, results
//! and leaderboards. Each list is one page of the node's paged, indexed views
//! (Next and Previous follow the node's cursors); search runs on the node over
//! public names and id prefixes, and over the names of this home's own datasets
//! here (a dataset's name is sealed to its committee and its owner).

use axum::Extension;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use protocol::fold::{AssociationView, BenchmarkView, ContainerView, DatasetView, ResultView};
use protocol::record::Subject;
use protocol::{PublicKey, RecordId};

use super::auth::Signed;
use super::layout::{self, ListQuery, columns, status};
use node::charts;

use super::{PAGE_ROWS, Page, Shared, Snapshot, snapshot_with};
use crate::publish::NodeApi;
use crate::views;

/// A record id from a path: full hex, or a name or unique prefix the node's
/// lookup resolves (`kind`: benchmark, container, dataset, result).
pub fn parse_id(api: &dyn NodeApi, kind: &'static str, s: &str) -> anyhow::Result<RecordId> {
    if let Ok(id) = s.parse::<RecordId>() {
        return Ok(id);
    }
    views::resolve(api, kind, kind, s).map_err(|e| {
        anyhow::anyhow!("`{s}` names no single {kind} ({e}); follow a link from a list")
    })
}

/// A key as people know it: its profile's name, or its short form.
pub fn who(snap: &Snapshot, k: &PublicKey) -> String {
    match snap.names.keys.get(k) {
        Some(n) => format!("{n} ({})", k.short()),
        None => k.short(),
    }
}

pub fn container_name(snap: &Snapshot, id: &RecordId) -> String {
    snap.names.ids.get(id).cloned().unwrap_or_else(|| id.short())
}

pub fn benchmark_name(snap: &Snapshot, id: &RecordId) -> String {
    snap.names.ids.get(id).cloned().unwrap_or_else(|| id.short())
}

/// A dataset's name where this user may read it, else "sealed" with its id.
pub fn dataset_name(snap: &Snapshot, id: &RecordId) -> String {
    snap.datasets.get(id).cloned().unwrap_or_else(|| format!("(sealed) {}", id.short()))
}

pub fn subject_name(snap: &Snapshot, s: &Subject) -> (&'static str, String) {
    match s {
        Subject::Dataset(d) => ("dataset", dataset_name(snap, d)),
        Subject::Model(m) => ("model", container_name(snap, m)),
    }
}

/// Learn the names a list of associations shows.
pub fn learn_associations(snap: &mut Snapshot, list: &[AssociationView]) -> anyhow::Result<()> {
    let ids = list.iter().flat_map(|a| [a.benchmark, a.subject.id()]);
    snap.learn(ids, list.iter().map(|a| a.initiator))?;
    snap.learn_dataset_ids(list.iter().filter_map(|a| match a.subject {
        Subject::Dataset(d) => Some(d),
        Subject::Model(_) => None,
    }))
}

/// A dataset's state in MedPerf's words.
pub fn state_label(s: protocol::record::DatasetState) -> &'static str {
    match s {
        protocol::record::DatasetState::Development => "development",
        protocol::record::DatasetState::Operation => "operational",
    }
}

fn done(snap: Snapshot, signed: &Signed, title: &str, body: Markup) -> Page {
    Ok(layout::page(title, &snap.me, &snap.net, &signed.csrf, body))
}

/// `(name, value)` pairs of a view's query, the search text among them.
fn params(q: &ListQuery, more: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut p: Vec<(&'static str, String)> = more.to_vec();
    let text = q.text();
    if !text.is_empty() {
        p.push(("q", views::encode(&text)));
    }
    p
}

/// `GET /`: who I am and what waits for me.
pub async fn home(State(ui): State<Shared>, Extension(signed): Extension<Signed>) -> Page {
    let (snap, (counts, waiting, mine)) = snapshot_with(&ui, |snap| {
        let summary: serde_json::Value = views::one(snap.api(), "/v1/state")?.unwrap_or_default();
        let waiting = if snap.me.committee { super::committee::waiting(snap)?.len() } else { 0 };
        let me = snap.me.key.to_hex();
        let (mine, _) = views::page::<BenchmarkView>(
            snap.api(),
            "/v1/benchmarks",
            &[("owner", me)],
            None,
            PAGE_ROWS,
        )?;
        Ok((summary["counts"].clone(), waiting, mine))
    })
    .await?;
    let me = &snap.me;
    let roles: Vec<&str> = [
        (me.admin, "admin"),
        (me.data_owner, "data owner"),
        (me.model_owner, "model owner"),
        (me.benchmark_owner, "benchmark owner"),
        (me.committee, "committee member"),
    ]
    .into_iter()
    .filter_map(|(on, r)| on.then_some(r))
    .collect();
    let n = |k: &str| counts[k].as_u64().unwrap_or(0);
    let body = html! {
        p { "Signed in as " strong { (who(&snap, &me.key)) } ", key " code { (me.key.to_hex()) } }
        p { "Roles: " (if roles.is_empty() { "none yet (ask an admin to admit you)".to_string() } else { roles.join(", ") }) }
        @if me.name.is_none() {
            p.bad { "You have not published a profile: results cannot be sealed to you until you do (`medmesh profile publish`)." }
        }
        ul {
            li { a href="/benchmarks" { (n("benchmarks")) " benchmarks" } }
            li { a href="/containers" { (n("containers")) " containers" } }
            li { a href="/datasets" { (n("datasets")) " datasets" } }
            li { a href="/associations" { (n("associations")) " associations" } }
            li { a href="/results" { (n("results")) " results" } }
            @if me.committee { li { a #waiting href="/decisions" { (waiting) " decisions waiting for you" } } }
            @for b in &mine { li { a href={ "/owner/" (b.id) } { "Preparation dashboard of " (b.benchmark.name) } } }
        }
        (super::account::forms(&snap, &signed.csrf))
    };
    done(snap, &signed, "MedMesh", body)
}

/// `GET /benchmarks`: a page of benchmarks (search: name or id prefix, on the node).
pub async fn benchmarks(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let p = params(&q, &[]);
    let after = q.cursor().map(str::to_string);
    let (snap, (items, next)) = snapshot_with(&ui, move |snap| {
        let (items, next) = views::page::<BenchmarkView>(
            snap.api(),
            "/v1/benchmarks",
            &p,
            after.as_deref(),
            PAGE_ROWS,
        )?;
        snap.learn([], items.iter().map(|b| b.owner))?;
        Ok((items, next))
    })
    .await?;
    let body = q.list("/benchmarks", &items, next.as_deref(), |items| html! {
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
                        td { a href={ "/benchmarks/" (b.id) "/leaderboard" } { "leaderboard" } }
                    }
                }
            }
        }
    });
    done(snap, &signed, "Benchmarks", body)
}

/// `GET /benchmarks/{id}`: one benchmark, its containers and its first associations.
pub async fn benchmark(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Page {
    let (snap, (b, assoc, more, released)) = snapshot_with(&ui, move |snap| {
        let id = parse_id(snap.api(), "benchmark", &id)?;
        let b = views::benchmark(snap.api(), &id)?;
        let (assoc, next) = views::page::<AssociationView>(
            snap.api(),
            "/v1/associations",
            &[("benchmark", id.to_hex())],
            None,
            PAGE_ROWS,
        )?;
        let bench = &b.benchmark;
        snap.learn(
            [bench.data_preparator, bench.reference_model, bench.metrics],
            bench.committee.iter().copied().chain([b.owner]),
        )?;
        learn_associations(snap, &assoc)?;
        let released = views::leaderboard_page(snap.api(), &id)?.is_some();
        Ok((b, assoc, next.is_some(), released))
    })
    .await?;
    let id = b.id;
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
            dt { "results" } dd { a href={ "/results?benchmark=" (id) } { "results of this benchmark" } }
            dt { "id" } dd { code { (id.to_hex()) } }
        }
        p {
            @if released { a href={ "/benchmarks/" (id) "/leaderboard" } { "Leaderboard" } " · " }
            a href={ "/associations?benchmark=" (id) } { "Associations" }
            @if b.owner == snap.me.key { " · " a href={ "/owner/" (id) } { "Preparation dashboard" } }
        }
        h2 { "Associations" }
        (associations_table(&snap, &assoc))
        @if more { p { a href={ "/associations?benchmark=" (id) } { "More associations" } } }
    };
    done(snap, &signed, &title, body)
}

pub fn associations_table(snap: &Snapshot, list: &[AssociationView]) -> Markup {
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
    let (snap, (id, lb)) = snapshot_with(&ui, move |snap| {
        let id = parse_id(snap.api(), "benchmark", &id)?;
        snap.learn([id], [])?;
        Ok((id, views::leaderboard(snap.api(), &id)?))
    })
    .await?;
    let name = benchmark_name(&snap, &id);
    let Some(lb) = lb else {
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

/// `GET /leaderboards`: a page of approved benchmarks with their leaderboard's head.
pub async fn leaderboards(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let text = q.text();
    let p =
        if text.is_empty() { vec![("status", "approved".to_string())] } else { params(&q, &[]) };
    let after = q.cursor().map(str::to_string);
    let (snap, (items, next)) = snapshot_with(&ui, move |snap| {
        let (list, next) = views::page::<BenchmarkView>(
            snap.api(),
            "/v1/benchmarks",
            &p,
            after.as_deref(),
            PAGE_ROWS,
        )?;
        let mut items = Vec::new();
        for b in list {
            if let Some(lb) = views::leaderboard_page(snap.api(), &b.id)? {
                items.push((b, lb));
            }
        }
        Ok((items, next))
    })
    .await?;
    let body = q.list("/leaderboards", &items, next.as_deref(), |items| html! {
        table {
            (columns(&["benchmark", "round", "models", "leader"]))
            tbody {
                @for (b, lb) in items {
                    tr {
                        td { a href={ "/benchmarks/" (b.id) "/leaderboard" } { (b.benchmark.name) } }
                        td.n { (lb.release_round) }
                        td.n { (lb.total_rows) }
                        td { (lb.leader.clone().unwrap_or_default()) }
                    }
                }
            }
        }
    });
    done(snap, &signed, "Leaderboards", body)
}

/// `GET /containers`: a page of containers (search: name or id prefix, on the node).
pub async fn containers(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let p = params(&q, &[]);
    let after = q.cursor().map(str::to_string);
    let (snap, (items, next)) = snapshot_with(&ui, move |snap| {
        let (list, next) = views::page::<ContainerView>(
            snap.api(),
            "/v1/containers",
            &p,
            after.as_deref(),
            PAGE_ROWS,
        )?;
        let mut items = Vec::new();
        for c in list {
            let ap = [("subject", c.id.to_hex()), ("status", "approved".to_string())];
            let runs: Vec<RecordId> = views::associations_where(snap.api(), &ap)?
                .into_iter()
                .filter(|a| a.subject == Subject::Model(c.id))
                .map(|a| a.benchmark)
                .collect();
            items.push((c, runs));
        }
        snap.learn(items.iter().flat_map(|(_, r)| r.clone()), items.iter().map(|(c, _)| c.owner))?;
        Ok((items, next))
    })
    .await?;
    let body = q.list("/containers", &items, next.as_deref(), |items| html! {
        table #containers {
            (columns(&["name", "image", "owner", "runs in", "id"]))
            tbody {
                @for (c, runs) in items {
                    @let runs: Vec<String> = runs.iter().map(|b| benchmark_name(&snap, b)).collect();
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

/// `GET /datasets`: a page of datasets, names only where this user may read
/// them. Search: public names and id prefixes on the node, and the names this
/// home gave its own datasets (sealed to others), here.
pub async fn datasets(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let text = q.text();
    let first = q.cursor().is_none();
    let bench = q.benchmark.clone();
    let after = q.cursor().map(str::to_string);
    let q2 = ListQuery { q: q.q.clone(), ..ListQuery::default() };
    let (snap, (items, next)) = snapshot_with(&ui, move |snap| {
        let mut more = Vec::new();
        if !bench.is_empty() {
            more.push(("benchmark", parse_id(snap.api(), "benchmark", &bench)?.to_hex()));
        }
        let p = params(&q2, &more);
        let mut items: Vec<DatasetView> = Vec::new();
        if first && !text.is_empty() {
            // This home's own datasets whose local name matches.
            let needle = text.to_lowercase();
            for (id, name) in crate::workflow::local_dataset_names(&snap.session) {
                if name.to_lowercase().contains(&needle)
                    && let Some(v) = views::dataset_opt(snap.api(), &id)?
                {
                    items.push(v);
                }
            }
        }
        let (page, next) = views::page::<DatasetView>(
            snap.api(),
            "/v1/datasets",
            &p,
            after.as_deref(),
            PAGE_ROWS,
        )?;
        for v in page {
            if !items.iter().any(|x| x.id == v.id) {
                items.push(v);
            }
        }
        snap.learn_datasets(&items);
        snap.learn(items.iter().map(|v| v.dataset.benchmark), items.iter().map(|v| v.owner))?;
        Ok((items, next))
    })
    .await?;
    let list = q.list("/datasets", &items, next.as_deref(), |items| {
        html! {
            table #datasets {
                (columns(&["name", "benchmark", "state", "owner", "prepared hash"]))
                tbody {
                    @for v in items {
                        tr {
                            td { (dataset_name(&snap, &v.id)) }
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
        p.muted { "A dataset's name and details are sealed to its benchmark's committee and its owner, unless the benchmark makes them public. Search finds public names, ids, and the names of your own datasets." }
        (list)
    };
    done(snap, &signed, "Datasets", body)
}

/// What a list's search text narrows associations or results to: a status or
/// kind word, or the benchmark, model or dataset it names (a name, or an id
/// prefix; a dataset also by the name this home gave it).
#[derive(Default)]
struct Narrow {
    params: Vec<(&'static str, String)>,
    /// The text names nothing: the list is empty.
    nothing: bool,
}

fn narrow(snap: &Snapshot, text: &str, results: bool) -> anyhow::Result<Narrow> {
    let mut n = Narrow::default();
    if text.is_empty() {
        return Ok(n);
    }
    let word = text.to_lowercase();
    if !results {
        for s in ["pending", "approved", "rejected"] {
            if word == s {
                n.params.push(("status", s.to_string()));
                return Ok(n);
            }
        }
        if word == "model" || word == "dataset" {
            n.params.push(("kind", word));
            return Ok(n);
        }
    }
    let api = snap.api();
    if let Ok(b) = views::resolve(api, "benchmark", "benchmark", text) {
        n.params.push(("benchmark", b.to_hex()));
    } else if let Ok(m) = views::resolve(api, "container", "container", text) {
        n.params.push((if results { "model" } else { "subject" }, m.to_hex()));
    } else if let Some(d) = crate::workflow::local_dataset_names(&snap.session)
        .into_iter()
        .find(|(_, name)| name == text)
        .map(|(id, _)| id)
        .or_else(|| views::resolve(api, "dataset", "dataset", text).ok())
    {
        n.params.push((if results { "dataset" } else { "subject" }, d.to_hex()));
    } else {
        n.nothing = true;
    }
    Ok(n)
}

/// `GET /associations`: a page of associations (of one benchmark).
pub async fn associations(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let (text, bench, after) = (q.text(), q.benchmark.clone(), q.cursor().map(str::to_string));
    let (snap, (items, next, nothing)) = snapshot_with(&ui, move |snap| {
        let mut n = narrow(snap, &text, false)?;
        if !bench.is_empty() {
            n.params.retain(|(k, _)| *k != "benchmark");
            n.params.push(("benchmark", parse_id(snap.api(), "benchmark", &bench)?.to_hex()));
        }
        if n.nothing {
            return Ok((Vec::new(), None, true));
        }
        let (items, next) = views::page::<AssociationView>(
            snap.api(),
            "/v1/associations",
            &n.params,
            after.as_deref(),
            PAGE_ROWS,
        )?;
        learn_associations(snap, &items)?;
        Ok((items, next, false))
    })
    .await?;
    let body = html! {
        p.muted { "Search: a benchmark, model or dataset (its name or id), or pending, approved, rejected, model, dataset." }
        @if nothing { p { "No benchmark, model or dataset is named that." } }
        (q.list("/associations", &items, next.as_deref(), |items| associations_table(&snap, items)))
    };
    done(snap, &signed, "Associations", body)
}

/// `GET /results`: a page of result records; their metrics are sealed (the
/// data owner opens its own on "My data").
pub async fn results(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let (text, bench, after) = (q.text(), q.benchmark.clone(), q.cursor().map(str::to_string));
    let (snap, (items, next, nothing)) = snapshot_with(&ui, move |snap| {
        let mut n = narrow(snap, &text, true)?;
        if !bench.is_empty() {
            n.params.retain(|(k, _)| *k != "benchmark");
            n.params.push(("benchmark", parse_id(snap.api(), "benchmark", &bench)?.to_hex()));
        }
        if n.nothing {
            return Ok((Vec::new(), None, true));
        }
        let (items, next) = views::page::<ResultView>(
            snap.api(),
            "/v1/results",
            &n.params,
            after.as_deref(),
            PAGE_ROWS,
        )?;
        snap.learn(
            items.iter().flat_map(|r| [r.benchmark, r.model]),
            items.iter().map(|r| r.submitter),
        )?;
        snap.learn_dataset_ids(items.iter().map(|r| r.dataset))?;
        Ok((items, next, false))
    })
    .await?;
    let list = q.list("/results", &items, next.as_deref(), |items| html! {
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
        p.muted { "Metrics are sealed to the committee and the data owner; the leaderboard shows what the committee released. Search: a benchmark, model or dataset (its name or id)." }
        @if nothing { p { "No benchmark, model or dataset is named that." } }
        (list)
    };
    done(snap, &signed, "Results", body)
}
