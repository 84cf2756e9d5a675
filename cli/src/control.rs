//! The node's local control API, from the CLI's side (blocking HTTP on loopback).
//! Writes carry the token the node keeps in its data directory.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use protocol::record::BlobRef;
use protocol::{PublicKey, RecordId};
use serde::Deserialize;

use crate::publish::NodeApi;

/// The file a running node writes its control address into (in its data dir).
pub const CONTROL_FILE: &str = "control.addr";
/// The file holding the control token (in the node's data dir).
pub const TOKEN_FILE: &str = "control.token";

/// Timeout on one control API call.
pub const CONTROL_TIMEOUT_MS: u64 = 30_000;
/// Largest JSON document read from the node outside the paged views (a
/// leaderboard with its cells, the blob overview).
pub const CONTROL_RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Largest page of a view read from the node (a page holds at most 1,000 items;
/// a dataset with public details or a benchmark's leaderboard with its cells is
/// the largest item).
pub const VIEW_RESPONSE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// A connection to one node's control API.
pub struct Control {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

#[derive(Debug, Deserialize)]
struct Submitted {
    id: RecordId,
}

#[derive(Debug, Deserialize)]
struct Refusal {
    error: String,
    message: String,
}

#[derive(Debug, Deserialize)]
struct Verdict {
    ignored: bool,
    reason: Option<String>,
}

impl Control {
    /// Connect to the node whose data directory is `node_dir`.
    pub fn for_node_dir(node_dir: &Path) -> anyhow::Result<Self> {
        let control_file = node_dir.join(CONTROL_FILE);
        let text = std::fs::read_to_string(&control_file).map_err(|_| {
            anyhow!(
                "no node is running for {} (no {}); start one with `medmesh node start --data-dir {}`",
                node_dir.display(),
                control_file.display(),
                node_dir.display()
            )
        })?;
        let addr: std::net::SocketAddr = text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold an address", control_file.display()))?;
        let token =
            std::fs::read_to_string(node_dir.join(TOKEN_FILE)).ok().map(|t| t.trim().to_string());
        Ok(Self::new(&addr.to_string(), token))
    }

    /// Connect to a control API at `addr` (`host:port`).
    pub fn new(addr: &str, token: Option<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_millis(CONTROL_TIMEOUT_MS)))
            .build()
            .into();
        Self { base: format!("http://{addr}"), token, agent }
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "the node at {} does not answer ({e}); is it running? start it with `medmesh node start`",
            self.base
        )
    }

    fn get(&self, path: &str) -> anyhow::Result<Option<ureq::http::Response<ureq::Body>>> {
        let resp = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .map_err(|e| self.unreachable(e))?;
        match resp.status().as_u16() {
            200 => Ok(Some(resp)),
            404 => Ok(None),
            code => {
                let body = resp.into_body().read_to_string().unwrap_or_default();
                bail!("the node answered {code} to GET {path}: {body}")
            }
        }
    }

    /// GET a JSON document.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        match self.get(path)? {
            None => Ok(None),
            Some(r) => Ok(Some(
                r.into_body()
                    .with_config()
                    .limit(CONTROL_RESPONSE_BYTES_MAX)
                    .read_json()
                    .with_context(|| {
                        format!("the node's answer to {path} is not what this medmesh expects")
                    })?,
            )),
        }
    }
}

impl NodeApi for Control {
    fn head_record(&self, key: &PublicKey) -> anyhow::Result<Option<Vec<u8>>> {
        match self.get(&format!("/v1/heads/{}/record", key.to_hex()))? {
            None => Ok(None),
            Some(r) => Ok(Some(
                r.into_body()
                    .with_config()
                    .limit(protocol::limits::ENVELOPE_BYTES_MAX as u64)
                    .read_to_vec()
                    .context("cannot read the node's record of your chain head")?,
            )),
        }
    }

    fn ignored(&self, id: &RecordId) -> anyhow::Result<Option<String>> {
        let v: Verdict =
            self.get_json(&format!("/v1/records/{}/verdict", id.to_hex()))?.ok_or_else(|| {
                anyhow!(
                    "the node does not tell whether record {} counts (no verdict); update it",
                    id.short()
                )
            })?;
        Ok(v.ignored.then(|| v.reason.unwrap_or_else(|| "no reason given".into())))
    }

    fn submit(&self, bytes: &[u8]) -> anyhow::Result<RecordId> {
        let token = self.token.as_deref().ok_or_else(|| {
            anyhow!("no control token found; run this as the user who started the node")
        })?;
        let resp = self
            .agent
            .post(&format!("{}/v1/records", self.base))
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", "application/octet-stream")
            .send(bytes)
            .map_err(|e| self.unreachable(e))?;
        let code = resp.status().as_u16();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        if code == 200 || code == 201 {
            let s: Submitted = serde_json::from_str(&body)
                .context("the node's answer to a submission is not valid")?;
            return Ok(s.id);
        }
        match serde_json::from_str::<Refusal>(&body) {
            Ok(r) => bail!("the node refused the record ({}): {}", r.error, r.message),
            Err(_) => bail!("the node refused the record ({code}): {body}"),
        }
    }

    fn blob_add(&self, path: &Path) -> anyhow::Result<BlobRef> {
        let token = self.token()?;
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let resp = self
            .agent
            .post(&format!("{}/v1/blobs?pin=true", self.base))
            .config()
            .timeout_global(None)
            .build()
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", "application/octet-stream")
            .send(ureq::SendBody::from_reader(&mut file))
            .map_err(|e| self.unreachable(e))?;
        let code = resp.status().as_u16();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        if code != 200 {
            bail!("the node did not take {} into its blob store ({code}): {body}", path.display());
        }
        let b: BlobAnswer = serde_json::from_str(&body)
            .context("the node's answer to a blob upload is not valid")?;
        Ok(BlobRef { hash: b.hash, size: b.size })
    }

    fn blob_get(&self, blob: &BlobRef, what: &str, to: &Path) -> anyhow::Result<()> {
        self.blob_fetch(blob, what)?;
        self.blob_download(blob, to)
    }

    fn get_view(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.get(path)? {
            None => Ok(None),
            Some(r) => Ok(Some(
                r.into_body()
                    .with_config()
                    .limit(VIEW_RESPONSE_BYTES_MAX)
                    .read_to_vec()
                    .with_context(|| format!("cannot read the node's answer to {path}"))?,
            )),
        }
    }

    fn record(&self, id: &RecordId) -> anyhow::Result<Vec<u8>> {
        let r = self
            .get(&format!("/v1/records/{}", id.to_hex()))?
            .ok_or_else(|| anyhow!("the node does not hold record {}", id.short()))?;
        Ok(r.into_body()
            .with_config()
            .limit(protocol::limits::ENVELOPE_BYTES_MAX as u64)
            .read_to_vec()?)
    }
}

#[derive(Debug, Deserialize)]
struct BlobAnswer {
    hash: protocol::Hash32,
    size: u64,
}

/// What `GET /v1/blobs/{hash}` answers.
#[derive(Clone, Debug, Deserialize)]
pub struct BlobStatus {
    pub size: u64,
    pub complete: bool,
    pub have: u64,
    pub fetch: Option<FetchStatus>,
}

/// A fetch's progress, as the node reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct FetchStatus {
    pub state: String,
    pub error: Option<String>,
    pub peers: Vec<String>,
    pub have: u64,
}

/// How often a fetch's progress is read.
pub const BLOB_POLL_MS: u64 = 200;

impl Control {
    fn token(&self) -> anyhow::Result<&str> {
        self.token.as_deref().ok_or_else(|| {
            anyhow!("no control token found; run this as the user who started the node")
        })
    }

    /// Ask the node to fetch a blob from its peers and follow it with a progress
    /// bar (bytes, rate, peers) until it is complete.
    pub fn blob_fetch(&self, blob: &BlobRef, what: &str) -> anyhow::Result<()> {
        let path = format!("/v1/blobs/{}", blob.hash.to_hex());
        if let Some(st) = self.get_json::<BlobStatus>(&path)?
            && st.complete
        {
            return Ok(());
        }
        let token = self.token()?;
        let resp = self
            .agent
            .post(&format!("{}{path}/fetch", self.base))
            .header("authorization", &format!("Bearer {token}"))
            .send_json(serde_json::json!({"size": blob.size, "pin": true}))
            .map_err(|e| self.unreachable(e))?;
        let code = resp.status().as_u16();
        if code != 202 {
            let body = resp.into_body().read_to_string().unwrap_or_default();
            bail!("the node would not fetch {what} ({code}): {body}");
        }
        let bar = indicatif::ProgressBar::new(blob.size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {prefix}",
            )
            .expect("a valid template"),
        );
        bar.set_message(format!("fetching {what}"));
        loop {
            let st: BlobStatus = self
                .get_json(&path)?
                .ok_or_else(|| anyhow!("the node forgot the fetch of {what}"))?;
            bar.set_position(st.have);
            if st.complete {
                bar.finish_and_clear();
                return Ok(());
            }
            if let Some(f) = &st.fetch {
                bar.set_prefix(format!("{} peers", f.peers.len()));
                if f.state == "failed" {
                    bar.abandon();
                    bail!(
                        "cannot fetch {what} (blob {}): {}",
                        blob.hash.short(),
                        f.error.clone().unwrap_or_else(|| "no reason given".into())
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(BLOB_POLL_MS));
        }
    }

    /// Copy a complete blob out of the node into `to`, checking its BLAKE3.
    pub fn blob_download(&self, blob: &BlobRef, to: &Path) -> anyhow::Result<()> {
        let resp = self
            .agent
            .get(&format!("{}/v1/blobs/{}/data", self.base, blob.hash.to_hex()))
            .config()
            .timeout_global(None)
            .build()
            .call()
            .map_err(|e| self.unreachable(e))?;
        if resp.status().as_u16() != 200 {
            let code = resp.status().as_u16();
            let body = resp.into_body().read_to_string().unwrap_or_default();
            bail!("the node cannot give blob {} ({code}): {body}", blob.hash.short());
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let tmp = to.with_extension("part");
        let mut out = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut body = resp.into_body();
        let mut reader = body.with_config().limit(blob.size).reader();
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = std::io::Read::read(&mut reader, &mut buf)
                .context("the blob download broke off")?;
            if k == 0 {
                break;
            }
            hasher.update(&buf[..k]);
            std::io::Write::write_all(&mut out, &buf[..k])
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            n += k as u64;
        }
        let got = protocol::Hash32::from_bytes(*hasher.finalize().as_bytes());
        if n != blob.size || got != blob.hash {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "the node gave {n} bytes hashing to {} for blob {} of {} bytes; refusing them",
                got.short(),
                blob.hash.short(),
                blob.size
            );
        }
        std::fs::rename(&tmp, to).with_context(|| format!("cannot write {}", to.display()))?;
        Ok(())
    }

    /// The node's blob overview (`GET /v1/blobs`).
    pub fn blobs(&self) -> anyhow::Result<serde_json::Value> {
        self.get_json("/v1/blobs")?.ok_or_else(|| anyhow!("the node has no /v1/blobs; update it"))
    }

    /// Remove blobs neither pinned nor named by a counting record.
    pub fn blob_gc(&self) -> anyhow::Result<serde_json::Value> {
        let token = self.token()?;
        let resp = self
            .agent
            .post(&format!("{}/v1/blobs/gc", self.base))
            .header("authorization", &format!("Bearer {token}"))
            .send_empty()
            .map_err(|e| self.unreachable(e))?;
        let code = resp.status().as_u16();
        let body = resp.into_body().read_to_string().unwrap_or_default();
        if code != 200 {
            bail!("the node refused to collect blobs ({code}): {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }
}

/// What `GET /v1/status` answers.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeStatus {
    pub peer_id: String,
    pub records: u64,
    pub state_hash: protocol::Hash32,
    #[serde(default)]
    pub listen: Vec<String>,
}

impl Control {
    /// The node's identity, size, state hash and listen addresses.
    pub fn status(&self) -> anyhow::Result<NodeStatus> {
        self.get_json("/v1/status")?
            .ok_or_else(|| anyhow!("the node has no /v1/status; upgrade it"))
    }

    /// The node's `/metrics` text (Prometheus' format).
    pub fn metrics(&self) -> anyhow::Result<String> {
        match self.get("/metrics")? {
            Some(r) => {
                Ok(r.into_body().with_config().limit(VIEW_RESPONSE_BYTES_MAX).read_to_string()?)
            }
            None => bail!("the node has no /metrics; update it"),
        }
    }

    /// The raw JSON of one benchmark's leaderboard, as the node serves it (for
    /// comparing nodes); empty before a release.
    pub fn leaderboard_json(&self, benchmark: &RecordId) -> anyhow::Result<String> {
        match self.get(&format!("/v1/benchmarks/{}/leaderboard", benchmark.to_hex()))? {
            Some(r) => Ok(r
                .into_body()
                .with_config()
                .limit(CONTROL_RESPONSE_BYTES_MAX)
                .read_to_string()?),
            None => Ok(String::new()),
        }
    }
}
