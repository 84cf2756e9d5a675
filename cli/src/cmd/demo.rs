//! `medmesh demo`: the whole MedPerf workflow on a local federation of real nodes.

use std::path::PathBuf;

use anyhow::anyhow;
use protocol::RecordId;

use super::Ctx;
use super::leaderboard::leaderboard_table;
use crate::output::json;

/// The MedMesh source tree this binary was built from (it holds `examples/`).
pub fn workspace_root() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    built.canonicalize().unwrap_or(built)
}

/// Start `medmesh ui` for `home`, left running with the nodes; its sign-in link.
fn start_ui(home: &std::path::Path) -> anyhow::Result<String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--home")
        .arg(home)
        .arg("ui")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let out = child.stdout.take().ok_or_else(|| anyhow!("medmesh ui has no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line)?;
    if !line.starts_with("http://") {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("medmesh ui printed no sign-in link");
    }
    // Left running, as the nodes are.
    drop(child);
    Ok(line.trim().to_string())
}

/// Run `medmesh demo`.
pub fn run(ctx: &Ctx, dir: PathBuf, keep_running: bool) -> anyhow::Result<()> {
    let opts = crate::demo::DemoOptions { dir, workspace: workspace_root(), keep_running };
    let out = crate::demo::run(&opts)?;
    if ctx.json {
        let lb: serde_json::Value = serde_json::from_str(&out.leaderboard_json)?;
        return json(
            &serde_json::json!({ "benchmark": out.benchmark, "state_hash": out.state_hash, "leaderboards": lb, "homes": out.homes }),
        );
    }
    let hospital = out
        .homes
        .iter()
        .find(|(n, _)| n == "hospital-a")
        .map(|(_, h)| h.clone())
        .unwrap_or_default();
    let lbs: std::collections::BTreeMap<RecordId, protocol::fold::Leaderboard> =
        serde_json::from_str(&out.leaderboard_json)?;
    let lb =
        lbs.get(&out.benchmark).ok_or_else(|| anyhow!("the demo ended without a leaderboard"))?;
    crate::say!("every node shows the same leaderboard (state hash {}):", out.state_hash.short())?;
    leaderboard_table(lb, false)?;

    crate::say!("\nParticipants' homes are in {}. Look around, e.g.:", opts.dir.display())?;
    if keep_running {
        crate::say!("\nIn the browser (each link signs in one browser, once):")?;
        for who in ["admin", "committee-2", "hospital-a", "model-owner-1"] {
            let Some((_, home)) = out.homes.iter().find(|(n, _)| n == who) else { continue };
            match start_ui(home) {
                Ok(link) => crate::say!("  {who:<14} {link}")?,
                Err(e) => eprintln!("warning: cannot start medmesh ui for {who}: {e:#}"),
            }
        }
        crate::say!("\nOr on the command line:")?;
        crate::say!("  medmesh --home {} benchmark ls", hospital.display())?;
        crate::say!("  medmesh --home {} association ls", hospital.display())?;
        crate::say!(
            "  medmesh --home {} leaderboard -b {}",
            hospital.display(),
            out.benchmark.short()
        )?;
    } else {
        crate::say!(
            "  medmesh node start --data-dir {}/node --root {}/root.cbor   (then, in another shell)",
            hospital.display(),
            hospital.display()
        )?;
        crate::say!(
            "  medmesh --home {} leaderboard -b {}",
            hospital.display(),
            out.benchmark.short()
        )?;
        crate::say!("Run `medmesh demo --keep-running` to leave the nodes up.")?;
    }
    Ok(())
}
