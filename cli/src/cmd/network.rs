//! `medmesh network`: create a network root (admin), join one, show it.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use protocol::{Hash32, NetworkRoot};

use super::{Ctx, parse_key};
use crate::home::read_root;
use crate::output::json;

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network root naming the admin keys (admin).
    Create {
        /// A human name for the network.
        #[arg(long)]
        name: String,
        /// An admin's public signing key (hex); repeat for several. Default: yours.
        #[arg(long = "admin")]
        admins: Vec<String>,
        /// Distinct admins needed for a decision.
        #[arg(long, default_value_t = 1)]
        threshold: u16,
        /// Also write the root file here, to hand to participants.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Join a network from its root file (the bootstrap peers are remembered in the
    /// home, for `medmesh node start`).
    Join {
        /// The network root file the admin gave you.
        #[arg(long)]
        root: PathBuf,
        /// A bootstrap peer's multiaddress; repeat for several.
        #[arg(long = "bootstrap")]
        bootstrap: Vec<String>,
    },
    /// Show the network this home belongs to.
    Show,
}

pub fn run(ctx: &Ctx, n: NetworkCmd) -> anyhow::Result<()> {
    let root = match n {
        NetworkCmd::Create { name, admins, threshold, out } => {
            let admins = if admins.is_empty() {
                vec![ctx.home.keys()?.public()]
            } else {
                admins.iter().map(|a| parse_key(a)).collect::<anyhow::Result<_>>()?
            };
            let mut nonce = [0u8; 32];
            getrandom::fill(&mut nonce).map_err(|e| anyhow!("no randomness: {e}"))?;
            let root = NetworkRoot::new(name, admins, threshold, Hash32::from_bytes(nonce))?;
            ctx.home.install_root(&root)?;
            if let Some(out) = out {
                std::fs::write(&out, root.to_bytes())
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            root
        }
        NetworkCmd::Join { root, bootstrap } => {
            for b in &bootstrap {
                b.parse::<node::Multiaddr>().map_err(|e| {
                    anyhow!("--bootstrap `{b}` is not a multiaddress ({e}); give one like /ip4/1.2.3.4/tcp/4002/p2p/<peer id>")
                })?;
            }
            let root = read_root(&root)?;
            ctx.home.install_root(&root)?;
            let mut p = ctx.home.profile()?;
            for b in bootstrap {
                if !p.bootstrap.contains(&b) {
                    p.bootstrap.push(b);
                }
            }
            ctx.home.save_profile(&p)?;
            root
        }
        NetworkCmd::Show => ctx.home.root()?,
    };
    let v = serde_json::json!({
        "network_id": root.network_id(), "name": root.name, "admins": root.admins,
        "threshold": root.threshold, "root_file": ctx.home.root_path(),
    });
    if ctx.json {
        return json(&v);
    }
    crate::say!(
        "network {} ({})\nadmins: {} of {}\nroot file: {}",
        root.name,
        root.network_id(),
        root.threshold,
        root.admins.len(),
        ctx.home.root_path().display()
    )?;
    Ok(())
}
