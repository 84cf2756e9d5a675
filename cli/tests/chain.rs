//! One chain per signer: the home records the last seq it signed before a record
//! leaves, so a stale node cannot make the user sign a seq twice (which would make
//! the key an equivocator whose decisions stop counting), and a lying node can
//! neither forge a head nor lower it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use medmesh_cli::publish::NodeApi;
use protocol::record::{Body, Profile};
use protocol::{PublicKey, Record};

#[test]
fn a_home_pointed_at_a_stale_node_continues_its_chain_instead_of_equivocating() {
    let t = TempDir::new("stale");
    let admin = t.0.join("admin");
    let (dir1, dir2, dir3) = (t.0.join("node1"), t.0.join("node2"), t.0.join("node3"));
    let key: PublicKey = home(&admin, None, &dir1).parse().unwrap();
    let root = admin.join("root.cbor");
    let node1 = start_node(&dir1, &root, &[]);
    ok(&admin, &["-y", "profile", "publish", "--name", "Admin"]);
    ok(&admin, &["-y", "profile", "publish", "--name", "Admin, again"]);

    // The same home, pointed at a fresh node that has not caught up.
    let node2 = start_node(&dir2, &root, &[]);
    ok(&admin, &["profile", "set", "--node-dir", dir2.to_str().unwrap()]);
    // The confirmation shows where the record goes in the chain.
    let o = medmesh(&admin, &["profile", "publish", "--name", "Admin, on node 2"]);
    assert!(!o.status.success(), "no terminal, no -y: nothing is published");
    assert!(stderr(&o).contains("as seq 2 of its chain"), "{}", stderr(&o));
    let o = ok(&admin, &["-y", "profile", "publish", "--name", "Admin, on node 2"]);
    assert!(stderr(&o).contains("not have caught up"), "{}", stderr(&o));

    // When the nodes meet (a third node joins both), the admin has one chain.
    let node3 = start_node(&dir3, &root, &[node1.address(), node2.address()]);
    let c = node3.control();
    eventually("all three records on the node that met both", CONVERGE_TIMEOUT_MS, || {
        c.status().is_ok_and(|s| s.records == 3)
    });
    let st: protocol::State = c.get_json("/v1/state/all").unwrap().unwrap();
    assert!(st.equivocations.is_empty(), "{:?}", st.equivocations);
    assert!(st.gaps.is_empty(), "{:?}", st.gaps);
    assert_eq!(st.profiles[&key].profile.name, "Admin, on node 2");
}

/// A node that serves whatever head record it is told to and keeps what it is sent.
struct LyingNode {
    head: Arc<Mutex<Option<Vec<u8>>>>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl LyingNode {
    /// Listen on loopback and write `control.addr` and `control.token` into `dir`,
    /// as a node does.
    fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        std::fs::write(dir.join("control.addr"), listener.local_addr().unwrap().to_string())
            .unwrap();
        std::fs::write(dir.join("control.token"), "token").unwrap();
        let node = Self { head: Arc::default(), received: Arc::default() };
        let (head, received) = (node.head.clone(), node.received.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let (code, ctype, answer) = if line.starts_with("POST /v1/records") {
                    let id = Record::peek_id(&body).unwrap();
                    received.lock().unwrap().push(body);
                    (200, "application/json", format!(r#"{{"id":"{id}"}}"#).into_bytes())
                } else if path.starts_with("/v1/heads/") && path.ends_with("/record") {
                    match head.lock().unwrap().clone() {
                        Some(b) => (200, "application/cbor", b),
                        None => (
                            404,
                            "application/json",
                            br#"{"error":"unknown_signer","message":"none"}"#.to_vec(),
                        ),
                    }
                } else if path.ends_with("/verdict") {
                    (200, "application/json", br#"{"ignored":false,"reason":null}"#.to_vec())
                } else {
                    (404, "application/json", br#"{"error":"not_found","message":"no"}"#.to_vec())
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = conn.write_all(&answer);
            }
        });
        node
    }

    /// The records submitted to this node, verified on `network`.
    fn received(&self, network: &protocol::NetworkId) -> Vec<Record> {
        self.received.lock().unwrap().iter().map(|b| Record::verify(b, network).unwrap()).collect()
    }

    fn serve_head(&self, bytes: Option<Vec<u8>>) {
        *self.head.lock().unwrap() = bytes;
    }
}

#[test]
fn a_lying_nodes_head_is_refused_and_a_lower_one_cannot_lower_the_chain() {
    let t = TempDir::new("lying");
    let (user, other, dir) = (t.0.join("user"), t.0.join("other"), t.0.join("liar"));
    home(&user, None, &dir);
    home(&other, Some(&user.join("root.cbor")), &dir);
    let network = medmesh_cli::home::Home { dir: user.clone() }.network_id().unwrap();
    let liar = LyingNode::start(&dir);

    // Two honest publications: seq 0 and 1, recorded in the home.
    ok(&user, &["-y", "profile", "publish", "--name", "User"]);
    ok(&user, &["-y", "profile", "publish", "--name", "User, again"]);
    let sent = liar.received(&network);
    assert_eq!(sent.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1]);
    let chain = std::fs::read(user.join("chain.json")).unwrap();

    // A head signed by someone else, claimed to be the user's: refused, nothing signed.
    let others = medmesh_cli::keys::load(&other.join("keys")).unwrap();
    let forged = Record::sign(
        &others.signing,
        network,
        1_000,
        Some(sent[1].id),
        Body::Profile(Profile {
            name: "x".into(),
            organisation: String::new(),
            x25519: others.x25519(),
        }),
    )
    .unwrap();
    liar.serve_head(Some(forged.bytes.to_vec()));
    let o = medmesh(&user, &["-y", "profile", "publish", "--name", "User, third"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not by you"), "{}", stderr(&o));
    // Bytes that are no record at all: refused too.
    liar.serve_head(Some(b"trust me".to_vec()));
    let o = medmesh(&user, &["-y", "profile", "publish", "--name", "User, third"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
    assert_eq!(liar.received(&network).len(), 2, "nothing was submitted after a bogus head");
    assert_eq!(std::fs::read(user.join("chain.json")).unwrap(), chain, "the home's head is kept");

    // The user's own old record as the head: real, but lower than the home's. The
    // next record follows the home's head, not the node's.
    liar.serve_head(Some(sent[0].bytes.to_vec()));
    ok(&user, &["-y", "profile", "publish", "--name", "User, third"]);
    let third = liar.received(&network).pop().unwrap();
    assert_eq!((third.seq, third.prev), (2, Some(sent[1].id)));
}

#[test]
fn after_an_equivocation_the_admin_revokes_the_key_from_its_seq_and_a_new_key_carries_on() {
    let t = TempDir::new("recover");
    let node_dir = t.0.join("node");
    let (admin, user, fresh) = (t.0.join("admin"), t.0.join("user"), t.0.join("user-new-key"));
    home(&admin, None, &node_dir);
    let root = admin.join("root.cbor");
    let user_key: PublicKey = home(&user, Some(&root), &node_dir).parse().unwrap();
    let node = start_node(&node_dir, &root, &[]);
    ok(&user, &["-y", "profile", "publish", "--name", "User"]);

    // An old copy of the home, used elsewhere, signs seq 0 again.
    let keys = medmesh_cli::keys::load(&user.join("keys")).unwrap();
    let network = medmesh_cli::home::Home { dir: user.clone() }.network_id().unwrap();
    let twin = Record::sign(
        &keys.signing,
        network,
        0,
        None,
        Body::Profile(Profile {
            name: "User, old copy".into(),
            organisation: String::new(),
            x25519: keys.x25519(),
        }),
    )
    .unwrap();
    node.control().submit(&twin.bytes).unwrap();
    let st = node.whole_state();
    assert_eq!(
        st.equivocations.iter().map(|e| (e.author, e.seq)).collect::<Vec<_>>(),
        [(user_key, 0)]
    );

    // Only an admin may revoke; the admin revokes the key from the seq it equivocated at.
    let o = medmesh(
        &user,
        &["-y", "admin", "revoke", "--key", &user_key.to_hex(), "--from-seq", "0", "--reason", "x"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("only the network's admins"), "{}", stderr(&o));
    let o = ok(
        &admin,
        &[
            "--json",
            "-y",
            "admin",
            "revoke",
            "--key",
            &user_key.to_hex(),
            "--from-seq",
            "0",
            "--reason",
            "equivocated at seq 0",
        ],
    );
    let v = json(&o);
    assert_eq!((v["effective"].as_bool(), v["revoked_from_seq"].as_u64()), (Some(true), Some(0)));

    // The user carries on with a new key; the old one's records have no authority.
    let new_key: PublicKey = home(&fresh, Some(&root), &node_dir).parse().unwrap();
    ok(&fresh, &["-y", "profile", "publish", "--name", "User"]);
    let st = node.whole_state();
    assert_eq!(st.revoked.get(&user_key), Some(&0));
    assert!(!st.profiles.contains_key(&user_key), "the revoked key's profile is gone");
    assert_eq!(st.profiles[&new_key].profile.name, "User");
}

#[test]
fn concurrent_commands_from_one_home_take_turns_on_the_chain() {
    let t = TempDir::new("concurrent");
    let node_dir = t.0.join("node");
    let user = t.0.join("user");
    let key: PublicKey = home(&user, None, &node_dir).parse().unwrap();
    let node = start_node(&node_dir, &user.join("root.cbor"), &[]);
    let runs: Vec<_> = (0..6)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_medmesh"))
                .arg("--home")
                .arg(&user)
                .args(["-y", "profile", "publish", "--name", &format!("User {i}")])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in runs {
        let o = r.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let st = node.whole_state();
    assert!(st.equivocations.is_empty(), "{:?}", st.equivocations);
    assert!(st.gaps.is_empty(), "{:?}", st.gaps);
    assert_eq!(st.records, 6);
    assert!(st.profiles.contains_key(&key));
}
