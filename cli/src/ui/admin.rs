//! The admin's page: benchmarks waiting for approval, and join requests to admit.
//! Both are signed after review, through [`super::committee`]'s two steps.

use axum::Extension;
use axum::extract::{Query, State};
use maud::html;
use protocol::fold::{BenchmarkView, Member};

use super::auth::Signed;
use super::browse::who;
use super::layout::{self, ListQuery, columns, csrf};
use super::{LIST_ROWS_MAX, Page, Shared, snapshot_with};
use crate::views;

fn roles(r: &[protocol::record::MemberRole]) -> String {
    if r.is_empty() {
        return "none (a committee member)".into();
    }
    r.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ")
}

/// `GET /admin`.
pub async fn page(
    State(ui): State<Shared>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<ListQuery>,
) -> Page {
    let home = ui.home.clone();
    let after = q.cursor().map(str::to_string);
    let (snap, (requests, pending, members, next)) = snapshot_with(&ui, move |snap| {
        let open = snap.net.admission.is_open();
        let requests = if open { Vec::new() } else { crate::workflow::join_requests(&home)? };
        let p = [("status", "pending".to_string())];
        let (pending, _) =
            views::page::<BenchmarkView>(snap.api(), "/v1/benchmarks", &p, None, LIST_ROWS_MAX)?;
        let (members, next) = views::page::<Member>(
            snap.api(),
            "/v1/members",
            &[],
            after.as_deref(),
            super::PAGE_ROWS,
        )?;
        let admins = snap.net.admins.clone();
        snap.learn(
            [],
            pending.iter().map(|b| b.owner).chain(admins).chain(members.iter().map(|m| m.key)),
        )?;
        Ok((requests, pending, members, next))
    })
    .await?;
    let open = snap.net.admission.is_open();
    let (_, pager) = q.paged("/admin", next.as_deref());
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
                @if q.cursor().is_none() {
                    @for k in &snap.net.admins { tr { td { (who(&snap, k)) } td { "admin (every role)" } } }
                }
                @for m in &members { tr { td { (who(&snap, &m.key)) } td { (roles(&m.roles)) } } }
            }
        }
        (pager)
    };
    Ok(layout::page("Admin", &snap.me, &snap.net, &signed.csrf, body))
}
