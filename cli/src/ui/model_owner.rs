//! The model owner's page: register a model container (a job: the image is saved
//! into the blob store), request association with a benchmark (a job: the
//! compatibility test on its demo dataset), and where each model runs.

use std::path::PathBuf;

use axum::Extension;
use axum::extract::State;
use maud::html;
use protocol::record::Subject;

use super::auth::{CsrfForm, Signed};
use super::browse::benchmark_name;
use super::jobs::{Outcome, started};
use super::layout::{self, columns, csrf, status};
use super::{Page, Shared, snapshot_with};
use crate::publish::Confirm;
use crate::views;
use crate::workflow::{self, ContainerArgs, ImageArchive};
use protocol::fold::ContainerView;

/// Longest container name accepted, in characters.
pub const CONTAINER_NAME_CHARS_MAX: usize = 128;

/// `GET /models`.
pub async fn page(State(ui): State<Shared>, Extension(signed): Extension<Signed>) -> Page {
    let (snap, (mine, approved)) = snapshot_with(&ui, |snap| {
        let me = snap.me.key.to_hex();
        let (mine, _) = views::page::<ContainerView>(
            snap.api(),
            "/v1/containers",
            &[("owner", me)],
            None,
            super::LIST_ROWS_MAX,
        )?;
        let approved = super::approved_benchmarks(snap)?;
        let mut rows = Vec::new();
        for c in mine {
            let p = [("subject", c.id.to_hex()), ("kind", "model".to_string())];
            let mut assocs = Vec::new();
            for a in views::associations_where(snap.api(), &p)? {
                let rp = [
                    ("benchmark", a.benchmark.to_hex()),
                    ("model", c.id.to_hex()),
                    ("counts", "true".to_string()),
                ];
                let sites: std::collections::BTreeSet<_> =
                    views::results_where(snap.api(), &rp)?.into_iter().map(|r| r.dataset).collect();
                assocs.push((a, sites.len()));
            }
            rows.push((c, assocs));
        }
        snap.learn(rows.iter().flat_map(|(_, a)| a.iter().map(|(a, _)| a.benchmark)), [])?;
        Ok((rows, approved))
    })
    .await?;
    let body = html! {
        @if !snap.me.model_owner { p.bad { "You were not admitted as a model owner: the network ignores containers you register." } }
        section {
            h2 { "Register a container" }
            p.muted { "A model, or a benchmark's data preparator or metrics. The image is saved from this machine's engine into your node's blob store; sites fetch it by hash." }
            form.stack #register-model method="post" action="/models/register" {
                (csrf(&signed.csrf))
                label for="model-name" { "Name" }
                input #model-name name="name" required maxlength="128";
                label for="model-manifest" { "Container config (container_config.yaml)" }
                input #model-manifest name="manifest" required;
                label for="model-image" { "Image (optional: the config's image by default)" }
                input #model-image name="image";
                label for="model-parameters" { "Parameters file (optional)" }
                input #model-parameters name="parameters";
                label for="model-files" { "Additional files folder (optional)" }
                input #model-files name="additional_files";
                div {
                    input #model-private type="checkbox" name="private" value="yes";
                    label for="model-private" { " Private: encrypt the image; grant its key to approved datasets with " code { "medmesh model grant" } }
                }
                button type="submit" { "Register" }
            }
        }
        section {
            h2 { "Request association" }
            form.stack #associate-model method="post" action="/models/associate" {
                (csrf(&signed.csrf))
                label for="assoc-benchmark" { "Benchmark" }
                select #assoc-benchmark name="benchmark" required {
                    @for b in &approved { option value=(b.id.to_hex()) { (b.benchmark.name) } }
                }
                label for="assoc-model" { "Model" }
                select #assoc-model name="model" required {
                    @for (c, _) in &mine { option value=(c.id.to_hex()) { (c.container.name) } }
                }
                button type="submit" { "Run the compatibility test and request" }
            }
        }
        section {
            h2 { "Where my models run" }
            table #where-models-run {
                (columns(&["model", "benchmark", "association", "priority", "sites with results"]))
                tbody {
                    @for (c, assocs) in &mine {
                        @if assocs.is_empty() {
                            tr { td { (c.container.name) } td.muted colspan="4" { "no association requested" } }
                        }
                        @for (a, sites) in assocs {
                            tr {
                                td { (c.container.name) }
                                td { (benchmark_name(&snap, &a.benchmark)) }
                                td { (status(a.status.label())) }
                                td.n { (a.priority) }
                                td.n { (sites) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page("My containers", &snap.me, &snap.net, &signed.csrf, body))
}

fn optional_path(form: &CsrfForm, name: &str) -> Option<PathBuf> {
    Some(form.get(name)).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `POST /models/register`: a job that registers the container.
pub async fn register(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let name = form.need("name")?.to_string();
    if name.chars().count() > CONTAINER_NAME_CHARS_MAX {
        return Err(anyhow::anyhow!(
            "a container name has at most {CONTAINER_NAME_CHARS_MAX} characters"
        )
        .into());
    }
    let args = ContainerArgs {
        name: name.clone(),
        manifest: PathBuf::from(form.need("manifest")?),
        image: Some(form.get("image")).filter(|v| !v.is_empty()).map(String::from),
        digest: None,
        parameters: optional_path(&form, "parameters"),
        additional_files: optional_path(&form, "additional_files"),
        archive: ImageArchive::Save,
        private: form.get("private") == "yes",
    };
    let u = ui.clone();
    started(ui.jobs.start(format!("Register container {name}"), move |job| {
        let s = u.session(Confirm::Yes)?;
        job.progress(0, 1, "saving the image and publishing");
        let r = workflow::submit_container(&s, &args)?;
        job.progress(1, 1, "registered");
        Ok(Outcome::Done {
            summary: format!("Registered {name} as {}.", r.id.short()),
            next: Some(("/models".into(), "Request its association".into())),
        })
    }))
}

/// `POST /models/associate`: a job running the compatibility test on the
/// benchmark's demo dataset, then publishing the request.
pub async fn associate(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let parse = |n: &str| -> anyhow::Result<protocol::RecordId> {
        form.need(n)?.parse().map_err(|e| anyhow::anyhow!("`{n}` is not a record id: {e}"))
    };
    let (benchmark, model) = (parse("benchmark")?, parse("model")?);
    let u = ui.clone();
    started(ui.jobs.start(format!("Request association of model {}", model.short()), move |job| {
        let s = u.session(Confirm::Yes)?;
        job.progress(0, 2, "compatibility test on the demo dataset");
        let (r, _) = workflow::associate(&s, &benchmark, Subject::Model(model))?;
        job.progress(2, 2, "requested");
        let now = views::association(s.api(), &benchmark, &Subject::Model(model))?
            .map(|a| a.status.label());
        Ok(Outcome::Done {
            summary: format!(
                "Association requested ({}); status: {}.",
                r.id.short(),
                now.unwrap_or("not yet folded")
            ),
            next: Some(("/models".into(), "Back to my models".into())),
        })
    }))
}
