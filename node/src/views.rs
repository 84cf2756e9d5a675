//! Paged, indexed queries over the derived state: what the CLI (and the web UI)
//! show, one page at a time, instead of the whole state.
//!
//! [`Views`] indexes a folded [`State`] once (built lazily after each fold,
//! shared as an `Arc`): associations by benchmark, subject and status; datasets
//! by benchmark and owner; containers by owner; results by dataset (results of
//! a benchmark, or of a benchmark and a model, are contiguous in the state's own
//! order and found by binary search). A query picks the most selective index
//! its filters allow, finds its cursor by binary search and filters the rest
//! while it walks, so it costs O(log n + page), never O(state).
//!
//! Every list has a fixed order (the state's: by id, or by benchmark and
//! subject for associations, by benchmark, model, dataset and id for results,
//! by rank and model for leaderboard rows) and its cursor is the key of the last
//! item returned, as text (`next`), so a cursor stays valid while records
//! arrive: the next page starts after that key in the new state. A page holds
//! at most [`VIEW_PAGE_MAX`] items; a query whose filters reject most of what
//! an index holds stops after examining [`VIEW_SCAN_MAX`] entries and returns a
//! shorter page with a `next` cursor, so no single request walks the state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use protocol::fold::{AssociationView, BenchmarkView, ContainerView, DatasetView, Status};
use protocol::fold::{
    Cell, GrantView, LeaderboardRow, Member, ProfileView, ReleaseView, ResultView,
};
use protocol::record::Subject;
use protocol::{PublicKey, RecordId, State};
use serde::Serialize;

/// Items in a page when the query names no limit.
pub const VIEW_PAGE_DEFAULT: u32 = 100;
/// Most items one page holds.
pub const VIEW_PAGE_MAX: u32 = 1_000;
/// Most index entries one query examines (filters that reject most of an index
/// return a short page with a cursor instead of walking on).
pub const VIEW_SCAN_MAX: u32 = 20_000;

/// One page of a list: the items, and the cursor of the next page (`None` at the
/// end).
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Why a query cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("bad cursor `{0}`: pass back the `next` value of the previous page")]
    Cursor(String),
    #[error("unknown benchmark {0}")]
    UnknownBenchmark(RecordId),
    /// No such record (`what`: benchmark, container, dataset, result, profile,
    /// release): a 404 `unknown_<what>`.
    #[error("no {what} {id} on this node (is it synced?)")]
    NotFound { what: &'static str, id: String },
    #[error("cannot encode the page: {0}")]
    Encode(String),
}

/// A page (or any answer) as JSON bytes.
pub fn json<T: Serialize>(answer: Result<T, ViewError>) -> Result<Vec<u8>, ViewError> {
    serde_json::to_vec(&answer?).map_err(|e| ViewError::Encode(e.to_string()))
}

/// Which associations to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct AssociationFilter {
    pub benchmark: Option<RecordId>,
    /// A dataset or model id.
    pub subject: Option<RecordId>,
    /// Only datasets (`Some(false)`) or only models (`Some(true)`).
    pub models: Option<bool>,
    pub status: Option<Status>,
}

/// Which datasets to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct DatasetFilter {
    pub benchmark: Option<RecordId>,
    pub owner: Option<PublicKey>,
}

/// Which results to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResultFilter {
    pub benchmark: Option<RecordId>,
    pub model: Option<RecordId>,
    pub dataset: Option<RecordId>,
    pub counts: Option<bool>,
}

/// Which containers to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct ContainerFilter {
    pub owner: Option<PublicKey>,
}

/// Which benchmarks to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchmarkFilter {
    pub owner: Option<PublicKey>,
    pub status: Option<Status>,
}

/// A leaderboard without its model x dataset cells, with one page of its rows.
#[derive(Clone, Debug, Serialize)]
pub struct LeaderboardPage<'a> {
    pub benchmark: RecordId,
    pub benchmark_name: &'a str,
    pub metric: &'a str,
    pub higher_is_better: bool,
    pub policy: &'a protocol::record::SharingPolicy,
    pub release_round: u64,
    /// Rows in the whole leaderboard.
    pub total_rows: u64,
    /// Cells in the whole model x dataset table (served whole by
    /// `GET /v1/benchmarks/{id}/leaderboard`).
    pub total_cells: u64,
    pub rows: Vec<&'a LeaderboardRow>,
    pub next: Option<String>,
}

type Index<K> = HashMap<K, Vec<u32>>;

/// The indexes over one folded state.
pub struct Views {
    state: Arc<State>,
    dataset_ids: Vec<RecordId>,
    datasets_by_benchmark: Index<RecordId>,
    datasets_by_owner: Index<PublicKey>,
    container_ids: Vec<RecordId>,
    containers_by_owner: Index<PublicKey>,
    benchmark_ids: Vec<RecordId>,
    associations_by_benchmark: Index<RecordId>,
    associations_by_subject: Index<RecordId>,
    /// By [`status_slot`].
    associations_by_status: [Vec<u32>; 4],
    results_by_dataset: Index<RecordId>,
    /// Indexes only the single-record queries use, built on their first use.
    lookups: std::sync::OnceLock<Lookups>,
}

fn push<K: std::hash::Hash + Eq>(index: &mut Index<K>, key: K, position: usize) {
    index.entry(key).or_default().push(position as u32);
}

/// Where a query's candidates come from: a slice of positions (an index) or a
/// contiguous range of the state's own order.
enum Candidates<'a> {
    Positions(&'a [u32]),
    Range(u32, u32),
}

impl Candidates<'_> {
    fn len(&self) -> usize {
        match self {
            Candidates::Positions(p) => p.len(),
            Candidates::Range(a, b) => (b - a) as usize,
        }
    }
    fn get(&self, i: usize) -> u32 {
        match self {
            Candidates::Positions(p) => p[i],
            Candidates::Range(a, _) => a + i as u32,
        }
    }
}

/// Walk `candidates` (positions in an order sorted by `key`) after the key
/// `after`, keeping those `keep` accepts, at most `limit`, examining at most
/// [`VIEW_SCAN_MAX`].
fn walk<T, K: Ord>(
    candidates: Candidates<'_>,
    item: impl Fn(u32) -> T,
    key: impl Fn(&T) -> K,
    after: Option<&K>,
    limit: u32,
    keep: impl Fn(&T) -> bool,
    cursor: impl Fn(&K) -> String,
) -> Page<T> {
    let limit = limit.clamp(1, VIEW_PAGE_MAX) as usize;
    let n = candidates.len();
    let mut i = match after {
        None => 0,
        Some(a) => {
            // partition_point over 0..n by index.
            let (mut lo, mut hi) = (0usize, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if key(&item(candidates.get(mid))) <= *a {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        }
    };
    let mut items = Vec::with_capacity(limit.min(n));
    let mut scanned = 0u32;
    while i < n {
        if items.len() == limit {
            let last = items.last().expect("limit is at least 1");
            return Page { next: Some(cursor(&key(last))), items };
        }
        if scanned == VIEW_SCAN_MAX {
            let last = item(candidates.get(i - 1));
            return Page { items, next: Some(cursor(&key(&last))) };
        }
        let t = item(candidates.get(i));
        scanned += 1;
        if keep(&t) {
            items.push(t);
        }
        i += 1;
    }
    Page { items, next: None }
}

fn status_slot(s: Status) -> usize {
    match s {
        Status::Pending => 0,
        Status::Approved => 1,
        Status::Rejected => 2,
        Status::FailedCompatibility => 3,
    }
}

fn hex_id(s: &str) -> Option<RecordId> {
    s.parse().ok()
}

fn parse_id_cursor(after: Option<&str>) -> Result<Option<RecordId>, ViewError> {
    after.map(|a| hex_id(a).ok_or_else(|| ViewError::Cursor(a.to_string()))).transpose()
}

type AssociationKey = (RecordId, Subject);

fn association_cursor(k: &AssociationKey) -> String {
    let (kind, id) = match k.1 {
        Subject::Dataset(d) => ("d", d),
        Subject::Model(m) => ("m", m),
    };
    format!("{}.{kind}.{}", k.0.to_hex(), id.to_hex())
}

fn parse_association_cursor(a: &str) -> Option<AssociationKey> {
    let mut parts = a.split('.');
    let b = hex_id(parts.next()?)?;
    let kind = parts.next()?;
    let s = hex_id(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    match kind {
        "d" => Some((b, Subject::Dataset(s))),
        "m" => Some((b, Subject::Model(s))),
        _ => None,
    }
}

type ResultKey = (RecordId, RecordId, RecordId, RecordId);

fn result_cursor(k: &ResultKey) -> String {
    format!("{}.{}.{}.{}", k.0.to_hex(), k.1.to_hex(), k.2.to_hex(), k.3.to_hex())
}

fn parse_result_cursor(a: &str) -> Option<ResultKey> {
    let p: Vec<RecordId> = a.split('.').map(hex_id).collect::<Option<_>>()?;
    match p[..] {
        [b, m, d, id] => Some((b, m, d, id)),
        _ => None,
    }
}

impl Views {
    /// Index a folded state (O(n) once per fold).
    pub fn new(state: Arc<State>) -> Self {
        let s = &*state;
        let dataset_ids: Vec<RecordId> = s.datasets.keys().copied().collect();
        let mut datasets_by_benchmark = Index::new();
        let mut datasets_by_owner = Index::new();
        for (i, d) in s.datasets.values().enumerate() {
            push(&mut datasets_by_benchmark, d.dataset.benchmark, i);
            push(&mut datasets_by_owner, d.owner, i);
        }
        let container_ids: Vec<RecordId> = s.containers.keys().copied().collect();
        let mut containers_by_owner = Index::new();
        for (i, c) in s.containers.values().enumerate() {
            push(&mut containers_by_owner, c.owner, i);
        }
        let benchmark_ids: Vec<RecordId> = s.benchmarks.keys().copied().collect();
        let mut associations_by_benchmark = Index::new();
        let mut associations_by_subject = Index::new();
        let mut associations_by_status: [Vec<u32>; 4] = Default::default();
        for (i, a) in s.associations.iter().enumerate() {
            push(&mut associations_by_benchmark, a.benchmark, i);
            push(&mut associations_by_subject, a.subject.id(), i);
            associations_by_status[status_slot(a.status)].push(i as u32);
        }
        let mut results_by_dataset = Index::new();
        for i in 0..s.results.len() {
            push(&mut results_by_dataset, s.results.dataset(i), i);
        }
        Views {
            dataset_ids,
            datasets_by_benchmark,
            datasets_by_owner,
            container_ids,
            containers_by_owner,
            benchmark_ids,
            associations_by_benchmark,
            associations_by_subject,
            associations_by_status,
            results_by_dataset,
            lookups: std::sync::OnceLock::new(),
            state,
        }
    }

    /// The state these views index.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Associations, in (benchmark, subject) order.
    pub fn associations(
        &self,
        f: &AssociationFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&AssociationView>, ViewError> {
        let after = after
            .map(|a| parse_association_cursor(a).ok_or_else(|| ViewError::Cursor(a.into())))
            .transpose()?;
        let all = &self.state.associations;
        let empty: &[u32] = &[];
        let candidates = if let Some(s) = &f.subject {
            Candidates::Positions(self.associations_by_subject.get(s).map_or(empty, |v| v))
        } else if let Some(b) = &f.benchmark {
            Candidates::Positions(self.associations_by_benchmark.get(b).map_or(empty, |v| v))
        } else if let Some(s) = &f.status {
            Candidates::Positions(&self.associations_by_status[status_slot(*s)])
        } else {
            Candidates::Range(0, all.len() as u32)
        };
        Ok(walk(
            candidates,
            |p| &all[p as usize],
            |a: &&AssociationView| (a.benchmark, a.subject),
            after.as_ref(),
            limit,
            |a| {
                f.benchmark.is_none_or(|b| a.benchmark == b)
                    && f.subject.is_none_or(|s| a.subject.id() == s)
                    && f.status.is_none_or(|s| a.status == s)
                    && f.models.is_none_or(|m| matches!(a.subject, Subject::Model(_)) == m)
            },
            association_cursor,
        ))
    }

    /// Datasets, by id.
    pub fn datasets(
        &self,
        f: &DatasetFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&DatasetView>, ViewError> {
        let after = parse_id_cursor(after)?;
        let empty: &[u32] = &[];
        let candidates = if let Some(o) = &f.owner {
            Candidates::Positions(self.datasets_by_owner.get(o).map_or(empty, |v| v))
        } else if let Some(b) = &f.benchmark {
            Candidates::Positions(self.datasets_by_benchmark.get(b).map_or(empty, |v| v))
        } else {
            Candidates::Range(0, self.dataset_ids.len() as u32)
        };
        let datasets = &self.state.datasets;
        let ids = &self.dataset_ids;
        Ok(walk(
            candidates,
            |p| &datasets[&ids[p as usize]],
            |d: &&DatasetView| d.id,
            after.as_ref(),
            limit,
            |d| {
                f.benchmark.is_none_or(|b| d.dataset.benchmark == b)
                    && f.owner.is_none_or(|o| d.owner == o)
            },
            |id| id.to_hex(),
        ))
    }

    /// Containers, by id.
    pub fn containers(
        &self,
        f: &ContainerFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&ContainerView>, ViewError> {
        let after = parse_id_cursor(after)?;
        let empty: &[u32] = &[];
        let candidates = match &f.owner {
            Some(o) => Candidates::Positions(self.containers_by_owner.get(o).map_or(empty, |v| v)),
            None => Candidates::Range(0, self.container_ids.len() as u32),
        };
        let containers = &self.state.containers;
        let ids = &self.container_ids;
        Ok(walk(
            candidates,
            |p| &containers[&ids[p as usize]],
            |c: &&ContainerView| c.id,
            after.as_ref(),
            limit,
            |_| true,
            |id| id.to_hex(),
        ))
    }

    /// Benchmarks, by id.
    pub fn benchmarks(
        &self,
        f: &BenchmarkFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&BenchmarkView>, ViewError> {
        let after = parse_id_cursor(after)?;
        let benchmarks = &self.state.benchmarks;
        let ids = &self.benchmark_ids;
        Ok(walk(
            Candidates::Range(0, ids.len() as u32),
            |p| &benchmarks[&ids[p as usize]],
            |b: &&BenchmarkView| b.id,
            after.as_ref(),
            limit,
            |b| f.owner.is_none_or(|o| b.owner == o) && f.status.is_none_or(|s| b.status == s),
            |id| id.to_hex(),
        ))
    }

    /// Results, by (benchmark, model, dataset, id).
    pub fn results(
        &self,
        f: &ResultFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<ResultView>, ViewError> {
        let after = after
            .map(|a| parse_result_cursor(a).ok_or_else(|| ViewError::Cursor(a.into())))
            .transpose()?;
        let all = &self.state.results;
        let empty: &[u32] = &[];
        let candidates = if let Some(d) = &f.dataset {
            Candidates::Positions(self.results_by_dataset.get(d).map_or(empty, |v| v))
        } else if let Some(b) = &f.benchmark {
            // Contiguous in the state's order: (benchmark, model, ...).
            let range = all.range(b, f.model.as_ref());
            Candidates::Range(range.start as u32, range.end as u32)
        } else {
            Candidates::Range(0, all.len() as u32)
        };
        // Walk positions; only the results kept become views.
        let page = walk(
            candidates,
            |p| p as usize,
            |p: &usize| all.key(*p),
            after.as_ref(),
            limit,
            |p| {
                let (b, m, d, _) = all.key(*p);
                f.benchmark.is_none_or(|x| b == x)
                    && f.model.is_none_or(|x| m == x)
                    && f.dataset.is_none_or(|x| d == x)
                    && f.counts.is_none_or(|c| all.counts(*p) == c)
            },
            result_cursor,
        );
        Ok(Page {
            items: page.items.into_iter().filter_map(|p| all.get(p)).collect(),
            next: page.next,
        })
    }

    /// One page of a benchmark's leaderboard rows (by rank, then model id), or
    /// `None` while nothing is released.
    pub fn leaderboard(
        &self,
        benchmark: &RecordId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<LeaderboardPage<'_>>, ViewError> {
        let bench =
            self.state.benchmarks.get(benchmark).ok_or(ViewError::UnknownBenchmark(*benchmark))?;
        let Some(lb) = self.state.leaderboards.get(benchmark) else { return Ok(None) };
        let after = after
            .map(|a| {
                let (rank, model) = a.split_once('.')?;
                Some((rank.parse::<u64>().ok()?, hex_id(model)?))
            })
            .map(|k| k.ok_or_else(|| ViewError::Cursor(after.unwrap_or_default().into())))
            .transpose()?;
        let rows = &lb.rows;
        let page = walk(
            Candidates::Range(0, rows.len() as u32),
            |p| &rows[p as usize],
            |r: &&LeaderboardRow| (u64::from(r.rank), r.model),
            after.as_ref(),
            limit,
            |_| true,
            |(rank, model)| format!("{rank}.{}", model.to_hex()),
        );
        Ok(Some(LeaderboardPage {
            benchmark: *benchmark,
            benchmark_name: &bench.benchmark.name,
            metric: &lb.metric,
            higher_is_better: lb.higher_is_better,
            policy: &lb.policy,
            release_round: lb.release_round,
            total_rows: rows.len() as u64,
            total_cells: lb.cells.len() as u64,
            rows: page.items,
            next: page.next,
        }))
    }
}

// ---------------------------------------------------------------------------
// Single records and small answers: what a command that acts on one record
// needs (by id, by id prefix or by public name, the grant of one model for one
// dataset, one key's standing, the committees of one key), answered from the
// state's maps and the [`Lookups`] built on first use, never by walking the
// state. Lists among them (members, grants of a model, a leaderboard's cells,
// a search over public names) page like the views above.

/// Most records one lookup by id prefix or by name answers.
pub const LOOKUP_MATCHES_MAX: usize = 16;
/// Most ids plus keys one names query takes.
pub const NAMES_MAX: usize = 200;
/// Longest search or lookup text, in bytes.
pub const QUERY_BYTES_MAX: usize = 200;

/// What a lookup names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Benchmark,
    Container,
    Dataset,
    Result,
}

impl Kind {
    /// `benchmark`, `container` (or `model`), `dataset` or `result`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "benchmark" => Some(Kind::Benchmark),
            "container" | "model" => Some(Kind::Container),
            "dataset" => Some(Kind::Dataset),
            "result" => Some(Kind::Result),
            _ => None,
        }
    }
}

/// A record a lookup matched: its id and its public name (empty when it has
/// none, or when only the committee and the owner may read it).
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub id: RecordId,
    pub name: String,
}

/// What a lookup text names: the records whose public name it is exactly, and
/// those whose id starts with it (hex, at least 4 digits), each at most
/// [`LOOKUP_MATCHES_MAX`]; `more` when the prefix matches more than that.
#[derive(Clone, Debug, Serialize)]
pub struct Lookup {
    pub named: Vec<Found>,
    pub prefixed: Vec<Found>,
    pub more: bool,
}

/// The grant of a private model's key for one dataset that counts, and whether
/// its owner stopped granting it there.
#[derive(Clone, Debug, Serialize)]
pub struct GrantAnswer<'a> {
    pub grant: Option<&'a GrantView>,
    pub revoked: bool,
}

/// The network's admins and admission mode, and the state's size.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkView<'a> {
    pub network: protocol::NetworkId,
    pub records: u64,
    pub hash: protocol::Hash32,
    pub admin_epoch: u64,
    pub admins: &'a [PublicKey],
    pub admin_threshold: u16,
    pub admission: protocol::root::AdmissionMode,
    /// Admitted keys other than the admins.
    pub members: u64,
}

/// One key's standing: admitted (and how), revoked, its profile.
#[derive(Clone, Debug, Serialize)]
pub struct KeyView<'a> {
    pub key: PublicKey,
    pub admitted: bool,
    pub admin: bool,
    pub member: Option<&'a Member>,
    /// The first seq of this key without authority, when revoked.
    pub revoked_from_seq: Option<u64>,
    pub profile: Option<&'a ProfileView>,
}

/// One page of a leaderboard's model x dataset cells, in the release's order.
#[derive(Clone, Debug, Serialize)]
pub struct CellsPage<'a> {
    pub benchmark: RecordId,
    pub release_round: u64,
    pub datasets: &'a [String],
    pub total_cells: u64,
    pub cells: &'a [Cell],
    pub next: Option<String>,
}

/// The names of records and keys, for tables that show names rather than ids.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Names {
    /// Benchmarks, containers and datasets with a public name, by id.
    pub ids: std::collections::BTreeMap<RecordId, String>,
    /// Keys with a profile, by key.
    pub keys: std::collections::BTreeMap<PublicKey, String>,
}

/// The indexes of the single-record queries, built once per fold on first use.
struct Lookups {
    /// Result ids in order, with their positions in the state's results.
    result_ids: Vec<(RecordId, u32)>,
    /// Public names of benchmarks, containers and datasets.
    names: HashMap<(Kind, String), Vec<RecordId>>,
}

/// The ids an id prefix spans: `[prefix00.., prefixff..]`, or `None` when the
/// text is not hex of 4 to 64 digits.
fn prefix_range(q: &str) -> Option<(RecordId, RecordId)> {
    let q = q.to_ascii_lowercase();
    if q.len() < 4 || q.len() > 64 || !q.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let lo = format!("{q:0<64}");
    let hi = format!("{q:f<64}");
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

fn contains_ci(hay: &str, needle_lower: &str) -> bool {
    needle_lower.is_empty() || hay.to_lowercase().contains(needle_lower)
}

fn dataset_name(d: &DatasetView) -> &str {
    d.dataset.public_details.as_ref().map_or("", |x| x.name.as_str())
}

/// One page of the records of `map` among `candidates` (positions in `ids`, the
/// map's keys in order) whose id starts with `q` or whose public name contains
/// it, in any case. An empty `q` matches nothing.
fn search<'a, V>(
    map: &'a BTreeMap<RecordId, V>,
    ids: &[RecordId],
    candidates: Candidates<'_>,
    q: &str,
    after: Option<&str>,
    limit: u32,
    name: impl Fn(&V) -> &str,
) -> Result<Page<&'a V>, ViewError> {
    let after = parse_id_cursor(after)?;
    let q = q.trim().to_lowercase();
    let page = walk(
        candidates,
        |p| (ids[p as usize], &map[&ids[p as usize]]),
        |(id, _): &(RecordId, &V)| *id,
        after.as_ref(),
        limit,
        |(id, v)| {
            !q.is_empty()
                && (id.to_hex().starts_with(&q)
                    || (!name(v).is_empty() && contains_ci(name(v), &q)))
        },
        |id| id.to_hex(),
    );
    Ok(Page { items: page.items.into_iter().map(|(_, v)| v).collect(), next: page.next })
}

impl Views {
    fn lookups(&self) -> &Lookups {
        self.lookups.get_or_init(|| {
            let s = &*self.state;
            let mut result_ids: Vec<(RecordId, u32)> =
                s.results.iter().enumerate().map(|(i, r)| (r.id, i as u32)).collect();
            result_ids.sort_unstable();
            let mut names: HashMap<(Kind, String), Vec<RecordId>> = HashMap::new();
            let mut add = |k: Kind, name: &str, id: RecordId| {
                if !name.is_empty() {
                    names.entry((k, name.to_string())).or_default().push(id);
                }
            };
            for b in s.benchmarks.values() {
                add(Kind::Benchmark, &b.benchmark.name, b.id);
            }
            for c in s.containers.values() {
                add(Kind::Container, &c.container.name, c.id);
            }
            for d in s.datasets.values() {
                add(Kind::Dataset, dataset_name(d), d.id);
            }
            Lookups { result_ids, names }
        })
    }

    /// One benchmark.
    pub fn benchmark(&self, id: &RecordId) -> Option<&BenchmarkView> {
        self.state.benchmarks.get(id)
    }

    /// One container.
    pub fn container(&self, id: &RecordId) -> Option<&ContainerView> {
        self.state.containers.get(id)
    }

    /// One dataset.
    pub fn dataset(&self, id: &RecordId) -> Option<&DatasetView> {
        self.state.datasets.get(id)
    }

    /// One result, by its record id.
    pub fn result(&self, id: &RecordId) -> Option<ResultView> {
        let ids = &self.lookups().result_ids;
        let i = ids.binary_search_by(|(r, _)| r.cmp(id)).ok()?;
        self.state.results.get(ids[i].1 as usize)
    }

    /// One key's profile.
    pub fn profile(&self, key: &PublicKey) -> Option<&ProfileView> {
        self.state.profiles.get(key)
    }

    /// The release shown for a benchmark.
    pub fn release(&self, benchmark: &RecordId) -> Option<&ReleaseView> {
        self.state.releases.get(benchmark)
    }

    /// The grant of `model`'s key for `dataset`, and whether it is revoked there.
    pub fn grant(&self, model: &RecordId, dataset: &RecordId) -> GrantAnswer<'_> {
        GrantAnswer {
            grant: self.state.grant(model, dataset),
            revoked: self.state.grant_revoked(model, dataset),
        }
    }

    /// The grants of one model (to one grantee), by dataset.
    pub fn grants(
        &self,
        model: &RecordId,
        grantee: Option<&PublicKey>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&GrantView>, ViewError> {
        let after = parse_id_cursor(after)?;
        let all = &self.state.grants;
        let lo = all.partition_point(|g| g.model < *model);
        let hi = all.partition_point(|g| g.model <= *model);
        Ok(walk(
            Candidates::Range(lo as u32, hi as u32),
            |p| &all[p as usize],
            |g: &&GrantView| g.dataset,
            after.as_ref(),
            limit,
            |g| grantee.is_none_or(|k| g.grantee == *k),
            |id| id.to_hex(),
        ))
    }

    /// The network's admins, admission mode and size.
    pub fn network(&self) -> NetworkView<'_> {
        let s = &*self.state;
        NetworkView {
            network: s.network,
            records: s.records,
            hash: s.hash,
            admin_epoch: s.admin_epoch,
            admins: &s.admins,
            admin_threshold: s.admin_threshold,
            admission: s.admission,
            members: s.members.len() as u64,
        }
    }

    /// One key's standing.
    pub fn key(&self, key: &PublicKey) -> KeyView<'_> {
        let s = &*self.state;
        KeyView {
            key: *key,
            admitted: s.admits(key),
            admin: s.admins.contains(key),
            member: s.member(key),
            revoked_from_seq: s.revoked.get(key).copied(),
            profile: s.profiles.get(key),
        }
    }

    /// The admitted keys other than the admins, by key.
    pub fn members(&self, after: Option<&str>, limit: u32) -> Result<Page<&Member>, ViewError> {
        let after: Option<PublicKey> =
            after.map(|a| a.parse().map_err(|_| ViewError::Cursor(a.to_string()))).transpose()?;
        let all = &self.state.members;
        Ok(walk(
            Candidates::Range(0, all.len() as u32),
            |p| &all[p as usize],
            |m: &&Member| m.key,
            after.as_ref(),
            limit,
            |_| true,
            |k| k.to_hex(),
        ))
    }

    /// The benchmarks whose committee `key` sits on, by id.
    pub fn committees(
        &self,
        key: &PublicKey,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&BenchmarkView>, ViewError> {
        let after = parse_id_cursor(after)?;
        let benchmarks = &self.state.benchmarks;
        let ids = &self.benchmark_ids;
        Ok(walk(
            Candidates::Range(0, ids.len() as u32),
            |p| &benchmarks[&ids[p as usize]],
            |b: &&BenchmarkView| b.id,
            after.as_ref(),
            limit,
            |b| b.benchmark.committee.contains(key),
            |id| id.to_hex(),
        ))
    }

    /// The records of one kind that `q` names: by exact public name, and by id
    /// prefix (a range of the id order, so O(log n + matches)).
    pub fn lookup(&self, kind: Kind, q: &str) -> Lookup {
        let q = q.trim();
        let name_of = |id: &RecordId| -> Option<String> {
            let s = &*self.state;
            match kind {
                Kind::Benchmark => s.benchmarks.get(id).map(|b| b.benchmark.name.clone()),
                Kind::Container => s.containers.get(id).map(|c| c.container.name.clone()),
                Kind::Dataset => s.datasets.get(id).map(|d| dataset_name(d).to_string()),
                Kind::Result => self.result(id).map(|_| String::new()),
            }
        };
        let named: Vec<Found> = self
            .lookups()
            .names
            .get(&(kind, q.to_string()))
            .map(|ids| {
                ids.iter()
                    .take(LOOKUP_MATCHES_MAX)
                    .map(|id| Found { id: *id, name: q.to_string() })
                    .collect()
            })
            .unwrap_or_default();
        let mut prefixed = Vec::new();
        let mut more = false;
        if let Some((lo, hi)) = prefix_range(q) {
            let mut ids: Box<dyn Iterator<Item = RecordId>> = match kind {
                Kind::Benchmark => Box::new(self.state.benchmarks.range(lo..=hi).map(|(k, _)| *k)),
                Kind::Container => Box::new(self.state.containers.range(lo..=hi).map(|(k, _)| *k)),
                Kind::Dataset => Box::new(self.state.datasets.range(lo..=hi).map(|(k, _)| *k)),
                Kind::Result => {
                    let r = &self.lookups().result_ids;
                    let a = r.partition_point(|(id, _)| *id < lo);
                    let b = r.partition_point(|(id, _)| *id <= hi);
                    Box::new(r[a..b].iter().map(|(id, _)| *id))
                }
            };
            for id in ids.by_ref().take(LOOKUP_MATCHES_MAX) {
                prefixed.push(Found { id, name: name_of(&id).unwrap_or_default() });
            }
            more = ids.next().is_some();
        }
        Lookup { named, prefixed, more }
    }

    /// Benchmarks whose name contains `q` (any case) or whose id starts with it.
    pub fn search_benchmarks(
        &self,
        q: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&BenchmarkView>, ViewError> {
        let all = Candidates::Range(0, self.benchmark_ids.len() as u32);
        search(&self.state.benchmarks, &self.benchmark_ids, all, q, after, limit, |b| {
            &b.benchmark.name
        })
    }

    /// Containers whose name contains `q` (any case) or whose id starts with it.
    pub fn search_containers(
        &self,
        q: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&ContainerView>, ViewError> {
        let all = Candidates::Range(0, self.container_ids.len() as u32);
        search(&self.state.containers, &self.container_ids, all, q, after, limit, |c| {
            &c.container.name
        })
    }

    /// Datasets (of one benchmark) whose public name contains `q` (any case) or
    /// whose id starts with it. Sealed names are not searched: only their
    /// readers can, on their side.
    pub fn search_datasets(
        &self,
        benchmark: Option<&RecordId>,
        q: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<&DatasetView>, ViewError> {
        let empty: &[u32] = &[];
        let candidates = match benchmark {
            Some(b) => {
                Candidates::Positions(self.datasets_by_benchmark.get(b).map_or(empty, |v| v))
            }
            None => Candidates::Range(0, self.dataset_ids.len() as u32),
        };
        search(&self.state.datasets, &self.dataset_ids, candidates, q, after, limit, dataset_name)
    }

    /// One page of a benchmark's leaderboard cells, or `None` while nothing is
    /// released. The cursor (`round.position`) holds for the release it came
    /// from: a cursor of an earlier round is refused.
    pub fn leaderboard_cells(
        &self,
        benchmark: &RecordId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Option<CellsPage<'_>>, ViewError> {
        if !self.state.benchmarks.contains_key(benchmark) {
            return Err(ViewError::UnknownBenchmark(*benchmark));
        }
        let Some(lb) = self.state.leaderboards.get(benchmark) else { return Ok(None) };
        let start = match after {
            None => 0,
            Some(a) => {
                let bad = || ViewError::Cursor(a.to_string());
                let (round, pos) = a.split_once('.').ok_or_else(bad)?;
                let round: u64 = round.parse().map_err(|_| bad())?;
                let pos: usize = pos.parse().map_err(|_| bad())?;
                if round != lb.release_round || pos > lb.cells.len() {
                    return Err(bad());
                }
                pos
            }
        };
        let end = (start + limit.clamp(1, VIEW_PAGE_MAX) as usize).min(lb.cells.len());
        Ok(Some(CellsPage {
            benchmark: *benchmark,
            release_round: lb.release_round,
            datasets: &lb.datasets,
            total_cells: lb.cells.len() as u64,
            cells: &lb.cells[start..end],
            next: (end < lb.cells.len()).then(|| format!("{}.{end}", lb.release_round)),
        }))
    }

    /// The names of these records and keys (at most [`NAMES_MAX`] in all; the
    /// rest are left out).
    pub fn names(&self, ids: &[RecordId], keys: &[PublicKey]) -> Names {
        let s = &*self.state;
        let mut out = Names::default();
        for id in ids.iter().take(NAMES_MAX) {
            let name = s
                .benchmarks
                .get(id)
                .map(|b| b.benchmark.name.as_str())
                .or_else(|| s.containers.get(id).map(|c| c.container.name.as_str()))
                .or_else(|| s.datasets.get(id).map(dataset_name))
                .filter(|n| !n.is_empty());
            if let Some(n) = name {
                out.ids.insert(*id, n.to_string());
            }
        }
        for k in keys.iter().take(NAMES_MAX.saturating_sub(ids.len())) {
            if let Some(p) = s.profiles.get(k) {
                out.keys.insert(*k, p.profile.name.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use protocol::fold;
    use protocol::testkit::Workflow;

    use super::*;

    fn views_of(w: &Workflow) -> Views {
        Views::new(Arc::new(fold(&w.root, &w.records)))
    }

    /// Every page of a listing, following `next`, with `limit` per page.
    fn every<T: Clone>(mut page: impl FnMut(Option<&str>) -> Result<Page<T>, ViewError>) -> Vec<T> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let p = page(after.as_deref()).expect("a cursor the previous page gave");
            out.extend(p.items);
            match p.next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }

    #[test]
    fn paging_through_associations_returns_the_state_list_once_in_order() {
        let w = Workflow::complete();
        let v = views_of(&w);
        let all = &v.state().associations;
        assert!(all.len() >= 5, "three datasets and two models");
        for limit in [1, 2, 3, 100] {
            let got = every(|a| v.associations(&AssociationFilter::default(), a, limit));
            let got: Vec<_> = got.into_iter().cloned().collect();
            assert_eq!(&got, all, "limit {limit}");
        }
    }

    #[test]
    fn association_filters_select_by_benchmark_subject_kind_and_status() {
        let w = Workflow::complete();
        let v = views_of(&w);
        let f = AssociationFilter {
            benchmark: Some(w.benchmark),
            models: Some(true),
            ..Default::default()
        };
        let models = every(|a| v.associations(&f, a, 1));
        assert_eq!(models.len(), w.models.len());
        assert!(models.iter().all(|a| matches!(a.subject, Subject::Model(_))));
        let f = AssociationFilter { subject: Some(w.datasets[1]), ..Default::default() };
        let one = every(|a| v.associations(&f, a, 10));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].subject, Subject::Dataset(w.datasets[1]));
        let f = AssociationFilter { status: Some(Status::Pending), ..Default::default() };
        assert!(every(|a| v.associations(&f, a, 10)).is_empty(), "all approved");
        let f = AssociationFilter {
            benchmark: Some(RecordId::from_bytes([9; 32])),
            ..Default::default()
        };
        assert!(every(|a| v.associations(&f, a, 10)).is_empty(), "an unknown benchmark has none");
    }

    #[test]
    fn datasets_page_by_benchmark_and_by_owner() {
        let w = Workflow::complete();
        let v = views_of(&w);
        let f = DatasetFilter { benchmark: Some(w.benchmark), owner: None };
        let ids: Vec<RecordId> = every(|a| v.datasets(&f, a, 2)).iter().map(|d| d.id).collect();
        let mut want = w.datasets.clone();
        want.sort();
        assert_eq!(ids, want);
        let f = DatasetFilter { benchmark: None, owner: Some(w.hospitals[2].public()) };
        let mine = every(|a| v.datasets(&f, a, 2));
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].id, w.datasets[2]);
    }

    #[test]
    fn results_of_a_benchmark_and_model_are_a_range_of_the_state_order() {
        let w = Workflow::complete();
        let v = views_of(&w);
        let f = ResultFilter {
            benchmark: Some(w.benchmark),
            model: Some(w.models[1]),
            ..Default::default()
        };
        let got: Vec<ResultView> = every(|a| v.results(&f, a, 2));
        let want: Vec<ResultView> = v
            .state()
            .results
            .iter()
            .filter(|r| r.benchmark == w.benchmark && r.model == w.models[1])
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want);
        let f =
            ResultFilter { dataset: Some(w.datasets[0]), counts: Some(true), ..Default::default() };
        assert!(
            every(|a| v.results(&f, a, 2)).iter().all(|r| r.counts && r.dataset == w.datasets[0])
        );
    }

    #[test]
    fn a_cursor_stays_valid_after_new_records_arrive() {
        let w = Workflow::complete();
        let before = views_of(&w);
        let f = DatasetFilter::default();
        let first = before.datasets(&f, None, 1).expect("first page");
        let cursor = first.next.clone().expect("more than one dataset");
        // A new dataset arrives; the old cursor still continues after the same key.
        let mut w2 = w.clone();
        let body = w2.dataset(0, "late", protocol::record::DatasetState::Development);
        w2.push(|w| &mut w.hospitals[0], body);
        let after = views_of(&w2);
        let rest = every(|a| after.datasets(&f, a.or(Some(&cursor)), 100));
        let got: Vec<RecordId> = rest.iter().map(|d| d.id).collect();
        let want: Vec<RecordId> =
            after.state().datasets.keys().filter(|id| **id > first.items[0].id).copied().collect();
        assert_eq!(got, want, "every dataset after the cursor's key, the new one included");
    }

    #[test]
    fn the_leaderboard_pages_its_rows_by_rank() {
        let w = Workflow::complete();
        let v = views_of(&w);
        let lb = &v.state().leaderboards[&w.benchmark];
        let first = v.leaderboard(&w.benchmark, None, 1).expect("known").expect("released");
        assert_eq!(first.total_rows, lb.rows.len() as u64);
        assert_eq!(first.rows, vec![&lb.rows[0]]);
        let second = v
            .leaderboard(&w.benchmark, first.next.as_deref(), 1)
            .expect("valid cursor")
            .expect("released");
        assert_eq!(second.rows, vec![&lb.rows[1]]);
        assert!(matches!(
            v.leaderboard(&RecordId::from_bytes([3; 32]), None, 1),
            Err(ViewError::UnknownBenchmark(_))
        ));
    }

    #[test]
    fn a_hostile_query_gets_a_bounded_page_or_an_error_never_a_walk_of_the_state() {
        let w = Workflow::complete();
        let v = views_of(&w);
        let f = AssociationFilter::default();
        for bad in ["", "zz", "00.x.00", &"ab".repeat(40), "1.2.3.4.5"] {
            assert!(
                matches!(v.associations(&f, Some(bad), 10), Err(ViewError::Cursor(_))),
                "{bad}"
            );
            assert!(
                matches!(
                    v.results(&ResultFilter::default(), Some(bad), 10),
                    Err(ViewError::Cursor(_))
                ),
                "{bad}"
            );
        }
        let page = v.associations(&f, None, u32::MAX).expect("a limit is clamped");
        assert!(page.items.len() <= VIEW_PAGE_MAX as usize);
        let page = v.datasets(&DatasetFilter::default(), None, 0).expect("a zero limit is one");
        assert_eq!(page.items.len(), 1);
    }

    #[test]
    fn a_lookup_finds_by_exact_public_name_and_by_id_prefix_and_nothing_else() {
        let w = Workflow::complete();
        let v = views_of(&w);
        let b = v.benchmark(&w.benchmark).expect("the benchmark");
        let l = v.lookup(Kind::Benchmark, &b.benchmark.name);
        assert_eq!(l.named.iter().map(|f| f.id).collect::<Vec<_>>(), vec![w.benchmark]);
        // A name is not a prefix of a name; case counts for exact names.
        assert!(v.lookup(Kind::Benchmark, &b.benchmark.name[1..]).named.is_empty());
        let hex = w.datasets[1].to_hex();
        for digits in [4, 9, 64] {
            let l = v.lookup(Kind::Dataset, &hex[..digits].to_uppercase());
            assert!(l.prefixed.iter().any(|f| f.id == w.datasets[1]), "{digits} digits");
            assert!(l.prefixed.iter().all(|f| f.id.to_hex().starts_with(&hex[..digits])));
        }
        // Too short, not hex, or too long: no prefix lookup.
        for q in ["abc", "zzzz", &"a".repeat(65)] {
            assert!(prefix_range(q).is_none(), "{q}");
        }
        let r = v.state().results.get(0).expect("the federation has results");
        assert_eq!(v.result(&r.id).as_ref(), Some(&r));
        assert_eq!(v.lookup(Kind::Result, &r.id.to_hex()[..10]).prefixed[0].id, r.id);
        assert!(v.result(&RecordId::from_bytes([1; 32])).is_none());
    }

    #[test]
    fn a_filter_that_rejects_most_of_an_index_stops_after_the_scan_bound_with_a_cursor() {
        let items: Vec<u64> = (0..u64::from(VIEW_SCAN_MAX) + 10).collect();
        let page = |after: Option<&u64>| {
            walk(
                Candidates::Range(0, items.len() as u32),
                |p| &items[p as usize],
                |x: &&u64| **x,
                after,
                10,
                |x| **x == 5 || **x > u64::from(VIEW_SCAN_MAX) + 7,
                |k| k.to_string(),
            )
        };
        let first = page(None);
        assert_eq!(first.items, vec![&5]);
        let next: u64 = first.next.expect("stopped at the bound").parse().expect("a key");
        assert_eq!(next, u64::from(VIEW_SCAN_MAX) - 1);
        let second = page(Some(&next));
        assert_eq!(second.items.len(), 2);
        assert_eq!(second.next, None);
    }
}
