//! Test helpers: the real Docker engine and the example images, built once per test
//! binary. Under `CI=true` a missing engine fails the test; elsewhere the test says
//! so and passes without running containers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use protocol::record::ImageRef;
use runner::examples::{ExampleImages, build_example_images, example_runnable};
use runner::{Engine, RunLimits, Runnable, parse_manifest};

static IMAGES: tokio::sync::Mutex<Option<ExampleImages>> = tokio::sync::Mutex::const_new(None);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ sits in the workspace root")
        .to_path_buf()
}

/// The engine and the example images, or `None` (outside CI) when there is no engine.
pub async fn setup() -> Option<(Engine, ExampleImages)> {
    let engine = match Engine::connect(4).await {
        Ok(e) => e,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true and {e}"),
        Err(e) => {
            eprintln!("SKIPPED (not under CI): {e}");
            return None;
        }
    };
    let mut images = IMAGES.lock().await;
    if images.is_none() {
        *images = Some(
            build_example_images(&engine, &workspace_root()).await.expect("example images build"),
        );
    }
    let images = images.clone().expect("just built");
    Some((engine, images))
}

pub fn example(name: &str, image: &ImageRef) -> Runnable {
    example_runnable(&workspace_root(), name, image).expect("example manifest loads")
}

/// A container from an inline manifest and an image.
pub fn inline(manifest: &str, image: &ImageRef) -> Runnable {
    Runnable {
        spec: parse_manifest(manifest).expect("test manifest parses"),
        image: image.clone(),
        parameters_file: None,
        additional_files: None,
    }
}

/// Short limits so that failing tests fail fast.
pub fn quick_limits() -> RunLimits {
    RunLimits {
        memory_bytes: 64 * 1024 * 1024,
        nano_cpus: 1_000_000_000,
        pids: 64,
        shm_bytes: runner::engine::TASK_SHM_BYTES_MIN,
        gpus: runner::site::Gpus::None,
        prepare_timeout_ms: 60_000,
        sanity_check_timeout_ms: 60_000,
        statistics_timeout_ms: 60_000,
        infer_timeout_ms: 60_000,
        evaluate_timeout_ms: 60_000,
        other_timeout_ms: 60_000,
    }
}

pub fn demo_dir() -> PathBuf {
    workspace_root().join("examples/data/demo")
}

pub fn hospital_raw(name: &str) -> (PathBuf, PathBuf) {
    let root = workspace_root().join("examples/data").join(name).join("raw");
    (root.join("data"), root.join("labels"))
}
