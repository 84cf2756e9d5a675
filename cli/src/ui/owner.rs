//! The benchmark owner's preparation dashboard: which sites are preparing, done
//! or failed, from what they published (preparation itself stays on each site:
//! MedMesh publishes no progress of it, so a site shows once it registers).

use axum::Extension;
use axum::extract::{Path, State};
use maud::html;
use protocol::fold::Status;
use protocol::record::{DatasetState, MemberRole, Subject};

use super::auth::Signed;
use super::browse::{dataset_name, parse_id, who};
use super::layout::{self, status};
use super::{Page, Shared, UiError, snapshot};

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
    let snap = snapshot(&ui).await?;
    let id = parse_id(&id, snap.state.benchmarks.keys().copied())?;
    let b = snap
        .state
        .benchmarks
        .get(&id)
        .ok_or_else(|| UiError(anyhow::anyhow!("benchmark {} is unknown", id.short())))?;
    let sites: Vec<_> = snap
        .state
        .datasets
        .values()
        .filter(|d| d.dataset.benchmark == id)
        .map(|d| {
            let assoc = snap.state.association(&id, &Subject::Dataset(d.id)).map(|a| a.status);
            let results =
                snap.state.results.iter().filter(|r| r.dataset == d.id && r.counts).count();
            (d, stage(d.state, assoc), results)
        })
        .collect();
    let registered: std::collections::BTreeSet<_> = sites.iter().map(|(d, _, _)| d.owner).collect();
    let silent: Vec<_> = snap
        .state
        .members
        .iter()
        .filter(|m| m.roles.contains(&MemberRole::DataOwner) && !registered.contains(&m.key))
        .collect();
    let count = |s: &str| sites.iter().filter(|(_, (st, _), _)| *st == s).count();
    let body = html! {
        @if b.owner != snap.me.key { p.muted { "You do not own this benchmark; this is what its owner sees." } }
        p #summary { (count("done")) " done · " (count("preparing")) " preparing · " (count("failed")) " failed · "
            (silent.len()) " data owners have registered nothing yet" }
        table #sites {
            thead { tr { th scope="col" { "site" } th scope="col" { "dataset" } th scope="col" { "stage" } th scope="col" { "why" } th scope="col" { "results" } } }
            tbody {
                @for (d, (st, why), results) in &sites {
                    tr { td { (who(&snap, &d.owner)) } td { (dataset_name(&snap, &d.id)) } td { (status(st)) } td { (why) } td.n { (results) } }
                }
                @for m in &silent {
                    tr { td { (who(&snap, &m.key)) } td.muted { "none yet" } td { (status("not started")) } td { "no dataset registered (it may be preparing on site)" } td.n { "0" } }
                }
            }
        }
    };
    Ok(layout::page(
        &format!("Preparation of {}", b.benchmark.name),
        &snap.me,
        &snap.state,
        &signed.csrf,
        body,
    ))
}
