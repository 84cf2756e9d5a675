//! `medmesh-blob-bench`: an image archive between nodes on loopback, against
//! `docker save | docker load` through a local pipe, in the same run.
//!
//! ```text
//! cargo run --release -p tests --bin medmesh-blob-bench                 # 1 GiB
//! cargo run --release -p tests --bin medmesh-blob-bench -- --size-mib 256 --json
//! cargo run -p tests --bin medmesh-blob-bench -- --smoke                # CI: 16 MiB
//! ```
//!
//! It builds an image `FROM scratch` holding one file of random bytes (tag
//! `medmesh/wt-blobs-bench:1`, removed at the end), saves its archive, and
//! measures, with real nodes (TCP, noise, yamux on 127.0.0.1):
//! - `two_nodes`: one node fetches the archive from the node that added it;
//! - `from_three`: a fourth node fetches it from three holders at once;
//! - `three_at_once`: three fresh nodes fetch it from one holder at the same time;
//! - `docker_pipe`: `docker save | docker load` into a second, separate engine
//!   (started here, never holding the image), as a site would load it without
//!   MedMesh; the ratio is the pipe's time over the two-node fetch's (goal
//!   0.8 or more: the fetch is at least 0.8x as fast as the pipe).

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use node::{Client, Node};
use protocol::Hash32;
use runner::Engine;
use serde::Serialize;
use tests::engines::SecondEngine;

const TAG: &str = "medmesh/wt-blobs-bench:1";
const FETCH_TIMEOUT_MS: u64 = 30 * 60 * 1000;

#[derive(Serialize)]
struct Figures {
    archive_bytes: u64,
    add_s: f64,
    two_nodes_s: f64,
    two_nodes_mib_per_s: f64,
    from_three_s: f64,
    from_three_mib_per_s: f64,
    three_at_once_s: f64,
    three_at_once_mib_per_s_each: f64,
    docker_pipe_s: Option<f64>,
    docker_pipe_mib_per_s: Option<f64>,
    /// docker_pipe_s / two_nodes_s: the fetch's speed relative to the pipe's.
    ratio_vs_docker_pipe: Option<f64>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut size_mib: u64 = if smoke { 16 } else { 1024 };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" | "--smoke" => {}
            "--size-mib" => match it.next().and_then(|v| v.parse().ok()) {
                Some(v) if v > 0 => size_mib = v,
                _ => {
                    eprintln!("error: --size-mib takes a positive number of MiB");
                    return ExitCode::FAILURE;
                }
            },
            other => {
                eprintln!(
                    "error: unknown option {other}; usage: medmesh-blob-bench [--smoke] [--size-mib N] [--json]"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(size_mib)) {
        Ok(f) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&f).expect("figures serialize"));
            } else {
                print_table(&f);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_table(f: &Figures) {
    let mib = f.archive_bytes as f64 / (1024.0 * 1024.0);
    println!("archive: {mib:.0} MiB");
    println!("add to the blob store (hash + outboard): {:.2} s", f.add_s);
    println!("two nodes:            {:.2} s, {:.0} MiB/s", f.two_nodes_s, f.two_nodes_mib_per_s);
    println!("from three holders:   {:.2} s, {:.0} MiB/s", f.from_three_s, f.from_three_mib_per_s);
    println!(
        "three fetchers at once from one holder: {:.2} s, {:.0} MiB/s each",
        f.three_at_once_s, f.three_at_once_mib_per_s_each
    );
    match (f.docker_pipe_s, f.ratio_vs_docker_pipe) {
        (Some(d), Some(r)) => println!(
            "docker save | docker load (second engine): {d:.2} s; the two-node fetch is {r:.2}x as fast (goal 0.8x)"
        ),
        _ => println!("docker save | docker load: not measured (no second engine)"),
    }
}

async fn start(dir: &Path, boot: &[node::Multiaddr]) -> anyhow::Result<Node> {
    let w = protocol::testkit::Workflow::complete();
    let mut c = tests::config(dir, &w.root, boot);
    c.sync_interval = Duration::from_secs(3600);
    Ok(Node::start(c).await?)
}

async fn fetch(c: &Client, hash: Hash32, size: u64) -> anyhow::Result<f64> {
    let t = Instant::now();
    tokio::time::timeout(
        Duration::from_millis(FETCH_TIMEOUT_MS),
        c.blob_fetch_wait(hash, size, true),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the fetch took over {FETCH_TIMEOUT_MS} ms"))?
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(t.elapsed().as_secs_f64())
}

async fn run(size_mib: u64) -> anyhow::Result<Figures> {
    let work = tempfile::Builder::new().prefix("wt-blobs-bench-").tempdir()?;
    let engine = Engine::connect(4).await?;
    // An image whose archive is about `size_mib`: one file of random bytes.
    let payload = work.path().join("payload");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&payload)?);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..size_mib {
            for chunk in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            f.write_all(&buf)?;
        }
        f.flush()?;
    }
    eprintln!("building {TAG} ({size_mib} MiB)");
    engine.build_scratch_image(&payload, TAG).await?;
    std::fs::remove_file(&payload)?;
    let archive = work.path().join("archive.tar");
    engine.save_image(TAG, &archive).await?;
    let figures = measure(&engine, work.path(), &archive).await;
    let _ = engine.remove_image(TAG).await;
    figures
}

async fn measure(engine: &Engine, work: &Path, archive: &Path) -> anyhow::Result<Figures> {
    let _ = engine;
    // Disk: at most four copies of the archive at once (the owner's and three
    // nodes'), besides the image in the engine; each phase's folders go with it.
    let owner_dir = tempfile::tempdir_in(work)?;
    let owner = start(owner_dir.path(), &[]).await?;
    let t = Instant::now();
    let info = owner.client().blob_add(std::fs::File::open(archive)?, true).await?;
    let add_s = t.elapsed().as_secs_f64();
    std::fs::remove_file(archive)?;
    let dirs: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir_in(work)).collect::<Result<_, _>>()?;
    let (hash, size) = (info.hash, info.size);
    let mib = size as f64 / (1024.0 * 1024.0);
    let boot = owner.addresses();

    eprintln!("two nodes");
    let h1 = start(dirs[0].path(), &boot).await?;
    let two_nodes_s = fetch(&h1.client(), hash, size).await?;
    let h2 = start(dirs[1].path(), &boot).await?;
    fetch(&h2.client(), hash, size).await?;

    eprintln!("from three holders");
    let h3 = start(dirs[2].path(), &boot).await?;
    for n in [&h1, &h2] {
        h3.client().dial(n.addresses()[0].clone()).await?.map_err(|e| anyhow::anyhow!(e))?;
    }
    wait_peers(&h3.client(), 3).await?;
    let from_three_s = fetch(&h3.client(), hash, size).await?;
    for n in [h1, h2, h3] {
        n.shutdown().await;
    }
    drop(dirs);
    let dirs: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir_in(work)).collect::<Result<_, _>>()?;

    eprintln!("three fetchers at once");
    let mut fetchers = Vec::new();
    for d in &dirs {
        fetchers.push(start(d.path(), &boot).await?);
    }
    for f in &fetchers {
        wait_peers(&f.client(), 1).await?;
    }
    let t = Instant::now();
    let all = futures_util::future::join_all(fetchers.iter().map(|f| {
        let c = f.client();
        async move { fetch(&c, hash, size).await }
    }))
    .await;
    for r in all {
        r?;
    }
    let three_at_once_s = t.elapsed().as_secs_f64();
    for f in fetchers {
        f.shutdown().await;
    }
    owner.shutdown().await;
    drop(dirs);
    drop(owner_dir);

    eprintln!("docker save | docker load into a second engine");
    let docker_pipe_s = match SecondEngine::start() {
        Ok(second) => {
            let _ = second.connect().await;
            let t = Instant::now();
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "docker save {TAG} | DOCKER_HOST=unix://{} docker load >/dev/null",
                    second.socket.display()
                ))
                .status()?;
            anyhow::ensure!(status.success(), "docker save | docker load failed");
            Some(t.elapsed().as_secs_f64())
        }
        Err(e) => {
            eprintln!("no second engine ({e}); the docker pipe is not measured");
            None
        }
    };
    Ok(Figures {
        archive_bytes: size,
        add_s,
        two_nodes_s,
        two_nodes_mib_per_s: mib / two_nodes_s,
        from_three_s,
        from_three_mib_per_s: mib / from_three_s,
        three_at_once_s,
        three_at_once_mib_per_s_each: mib / three_at_once_s,
        docker_pipe_s,
        docker_pipe_mib_per_s: docker_pipe_s.map(|d| mib / d),
        ratio_vs_docker_pipe: docker_pipe_s.map(|d| d / two_nodes_s),
    })
}

async fn wait_peers(c: &Client, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.peers().await?.len() < n {
        anyhow::ensure!(Instant::now() < deadline, "peers did not connect within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
