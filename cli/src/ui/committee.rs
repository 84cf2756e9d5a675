//! Decisions: what waits for this committee member, and signing after review.
//!
//! Every decision (an association, a release, and the admin's benchmark
//! approvals and admissions, which [`super::admin`] lists) goes through the same
//! two steps: `review` runs the workflow function with [`Confirm::Preview`], which
//! stops before signing and shows the record as it would be signed; `sign` runs it
//! again with [`Confirm::Reviewed`] and the digest of what was shown, so that a
//! record other than the one reviewed is never signed.

use axum::Extension;
use axum::extract::State;
use axum::response::IntoResponse;
use maud::html;
use protocol::fold::Status;
use protocol::record::{Decision, MemberRole, Subject};
use protocol::{Hash32, PublicKey, Record, RecordId};

use super::auth::{CsrfForm, Signed};
use super::browse::{benchmark_name, subject_name, who};
use super::layout::{self, columns, csrf};
use super::{Page, Shared, Snapshot, UiError, blocking, snapshot_with};
use crate::publish::{Confirm, Unsigned};
use crate::views;
use crate::workflow::{self, Session};
use protocol::fold::AssociationView;

/// A decision to sign.
#[derive(Clone, Debug)]
pub enum Action {
    Association { benchmark: RecordId, subject: Subject, decision: Decision, priority: Option<i32> },
    Release { benchmark: RecordId },
    Benchmark { benchmark: RecordId, decision: Decision },
    Admit { key: PublicKey, roles: Option<Vec<MemberRole>> },
}

fn id(form: &CsrfForm, name: &str) -> anyhow::Result<RecordId> {
    form.need(name)?.parse().map_err(|e| anyhow::anyhow!("`{name}` is not a record id: {e}"))
}

fn decision(form: &CsrfForm) -> anyhow::Result<Decision> {
    match form.need("decision")? {
        "approve" => Ok(Decision::Approve),
        "reject" => Ok(Decision::Reject),
        other => anyhow::bail!("`{other}` is not a decision: approve or reject"),
    }
}

impl Action {
    /// The action a form names (the same fields in review and sign).
    pub fn from_form(form: &CsrfForm) -> anyhow::Result<Self> {
        Ok(match form.need("action")? {
            "association" => Action::Association {
                benchmark: id(form, "benchmark")?,
                subject: match form.need("kind")? {
                    "dataset" => Subject::Dataset(id(form, "subject")?),
                    "model" => Subject::Model(id(form, "subject")?),
                    k => anyhow::bail!("`{k}` is not a subject kind: dataset or model"),
                },
                decision: decision(form)?,
                priority: match form.get("priority") {
                    "" => None,
                    p => Some(
                        p.parse()
                            .map_err(|_| anyhow::anyhow!("the priority must be a whole number"))?,
                    ),
                },
            },
            "release" => Action::Release { benchmark: id(form, "benchmark")? },
            "benchmark" => {
                Action::Benchmark { benchmark: id(form, "benchmark")?, decision: decision(form)? }
            }
            "admit" => Action::Admit {
                key: crate::cmd::parse_key(form.need("key")?)?,
                roles: match form.get("roles") {
                    "" | "asked" => None,
                    "none" => Some(Vec::new()),
                    list => Some(
                        list.split(',')
                            .map(|r| match r.trim() {
                                "data_owner" => Ok(MemberRole::DataOwner),
                                "model_owner" => Ok(MemberRole::ModelOwner),
                                "benchmark_owner" => Ok(MemberRole::BenchmarkOwner),
                                o => Err(anyhow::anyhow!("`{o}` is not a role")),
                            })
                            .collect::<anyhow::Result<_>>()?,
                    ),
                },
            },
            other => anyhow::bail!("`{other}` is not an action this page signs"),
        })
    }

    /// Run the workflow function, as the command would.
    pub fn perform(&self, s: &Session) -> anyhow::Result<Record> {
        match self {
            Action::Association { benchmark, subject, decision, priority } => {
                workflow::decide_association(s, *benchmark, *subject, *decision, *priority)
            }
            Action::Release { benchmark } => workflow::release(s, benchmark),
            Action::Benchmark { benchmark, decision } => {
                workflow::decide_benchmark(s, *benchmark, *decision)
            }
            Action::Admit { key, roles } => Ok(workflow::admit(s, *key, roles.clone())?.0),
        }
    }

    pub fn describe(&self, snap: &Snapshot) -> String {
        let verb = |d: &Decision| match d {
            Decision::Approve => "Approve",
            Decision::Reject => "Reject",
        };
        match self {
            Action::Association { benchmark, subject, decision, priority } => {
                let (kind, name) = subject_name(snap, subject);
                format!(
                    "{} the association of {kind} {name} with benchmark {}{}",
                    verb(decision),
                    benchmark_name(snap, benchmark),
                    priority.map(|p| format!(", priority {p}")).unwrap_or_default()
                )
            }
            Action::Release { benchmark } => {
                format!("Release the results of benchmark {}", benchmark_name(snap, benchmark))
            }
            Action::Benchmark { benchmark, decision } => {
                format!("{} benchmark {}", verb(decision), benchmark_name(snap, benchmark))
            }
            Action::Admit { key, .. } => format!("Admit key {}", key.short()),
        }
    }

    /// Learn the names [`Action::describe`] shows.
    fn learn(&self, snap: &mut Snapshot) -> anyhow::Result<()> {
        match self {
            Action::Association { benchmark, subject, .. } => {
                snap.learn([*benchmark, subject.id()], [])?;
                if let Subject::Dataset(d) = subject {
                    snap.learn_dataset_ids([*d])?;
                }
                Ok(())
            }
            Action::Release { benchmark } | Action::Benchmark { benchmark, .. } => {
                snap.learn([*benchmark], [])
            }
            Action::Admit { .. } => Ok(()),
        }
    }
}

/// Associations waiting for this member's decision: pending, on a benchmark whose
/// committee holds this key, not decided by it, and not its own request (the
/// committees of this key, then each one's pending associations: indexed queries).
pub fn waiting(snap: &Snapshot) -> anyhow::Result<Vec<AssociationView>> {
    let me = snap.me.key;
    let mut out = Vec::new();
    for b in views::committees(snap.api(), &me)? {
        let p = [("benchmark", b.id.to_hex()), ("status", "pending".to_string())];
        out.extend(views::associations_where(snap.api(), &p)?.into_iter().filter(|a| {
            a.status == Status::Pending
                && a.initiator != me
                && !a.approvals.contains(&me)
                && !a.rejections.contains(&me)
        }));
    }
    Ok(out)
}

/// `GET /decisions`: what waits for me, and the releases I may sign.
pub async fn page(State(ui): State<Shared>, Extension(signed): Extension<Signed>) -> Page {
    let (snap, (list, mine)) = snapshot_with(&ui, |snap| {
        let list = waiting(snap)?;
        super::browse::learn_associations(snap, &list)?;
        let mut mine = Vec::new();
        for b in views::committees(snap.api(), &snap.me.key)? {
            if b.status != Status::Approved {
                continue;
            }
            // Counted up to one page of the node's largest.
            let p = [("benchmark", b.id.to_hex()), ("counts", "true".to_string())];
            let (counting, more) = views::page::<protocol::fold::ResultView>(
                snap.api(),
                "/v1/results",
                &p,
                None,
                views::VIEW_PAGE_ITEMS,
            )?;
            let counting = if more.is_some() {
                format!("over {}", counting.len())
            } else {
                counting.len().to_string()
            };
            let shown = views::leaderboard_page(snap.api(), &b.id)?.map(|l| l.release_round);
            mine.push((b, counting, shown));
        }
        Ok((list, mine))
    })
    .await?;
    let body = html! {
        h2 { "Association requests waiting for you" }
        @if list.is_empty() { p #nothing-waiting { "Nothing waits for your decision." } }
        @else {
            table #waiting {
                (columns(&["benchmark", "subject", "requested by", "compatibility test", "decide"]))
                tbody {
                    @for a in &list {
                        @let (kind, name) = subject_name(&snap, &a.subject);
                        tr {
                            td { (benchmark_name(&snap, &a.benchmark)) }
                            td { (kind) " " (name) }
                            td { (who(&snap, &a.initiator)) }
                            td { (a.approvals.len()) " approvals so far" }
                            td {
                                form.inline method="post" action="/decisions/review" {
                                    (csrf(&signed.csrf))
                                    input type="hidden" name="action" value="association";
                                    input type="hidden" name="benchmark" value=(a.benchmark.to_hex());
                                    input type="hidden" name="kind" value=(kind);
                                    input type="hidden" name="subject" value=(a.subject.id().to_hex());
                                    @if kind == "model" {
                                        label for={ "priority-" (a.request.short()) } { "Priority" }
                                        input id={ "priority-" (a.request.short()) } type="number" name="priority" value="0" size="4";
                                    }
                                    button type="submit" name="decision" value="approve" { "Review approval of " (name) }
                                    button.reject type="submit" name="decision" value="reject" { "Review rejection of " (name) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Releases" }
        @if mine.is_empty() { p { "You are on no approved benchmark's committee." } }
        @for (b, counting, shown) in &mine {
            section {
                h3 { (b.benchmark.name) }
                p { (counting) " results count; shown release: " (shown.map(|r| format!("round {r}")).unwrap_or_else(|| "none".into())) }
                form.inline.release method="post" action="/decisions/review" {
                    (csrf(&signed.csrf))
                    input type="hidden" name="action" value="release";
                    input type="hidden" name="benchmark" value=(b.id.to_hex());
                    button type="submit" { "Review the release of " (b.benchmark.name) }
                }
            }
        }
    };
    Ok(layout::page("Decisions", &snap.me, &snap.net, &signed.csrf, body))
}

/// `POST /decisions/review`: the record as it would be signed, and a form to sign it.
pub async fn review(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let action = Action::from_form(&form)?;
    let (a, u) = (action.clone(), ui.clone());
    let preview: Unsigned = blocking(move || {
        let s = u.session(Confirm::Preview)?;
        match a.perform(&s) {
            Ok(r) => {
                anyhow::bail!("record {} was signed without review; report this", r.id.short())
            }
            Err(e) => match e.downcast::<Unsigned>() {
                Ok(u) => Ok(u),
                Err(e) => Err(e),
            },
        }
    })
    .await?;
    let a = action.clone();
    let snap = snapshot_with(&ui, move |snap| a.learn(snap)).await?.0;
    let fields: Vec<&(String, String)> =
        form.fields.iter().filter(|(k, _)| k != "csrf" && k != "digest").collect();
    let body = html! {
        p { (action.describe(&snap)) "." }
        p { "You are about to sign this " strong { (preview.kind) } " record as " (who(&snap, &preview.signer))
            ", seq " (preview.seq) " of your chain. Read it before you sign:" }
        pre #record tabindex="0" aria-label="The record to sign" { (preview.body_json) }
        form.inline method="post" action="/decisions/sign" {
            (csrf(&form.session.csrf))
            @for (k, v) in &fields { input type="hidden" name=(k) value=(v); }
            input type="hidden" name="digest" value=(preview.digest.to_hex());
            button #sign type="submit" { "Sign and publish" }
        }
        " "
        a href="/decisions" { "Cancel" }
    };
    Ok(layout::page("Review before signing", &snap.me, &snap.net, &form.session.csrf, body))
}

/// `POST /decisions/sign`: sign the reviewed record, and show the network's verdict.
pub async fn sign(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let action = Action::from_form(&form)?;
    let digest: Hash32 = form
        .need("digest")?
        .parse()
        .map_err(|e| UiError(anyhow::anyhow!("the review digest is malformed: {e}")))?;
    let (a, u) = (action.clone(), ui.clone());
    let record = blocking(move || a.perform(&u.session(Confirm::Reviewed(digest))?)).await?;
    let a = action.clone();
    let snap = snapshot_with(&ui, move |snap| a.learn(snap)).await?.0;
    let body = html! {
        p #signed role="status" { "Signed and published: " (action.describe(&snap)) "." }
        p { "Record " code { (record.id.to_hex()) } " (a " (record.kind()) ", seq " (record.seq) "). The network counts it." }
        p { a href="/decisions" { "Back to decisions" } }
    };
    Ok((
        axum::http::StatusCode::OK,
        layout::page("Published", &snap.me, &snap.net, &form.session.csrf, body),
    )
        .into_response())
}
