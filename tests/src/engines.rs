//! A second, separate Docker engine on this machine, as a site of its own: its
//! own data root, exec root, pidfile, socket and bridge (FACTS.md says how, and
//! why never `--bridge none`). Stopped and removed on drop, whatever happened.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use runner::engine::Engine;

/// How long the second engine may take to answer on its socket.
pub const ENGINE_READY_TIMEOUT_MS: u64 = 60_000;
/// How long it may take to stop before it is killed.
pub const ENGINE_STOP_TIMEOUT_MS: u64 = 20_000;
/// A second Docker engine, stopped and cleaned up on drop: the process by its
/// pid, then its bridge, then its folders.
pub struct SecondEngine {
    dir: Option<tempfile::TempDir>,
    bridge: String,
    child: Option<std::process::Child>,
    /// The engine's unix socket.
    pub socket: PathBuf,
}

impl SecondEngine {
    /// Make the bridge and start `dockerd` (needs root).
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wt-blobs-dockerd-").tempdir()?;
        let tag = std::process::id() % 10_000;
        // Never `--bridge none`: that makes the new daemon delete the host's docker0.
        let bridge = format!("mmblob{tag}");
        let subnet = 100 + (tag % 150);
        let mut engine = SecondEngine {
            dir: Some(dir),
            bridge: bridge.clone(),
            child: None,
            socket: PathBuf::new(),
        };
        let root = engine.dir.as_ref().expect("set").path().to_path_buf();
        let ip = |args: &[&str]| -> anyhow::Result<()> {
            let out = Command::new("ip").args(args).output()?;
            anyhow::ensure!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("10.253.{subnet}.1/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        let config = root.join("daemon.json");
        std::fs::write(&config, r#"{"storage-driver":"fuse-overlayfs"}"#)?;
        engine.socket = root.join("docker.sock");
        let log = std::fs::File::create(root.join("dockerd.log"))?;
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", engine.socket.display()))
            .args(["--bridge", &bridge, "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        engine.child = Some(child);
        Ok(engine)
    }

    /// Connect once the engine answers.
    pub async fn connect(&self) -> Engine {
        let path = self.socket.display().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ENGINE_READY_TIMEOUT_MS);
        loop {
            if self.socket.exists()
                && let Ok(e) = Engine::connect_socket(&path, 4).await
            {
                return e;
            }
            if tokio::time::Instant::now() >= deadline {
                let log = self.dir.as_ref().map(|d| d.path().join("dockerd.log"));
                let log = log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
                panic!("the second dockerd did not answer on {path}; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline =
                std::time::Instant::now() + Duration::from_millis(ENGINE_STOP_TIMEOUT_MS);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
        if let Some(dir) = self.dir.take() {
            // Whatever the engine left mounted under its folders goes first.
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            let under = dir.path().display().to_string();
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|p| p.starts_with(&under))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").args(["-l", p]).output();
            }
            drop(dir);
        }
    }
}
