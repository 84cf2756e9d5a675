//! The benchmark owner's preparation dashboard: which sites are preparing, done
//! or failed, from what they published (preparation itself stays on each site:
//! MedMesh publishes no progress of it, so a site shows once it registers).

use std::path::PathBuf;

use axum::Extension;
use axum::extract::{Path, State};
use maud::html;
use protocol::fold::Status;
use protocol::record::{
    AutoApproval, DatasetState, Disclosure, MemberRole, SharingPolicy, Subject,
};

use super::auth::{CsrfForm, Signed};
use super::browse::{dataset_name, parse_id, who};
use super::jobs::{Outcome, started};
use super::layout::{self, columns, csrf, status};
use super::{Page, Shared, snapshot_with};
use crate::publish::Confirm;
use crate::views;
use crate::workflow::{self, BenchmarkArgs};
use protocol::fold::{BenchmarkView, ContainerView, DatasetView};

/// Committee members a form may name.
pub const COMMITTEE_MAX: usize = 64;

/// `GET /owner`: my benchmarks, and the form that submits one.
pub async fn page(State(ui): State<Shared>, Extension(signed): Extension<Signed>) -> Page {
    let (snap, (mine, containers)) = snapshot_with(&ui, |snap| {
        let me = [("owner", snap.me.key.to_hex())];
        let max = super::LIST_ROWS_MAX;
        let (mine, _) = views::page::<BenchmarkView>(snap.api(), "/v1/benchmarks", &me, None, max)?;
        // This user's containers first, then the first others by id.
        let (mut containers, _) =
            views::page::<ContainerView>(snap.api(), "/v1/containers", &me, None, max)?;
        let (others, _) =
            views::page::<ContainerView>(snap.api(), "/v1/containers", &[], None, max)?;
        for c in others {
            if !containers.iter().any(|x| x.id == c.id) {
                containers.push(c);
            }
        }
        Ok((mine, containers))
    })
    .await?;
    let select = |id: &str, name: &str| {
        html! {
            select id=(id) name=(name) required {
                @for c in &containers { option value=(c.id.to_hex()) { (c.container.name) " (" (c.id.short()) ")" } }
            }
        }
    };
    let body = html! {
        @if !snap.me.benchmark_owner { p.bad { "You were not admitted as a benchmark owner: the network ignores benchmarks you submit." } }
        section {
            h2 { "My benchmarks" }
            @if mine.is_empty() { p { "None yet." } }
            ul #my-benchmarks {
                @for b in &mine {
                    li { (b.benchmark.name) " · " (status(b.status.label())) " · " a href={ "/owner/" (b.id) } { "preparation dashboard" } }
                }
            }
        }
        section {
            h2 { "Submit a benchmark" }
            p.muted { "Register its data preparator, reference model and metrics first (My containers). The compatibility test runs on the demo dataset before it is published; an admin then approves it." }
            form.stack #submit-benchmark method="post" action="/owner/submit" {
                (csrf(&signed.csrf))
                label for="bench-name" { "Name" }
                input #bench-name name="name" required maxlength="200";
                label for="bench-description" { "Description" }
                input #bench-description name="description" maxlength="2000";
                label for="bench-docs" { "Documentation URL" }
                input #bench-docs name="docs_url" maxlength="2000";
                label for="bench-demo" { "Demo dataset folder (with paths.yaml)" }
                input #bench-demo name="demo_dataset" required;
                label for="bench-prep" { "Data preparator" } (select("bench-prep", "data_preparator"))
                label for="bench-reference" { "Reference model" } (select("bench-reference", "reference_model"))
                label for="bench-metrics" { "Metrics" } (select("bench-metrics", "metrics"))
                label for="bench-committee" { "Committee: public keys, one a line (`me` for yours)" }
                textarea #bench-committee name="committee" rows="3" required {}
                label for="bench-threshold" { "Members that must agree" }
                input #bench-threshold type="number" name="threshold" min="1" value="1" required;
                label for="bench-dataset-approval" { "Dataset associations" }
                select #bench-dataset-approval name="dataset_approval" {
                    option value="never" { "wait for the committee" } option value="always" { "approve when the test passes" }
                }
                label for="bench-model-approval" { "Model associations" }
                select #bench-model-approval name="model_approval" {
                    option value="never" { "wait for the committee" } option value="always" { "approve when the test passes" }
                }
                label for="bench-policy" { "Sharing policy" }
                select #bench-policy name="policy" {
                    option value="per-dataset" { "per dataset (pseudonyms)" } option value="aggregate" { "aggregate only" }
                }
                label for="bench-min-datasets" { "With aggregate: datasets a figure must cover" }
                input #bench-min-datasets type="number" name="min_datasets" min="1" value="2";
                label for="bench-metric" { "Rank by metric" }
                input #bench-metric name="rank_metric" value="auc" required;
                div {
                    input #bench-higher type="checkbox" name="higher_is_better" value="yes" checked;
                    label for="bench-higher" { " Higher is better" }
                }
                button type="submit" { "Test and submit" }
            }
        }
    };
    Ok(layout::page("My benchmarks", &snap.me, &snap.net, &signed.csrf, body))
}

/// `POST /owner/submit`: a job running the compatibility test, then publishing
/// the benchmark (as `benchmark submit`).
pub async fn submit(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let id = |n: &str| -> anyhow::Result<protocol::RecordId> {
        form.need(n)?.parse().map_err(|e| anyhow::anyhow!("`{n}` is not a record id: {e}"))
    };
    let me = ui.home.keys()?.public();
    let committee = form
        .need("committee")?
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|k| !k.is_empty())
        .take(COMMITTEE_MAX + 1)
        .map(|k| if k == "me" { Ok(me) } else { crate::cmd::parse_key(k) })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if committee.len() > COMMITTEE_MAX {
        return Err(anyhow::anyhow!("a committee has at most {COMMITTEE_MAX} members here").into());
    }
    let number = |n: &str| -> anyhow::Result<u16> {
        form.need(n)?.parse().map_err(|_| anyhow::anyhow!("`{n}` must be a whole number from 1"))
    };
    let approval =
        |n: &str| if form.get(n) == "always" { AutoApproval::Always } else { AutoApproval::Never };
    let args = BenchmarkArgs {
        name: form.need("name")?.to_string(),
        description: form.get("description").to_string(),
        docs_url: form.get("docs_url").to_string(),
        demo_dataset: PathBuf::from(form.need("demo_dataset")?),
        data_preparator: id("data_preparator")?,
        reference_model: id("reference_model")?,
        metrics: id("metrics")?,
        committee,
        threshold: number("threshold")?,
        dataset_auto_approval: approval("dataset_approval"),
        model_auto_approval: approval("model_approval"),
        sharing: match form.get("policy") {
            "aggregate" => SharingPolicy::Aggregate { min_datasets: number("min_datasets")? },
            _ => SharingPolicy::PerDataset,
        },
        disclosure: Disclosure::default(),
        rank_metric: form.need("rank_metric")?.to_string(),
        higher_is_better: form.get("higher_is_better") == "yes",
        skip_test: false,
    };
    let u = ui.clone();
    started(ui.jobs.start(format!("Submit benchmark {}", args.name), move |job| {
        let s = u.session(Confirm::Yes)?;
        job.progress(0, 2, "compatibility test on the demo dataset");
        let r = workflow::submit_benchmark(&s, &args)?;
        job.progress(2, 2, "submitted");
        Ok(Outcome::Done {
            summary: format!(
                "Submitted benchmark {} ({}); an admin approves it next.",
                args.name,
                r.id.short()
            ),
            next: Some(("/owner".into(), "My benchmarks".into())),
        })
    }))
}

/// Where one site is.
pub fn stage(state: DatasetState, assoc: Option<Status>) -> (&'static str, &'static str) {
    match (state, assoc) {
        (_, Some(Status::FailedCompatibility)) => ("failed", "its compatibility test failed"),
        (_, Some(Status::Rejected)) => ("failed", "the committee rejected its association"),
        (DatasetState::Operation, Some(Status::Approved)) => ("done", "operational and approved"),
        (_, Some(Status::Approved)) => ("preparing", "approved; not operational yet"),
        (_, Some(Status::Pending)) => ("preparing", "association waiting for the committee"),
        (_, None) => ("preparing", "registered; association not requested yet"),
    }
}

/// `GET /owner/{benchmark}`.
pub async fn dashboard(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Page {
    let (snap, (b, sites, silent, more)) = snapshot_with(&ui, move |snap| {
        let id = parse_id(snap.api(), "benchmark", &id)?;
        let b = views::benchmark(snap.api(), &id)?;
        let max = super::LIST_ROWS_MAX;
        let (datasets, more_sites) = views::page::<DatasetView>(
            snap.api(),
            "/v1/datasets",
            &[("benchmark", id.to_hex())],
            None,
            max,
        )?;
        let mut sites = Vec::new();
        for d in datasets {
            let assoc =
                views::association(snap.api(), &id, &Subject::Dataset(d.id))?.map(|a| a.status);
            let rp = [("dataset", d.id.to_hex()), ("counts", "true".to_string())];
            let results = views::results_where(snap.api(), &rp)?.len();
            let st = stage(d.state, assoc);
            sites.push((d, st, results));
        }
        let registered: std::collections::BTreeSet<_> =
            sites.iter().map(|(d, _, _)| d.owner).collect();
        let (members, more_members) =
            views::page::<protocol::fold::Member>(snap.api(), "/v1/members", &[], None, max)?;
        let silent: Vec<_> = members
            .into_iter()
            .filter(|m| m.roles.contains(&MemberRole::DataOwner) && !registered.contains(&m.key))
            .collect();
        snap.learn_datasets(sites.iter().map(|(d, _, _)| d));
        snap.learn([], sites.iter().map(|(d, _, _)| d.owner).chain(silent.iter().map(|m| m.key)))?;
        Ok((b, sites, silent, more_sites.is_some() || more_members.is_some()))
    })
    .await?;
    let count = |s: &str| sites.iter().filter(|(_, (st, _), _)| *st == s).count();
    let body = html! {
        @if b.owner != snap.me.key { p.muted { "You do not own this benchmark; this is what its owner sees." } }
        p #summary { (count("done")) " done · " (count("preparing")) " preparing · " (count("failed")) " failed · "
            (silent.len()) " data owners have registered nothing yet" }
        table #sites {
            (columns(&["site", "dataset", "stage", "why", "results"]))
            tbody {
                @for (d, (st, why), results) in &sites {
                    tr { td { (who(&snap, &d.owner)) } td { (dataset_name(&snap, &d.id)) } td { (status(st)) } td { (why) } td.n { (results) } }
                }
                @for m in &silent {
                    tr { td { (who(&snap, &m.key)) } td.muted { "none yet" } td { (status("not started")) } td { "no dataset registered (it may be preparing on site)" } td.n { "0" } }
                }
            }
        }
        @if more { p.muted { "The first " (super::LIST_ROWS_MAX) " datasets and members are shown." } }
    };
    Ok(layout::page(
        &format!("Preparation of {}", b.benchmark.name),
        &snap.me,
        &snap.net,
        &signed.csrf,
        body,
    ))
}
