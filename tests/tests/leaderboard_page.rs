//! The replicated leaderboard, as every node serves it: identical JSON on every
//! node, and a page a real headless browser renders with the chart and the tables.

use std::path::PathBuf;
use std::process::Command;

use protocol::testkit::Workflow;
use tests::{CONVERGE_TIMEOUT_MS, config, converged, eventually, http, submit_all};

async fn start_with_control(
    dir: &std::path::Path,
    w: &Workflow,
    boot: &[node::Multiaddr],
) -> node::Node {
    let mut c = config(dir, &w.root, boot);
    c.control = Some("127.0.0.1:0".parse().expect("a socket address"));
    node::Node::start(c).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_a_byte_identical_leaderboard() {
    let w = Workflow::complete();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = start_with_control(dirs[0].path(), &w, &[]).await;
    let boot = first.addresses();
    let mut nodes = vec![first];
    for d in &dirs[1..] {
        nodes.push(start_with_control(d.path(), &w, &boot).await);
    }
    submit_all(&nodes[2].client(), &w.records).await;
    let clients: Vec<_> = nodes.iter().map(|n| n.client()).collect();
    converged(&clients, w.records.len() as u64).await;
    let path = format!("/v1/benchmarks/{}/leaderboard", w.benchmark);
    let mut bodies = Vec::new();
    for n in &nodes {
        let (status, body) = http(n.control_addr().unwrap(), "GET", &path, None, b"").await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|b| b[0] == b[1]), "leaderboards differ between nodes");
    let lb: protocol::fold::Leaderboard = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(lb.rows[0].model, w.models[1]);
    // An unknown benchmark is a 404 with a reason.
    let (status, body) = http(
        nodes[0].control_addr().unwrap(),
        "GET",
        "/v1/benchmarks/ffffffff/leaderboard",
        None,
        b"",
    )
    .await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("unknown_benchmark"));
    for n in nodes {
        n.shutdown().await;
    }
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-headless-shell", "chromium-browser", "google-chrome"].iter().find_map(
        |name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| PathBuf::from(d).join(name))
                .find(|p| p.exists())
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_browser_shows_the_chart_the_table_and_the_heatmap() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install chromium (Debian's `chromium` package)"
        );
        eprintln!("skipping: no chromium on PATH (install Debian's chromium package)");
        return;
    };
    let w = Workflow::complete();
    let dir = tempfile::tempdir().unwrap();
    let node = start_with_control(dir.path(), &w, &[]).await;
    submit_all(&node.client(), &w.records).await;
    let client = node.client();
    eventually("the leaderboard", CONVERGE_TIMEOUT_MS, || {
        let c = client.clone();
        async move { c.state().leaderboards.contains_key(&w.benchmark) }
    })
    .await;
    let url = format!(
        "http://{}/benchmarks/{}/leaderboard",
        node.control_addr().unwrap(),
        w.benchmark.short()
    );
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[String]| {
        Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs")
    };
    // The browser blocks this worker; the node keeps serving on the other.
    let dom = run(&["--dump-dom".to_string()]);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("id=\"chart\""),
        "no chart in:\n{html}\n{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert_eq!(html.matches("class=\"point\"").count(), 2, "one point per model");
    assert_eq!(html.matches("class=\"interval\"").count(), 2, "an interval each");
    assert!(html.contains("axis starts at"), "the axis says where it starts");
    assert!(
        html.contains("id=\"leaderboard\"") && html.contains("model-0") && html.contains("model-1")
    );
    assert_eq!(html.matches("class=\"cell\"").count(), 6, "a 2 x 3 heatmap");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("leaderboard.png");
    let _ = std::fs::remove_file(&png);
    let arg = format!("--screenshot={}", png.display());
    let shot = run(&[arg, "--window-size=1000,800".to_string()]);
    let bytes = std::fs::read(&png)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&shot.stderr)));
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 5_000,
        "a real screenshot at {}",
        png.display()
    );
    node.shutdown().await;
}
