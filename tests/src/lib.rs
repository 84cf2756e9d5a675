//! Helpers for MedMesh integration tests: start real nodes on loopback, generate
//! signed records, and wait on polled conditions with deadlines (never sleeps
//! standing in for synchronisation). [`federation`] runs node containers on
//! private Docker networks.

pub mod engines;
pub mod faults;
pub mod federation;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use node::{Client, Multiaddr, Node, NodeConfig};
use protocol::testkit::{Author, container};
use protocol::{NetworkRoot, Record};

/// Default deadline for a network-wide condition.
pub const CONVERGE_TIMEOUT_MS: u64 = 60_000;
/// How often a condition is polled.
pub const POLL_INTERVAL_MS: u64 = 25;
/// Background sync interval used by test nodes.
pub const TEST_SYNC_INTERVAL_MS: u64 = 2_000;

/// Log to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A node config for tests: loopback TCP on an ephemeral port, fast background sync.
pub fn config(dir: &Path, root: &NetworkRoot, bootstrap: &[Multiaddr]) -> NodeConfig {
    let mut c = NodeConfig::new(dir);
    c.root = Some(root.clone());
    c.bootstrap = bootstrap.to_vec();
    c.sync_interval = Duration::from_millis(TEST_SYNC_INTERVAL_MS);
    c
}

/// Start a node in `dir`.
pub async fn start(dir: &Path, root: &NetworkRoot, bootstrap: &[Multiaddr]) -> Node {
    Node::start(config(dir, root, bootstrap)).await.expect("test node starts")
}

/// Start `n` nodes, each bootstrapped from the first; returns them with their dirs.
pub async fn start_many(n: usize, root: &NetworkRoot) -> (Vec<Node>, Vec<tempfile::TempDir>) {
    let mut dirs = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().expect("temp dir");
        let boot = nodes.first().map(|n| n.addresses()).unwrap_or_default();
        nodes.push(start(dir.path(), root, &boot).await);
        dirs.push(dir);
    }
    (nodes, dirs)
}

/// Poll `cond` until it holds, or panic naming `what` at the deadline.
pub async fn eventually<F, Fut>(what: &str, timeout_ms: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout_ms} ms waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Wait until every client holds `records` records and all share one state hash.
pub async fn converged(clients: &[Client], records: u64) {
    eventually(
        &format!("{} nodes to hold {records} records with one state hash", clients.len()),
        CONVERGE_TIMEOUT_MS,
        || async {
            if !clients.iter().all(|c| c.len() == records) {
                return false;
            }
            let h = clients[0].state_hash();
            clients.iter().all(|c| c.state_hash() == h)
        },
    )
    .await
}

/// Wait until every client has a gossip mesh peer (so a publish reaches everyone).
pub async fn meshed(clients: &[Client]) {
    eventually("every node to have a gossip mesh peer", CONVERGE_TIMEOUT_MS, || async {
        for c in clients {
            let peers = c.peers().await.unwrap_or_default();
            if !peers.iter().any(|p| p.mesh) {
                return false;
            }
        }
        true
    })
    .await
}

/// `n` container records signed in chain order by the author named `label`.
pub fn bulk_records(label: &str, root: &NetworkRoot, n: usize) -> Vec<Record> {
    let mut a = Author::new(label, root.network_id());
    (0..n).map(|i| a.sign(container(&format!("{label}-{i}"), &["infer"]))).collect()
}

/// Submit every record at `client`.
pub async fn submit_all(client: &Client, records: &[Record]) {
    for r in records {
        client.submit(&r.bytes).await.expect("a valid record is accepted");
    }
}

/// A minimal HTTP/1.1 request over loopback: returns the status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    try_http(addr, method, path, token, body)
        .await
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// A minimal HTTP/1.1 request: the status and body, or what went wrong (the caller
/// bounds the wait, e.g. with [`try_http_within`]).
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("Content-Type: application/octet-stream\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let split =
        out.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no header block"))?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut body = out[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or_else(|| bad("a malformed chunked body"))?;
    }
    Ok((status, body))
}

/// [`try_http`] bounded by `timeout`: a request still unanswered then is a
/// `TimedOut` error (the node may be dead, or stopped).
pub async fn try_http_within(
    timeout: Duration,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    tokio::time::timeout(timeout, try_http(addr, method, path, token, body)).await.unwrap_or_else(
        |_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out")),
    )
}

/// The status (`GET /v1/status`) of the node or bootstrap process whose data
/// directory is `dir`, at the address in its `control.addr`; `None` until it serves one.
pub async fn control_status(dir: &Path) -> Option<serde_json::Value> {
    let addr = std::fs::read_to_string(dir.join("control.addr")).ok()?.trim().parse().ok()?;
    let (code, body) = http(addr, "GET", "/v1/status", None, &[]).await;
    (code == 200).then(|| serde_json::from_slice(&body).ok()).flatten()
}

/// A bare swarm of a new identity (TCP, noise, yamux) that speaks only one of
/// the node's request-response protocols: the hostile peers' tool.
pub fn raw_swarm<Req, Resp>(
    protocol: &'static str,
) -> libp2p::Swarm<libp2p::request_response::cbor::Behaviour<Req, Resp>>
where
    Req: Send + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned + 'static,
    Resp: Send + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    use libp2p::request_response::{Config, ProtocolSupport, cbor::Behaviour};
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|_| {
            Behaviour::new(
                [(libp2p::StreamProtocol::new(protocol), ProtocolSupport::Full)],
                Config::default(),
            )
        })
        .expect("a request-response behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// A workspace binary (`medmesh`, `medmesh-bootstrap`) in the target directory next
/// to the test executable, built on demand when `cargo test -p tests` runs alone.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "cli", "-p", "bootstrap"])
            .status()
            .expect("cargo runs")
            .success();
        assert!(ok, "cannot build the medmesh binaries");
    }
    path
}

/// A child process, SIGKILLed (and reaped) when dropped, also while stopped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let len = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).ok()?;
        if len == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(eol + 2..eol + 2 + len)?);
        b = b.get(eol + 2 + len + 2..)?;
    }
}
