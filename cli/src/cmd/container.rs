//! `medmesh container`: register, list and show containers (preparators, models, metrics).

use std::path::PathBuf;

use clap::Subcommand;

use super::{Ctx, containers, report};
use crate::ids::resolve;
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
        /// A `docker save` archive of the image to publish instead of saving it
        /// from the local engine.
        #[arg(long, conflicts_with = "no_archive")]
        archive: Option<PathBuf>,
        /// Publish no archive: every site's engine must already hold the image
        /// (MedPerf's DockerImage).
        #[arg(long)]
        no_archive: bool,
    },
    /// List containers.
    Ls,
    /// Show one container.
    View { id: String },
}

pub fn run(ctx: &Ctx, c: ContainerCmd) -> anyhow::Result<()> {
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
                },
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
