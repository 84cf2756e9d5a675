//! Real `medmesh-bootstrap` and `medmesh node start` processes on loopback, as an
//! operator would start them by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use protocol::testkit::Workflow;
use tests::{KillOnDrop, control_status, http, workspace_bin};

const PROCESS_WAIT_MS: u64 = 60_000;

fn spawn(exe: &Path, args: &[&str], log: &Path) -> KillOnDrop {
    let log = std::fs::File::create(log).unwrap();
    KillOnDrop(
        Command::new(exe)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn run(exe: &Path, args: &[&str]) -> Output {
    Command::new(exe).args(args).stdin(Stdio::null()).output().unwrap()
}

async fn wait_status(
    dir: &Path,
    what: &str,
    mut ok: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_millis(PROCESS_WAIT_MS);
    loop {
        if let Some(s) = control_status(dir).await
            && ok(&s)
        {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what} at {}", dir.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_started_nodes_agree_and_a_fourth_catches_up() {
    let medmesh = workspace_bin("medmesh");
    let bootstrap = workspace_bin("medmesh-bootstrap");
    let w = Workflow::complete();
    let tmp = tempfile::tempdir().unwrap();
    let root_file = tmp.path().join("root.cbor");
    std::fs::write(&root_file, w.root.to_bytes()).unwrap();
    let root = root_file.to_str().unwrap();
    let mut procs: Vec<KillOnDrop> = Vec::new();

    let boot_dir = tmp.path().join("boot");
    let b = boot_dir.to_str().unwrap();
    procs.push(spawn(
        &bootstrap,
        &[
            "--data-dir",
            b,
            "--root",
            root,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--control",
            "127.0.0.1:0",
        ],
        &tmp.path().join("boot.log"),
    ));
    let boot = wait_status(&boot_dir, "the bootstrap peer", |_| true).await;
    let boot_addr = boot["listen"][0].as_str().unwrap().to_string();

    let start = |i: usize, procs: &mut Vec<KillOnDrop>| {
        let dir = tmp.path().join(format!("node{i}"));
        let d = dir.to_str().unwrap().to_string();
        procs.push(spawn(
            &medmesh,
            &[
                "node",
                "start",
                "--data-dir",
                &d,
                "--root",
                root,
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--bootstrap",
                &boot_addr,
            ],
            &tmp.path().join(format!("node{i}.log")),
        ));
        dir
    };
    let dirs: Vec<PathBuf> = (0..3).map(|i| start(i, &mut procs)).collect();
    for d in &dirs {
        wait_status(d, "a node", |_| true).await;
    }

    // A second node on a running node's data directory is refused, clearly.
    let out = run(
        &medmesh,
        &[
            "node",
            "start",
            "--data-dir",
            dirs[0].to_str().unwrap(),
            "--root",
            root,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another node"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A missing root file, and a taken port.
    let fresh = tmp.path().join("fresh");
    let out = run(
        &medmesh,
        &[
            "node",
            "start",
            "--data-dir",
            fresh.to_str().unwrap(),
            "--root",
            "/nonexistent/root.cbor",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = boot_addr.split('/').nth(4).unwrap();
    let out = run(
        &medmesh,
        &[
            "node",
            "start",
            "--data-dir",
            fresh.to_str().unwrap(),
            "--root",
            root,
            "--listen",
            &format!("/ip4/127.0.0.1/tcp/{port}"),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("port taken"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One record submitted through one node's control API.
    let addr =
        std::fs::read_to_string(dirs[1].join("control.addr")).unwrap().trim().parse().unwrap();
    let token = std::fs::read_to_string(dirs[1].join("control.token")).unwrap();
    let (code, body) = http(addr, "POST", "/v1/records", Some(&token), &w.records[0].bytes).await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let want = protocol::fold(&w.root, &w.records[..1]).hash.to_hex();
    for d in dirs.iter().chain([&boot_dir]) {
        wait_status(d, "the record and the same state hash", |s| {
            s["records"] == 1 && s["state_hash"] == want.as_str()
        })
        .await;
    }

    // A fourth node started later catches up.
    let late = start(3, &mut procs);
    wait_status(&late, "the late node to catch up", |s| {
        s["records"] == 1 && s["state_hash"] == want.as_str()
    })
    .await;
}
