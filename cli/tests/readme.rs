//! Every command README.md shows in a `sh` block runs, exactly as written, in the
//! order written, as one user in a fresh home (`HOME` is a temporary folder, so
//! `~/.medmesh` is new) from a folder that holds the repository's `examples/`.
//! A command written with a trailing `&` (the node) runs in the background, and
//! the next command waits until the node answers. The commands that cannot run
//! in a test are listed in [`NOT_RUN_HERE`] with why; a README command that is in
//! neither group fails the test, so an edit of the README is tested as it lands.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Commands (by their start) that a test cannot run, and why.
const NOT_RUN_HERE: &[(&str, &str)] = &[
    ("cargo run --release --bin medmesh -- demo", "cli/tests/demo.rs runs `medmesh demo`"),
    ("cargo test --workspace", "the test suite itself (.ci/run runs it)"),
    ("cargo run -p tests --bin medmesh-faults", "tests/tests/federation.rs builds and runs it"),
    ("docker run -d", "deploys a node next to a real bootstrap peer at a placeholder address"),
    ("ssh ", "needs a remote host"),
    (
        "medmesh --home hospital ui",
        "serves until interrupted; cli/tests/ui_browser.rs drives it in chromium and ui_security.rs checks its sign-in",
    ),
    ("cargo bench", "measurements; .ci/run compiles every bench"),
    ("cargo run --release -p node --bin medmesh-node-bench", "a measurement; compiled by .ci/run"),
    (
        "cargo run --release -p tests --bin medmesh-blob-bench",
        "a measurement; .ci/run runs its smoke",
    ),
    (
        "cargo run --release -p tests --bin medmesh-views-bench",
        "a measurement; .ci/run runs its smoke",
    ),
    (
        "cargo run --release -p node --bin medmesh-reconcile-bench",
        "a measurement; compiled by .ci/run, its RIBLT decoder tested in protocol",
    ),
    ("cargo run --release -p tests --bin medmesh-sim", "a measurement; .ci/run runs its smoke"),
];

/// How long the node may take to answer after it is started.
const NODE_READY_TIMEOUT_S: u32 = 60;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The commands of every ```sh block: continuation lines joined, comments and
/// blank lines dropped.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        let t = line.trim_end();
        if !in_sh {
            in_sh = t == "```sh";
            continue;
        }
        if t == "```" {
            in_sh = false;
            continue;
        }
        let code = strip_comment(t);
        if code.trim().is_empty() {
            continue;
        }
        match code.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(code);
                out.push(pending.split_whitespace().collect::<Vec<_>>().join(" "));
                pending.clear();
            }
        }
    }
    out
}

/// The line without a shell comment (a `#` outside quotes that starts a word).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return line[..i].trim_end(),
            _ => {}
        }
        prev = c;
    }
    line.trim_end()
}

#[test]
fn the_readme_commands_are_split_as_a_shell_would() {
    let text = "x\n```sh\nmedmesh a \\\n    --b c   # note\n# only a comment\nmedmesh -y p --name \"St #1\" &\n```\n```yaml\nk: v\n```\n";
    assert_eq!(readme_commands(text), ["medmesh a --b c", "medmesh -y p --name \"St #1\" &"]);
}

#[test]
fn every_readme_command_runs_as_written() {
    let root = workspace();
    let commands = readme_commands(&std::fs::read_to_string(root.join("README.md")).unwrap());
    let (excused, run): (Vec<&String>, Vec<&String>) =
        commands.iter().partition(|c| NOT_RUN_HERE.iter().any(|(p, _)| c.starts_with(p)));
    let strays: Vec<&&String> = run.iter().filter(|c| !c.starts_with("medmesh ")).collect();
    assert!(
        strays.is_empty(),
        "README commands neither run by this test nor listed in NOT_RUN_HERE with why: {strays:?}"
    );
    for (prefix, why) in NOT_RUN_HERE {
        assert!(
            excused.iter().any(|c| c.starts_with(prefix)),
            "NOT_RUN_HERE lists `{prefix}` ({why}), which README.md no longer shows"
        );
    }
    assert!(run.len() >= 10, "the tutorial's commands were found: {run:?}");

    // The example images the tutorial registers, as `medmesh demo` builds them.
    let engine = medmesh_cli::workflow::engine().expect("a Docker engine");
    medmesh_cli::workflow::block_on(runner::examples::build_example_images(&engine, &root))
        .unwrap()
        .expect("the example images build");

    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::symlink(root.join("examples"), work.join("examples")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_medmesh")).parent().unwrap().to_path_buf();

    // One shell, as a user types them: stop at the first failure and say which.
    let mut script = String::from(
        "set -eu\nbackground=''\ntrap 'kill $background 2>/dev/null || true' EXIT\n\
         ready() { i=0; until medmesh node refusals --data-dir ~/.medmesh/node >/dev/null 2>&1; do \
         i=$((i+1)); [ $i -le $((NODE_READY_TIMEOUT*10)) ] || { echo 'the node never answered' >&2; exit 1; }; \
         sleep 0.1; done; }\n",
    );
    for c in &run {
        let shown = c.replace('\'', "'\\''");
        script.push_str(&format!("echo '+ {shown}' >&2\n{c}\n"));
        if c.ends_with('&') {
            // Stopped when the script ends, so that nothing holds its output open.
            script.push_str("background=\"$background $!\"\nready\n");
        }
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("HOME", &home)
        .env_remove("MEDMESH_HOME")
        .env_remove("MEDMESH_NODE_DIR")
        .env("NODE_READY_TIMEOUT", NODE_READY_TIMEOUT_S.to_string())
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .output()
        .expect("sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "a README command failed:\n{stderr}\n--- stdout ---\n{stdout}");
    // The tutorial ends with the leaderboard: both models ranked.
    assert!(stdout.contains("reference") && stdout.contains("threshold"), "{stdout}");
}
