//! One module per command group (`medmesh keys ...` is [`keys`], and so on), each
//! with its clap subcommands and the function that runs them; what they share
//! (the context, record output, key and approval-mode parsing) is here.

pub mod admin;
pub mod association;
pub mod benchmark;
pub mod blob;
pub mod container;
pub mod dataset;
pub mod demo;
pub mod keys;
pub mod leaderboard;
pub mod model;
pub mod network;
pub mod profile;
pub mod result;
pub mod test;
pub mod ui;

use anyhow::{anyhow, bail};
use protocol::record::AutoApproval;
use protocol::{PublicKey, RecordId, State};

use crate::home::Home;
use crate::output::json;
use crate::publish::Confirm;
use crate::workflow::Session;

/// Parse an auto-approval mode.
pub fn parse_auto(s: &str) -> anyhow::Result<AutoApproval> {
    match s {
        "never" => Ok(AutoApproval::Never),
        "always" => Ok(AutoApproval::Always),
        other => match other.strip_prefix("allowlist:") {
            Some(keys) => Ok(AutoApproval::Allowlist(
                keys.split(',').map(parse_key).collect::<anyhow::Result<_>>()?,
            )),
            None => {
                bail!("`{other}` is not an approval mode: use never, always or allowlist:KEY,KEY")
            }
        },
    }
}

/// Parse a public key given in hex.
pub fn parse_key(s: &str) -> anyhow::Result<PublicKey> {
    s.trim().parse::<PublicKey>().map_err(|e| anyhow!("`{s}` is not a public key: {e}"))
}

/// What every command needs, built lazily.
pub struct Ctx {
    pub home: Home,
    pub json: bool,
    pub confirm: Confirm,
    /// `--gpus` and `--shm-size`, over the site policy.
    pub site: runner::site::Overrides,
}

impl Ctx {
    pub fn session(&self) -> anyhow::Result<Session> {
        let node_dir = self.home.node_dir()?;
        Ok(Session {
            keys: self.home.keys()?,
            network: self.home.network_id()?,
            api: Box::new(crate::control::Control::for_node_dir(&node_dir)?),
            home: self.home.clone(),
            confirm: self.confirm,
            site: self.site.clone(),
        })
    }
}

/// Containers as a command line may name them: by id prefix or by name.
pub(crate) fn containers(state: &State) -> impl Iterator<Item = (RecordId, &str)> + '_ {
    state.containers.iter().map(|(id, c)| (*id, c.container.name.as_str()))
}

/// Benchmarks by id prefix or by name.
pub(crate) fn benchmarks(state: &State) -> impl Iterator<Item = (RecordId, &str)> + '_ {
    state.benchmarks.iter().map(|(id, b)| (*id, b.benchmark.name.as_str()))
}

/// A benchmark named on the command line (id prefix or name), resolved through
/// the node's paged benchmark list rather than the whole state.
pub(crate) fn benchmark_id(s: &Session, input: &str) -> anyhow::Result<RecordId> {
    let list = crate::views::benchmarks(s.api.as_ref())?;
    Ok(crate::ids::resolve(
        input,
        list.iter().map(|b| (b.id, b.benchmark.name.as_str())),
        "benchmark",
    )?)
}

/// Datasets by id prefix, or by the names this user can read (a dataset's name is
/// sealed to the committee and its owner unless the benchmark makes it public).
pub(crate) fn datasets(s: &crate::workflow::Session, state: &State) -> Vec<(RecordId, String)> {
    let mut named = crate::workflow::dataset_names(s, state);
    let known: std::collections::BTreeSet<RecordId> = named.iter().map(|n| n.0).collect();
    // The rest by id alone: an empty name matches no input.
    named.extend(
        state.datasets.keys().filter(|id| !known.contains(id)).map(|id| (*id, String::new())),
    );
    named
}

pub(crate) fn report(
    ctx: &Ctx,
    what: &str,
    id: &RecordId,
    extra: &serde_json::Value,
) -> anyhow::Result<()> {
    if ctx.json {
        let mut v = serde_json::json!({ "id": id, "status": what });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        return json(&v);
    }
    crate::say!("{what}: {}", id.short())?;
    Ok(())
}
