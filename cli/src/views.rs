//! The node's paged views (`GET /v1/benchmarks`, `/v1/datasets`,
//! `/v1/associations`, `/v1/results`, `/v1/containers`, `/v1/leaderboards/{id}`),
//! read page by page through their `next` cursors: each page is an indexed query
//! on the node, so listing one benchmark's associations costs what that list
//! holds, not the whole state.

use anyhow::{Context, anyhow};
use protocol::fold::{AssociationView, BenchmarkView, ContainerView, DatasetView, ResultView};
use protocol::fold::{GrantView, Member, ProfileView, ReleaseView, Status};
use protocol::record::Subject;
use protocol::root::AdmissionMode;
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

// ---------------------------------------------------------------------------
// Single records and small answers (`GET /v1/benchmarks/{id}`, `/v1/lookup/{kind}`,
// `/v1/grants/{model}/{dataset}`, `/v1/keys/{key}`, ...): what a command that
// acts on one record reads, instead of the whole state.

/// Percent-encode a query value (names may hold anything).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One JSON document, or `None` when the node answers 404.
pub fn one<T: DeserializeOwned>(api: &dyn NodeApi, path: &str) -> anyhow::Result<Option<T>> {
    match api.get_view(path)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("the node's answer to {path} is not what this medmesh expects")
        })?)),
    }
}

/// One page of a view: `(items, next)`.
pub fn page<T: DeserializeOwned>(
    api: &dyn NodeApi,
    route: &str,
    params: &[(&str, String)],
    after: Option<&str>,
    limit: u32,
) -> anyhow::Result<(Vec<T>, Option<String>)> {
    let mut p = params.to_vec();
    p.push(("limit", limit.to_string()));
    if let Some(a) = after {
        p.push(("after", encode(a)));
    }
    let path = format!("{route}?{}", query(&p));
    let bytes =
        api.get_view(&path)?.ok_or_else(|| anyhow!("the node has no {route}; update it"))?;
    let page: Page<T> = serde_json::from_slice(&bytes)
        .with_context(|| format!("the node's answer to {path} is not what this medmesh expects"))?;
    Ok((page.items, page.next))
}

fn unknown(what: &str, id: &RecordId, list: &str) -> anyhow::Error {
    anyhow!(
        "{what} {} is unknown to the node (is it synced?); list them with `medmesh {list} ls`",
        id.short()
    )
}

/// One benchmark.
pub fn benchmark(api: &dyn NodeApi, id: &RecordId) -> anyhow::Result<BenchmarkView> {
    one(api, &format!("/v1/benchmarks/{}", id.to_hex()))?
        .ok_or_else(|| unknown("benchmark", id, "benchmark"))
}

/// One container.
pub fn container(api: &dyn NodeApi, id: &RecordId) -> anyhow::Result<ContainerView> {
    one(api, &format!("/v1/containers/{}", id.to_hex()))?
        .ok_or_else(|| unknown("container", id, "container"))
}

/// One container, or `None` when the node does not know it.
pub fn container_opt(api: &dyn NodeApi, id: &RecordId) -> anyhow::Result<Option<ContainerView>> {
    one(api, &format!("/v1/containers/{}", id.to_hex()))
}

/// One dataset.
pub fn dataset(api: &dyn NodeApi, id: &RecordId) -> anyhow::Result<DatasetView> {
    one(api, &format!("/v1/datasets/{}", id.to_hex()))?
        .ok_or_else(|| unknown("dataset", id, "dataset"))
}

/// One dataset, or `None` when the node does not know it.
pub fn dataset_opt(api: &dyn NodeApi, id: &RecordId) -> anyhow::Result<Option<DatasetView>> {
    one(api, &format!("/v1/datasets/{}", id.to_hex()))
}

/// One result, by its record id.
pub fn result(api: &dyn NodeApi, id: &RecordId) -> anyhow::Result<ResultView> {
    one(api, &format!("/v1/results/{}", id.to_hex()))?
        .ok_or_else(|| unknown("result", id, "result"))
}

/// A key's profile.
pub fn profile(api: &dyn NodeApi, key: &PublicKey) -> anyhow::Result<Option<ProfileView>> {
    one(api, &format!("/v1/profiles/{}", key.to_hex()))
}

/// The release shown for a benchmark.
pub fn release(api: &dyn NodeApi, b: &RecordId) -> anyhow::Result<Option<ReleaseView>> {
    one(api, &format!("/v1/releases/{}", b.to_hex()))
}

/// The grant of a private model's key for one dataset, and whether it is revoked.
#[derive(Clone, Debug, Deserialize)]
pub struct GrantAnswer {
    pub grant: Option<GrantView>,
    pub revoked: bool,
}

/// The grant of `model`'s key for `dataset`.
pub fn grant(
    api: &dyn NodeApi,
    model: &RecordId,
    dataset: &RecordId,
) -> anyhow::Result<GrantAnswer> {
    let path = format!("/v1/grants/{}/{}", model.to_hex(), dataset.to_hex());
    one(api, &path)?.ok_or_else(|| anyhow!("the node has no /v1/grants; update it"))
}

/// The grants of one model (to one grantee).
pub fn grants(
    api: &dyn NodeApi,
    model: &RecordId,
    grantee: Option<&PublicKey>,
) -> anyhow::Result<Vec<GrantView>> {
    let p: Vec<_> =
        some("model", Some(model)).into_iter().chain(some("grantee", grantee)).collect();
    all(api, "/v1/grants", &p)
}

/// The network's admins, admission mode and size.
#[derive(Clone, Debug, Deserialize)]
pub struct NetworkInfo {
    pub network: protocol::NetworkId,
    pub hash: protocol::Hash32,
    pub records: u64,
    pub admin_epoch: u64,
    pub admins: Vec<PublicKey>,
    pub admin_threshold: u16,
    pub admission: AdmissionMode,
    pub members: u64,
}

/// The network's admins, admission mode and size.
pub fn network(api: &dyn NodeApi) -> anyhow::Result<NetworkInfo> {
    one(api, "/v1/network")?.ok_or_else(|| anyhow!("the node has no /v1/network; update it"))
}

/// One key's standing.
#[derive(Clone, Debug, Deserialize)]
pub struct KeyInfo {
    pub admitted: bool,
    pub admin: bool,
    pub member: Option<Member>,
    pub revoked_from_seq: Option<u64>,
    pub profile: Option<ProfileView>,
}

/// One key's standing: admitted (admin, member with roles), revoked, profile.
pub fn key(api: &dyn NodeApi, key: &PublicKey) -> anyhow::Result<KeyInfo> {
    one(api, &format!("/v1/keys/{}", key.to_hex()))?
        .ok_or_else(|| anyhow!("the node has no /v1/keys; update it"))
}

/// Every admitted key other than the admins.
pub fn members(api: &dyn NodeApi) -> anyhow::Result<Vec<Member>> {
    all(api, "/v1/members", &[])
}

/// The benchmarks whose committee `key` sits on.
pub fn committees(api: &dyn NodeApi, key: &PublicKey) -> anyhow::Result<Vec<BenchmarkView>> {
    all(api, &format!("/v1/committees/{}", key.to_hex()), &[])
}

/// Associations matching these filters (`benchmark`, `subject`, `kind`, `status`).
pub fn associations_where(
    api: &dyn NodeApi,
    params: &[(&str, String)],
) -> anyhow::Result<Vec<AssociationView>> {
    all(api, "/v1/associations", params)
}

/// The association of `subject` with `benchmark`, if requested.
pub fn association(
    api: &dyn NodeApi,
    benchmark: &RecordId,
    subject: &Subject,
) -> anyhow::Result<Option<AssociationView>> {
    let p = [("subject", subject.id().to_hex()), ("benchmark", benchmark.to_hex())];
    Ok(associations_where(api, &p)?.into_iter().find(|a| a.subject == *subject))
}

/// The approved models of a benchmark, highest priority first, then by id (the
/// order `State::approved_models` gives).
pub fn approved_models(api: &dyn NodeApi, b: &RecordId) -> anyhow::Result<Vec<AssociationView>> {
    let p = [("benchmark", b.to_hex()), ("kind", "model".into()), ("status", "approved".into())];
    let mut v = associations_where(api, &p)?;
    v.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.subject.cmp(&b.subject)));
    Ok(v)
}

/// The model's association with the benchmark is approved (so its results count).
pub fn model_approved(api: &dyn NodeApi, b: &RecordId, model: &RecordId) -> anyhow::Result<bool> {
    Ok(association(api, b, &Subject::Model(*model))?.is_some_and(|a| a.status == Status::Approved))
}

/// Results matching these filters (`benchmark`, `model`, `dataset`, `counts`).
pub fn results_where(
    api: &dyn NodeApi,
    params: &[(&str, String)],
) -> anyhow::Result<Vec<ResultView>> {
    all(api, "/v1/results", params)
}

/// The names of these records and keys, as the node knows them (public names).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Names {
    pub ids: std::collections::BTreeMap<RecordId, String>,
    pub keys: std::collections::BTreeMap<PublicKey, String>,
}

/// Most ids plus keys asked in one names query (the node's bound).
pub const NAMES_PER_QUERY: usize = 200;

/// Public names of records and keys' profile names, a bounded query at a time.
pub fn names(api: &dyn NodeApi, ids: &[RecordId], keys: &[PublicKey]) -> anyhow::Result<Names> {
    let mut out = Names::default();
    let mut ids: Vec<RecordId> = ids.to_vec();
    ids.sort();
    ids.dedup();
    let mut keys: Vec<PublicKey> = keys.to_vec();
    keys.sort();
    keys.dedup();
    for chunk in ids.chunks(NAMES_PER_QUERY) {
        let list: Vec<String> = chunk.iter().map(|i| i.to_hex()).collect();
        let n: Names = one(api, &format!("/v1/names?ids={}", list.join(",")))?.unwrap_or_default();
        out.ids.extend(n.ids);
    }
    for chunk in keys.chunks(NAMES_PER_QUERY) {
        let list: Vec<String> = chunk.iter().map(|k| k.to_hex()).collect();
        let n: Names = one(api, &format!("/v1/names?keys={}", list.join(",")))?.unwrap_or_default();
        out.keys.extend(n.keys);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Found {
    id: RecordId,
}

#[derive(Deserialize)]
struct Lookup {
    named: Vec<Found>,
    prefixed: Vec<Found>,
    more: bool,
}

/// Resolve what a command line names (`kind`: benchmark, container, dataset,
/// result): an exact public name first, else a unique id prefix, as
/// [`crate::ids::resolve`] does, asked of the node's indexes.
pub fn resolve(
    api: &dyn NodeApi,
    kind: &str,
    what: &'static str,
    input: &str,
) -> anyhow::Result<RecordId> {
    use crate::ids::{LookupError, PREFIX_DIGITS_MIN};
    let trimmed = input.trim();
    let l: Lookup = one(api, &format!("/v1/lookup/{kind}?q={}", encode(trimmed)))?
        .ok_or_else(|| anyhow!("the node has no /v1/lookup; update it"))?;
    match l.named.as_slice() {
        [] => {}
        [one] => return Ok(one.id),
        many => {
            return Err(LookupError::AmbiguousName {
                what,
                name: trimmed.to_string(),
                matches: many.iter().map(|m| m.id.short()).collect(),
            }
            .into());
        }
    }
    let p = trimmed.to_ascii_lowercase();
    if p.len() < PREFIX_DIGITS_MIN || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(LookupError::NotHex { what, input: input.to_string() }.into());
    }
    match (l.prefixed.as_slice(), l.more) {
        ([], _) => Err(LookupError::Unknown { what, prefix: p }.into()),
        ([one], false) => Ok(one.id),
        (many, _) => {
            let mut matches: Vec<String> = many.iter().map(|m| m.id.short()).collect();
            if l.more {
                matches.push("...".into());
            }
            Err(LookupError::Ambiguous { what, prefix: p, matches }.into())
        }
    }
}

/// The head of a benchmark's leaderboard (`GET /v1/leaderboards/{id}?limit=1`).
#[derive(Clone, Debug, Deserialize)]
pub struct LeaderboardHead {
    pub release_round: u64,
    pub total_rows: u64,
    /// The first row's model name.
    #[serde(skip)]
    pub leader: Option<String>,
    rows: Vec<protocol::fold::LeaderboardRow>,
}

/// The head of a benchmark's leaderboard (its round, its size, its leader), or
/// `None` before a release.
pub fn leaderboard_page(
    api: &dyn NodeApi,
    b: &RecordId,
) -> anyhow::Result<Option<LeaderboardHead>> {
    // `null` before a release.
    let head: Option<Option<LeaderboardHead>> =
        one(api, &format!("/v1/leaderboards/{}?limit=1", b.to_hex()))?;
    Ok(head.flatten().map(|mut h| {
        h.leader = h.rows.first().map(|r| r.model_name.clone());
        h
    }))
}
