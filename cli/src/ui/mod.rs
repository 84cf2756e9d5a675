//! `medmesh ui`: the web application for the user of one home, served on loopback.
//!
//! The keys stay in this process and the node is reached through its control API,
//! as the commands do; every action calls the same [`crate::workflow`] function as
//! its command, so the UI never does what the CLI cannot, and a record the fold
//! ignores is an error here too.
//!
//! - [`auth`]: the one-time sign-in link, the session cookie, the CSRF token on
//!   every form, the Host check and the security headers.
//! - [`layout`]: the page frame, navigation, paging and error pages (maud, which
//!   escapes by construction).
//! - [`browse`]: what everyone reads (benchmarks, containers, datasets,
//!   associations, results, leaderboards).
//! - `node::charts`: the leaderboard chart (points with intervals on a stated
//!   axis) and the model x site heatmap, as inline SVG, shared with the node's
//!   own leaderboard page.
//! - [`jobs`]: long work (prepare, compatibility tests, runs) on threads of its
//!   own, with live logs and progress over server-sent events.
//! - [`account`]: this user's profile and join request.
//! - [`data_owner`], [`model_owner`], [`committee`], [`admin`], [`owner`]: each
//!   role's pages and actions.

pub mod account;
pub mod admin;
pub mod auth;
pub mod browse;
pub mod committee;
pub mod data_owner;
pub mod jobs;
pub mod layout;
pub mod model_owner;
pub mod owner;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::fold::DatasetView;
use protocol::{PublicKey, RecordId};

use std::collections::BTreeMap;

use crate::home::Home;
use crate::publish::{Confirm, NodeApi};
use crate::views;
use crate::workflow::Session;

/// Rows on one page of a list.
pub const PAGE_ROWS: u32 = 25;
/// Most rows a page lists without paging (a user's own containers, the
/// approved benchmarks of a form's choice).
pub const LIST_ROWS_MAX: u32 = 200;
/// Longest search text accepted, in characters.
pub const QUERY_CHARS_MAX: usize = 200;

/// What every handler shares.
pub struct Ui {
    pub home: Home,
    pub site: runner::site::Overrides,
    pub auth: auth::Auth,
    pub jobs: jobs::Jobs,
}

pub type Shared = Arc<Ui>;

impl Ui {
    /// A workflow session for this home, confirming as `confirm` says.
    pub fn session(&self, confirm: Confirm) -> anyhow::Result<Session> {
        let node_dir = self.home.node_dir()?;
        Ok(Session {
            keys: self.home.keys()?,
            network: self.home.network_id()?,
            api: Box::new(crate::control::Control::for_node_dir(&node_dir)?),
            home: self.home.clone(),
            confirm,
            site: self.site.clone(),
        })
    }
}

/// Run blocking work (the control API, keys on disk, Docker) off the async
/// threads: on a thread of its own, so that the workflow may start its own runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("medmesh-ui-work".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .context("cannot start a worker thread")?;
    rx.await.context("a worker thread stopped without an answer")?
}

/// Who this user is on the network, as the node's indexes say.
#[derive(Clone, Debug)]
pub struct Me {
    pub key: PublicKey,
    pub name: Option<String>,
    pub admin: bool,
    /// Roles granted by admission (every role for an admin, and in an open network).
    pub data_owner: bool,
    pub model_owner: bool,
    pub benchmark_owner: bool,
    /// On the committee of some benchmark.
    pub committee: bool,
    /// Admitted (or the network is open): what it signs counts.
    pub admitted: bool,
    pub organisation: Option<String>,
}

impl Me {
    /// This key's standing (`/v1/keys/{key}`, `/v1/committees/{key}`).
    pub fn of(key: PublicKey, api: &dyn NodeApi, net: &views::NetworkInfo) -> anyhow::Result<Self> {
        use protocol::record::MemberRole;
        let k = views::key(api, &key)?;
        let all = k.admin || net.admission.is_open();
        let has = |r: MemberRole| all || k.member.as_ref().is_some_and(|m| m.roles.contains(&r));
        let (committees, _) = views::page::<serde_json::Value>(
            api,
            &format!("/v1/committees/{}", key.to_hex()),
            &[],
            None,
            1,
        )?;
        Ok(Self {
            key,
            name: k.profile.as_ref().map(|p| p.profile.name.clone()),
            admin: k.admin,
            data_owner: has(MemberRole::DataOwner),
            model_owner: has(MemberRole::ModelOwner),
            benchmark_owner: has(MemberRole::BenchmarkOwner),
            committee: !committees.is_empty(),
            admitted: k.admitted || net.admission.is_open(),
            organisation: k.profile.as_ref().map(|p| p.profile.organisation.clone()),
        })
    }
}

/// This user, the network, and the names a page shows, read for one page with
/// the node's indexed queries (never the whole state).
pub struct Snapshot {
    pub session: Session,
    pub me: Me,
    pub net: views::NetworkInfo,
    /// Public names of the records and profile names of the keys this page shows.
    pub names: views::Names,
    /// Names of datasets this user may read (public, or opened with its key), by id.
    pub datasets: BTreeMap<RecordId, String>,
}

impl Snapshot {
    pub fn api(&self) -> &dyn NodeApi {
        self.session.api()
    }

    /// Learn the public names of these records and the profile names of these
    /// keys (a bounded query per 200).
    pub fn learn(
        &mut self,
        ids: impl IntoIterator<Item = RecordId>,
        keys: impl IntoIterator<Item = PublicKey>,
    ) -> anyhow::Result<()> {
        let ids: Vec<RecordId> =
            ids.into_iter().filter(|i| !self.names.ids.contains_key(i)).collect();
        let keys: Vec<PublicKey> =
            keys.into_iter().filter(|k| !self.names.keys.contains_key(k)).collect();
        if ids.is_empty() && keys.is_empty() {
            return Ok(());
        }
        let n = views::names(self.session.api(), &ids, &keys)?;
        self.names.ids.extend(n.ids);
        self.names.keys.extend(n.keys);
        Ok(())
    }

    /// Learn the names this user may read of these datasets.
    pub fn learn_datasets<'a>(&mut self, list: impl IntoIterator<Item = &'a DatasetView>) {
        for v in list {
            if let Some(d) = crate::workflow::dataset_details(&self.session, v) {
                self.datasets.insert(v.id, d.details.name);
            }
        }
    }

    /// Learn the names this user may read of the datasets with these ids (one
    /// query each: a page shows a bounded number).
    pub fn learn_dataset_ids(
        &mut self,
        ids: impl IntoIterator<Item = RecordId>,
    ) -> anyhow::Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        for id in ids {
            if self.datasets.contains_key(&id) || !seen.insert(id) {
                continue;
            }
            if let Some(v) = views::dataset_opt(self.session.api(), &id)? {
                self.learn_datasets([&v]);
            }
        }
        Ok(())
    }
}

/// Read this user and the network for a page, then run `f` on the same worker
/// thread (the queries a page needs, and the names it shows).
pub async fn snapshot_with<T: Send + 'static>(
    ui: &Shared,
    f: impl FnOnce(&mut Snapshot) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<(Snapshot, T)> {
    let ui = ui.clone();
    blocking(move || {
        let session = ui.session(Confirm::Preview)?;
        let net = views::network(session.api())?;
        let me = Me::of(session.me(), session.api(), &net)?;
        let mut snap = Snapshot {
            session,
            me,
            net,
            names: views::Names::default(),
            datasets: BTreeMap::new(),
        };
        if let Some(name) = &snap.me.name {
            snap.names.keys.insert(snap.me.key, name.clone());
        }
        let out = f(&mut snap)?;
        Ok((snap, out))
    })
    .await
}

/// The approved benchmarks a form offers (the first [`LIST_ROWS_MAX`]).
pub fn approved_benchmarks(snap: &Snapshot) -> anyhow::Result<Vec<protocol::fold::BenchmarkView>> {
    let p = [("status", "approved".to_string())];
    Ok(views::page(snap.api(), "/v1/benchmarks", &p, None, LIST_ROWS_MAX)?.0)
}

/// Read this user and the network for a page.
pub async fn snapshot(ui: &Shared) -> anyhow::Result<Snapshot> {
    Ok(snapshot_with(ui, |_| Ok(())).await?.0)
}

/// An error shown as a page: the message with its causes, and why a record the
/// network keeps was ignored.
pub struct UiError(pub anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for UiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        layout::error_page(&self.0)
    }
}

pub type Page = Result<Response, UiError>;

/// The application's routes.
pub fn router(ui: Shared) -> Router {
    let pages = Router::new()
        .route("/", get(browse::home))
        .route("/benchmarks", get(browse::benchmarks))
        .route("/benchmarks/{id}", get(browse::benchmark))
        .route("/benchmarks/{id}/leaderboard", get(browse::leaderboard))
        .route("/containers", get(browse::containers))
        .route("/datasets", get(browse::datasets))
        .route("/associations", get(browse::associations))
        .route("/results", get(browse::results))
        .route("/leaderboards", get(browse::leaderboards))
        .route("/data", get(data_owner::page))
        .route("/data/prepare", post(data_owner::prepare))
        .route("/data/register", post(data_owner::register))
        .route("/data/associate", post(data_owner::associate))
        .route("/data/operational", post(data_owner::operational))
        .route("/data/run", post(data_owner::run))
        .route("/data/results/{id}", get(data_owner::result))
        .route("/models", get(model_owner::page))
        .route("/models/register", post(model_owner::register))
        .route("/models/associate", post(model_owner::associate))
        .route("/decisions", get(committee::page))
        .route("/decisions/review", post(committee::review))
        .route("/decisions/sign", post(committee::sign))
        .route("/admin", get(admin::page))
        .route("/owner/{id}", get(owner::dashboard))
        .route("/profile", post(account::profile))
        .route("/apply", post(account::apply))
        .route("/owner", get(owner::page))
        .route("/owner/submit", post(owner::submit))
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::page))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/signout", post(auth::signout))
        .route_layer(axum::middleware::from_fn_with_state(ui.clone(), auth::require_session));
    Router::new()
        .merge(pages)
        .route("/signin", get(auth::signin))
        .route("/static/ui.js", get(layout::script))
        .route("/static/ui.css", get(layout::style))
        .layer(axum::middleware::from_fn_with_state(ui.clone(), auth::check_host))
        .with_state(ui)
}

/// Serve the UI for `home` on `listen` (loopback only) until interrupted; prints
/// the one-time sign-in link first (to stdout, alone on its line, for scripts).
pub fn serve(
    home: Home,
    site: runner::site::Overrides,
    listen: SocketAddr,
    on_ready: impl FnOnce(&str),
) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        anyhow::bail!(
            "medmesh ui serves on loopback only, and {} is not a loopback address; use 127.0.0.1:PORT (reach it from elsewhere through an SSH tunnel)",
            listen.ip()
        );
    }
    // Fail early on a home that cannot act (no keys, no root, no node).
    home.keys()?;
    home.network_id()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start an async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let auth = auth::Auth::new(addr)?;
        let link = format!("http://{addr}/signin?token={}", auth.signin_token());
        let ui = Arc::new(Ui { home, site, auth, jobs: jobs::Jobs::default() });
        on_ready(&link);
        axum::serve(listener, router(ui)).await.context("the web server stopped")
    })
}
