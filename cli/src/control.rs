//! The node's local control API, from the CLI's side (blocking HTTP on loopback).
//! Writes carry the token the node keeps in its data directory.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use protocol::{PublicKey, RecordId, State};
use serde::Deserialize;

use crate::publish::NodeApi;

/// The file a running node writes its control address into (in its data dir).
pub const CONTROL_FILE: &str = "control.addr";
/// The file holding the control token (in the node's data dir).
pub const TOKEN_FILE: &str = "control.token";

/// Timeout on one control API call.
pub const CONTROL_TIMEOUT_MS: u64 = 30_000;
/// Largest response body read from the node (a full state of a large network).
pub const CONTROL_RESPONSE_BYTES_MAX: u64 = 512 * 1024 * 1024;

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

    fn state(&self) -> anyhow::Result<State> {
        self.get_json("/v1/state/all")?
            .ok_or_else(|| anyhow!("the node has no /v1/state/all; upgrade it"))
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

    /// The raw JSON of a leaderboard view, as the node serves it (for comparing nodes).
    pub fn leaderboards_json(&self) -> anyhow::Result<String> {
        match self.get("/v1/state/leaderboards")? {
            Some(r) => Ok(r
                .into_body()
                .with_config()
                .limit(CONTROL_RESPONSE_BYTES_MAX)
                .read_to_string()?),
            None => Ok(String::new()),
        }
    }
}
