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
use protocol::{PublicKey, RecordId};

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

/// A benchmark named on the command line (its name or an id prefix), resolved
/// by the node's lookup index rather than from the whole state.
pub(crate) fn benchmark_id(s: &Session, input: &str) -> anyhow::Result<RecordId> {
    crate::views::resolve(s.api(), "benchmark", "benchmark", input)
}

/// A container named on the command line (its name or an id prefix).
pub(crate) fn container_id(s: &Session, input: &str) -> anyhow::Result<RecordId> {
    crate::views::resolve(s.api(), "container", "container", input)
}

/// A dataset named on the command line: the name this home prepared it under,
/// or the name of one of this user's own datasets (a dataset's name is sealed to
/// the committee and its owner unless the benchmark makes it public: its owner
/// opens it), else a public name or an id prefix, looked up on the node; last,
/// for a committee member, a name it opens among the datasets of its
/// benchmarks (of `benchmark` when the command names one).
pub(crate) fn dataset_id(s: &Session, input: &str) -> anyhow::Result<RecordId> {
    dataset_id_in(s, input, None)
}

/// [`dataset_id`] for a command that names the dataset's benchmark.
pub(crate) fn dataset_id_in(
    s: &Session,
    input: &str,
    benchmark: Option<&RecordId>,
) -> anyhow::Result<RecordId> {
    let input_name = input.trim();
    let mut named: Vec<RecordId> = crate::workflow::local_dataset_names(s)
        .into_iter()
        .filter(|(_, n)| n == input_name)
        .map(|(id, _)| id)
        .collect();
    if named.is_empty() {
        // This user's own datasets (an indexed query by owner), by the names it opens.
        named = opened_named(s, crate::views::datasets(s.api(), None, Some(&s.me()))?, input_name);
    }
    if let Some(one) = unique(named, input_name)? {
        return Ok(one);
    }
    let not_found = match crate::views::resolve(s.api(), "dataset", "dataset", input) {
        Ok(id) => return Ok(id),
        Err(e) => e,
    };
    // A committee member opens the names of its benchmarks' datasets.
    let me = s.me();
    let benchmarks: Vec<RecordId> = match benchmark {
        Some(b) => crate::views::benchmark(s.api(), b)?
            .benchmark
            .committee
            .contains(&me)
            .then_some(*b)
            .into_iter()
            .collect(),
        None => crate::views::committees(s.api(), &me)?.iter().map(|b| b.id).collect(),
    };
    let mut named = Vec::new();
    for b in &benchmarks {
        named.extend(opened_named(s, crate::views::datasets(s.api(), Some(b), None)?, input_name));
    }
    unique(named, input_name)?.ok_or(not_found)
}

/// The datasets of `list` whose details this user opens to the name `name`.
fn opened_named(s: &Session, list: Vec<protocol::fold::DatasetView>, name: &str) -> Vec<RecordId> {
    list.into_iter()
        .filter(|v| crate::workflow::dataset_details(s, v).is_some_and(|d| d.details.name == name))
        .map(|v| v.id)
        .collect()
}

/// The one dataset of `named`, none, or an error naming them all.
fn unique(mut named: Vec<RecordId>, name: &str) -> anyhow::Result<Option<RecordId>> {
    named.sort();
    named.dedup();
    match named.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(crate::ids::LookupError::AmbiguousName {
            what: "dataset",
            name: name.to_string(),
            matches: many.iter().map(|m| m.short()).collect(),
        }
        .into()),
    }
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
