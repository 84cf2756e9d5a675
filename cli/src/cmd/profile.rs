//! `medmesh profile`: where your node is, and your published participant profile.

use std::path::PathBuf;

use clap::Subcommand;

use super::{Ctx, report};
use crate::home::Profile;
use crate::output::json;
use crate::workflow;

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// Show the profile: node data directory, bootstrap peers, network.
    Show,
    /// Change where your node's data directory is.
    Set {
        #[arg(long)]
        node_dir: Option<PathBuf>,
        #[arg(long = "bootstrap")]
        bootstrap: Vec<String>,
    },
    /// Publish your participant profile (name, organisation, encryption key).
    Publish {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        organisation: String,
    },
}

pub fn run(ctx: &Ctx, p: ProfileCmd) -> anyhow::Result<()> {
    match p {
        ProfileCmd::Show => {
            let prof = ctx.home.profile()?;
            let v = serde_json::json!({ "home": ctx.home.dir, "node_dir": ctx.home.node_dir()?, "bootstrap": prof.bootstrap,
                "network_id": ctx.home.network_id().ok() });
            json(&v)
        }
        ProfileCmd::Set { node_dir, bootstrap } => {
            let mut prof: Profile = ctx.home.profile()?;
            if node_dir.is_some() {
                prof.node_dir = node_dir;
            }
            if !bootstrap.is_empty() {
                prof.bootstrap = bootstrap;
            }
            ctx.home.save_profile(&prof)?;
            json(&prof)
        }
        ProfileCmd::Publish { name, organisation } => {
            let s = ctx.session()?;
            let r = workflow::submit_profile(&s, &name, &organisation)?;
            report(ctx, "profile published", &r.id, &serde_json::Value::Null)
        }
    }
}
