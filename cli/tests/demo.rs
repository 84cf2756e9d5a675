//! End to end: `medmesh demo` runs the whole workflow on real node processes, real
//! Docker containers and real libp2p, and every node shows the same leaderboard.

use std::process::Command;

#[test]
fn the_demo_ends_with_the_same_two_model_leaderboard_on_every_node() {
    let dir = std::env::temp_dir().join(format!("medmesh-demo-test-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .args(["--json", "demo", "--dir"])
        .arg(&dir)
        .env("HOME", dir.with_extension("home"))
        .output()
        .expect("medmesh runs");
    assert!(out.status.success(), "demo failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let bench = v["benchmark"].as_str().unwrap();
    let lb = &v["leaderboards"][bench];
    let rows = lb["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "two associated models: {lb}");
    let names: Vec<&str> = rows.iter().map(|r| r["model_name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"logistic-regression") && names.contains(&"concave-points-threshold"),
        "{names:?}"
    );
    assert_eq!(rows[0]["rank"], 1);
    for r in rows {
        assert_eq!(r["datasets"], 3, "each model ran on the three hospitals");
        let (lo, val, hi) = (
            r["ci_low"].as_i64().unwrap(),
            r["value"].as_i64().unwrap(),
            r["ci_high"].as_i64().unwrap(),
        );
        assert!(lo <= val && val <= hi);
        assert!((500_000..=1_000_000).contains(&val), "an AUC in millionths: {val}");
    }
    assert!(rows[0]["value"].as_i64() >= rows[1]["value"].as_i64());
    // The demo's disclosure policy: no count (`cases` would tie a pseudonym to a
    // hospital of known size), and released values to three decimals (the rows'
    // means of them are derived, not released).
    for r in rows {
        let metrics = r["metrics"].as_object().unwrap();
        assert!(!metrics.contains_key("cases"), "a count was released: {metrics:?}");
    }
    // Per-dataset policy: a 2 x 3 table, hospital-a by name (it allowed it), others pseudonymous.
    let cells = lb["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    for c in cells {
        assert_eq!(c["value"].as_i64().unwrap() % 1_000, 0, "a cell finer than 0.001: {c}");
    }
    let labels: Vec<&str> =
        lb["datasets"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(labels.contains(&"hospital_a"), "{labels:?}");
    assert_eq!(labels.iter().filter(|l| l.starts_with("site-")).count(), 2, "{labels:?}");
    // The data directories are left for inspection.
    assert!(dir.join("hospital-a/node/store.redb").exists());
    std::fs::remove_dir_all(&dir).ok();
}
