//! The local control API (HTTP; loopback unless the node runs with
//! `--control-public`) that the CLI talks to.
//!
//! Writes need `Authorization: Bearer <token>`, the token kept in the data
//! directory's `control.token` (owner-only). Reads reveal only what every peer
//! already holds and are open. Every request must carry a `Host` this API
//! answers to ([`HostPolicy`]: loopback forms and the listening address, plus IP
//! literals and `--control-host` names when public), or gets 403 `bad_host`: a
//! web page cannot reach it by DNS rebinding. It speaks plain HTTP: served with
//! `--control-public`, it logs [`CONTROL_PUBLIC_WARNING`] at start.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /v1/status` | `{peer_id, network_id, records, state_hash, listen}` |
//! | `POST /v1/records` (raw envelope bytes) | `{id, new, pooled?, gossiped}`, or 422 `{error, message}` (invalid), or 403 (`not_admitted`, `key_quota`, `store_quota`: valid, not stored) |
//! | `GET /v1/records?after=<id>&limit=<n>` | `{ids, next}` |
//! | `GET /v1/records/{id}` | the exact envelope bytes (`application/cbor`) |
//! | `GET /v1/state` | `{network, records, hash, admin_epoch, counts}` |
//! | `GET /v1/state/{view}` | one view of the derived state as JSON, whole (for scripts; counted in `/metrics` as `medmesh_control_state_downloads_total`; no CLI command asks it) |
//! | `GET /v1/benchmarks?owner=&status=&limit=&after=` | `{items, next}`: a page of benchmarks (`BenchmarkView`), by id ([`crate::views`]) |
//! | `GET /v1/containers?owner=&limit=&after=` | a page of containers, by id |
//! | `GET /v1/datasets?benchmark=&owner=&limit=&after=` | a page of datasets, by id |
//! | `GET /v1/associations?benchmark=&subject=&kind=dataset\|model&status=&limit=&after=` | a page of associations, by benchmark and subject |
//! | `GET /v1/results?benchmark=&model=&dataset=&counts=&limit=&after=` | a page of results, by benchmark, model, dataset and id |
//! | `GET /v1/leaderboards/{benchmark}?limit=&after=` | the leaderboard without its cells, with a page of its rows (`null` before a release) |
//! | `GET /v1/leaderboards/{benchmark}/cells?limit=&after=` | `{benchmark, release_round, datasets, total_cells, cells, next}`: a page of its model x dataset cells (`null` before a release) |
//! | `GET /v1/benchmarks?q=`, `/v1/containers?q=`, `/v1/datasets?benchmark=&q=` | a page of those whose public name holds `q` (any case) or whose id starts with it |
//! | `GET /v1/benchmarks/{id}`, `/v1/containers/{id}`, `/v1/datasets/{id}`, `/v1/results/{id}` | one record's view, or 404 `unknown_benchmark` (`_container`, ...) |
//! | `GET /v1/profiles/{key}`, `/v1/releases/{benchmark}` | a key's profile, a benchmark's shown release (404 `unknown_profile`, `unknown_release`) |
//! | `GET /v1/lookup/{benchmark\|container\|dataset\|result}?q=` | `{named, prefixed, more}`: what an exact public name and an id prefix name, at most 16 each |
//! | `GET /v1/grants/{model}/{dataset}` | `{grant, revoked}`: the grant of a private model's key for a dataset that counts |
//! | `GET /v1/grants?model=&grantee=&limit=&after=` | a page of one model's grants, by dataset |
//! | `GET /v1/network` | `{network, records, hash, admin_epoch, admins, admin_threshold, admission, members}` |
//! | `GET /v1/keys/{key}` | `{key, admitted, admin, member, revoked_from_seq, profile}` |
//! | `GET /v1/members?limit=&after=` | a page of the admitted keys other than the admins, by key |
//! | `GET /v1/committees/{key}?limit=&after=` | a page of the benchmarks whose committee holds the key |
//! | `GET /v1/names?ids=&keys=` | `{ids, keys}`: public names of up to 200 records and keys (comma-separated) |
//! | `GET /v1/heads/{signer}` | `{seq, id}` of the signer's chain head |
//! | `GET /v1/heads/{signer}/record` | the exact envelope bytes of that head record, which the CLI verifies (a claim it can check, unlike `{seq, id}`) |
//! | `GET /v1/records/{id}/verdict` | `{id, ignored, reason}`: whether the fold keeps the record without effect, and why |
//! | `GET /v1/join-requests` | the pool of join requests from keys not admitted yet, newest first: `[{id, key, seq, name, organisation, roles, message, received_at}]` |
//! | `GET /v1/admission` | `{mode, admitted_keys, pool_requests, pool_bytes, deferred_ids, store_bytes, quotas}` |
//! | `GET /metrics` | Prometheus text format ([`crate::metrics`]) |
//! | `GET /v1/peers` | `[{peer_id, addresses, score, mesh}]` |
//! | `GET /v1/sync` | sync status |
//! | `GET /v1/refusals` | `{refused, counts, refused_total, held, held_total, fold}`: see below |
//! | `POST /v1/blobs?pin=true` (the bytes, streamed) | `{hash, size, complete, pinned}`: a blob added (write) |
//! | `GET /v1/blobs` | `{blobs, fetches, peers, used, quota}`: every blob, every fetch since start, the peers' blob scores |
//! | `GET /v1/blobs/{hash}` | `{hash, size, complete, pinned, have, fetch}` (`fetch`: progress, peers, rate) |
//! | `POST /v1/blobs/{hash}/fetch` `{size, pin}` | 202 with the fetch's progress; fetched in the background (write) |
//! | `GET /v1/blobs/{hash}/data` | the bytes of a complete blob (`application/octet-stream`) |
//! | `POST /v1/blobs/{hash}/pin` `{pinned}` | the blob's entry (write) |
//! | `POST /v1/blobs/gc` | `{removed, freed}`: blobs neither pinned nor named by a counting record (write) |
//! | `GET /` | HTML: every benchmark with its state |
//! | `GET /benchmarks/{id}/leaderboard` | HTML: chart, table, heatmap (JSON with `Accept: application/json`) |
//! | `GET /benchmarks/{id}/leaderboard.json`, `GET /v1/benchmarks/{id}/leaderboard` | the leaderboard as JSON |
//!
//! Errors are `{error, message}` with a short stable `error` name.
//!
//! `GET /v1/refusals` is the node's log of records it refused ([`crate::refusals`]):
//! `refused`, the last 256 newest first, each `{at_ms, source, peer, id, signer,
//! reason, message}` with `source` one of `gossip`, `sync`, `control`, `import`,
//! `store` (the node's own store, read back at start) and `reason` the same
//! stable name a refused `POST /v1/records` answers in `error` (`too_large`,
//! `bad_envelope`, `unsupported_version`, `wrong_network`, `bad_signer_key`,
//! `bad_payload`, `invalid_field`, `malformed_signature`, `bad_signature`);
//! `counts`, refusals per reason since the node started; `held` and `held_total`, gossip
//! records held back, not refused (reason `rate_limited` for the per-signer rate
//! limit, `busy` when verification is at capacity), which sync fetches later.
//! Valid records the fold keeps without effect are not refusals: `fold` counts
//! them and names the views that list them with their reasons
//! (`/v1/state/ignored`, and `/v1/state/results` for results that do not count);
//! `fold` is null when the state cannot be computed, and the log is served anyway.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protocol::limits::ENVELOPE_BYTES_MAX;
use protocol::{PublicKey, RecordId};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::StartError;
use crate::node::{CONTROL_ADDR_FILE, Client, TOKEN_FILE, check_private, write_private_file};

/// Largest request body (one envelope plus slack).
pub const CONTROL_BODY_BYTES_MAX: usize = ENVELOPE_BYTES_MAX + 4096;
/// Most ids one listing returns.
pub const LIST_IDS_MAX: u64 = 10_000;
/// Bytes of randomness in a control token.
pub const TOKEN_BYTES_LEN: usize = 32;

/// Longest `Host` header value considered (a DNS name is at most 253 bytes, plus
/// a port).
pub const HOST_HEADER_BYTES_MAX: usize = 300;

/// The warning a node logs when its control API is served with `--control-public`.
pub const CONTROL_PUBLIC_WARNING: &str = "the control API is public and speaks plain HTTP: its bearer token and everything it serves travel in clear; reach it through TLS (an ssh tunnel or a reverse proxy with TLS, see README) or only on a private network";

/// Which `Host` headers the control API answers, so that a web page cannot reach
/// it through DNS rebinding (a name of the attacker's that resolves to this
/// address: the browser then sends that name as `Host`). Always accepted:
/// `localhost` and loopback IP literals, and the listening IP. With
/// `--control-public`, also any IP literal (a page served from an IP literal has
/// that IP as its origin, so no rebinding is possible through one; the address a
/// client uses may differ from the listener's behind NAT or a port mapping) and
/// the host names given with `--control-host`. The port is not compared, so that
/// ssh tunnels and port mappings work.
#[derive(Clone, Debug)]
pub struct HostPolicy {
    public: bool,
    listen: IpAddr,
    names: Vec<String>,
}

impl HostPolicy {
    /// The policy of a control API listening on `listen`, public or not, with the
    /// extra host `names` (used only when public).
    pub fn new(listen: IpAddr, public: bool, names: &[String]) -> Self {
        let names = names.iter().map(|n| normalize(n)).collect();
        HostPolicy { public, listen, names }
    }

    /// Whether a request with this `Host` header value is answered.
    pub fn allows(&self, host: &str) -> bool {
        if host.len() > HOST_HEADER_BYTES_MAX {
            return false;
        }
        let name = normalize(strip_port(host));
        if name == "localhost" {
            return true;
        }
        let literal = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(&name);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return ip.is_loopback()
                || (ip == self.listen && !ip.is_unspecified())
                || (self.public && !name.is_empty());
        }
        self.public && self.names.contains(&name)
    }
}

/// `host` without a trailing `:port` (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Lowercase, without the trailing dot of a fully qualified name.
fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Refuse a request whose `Host` the policy does not allow (403, JSON error).
async fn check_host(
    State(policy): State<Arc<HostPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request.headers().get(header::HOST).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    match host {
        Some(h) if policy.allows(h) => next.run(request).await,
        Some(h) => {
            let shown: String = h.chars().take(64).collect();
            tracing::warn!(host = %shown, "control API request refused: Host not allowed");
            let fix = if policy.public {
                format!("or start the node with --control-host {}", normalize(strip_port(&shown)))
            } else {
                "or, for a node reached from elsewhere, start it with --control-public and --control-host NAME".to_string()
            };
            error(
                StatusCode::FORBIDDEN,
                "bad_host",
                format!(
                    "this control API does not answer to Host `{shown}` (protection against DNS rebinding); use http://127.0.0.1:PORT or http://localhost:PORT, {fix}"
                ),
            )
        }
        None => error(
            StatusCode::FORBIDDEN,
            "bad_host",
            "the request has no Host header; send Host: 127.0.0.1:PORT (HTTP/1.1 clients do)",
        ),
    }
}

#[derive(Clone)]
struct Ctx {
    client: Client,
    token: String,
    /// `GET /v1/state/{view}` requests answered: each derives JSON from the
    /// whole state (shown in `/metrics`, so that a test can assert that the
    /// CLI's commands never download it).
    state_downloads: Arc<std::sync::atomic::AtomicU64>,
}

/// Read the token, creating it on first start.
pub fn load_or_create_token(dir: &Path) -> Result<String, StartError> {
    let path = dir.join(TOKEN_FILE);
    let err = |source: std::io::Error| StartError::Token { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(t) => {
            check_private(&path)
                .map_err(|m| err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, m)))?;
            Ok(t.trim().to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut raw = [0u8; TOKEN_BYTES_LEN];
            getrandom::fill(&mut raw).map_err(|e| err(std::io::Error::other(e.to_string())))?;
            let token = hex::encode(raw);
            write_private_file(&path, token.as_bytes()).map_err(err)?;
            Ok(token)
        }
        Err(e) => Err(err(e)),
    }
}

pub(crate) async fn serve(
    dir: &Path,
    addr: SocketAddr,
    client: Client,
    public: bool,
    hosts: &[String],
) -> Result<(SocketAddr, oneshot::Sender<()>, JoinHandle<()>), StartError> {
    let token = load_or_create_token(dir)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Control { addr, source })?;
    let bound = listener.local_addr().map_err(|source| StartError::Control { addr, source })?;
    std::fs::write(dir.join(CONTROL_ADDR_FILE), bound.to_string())
        .map_err(|source| StartError::Token { path: dir.join(CONTROL_ADDR_FILE), source })?;
    let app = router(client, token, HostPolicy::new(bound.ip(), public, hosts));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "control API stopped");
        }
    });
    Ok((bound, tx, task))
}

/// The control API's routes over a client (also usable in tests without a socket),
/// answering only requests whose `Host` the policy allows.
pub fn router(client: Client, token: String, hosts: HostPolicy) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/records", get(list_records).post(submit))
        .route("/v1/records/{id}", get(get_record))
        .route("/v1/state", get(state_summary))
        .route("/v1/state/{view}", get(state_view))
        .route("/v1/benchmarks", get(view_benchmarks))
        .route("/v1/containers", get(view_containers))
        .route("/v1/datasets", get(view_datasets))
        .route("/v1/associations", get(view_associations))
        .route("/v1/results", get(view_results))
        .route("/v1/leaderboards/{benchmark}", get(view_leaderboard))
        .route("/v1/leaderboards/{benchmark}/cells", get(view_cells))
        .route("/v1/benchmarks/{id}", get(one_benchmark))
        .route("/v1/containers/{id}", get(one_container))
        .route("/v1/datasets/{id}", get(one_dataset))
        .route("/v1/results/{id}", get(one_result))
        .route("/v1/profiles/{key}", get(one_profile))
        .route("/v1/releases/{benchmark}", get(one_release))
        .route("/v1/grants", get(view_grants))
        .route("/v1/grants/{model}/{dataset}", get(one_grant))
        .route("/v1/network", get(view_network))
        .route("/v1/members", get(view_members))
        .route("/v1/keys/{key}", get(view_key))
        .route("/v1/committees/{key}", get(view_committees))
        .route("/v1/lookup/{kind}", get(view_lookup))
        .route("/v1/names", get(view_names))
        .route("/v1/heads/{signer}", get(head))
        .route("/v1/heads/{signer}/record", get(head_record))
        .route("/v1/records/{id}/verdict", get(verdict))
        .route("/metrics", get(metrics))
        .route("/v1/join-requests", get(join_requests))
        .route("/v1/admission", get(admission))
        .route("/v1/peers", get(peers))
        .route("/v1/sync", get(sync_status))
        .route("/v1/refusals", get(refusals))
        .route("/v1/blobs", get(blobs_overview).post(blob_add).layer(DefaultBodyLimit::disable()))
        .route("/v1/blobs/gc", axum::routing::post(blob_gc))
        .route("/v1/blobs/{hash}", get(blob_status))
        .route("/v1/blobs/{hash}/fetch", axum::routing::post(blob_fetch))
        .route("/v1/blobs/{hash}/data", get(blob_data))
        .route("/v1/blobs/{hash}/pin", axum::routing::post(blob_pin))
        .route("/", get(benchmarks_page))
        .route("/benchmarks/{id}/leaderboard", get(leaderboard_page))
        .route("/benchmarks/{id}/leaderboard.json", get(leaderboard_json))
        .route("/v1/benchmarks/{id}/leaderboard", get(leaderboard_json))
        .layer(DefaultBodyLimit::max(CONTROL_BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(Arc::new(hosts), check_host))
        .with_state(Ctx { client, token, state_downloads: Arc::default() })
}

fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": kind, "message": message.to_string() }))).into_response()
}

fn authorized(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(t) = v.strip_prefix("Bearer ") else { return false };
    // Compare without an early exit.
    t.len() == ctx.token.len()
        && t.bytes().zip(ctx.token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn status(State(ctx): State<Ctx>) -> Response {
    let listen = ctx.client.listen_addrs().await.unwrap_or_default();
    let peer = ctx.client.peer_id();
    let client = ctx.client.clone();
    let (records, hash) =
        match tokio::task::spawn_blocking(move || (client.len(), client.state_hash())).await {
            Ok(x) => x,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
        };
    Json(json!({
        "peer_id": peer.to_string(),
        "network_id": ctx.client.network_id(),
        "records": records,
        "state_hash": hash,
        "listen": listen.iter().map(|a| a.clone().with(libp2p::multiaddr::Protocol::P2p(peer)).to_string()).collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn metrics(State(ctx): State<Ctx>) -> Response {
    match ctx.client.metrics().await {
        Ok(m) => {
            let mut text = m.render();
            let n = ctx.state_downloads.load(std::sync::atomic::Ordering::Relaxed);
            text.push_str(&format!(
                "# HELP medmesh_control_state_downloads_total GET /v1/state/{{view}} requests answered (each serialises the whole derived state).\n# TYPE medmesh_control_state_downloads_total counter\nmedmesh_control_state_downloads_total {n}\n"
            ));
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
                .into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "node_stopped", e),
    }
}

async fn join_requests(State(ctx): State<Ctx>) -> Response {
    Json(ctx.client.join_requests()).into_response()
}

async fn admission(State(ctx): State<Ctx>) -> Response {
    Json(ctx.client.admission_status()).into_response()
}

async fn submit(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&ctx, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "send Authorization: Bearer <token from {TOKEN_FILE} in the node's data directory>"
            ),
        );
    }
    match ctx.client.submit(&body).await {
        Ok(s) => Json(s).into_response(),
        Err(e @ crate::SubmitError::Invalid(_)) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.kind(), e)
        }
        Err(crate::SubmitError::NotStored { reason, message }) => {
            error(StatusCode::FORBIDDEN, reason, message)
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<u64>,
}

async fn list_records(State(ctx): State<Ctx>, Query(q): Query<ListQuery>) -> Response {
    let after = match q.after.as_deref().map(str::parse::<RecordId>).transpose() {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_id", e),
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, LIST_IDS_MAX);
    match ctx.client.record_ids(after.as_ref(), limit) {
        Ok(ids) => {
            let next = if ids.len() as u64 == limit { ids.last().copied() } else { None };
            Json(json!({ "ids": ids, "next": next })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e),
    }
}

async fn get_record(State(ctx): State<Ctx>, UrlPath(id): UrlPath<String>) -> Response {
    let id: RecordId = match id.parse() {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_id", e),
    };
    match ctx.client.record(&id) {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/cbor")], bytes).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no record {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e),
    }
}

async fn current_state(ctx: &Ctx) -> Result<std::sync::Arc<protocol::State>, Response> {
    let client = ctx.client.clone();
    tokio::task::spawn_blocking(move || client.state())
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))
}

async fn state_summary(State(ctx): State<Ctx>) -> Response {
    let s = match current_state(&ctx).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    Json(json!({
        "network": s.network,
        "records": s.records,
        "hash": s.hash,
        "admin_epoch": s.admin_epoch,
        "counts": {
            "profiles": s.profiles.len(),
            "containers": s.containers.len(),
            "benchmarks": s.benchmarks.len(),
            "datasets": s.datasets.len(),
            "associations": s.associations.len(),
            "results": s.results.len(),
            "releases": s.releases.len(),
            "leaderboards": s.leaderboards.len(),
            "ignored": s.ignored.len(),
            "equivocations": s.equivocations.len(),
            "gaps": s.gaps.len(),
        },
    }))
    .into_response()
}

async fn state_view(State(ctx): State<Ctx>, UrlPath(view): UrlPath<String>) -> Response {
    ctx.state_downloads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let s = match current_state(&ctx).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let value = match serde_json::to_value(&*s) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    };
    if view == "all" {
        return Json(value).into_response();
    }
    match value.get(&view) {
        Some(v) if view != "hash" && view != "network" => Json(v.clone()).into_response(),
        _ => error(
            StatusCode::NOT_FOUND,
            "unknown_view",
            format!(
                "no state view `{view}`; try benchmarks, containers, datasets, associations, results, releases, leaderboards, profiles, ignored, all"
            ),
        ),
    }
}

/// The query of a paged view: its filters, `limit` and `after` (the `next` of
/// the previous page).
#[derive(Deserialize, Default)]
struct ViewQuery {
    benchmark: Option<String>,
    owner: Option<String>,
    subject: Option<String>,
    model: Option<String>,
    dataset: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    counts: Option<bool>,
    limit: Option<u32>,
    after: Option<String>,
    /// Search text: a name's substring (any case) or an id prefix.
    q: Option<String>,
    grantee: Option<String>,
    /// Comma-separated ids and keys (`/v1/names`).
    ids: Option<String>,
    keys: Option<String>,
}

/// A query parameter the views cannot take: its error name and message (a 400).
type BadParam = (&'static str, String);

impl ViewQuery {
    fn limit(&self) -> u32 {
        self.limit.unwrap_or(crate::views::VIEW_PAGE_DEFAULT).clamp(1, crate::views::VIEW_PAGE_MAX)
    }

    fn id(field: &str, v: &Option<String>) -> Result<Option<RecordId>, BadParam> {
        v.as_deref()
            .map(|s| s.parse().map_err(|e| ("bad_id", format!("{field}: {e} (give a full id)"))))
            .transpose()
    }

    /// The search text, bounded, unless a filter it cannot combine with is set.
    fn search(&self, other_filter: bool) -> Result<Option<String>, BadParam> {
        let Some(q) = self.q.as_ref().filter(|q| !q.trim().is_empty()) else { return Ok(None) };
        if q.len() > crate::views::QUERY_BYTES_MAX {
            return Err((
                "bad_query",
                format!("q: at most {} bytes", crate::views::QUERY_BYTES_MAX),
            ));
        }
        if other_filter {
            return Err(("bad_query", "q combines with benchmark only".to_string()));
        }
        Ok(Some(q.clone()))
    }

    fn key(field: &str, v: &str) -> Result<PublicKey, BadParam> {
        v.parse().map_err(|e| ("bad_key", format!("{field}: {e}")))
    }

    fn owner(&self) -> Result<Option<PublicKey>, BadParam> {
        self.owner
            .as_deref()
            .map(|s| s.parse().map_err(|e| ("bad_key", format!("owner: {e}"))))
            .transpose()
    }

    fn status(&self) -> Result<Option<protocol::fold::Status>, BadParam> {
        use protocol::fold::Status;
        self.status
            .as_deref()
            .map(|s| match s {
                "pending" => Ok(Status::Pending),
                "approved" => Ok(Status::Approved),
                "rejected" => Ok(Status::Rejected),
                "failed_compatibility" => Ok(Status::FailedCompatibility),
                other => Err((
                    "bad_status",
                    format!(
                        "status `{other}`: use pending, approved, rejected or failed_compatibility"
                    ),
                )),
            })
            .transpose()
    }
}

/// Answer a paged view from the current views (folded first if records arrived,
/// off the async threads).
async fn with_views(
    ctx: &Ctx,
    answer: impl FnOnce(&crate::views::Views) -> Result<Vec<u8>, crate::views::ViewError>
    + Send
    + 'static,
) -> Response {
    let client = ctx.client.clone();
    let out = tokio::task::spawn_blocking(move || answer(&client.views())).await;
    match out {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Ok(Err(e @ crate::views::ViewError::Encode(_))) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e)
        }
        Ok(Err(e @ crate::views::ViewError::UnknownBenchmark(_))) => {
            error(StatusCode::NOT_FOUND, "unknown_benchmark", e)
        }
        Ok(Err(e @ crate::views::ViewError::NotFound { what, .. })) => {
            error(StatusCode::NOT_FOUND, &format!("unknown_{what}"), e)
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, "bad_cursor", e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

macro_rules! try_q {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err((kind, message)) => return error(StatusCode::BAD_REQUEST, kind, message),
        }
    };
}

async fn view_benchmarks(State(ctx): State<Ctx>, Query(q): Query<ViewQuery>) -> Response {
    let f = crate::views::BenchmarkFilter { owner: try_q!(q.owner()), status: try_q!(q.status()) };
    let limit = q.limit();
    if let Some(text) = try_q!(q.search(f.owner.is_some() || f.status.is_some())) {
        return with_views(&ctx, move |v| {
            crate::views::json(v.search_benchmarks(&text, q.after.as_deref(), limit))
        })
        .await;
    }
    with_views(&ctx, move |v| crate::views::json(v.benchmarks(&f, q.after.as_deref(), limit))).await
}

async fn view_containers(State(ctx): State<Ctx>, Query(q): Query<ViewQuery>) -> Response {
    let f = crate::views::ContainerFilter { owner: try_q!(q.owner()) };
    let limit = q.limit();
    if let Some(text) = try_q!(q.search(f.owner.is_some())) {
        return with_views(&ctx, move |v| {
            crate::views::json(v.search_containers(&text, q.after.as_deref(), limit))
        })
        .await;
    }
    with_views(&ctx, move |v| crate::views::json(v.containers(&f, q.after.as_deref(), limit))).await
}

async fn view_datasets(State(ctx): State<Ctx>, Query(q): Query<ViewQuery>) -> Response {
    let f = crate::views::DatasetFilter {
        benchmark: try_q!(ViewQuery::id("benchmark", &q.benchmark)),
        owner: try_q!(q.owner()),
    };
    let limit = q.limit();
    if let Some(text) = try_q!(q.search(f.owner.is_some())) {
        return with_views(&ctx, move |v| {
            crate::views::json(v.search_datasets(
                f.benchmark.as_ref(),
                &text,
                q.after.as_deref(),
                limit,
            ))
        })
        .await;
    }
    with_views(&ctx, move |v| crate::views::json(v.datasets(&f, q.after.as_deref(), limit))).await
}

async fn view_associations(State(ctx): State<Ctx>, Query(q): Query<ViewQuery>) -> Response {
    let models = match q.kind.as_deref() {
        None => None,
        Some("model") => Some(true),
        Some("dataset") => Some(false),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_kind",
                format!("kind `{other}`: use dataset or model"),
            );
        }
    };
    let f = crate::views::AssociationFilter {
        benchmark: try_q!(ViewQuery::id("benchmark", &q.benchmark)),
        subject: try_q!(ViewQuery::id("subject", &q.subject)),
        models,
        status: try_q!(q.status()),
    };
    let limit = q.limit();
    with_views(&ctx, move |v| crate::views::json(v.associations(&f, q.after.as_deref(), limit)))
        .await
}

async fn view_results(State(ctx): State<Ctx>, Query(q): Query<ViewQuery>) -> Response {
    let f = crate::views::ResultFilter {
        benchmark: try_q!(ViewQuery::id("benchmark", &q.benchmark)),
        model: try_q!(ViewQuery::id("model", &q.model)),
        dataset: try_q!(ViewQuery::id("dataset", &q.dataset)),
        counts: q.counts,
    };
    let limit = q.limit();
    with_views(&ctx, move |v| crate::views::json(v.results(&f, q.after.as_deref(), limit))).await
}

async fn view_leaderboard(
    State(ctx): State<Ctx>,
    UrlPath(benchmark): UrlPath<String>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let b = try_q!(ViewQuery::id("benchmark", &Some(benchmark)));
    let Some(b) = b else { return error(StatusCode::BAD_REQUEST, "bad_id", "no benchmark") };
    let limit = q.limit();
    with_views(&ctx, move |v| crate::views::json(v.leaderboard(&b, q.after.as_deref(), limit)))
        .await
}

/// A full record id in a path (400 `bad_id` otherwise).
fn path_id(field: &str, v: &str) -> Result<RecordId, BadParam> {
    v.parse().map_err(|e| {
        ("bad_id", format!("{field}: {e} (give a full id, or find it with /v1/lookup)"))
    })
}

/// `Some` as JSON, `None` as a 404 `unknown_<what>`.
fn found<T: serde::Serialize>(
    what: &'static str,
    id: impl std::fmt::Display,
    x: Option<T>,
) -> Result<Vec<u8>, crate::views::ViewError> {
    crate::views::json(
        x.ok_or_else(|| crate::views::ViewError::NotFound { what, id: id.to_string() }),
    )
}

async fn one_benchmark(State(ctx): State<Ctx>, UrlPath(id): UrlPath<String>) -> Response {
    let id = try_q!(path_id("benchmark", &id));
    with_views(&ctx, move |v| found("benchmark", id, v.benchmark(&id))).await
}

async fn one_container(State(ctx): State<Ctx>, UrlPath(id): UrlPath<String>) -> Response {
    let id = try_q!(path_id("container", &id));
    with_views(&ctx, move |v| found("container", id, v.container(&id))).await
}

async fn one_dataset(State(ctx): State<Ctx>, UrlPath(id): UrlPath<String>) -> Response {
    let id = try_q!(path_id("dataset", &id));
    with_views(&ctx, move |v| found("dataset", id, v.dataset(&id))).await
}

async fn one_result(State(ctx): State<Ctx>, UrlPath(id): UrlPath<String>) -> Response {
    let id = try_q!(path_id("result", &id));
    with_views(&ctx, move |v| found("result", id, v.result(&id))).await
}

async fn one_profile(State(ctx): State<Ctx>, UrlPath(key): UrlPath<String>) -> Response {
    let key = try_q!(ViewQuery::key("key", &key));
    with_views(&ctx, move |v| found("profile", key, v.profile(&key))).await
}

async fn one_release(State(ctx): State<Ctx>, UrlPath(b): UrlPath<String>) -> Response {
    let b = try_q!(path_id("benchmark", &b));
    with_views(&ctx, move |v| found("release", b, v.release(&b))).await
}

async fn one_grant(
    State(ctx): State<Ctx>,
    UrlPath((model, dataset)): UrlPath<(String, String)>,
) -> Response {
    let model = try_q!(path_id("model", &model));
    let dataset = try_q!(path_id("dataset", &dataset));
    with_views(&ctx, move |v| crate::views::json(Ok(v.grant(&model, &dataset)))).await
}

async fn view_grants(State(ctx): State<Ctx>, Query(q): Query<ViewQuery>) -> Response {
    let Some(model) = try_q!(ViewQuery::id("model", &q.model)) else {
        return error(StatusCode::BAD_REQUEST, "bad_query", "give model=<id>");
    };
    let grantee = try_q!(q.grantee.as_deref().map(|k| ViewQuery::key("grantee", k)).transpose());
    let limit = q.limit();
    with_views(&ctx, move |v| {
        crate::views::json(v.grants(&model, grantee.as_ref(), q.after.as_deref(), limit))
    })
    .await
}

async fn view_network(State(ctx): State<Ctx>) -> Response {
    with_views(&ctx, move |v| crate::views::json(Ok(v.network()))).await
}

async fn view_members(State(ctx): State<Ctx>, Query(q): Query<ViewQuery>) -> Response {
    let limit = q.limit();
    with_views(&ctx, move |v| crate::views::json(v.members(q.after.as_deref(), limit))).await
}

async fn view_key(State(ctx): State<Ctx>, UrlPath(key): UrlPath<String>) -> Response {
    let key = try_q!(ViewQuery::key("key", &key));
    with_views(&ctx, move |v| crate::views::json(Ok(v.key(&key)))).await
}

async fn view_committees(
    State(ctx): State<Ctx>,
    UrlPath(key): UrlPath<String>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let key = try_q!(ViewQuery::key("key", &key));
    let limit = q.limit();
    with_views(&ctx, move |v| crate::views::json(v.committees(&key, q.after.as_deref(), limit)))
        .await
}

async fn view_lookup(
    State(ctx): State<Ctx>,
    UrlPath(kind): UrlPath<String>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let Some(kind) = crate::views::Kind::parse(&kind) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_kind",
            format!("no lookup of `{kind}`: use benchmark, container, dataset or result"),
        );
    };
    let text = match try_q!(q.search(false)) {
        Some(t) => t,
        None => return error(StatusCode::BAD_REQUEST, "bad_query", "give q=<name or id prefix>"),
    };
    with_views(&ctx, move |v| crate::views::json(Ok(v.lookup(kind, &text)))).await
}

async fn view_cells(
    State(ctx): State<Ctx>,
    UrlPath(benchmark): UrlPath<String>,
    Query(q): Query<ViewQuery>,
) -> Response {
    let b = try_q!(path_id("benchmark", &benchmark));
    let limit = q.limit();
    with_views(&ctx, move |v| {
        crate::views::json(v.leaderboard_cells(&b, q.after.as_deref(), limit))
    })
    .await
}

async fn view_names(State(ctx): State<Ctx>, Query(q): Query<ViewQuery>) -> Response {
    let split = |v: &Option<String>| -> Vec<String> {
        v.as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (ids, keys) = (split(&q.ids), split(&q.keys));
    if ids.len() + keys.len() > crate::views::NAMES_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("at most {} ids and keys in all", crate::views::NAMES_MAX),
        );
    }
    let ids: Vec<RecordId> =
        try_q!(ids.iter().map(|i| path_id("ids", i)).collect::<Result<_, _>>());
    let keys: Vec<PublicKey> =
        try_q!(keys.iter().map(|k| ViewQuery::key("keys", k)).collect::<Result<_, _>>());
    with_views(&ctx, move |v| crate::views::json(Ok(v.names(&ids, &keys)))).await
}

async fn head(State(ctx): State<Ctx>, UrlPath(signer): UrlPath<String>) -> Response {
    let key: PublicKey = match signer.parse() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_key", e),
    };
    match ctx.client.head(&key) {
        Some((seq, id)) => Json(json!({ "seq": seq, "id": id })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_signer",
            "no record from this signer yet; start the chain at seq 0",
        ),
    }
}

async fn peers(State(ctx): State<Ctx>) -> Response {
    match ctx.client.peers().await {
        Ok(p) => Json(p).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "node_stopped", e),
    }
}

async fn sync_status(State(ctx): State<Ctx>) -> Response {
    match ctx.client.sync_status().await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "node_stopped", e),
    }
}

/// The refusal log is served even when the state cannot be computed (then
/// `fold` is null): it is what an operator reads when something is wrong.
async fn refusals(State(ctx): State<Ctx>) -> Response {
    let mut v = match serde_json::to_value(ctx.client.refusals()) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    };
    v["fold"] = match current_state(&ctx).await {
        Ok(s) => json!({
            "ignored": s.ignored.len(),
            "results_not_counting": s.results.iter().filter(|r| !r.counts).count(),
            "views": ["/v1/state/ignored", "/v1/state/results"],
        }),
        Err(_) => serde_json::Value::Null,
    };
    Json(v).into_response()
}

async fn benchmarks_page(State(ctx): State<Ctx>) -> Response {
    match current_state(&ctx).await {
        Ok(s) => axum::response::Html(crate::web::benchmarks_page(&s)).into_response(),
        Err(r) => r,
    }
}

/// The benchmark named by a path's id (full hex or a unique prefix).
// The error is the handler's finished answer; boxing it would only move the cost.
#[allow(clippy::result_large_err)]
fn find_benchmark(s: &protocol::State, id: &str) -> Result<RecordId, Response> {
    let id = id.to_ascii_lowercase();
    let matches: Vec<RecordId> =
        s.benchmarks.keys().filter(|k| k.to_hex().starts_with(&id)).copied().collect();
    match matches.as_slice() {
        [one] if id.len() >= 4 => Ok(*one),
        [] => Err(error(
            StatusCode::NOT_FOUND,
            "unknown_benchmark",
            format!("no benchmark has an id starting with `{id}`"),
        )),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "ambiguous_benchmark",
            format!("`{id}` is too short to name one benchmark"),
        )),
    }
}

async fn leaderboard_page(
    State(ctx): State<Ctx>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return leaderboard_json(State(ctx), UrlPath(id)).await;
    }
    let s = match current_state(&ctx).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match find_benchmark(&s, &id) {
        Ok(b) => axum::response::Html(crate::web::leaderboard_page(
            &s.benchmarks[&b],
            s.leaderboards.get(&b),
        ))
        .into_response(),
        Err(r) => r,
    }
}

async fn leaderboard_json(State(ctx): State<Ctx>, UrlPath(id): UrlPath<String>) -> Response {
    let s = match current_state(&ctx).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match find_benchmark(&s, &id) {
        Ok(b) => match s.leaderboards.get(&b) {
            Some(lb) => Json(lb).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "not_released",
                "the committee has not released results for this benchmark yet",
            ),
        },
        Err(r) => r,
    }
}

/// The signer's head record itself: the CLI verifies its signature, signer and
/// network before it trusts the seq, so a node cannot make up a head.
async fn head_record(State(ctx): State<Ctx>, UrlPath(signer): UrlPath<String>) -> Response {
    let key: PublicKey = match signer.parse() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_key", e),
    };
    let Some((_, id)) = ctx.client.head(&key) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_signer",
            "no record from this signer yet; start the chain at seq 0",
        );
    };
    match ctx.client.record(&id) {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/cbor")], bytes).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", format!("no record {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e),
    }
}

/// The fold's verdict on one record: `ignored` with the fold's reason when the
/// record is kept without effect (a decision by a key without authority, a
/// request by a non-owner, ...), so that the CLI can tell its user.
async fn verdict(State(ctx): State<Ctx>, UrlPath(id): UrlPath<String>) -> Response {
    let id: RecordId = match id.parse() {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_id", e),
    };
    if !ctx.client.contains(&id) {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no record {id}"));
    }
    let s = match current_state(&ctx).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let reason = s.ignored.iter().find(|i| i.id == id).map(|i| &i.reason);
    Json(json!({ "id": id, "ignored": reason.is_some(), "reason": reason })).into_response()
}

#[cfg(test)]
mod tests {
    use super::HostPolicy;

    #[test]
    fn a_loopback_control_api_answers_only_to_loopback_forms() {
        let p = HostPolicy::new("127.0.0.1".parse().unwrap(), false, &[]);
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "localhost:8080",
            "LOCALHOST",
            "localhost.",
            "[::1]:9",
            "127.0.0.2:1",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.5:8080",
            "[fe80::1]:8080",
            "",
            ":8080",
            "127.0.0.1.evil.example",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
    }

    #[test]
    fn a_public_control_api_also_answers_to_ip_literals_and_its_configured_names() {
        let names = vec!["Node1.Hospital.example.".to_string()];
        let p = HostPolicy::new("0.0.0.0".parse().unwrap(), true, &names);
        for ok in [
            "node1.hospital.example:8080",
            "NODE1.hospital.example",
            "172.18.0.5:8080",
            "[2001:db8::5]:80",
            "localhost",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for refused in
            ["evil.example:8080", "hospital.example", "node1.hospital.example.evil", "0.0.0.0.evil"]
        {
            assert!(!p.allows(refused), "{refused}");
        }
        // Names count only for a public API.
        let private = HostPolicy::new("127.0.0.1".parse().unwrap(), false, &names);
        assert!(!private.allows("node1.hospital.example"));
    }

    #[test]
    fn an_overlong_host_is_refused() {
        let p = HostPolicy::new("0.0.0.0".parse().unwrap(), true, &[]);
        assert!(!p.allows(&format!("{}.example", "a".repeat(super::HOST_HEADER_BYTES_MAX))));
    }
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!(
            "send Authorization: Bearer <token from {TOKEN_FILE} in the node's data directory>"
        ),
    )
}

fn blob_error(e: crate::blobstore::BlobError) -> Response {
    use crate::blobstore::BlobError as E;
    match e {
        E::NotFound(_) => error(StatusCode::NOT_FOUND, "no_blob", e),
        E::Quota { .. } => error(StatusCode::INSUFFICIENT_STORAGE, "blob_quota", e),
        E::TooLarge { .. } => error(StatusCode::PAYLOAD_TOO_LARGE, "blob_too_large", e),
        E::SizeMismatch { .. } => error(StatusCode::CONFLICT, "blob_size_mismatch", e),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, "blob_store", e),
    }
}

// The error is the handler's own answer (a Response, as everywhere here).
#[allow(clippy::result_large_err)]
fn parse_hash(hex: &str) -> Result<protocol::Hash32, Response> {
    let bad = || {
        error(
            StatusCode::BAD_REQUEST,
            "bad_hash",
            "a blob hash is 64 lowercase hex digits (BLAKE3)",
        )
    };
    let bytes = hex::decode(hex).map_err(|_| bad())?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    Ok(protocol::Hash32::from_bytes(arr))
}

/// Reads an upload's chunks on a blocking thread, as they arrive.
struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

#[derive(Deserialize)]
struct AddQuery {
    pin: Option<bool>,
}

async fn blob_add(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Query(q): Query<AddQuery>,
    body: axum::body::Body,
) -> Response {
    use futures_util::StreamExt;
    if !authorized(&ctx, &headers) {
        return unauthorized();
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let feed = tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(|e| format!("upload interrupted: {e}"));
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let reader = BodyReader { rx, current: Bytes::new() };
    let r = ctx.client.blob_add(reader, q.pin.unwrap_or(true)).await;
    feed.abort();
    match r {
        Ok(info) => Json(info).into_response(),
        Err(e) => blob_error(e),
    }
}

async fn blobs_overview(State(ctx): State<Ctx>) -> Response {
    let client = ctx.client.clone();
    let r = tokio::task::spawn_blocking(move || {
        let crate::blobs::BlobOverview { blobs, fetches, peers, quota } = client.blob_overview()?;
        let used: u64 = blobs.iter().map(|b| b.size).sum();
        let blobs: Vec<serde_json::Value> = blobs
            .iter()
            .map(|b| {
                let have = client.blob_have(b).unwrap_or(0);
                json!({"hash": b.hash, "size": b.size, "complete": b.complete, "pinned": b.pinned, "have": have})
            })
            .collect();
        Ok::<_, crate::blobstore::BlobError>(
            json!({"blobs": blobs, "fetches": fetches, "peers": peers, "used": used, "quota": quota}),
        )
    })
    .await;
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => blob_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

async fn blob_status(State(ctx): State<Ctx>, UrlPath(hash): UrlPath<String>) -> Response {
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let fetch = ctx.client.blob_progress(&hash);
    match ctx.client.blob_info(&hash) {
        Ok(Some(b)) => {
            let have = ctx.client.blob_have(&b).unwrap_or(0);
            Json(json!({"hash": b.hash, "size": b.size, "complete": b.complete, "pinned": b.pinned, "have": have, "fetch": fetch}))
                .into_response()
        }
        Ok(None) => match fetch {
            // A fetch that failed before it reserved space still says why.
            Some(f) => Json(json!({"hash": hash, "size": f.size, "complete": false, "pinned": false, "have": 0, "fetch": f})).into_response(),
            None => blob_error(crate::blobstore::BlobError::NotFound(hash.to_hex())),
        },
        Err(e) => blob_error(e),
    }
}

#[derive(Deserialize)]
struct FetchBody {
    size: u64,
    #[serde(default = "yes")]
    pin: bool,
}

fn yes() -> bool {
    true
}

async fn blob_fetch(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    UrlPath(hash): UrlPath<String>,
    body: Bytes,
) -> Response {
    let body: FetchBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("send {{\"size\": BYTES, \"pin\": true}}: {e}"),
            );
        }
    };
    if !authorized(&ctx, &headers) {
        return unauthorized();
    }
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return r,
    };
    if body.size > crate::blobstore::BLOB_BYTES_MAX {
        return blob_error(crate::blobstore::BlobError::TooLarge {
            hash: hash.to_hex(),
            size: body.size,
            max: crate::blobstore::BLOB_BYTES_MAX,
        });
    }
    let rx = ctx.client.blob_fetch(hash, body.size, body.pin);
    let p = rx.borrow().clone();
    (StatusCode::ACCEPTED, Json(p)).into_response()
}

async fn blob_data(State(ctx): State<Ctx>, UrlPath(hash): UrlPath<String>) -> Response {
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let (file, size) = match ctx.client.blob_read(&hash) {
        Ok(x) => x,
        Err(e) => return blob_error(e),
    };
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Deserialize)]
struct PinBody {
    pinned: bool,
}

async fn blob_pin(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    UrlPath(hash): UrlPath<String>,
    body: Bytes,
) -> Response {
    let body: PinBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("send {{\"pinned\": true|false}}: {e}"),
            );
        }
    };
    if !authorized(&ctx, &headers) {
        return unauthorized();
    }
    let hash = match parse_hash(&hash) {
        Ok(h) => h,
        Err(r) => return r,
    };
    match ctx.client.blob_pin(&hash, body.pinned) {
        Ok(b) => Json(b).into_response(),
        Err(e) => blob_error(e),
    }
}

async fn blob_gc(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if !authorized(&ctx, &headers) {
        return unauthorized();
    }
    let client = ctx.client.clone();
    match tokio::task::spawn_blocking(move || client.blob_gc()).await {
        Ok(Ok(removed)) => {
            let freed: u64 = removed.iter().map(|b| b.size).sum();
            Json(json!({"removed": removed, "freed": freed})).into_response()
        }
        Ok(Err(e)) => blob_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}
