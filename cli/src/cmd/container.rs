//! `medmesh container`: register, list and show containers (preparators, models,
//! metrics); for their authors, `new` (a project following the contract) and
//! `run-test` (one task as a site would run it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use protocol::record::ImageRef;
use runner::scaffold::Kind;
use runner::trial::{TrialOutcome, TrialStatus};

use super::{Ctx, report};
use crate::output::{json, table};
use crate::workflow::{self, ContainerArgs, ImageArchive};

#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// Register a container: its image (in the local Docker engine) is saved as
    /// an archive, and the archive and the additional files go into your node's
    /// blob store, from which every site fetches them by hash.
    Submit {
        #[arg(long)]
        name: String,
        /// MedPerf container config or mlcube.yaml.
        #[arg(long)]
        manifest: PathBuf,
        /// Image reference in the local engine. Read from the config's `image` (or
        /// mlcube.yaml's `docker.image`) when left out; when given it must agree.
        #[arg(long)]
        image: Option<String>,
        /// The image digest, if you do not want it read from the engine.
        #[arg(long)]
        digest: Option<String>,
        #[arg(long)]
        parameters: Option<PathBuf>,
        /// A folder of additional files (a model's weights).
        #[arg(long)]
        additional_files: Option<PathBuf>,
        /// A `docker save` archive of the image to publish instead of saving it
        /// from the local engine.
        #[arg(long, conflicts_with = "no_archive")]
        archive: Option<PathBuf>,
        /// Publish no archive: every site's engine must already hold the image
        /// (MedPerf's DockerImage).
        #[arg(long)]
        no_archive: bool,
        /// A private model (MedPerf's EncryptedDockerArchive): the archive is
        /// encrypted under a fresh key kept in your home, and only data owners you
        /// grant it to (`medmesh model grant`) can load and run it.
        #[arg(long, conflicts_with = "no_archive")]
        private: bool,
    },
    /// Run one task of a container here, in the sandbox and limits a site uses, and
    /// show what a site would see: outputs, log, exit. Needs no node.
    #[command(name = "run-test", alias = "run_test")]
    RunTest {
        /// MedPerf container config or mlcube.yaml.
        #[arg(long)]
        manifest: PathBuf,
        /// The task to run (prepare, sanity_check, statistics, infer, evaluate).
        #[arg(long)]
        task: String,
        /// Image in the local engine (default: the config's `image`).
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        parameters: Option<PathBuf>,
        /// A folder of additional files (a model's weights).
        #[arg(long)]
        additional_files: Option<PathBuf>,
        /// Where outputs not given, the log and scratch space go.
        #[arg(long, default_value = "medmesh-run-test")]
        out: PathBuf,
        /// The task's folders and files as NAME=PATH (data_path=raw/data ...).
        #[arg(value_name = "NAME=PATH")]
        paths: Vec<String>,
    },
    /// Write a new container project (config, parameters, Python code, Dockerfile on
    /// a Debian base, demo data) that follows MedPerf's contract.
    New {
        /// preparator, model or metrics.
        #[arg(long)]
        kind: Kind,
        /// The folder to create (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// The image the config names (default: the folder's name, tag 0.1).
        #[arg(long)]
        image: Option<String>,
    },
    /// List containers.
    Ls,
    /// Show one container.
    View { id: String },
}

pub fn run(ctx: &Ctx, c: ContainerCmd) -> anyhow::Result<()> {
    let c = match c {
        ContainerCmd::New { kind, out, image } => return new(ctx, kind, &out, image),
        ContainerCmd::RunTest {
            manifest,
            task,
            image,
            parameters,
            additional_files,
            out,
            paths,
        } => {
            let args = RunTestArgs { manifest, task, image, parameters, additional_files, out };
            return run_test(ctx, &args, &paths);
        }
        other => other,
    };
    let s = ctx.session()?;
    match c {
        ContainerCmd::Submit {
            name,
            manifest,
            image,
            digest,
            parameters,
            additional_files,
            archive,
            no_archive,
            private,
        } => {
            let archive = match (archive, no_archive) {
                (Some(f), _) => ImageArchive::File(f),
                (None, true) => ImageArchive::None,
                (None, false) => ImageArchive::Save,
            };
            let r = workflow::submit_container(
                &s,
                &ContainerArgs {
                    name,
                    manifest,
                    image,
                    digest,
                    parameters,
                    additional_files,
                    archive,
                    private,
                },
            )?;
            report(
                ctx,
                if private { "private container submitted" } else { "container submitted" },
                &r.id,
                &serde_json::Value::Null,
            )
        }
        ContainerCmd::New { .. } | ContainerCmd::RunTest { .. } => unreachable!("handled above"),
        ContainerCmd::Ls => {
            let list = crate::views::containers(s.api.as_ref(), None)?;
            if ctx.json {
                return json(&list);
            }
            table(
                &["id", "name", "image", "tasks", "owner"],
                list.iter()
                    .map(|c| {
                        vec![
                            c.id.short(),
                            if c.container.encryption.is_some() {
                                format!("{} (private)", c.container.name)
                            } else {
                                c.container.name.clone()
                            },
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
            let id = super::container_id(&s, &id)?;
            json(&crate::views::container(s.api(), &id)?)
        }
    }
}

fn new(ctx: &Ctx, kind: Kind, out: &Path, image: Option<String>) -> anyhow::Result<()> {
    let image = match image {
        Some(i) => i,
        None => {
            let name = std::path::absolute(out)?
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_else(|| "container".into());
            format!("{name}:0.1")
        }
    };
    let files = runner::scaffold::new_project(kind, &image, out)?;
    if ctx.json {
        return json(&serde_json::json!({ "image": image, "files": files }));
    }
    for f in &files {
        crate::say!("wrote {}", f.display())?;
    }
    crate::say!(
        "build it with `docker build -t {image} {}`, then try a task with `medmesh container \
         run-test` (see {})",
        out.display(),
        out.join("README.md").display()
    )?;
    Ok(())
}

struct RunTestArgs {
    manifest: PathBuf,
    task: String,
    image: Option<String>,
    parameters: Option<PathBuf>,
    additional_files: Option<PathBuf>,
    out: PathBuf,
}

/// `NAME=PATH` arguments as absolute paths (Docker mounts only those).
fn parse_paths(pairs: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (name, path) = p
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| anyhow!("`{p}` is not NAME=PATH, like data_path=raw/data"))?;
        let path = std::path::absolute(path).with_context(|| format!("the path in `{p}`"))?;
        if out.insert(name.to_string(), path).is_some() {
            bail!("`{name}` is given twice");
        }
    }
    Ok(out)
}

fn run_test(ctx: &Ctx, a: &RunTestArgs, pairs: &[String]) -> anyhow::Result<()> {
    let given = parse_paths(pairs)?;
    let spec = runner::load_manifest(&a.manifest)?;
    let reference = match &a.image {
        Some(i) if !runner::manifest::same_image(&spec.image, i) => {
            tracing::info!(config = %spec.image, image = %i, "running --image, not the config's");
            i.clone()
        }
        _ => spec.image.clone(),
    };
    let abs = |p: &Option<PathBuf>| -> anyhow::Result<Option<PathBuf>> {
        p.as_ref()
            .map(|p| p.canonicalize().with_context(|| format!("cannot find {}", p.display())))
            .transpose()
    };
    let out = std::path::absolute(&a.out)?;
    let (engine, limits) = workflow::home_engine(&ctx.home, &ctx.site)?;
    let outcome: TrialOutcome = workflow::block_on(async {
        let digest = engine.image_digest(&reference).await?;
        let runnable = runner::Runnable {
            spec,
            image: ImageRef { reference: reference.clone(), digest },
            parameters_file: abs(&a.parameters)?,
            additional_files: abs(&a.additional_files)?,
        };
        anyhow::Ok(
            runner::trial::run_test(&engine, &runnable, &a.task, &given, &out, &limits).await?,
        )
    })??;
    if ctx.json {
        json(&outcome)?;
    } else {
        show(&outcome)?;
    }
    match outcome.status {
        TrialStatus::Ok => Ok(()),
        _ => Err(anyhow!(
            "{}",
            outcome.message.clone().unwrap_or_else(|| format!("task {} did not pass", a.task))
        )),
    }
}

fn show(o: &TrialOutcome) -> anyhow::Result<()> {
    let status = serde_json::to_value(o.status)?;
    let exit = o.exit_code.map_or_else(|| "killed".to_string(), |c| format!("exit {c}"));
    crate::say!(
        "task {} of {} ({}): {}, {exit}",
        o.task,
        o.image,
        o.image_digest,
        status.as_str().unwrap_or("?")
    )?;
    for x in &o.outputs {
        crate::say!("output {} ({}) at {}", x.name, x.kind, x.path.display())?;
        match &x.yaml {
            Some(map) => {
                for (k, v) in map {
                    crate::say!("    {k}: {v}")?;
                }
            }
            None => {
                for (name, bytes) in &x.entries {
                    crate::say!("    {name}  {bytes} bytes")?;
                }
            }
        }
    }
    crate::say!("log {} (its end):", o.log_path.display())?;
    for line in o.log_tail.lines() {
        crate::say!("    {line}")?;
    }
    Ok(())
}
