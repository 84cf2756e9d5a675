//! Sites that really are separate: the model owner's images live in the host's
//! Docker engine; the hospitals run on a second `dockerd` this test starts, with
//! its own data root, exec root, pidfile, socket and bridge, which has never
//! seen the images. Everything the hospitals run reaches them as blobs fetched by
//! hash from peers: the `docker save` archives (loaded, then checked against the
//! signed image id), the model's additional files and the demo dataset. The owner
//! goes offline once the first hospital holds everything; the second hospital
//! fetches from the first.
//!
//! The second engine, its bridge and its folders are removed when the test ends,
//! whatever happens ([`SecondEngine`]'s `Drop`). Under `CI=true` a missing engine
//! (or missing root rights to make a bridge) is a failure, never a skip.

use std::path::{Path, PathBuf};
use std::time::Duration;

use node::Client;
use protocol::Hash32;
use protocol::record::{BlobRef, ImageRef};
use runner::engine::{Engine, Runnable};
use tests::engines::SecondEngine;
use tests::*;

/// Deadline for one blob fetch.
const FETCH_TIMEOUT_MS: u64 = 120_000;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").into()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Put a file into a node's blob store.
async fn add_file(c: &Client, path: &Path) -> BlobRef {
    let f = std::fs::File::open(path).expect("the file to add exists");
    let info = c.blob_add(f, true).await.expect("the blob is added");
    BlobRef { hash: info.hash, size: info.size }
}

/// Fetch a blob into a node and copy it out to `to`, checking its hash.
async fn fetch_to(c: &Client, blob: &BlobRef, to: &Path) {
    let r = tokio::time::timeout(
        Duration::from_millis(FETCH_TIMEOUT_MS),
        c.blob_fetch_wait(blob.hash, blob.size, true),
    )
    .await
    .expect("the fetch ends in time");
    r.expect("the fetch succeeds");
    let (mut f, _) = c.blob_read(&blob.hash).expect("complete");
    let mut out = std::fs::File::create(to).expect("create the copy");
    std::io::copy(&mut f, &mut out).expect("copy the blob out");
    let bytes = std::fs::read(to).expect("read the copy");
    assert_eq!(Hash32::of(&bytes), blob.hash);
}

/// What the model owner publishes: per container, its image and archive blob.
struct Published {
    images: Vec<(&'static str, ImageRef, BlobRef)>,
    additional_files: BlobRef,
    additional_files_hash: Hash32,
    demo: BlobRef,
}

async fn publish(owner: &Client, main: &Engine, work: &Path) -> Published {
    std::fs::create_dir_all(work).unwrap();
    let built = runner::examples::build_example_images(main, &workspace_root())
        .await
        .expect("the example images build in the host's engine");
    let mut images = Vec::new();
    for (name, image) in [
        ("preparator", built.preparator),
        ("model_logistic", built.model_logistic),
        ("metrics", built.metrics),
    ] {
        let tar = work.join(format!("{name}.tar"));
        main.save_image(&image.reference, &tar).await.expect("docker save");
        let blob = add_file(owner, &tar).await;
        images.push((name, image, blob));
    }
    let af_dir = workspace_root().join("examples/model_logistic/additional_files");
    let af_tar = work.join("additional_files.tar");
    tar_folder(&af_dir, &af_tar);
    let additional_files_hash =
        runner::treehash::tree_hash(&[("additional_files", &af_dir)]).expect("tree hash");
    let demo_tar = work.join("demo.tar");
    tar_folder(&workspace_root().join("examples/data/demo"), &demo_tar);
    Published {
        images,
        additional_files: add_file(owner, &af_tar).await,
        additional_files_hash,
        demo: add_file(owner, &demo_tar).await,
    }
}

fn tar_folder(dir: &Path, out: &Path) {
    let f = std::fs::File::create(out).expect("create tar");
    let mut b = tar::Builder::new(f);
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all(".", dir).expect("pack");
    b.finish().expect("finish tar");
}

/// At a hospital: fetch everything from peers, load the archives into the
/// hospital's own engine (checked against the signed ids), unpack the files.
async fn receive(hospital: &Client, engine: &Engine, p: &Published, work: &Path) -> Vec<Runnable> {
    std::fs::create_dir_all(work).unwrap();
    let mut runnables = Vec::new();
    for (name, image, blob) in &p.images {
        assert!(
            engine.image_digest(&image.reference).await.is_err(),
            "the hospital's engine has never seen {}",
            image.reference
        );
        let tar = work.join(format!("{name}.tar"));
        fetch_to(hospital, blob, &tar).await;
        engine.load_verified_image(&tar, image).await.expect("the archive holds the signed image");
        let mut r = runner::examples::example_runnable(&workspace_root(), name, image)
            .expect("example manifest");
        r.additional_files = None;
        if *name == "model_logistic" {
            let tar = work.join("additional_files.tar");
            fetch_to(hospital, &p.additional_files, &tar).await;
            let dir = work.join("additional_files");
            runner::dataset::unpack_plain(&tar, &dir, 1 << 30).expect("unpack");
            let got = runner::treehash::tree_hash(&[("additional_files", &dir)]).unwrap();
            assert_eq!(got, p.additional_files_hash);
            r.additional_files = Some(dir);
        }
        runnables.push(r);
    }
    runnables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hospital_runs_a_model_its_engine_never_had_and_a_second_fetches_it_from_the_first() {
    init_tracing();
    let main = match Engine::connect(4).await {
        Ok(e) => e,
        Err(e) if in_ci() => panic!("CI=true and the host's engine is missing: {e}"),
        Err(e) => return eprintln!("SKIPPED (not under CI): {e}"),
    };
    let second = match SecondEngine::start() {
        Ok(s) => s,
        Err(e) if in_ci() => panic!("CI=true and no second engine can start: {e}"),
        Err(e) => return eprintln!("SKIPPED (not under CI): no second engine: {e}"),
    };
    let hospitals_engine = second.connect().await;
    let work = tempfile::tempdir().unwrap();
    let w = protocol::testkit::Workflow::complete();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let owner = start(dirs[0].path(), &w.root, &[]).await;
    let h1 = start(dirs[1].path(), &w.root, &owner.addresses()).await;
    let published = publish(&owner.client(), &main, &work.path().join("owner")).await;

    // Hospital 1 gets everything from the owner and runs the compatibility test
    // on its own engine.
    let r = receive(&h1.client(), &hospitals_engine, &published, &work.path().join("h1")).await;
    let demo_tar = work.path().join("h1/demo.tar");
    fetch_to(&h1.client(), &published.demo, &demo_tar).await;
    let demo = work.path().join("h1/demo");
    runner::compat::unpack_demo_dataset(&demo_tar, &published.demo.hash, &demo).expect("demo");
    let limits = runner::engine::RunLimits {
        memory_bytes: 256 * 1024 * 1024,
        nano_cpus: 1_000_000_000,
        pids: 64,
        shm_bytes: runner::engine::TASK_SHM_BYTES_MIN,
        gpus: runner::site::Gpus::None,
        prepare_timeout_ms: 120_000,
        sanity_check_timeout_ms: 120_000,
        statistics_timeout_ms: 120_000,
        infer_timeout_ms: 120_000,
        evaluate_timeout_ms: 120_000,
        other_timeout_ms: 120_000,
    };
    let outcome = runner::compat::compatibility_test(
        &hospitals_engine,
        &demo,
        &r[0],
        &r[1],
        &r[2],
        &work.path().join("h1/test"),
        &limits,
    )
    .await
    .expect("the compatibility test runs on the hospital's engine");
    assert!(outcome.results.contains_key("auc"), "metrics came out: {:?}", outcome.results);

    // The owner goes offline; hospital 2 fetches every blob from hospital 1.
    owner.shutdown().await;
    let h2 = start(dirs[2].path(), &w.root, &h1.addresses()).await;
    for (_, image, _) in &published.images {
        hospitals_engine.remove_image(&image.digest).await.expect("forget the image");
    }
    receive(&h2.client(), &hospitals_engine, &published, &work.path().join("h2")).await;
    let served = h2.client().blob_overview().unwrap().peers;
    assert_eq!(served.len(), 1, "only hospital 1 served hospital 2: {served:?}");
    assert!(served[&h1.peer_id().to_string()].pieces > 0);
    h1.shutdown().await;
    h2.shutdown().await;
    drop(second);
}
