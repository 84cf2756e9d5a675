//! The page frame, navigation, search and paging, and error pages. Every page
//! is a maud template: text goes in escaped unless a template says otherwise,
//! and none does.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::{Me, PAGE_ROWS, QUERY_CHARS_MAX};
use crate::publish::{IgnoredByFold, ReviewOutdated};

const SCRIPT: &str = include_str!("static/ui.js");
const STYLE: &str = include_str!("static/ui.css");

pub async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// The hidden CSRF field every form carries.
pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

fn nav(me: &Me, st: &protocol::State, csrf_token: &str) -> Markup {
    html! {
        nav aria-label="Main" {
            a.brand href="/" { "MedMesh" }
            ul {
                li { a href="/benchmarks" { "Benchmarks" } }
                li { a href="/containers" { "Containers" } }
                li { a href="/datasets" { "Datasets" } }
                li { a href="/associations" { "Associations" } }
                li { a href="/results" { "Results" } }
                li { a href="/leaderboards" { "Leaderboards" } }
            }
            ul aria-label="Your work" {
                @if me.data_owner { li { a href="/data" { "My data" } } }
                @if me.model_owner { li { a href="/models" { "My containers" } } }
                @if me.benchmark_owner { li { a href="/owner" { "My benchmarks" } } }
                @if me.committee(st) { li { a href="/decisions" { "Decisions" } } }
                @if me.admin { li { a href="/admin" { "Admin" } } }
                li { a href="/jobs" { "Jobs" } }
            }
            form.signout method="post" action="/signout" {
                (csrf(csrf_token))
                span.who { (me.name.clone().unwrap_or_else(|| me.key.short())) }
                button type="submit" { "Sign out" }
            }
        }
    }
}

/// A whole page for a signed-in user.
pub fn page(
    title: &str,
    me: &Me,
    st: &protocol::State,
    csrf_token: &str,
    body: Markup,
) -> Response {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · MedMesh" }
                    link rel="stylesheet" href="/static/ui.css";
                    script src="/static/ui.js" defer {}
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header { (nav(me, st, csrf_token)) }
                    main #main {
                        h1 { (title) }
                        (body)
                    }
                    footer {
                        "network " (st.network.short()) " · " (st.records) " records · state "
                        (st.hash.short())
                    }
                }
            }
        }
        .into_string(),
    )
    .into_response()
}

/// A page with a message only (sign-in, refusals).
pub fn plain(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · MedMesh" }
                link rel="stylesheet" href="/static/ui.css";
            }
            body { main #main { h1 { (title) } p.message { (text) } } }
        }
    };
    (status, Html(body.into_string())).into_response()
}

/// An error as a page: a record the network ignores names the fold's reason.
pub fn error_page(e: &anyhow::Error) -> Response {
    if let Some(ig) = e.downcast_ref::<IgnoredByFold>() {
        return plain(
            StatusCode::CONFLICT,
            "Ignored by the network",
            &format!(
                "The network keeps your {} record {} but ignores it: {}",
                ig.kind,
                ig.id.short(),
                ig.reason
            ),
        );
    }
    if e.downcast_ref::<ReviewOutdated>().is_some() {
        return plain(StatusCode::CONFLICT, "Review again", &format!("{e:#}"));
    }
    plain(StatusCode::BAD_REQUEST, "Could not do that", &format!("{e:#}"))
}

/// Search and paging of a list, from the query string.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub page: u32,
    #[serde(default)]
    pub benchmark: String,
}

impl ListQuery {
    /// The search text, bounded, in lower case.
    pub fn needle(&self) -> String {
        self.q.chars().take(QUERY_CHARS_MAX).collect::<String>().to_lowercase()
    }

    /// Whether any of `texts` contains the search text.
    pub fn hit(&self, texts: &[&str]) -> bool {
        let n = self.needle();
        n.is_empty() || texts.iter().any(|t| t.to_lowercase().contains(&n))
    }

    /// This page of `items`, and the search form with the pager.
    pub fn paged<T>(&self, path: &str, items: Vec<T>) -> (Vec<T>, Markup, Markup) {
        let total = items.len() as u64;
        let rows = u64::from(PAGE_ROWS);
        let pages = total.div_ceil(rows).max(1);
        let page = u64::from(self.page).min(pages - 1);
        let shown: Vec<T> =
            items.into_iter().skip((page * rows) as usize).take(rows as usize).collect();
        let q = self.q.chars().take(QUERY_CHARS_MAX).collect::<String>();
        let link = |p: u64| {
            let mut s = format!("{path}?page={p}");
            if !q.is_empty() {
                s.push_str("&q=");
                s.push_str(&encode(&q));
            }
            if !self.benchmark.is_empty() {
                s.push_str("&benchmark=");
                s.push_str(&encode(&self.benchmark));
            }
            s
        };
        let search = html! {
            form.search role="search" method="get" action=(path) {
                label for="q" { "Search" }
                input #q type="search" name="q" value=(q);
                @if !self.benchmark.is_empty() {
                    input type="hidden" name="benchmark" value=(self.benchmark);
                }
                button type="submit" { "Search" }
            }
        };
        let pager = html! {
            nav.pager aria-label="Pages" {
                @if page > 0 { a rel="prev" href=(link(page - 1)) { "Previous" } }
                span { "page " (page + 1) " of " (pages) " · " (total) " in all" }
                @if page + 1 < pages { a rel="next" href=(link(page + 1)) { "Next" } }
            }
        };
        (shown, search, pager)
    }

    /// A list page's body: the search form, this page of `items` as `table`
    /// draws them, and the pager.
    pub fn list<T>(&self, path: &str, items: Vec<T>, table: impl FnOnce(&[T]) -> Markup) -> Markup {
        let (items, search, pager) = self.paged(path, items);
        html! { (search) (table(&items)) (pager) }
    }
}

/// Percent-encode a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A table's header row, one column heading per name.
pub fn columns(names: &[&str]) -> Markup {
    html! { thead { tr { @for n in names { th scope="col" { (n) } } } } }
}

/// A status as a badge with its text (never colour alone).
pub fn status(label: &str) -> Markup {
    let class = match label {
        "approved" | "done" | "operational" | "counts" => "ok",
        "rejected" | "failed" | "failed test" => "bad",
        _ => "wait",
    };
    html! { span class={ "badge " (class) } { (label) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_pages_and_keeps_its_search_in_the_links() {
        let q = ListQuery { q: "st luke's & co".into(), page: 1, benchmark: String::new() };
        let (shown, search, pager) = q.paged("/datasets", (0..60).collect::<Vec<u32>>());
        assert_eq!(shown, (25..50).collect::<Vec<_>>());
        let pager = pager.into_string();
        assert!(pager.contains("page 2 of 3 · 60 in all"), "{pager}");
        assert!(pager.contains("/datasets?page=2&amp;q=st%20luke%27s%20%26%20co"), "{pager}");
        assert!(pager.contains("/datasets?page=0&amp;q="), "{pager}");
        assert!(search.into_string().contains("value=\"st luke's &amp; co\""));
        // Past the end: the last page.
        let far = ListQuery { page: u32::MAX, ..ListQuery::default() };
        let (shown, _, _) = far.paged("/x", (0..60).collect::<Vec<u32>>());
        assert_eq!(shown, (50..60).collect::<Vec<_>>());
        assert!(q.hit(&["ST LUKE'S & CO hospital"]) && !q.hit(&["st mary's"]));
    }
}
