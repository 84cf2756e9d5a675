//! The `medmesh` binary from the outside: errors a user can act on, and the
//! commands that need no running node.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn medmesh(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("medmesh runs")
}

fn home(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("medmesh-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_wrong_flag_is_an_error_on_stderr_with_a_non_zero_exit() {
    let h = home("flag");
    let o = medmesh(&h, &["benchmark", "ls", "--no-such-flag"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--no-such-flag"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

#[test]
fn keys_are_generated_once_and_shown_as_json() {
    let h = home("keys");
    assert!(medmesh(&h, &["keys", "generate"]).status.success());
    let again = medmesh(&h, &["keys", "generate"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("refusing to overwrite"), "{}", stderr(&again));
    let o = medmesh(&h, &["--json", "keys", "show"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["signing_key"].as_str().unwrap().len(), 64);
    std::fs::remove_dir_all(&h).ok();
}

#[test]
fn network_create_writes_a_root_that_join_accepts_elsewhere() {
    let admin = home("admin");
    let member = home("member");
    assert!(medmesh(&admin, &["keys", "generate"]).status.success());
    let root = admin.join("handout.cbor");
    let o = medmesh(
        &admin,
        &["--json", "network", "create", "--name", "test-net", "--out", root.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let created: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let o = medmesh(
        &member,
        &[
            "--json",
            "network",
            "join",
            "--root",
            root.to_str().unwrap(),
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/4001",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let joined: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(created["network_id"], joined["network_id"]);
    // A different network's root is refused in the same home.
    let other = home("other");
    assert!(medmesh(&other, &["keys", "generate"]).status.success());
    let other_root = other.join("r.cbor");
    assert!(
        medmesh(
            &other,
            &["network", "create", "--name", "other", "--out", other_root.to_str().unwrap()]
        )
        .status
        .success()
    );
    let o = medmesh(&member, &["network", "join", "--root", other_root.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already holds network"), "{}", stderr(&o));
    for d in [admin, member, other] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn a_command_that_needs_a_node_says_how_to_start_one() {
    let h = home("nonode");
    assert!(medmesh(&h, &["keys", "generate"]).status.success());
    assert!(medmesh(&h, &["network", "create", "--name", "n"]).status.success());
    let o = medmesh(&h, &["benchmark", "ls"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("medmesh node start"), "{}", stderr(&o));
    std::fs::remove_dir_all(&h).ok();
}

#[test]
fn a_missing_network_root_says_how_to_get_one() {
    let h = home("noroot");
    assert!(medmesh(&h, &["keys", "generate"]).status.success());
    let o = medmesh(&h, &["benchmark", "ls"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("network join"), "{}", stderr(&o));
    std::fs::remove_dir_all(&h).ok();
}

#[test]
fn a_bad_root_file_is_named() {
    let h = home("badroot");
    std::fs::create_dir_all(&h).unwrap();
    let bogus = h.join("bogus.cbor");
    std::fs::write(&bogus, b"not cbor at all").unwrap();
    let o = medmesh(&h, &["network", "join", "--root", bogus.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a MedMesh network root"), "{}", stderr(&o));
    std::fs::remove_dir_all(&h).ok();
}

/// A `medmesh node start` process, killed when dropped.
struct NodeProcess(std::process::Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(home: &Path, root: &Path) -> NodeProcess {
    start_node_with(home, root, &[], std::process::Stdio::null())
}

/// Start a node with `extra` flags, its log going to `stderr`.
fn start_node_with(
    home: &Path,
    root: &Path,
    extra: &[&str],
    stderr: impl Into<std::process::Stdio>,
) -> NodeProcess {
    let dir = home.join("node");
    let child = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .args(["node", "start", "--data-dir"])
        .arg(&dir)
        .arg("--root")
        .arg(root)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("node starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("control.addr").exists() {
        assert!(std::time::Instant::now() < deadline, "the node never wrote control.addr");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    NodeProcess(child)
}

#[test]
fn an_unknown_id_and_a_refused_record_are_explained() {
    let h = home("running");
    assert!(medmesh(&h, &["keys", "generate"]).status.success());
    assert!(medmesh(&h, &["network", "create", "--name", "mine"]).status.success());
    // A node of another network.
    let other = home("running-other");
    assert!(medmesh(&other, &["keys", "generate"]).status.success());
    let other_root = other.join("root-b.cbor");
    assert!(
        medmesh(
            &other,
            &["network", "create", "--name", "theirs", "--out", other_root.to_str().unwrap()]
        )
        .status
        .success()
    );
    let _node = start_node(&h, &other_root);

    let o = medmesh(&h, &["benchmark", "view", "ffff"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no benchmark has an id starting with `ffff`"), "{}", stderr(&o));

    let o = medmesh(&h, &["-y", "profile", "publish", "--name", "Alice"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));
    assert!(stderr(&o).contains("network"), "{}", stderr(&o));

    // The node logged the refusal with its reason.
    let node_dir = h.join("node");
    let o = medmesh(&h, &["node", "refusals", "--json", "--data-dir", node_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("refusals as JSON");
    let refused = v["refused"].as_array().expect("a refused list");
    assert!(
        refused.iter().any(|r| r["reason"] == "wrong_network" && r["source"] == "control"),
        "{v}"
    );
    let o = medmesh(&h, &["node", "refusals", "--data-dir", node_dir.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("wrong_network"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Without -y and without a terminal, nothing is published.
    let o = medmesh(&h, &["profile", "publish", "--name", "Alice"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pass -y"), "{}", stderr(&o));
    for d in [h, other] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// One HTTP/1.1 GET with the given `Host` header: the status and the body.
fn get_with_host(addr: &str, host: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("the control API accepts");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("a timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").expect("sent");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("an answer");
    let status = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn the_control_api_refuses_a_foreign_host_and_the_cli_still_works() {
    let h = home("host");
    assert!(medmesh(&h, &["keys", "generate"]).status.success());
    let root = h.join("root-host.cbor");
    let o = medmesh(&h, &["network", "create", "--name", "host", "--out", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(medmesh(&h, &["network", "join", "--root", root.to_str().unwrap()]).status.success());
    let _node = start_node(&h, &root);
    let addr = std::fs::read_to_string(h.join("node/control.addr")).expect("control.addr");
    let addr = addr.trim();

    // A web page that rebound evil.example to this address is refused, reads
    // included; what a browser or client sends for the real address is served.
    let (status, body) = get_with_host(addr, "evil.example:80", "/v1/status");
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["error"], "bad_host");
    assert!(v["message"].as_str().is_some_and(|m| m.contains("evil.example")), "{v}");
    assert_eq!(get_with_host(addr, "evil.example", "/").0, 403);
    assert_eq!(get_with_host(addr, addr, "/v1/status").0, 200);
    let port = addr.rsplit_once(':').expect("host:port").1;
    assert_eq!(get_with_host(addr, &format!("localhost:{port}"), "/v1/status").0, 200);

    // The CLI's own requests pass: a read, a signed write, the refusal log.
    let o = medmesh(&h, &["-y", "profile", "publish", "--name", "Alice"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = medmesh(&h, &["benchmark", "ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let node_dir = h.join("node");
    let o = medmesh(&h, &["node", "refusals", "--json", "--data-dir", node_dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("refusals as JSON");
    assert_eq!(v["refused_total"], 0, "{v}");
    std::fs::remove_dir_all(h).ok();
}

#[test]
fn a_public_control_api_warns_at_start_and_answers_to_its_configured_names_only() {
    let h = home("public");
    assert!(medmesh(&h, &["keys", "generate"]).status.success());
    let root = h.join("root-public.cbor");
    let o = medmesh(&h, &["network", "create", "--name", "pub", "--out", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir_all(&h).expect("home");
    let log_path = h.join("node.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let _node = start_node_with(
        &h,
        &root,
        &["--control-public", "--control-host", "node1.hospital.example"],
        log,
    );
    let addr = std::fs::read_to_string(h.join("node/control.addr")).expect("control.addr");
    let addr = addr.trim();
    assert_eq!(get_with_host(addr, "node1.hospital.example:8080", "/v1/status").0, 200);
    assert_eq!(get_with_host(addr, "10.1.2.3:8080", "/v1/status").0, 200);
    let (status, body) = get_with_host(addr, "evil.example", "/v1/status");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--control-host evil.example"), "{body}");
    // The warning that the token travels in clear, logged at start.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("travel in clear") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no warning in the log: {text}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Host names only make sense for a public API.
    let o = medmesh(
        &h,
        &[
            "node",
            "start",
            "--data-dir",
            h.join("node2").to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--control-host",
            "x.example",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--control-public"), "{}", stderr(&o));
    std::fs::remove_dir_all(h).ok();
}

#[test]
fn a_closed_pipe_ends_the_command_quietly_with_exit_0() {
    // `medmesh keys show | head -1`, with the reader gone before the first write.
    let h = home("pipe");
    assert!(medmesh(&h, &["keys", "generate"]).status.success());
    for args in [&["keys", "show"][..], &["--json", "keys", "show"], &["network", "show"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(env!("CARGO_BIN_EXE_medmesh"))
            .arg("--home")
            .arg(&h)
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if args != ["network", "show"] {
            assert!(o.status.success(), "{args:?}: {err}");
            assert!(err.is_empty(), "{args:?}: {err}");
        }
    }
    std::fs::remove_dir_all(&h).ok();
}

#[test]
fn a_relative_home_is_made_absolute() {
    let base = home("relative");
    std::fs::create_dir_all(&base).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .current_dir(&base)
        .args(["--home", "site", "--json", "keys", "generate"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let dir = PathBuf::from(v["keys_dir"].as_str().unwrap());
    assert!(dir.is_absolute(), "{}", dir.display());
    assert_eq!(dir, base.join("site").join("keys"));
    std::fs::remove_dir_all(&base).ok();
}

#[test]
fn network_join_remembers_its_bootstrap_peers_and_refuses_a_malformed_one() {
    let admin = home("join-admin");
    let member = home("join-member");
    assert!(medmesh(&admin, &["keys", "generate"]).status.success());
    let root = admin.join("handout.cbor");
    let o = medmesh(&admin, &["network", "create", "--name", "n", "--out", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = medmesh(
        &member,
        &["network", "join", "--root", root.to_str().unwrap(), "--bootstrap", "https://peer"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("`https://peer` is not a multiaddress"), "{}", stderr(&o));
    let peer = "/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
    for _ in 0..2 {
        let o = medmesh(
            &member,
            &["network", "join", "--root", root.to_str().unwrap(), "--bootstrap", peer],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(member.join("profile.json")).unwrap()).unwrap();
    assert_eq!(profile["bootstrap"], serde_json::json!([peer]));
    std::fs::remove_dir_all(&admin).ok();
    std::fs::remove_dir_all(&member).ok();
}

#[test]
fn error_messages_do_not_repeat_their_cause() {
    // A root file that does not exist: the OS's reason appears once.
    let h = home("doubled");
    let o = medmesh(&h, &["network", "join", "--root", "/nonexistent/root.cbor"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("/nonexistent/root.cbor"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // A key file that cannot be read (a folder in its place): its path once, the
    // reason once (the error's text used to repeat its source's).
    use std::os::unix::fs::PermissionsExt;
    let keys = h.join("keys");
    std::fs::create_dir_all(keys.join("signing.key")).unwrap();
    for d in [keys.clone(), keys.join("signing.key")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let o = medmesh(&h, &["keys", "show"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("signing.key"), "{err}");
    let cause = std::io::Error::from_raw_os_error(21).to_string();
    assert_eq!(err.matches(cause.as_str()).count(), 1, "{err}");
    std::fs::remove_dir_all(&h).ok();
}
