//! This user's own records: the public profile (with the encryption key results
//! are sealed to) and, in an admitted network, the request to join.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use protocol::record::MemberRole;

use super::auth::CsrfForm;
use super::layout::csrf;
use super::{Page, Shared, Snapshot, blocking};
use crate::publish::Confirm;
use crate::workflow;

/// Longest profile field or join-request text accepted from a form, in characters
/// (the record's own bounds are checked when it is built).
pub const FIELD_CHARS_MAX: usize = 2_000;

/// The forms the home page shows: the profile, and the join request while this
/// key is not admitted.
pub fn forms(snap: &Snapshot, token: &str) -> Markup {
    let admitted = snap.me.admitted;
    let name = snap.me.name.clone().unwrap_or_default();
    let organisation = snap.me.organisation.clone().unwrap_or_default();
    html! {
        @if !admitted {
            section {
                h2 { "Ask to join" }
                p { "This network admits keys: until an admin admits yours, the network ignores what you sign." }
                form.stack #apply method="post" action="/apply" {
                    (csrf(token))
                    fieldset {
                        legend { "Roles you need" }
                        div { input #role-data type="checkbox" name="role" value="data_owner"; label for="role-data" { " data owner (register datasets, run benchmarks)" } }
                        div { input #role-model type="checkbox" name="role" value="model_owner"; label for="role-model" { " model owner (register models)" } }
                        div { input #role-bench type="checkbox" name="role" value="benchmark_owner"; label for="role-bench" { " benchmark owner (create benchmarks)" } }
                    }
                    label for="apply-name" { "Your name, as the admins will see it" }
                    input #apply-name name="name" required maxlength="200";
                    label for="apply-organisation" { "Organisation" }
                    input #apply-organisation name="organisation" maxlength="200";
                    label for="apply-message" { "How the admins can check it is you" }
                    textarea #apply-message name="message" rows="2" maxlength="2000" {}
                    button type="submit" { "Send the join request" }
                }
            }
        }
        section {
            h2 { "Your profile" }
            p.muted { "Public: your name, organisation and the key results are sealed to." }
            form.stack #profile method="post" action="/profile" {
                (csrf(token))
                label for="profile-name" { "Name" }
                input #profile-name name="name" required maxlength="200" value=(name);
                label for="profile-organisation" { "Organisation" }
                input #profile-organisation name="organisation" maxlength="200" value=(organisation);
                button type="submit" { "Publish the profile" }
            }
        }
    }
}

fn bounded(form: &CsrfForm, name: &str) -> anyhow::Result<String> {
    let v = form.get(name);
    if v.chars().count() > FIELD_CHARS_MAX {
        anyhow::bail!("`{name}` is longer than {FIELD_CHARS_MAX} characters; shorten it");
    }
    Ok(v.to_string())
}

/// `POST /profile`.
pub async fn profile(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let name = bounded(&form, "name")?;
    form.need("name")?;
    let organisation = bounded(&form, "organisation")?;
    blocking(move || workflow::submit_profile(&ui.session(Confirm::Yes)?, &name, &organisation))
        .await?;
    Ok(Redirect::to("/").into_response())
}

/// `POST /apply`.
pub async fn apply(State(ui): State<Shared>, form: CsrfForm) -> Page {
    let mut roles = Vec::new();
    for (k, v) in &form.fields {
        if k == "role" {
            roles.push(match v.as_str() {
                "data_owner" => MemberRole::DataOwner,
                "model_owner" => MemberRole::ModelOwner,
                "benchmark_owner" => MemberRole::BenchmarkOwner,
                o => return Err(anyhow::anyhow!("`{o}` is not a role").into()),
            });
        }
    }
    roles.sort();
    roles.dedup();
    form.need("name")?;
    let (name, organisation, message) =
        (bounded(&form, "name")?, bounded(&form, "organisation")?, bounded(&form, "message")?);
    blocking(move || {
        workflow::apply(&ui.session(Confirm::Yes)?, roles, name, organisation, message)
    })
    .await?;
    Ok(Redirect::to("/").into_response())
}
