//! `medmesh-bootstrap`: a well-known peer for discovery and catch-up. It holds no
//! user key and has no authority: it serves Kademlia, identify and sync as a full
//! replica, and relays gossip like any node. Nodes that already know each other
//! keep working without it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use node::{Multiaddr, Node, NodeConfig};

/// A MedMesh bootstrap peer.
#[derive(Debug, Parser)]
#[command(name = "medmesh-bootstrap", version, about)]
struct Args {
    /// Data directory (store, peer key); created if missing.
    #[arg(long, env = "MEDMESH_BOOTSTRAP_DIR")]
    data_dir: PathBuf,
    /// The network root file; required on first start, checked on later ones.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Address to listen on (repeatable): the well-known address peers are given.
    #[arg(long = "listen", default_values = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"])]
    listen: Vec<Multiaddr>,
    /// Other bootstrap peers, each ending in /p2p/<peer id> (repeatable).
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Serve the control API on this address (loopback unless --control-public).
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Allow a non-loopback --control address (e.g. 0.0.0.0:8080 in a container).
    /// Writes still need the token in control.token.
    #[arg(long)]
    control_public: bool,
    /// A host name clients use to reach a public control API (repeatable);
    /// requests naming any other host are refused (DNS rebinding). IP literals
    /// and localhost are always accepted. Needs --control-public.
    #[arg(long = "control-host", value_name = "NAME")]
    control_hosts: Vec<String>,
}

fn main() -> ExitCode {
    node::logging::init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let root = args.root.as_deref().map(node::load_root_file).transpose()?;
    let mut config = NodeConfig::new(&args.data_dir);
    config.root = root;
    config.listen = args.listen;
    config.bootstrap = args.bootstrap;
    config.control = args.control;
    config.control_public = args.control_public;
    config.control_hosts = args.control_hosts;
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async {
        let node = Node::start(config).await?;
        println!(
            "medmesh-bootstrap {} serving network {}",
            node.peer_id(),
            node.client().network_id()
        );
        for a in node.addresses() {
            println!("listening on {a}");
        }
        if let Some(c) = node.control_addr() {
            println!("control API on http://{c}");
        }
        node.run_until_signal().await;
        Ok(())
    })
}
