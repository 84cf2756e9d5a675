//! The node's paged views (`GET /v1/benchmarks`, `/v1/datasets`,
//! `/v1/associations`, `/v1/results`, `/v1/containers`, `/v1/leaderboards/{id}`),
//! read page by page through their `next` cursors: each page is an indexed query
//! on the node, so listing one benchmark's associations costs what that list
//! holds, not the whole state.

use anyhow::{Context, anyhow};
use protocol::fold::{AssociationView, BenchmarkView, ContainerView, DatasetView, ResultView};
use protocol::{PublicKey, RecordId};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::publish::NodeApi;

/// Items asked for per page (the node's largest page).
pub const VIEW_PAGE_ITEMS: u32 = 1_000;
/// Most pages one listing reads (a million items at the largest page).
pub const VIEW_PAGES_MAX: u32 = 1_000;

#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

/// A query string from `(name, value)` pairs whose values are hex ids, keys,
/// words or cursors (nothing to escape but what a cursor never holds).
fn query(params: &[(&str, String)]) -> String {
    params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Every item of a view, following `next` until the end.
pub fn all<T: DeserializeOwned>(
    api: &dyn NodeApi,
    route: &str,
    params: &[(&str, String)],
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..VIEW_PAGES_MAX {
        let mut p = params.to_vec();
        p.push(("limit", VIEW_PAGE_ITEMS.to_string()));
        if let Some(a) = &after {
            p.push(("after", a.clone()));
        }
        let path = format!("{route}?{}", query(&p));
        let bytes =
            api.get_view(&path)?.ok_or_else(|| anyhow!("the node has no {route}; update it"))?;
        let page: Page<T> = serde_json::from_slice(&bytes).with_context(|| {
            format!("the node's answer to {path} is not what this medmesh expects")
        })?;
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
    anyhow::bail!(
        "{route} has more than {VIEW_PAGES_MAX} pages; narrow the listing with its filters"
    )
}

fn some<T: ToString>(name: &'static str, v: Option<T>) -> Option<(&'static str, String)> {
    v.map(|v| (name, v.to_string()))
}

/// Every benchmark.
pub fn benchmarks(api: &dyn NodeApi) -> anyhow::Result<Vec<BenchmarkView>> {
    all(api, "/v1/benchmarks", &[])
}

/// Every container (of one owner).
pub fn containers(
    api: &dyn NodeApi,
    owner: Option<&PublicKey>,
) -> anyhow::Result<Vec<ContainerView>> {
    let p: Vec<_> = some("owner", owner).into_iter().collect();
    all(api, "/v1/containers", &p)
}

/// Every dataset (of one benchmark, of one owner).
pub fn datasets(
    api: &dyn NodeApi,
    benchmark: Option<&RecordId>,
    owner: Option<&PublicKey>,
) -> anyhow::Result<Vec<DatasetView>> {
    let p: Vec<_> = some("benchmark", benchmark).into_iter().chain(some("owner", owner)).collect();
    all(api, "/v1/datasets", &p)
}

/// Every association (of one benchmark).
pub fn associations(
    api: &dyn NodeApi,
    benchmark: Option<&RecordId>,
) -> anyhow::Result<Vec<AssociationView>> {
    let p: Vec<_> = some("benchmark", benchmark).into_iter().collect();
    all(api, "/v1/associations", &p)
}

/// Every result (of one benchmark).
pub fn results(api: &dyn NodeApi, benchmark: Option<&RecordId>) -> anyhow::Result<Vec<ResultView>> {
    let p: Vec<_> = some("benchmark", benchmark).into_iter().collect();
    all(api, "/v1/results", &p)
}

/// One benchmark's leaderboard, whole (rows and cells), or `None` before a release.
pub fn leaderboard(
    api: &dyn NodeApi,
    benchmark: &RecordId,
) -> anyhow::Result<Option<protocol::fold::Leaderboard>> {
    let path = format!("/v1/benchmarks/{}/leaderboard", benchmark.to_hex());
    match api.get_view(&path)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("the node's answer to {path} is not a leaderboard")),
    }
}
