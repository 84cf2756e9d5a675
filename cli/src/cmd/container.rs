//! `medmesh container`: register, list and show containers (preparators, models, metrics).

use std::path::PathBuf;

use clap::Subcommand;

use super::{Ctx, containers, report};
use crate::ids::resolve;
use crate::output::{json, table};
use crate::workflow::{self, ContainerArgs};

#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// Register a container (its image must be in the local Docker engine).
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
    },
    /// List containers.
    Ls,
    /// Show one container.
    View { id: String },
}

pub fn run(ctx: &Ctx, c: ContainerCmd) -> anyhow::Result<()> {
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
