//! The page frame, navigation, search and paging, and error pages. Every page
//! is a maud template: text goes in escaped unless a template says otherwise,
//! and none does.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::{Me, QUERY_CHARS_MAX};
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

fn nav(me: &Me, csrf_token: &str) -> Markup {
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
                @if me.committee { li { a href="/decisions" { "Decisions" } } }
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
    net: &crate::views::NetworkInfo,
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
                    header { (nav(me, csrf_token)) }
                    main #main {
                        h1 { (title) }
                        (body)
                    }
                    footer {
                        "network " (net.network.short()) " · " (net.records) " records · state "
                        (net.hash.short())
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
/// Most cursors a list's "Previous" link remembers (older pages are reached
/// from the first page again).
pub const TRAIL_MAX: usize = 8;

/// A list page's query: its search text, its place (the node's cursor, and the
/// cursors of the pages before it, for "Previous"), and a benchmark filter.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    /// The node's cursor of this page (the `next` of the page before).
    #[serde(default)]
    pub after: String,
    /// The cursors of the pages before, oldest first, `~`-separated (empty for
    /// the first page).
    #[serde(default)]
    pub trail: String,
    #[serde(default)]
    pub benchmark: String,
}

impl ListQuery {
    /// The search text, bounded.
    pub fn text(&self) -> String {
        self.q.trim().chars().take(QUERY_CHARS_MAX).collect()
    }

    /// The cursor to ask the node for, if any.
    pub fn cursor(&self) -> Option<&str> {
        Some(self.after.as_str()).filter(|a| !a.is_empty() && a.len() <= 1024)
    }

    fn trail(&self) -> Vec<&str> {
        let t: Vec<&str> = self.trail.split('~').collect();
        let t: Vec<&str> = if self.trail.is_empty() { Vec::new() } else { t };
        let skip = t.len().saturating_sub(TRAIL_MAX);
        t[skip..].to_vec()
    }

    /// The search form, and the pager of a page the node answered with `next`.
    pub fn paged(&self, path: &str, next: Option<&str>) -> (Markup, Markup) {
        let q = self.text();
        let link = |after: Option<&str>, trail: &[&str]| {
            let mut s = path.to_string();
            let mut sep = '?';
            let mut add = |k: &str, v: &str| {
                if !v.is_empty() {
                    s.push(sep);
                    sep = '&';
                    s.push_str(k);
                    s.push('=');
                    s.push_str(&encode(v));
                }
            };
            add("q", &q);
            add("benchmark", &self.benchmark);
            add("after", after.unwrap_or(""));
            add("trail", &trail.join("~"));
            s
        };
        let trail = self.trail();
        let here = self.cursor();
        // Previous: the last cursor of the trail ("" is the first page).
        let prev = here.map(|_| match trail.split_last() {
            Some((last, rest)) => link(Some(last), rest),
            None => link(None, &[]),
        });
        let next_link = next.map(|n| {
            let mut t = trail.clone();
            if let Some(h) = here {
                t.push(h);
            }
            let skip = t.len().saturating_sub(TRAIL_MAX);
            link(Some(n), &t[skip..])
        });
        let number = if here.is_some() { trail.len() + 2 } else { 1 };
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
                @if let Some(p) = &prev { a rel="prev" href=(p) { "Previous" } }
                span { "page " (number) @if next.is_some() { " · more after this" } }
                @if let Some(n) = &next_link { a rel="next" href=(n) { "Next" } }
            }
        };
        (search, pager)
    }

    /// The search form, the table of one page of the node's list, and the pager.
    pub fn list<T>(
        &self,
        path: &str,
        items: &[T],
        next: Option<&str>,
        table: impl FnOnce(&[T]) -> Markup,
    ) -> Markup {
        let (search, pager) = self.paged(path, next);
        html! { (search) (table(items)) (pager) }
    }
}

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
    fn a_list_pages_by_the_nodes_cursor_and_keeps_its_search_and_trail_in_the_links() {
        let q = ListQuery {
            q: "st luke's & co".into(),
            after: "bb".into(),
            trail: "aa".into(),
            benchmark: String::new(),
        };
        let (search, pager) = q.paged("/datasets", Some("cc"));
        let pager = pager.into_string();
        assert!(pager.contains("page 3 · more after this"), "{pager}");
        assert!(
            pager.contains("/datasets?q=st%20luke%27s%20%26%20co&amp;after=cc&amp;trail=aa~bb"),
            "{pager}"
        );
        assert!(pager.contains("/datasets?q=st%20luke%27s%20%26%20co&amp;after=aa\""), "{pager}");
        assert!(search.into_string().contains("value=\"st luke's &amp; co\""));
        // The first page has no Previous; the last no Next.
        let first = ListQuery::default();
        let (_, pager) = first.paged("/x", Some("k"));
        let pager = pager.into_string();
        assert!(!pager.contains("rel=\"prev\"") && pager.contains("/x?after=k\""), "{pager}");
        let second = ListQuery { after: "k".into(), ..ListQuery::default() };
        let (_, pager) = second.paged("/x", None);
        let pager = pager.into_string();
        assert!(pager.contains("href=\"/x\"") && !pager.contains("rel=\"next\""), "{pager}");
        // The trail is bounded.
        let long = ListQuery {
            after: "z".into(),
            trail: (0..50).map(|i| i.to_string()).collect::<Vec<_>>().join("~"),
            ..ListQuery::default()
        };
        let (_, pager) = long.paged("/x", Some("y"));
        let pager = pager.into_string();
        assert!(pager.contains("trail=43~44~45~46~47~48~49~z\""), "{pager}");
    }
}
