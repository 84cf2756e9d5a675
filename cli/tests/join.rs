//! `network join --bootstrap` is remembered in the home, and `node start` uses it
//! when given no `--bootstrap`: a node started after a join finds its peers.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn a_node_started_after_join_bootstraps_from_the_remembered_peer() {
    let t = TempDir::new("join-bootstrap");
    let (admin, member) = (t.0.join("admin"), t.0.join("member"));
    let admin_node = t.0.join("admin-node");
    home(&admin, None, &admin_node);
    let root = admin.join("root.cbor");
    let a = start_node(&admin_node, &root, &[]);
    ok(&admin, &["-y", "profile", "publish", "--name", "Admin", "--organisation", "Net"]);
    let records = a.control().status().unwrap().records;
    assert!(records > 0);

    ok(&member, &["keys", "generate"]);
    ok(
        &member,
        &["network", "join", "--root", root.to_str().unwrap(), "--bootstrap", &a.address()],
    );
    // `node start` with the home, and no --bootstrap.
    let member_node = t.0.join("member-node");
    let child = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .arg("--home")
        .arg(&member)
        .args(["node", "start", "--data-dir"])
        .arg(&member_node)
        .arg("--root")
        .arg(&root)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(member_node.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    let b = NodeProcess { child, dir: member_node.clone() };
    eventually(
        "the member's node to catch up from the remembered peer",
        CONVERGE_TIMEOUT_MS,
        || {
            medmesh_cli::control::Control::for_node_dir(&b.dir)
                .and_then(|c| c.status())
                .is_ok_and(|s| s.records >= records)
        },
    );
}
