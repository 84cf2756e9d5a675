//! What the binary's integration tests share: running `medmesh` with a home, and
//! real node processes on loopback.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use medmesh_cli::control::Control;

/// How long a node may take to start on a loaded machine.
pub const NODE_START_TIMEOUT_MS: u64 = 60_000;
/// How long records may take to reach another node on a loaded machine.
pub const CONVERGE_TIMEOUT_MS: u64 = 60_000;

/// Run `medmesh --home HOME ARGS...` with no terminal on stdin.
pub fn medmesh(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("medmesh runs")
}

/// Like [`medmesh`], and the command must succeed.
pub fn ok(home: &Path, args: &[&str]) -> Output {
    let o = medmesh(home, args);
    assert!(o.status.success(), "medmesh {args:?} failed:\n{}", stderr(&o));
    o
}

/// A command's `--json` answer.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh folder under the temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("medmesh-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Self(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `medmesh node start` process, killed when dropped.
pub struct NodeProcess {
    pub child: std::process::Child,
    pub dir: PathBuf,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeProcess {
    pub fn control(&self) -> Control {
        Control::for_node_dir(&self.dir).expect("the node wrote its control address")
    }

    /// The node's whole derived state (`GET /v1/state/all`), for a test's own
    /// checks: no command downloads it.
    pub fn whole_state(&self) -> protocol::State {
        self.control().get_json("/v1/state/all").expect("the state").expect("a state")
    }

    /// How many times the node served a whole-state view (`/v1/state/{view}`),
    /// from its `/metrics`.
    pub fn state_downloads(&self) -> u64 {
        state_downloads(&self.control())
    }

    /// The node's TCP listen address with its peer id, for `--bootstrap`.
    pub fn address(&self) -> String {
        let st = self.control().status().expect("status");
        st.listen.iter().find(|a| a.contains("/tcp/")).expect("a TCP address").clone()
    }
}

/// Start a node on loopback in `dir`, and wait until its control API answers.
pub fn start_node(dir: &Path, root: &Path, bootstrap: &[String]) -> NodeProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medmesh"));
    cmd.args(["node", "start", "--data-dir"])
        .arg(dir)
        .arg("--root")
        .arg(root)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    for b in bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.with_extension("log")).expect("log file"))
        .spawn()
        .expect("node starts");
    let node = NodeProcess { child, dir: dir.to_path_buf() };
    eventually("the node's control API", NODE_START_TIMEOUT_MS, || {
        Control::for_node_dir(dir).ok().is_some_and(|c| c.status().is_ok())
    });
    node
}

/// Poll `cond` until it holds, or fail after `timeout_ms`.
pub fn eventually(what: &str, timeout_ms: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    while !cond() {
        assert!(Instant::now() < deadline, "no {what} within {timeout_ms} ms");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A home with keys, on the network of `root` (created when `None`: an open
/// network, so that tests about other things need no admission step; admission is
/// tested in `admission.rs`), using the node in `node_dir`. Returns the signing
/// key in hex.
pub fn home(dir: &Path, root: Option<&Path>, node_dir: &Path) -> String {
    ok(dir, &["keys", "generate"]);
    match root {
        Some(r) => ok(dir, &["network", "join", "--root", r.to_str().unwrap()]),
        None => ok(dir, &["network", "create", "--name", "test-net", "--open"]),
    };
    ok(dir, &["profile", "set", "--node-dir", node_dir.to_str().unwrap()]);
    let v = json(&ok(dir, &["--json", "keys", "show"]));
    v["signing_key"].as_str().unwrap().to_string()
}

/// A `medmesh ui` process, killed when dropped.
pub struct UiProcess {
    pub child: std::process::Child,
    /// The one-time sign-in link it printed.
    pub link: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for UiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `medmesh --home HOME ui` and read the sign-in link it prints.
pub fn start_ui(home: &Path) -> UiProcess {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .arg("--home")
        .arg(home)
        .arg("ui")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(home.join("ui.log")).expect("log file"))
        .spawn()
        .expect("medmesh ui starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("medmesh ui prints its link");
    let link = line.trim().to_string();
    assert!(link.starts_with("http://127.0.0.1:") && link.contains("/signin?token="), "{link}");
    let base = link.split("/signin").next().expect("a base").to_string();
    UiProcess { child, link, base }
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The example images under tags of the calling test's own
/// (`medmesh-cli-TEST/NAME:PID`), so that another build of the shared tags cannot
/// change them under it; the tags are removed when dropped. Each entry is
/// (tag, digest), in this order: preparator, model-logistic, model-threshold, metrics.
pub struct Images(pub Vec<(String, String)>);

impl Images {
    pub fn build(test: &str) -> Self {
        let engine = medmesh_cli::workflow::engine().expect("a Docker engine");
        let built = medmesh_cli::workflow::block_on(runner::examples::build_example_images(
            &engine,
            &workspace(),
        ))
        .unwrap()
        .expect("the example images build");
        let mut tags = Vec::new();
        for (name, image) in [
            ("preparator", &built.preparator),
            ("model-logistic", &built.model_logistic),
            ("model-threshold", &built.model_threshold),
            ("metrics", &built.metrics),
        ] {
            let tag = format!("medmesh-cli-{test}/{name}:{}", std::process::id());
            let ok = Command::new("docker").args(["tag", &image.digest, &tag]).status().unwrap();
            assert!(ok.success(), "docker tag {tag}");
            tags.push((tag, image.digest.clone()));
        }
        Self(tags)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for (tag, _) in &self.0 {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
    }
}

/// How many times a node served a whole-state view (`/v1/state/{view}`), from
/// its `/metrics`.
pub fn state_downloads(c: &Control) -> u64 {
    let text = c.metrics().expect("the node's /metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("medmesh_control_state_downloads_total "))
        .expect("the counter of whole-state downloads")
        .trim()
        .parse()
        .expect("a count")
}
