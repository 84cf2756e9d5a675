//! The admin's page: benchmarks waiting for approval, and join requests to admit.
//! Both are signed after review, through [`super::committee`]'s two steps.

use axum::Extension;
use axum::extract::State;
use maud::html;
use protocol::fold::Status;

use super::auth::Signed;
use super::browse::who;
use super::layout::{self, columns, csrf};
use super::{Page, Shared, blocking, snapshot};

fn roles(r: &[protocol::record::MemberRole]) -> String {
    if r.is_empty() {
        return "none (a committee member)".into();
    }
    r.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ")
}

/// `GET /admin`.
pub async fn page(State(ui): State<Shared>, Extension(signed): Extension<Signed>) -> Page {
    let snap = snapshot(&ui).await?;
    let home = ui.home.clone();
    let open = snap.state.admission.is_open();
    let requests = if open {
        Vec::new()
    } else {
        blocking(move || crate::workflow::join_requests(&home)).await?
    };
    let pending: Vec<_> =
        snap.state.benchmarks.values().filter(|b| b.status == Status::Pending).collect();
    let body = html! {
        @if !snap.me.admin { p.bad { "You are not one of this network's admins: what you sign here is ignored by the network." } }
        h2 { "Benchmarks waiting for approval" }
        @if pending.is_empty() { p { "None." } }
        @for b in &pending {
            section {
                h3 { (b.benchmark.name) }
                p { "By " (who(&snap, &b.owner)) ". " (b.benchmark.description) }
                @if !b.missing_containers.is_empty() { p.bad { (b.missing_containers.len()) " of its containers have not reached this node yet." } }
                form.inline method="post" action="/decisions/review" {
                    (csrf(&signed.csrf))
                    input type="hidden" name="action" value="benchmark";
                    input type="hidden" name="benchmark" value=(b.id.to_hex());
                    button type="submit" name="decision" value="approve" { "Review approval of " (b.benchmark.name) }
                    button.reject type="submit" name="decision" value="reject" { "Review rejection of " (b.benchmark.name) }
                }
            }
        }
        h2 { "Join requests" }
        @if open { p { "This network is open: every key takes part without admission." } }
        @else if requests.is_empty() { p { "No join requests wait in your node's pool." } }
        @else {
            table #join-requests {
                (columns(&["name", "organisation", "roles asked", "message", "key", "admit"]))
                tbody {
                    @for r in &requests {
                        tr {
                            td { (r.name) } td { (r.organisation) } td { (roles(&r.roles)) } td { (r.message) }
                            td { code { (r.key.short()) } }
                            td {
                                form.inline method="post" action="/decisions/review" {
                                    (csrf(&signed.csrf))
                                    input type="hidden" name="action" value="admit";
                                    input type="hidden" name="key" value=(r.key.to_hex());
                                    label for={ "roles-" (r.key.short()) } { "Roles" }
                                    select id={ "roles-" (r.key.short()) } name="roles" {
                                        option value="asked" selected { "as asked" }
                                        option value="none" { "none (committee member)" }
                                        option value="data_owner" { "data owner" }
                                        option value="model_owner" { "model owner" }
                                        option value="benchmark_owner" { "benchmark owner" }
                                    }
                                    button type="submit" { "Review admission of " (r.name) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Members" }
        table #members {
            (columns(&["who", "roles"]))
            tbody {
                @for k in &snap.state.admins { tr { td { (who(&snap, k)) } td { "admin (every role)" } } }
                @for m in &snap.state.members { tr { td { (who(&snap, &m.key)) } td { (roles(&m.roles)) } } }
            }
        }
    };
    Ok(layout::page("Admin", &snap.me, &snap.state, &signed.csrf, body))
}
