//! The example containers of `examples/`: their static binaries, built for
//! `FROM scratch` images, and the images themselves, built through the engine with
//! no registry.

use std::path::{Path, PathBuf};

use protocol::record::ImageRef;

use crate::engine::{Engine, Runnable};
use crate::error::RunnerError;
use crate::manifest::{ContainerSpec, load_manifest};

/// The target the static binaries are built for (an explicit target is required).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";
/// Longest the static build may take.
pub const BUILD_TIMEOUT_S: u64 = 900;

/// The example images, by role, each pinned by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExampleImages {
    pub preparator: ImageRef,
    pub model_logistic: ImageRef,
    pub model_threshold: ImageRef,
    pub metrics: ImageRef,
    pub probe: ImageRef,
}

/// Binary name and image tag of each example.
pub const EXAMPLES: [(&str, &str); 5] = [
    ("preparator", "medmesh/example-preparator:1"),
    ("model_logistic", "medmesh/example-model-logistic:1"),
    ("model_threshold", "medmesh/example-model-threshold:1"),
    ("metrics", "medmesh/example-metrics:1"),
    ("probe", "medmesh/example-probe:1"),
];

/// Build the example binaries statically and return the folder that holds them.
pub async fn build_example_binaries(workspace_root: &Path) -> Result<PathBuf, RunnerError> {
    build_static_binaries(workspace_root, &["medmesh-examples"]).await
}

/// Build the binaries of `packages` statically, for `FROM scratch` images
/// (`RUSTFLAGS="-C target-feature=+crt-static" cargo build -p <package> --bins --release
/// --target x86_64-unknown-linux-gnu`, stripped), and return the folder that holds them.
pub async fn build_static_binaries(
    workspace_root: &Path,
    packages: &[&str],
) -> Result<PathBuf, RunnerError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root.join("target"));
    let mut cmd = tokio::process::Command::new(cargo);
    cmd.current_dir(workspace_root)
        .args(["build", "--quiet", "--bins", "--release", "--target", STATIC_TARGET])
        .args(packages.iter().flat_map(|p| ["-p", p]))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(BUILD_TIMEOUT_S), cmd.output())
        .await
        .map_err(|_| RunnerError::Build(format!("no result after {BUILD_TIMEOUT_S} s")))?
        .map_err(|e| RunnerError::Build(format!("cannot start cargo: {e}")))?;
    if !out.status.success() {
        return Err(RunnerError::Build(
            String::from_utf8_lossy(&out.stderr).chars().take(4000).collect(),
        ));
    }
    Ok(target_dir.join(STATIC_TARGET).join("release"))
}

/// Build the static binaries, then one `FROM scratch` image per example.
pub async fn build_example_images(
    engine: &Engine,
    workspace_root: &Path,
) -> Result<ExampleImages, RunnerError> {
    let bin_dir = build_example_binaries(workspace_root).await?;
    let mut refs = Vec::with_capacity(EXAMPLES.len());
    for (bin, tag) in EXAMPLES {
        let digest = engine.build_scratch_image(&bin_dir.join(bin), tag).await?;
        tracing::info!(image = tag, %digest, "example image built");
        refs.push(ImageRef { reference: tag.into(), digest });
    }
    let mut it = refs.into_iter();
    let mut next =
        || it.next().ok_or_else(|| RunnerError::Build("an example image is missing".into()));
    Ok(ExampleImages {
        preparator: next()?,
        model_logistic: next()?,
        model_threshold: next()?,
        metrics: next()?,
        probe: next()?,
    })
}

/// An example container ready to run: `examples/<name>/container_config.yaml`, its
/// `parameters.yaml` and `additional_files/` when present, and `image`.
pub fn example_runnable(
    workspace_root: &Path,
    name: &str,
    image: &ImageRef,
) -> Result<Runnable, RunnerError> {
    let dir = workspace_root.join("examples").join(name);
    let spec: ContainerSpec = load_manifest(&dir.join("container_config.yaml"))?;
    let existing = |p: PathBuf| p.exists().then_some(p);
    Ok(Runnable {
        spec,
        image: image.clone(),
        parameters_file: existing(dir.join("parameters.yaml")),
        additional_files: existing(dir.join("additional_files")),
    })
}
