//! A federation of node containers (the project's own FROM-scratch image) on
//! private Docker networks, put through partitions, node loss, a frozen node, the
//! loss of every bootstrap peer and a rolling restart. Each scenario ends with every
//! running member holding the same records, state hash and leaderboard, and no
//! acknowledged record lost. Needs the Docker engine: without one these tests fail.
//!
//! The scenarios run one at a time (each starts six containers); each report is
//! written to `target/tmp/federation/<scenario>.json`. The same scenarios print a
//! table with `cargo run -p tests --bin medmesh-faults`.

use std::sync::Mutex;

use runner::Engine;
use tests::faults::{self, Report};
use tests::federation::{Federation, build_node_image, workspace_root};

/// One scenario at a time; the node image is built by the first.
static SERIAL: Mutex<bool> = Mutex::new(false);

/// Run `body` with the engine and the node image, one test at a time.
fn with_engine<T>(body: impl AsyncFnOnce(&Engine) -> T) -> T {
    let mut built = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let engine = Engine::connect(1)
            .await
            .unwrap_or_else(|e| panic!("the Docker engine is required: {e}"));
        if !*built {
            build_node_image(&engine).await.unwrap_or_else(|e| panic!("{e:#}"));
            *built = true;
        }
        body(&engine).await
    })
}

fn scenario(name: &str) -> Report {
    with_engine(async |engine| {
        let report = faults::run(engine, name).await.unwrap_or_else(|e| panic!("{e:#}"));
        let dir = workspace_root().join("target/tmp/federation");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_vec_pretty(&report).unwrap_or_default(),
        );
        eprintln!("{}", faults::table(std::slice::from_ref(&report)));
        report
    })
}

fn assert_no_loss(r: &Report) {
    assert_eq!(r.lost, 0, "acknowledged records lost: {r:?}");
    assert!(r.written > 0, "the scenario wrote nothing during the fault: {r:?}");
    assert_eq!(
        r.release_round, 2,
        "the release signed during the fault did not reach every member: {r:?}"
    );
}

#[test]
fn a_partition_with_writes_on_both_sides_heals_into_one_state() {
    let r = scenario("partition");
    assert_no_loss(&r);
    assert_eq!(r.members, faults::NODES + 1);
}

#[test]
fn a_killed_node_restarts_on_its_data_and_catches_up() {
    let r = scenario("node-loss");
    assert_no_loss(&r);
    assert_eq!(r.members, faults::NODES + 1);
}

#[test]
fn a_frozen_node_catches_up_when_it_thaws() {
    let r = scenario("paused-node");
    assert_no_loss(&r);
    assert_eq!(r.members, faults::NODES + 1);
}

#[test]
fn the_nodes_carry_on_without_any_bootstrap_peer() {
    let r = scenario("bootstrap-loss");
    assert_no_loss(&r);
    assert_eq!(r.members, faults::NODES, "every node but the stopped bootstrap peer");
}

#[test]
fn a_rolling_restart_of_every_member_loses_nothing() {
    let r = scenario("rolling-restart");
    assert_no_loss(&r);
    assert_eq!(r.members, faults::NODES + 1);
}

#[test]
fn the_harness_counts_an_acknowledged_record_that_no_member_holds() {
    with_engine(async |engine| {
        let w = protocol::testkit::Workflow::complete();
        let mut fed =
            Federation::launch(engine, &w.root, 2).await.unwrap_or_else(|e| panic!("{e:#}"));
        let outcome = async {
            fed.submit(1, &w.records).await?;
            // As if a member had acknowledged a record and then lost it.
            let phantom = tests::bulk_records("never-submitted", &w.root, 1).remove(0);
            fed.acked.insert(phantom.id.to_hex());
            fed.converge(&w.benchmark.to_hex(), tests::federation::CONVERGE_TIMEOUT_MS).await
        }
        .await;
        fed.teardown().await;
        let agreement = outcome.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(agreement.lost, 1);
        assert_eq!(agreement.records, w.records.len());
    })
}
