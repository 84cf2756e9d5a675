//! Admission through the real binary and real nodes on loopback: in a network made
//! with `medmesh network create` (admitted by default), a new key's records are
//! refused until it applies and the admin admits it; then it takes part with the
//! roles it was granted, and no more.

mod common;

use common::*;

#[test]
fn a_hospital_applies_the_admin_admits_it_and_only_then_its_records_count() {
    let t = TempDir::new("admission");
    let (admin, hospital, stranger) =
        (t.0.join("admin"), t.0.join("hospital"), t.0.join("stranger"));
    for d in [&admin, &hospital, &stranger] {
        std::fs::create_dir_all(d).unwrap();
    }
    let root = t.0.join("root.cbor");
    let (admin_node_dir, hospital_node_dir) = (t.0.join("admin-node"), t.0.join("hospital-node"));

    ok(&admin, &["keys", "generate"]);
    let created = json(&ok(
        &admin,
        &["--json", "network", "create", "--name", "clinics", "--out", root.to_str().unwrap()],
    ));
    assert_eq!(created["admission"], "admitted", "admitted is the default: {created}");
    ok(&admin, &["profile", "set", "--node-dir", admin_node_dir.to_str().unwrap()]);
    let key = home(&hospital, Some(&root), &hospital_node_dir);
    home(&stranger, Some(&root), &hospital_node_dir);

    let admin_node = start_node(&admin_node_dir, &root, &[]);
    let hospital_node = start_node(&hospital_node_dir, &root, &[admin_node.address()]);

    // Before admission: the hospital's profile is refused by its own node, with
    // what to do.
    let o = medmesh(&hospital, &["-y", "profile", "publish", "--name", "Hospital A"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("not_admitted") && e.contains("network apply"), "{e}");

    // It applies; the request reaches the admin's node pool.
    ok(
        &hospital,
        &[
            "-y",
            "network",
            "apply",
            "--role",
            "data_owner",
            "--name",
            "Hospital A",
            "--organisation",
            "General",
            "--message",
            "call +1 555 0100",
        ],
    );
    eventually("the join request at the admin's node", CONVERGE_TIMEOUT_MS, || {
        let v = json(&medmesh(&admin, &["--json", "network", "requests"]));
        v.as_array().is_some_and(|a| a.iter().any(|r| r["key"] == key.as_str()))
    });
    let listed = String::from_utf8_lossy(&ok(&admin, &["network", "requests"]).stdout).into_owned();
    assert!(listed.contains("Hospital A") && listed.contains("data_owner"), "{listed}");

    // Only an admin can admit.
    let o = medmesh(&stranger, &["-y", "network", "admit", &key]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("only the network's admins"), "{}", stderr(&o));

    // The admin admits it with the roles it asked for.
    let v = json(&ok(&admin, &["--json", "-y", "network", "admit", &key]));
    assert_eq!(v["member"], true, "{v}");
    assert_eq!(v["granted"], serde_json::json!(["data_owner"]), "{v}");
    eventually("the admission at the hospital's node", CONVERGE_TIMEOUT_MS, || {
        let v = json(&medmesh(&hospital, &["--json", "network", "members"]));
        v["members"].as_array().is_some_and(|m| m.iter().any(|m| m["key"] == key.as_str()))
    });

    // Now its profile is stored and counts; the stranger's still is not.
    ok(&hospital, &["-y", "profile", "publish", "--name", "Hospital A"]);
    let o = medmesh(&stranger, &["-y", "profile", "publish", "--name", "Mallory"]);
    assert!(stderr(&o).contains("not_admitted"), "{}", stderr(&o));
    let members = String::from_utf8_lossy(&ok(&admin, &["network", "members"]).stdout).into_owned();
    assert!(members.contains(&key) && members.contains("data_owner"), "{members}");

    // The node says what it refused, and why.
    let status: serde_json::Value =
        hospital_node.control().get_json("/v1/admission").unwrap().unwrap();
    assert_eq!(status["mode"], "admitted", "{status}");
    let refusals: serde_json::Value =
        hospital_node.control().get_json("/v1/refusals").unwrap().unwrap();
    assert!(refusals["counts"]["not_admitted"].as_u64().unwrap() >= 2, "{refusals}");
    // Apply, admit, members, profile: none of these commands downloaded the whole state.
    for n in [&admin_node, &hospital_node] {
        assert_eq!(n.state_downloads(), 0, "a command downloaded the whole state");
    }
}

#[test]
fn an_open_network_needs_no_admission_and_apply_says_so() {
    let t = TempDir::new("admission-open");
    let admin = t.0.join("admin");
    std::fs::create_dir_all(&admin).unwrap();
    let root = t.0.join("root.cbor");
    let node_dir = t.0.join("node");
    ok(&admin, &["keys", "generate"]);
    let v = json(&ok(
        &admin,
        &[
            "--json",
            "network",
            "create",
            "--name",
            "challenge",
            "--open",
            "--out",
            root.to_str().unwrap(),
        ],
    ));
    assert_eq!(v["admission"], "open");
    ok(&admin, &["profile", "set", "--node-dir", node_dir.to_str().unwrap()]);
    let _node = start_node(&node_dir, &root, &[]);
    let o = medmesh(&admin, &["-y", "network", "apply", "--name", "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is open"), "{}", stderr(&o));
}

#[test]
fn the_admin_rotates_authority_to_a_new_admin_from_the_cli() {
    let t = TempDir::new("admission-rotate");
    let (admin, next) = (t.0.join("admin"), t.0.join("next"));
    std::fs::create_dir_all(&admin).unwrap();
    std::fs::create_dir_all(&next).unwrap();
    let root = t.0.join("root.cbor");
    let node_dir = t.0.join("node");
    ok(&admin, &["keys", "generate"]);
    ok(&admin, &["network", "create", "--name", "n", "--out", root.to_str().unwrap()]);
    ok(&admin, &["profile", "set", "--node-dir", node_dir.to_str().unwrap()]);
    let next_key = home(&next, Some(&root), &node_dir);
    let _node = start_node(&node_dir, &root, &[]);

    let o = medmesh(&admin, &["-y", "admin", "rotate", "--admin", &next_key, "--threshold", "2"]);
    assert!(!o.status.success() && stderr(&o).contains("--threshold 2"), "{}", stderr(&o));
    let v = json(&ok(
        &admin,
        &["--json", "-y", "admin", "rotate", "--admin", &next_key, "--threshold", "1"],
    ));
    assert_eq!((v["epoch"].as_u64(), v["effective"].as_bool()), (Some(1), Some(true)), "{v}");
    // The old admin can no longer admit; the new one can.
    let o = medmesh(&admin, &["-y", "network", "admit", &next_key, "--no-roles"]);
    assert!(stderr(&o).contains("only the network's admins"), "{}", stderr(&o));
    let members = json(&ok(&next, &["--json", "network", "members"]));
    assert_eq!(members["admins"], serde_json::json!([next_key]), "{members}");
}
