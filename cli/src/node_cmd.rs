//! `medmesh node start`: run this participant's node in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use node::{Multiaddr, Node, NodeConfig};

/// `medmesh node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Run a node in the foreground (Ctrl-C stops it): store, gossip, sync, control API.
    Start(StartArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Data directory (store, peer key, control token and address); created if missing.
    #[arg(long, env = "MEDMESH_NODE_DIR")]
    pub data_dir: PathBuf,
    /// The network root file; required on first start, checked on later ones.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Address to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4002.
    #[arg(long = "listen", default_values = ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"])]
    pub listen: Vec<Multiaddr>,
    /// A bootstrap peer, ending in /p2p/<peer id> (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Address of the control API, loopback unless --control-public (port 0 picks one; it is written to
    /// control.addr in the data directory).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub control: SocketAddr,
    /// Allow a non-loopback --control address (e.g. 0.0.0.0:8080 in a container).
    /// Writes still need the token in control.token; reads are open to whoever
    /// can reach the address.
    #[arg(long)]
    pub control_public: bool,
}

/// Run `medmesh node ...`.
pub fn run(cmd: NodeCmd) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Start(a) => start(a),
    }
}

fn start(a: StartArgs) -> anyhow::Result<()> {
    node::logging::init();
    let root = a.root.as_deref().map(node::load_root_file).transpose()?;
    let mut config = NodeConfig::new(&a.data_dir);
    config.root = root;
    config.listen = a.listen;
    config.bootstrap = a.bootstrap;
    config.control = Some(a.control);
    config.control_public = a.control_public;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let node = Node::start(config).await?;
        println!("medmesh node {} serving network {}", node.peer_id(), node.client().network_id());
        for addr in node.addresses() {
            println!("listening on {addr}");
        }
        if let Some(c) = node.control_addr() {
            println!("control API on http://{c}");
        }
        node.run_until_signal().await;
        Ok(())
    })
}
