//! The data owner's pages: prepare (a job with progress), register, request
//! association (the compatibility test, a job), set operational, run the
//! benchmark (a job with live logs) and open its own sealed results. Each calls
//! the workflow function its command calls.

use std::path::PathBuf;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;
use protocol::fold::Status;
use protocol::record::{DatasetState, Subject};
use runner::dataset::PrepareEvent;

use super::auth::{CsrfForm, Signed};
use super::browse::{benchmark_name, container_name, dataset_name, parse_id, state_label};
use super::jobs::{Outcome, started};
use super::layout::{self, columns, csrf, status};
use super::{Page, Shared, blocking, snapshot_with};
use crate::publish::Confirm;
use crate::views;
use crate::workflow;
use protocol::fold::{DatasetView, ResultView};

/// Lines of a failed task's log shown in the job log.
pub const LOG_TAIL_LINES: usize = 40;

/// What a finished preparation hands to the register form.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Prepared {
    #[serde(default)]
    prepared: String,
    #[serde(default)]
    benchmark: String,
}

/// `GET /data` (`?prepared=NAME&benchmark=ID` fills the register form in).
pub async fn page(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(prepared): Query<Prepared>,
) -> Page {
    let (snap, (approved, mine, results)) = snapshot_with(&ui, |snap| {
        let me = snap.me.key.to_hex();
        let approved = super::approved_benchmarks(snap)?;
        let (datasets, _) = views::page::<DatasetView>(
            snap.api(),
            "/v1/datasets",
            &[("owner", me)],
            None,
            super::LIST_ROWS_MAX,
        )?;
        let mut mine = Vec::new();
        let mut results: Vec<ResultView> = Vec::new();
        for d in datasets {
            let assoc =
                views::association(snap.api(), &d.dataset.benchmark, &Subject::Dataset(d.id))?;
            let (r, _) = views::page::<ResultView>(
                snap.api(),
                "/v1/results",
                &[("dataset", d.id.to_hex())],
                None,
                super::LIST_ROWS_MAX,
            )?;
            results.extend(r.into_iter().filter(|r| r.submitter == snap.me.key));
            mine.push((d, assoc));
        }
        snap.learn_datasets(mine.iter().map(|(d, _)| d));
        snap.learn(
            mine.iter()
                .map(|(d, _)| d.dataset.benchmark)
                .chain(results.iter().flat_map(|r| [r.benchmark, r.model])),
            [],
        )?;
        Ok((approved, mine, results))
    })
    .await?;
    let bench_select = |id: &str| {
        html! {
            label for=(id) { "Benchmark" }
            select id=(id) name="benchmark" required {
                @for b in &approved {
                    option value=(b.id.to_hex()) selected[b.id.to_hex() == prepared.benchmark] { (b.benchmark.name) }
                }
            }
        }
    };
    let body = html! {
        @if !snap.me.data_owner { p.bad { "You were not admitted as a data owner: the network ignores datasets you register." } }
        section {
            h2 { "Prepare a dataset" }
            p.muted { "Runs the benchmark's data preparator on this machine; nothing but metadata leaves it." }
            form.stack #prepare method="post" action="/data/prepare" {
                (csrf(&signed.csrf))
                (bench_select("prepare-benchmark"))
                label for="prepare-name" { "Name (letters, digits, . _ -)" }
                input #prepare-name name="name" required pattern="[A-Za-z0-9_\\-][A-Za-z0-9._\\-]*" maxlength="64";
                label for="prepare-data" { "Raw data folder" }
                input #prepare-data name="data_path" required;
                label for="prepare-labels" { "Labels folder" }
                input #prepare-labels name="labels_path" required;
                button type="submit" { "Prepare" }
            }
        }
        section {
            h2 { "Register a prepared dataset" }
            form.stack #register method="post" action="/data/register" {
                (csrf(&signed.csrf))
                (bench_select("register-benchmark"))
                label for="register-name" { "Name it was prepared under" }
                input #register-name name="name" required maxlength="64" value=(prepared.prepared);
                label for="register-description" { "Description" }
                input #register-description name="description";
                label for="register-location" { "Location" }
                input #register-location name="location";
                div {
                    input #register-public type="checkbox" name="public_name" value="yes";
                    label for="register-public" { " Let releases show its name (default: a pseudonym)" }
                }
                button type="submit" { "Register" }
            }
        }
        section {
            h2 { "My datasets" }
            @if mine.is_empty() { p { "None registered yet." } }
            @else {
                table #my-datasets {
                    (columns(&["name", "benchmark", "state", "association", "actions"]))
                    tbody {
                        @for (d, assoc) in &mine {
                            @let name = dataset_name(&snap, &d.id);
                            tr {
                                td { (name) }
                                td { (benchmark_name(&snap, &d.dataset.benchmark)) }
                                td { (status(state_label(d.state))) }
                                td { @match assoc { Some(a) => (status(a.status.label())), None => span.muted { "not requested" } } }
                                td {
                                    @if assoc.is_none() {
                                        form.inline method="post" action="/data/associate" {
                                            (csrf(&signed.csrf))
                                            input type="hidden" name="dataset" value=(d.id.to_hex());
                                            button type="submit" { "Request association of " (name) }
                                        }
                                    }
                                    @if d.state == DatasetState::Development {
                                        form.inline method="post" action="/data/operational" {
                                            (csrf(&signed.csrf))
                                            input type="hidden" name="dataset" value=(d.id.to_hex());
                                            button type="submit" { "Set " (name) " operational" }
                                        }
                                    }
                                    @if assoc.as_ref().is_some_and(|a| a.status == Status::Approved) && d.state == DatasetState::Operation {
                                        form.inline method="post" action="/data/run" {
                                            (csrf(&signed.csrf))
                                            input type="hidden" name="dataset" value=(d.id.to_hex());
                                            input id={ "ignore-" (d.id.short()) } type="checkbox" name="ignore_model_errors" value="yes" checked;
                                            label for={ "ignore-" (d.id.short()) } { "Go on past a failing model" }
                                            button type="submit" { "Run the benchmark on " (name) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "My results" }
            @if results.is_empty() { p { "None yet." } }
            @else {
                table #my-results {
                    (columns(&["benchmark", "model", "dataset", "counts", "metrics"]))
                    tbody {
                        @for r in &results {
                            tr {
                                td { (benchmark_name(&snap, &r.benchmark)) }
                                td { (container_name(&snap, &r.model)) }
                                td { (dataset_name(&snap, &r.dataset)) }
                                td { @if r.counts { (status("counts")) } @else { (status("ignored")) } }
                                td { a href={ "/data/results/" (r.id) } { "open (sealed to you)" } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("My data", &snap.me, &snap.net, &signed.csrf, body))
}

fn record_id(form: &CsrfForm, name: &str) -> anyhow::Result<protocol::RecordId> {
    form.need(name)?.parse().map_err(|e| anyhow::anyhow!("`{name}` is not a record id: {e}"))
}

/// `POST /data/prepare`: a job that prepares the data, with progress.
pub async fn prepare(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let benchmark = record_id(&form, "benchmark")?;
    let name = form.need("name")?.to_string();
    workflow::check_dataset_name(&name)?;
    let data = PathBuf::from(form.need("data_path")?);
    let labels = PathBuf::from(form.need("labels_path")?);
    let u = ui.clone();
    started(ui.jobs.start(format!("Prepare {name}"), move |job| {
        let s = u.session(Confirm::Yes)?;
        const STEPS: u64 = 4;
        let step_no = |step: &str| match step {
            "prepare" => 1,
            "sanity_check" => 2,
            "statistics" => 3,
            _ => 4,
        };
        let on = |ev: PrepareEvent| match ev {
            PrepareEvent::Resuming { report } => job.log(&format!(
                "resuming an interrupted preparation{}",
                report.map(|r| format!(" ({r})")).unwrap_or_default()
            )),
            PrepareEvent::Step(step) => {
                job.log(&format!("step: {}", step.replace('_', " ")));
                job.progress(step_no(step) - 1, STEPS, &step.replace('_', " "));
            }
            PrepareEvent::Report(r) => job.progress(0, STEPS, &format!("prepare: {r}")),
        };
        let p = workflow::prepare_dataset(&s, &benchmark, &name, &data, &labels, &on)?;
        job.progress(STEPS, STEPS, "prepared");
        job.log(&format!(
            "prepared {name} in {} (hash {})",
            p.root.display(),
            p.prepared_hash.short()
        ));
        Ok(Outcome::Done {
            summary: format!("Prepared {name}: register it under this name on My data."),
            next: Some((
                format!("/data?prepared={}&benchmark={benchmark}#register", layout::encode(&name)),
                "Register it".into(),
            )),
        })
    }))
}

/// `POST /data/register`: publish the dataset record (details sealed).
pub async fn register(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let benchmark = record_id(&form, "benchmark")?;
    let name = form.need("name")?.to_string();
    let description = form.get("description").to_string();
    let location = form.get("location").to_string();
    let public = form.get("public_name") == "yes";
    blocking(move || {
        let s = ui.session(Confirm::Yes)?;
        workflow::submit_dataset(&s, &benchmark, &name, &description, &location, public)
    })
    .await?;
    Ok(Redirect::to("/data").into_response())
}

/// `POST /data/associate`: a job running the compatibility test on the prepared
/// data, then publishing the association request.
pub async fn associate(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let dataset = record_id(&form, "dataset")?;
    let (snap, view) = snapshot_with(&ui, move |snap| {
        let view = views::dataset(snap.api(), &dataset)?;
        snap.learn_datasets([&view]);
        Ok(view)
    })
    .await?;
    let benchmark = view.dataset.benchmark;
    let name = dataset_name(&snap, &dataset);
    let u = ui.clone();
    started(ui.jobs.start(format!("Request association of {name}"), move |job| {
        let s = u.session(Confirm::Yes)?;
        job.progress(0, 2, "compatibility test with the reference model");
        let (r, outcome) = workflow::associate(&s, &benchmark, Subject::Dataset(dataset))?;
        job.progress(2, 2, "requested");
        job.log(&format!("compatibility test passed; request {} published", r.id.short()));
        for (k, v) in &outcome.results {
            job.log(&format!("  {k}: {v:?}"));
        }
        Ok(Outcome::Done {
            summary: format!("Association of {name} requested; it waits for the committee."),
            next: Some(("/data".into(), "Back to my data".into())),
        })
    }))
}

/// `POST /data/operational`.
pub async fn operational(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let dataset = record_id(&form, "dataset")?;
    blocking(move || workflow::set_operational(&ui.session(Confirm::Yes)?, &dataset)).await?;
    Ok(Redirect::to("/data").into_response())
}

/// The last lines of a log file.
fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// `POST /data/run`: a job running the reference and every approved model, then
/// publishing the sealed results (as `benchmark run` does).
pub async fn run(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let dataset = record_id(&form, "dataset")?;
    let ignore = form.get("ignore_model_errors") == "yes";
    let (snap, (benchmark, total)) = snapshot_with(&ui, move |snap| {
        let view = views::dataset(snap.api(), &dataset)?;
        snap.learn_datasets([&view]);
        let benchmark = view.dataset.benchmark;
        snap.learn([benchmark], [])?;
        let total = workflow::models_to_run(&snap.session, &benchmark, None)?.len() as u64;
        Ok((benchmark, total))
    })
    .await?;
    let name = dataset_name(&snap, &dataset);
    let u = ui.clone();
    started(ui.jobs.start(
        format!("Run {} on {name}", benchmark_name(&snap, &benchmark)),
        move |job| {
            let s = u.session(Confirm::Yes)?;
            job.progress(0, total + 1, "running the models, then the metrics");
            let rep = workflow::run_benchmark(&s, &benchmark, &dataset, None, ignore, false)?;
            job.progress(total, total + 1, "publishing the sealed results");
            let rows = workflow::publish_run(&s, &benchmark, &dataset, &rep, false)?;
            for r in &rows {
                let results = r
                    .results
                    .as_ref()
                    .map(|m| {
                        m.iter().map(|(k, v)| format!("{k}={v:.3}")).collect::<Vec<_>>().join(" ")
                    })
                    .unwrap_or_default();
                job.log(&format!(
                    "model {} ({}{}): {} {} · {}",
                    r.name,
                    r.model.short(),
                    if r.reference { ", reference" } else { "" },
                    r.status.replace('_', " "),
                    r.error.clone().unwrap_or(results),
                    r.publication
                ));
                if let Some(log) = &r.log {
                    job.log(&format!("--- end of {} ---\n{}", log.display(), tail(log)));
                }
            }
            job.progress(total + 1, total + 1, "done");
            let failed = rows.iter().filter(|r| r.status != "completed").count();
            let published = rows.iter().filter(|r| r.result_record.is_some()).count();
            if failed > 0 && !ignore {
                anyhow::bail!("{failed} of {} models did not finish (see the log)", rows.len());
            }
            Ok(Outcome::Done {
                summary: format!(
                    "{} of {} models finished; {published} sealed results published{}.",
                    rows.len() - failed,
                    rows.len(),
                    if failed > 0 {
                        format!("; {failed} failed (see the log)")
                    } else {
                        String::new()
                    }
                ),
                next: Some(("/data".into(), "Back to my data".into())),
            })
        },
    ))
}

/// `GET /data/results/{id}`: one of my results, opened with my key.
pub async fn result(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
) -> Page {
    let (snap, (rec, metrics)) = snapshot_with(&ui, move |snap| {
        let id = parse_id(snap.api(), "result", &id)?;
        let (rec, metrics) = workflow::open_result(&snap.session, &id)?;
        snap.learn([rec.benchmark, rec.model], [])?;
        snap.learn_dataset_ids([rec.dataset])?;
        Ok((rec, metrics))
    })
    .await?;
    let body = html! {
        p { "Benchmark " (benchmark_name(&snap, &rec.benchmark)) ", model " (container_name(&snap, &rec.model))
            ", dataset " (dataset_name(&snap, &rec.dataset)) "." }
        p.muted { "Sealed to the committee and to you; nobody else can read these values." }
        table #metrics {
            (columns(&["metric", "value"]))
            tbody { @for (k, v) in &metrics { tr { td { (k) } td.n { (format!("{v}")) } } } }
        }
    };
    Ok(layout::page("Result", &snap.me, &snap.net, &signed.csrf, body))
}
