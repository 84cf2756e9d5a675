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
    /// Records a running node refused lately (from peers, sync or this machine), and why.
    Refusals(RefusalsArgs),
}

#[derive(Debug, Args)]
pub struct RefusalsArgs {
    /// Data directory of the running node.
    #[arg(long, env = "MEDMESH_NODE_DIR")]
    pub data_dir: PathBuf,
    /// Print the node's whole answer as JSON.
    #[arg(long)]
    pub json: bool,
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
    /// A bootstrap peer, ending in /p2p/<peer id> (repeatable). Default: the ones
    /// `medmesh network join --bootstrap` remembered in the home.
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
    /// A host name clients use to reach a public control API (repeatable, e.g.
    /// node1.hospital.example); requests naming any other host are refused, so
    /// web pages cannot reach the API by DNS rebinding. IP literals and
    /// localhost are always accepted. Needs --control-public.
    #[arg(long = "control-host", value_name = "NAME")]
    pub control_hosts: Vec<String>,
    /// Bytes of records this node stores at most; past it, records are refused
    /// (`store_quota`).
    #[arg(long, value_name = "BYTES", default_value_t = node::admission::Quotas::default().store_bytes_max)]
    pub store_quota: u64,
    /// Records one key (not an admin) may have stored here (`key_quota`).
    #[arg(long, value_name = "N", default_value_t = node::admission::Quotas::default().key_records_max)]
    pub key_quota_records: u64,
    /// Bytes of records one key (not an admin) may have stored here (`key_quota`).
    #[arg(long, value_name = "BYTES", default_value_t = node::admission::Quotas::default().key_bytes_max)]
    pub key_quota_bytes: u64,
    /// Disk space for blobs (image archives, additional files, demo datasets)
    /// held and being fetched, such as 100GiB.
    #[arg(long, value_parser = runner::site::parse_size, default_value = "100GiB")]
    pub blob_quota: u64,
}

/// Run `medmesh node ...`; `home` is the global `--home`, if given.
pub fn run(cmd: NodeCmd, home: Option<PathBuf>) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Start(a) => start(a, home),
        NodeCmd::Refusals(a) => refusals(a),
    }
}

fn refusals(a: RefusalsArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let control = medmesh_cli::control::Control::for_node_dir(&a.data_dir)?;
    let v: serde_json::Value =
        control.get_json("/v1/refusals")?.context("this node has no refusal log; update it")?;
    if a.json {
        return medmesh_cli::output::json(&v);
    }
    let text = |x: &serde_json::Value| x.as_str().map(str::to_string).unwrap_or_else(|| "-".into());
    // Record ids by their first 12 hex digits, as everywhere else; peer ids by their
    // last 8 characters (they all start alike).
    let id = |x: &serde_json::Value| {
        x.as_str().map(|s| s.chars().take(12).collect()).unwrap_or_else(|| "-".into())
    };
    let peer = |x: &serde_json::Value| {
        x.as_str()
            .map(|s| {
                format!(
                    "…{}",
                    s.chars()
                        .rev()
                        .take(8)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<String>()
                )
            })
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = v["refused"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                text(&r["source"]),
                text(&r["reason"]),
                id(&r["id"]),
                peer(&r["peer"]),
                text(&r["message"]),
            ]
        })
        .collect();
    medmesh_cli::output::table(&["from", "reason", "record", "peer", "message"], rows)?;
    let counts: Vec<String> =
        v["counts"].as_object().into_iter().flatten().map(|(k, n)| format!("{k} {n}")).collect();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "refused since start: {} ({})",
        v["refused_total"],
        if counts.is_empty() { "none".into() } else { counts.join(", ") }
    )?;
    writeln!(
        out,
        "held back (rate limit or load; they arrive later by sync): {}",
        v["held_total"]
    )?;
    match v["fold"]["ignored"].as_u64() {
        Some(n) => writeln!(out, "valid records without effect (see /v1/state/ignored): {n}")?,
        None => writeln!(
            out,
            "valid records without effect: unknown (the node could not derive its state)"
        )?,
    }
    Ok(())
}

/// The bootstrap peers `network join --bootstrap` remembered in the home.
fn remembered_bootstrap(home: Option<PathBuf>) -> anyhow::Result<Vec<Multiaddr>> {
    let Ok(home) = medmesh_cli::home::Home::resolve(home) else { return Ok(Vec::new()) };
    let path = home.profile_path();
    let mut out = Vec::new();
    for b in home.profile()?.bootstrap {
        out.push(b.parse::<Multiaddr>().with_context(|| {
            format!(
                "the bootstrap peer `{b}` in {} is not a multiaddress; fix or remove it",
                path.display()
            )
        })?);
    }
    if !out.is_empty() {
        tracing::info!(peers = out.len(), profile = %path.display(), "bootstrap peers remembered by `network join`");
    }
    Ok(out)
}

fn start(a: StartArgs, home: Option<PathBuf>) -> anyhow::Result<()> {
    node::logging::init();
    let root = a.root.as_deref().map(node::load_root_file).transpose()?;
    let bootstrap = if a.bootstrap.is_empty() { remembered_bootstrap(home)? } else { a.bootstrap };
    let mut config = NodeConfig::new(&a.data_dir);
    config.root = root;
    config.listen = a.listen;
    config.bootstrap = bootstrap;
    config.control = Some(a.control);
    config.control_public = a.control_public;
    config.control_hosts = a.control_hosts;
    config.quotas = node::admission::Quotas {
        key_records_max: a.key_quota_records,
        key_bytes_max: a.key_quota_bytes,
        store_bytes_max: a.store_quota,
    };
    config.blob_quota = a.blob_quota;
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
