//! The `medmesh` command line: flags are parsed and validated into typed values
//! here, then each command calls one [`crate::workflow`] function.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use protocol::record::{AutoApproval, Decision, SharingPolicy, Subject};
use protocol::{Hash32, NetworkRoot, PublicKey, RecordId, State};

use crate::home::{Home, Profile, read_root};
use crate::ids::resolve;
use crate::output::{json, millionths, spinner, table};
use crate::publish::Confirm;
use crate::workflow::{self, BenchmarkArgs, ContainerArgs, Session};

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Your signing and encryption keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Create or join a network.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Where your node is, and your public profile.
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Containers: data preparators, models, metrics.
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Benchmark(BenchmarkCmd),
    /// Datasets (only metadata ever leaves your site).
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Models' participation in benchmarks.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Association requests and the committee's decisions.
    #[command(subcommand)]
    Association(AssociationCmd),
    /// Results of benchmark executions.
    #[command(subcommand)]
    Result(ResultCmd),
    /// The compatibility test.
    #[command(subcommand)]
    Test(TestCmd),
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
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Generate a signing key and an encryption key (owner-only files).
    Generate,
    /// Show your public keys.
    Show,
    /// Print your public keys as JSON, to give to an admin or a benchmark owner.
    Export,
}

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
    /// Join a network from its root file.
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

#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// Register a container (its image must be in the local Docker engine).
    Submit {
        #[arg(long)]
        name: String,
        /// MedPerf container config or mlcube.yaml.
        #[arg(long)]
        manifest: PathBuf,
        /// Image reference in the local engine.
        #[arg(long)]
        image: String,
        /// The image digest, if you do not want it read from the engine.
        #[arg(long)]
        digest: Option<String>,
        #[arg(long)]
        parameters: Option<PathBuf>,
        /// A folder of additional files (a model's weights).
        #[arg(long)]
        additional_files: Option<PathBuf>,
    },
    /// List containers.
    Ls,
    /// Show one container.
    View { id: String },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PolicyArg {
    /// The model x dataset table.
    PerDataset,
    /// One figure per model over all datasets.
    Aggregate,
}

#[derive(Debug, Subcommand)]
pub enum BenchmarkCmd {
    /// Submit a benchmark (runs the compatibility test first).
    Submit {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "")]
        docs_url: String,
        /// Demo dataset: a folder with paths.yaml, or a tarball of one.
        #[arg(long)]
        demo_dataset: PathBuf,
        #[arg(long)]
        data_preparator: String,
        #[arg(long)]
        reference_model: String,
        #[arg(long)]
        metrics: String,
        /// A committee member's public key (hex); repeat for each member.
        #[arg(long = "committee", required = true)]
        committee: Vec<String>,
        /// Members needed to approve an association or a release.
        #[arg(long)]
        threshold: u16,
        /// never, always, or allowlist:KEY,KEY
        #[arg(long, default_value = "never")]
        dataset_approval: String,
        /// never, always, or allowlist:KEY,KEY
        #[arg(long, default_value = "never")]
        model_approval: String,
        #[arg(long, value_enum, default_value = "per-dataset")]
        policy: PolicyArg,
        /// With --policy aggregate: datasets a figure must cover.
        #[arg(long, default_value_t = 2)]
        min_datasets: u16,
        #[arg(long, default_value = "auc")]
        rank_metric: String,
        #[arg(long)]
        lower_is_better: bool,
        /// Skip the compatibility test (not recommended).
        #[arg(long)]
        skip_test: bool,
    },
    /// List benchmarks.
    Ls,
    /// Show one benchmark.
    View { id: String },
    /// Approve a benchmark (admin).
    Approve { id: String },
    /// Reject a benchmark (admin).
    Reject { id: String },
    /// Run every approved model on one of your datasets and submit the results.
    Run {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        data: String,
        /// Keep going when a model fails.
        #[arg(long)]
        ignore_model_errors: bool,
        /// Run again even if finished.
        #[arg(long)]
        force: bool,
        /// Do not submit the results.
        #[arg(long)]
        no_submit: bool,
    },
    /// Publish the results the committee's sharing policy allows (committee).
    Release {
        #[arg(short, long)]
        benchmark: String,
        /// Keep watching and release again whenever new results arrive (Ctrl-C stops).
        #[arg(long)]
        auto_release: bool,
        /// How often to look for new results with --auto-release, in milliseconds.
        #[arg(long, default_value_t = 5_000)]
        interval_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DatasetCmd {
    /// Prepare raw data with a benchmark's data preparator (stays on this machine).
    Prepare {
        #[arg(short, long)]
        benchmark: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        data_path: PathBuf,
        #[arg(long)]
        labels_path: PathBuf,
    },
    /// Register a prepared dataset's metadata.
    Submit {
        #[arg(short, long)]
        benchmark: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "on site")]
        location: String,
        /// Let releases show this dataset's name (default: a pseudonym).
        #[arg(long)]
        public_name: bool,
    },
    /// Mark a dataset operational (its hash is recomputed).
    #[command(name = "set_operational", alias = "set-operational")]
    SetOperational { id: String },
    /// Request association with a benchmark (runs the compatibility test).
    Associate {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        data: String,
    },
    /// Re-hash a prepared dataset and compare with its registration.
    Check { id: String },
    /// Export a prepared dataset to a tarball (to move it between machines).
    Export {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a prepared dataset tarball under a local name.
    Import {
        tarball: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// List datasets.
    Ls,
    /// Show one dataset.
    View { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Request association of your model with a benchmark (runs the compatibility test).
    Associate {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        model: String,
    },
}

#[derive(Debug, Args)]
pub struct AssocTarget {
    #[arg(short, long)]
    benchmark: String,
    #[arg(short, long, conflicts_with = "model", required_unless_present = "model")]
    data: Option<String>,
    #[arg(short, long)]
    model: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AssociationCmd {
    /// List associations.
    Ls {
        #[arg(short, long)]
        benchmark: Option<String>,
    },
    /// Approve an association (committee).
    Approve {
        #[command(flatten)]
        target: AssocTarget,
        /// Model priority (higher runs first).
        #[arg(long)]
        priority: Option<i32>,
    },
    /// Reject an association (committee).
    Reject {
        #[command(flatten)]
        target: AssocTarget,
    },
    /// Set a model's priority (committee; re-approves with the priority).
    #[command(name = "set_priority", alias = "set-priority")]
    SetPriority {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        model: String,
        #[arg(long)]
        priority: i32,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResultCmd {
    /// Submit the finished results of `benchmark run` for one dataset.
    Submit {
        #[arg(short, long)]
        benchmark: String,
        #[arg(short, long)]
        data: String,
    },
    /// List results.
    Ls {
        #[arg(short, long)]
        benchmark: Option<String>,
    },
    /// Show one result (its metrics if you may read them).
    View { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TestCmd {
    /// Run the compatibility test: preparator -> model -> metrics on the demo dataset.
    Run {
        #[arg(short, long)]
        benchmark: String,
        /// The model to test (default: the benchmark's reference model).
        #[arg(short, long)]
        model: Option<String>,
    },
}

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
        })
    }
}

fn containers(state: &State) -> impl Iterator<Item = RecordId> + '_ {
    state.containers.keys().copied()
}

/// Run one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx {
        home: Home::resolve(cli.home)?,
        json: cli.json,
        confirm: if cli.yes { Confirm::Yes } else { Confirm::Ask },
    };
    match cli.command {
        Command::Keys(k) => keys(&ctx, k),
        Command::Network(n) => network(&ctx, n),
        Command::Profile(p) => profile(&ctx, p),
        Command::Container(c) => container(&ctx, c),
        Command::Benchmark(b) => benchmark(&ctx, b),
        Command::Dataset(d) => dataset(&ctx, d),
        Command::Model(ModelCmd::Associate { benchmark, model }) => {
            let s = ctx.session()?;
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            let m = resolve(&model, containers(&st), "container")?;
            let pb = spinner("running the compatibility test on the demo dataset");
            let out = workflow::associate(&s, &b, Subject::Model(m));
            pb.finish_and_clear();
            let (r, outcome) = out?;
            report(
                &ctx,
                "association requested",
                &r.id,
                &serde_json::json!({ "compatibility_results": outcome.results }),
            )
        }
        Command::Association(a) => association(&ctx, a),
        Command::Result(r) => result(&ctx, r),
        Command::Test(TestCmd::Run { benchmark, model }) => {
            let s = ctx.session()?;
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            let bench = st.benchmarks[&b].benchmark.clone();
            let m = match model {
                Some(m) => resolve(&m, containers(&st), "container")?,
                None => bench.reference_model,
            };
            let pb = spinner("preparator -> model -> metrics on the demo dataset");
            let outcome = workflow::compatibility_test(&s, &st, &bench, &m, None);
            pb.finish_and_clear();
            let outcome = outcome?;
            if ctx.json {
                return json(
                    &serde_json::json!({ "passed": true, "results": outcome.results, "results_hash": outcome.results_hash }),
                );
            }
            println!("compatibility test passed");
            table(
                &["metric", "value"],
                outcome.results.iter().map(|(k, v)| vec![k.clone(), format!("{v:.4}")]).collect(),
            )
        }
        Command::Leaderboard { benchmark } => {
            let s = ctx.session()?;
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            leaderboard(&ctx, &st, &b)
        }
        Command::Demo { dir, keep_running } => demo(&ctx, dir, keep_running),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "medmesh", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn report(ctx: &Ctx, what: &str, id: &RecordId, extra: &serde_json::Value) -> anyhow::Result<()> {
    if ctx.json {
        let mut v = serde_json::json!({ "id": id, "status": what });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        return json(&v);
    }
    println!("{what}: {}", id.short());
    Ok(())
}

fn keys(ctx: &Ctx, k: KeysCmd) -> anyhow::Result<()> {
    let dir = ctx.home.keys_dir();
    let keys = match k {
        KeysCmd::Generate => crate::keys::generate(&dir)?,
        KeysCmd::Show | KeysCmd::Export => crate::keys::load(&dir)?,
    };
    let v = serde_json::json!({ "signing_key": keys.public(), "encryption_key": keys.x25519(), "keys_dir": dir });
    if ctx.json || matches!(k, KeysCmd::Export) {
        return json(&v);
    }
    println!(
        "signing key:    {}\nencryption key: {}\nkept in:        {}",
        keys.public(),
        keys.x25519(),
        dir.display()
    );
    Ok(())
}

fn network(ctx: &Ctx, n: NetworkCmd) -> anyhow::Result<()> {
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
            let root = read_root(&root)?;
            ctx.home.install_root(&root)?;
            let mut p = ctx.home.profile()?;
            p.bootstrap.extend(bootstrap);
            p.bootstrap.dedup();
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
    println!(
        "network {} ({})\nadmins: {} of {}\nroot file: {}",
        root.name,
        root.network_id(),
        root.threshold,
        root.admins.len(),
        ctx.home.root_path().display()
    );
    Ok(())
}

fn profile(ctx: &Ctx, p: ProfileCmd) -> anyhow::Result<()> {
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

fn container(ctx: &Ctx, c: ContainerCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    match c {
        ContainerCmd::Submit { name, manifest, image, digest, parameters, additional_files } => {
            let r = workflow::submit_container(
                &s,
                &ContainerArgs { name, manifest, image, digest, parameters, additional_files },
            )?;
            report(ctx, "container submitted", &r.id, &serde_json::Value::Null)
        }
        ContainerCmd::Ls => {
            let st = s.state()?;
            if ctx.json {
                return json(&st.containers.values().collect::<Vec<_>>());
            }
            table(
                &["id", "name", "image", "tasks", "owner"],
                st.containers
                    .values()
                    .map(|c| {
                        vec![
                            c.id.short(),
                            c.container.name.clone(),
                            c.container.image.reference.clone(),
                            c.container
                                .manifest
                                .tasks
                                .iter()
                                .map(|t| t.name.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                            c.owner.short(),
                        ]
                    })
                    .collect(),
            )
        }
        ContainerCmd::View { id } => {
            let st = s.state()?;
            let id = resolve(&id, containers(&st), "container")?;
            json(&st.containers[&id])
        }
    }
}

fn benchmark(ctx: &Ctx, b: BenchmarkCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    match b {
        BenchmarkCmd::Submit {
            name,
            description,
            docs_url,
            demo_dataset,
            data_preparator,
            reference_model,
            metrics,
            committee,
            threshold,
            dataset_approval,
            model_approval,
            policy,
            min_datasets,
            rank_metric,
            lower_is_better,
            skip_test,
        } => {
            let st = s.state()?;
            let args = BenchmarkArgs {
                name,
                description,
                docs_url,
                demo_dataset,
                data_preparator: resolve(&data_preparator, containers(&st), "container")?,
                reference_model: resolve(&reference_model, containers(&st), "container")?,
                metrics: resolve(&metrics, containers(&st), "container")?,
                committee: committee.iter().map(|k| parse_key(k)).collect::<anyhow::Result<_>>()?,
                threshold,
                dataset_auto_approval: parse_auto(&dataset_approval)?,
                model_auto_approval: parse_auto(&model_approval)?,
                sharing: match policy {
                    PolicyArg::PerDataset => SharingPolicy::PerDataset,
                    PolicyArg::Aggregate => SharingPolicy::Aggregate { min_datasets },
                },
                rank_metric,
                higher_is_better: !lower_is_better,
                skip_test,
            };
            let pb = spinner("running the compatibility test with the reference model");
            let r = workflow::submit_benchmark(&s, &args);
            pb.finish_and_clear();
            let r = r?;
            report(
                ctx,
                "benchmark submitted; waiting for the admin's approval",
                &r.id,
                &serde_json::Value::Null,
            )
        }
        BenchmarkCmd::Ls => {
            let st = s.state()?;
            if ctx.json {
                return json(&st.benchmarks.values().collect::<Vec<_>>());
            }
            table(
                &["id", "name", "status", "committee", "policy", "metric"],
                st.benchmarks
                    .values()
                    .map(|b| {
                        vec![
                            b.id.short(),
                            b.benchmark.name.clone(),
                            b.status.label().into(),
                            format!("{} of {}", b.benchmark.threshold, b.benchmark.committee.len()),
                            match b.benchmark.sharing {
                                SharingPolicy::PerDataset => "per dataset".into(),
                                SharingPolicy::Aggregate { min_datasets } => {
                                    format!("aggregate (>= {min_datasets})")
                                }
                            },
                            b.benchmark.rank_metric.clone(),
                        ]
                    })
                    .collect(),
            )
        }
        BenchmarkCmd::View { id } => {
            let st = s.state()?;
            let id = resolve(&id, st.benchmarks.keys().copied(), "benchmark")?;
            json(&st.benchmarks[&id])
        }
        BenchmarkCmd::Approve { id } => {
            let st = s.state()?;
            let id = resolve(&id, st.benchmarks.keys().copied(), "benchmark")?;
            let r = workflow::decide_benchmark(&s, id, Decision::Approve)?;
            report(ctx, "approval published", &r.id, &serde_json::Value::Null)
        }
        BenchmarkCmd::Reject { id } => {
            let st = s.state()?;
            let id = resolve(&id, st.benchmarks.keys().copied(), "benchmark")?;
            let r = workflow::decide_benchmark(&s, id, Decision::Reject)?;
            report(ctx, "rejection published", &r.id, &serde_json::Value::Null)
        }
        BenchmarkCmd::Run { benchmark, data, ignore_model_errors, force, no_submit } => {
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            let d = resolve(&data, st.datasets.keys().copied(), "dataset")?;
            let pb = spinner("running every approved model, then the metrics");
            let rep = workflow::run_benchmark(&s, &b, &d, ignore_model_errors, force);
            pb.finish_and_clear();
            let rep = rep?;
            let mut rows = Vec::new();
            for (m, run) in &rep.completed {
                let id = if no_submit {
                    None
                } else {
                    Some(workflow::submit_result(&s, &b, &d, m, run)?.id)
                };
                rows.push(serde_json::json!({ "model": m, "results": run.results, "result_record": id, "reused": run.reused }));
            }
            for (m, e) in &rep.failed {
                rows.push(serde_json::json!({ "model": m, "error": format!("{e:#}") }));
            }
            if ctx.json {
                return json(&rows);
            }
            table(
                &["model", "outcome", "result"],
                rep.completed
                    .iter()
                    .zip(rows.iter())
                    .map(|((m, run), row)| {
                        vec![
                            m.short(),
                            run.results
                                .iter()
                                .map(|(k, v)| format!("{k}={v:.3}"))
                                .collect::<Vec<_>>()
                                .join(" "),
                            row["result_record"]
                                .as_str()
                                .map(|s| s[..12].to_string())
                                .unwrap_or_else(|| "not submitted".into()),
                        ]
                    })
                    .chain(
                        rep.failed
                            .iter()
                            .map(|(m, e)| vec![m.short(), format!("failed: {e}"), String::new()]),
                    )
                    .collect(),
            )
        }
        BenchmarkCmd::Release { benchmark, auto_release, interval_ms } => {
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            if !auto_release {
                let r = workflow::release(&s, &b)?;
                return report(ctx, "release signed", &r.id, &serde_json::Value::Null);
            }
            let mut released = 0usize;
            loop {
                let st = s.state()?;
                let counting = st.results.iter().filter(|r| r.benchmark == b && r.counts).count();
                if counting > released {
                    let r = workflow::release(&s, &b)?;
                    released = counting;
                    report(
                        ctx,
                        &format!("release signed covering {counting} results"),
                        &r.id,
                        &serde_json::Value::Null,
                    )?;
                }
                std::thread::sleep(std::time::Duration::from_millis(interval_ms.max(100)));
            }
        }
    }
}

fn dataset(ctx: &Ctx, d: DatasetCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    match d {
        DatasetCmd::Prepare { benchmark, name, data_path, labels_path } => {
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            let pb = spinner("prepare, sanity check, statistics, hash");
            let p = workflow::prepare_dataset(&s, &b, &name, &data_path, &labels_path);
            pb.finish_and_clear();
            let p = p?;
            let v = serde_json::json!({ "name": name, "root": p.root, "prepared_hash": p.prepared_hash, "statistics": p.statistics });
            if ctx.json {
                return json(&v);
            }
            println!(
                "prepared {name} ({}) in {}; register it with `medmesh dataset submit -b {} --name {name}`",
                p.prepared_hash.short(),
                p.root.display(),
                b.short()
            );
            Ok(())
        }
        DatasetCmd::Submit { benchmark, name, description, location, public_name } => {
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            let r = workflow::submit_dataset(&s, &b, &name, &description, &location, public_name)?;
            report(ctx, "dataset registered", &r.id, &serde_json::Value::Null)
        }
        DatasetCmd::SetOperational { id } => {
            let st = s.state()?;
            let id = resolve(&id, st.datasets.keys().copied(), "dataset")?;
            let r = workflow::set_operational(&s, &id)?;
            report(ctx, "dataset operational", &r.id, &serde_json::Value::Null)
        }
        DatasetCmd::Associate { benchmark, data } => {
            let st = s.state()?;
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            let d = resolve(&data, st.datasets.keys().copied(), "dataset")?;
            let pb = spinner("running the compatibility test on your prepared data");
            let out = workflow::associate(&s, &b, Subject::Dataset(d));
            pb.finish_and_clear();
            let (r, outcome) = out?;
            report(
                ctx,
                "association requested",
                &r.id,
                &serde_json::json!({ "compatibility_results": outcome.results }),
            )
        }
        DatasetCmd::Check { id } => {
            let st = s.state()?;
            let id = resolve(&id, st.datasets.keys().copied(), "dataset")?;
            let root = workflow::local_dataset(&s, &id)?;
            runner::dataset::check_dataset(&root, &st.datasets[&id].prepared_hash)?;
            report(ctx, "dataset matches its registered hash", &id, &serde_json::Value::Null)
        }
        DatasetCmd::Export { id, out } => {
            let st = s.state()?;
            let id = resolve(&id, st.datasets.keys().copied(), "dataset")?;
            let root = workflow::local_dataset(&s, &id)?;
            let h = runner::dataset::export_dataset(&root, &out)?;
            report(
                ctx,
                &format!("exported to {} (prepared hash {})", out.display(), h.short()),
                &id,
                &serde_json::Value::Null,
            )
        }
        DatasetCmd::Import { tarball, name } => {
            let root = workflow::dataset_root(&s, &name);
            let p = runner::dataset::import_dataset(&tarball, &root, None)?;
            println!("imported {name} ({}) into {}", p.prepared_hash.short(), root.display());
            Ok(())
        }
        DatasetCmd::Ls => {
            let st = s.state()?;
            if ctx.json {
                return json(&st.datasets.values().collect::<Vec<_>>());
            }
            table(
                &["id", "name", "state", "owner", "prepared hash"],
                st.datasets
                    .values()
                    .map(|d| {
                        vec![
                            d.id.short(),
                            d.dataset.name.clone(),
                            format!("{:?}", d.state).to_lowercase(),
                            d.owner.short(),
                            d.prepared_hash.short(),
                        ]
                    })
                    .collect(),
            )
        }
        DatasetCmd::View { id } => {
            let st = s.state()?;
            let id = resolve(&id, st.datasets.keys().copied(), "dataset")?;
            json(&st.datasets[&id])
        }
    }
}

fn target(st: &State, t: &AssocTarget) -> anyhow::Result<(RecordId, Subject)> {
    let b = resolve(&t.benchmark, st.benchmarks.keys().copied(), "benchmark")?;
    let subject = match (&t.data, &t.model) {
        (Some(d), _) => Subject::Dataset(resolve(d, st.datasets.keys().copied(), "dataset")?),
        (None, Some(m)) => Subject::Model(resolve(m, containers(st), "container")?),
        (None, None) => bail!("give --data or --model"),
    };
    Ok((b, subject))
}

fn association(ctx: &Ctx, a: AssociationCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    let st = s.state()?;
    match a {
        AssociationCmd::Ls { benchmark } => {
            let b = benchmark
                .map(|b| resolve(&b, st.benchmarks.keys().copied(), "benchmark"))
                .transpose()?;
            let list: Vec<_> =
                st.associations.iter().filter(|a| b.is_none_or(|b| a.benchmark == b)).collect();
            if ctx.json {
                return json(&list);
            }
            table(
                &["benchmark", "kind", "subject", "status", "approvals", "priority"],
                list.iter()
                    .map(|a| {
                        let (kind, id) = match a.subject {
                            Subject::Dataset(d) => ("dataset", d),
                            Subject::Model(m) => ("model", m),
                        };
                        vec![
                            a.benchmark.short(),
                            kind.into(),
                            id.short(),
                            format!(
                                "{}{}",
                                a.status.label(),
                                if a.auto_approved { " (auto)" } else { "" }
                            ),
                            a.approvals.len().to_string(),
                            a.priority.to_string(),
                        ]
                    })
                    .collect(),
            )
        }
        AssociationCmd::Approve { target: t, priority } => {
            let (b, subj) = target(&st, &t)?;
            let r = workflow::decide_association(&s, b, subj, Decision::Approve, priority)?;
            report(ctx, "approval published", &r.id, &serde_json::Value::Null)
        }
        AssociationCmd::Reject { target: t } => {
            let (b, subj) = target(&st, &t)?;
            let r = workflow::decide_association(&s, b, subj, Decision::Reject, None)?;
            report(ctx, "rejection published", &r.id, &serde_json::Value::Null)
        }
        AssociationCmd::SetPriority { benchmark, model, priority } => {
            let t = AssocTarget { benchmark, data: None, model: Some(model) };
            let (b, subj) = target(&st, &t)?;
            let r = workflow::decide_association(&s, b, subj, Decision::Approve, Some(priority))?;
            report(ctx, "priority published", &r.id, &serde_json::Value::Null)
        }
    }
}

fn result(ctx: &Ctx, r: ResultCmd) -> anyhow::Result<()> {
    let s = ctx.session()?;
    let st = s.state()?;
    match r {
        ResultCmd::Submit { benchmark, data } => {
            let b = resolve(&benchmark, st.benchmarks.keys().copied(), "benchmark")?;
            let d = resolve(&data, st.datasets.keys().copied(), "dataset")?;
            let rep = workflow::run_benchmark(&s, &b, &d, true, false)?;
            let mut ids = Vec::new();
            for (m, run) in &rep.completed {
                ids.push(workflow::submit_result(&s, &b, &d, m, run)?.id);
            }
            if ctx.json {
                return json(&ids);
            }
            println!("{} results submitted", ids.len());
            Ok(())
        }
        ResultCmd::Ls { benchmark } => {
            let b = benchmark
                .map(|b| resolve(&b, st.benchmarks.keys().copied(), "benchmark"))
                .transpose()?;
            let list: Vec<_> =
                st.results.iter().filter(|r| b.is_none_or(|b| r.benchmark == b)).collect();
            if ctx.json {
                return json(&list);
            }
            table(
                &["id", "benchmark", "model", "dataset", "counts"],
                list.iter()
                    .map(|r| {
                        vec![
                            r.id.short(),
                            r.benchmark.short(),
                            r.model.short(),
                            r.dataset.short(),
                            if r.counts {
                                "yes".into()
                            } else {
                                format!("no: {}", r.reason.as_deref().unwrap_or(""))
                            },
                        ]
                    })
                    .collect(),
            )
        }
        ResultCmd::View { id } => {
            let id = resolve(&id, st.results.iter().map(|r| r.id), "result")?;
            let view = st.results.iter().find(|r| r.id == id).expect("resolved from this list");
            let metrics = match workflow::open_result(&s, &id) {
                Ok((_, m)) => serde_json::to_value(
                    m.iter()
                        .map(|(k, v)| (k.clone(), millionths(*v)))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                )?,
                Err(e) => serde_json::Value::String(format!("sealed ({e})")),
            };
            json(&serde_json::json!({ "result": view, "metrics": metrics }))
        }
    }
}

/// Print a benchmark's leaderboard.
pub fn leaderboard(ctx: &Ctx, st: &State, b: &RecordId) -> anyhow::Result<()> {
    let Some(lb) = st.leaderboards.get(b) else {
        if ctx.json {
            return json(&serde_json::Value::Null);
        }
        println!(
            "no results released yet for benchmark {}; the committee publishes them with `medmesh benchmark release`",
            b.short()
        );
        return Ok(());
    };
    if ctx.json {
        return json(lb);
    }
    println!(
        "leaderboard of {} by {} ({}), release round {}",
        st.benchmarks.get(b).map(|v| v.benchmark.name.as_str()).unwrap_or("?"),
        lb.metric,
        if lb.higher_is_better { "higher is better" } else { "lower is better" },
        lb.release_round
    );
    leaderboard_table(lb, true)
}

/// The leaderboard as a table (with model ids when `ids`).
pub fn leaderboard_table(lb: &protocol::fold::Leaderboard, ids: bool) -> anyhow::Result<()> {
    let mut header = vec!["rank", "model"];
    if ids {
        header.push("id");
    }
    header.extend([lb.metric.as_str(), "95% interval", "mean rank", "datasets"]);
    table(
        &header,
        lb.rows
            .iter()
            .map(|r| {
                let mut row = vec![r.rank.to_string(), r.model_name.clone()];
                if ids {
                    row.push(r.model.short());
                }
                row.extend([
                    millionths(r.value),
                    match (r.ci_low, r.ci_high) {
                        (Some(l), Some(h)) => format!("[{}, {}]", millionths(l), millionths(h)),
                        _ => "-".into(),
                    },
                    r.mean_rank_milli
                        .map(|m| format!("{:.2}", m as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into()),
                    r.datasets.to_string(),
                ]);
                row
            })
            .collect(),
    )
}

/// The MedMesh source tree this binary was built from (it holds `examples/`).
pub fn workspace_root() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    built.canonicalize().unwrap_or(built)
}

fn demo(ctx: &Ctx, dir: PathBuf, keep_running: bool) -> anyhow::Result<()> {
    let opts = crate::demo::DemoOptions { dir, workspace: workspace_root(), keep_running };
    let out = crate::demo::run(&opts)?;
    if ctx.json {
        let lb: serde_json::Value = serde_json::from_str(&out.leaderboard_json)?;
        return json(
            &serde_json::json!({ "benchmark": out.benchmark, "state_hash": out.state_hash, "leaderboards": lb, "homes": out.homes }),
        );
    }
    let hospital = out
        .homes
        .iter()
        .find(|(n, _)| n == "hospital-a")
        .map(|(_, h)| h.clone())
        .unwrap_or_default();
    let lbs: std::collections::BTreeMap<RecordId, protocol::fold::Leaderboard> =
        serde_json::from_str(&out.leaderboard_json)?;
    let lb =
        lbs.get(&out.benchmark).ok_or_else(|| anyhow!("the demo ended without a leaderboard"))?;
    println!("every node shows the same leaderboard (state hash {}):", out.state_hash.short());
    leaderboard_table(lb, false)?;

    println!("\nParticipants' homes are in {}. Look around, e.g.:", opts.dir.display());
    if keep_running {
        println!("  medmesh --home {} benchmark ls", hospital.display());
        println!("  medmesh --home {} association ls", hospital.display());
        println!(
            "  medmesh --home {} leaderboard -b {}",
            hospital.display(),
            out.benchmark.short()
        );
    } else {
        println!(
            "  medmesh node start --data-dir {}/node --root {}/root.cbor   (then, in another shell)",
            hospital.display(),
            hospital.display()
        );
        println!(
            "  medmesh --home {} leaderboard -b {}",
            hospital.display(),
            out.benchmark.short()
        );
        println!("Run `medmesh demo --keep-running` to leave the nodes up.");
    }
    Ok(())
}
