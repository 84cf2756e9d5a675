//! The `medmesh` command line: the top-level parser and the dispatch. Each command
//! group lives in its own module under [`crate::cmd`], where its flags are parsed
//! and validated into typed values before it calls one [`crate::workflow`] function.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::cmd::{Ctx, parse_auto, parse_key};
use crate::cmd::{
    admin, association, benchmark, blob, container, dataset, demo, keys, leaderboard, model,
    network, profile, result, test, ui,
};
use crate::home::Home;
use crate::output::json;
use crate::publish::{Confirm, IgnoredByFold};

/// MedMesh: federated benchmarking of medical AI, peer to peer.
#[derive(Debug, Parser)]
#[command(name = "medmesh", version, about, propagate_version = true)]
pub struct Cli {
    /// Your MedMesh home (keys, network root, profile); default ~/.medmesh.
    #[arg(long, env = "MEDMESH_HOME", global = true)]
    pub home: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Publish without asking for confirmation.
    #[arg(short = 'y', long = "yes", global = true)]
    pub yes: bool,
    /// GPUs for container tasks, as MedPerf takes them: all, a count, or device=0,1
    /// (overrides `gpus` in the site policy, site.yaml in the home).
    #[arg(long, global = true, value_parser = parse_gpus)]
    pub gpus: Option<runner::site::Gpus>,
    /// Shared memory (/dev/shm) for container tasks, such as 2g (overrides
    /// `shm_size` in the site policy).
    #[arg(long = "shm-size", global = true, value_parser = runner::site::parse_size)]
    pub shm_size: Option<u64>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Your signing and encryption keys.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    /// Create or join a network.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Where your node is, and your public profile.
    #[command(subcommand)]
    Profile(profile::ProfileCmd),
    /// Containers: data preparators, models, metrics.
    #[command(subcommand)]
    Container(container::ContainerCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Benchmark(benchmark::BenchmarkCmd),
    /// Your node's blob store: image archives, additional files, demo datasets.
    #[command(subcommand)]
    Blob(blob::BlobCmd),
    /// Datasets (only metadata ever leaves your site).
    #[command(subcommand)]
    Dataset(dataset::DatasetCmd),
    /// Models' participation in benchmarks.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Association requests and the committee's decisions.
    #[command(subcommand)]
    Association(association::AssociationCmd),
    /// Results of benchmark executions.
    #[command(subcommand)]
    Result(result::ResultCmd),
    /// The compatibility test.
    #[command(subcommand)]
    Test(test::TestCmd),
    /// A benchmark's leaderboard, from the committee's releases.
    Leaderboard {
        /// The benchmark (any unique id prefix).
        #[arg(short, long)]
        benchmark: String,
    },
    /// Run the whole MedPerf workflow on a local federation of real nodes.
    Demo {
        /// Folder for the participants' homes and nodes (replaced if it exists).
        #[arg(long, default_value = "medmesh-demo")]
        dir: PathBuf,
        /// Leave the nodes running when done.
        #[arg(long)]
        keep_running: bool,
    },
    /// The web application for every role, on loopback (prints a one-time sign-in link).
    Ui(ui::UiArgs),
    /// What the network's admins decide together (key revocations).
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn parse_gpus(s: &str) -> Result<runner::site::Gpus, String> {
    runner::site::Gpus::parse(s).map_err(|e| e.to_string())
}

/// Run one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        home: Home::resolve(cli.home)?,
        json: cli.json,
        confirm: if cli.yes { Confirm::Yes } else { Confirm::Ask },
        site: runner::site::Overrides { gpus: cli.gpus, shm_bytes: cli.shm_size },
    };
    let out = dispatch(&ctx, cli.command);
    // `--json` carries the fold's verdict on a record it ignores, on stdout as
    // every other answer; the error still goes to stderr and the exit code.
    if ctx.json
        && let Err(e) = &out
        && let Some(ig) = e.downcast_ref::<IgnoredByFold>()
    {
        json(&serde_json::json!({
            "id": ig.id,
            "status": "ignored",
            "verdict": { "ignored": true, "reason": ig.reason },
        }))?;
    }
    out
}

fn dispatch(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keys(k) => keys::run(ctx, k),
        Command::Network(n) => network::run(ctx, n),
        Command::Profile(p) => profile::run(ctx, p),
        Command::Container(c) => container::run(ctx, c),
        Command::Benchmark(b) => benchmark::run(ctx, b),
        Command::Blob(b) => blob::run(ctx, b),
        Command::Dataset(d) => dataset::run(ctx, d),
        Command::Model(m) => model::run(ctx, m),
        Command::Association(a) => association::run(ctx, a),
        Command::Result(r) => result::run(ctx, r),
        Command::Test(t) => test::run(ctx, t),
        Command::Leaderboard { benchmark } => leaderboard::run(ctx, &benchmark),
        Command::Demo { dir, keep_running } => demo::run(ctx, dir, keep_running),
        Command::Admin(a) => admin::run(ctx, a),
        Command::Ui(a) => ui::run(ctx, a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "medmesh", &mut std::io::stdout());
            Ok(())
        }
    }
}
