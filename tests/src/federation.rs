//! A federation of MedMesh node containers on private Docker networks, driven
//! through each member's control API, with faults applied through the engine: stop,
//! kill, start, restart, pause, and cutting or restoring a member's network.
//!
//! Layout: one bootstrap peer and `n` nodes, each a container of the project's own
//! `FROM scratch` image ([`NODE_IMAGE`]: static `medmesh` and `medmesh-bootstrap`).
//! Every member is on the `mesh` network at a fixed address; the last two nodes also
//! share a `link` network (two sites with a private line of their own). Both
//! networks are internal, so no route leaves them: a container cut from `mesh`
//! reaches only what `link` reaches. The host reaches a member's control API at its
//! address on any network the member is on.
//!
//! Every record a member acknowledged is remembered; [`Federation::converge`] waits
//! until every running member holds the same record set, state hash and leaderboard,
//! and counts the acknowledged records that are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, ListNetworksOptions,
    LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use protocol::{NetworkRoot, Record};
use runner::Engine;
use runner::engine::bind;
use serde_json::Value;

use crate::try_http;

/// The node image the harness builds and runs.
pub const NODE_IMAGE: &str = "medmesh/node:dev";
/// The libp2p port every member listens on, TCP and QUIC, inside its container.
pub const P2P_PORT: u16 = 4001;
/// The control API's port inside each container.
pub const CONTROL_PORT: u16 = 8080;
/// Label on every container and network the harness makes (value: the owner's pid).
pub const LABEL: &str = "medmesh.federation";
/// Longest one control-API request may take (a paused member never answers).
pub const HTTP_TIMEOUT_MS: u64 = 5_000;
/// Longest a member may take to serve its control API after a start.
pub const START_TIMEOUT_MS: u64 = 60_000;
/// Longest the members may take to agree after a fault ends.
pub const CONVERGE_TIMEOUT_MS: u64 = 120_000;
/// How often conditions are polled.
pub const POLL_MS: u64 = 100;
/// Seconds a member gets to stop on SIGTERM before SIGKILL.
pub const STOP_GRACE_S: i32 = 10;
/// Memory limit of each member's container.
pub const MEMBER_MEMORY_BYTES: i64 = 512 * 1024 * 1024;
/// First host number of members on each /24 (the bootstrap peer; nodes follow).
const FIRST_HOST: u8 = 10;
/// Ids asked for per page when listing a member's records.
const LIST_PAGE: u64 = 10_000;

static RUNS: AtomicU32 = AtomicU32::new(0);

/// The workspace this crate lives in.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Build the static `medmesh` and `medmesh-bootstrap` (release, crt-static) and the
/// `FROM scratch` node image holding both; returns the image digest.
pub async fn build_node_image(engine: &Engine) -> Result<String> {
    let bin = runner::examples::build_static_binaries(&workspace_root(), &["cli", "bootstrap"])
        .await
        .context("building the static medmesh binaries")?;
    let (medmesh, bootstrap) = (bin.join("medmesh"), bin.join("medmesh-bootstrap"));
    engine
        .build_scratch_image_of(
            &[("medmesh", medmesh.as_path()), ("medmesh-bootstrap", bootstrap.as_path())],
            None,
            NODE_IMAGE,
        )
        .await
        .context("building the node image")
}

/// The two networks of a federation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Net {
    /// Every member: the shared network.
    Mesh,
    /// The last two nodes only: their private line.
    Link,
}

/// Whether a member runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    Stopped,
}

/// One container of the federation.
#[derive(Debug)]
pub struct Member {
    /// Container name.
    pub name: String,
    pub bootstrap: bool,
    /// Host folder mounted as the member's data directory.
    pub dir: PathBuf,
    /// Fixed address on each network the member may join.
    pub ips: BTreeMap<Net, Ipv4Addr>,
    /// Networks the member is on now.
    pub attached: BTreeSet<Net>,
    pub state: RunState,
    pub peer_id: String,
    token: String,
}

impl Member {
    /// Where the host reaches the control API now, if the member is on a network.
    pub fn control(&self) -> Option<SocketAddr> {
        self.attached
            .iter()
            .next()
            .and_then(|n| self.ips.get(n))
            .map(|ip| SocketAddr::from((*ip, CONTROL_PORT)))
    }

    /// The member's libp2p address on `net`, over TCP or QUIC.
    pub fn p2p_addr(&self, net: Net, quic: bool) -> Option<String> {
        let transport =
            if quic { format!("udp/{P2P_PORT}/quic-v1") } else { format!("tcp/{P2P_PORT}") };
        self.ips.get(&net).map(|ip| format!("/ip4/{ip}/{transport}/p2p/{}", self.peer_id))
    }
}

/// What every running member agreed on.
#[derive(Clone, Debug)]
pub struct Agreement {
    /// When the members were seen to agree.
    pub at: Instant,
    pub records: usize,
    pub state_hash: String,
    /// Acknowledged records that no longer exist on some running member.
    pub lost: usize,
    /// The leaderboard every member serves (the same JSON).
    pub leaderboard: Value,
    pub members: usize,
}

/// One member's view, read over its control API.
#[derive(Clone, Debug, PartialEq)]
struct View {
    records: u64,
    state_hash: String,
}

struct NetInfo {
    name: String,
    prefix: [u8; 3],
}

impl NetInfo {
    fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host)
    }
}

/// A running federation. Call [`Federation::teardown`] at the end; dropping it
/// without removes the containers and networks too, from a helper thread.
pub struct Federation {
    docker: Docker,
    run: String,
    tmp: tempfile::TempDir,
    root_file: PathBuf,
    nets: BTreeMap<Net, NetInfo>,
    pub members: Vec<Member>,
    /// Every record id (hex) a member acknowledged.
    pub acked: BTreeSet<String>,
    /// Where member logs are written at teardown.
    pub logs: PathBuf,
    torn_down: bool,
}

impl Federation {
    /// Create the networks, start the bootstrap peer and `nodes` nodes from
    /// [`NODE_IMAGE`] (build it first with [`build_node_image`]), and wait until
    /// every member is connected to every other.
    pub async fn launch(engine: &Engine, root: &NetworkRoot, nodes: usize) -> Result<Federation> {
        if nodes < 2 {
            bail!("a federation needs at least 2 nodes (the last two share the link network)");
        }
        let docker = engine.docker().clone();
        remove_leftovers(&docker).await?;
        let run = format!("mmf{}x{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed));
        let tmp = tempfile::tempdir().context("creating a temp dir")?;
        let root_file = tmp.path().join("network.root");
        std::fs::write(&root_file, root.to_bytes()).context("writing the root file")?;
        let logs = workspace_root().join("target").join("tmp").join("federation").join(&run);
        let mut fed = Federation {
            docker,
            run: run.clone(),
            tmp,
            root_file,
            nets: BTreeMap::new(),
            members: Vec::new(),
            acked: BTreeSet::new(),
            logs,
            torn_down: false,
        };
        for net in [Net::Mesh, Net::Link] {
            let info = create_network(&fed.docker, &format!("{run}-{}", net_name(net))).await?;
            fed.nets.insert(net, info);
        }
        for i in 0..=nodes {
            let on_link = i + 2 > nodes;
            fed.create_member(i, on_link).await?;
            fed.start(i).await?;
        }
        fed.wait_fully_connected(START_TIMEOUT_MS).await?;
        fed.check_quic_in_use().await?;
        Ok(fed)
    }

    /// Node 2 dialled the bootstrap peer over QUIC: its connection must be QUIC.
    async fn check_quic_in_use(&self) -> Result<()> {
        let boot = &self.members[0].peer_id;
        let peers = self.get_json(2, "/v1/peers").await?;
        let quic = peers
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["peer_id"].as_str() == Some(boot))
            .any(|p| {
                p["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .any(|a| a.contains("/quic-v1"))
            });
        if !quic {
            bail!("node2 is not connected to the bootstrap peer over QUIC: {peers}");
        }
        Ok(())
    }

    /// Indices of the nodes (every member but the bootstrap peer).
    pub fn nodes(&self) -> std::ops::Range<usize> {
        1..self.members.len()
    }

    async fn create_member(&mut self, i: usize, on_link: bool) -> Result<()> {
        let bootstrap = i == 0;
        let name = if bootstrap {
            format!("{}-bootstrap", self.run)
        } else {
            format!("{}-node{i}", self.run)
        };
        let dir = self.tmp.path().join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let host = u8::try_from(i)
            .ok()
            .and_then(|i| FIRST_HOST.checked_add(i))
            .ok_or_else(|| anyhow!("too many members for one /24"))?;
        let mut ips = BTreeMap::new();
        ips.insert(Net::Mesh, self.nets[&Net::Mesh].ip(host));
        if on_link {
            ips.insert(Net::Link, self.nets[&Net::Link].ip(host));
        }
        let mut cmd: Vec<String> = if bootstrap {
            vec!["/medmesh-bootstrap".into()]
        } else {
            // Odd nodes reach the bootstrap peer over TCP, even ones over QUIC: both
            // transports carry the federation's traffic.
            let boot = self
                .members
                .first()
                .and_then(|b| b.p2p_addr(Net::Mesh, i.is_multiple_of(2)))
                .ok_or_else(|| anyhow!("start the bootstrap peer first"))?;
            vec!["/medmesh".into(), "node".into(), "start".into(), "--bootstrap".into(), boot]
        };
        for a in ["--data-dir", "/data", "--root", "/network.root"] {
            cmd.push(a.into());
        }
        cmd.extend([
            "--listen".into(),
            format!("/ip4/0.0.0.0/tcp/{P2P_PORT}"),
            "--listen".into(),
            format!("/ip4/0.0.0.0/udp/{P2P_PORT}/quic-v1"),
        ]);
        cmd.extend([
            "--control".into(),
            format!("0.0.0.0:{CONTROL_PORT}"),
            "--control-public".into(),
        ]);
        let owner =
            std::fs::metadata(&dir).with_context(|| format!("reading {}", dir.display()))?;
        let mesh = self.nets[&Net::Mesh].name.clone();
        let body = ContainerCreateBody {
            image: Some(NODE_IMAGE.into()),
            cmd: Some(cmd),
            env: Some(vec!["RUST_LOG=info".into()]),
            user: Some(format!("{}:{}", owner.uid(), owner.gid())),
            labels: Some(std::collections::HashMap::from([(
                LABEL.to_string(),
                std::process::id().to_string(),
            )])),
            host_config: Some(HostConfig {
                mounts: Some(vec![
                    bind(&dir, "/data", false),
                    bind(&self.root_file, "/network.root", true),
                ]),
                network_mode: Some(mesh.clone()),
                memory: Some(MEMBER_MEMORY_BYTES),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(std::collections::HashMap::from([(
                    mesh,
                    endpoint(ips[&Net::Mesh]),
                )])),
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions { name: Some(name.clone()), ..Default::default() }),
                body,
            )
            .await
            .with_context(|| {
                format!(
                    "creating container {name} from {NODE_IMAGE} (build it with build_node_image)"
                )
            })?;
        let mut attached = BTreeSet::from([Net::Mesh]);
        if let Some(ip) = ips.get(&Net::Link) {
            let link = &self.nets[&Net::Link].name;
            self.docker
                .connect_network(
                    link,
                    NetworkConnectRequest {
                        container: name.clone(),
                        endpoint_config: Some(endpoint(*ip)),
                    },
                )
                .await
                .with_context(|| format!("connecting {name} to {link}"))?;
            attached.insert(Net::Link);
        }
        self.members.push(Member {
            name,
            bootstrap,
            dir,
            ips,
            attached,
            state: RunState::Stopped,
            peer_id: String::new(),
            token: String::new(),
        });
        Ok(())
    }

    /// Start member `i` (again: same data directory, same addresses) and wait until
    /// it serves its control API.
    pub async fn start(&mut self, i: usize) -> Result<()> {
        let name = self.members[i].name.clone();
        self.docker
            .start_container(&name, None::<StartContainerOptions>)
            .await
            .with_context(|| format!("starting {name}"))?;
        self.members[i].state = RunState::Running;
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        let status = loop {
            if let Ok(s) = self.get_json(i, "/v1/status").await {
                break s;
            }
            if Instant::now() >= deadline {
                self.dump_logs().await;
                bail!(
                    "{name} did not serve its control API within {START_TIMEOUT_MS} ms; logs in {}",
                    self.logs.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        };
        let m = &mut self.members[i];
        m.peer_id = status["peer_id"].as_str().unwrap_or_default().to_string();
        m.token = std::fs::read_to_string(m.dir.join("control.token"))
            .with_context(|| format!("reading {name}'s control token"))?
            .trim()
            .to_string();
        Ok(())
    }

    /// Wait until every running member is connected to every other running member.
    pub async fn wait_fully_connected(&self, timeout_ms: u64) -> Result<()> {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].state == RunState::Running)
            .collect();
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        loop {
            let mut missing = Vec::new();
            for &i in &running {
                let peers = self.peers_of(i).await.unwrap_or_default();
                for &j in &running {
                    if j != i && !peers.contains(&self.members[j].peer_id) {
                        missing
                            .push(format!("{} → {}", self.members[i].name, self.members[j].name));
                    }
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("members not connected after {timeout_ms} ms: {}", missing.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// The peer ids member `i` is connected to.
    pub async fn peers_of(&self, i: usize) -> Result<BTreeSet<String>> {
        match self.get_json(i, "/v1/peers").await? {
            Value::Array(ps) => {
                Ok(ps.iter().filter_map(|p| p["peer_id"].as_str().map(str::to_string)).collect())
            }
            other => bail!("{} answered /v1/peers with {other}", self.members[i].name),
        }
    }

    /// Wait until no running member other than `i` is connected to member `i`.
    pub async fn wait_dropped_by_all(&self, i: usize, timeout_ms: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let others: Vec<usize> = (0..self.members.len())
            .filter(|&j| j != i && self.members[j].state == RunState::Running)
            .collect();
        loop {
            let mut still = Vec::new();
            for &j in &others {
                if self
                    .peers_of(j)
                    .await
                    .map(|p| p.contains(&self.members[i].peer_id))
                    .unwrap_or(true)
                {
                    still.push(self.members[j].name.clone());
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still connected to {} after {timeout_ms} ms",
                    still.join(", "),
                    self.members[i].name
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Submit `records` at member `i`; every acknowledged one is remembered. Returns
    /// how many were acknowledged.
    pub async fn submit(&mut self, i: usize, records: &[Record]) -> Result<usize> {
        let addr = self.members[i]
            .control()
            .ok_or_else(|| anyhow!("{} is on no network", self.members[i].name))?;
        let mut acked = 0;
        for r in records {
            let token = self.members[i].token.clone();
            let (code, body) =
                timed(try_http(addr, "POST", "/v1/records", Some(&token), &r.bytes)).await?;
            if code != 200 {
                bail!(
                    "{} refused a record with {code}: {}",
                    self.members[i].name,
                    String::from_utf8_lossy(&body)
                );
            }
            let v: Value =
                serde_json::from_slice(&body).context("a submit answer that is not JSON")?;
            let id = v["id"].as_str().ok_or_else(|| anyhow!("a submit answer with no id: {v}"))?;
            self.acked.insert(id.to_string());
            acked += 1;
        }
        Ok(acked)
    }

    /// Submit `records` spread round-robin over members `at`.
    pub async fn submit_spread(&mut self, at: &[usize], records: &[Record]) -> Result<usize> {
        let mut n = 0;
        for (k, r) in records.iter().enumerate() {
            n += self.submit(at[k % at.len()], std::slice::from_ref(r)).await?;
        }
        Ok(n)
    }

    /// Whether member `i` holds record `id` (hex).
    pub async fn holds(&self, i: usize, id: &str) -> Result<bool> {
        let addr = self.members[i]
            .control()
            .ok_or_else(|| anyhow!("{} is on no network", self.members[i].name))?;
        let (code, _) =
            timed(try_http(addr, "GET", &format!("/v1/records/{id}"), None, &[])).await?;
        Ok(code == 200)
    }

    /// Wait until member `i` holds record `id` (hex); fails at the deadline.
    pub async fn wait_holds(&self, i: usize, id: &str, timeout_ms: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        while !self.holds(i, id).await.unwrap_or(false) {
            if Instant::now() >= deadline {
                bail!("{} still lacks record {id} after {timeout_ms} ms", self.members[i].name);
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        Ok(())
    }

    /// Stop member `i` cleanly (SIGTERM, then SIGKILL after [`STOP_GRACE_S`]).
    pub async fn stop(&mut self, i: usize) -> Result<()> {
        let name = self.members[i].name.clone();
        let opts = StopContainerOptions { t: Some(STOP_GRACE_S), ..Default::default() };
        self.docker
            .stop_container(&name, Some(opts))
            .await
            .with_context(|| format!("stopping {name}"))?;
        self.members[i].state = RunState::Stopped;
        Ok(())
    }

    /// Kill member `i` with SIGKILL (no clean shutdown).
    pub async fn kill(&mut self, i: usize) -> Result<()> {
        let name = self.members[i].name.clone();
        let opts = KillContainerOptions { signal: "SIGKILL".into() };
        self.docker
            .kill_container(&name, Some(opts))
            .await
            .with_context(|| format!("killing {name}"))?;
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        while self
            .docker
            .inspect_container(&name, None)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false)
        {
            if Instant::now() >= deadline {
                bail!("{name} still runs after SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        self.members[i].state = RunState::Stopped;
        Ok(())
    }

    /// Stop member `i` cleanly and start it again.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.stop(i).await?;
        self.start(i).await
    }

    /// Freeze every process of member `i` (its sockets stay open, nothing answers).
    pub async fn pause(&mut self, i: usize) -> Result<()> {
        let name = self.members[i].name.clone();
        self.docker.pause_container(&name).await.with_context(|| format!("pausing {name}"))?;
        self.members[i].state = RunState::Paused;
        Ok(())
    }

    pub async fn unpause(&mut self, i: usize) -> Result<()> {
        let name = self.members[i].name.clone();
        self.docker.unpause_container(&name).await.with_context(|| format!("unpausing {name}"))?;
        self.members[i].state = RunState::Running;
        Ok(())
    }

    /// Cut member `i` from `net`.
    pub async fn disconnect(&mut self, i: usize, net: Net) -> Result<()> {
        let (name, network) = (self.members[i].name.clone(), self.nets[&net].name.clone());
        let req = NetworkDisconnectRequest { container: name.clone(), force: Some(true) };
        self.docker
            .disconnect_network(&network, req)
            .await
            .with_context(|| format!("disconnecting {name} from {network}"))?;
        self.members[i].attached.remove(&net);
        Ok(())
    }

    /// Put member `i` back on `net` at its fixed address.
    pub async fn connect(&mut self, i: usize, net: Net) -> Result<()> {
        let (name, network) = (self.members[i].name.clone(), self.nets[&net].name.clone());
        let ip = *self.members[i]
            .ips
            .get(&net)
            .ok_or_else(|| anyhow!("{name} has no address on {network}"))?;
        let req =
            NetworkConnectRequest { container: name.clone(), endpoint_config: Some(endpoint(ip)) };
        self.docker
            .connect_network(&network, req)
            .await
            .with_context(|| format!("connecting {name} to {network}"))?;
        self.members[i].attached.insert(net);
        Ok(())
    }

    async fn get_json(&self, i: usize, path: &str) -> Result<Value> {
        let m = &self.members[i];
        let addr = m.control().ok_or_else(|| anyhow!("{} is on no network", m.name))?;
        let (code, body) = timed(try_http(addr, "GET", path, None, &[])).await?;
        if code != 200 {
            bail!("GET {path} at {}: {code} {}", m.name, String::from_utf8_lossy(&body));
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {path} at {}: not JSON", m.name))
    }

    async fn view(&self, i: usize) -> Result<View> {
        let s = self.get_json(i, "/v1/status").await?;
        Ok(View {
            records: s["records"].as_u64().unwrap_or(0),
            state_hash: s["state_hash"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Every record id member `i` holds.
    pub async fn record_ids(&self, i: usize) -> Result<BTreeSet<String>> {
        let mut ids = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/records?limit={LIST_PAGE}&after={a}"),
                None => format!("/v1/records?limit={LIST_PAGE}"),
            };
            let page = self.get_json(i, &path).await?;
            for id in page["ids"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                ids.insert(id.to_string());
            }
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => return Ok(ids),
            }
        }
    }

    /// Wait until every running member holds the same records, state hash and
    /// leaderboard of `benchmark` (hex id); count acknowledged records that are
    /// missing. Fails with every member's view at the deadline.
    pub async fn converge(&self, benchmark: &str, timeout_ms: u64) -> Result<Agreement> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(timeout_ms);
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].state == RunState::Running)
            .collect();
        let lb_path = format!("/v1/benchmarks/{benchmark}/leaderboard");
        loop {
            let mut views = Vec::new();
            for &i in &running {
                views.push(self.view(i).await.ok());
            }
            // Agreement is on what the members hold, not on what was acknowledged:
            // an acknowledged record missing from every member counts as lost.
            let agreed = views
                .first()
                .cloned()
                .flatten()
                .filter(|v| views.iter().all(|w| w.as_ref() == Some(v)));
            if let Some(v) = agreed {
                let mut sets = Vec::new();
                let mut boards = Vec::new();
                for &i in &running {
                    sets.push(self.record_ids(i).await?);
                    boards.push(self.get_json(i, &lb_path).await?);
                }
                if sets.iter().all(|s| *s == sets[0]) && boards.iter().all(|b| *b == boards[0]) {
                    let lost = self
                        .acked
                        .iter()
                        .filter(|id| !sets.iter().all(|s| s.contains(*id)))
                        .count();
                    return Ok(Agreement {
                        at: Instant::now(),
                        records: sets[0].len(),
                        state_hash: v.state_hash,
                        lost,
                        leaderboard: boards.swap_remove(0),
                        members: running.len(),
                    });
                }
            }
            if Instant::now() >= deadline {
                let mut lines = Vec::new();
                for (k, &i) in running.iter().enumerate() {
                    let missing = match self.record_ids(i).await {
                        Ok(ids) => self.acked.difference(&ids).count().to_string(),
                        Err(e) => format!("? ({e})"),
                    };
                    lines.push(format!(
                        "{}: {:?}, {missing} acknowledged records missing",
                        self.members[i].name, views[k]
                    ));
                }
                bail!(
                    "no agreement within {timeout_ms} ms ({} records acknowledged):\n  {}",
                    self.acked.len(),
                    lines.join("\n  ")
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Write every member's log to [`Federation::logs`].
    pub async fn dump_logs(&self) {
        use futures_util::StreamExt as _;
        if std::fs::create_dir_all(&self.logs).is_err() {
            return;
        }
        for m in &self.members {
            let opts =
                LogsOptions { stdout: true, stderr: true, timestamps: true, ..Default::default() };
            let mut out = Vec::new();
            let mut stream = self.docker.logs(&m.name, Some(opts));
            while let Some(Ok(chunk)) = stream.next().await {
                out.extend_from_slice(&chunk.into_bytes());
            }
            let _ = std::fs::write(self.logs.join(format!("{}.log", m.name)), out);
        }
    }

    /// Write the logs, then remove every container and network of this federation.
    pub async fn teardown(mut self) {
        self.dump_logs().await;
        remove(&self.docker, &self.names(), &self.net_names()).await;
        self.torn_down = true;
    }

    fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    fn net_names(&self) -> Vec<String> {
        self.nets.values().map(|n| n.name.clone()).collect()
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let (docker, names, nets) = (self.docker.clone(), self.names(), self.net_names());
        // A test that failed mid-way: clean up from a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(remove(&docker, &names, &nets));
            }
        })
        .join();
    }
}

async fn timed<T>(f: impl std::future::Future<Output = std::io::Result<T>>) -> Result<T> {
    match tokio::time::timeout(Duration::from_millis(HTTP_TIMEOUT_MS), f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(anyhow!("no answer within {HTTP_TIMEOUT_MS} ms")),
    }
}

fn net_name(net: Net) -> &'static str {
    match net {
        Net::Mesh => "mesh",
        Net::Link => "link",
    }
}

fn endpoint(ip: Ipv4Addr) -> EndpointSettings {
    EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(ip.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An internal bridge network on a free 10.x.y.0/24 (fixed member addresses need a
/// subnet of our own choosing).
async fn create_network(docker: &Docker, name: &str) -> Result<NetInfo> {
    let mut last = String::new();
    for _ in 0..64 {
        let r = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let prefix = [10, 100 + (r % 100) as u8, ((r >> 8) % 256) as u8];
        let subnet = format!("{}.{}.{}.0/24", prefix[0], prefix[1], prefix[2]);
        let gateway = format!("{}.{}.{}.1", prefix[0], prefix[1], prefix[2]);
        let req = NetworkCreateRequest {
            name: name.into(),
            driver: Some("bridge".into()),
            internal: Some(true),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet),
                    gateway: Some(gateway),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(std::collections::HashMap::from([(
                LABEL.to_string(),
                std::process::id().to_string(),
            )])),
            ..Default::default()
        };
        match docker.create_network(req).await {
            Ok(_) => return Ok(NetInfo { name: name.into(), prefix }),
            Err(e) if e.to_string().contains("overlap") => last = e.to_string(),
            Err(e) => return Err(e).with_context(|| format!("creating network {name}")),
        }
    }
    bail!("no free 10.x.y.0/24 subnet for network {name}: {last}")
}

async fn remove(docker: &Docker, containers: &[String], networks: &[String]) {
    for c in containers {
        let _ = docker
            .remove_container(c, Some(RemoveContainerOptions { force: true, ..Default::default() }))
            .await;
    }
    for n in networks {
        let _ = docker.remove_network(n).await;
    }
}

/// Remove containers and networks left by harness processes that no longer run.
async fn remove_leftovers(docker: &Docker) -> Result<()> {
    let filters = std::collections::HashMap::from([("label".to_string(), vec![LABEL.to_string()])]);
    let dead = |labels: Option<&std::collections::HashMap<String, String>>| {
        let pid = labels.and_then(|l| l.get(LABEL)).cloned().unwrap_or_default();
        !Path::new("/proc").join(pid).exists()
    };
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        }))
        .await
        .context("listing containers (is the Docker engine running?)")?;
    let old: Vec<String> = containers
        .iter()
        .filter(|c| dead(c.labels.as_ref()))
        .filter_map(|c| c.names.as_ref()?.first().map(|n| n.trim_start_matches('/').to_string()))
        .collect();
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters: Some(filters) }))
        .await
        .context("listing networks")?;
    let old_nets: Vec<String> = networks
        .iter()
        .filter(|n| dead(n.labels.as_ref()))
        .filter_map(|n| n.name.clone())
        .collect();
    remove(docker, &old, &old_nets).await;
    Ok(())
}
