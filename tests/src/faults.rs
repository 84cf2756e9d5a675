//! Fault scenarios on a containerised federation ([`crate::federation`]): a
//! partition, the loss and return of a node (SIGKILL), a frozen node, the loss of
//! every bootstrap peer, and a rolling restart. Each starts a fresh federation (a
//! bootstrap peer and [`NODES`] nodes), seeds it with a whole benchmark workflow,
//! writes records during the fault (including a new leaderboard release, signed by
//! two committee members through different nodes), ends the fault, and waits until
//! every running member holds the same records, state hash and leaderboard.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use protocol::Record;
use protocol::testkit::Workflow;
use runner::Engine;
use serde::Serialize;

use crate::bulk_records;
use crate::federation::{CONVERGE_TIMEOUT_MS, Federation, Net};

/// Nodes in each scenario's federation (plus one bootstrap peer).
pub const NODES: usize = 5;
/// Records one signer adds during a fault (some scenarios use twice as many from
/// one signer, past its gossip burst of 256, so that some travel by sync).
pub const RECORDS_PER_SIGNER: usize = 150;
/// How long the partition lasts after the writes have crossed the island's link.
pub const PARTITION_HOLD_MS: u64 = 12_000;

/// The names of the scenarios, in the order [`run`] knows them.
pub const SCENARIOS: [&str; 5] =
    ["partition", "node-loss", "paused-node", "bootstrap-loss", "rolling-restart"];

/// What one scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    /// What was done to the federation.
    pub fault: String,
    /// Members running at the end (all of them agree).
    pub members: usize,
    /// Records acknowledged by a member during the fault.
    pub written: usize,
    /// Records acknowledged by some member (ever) that a running member lacks at the end.
    pub lost: usize,
    /// From the end of the fault to agreement (records, state hash, leaderboard).
    pub converge_ms: u64,
    /// Records every member holds at the end.
    pub records: usize,
    pub state_hash: String,
    /// The leaderboard's release round at the end (the release written during the fault).
    pub release_round: u64,
}

/// Run one scenario by name on a fresh federation; the federation is removed
/// afterwards, whatever happens.
pub async fn run(engine: &Engine, scenario: &str) -> Result<Report> {
    let w = Workflow::complete();
    let mut fed = Federation::launch(engine, &w.root, NODES).await?;
    let outcome = match scenario {
        "partition" => partition(&mut fed, w).await,
        "node-loss" => node_loss(&mut fed, w).await,
        "paused-node" => paused_node(&mut fed, w).await,
        "bootstrap-loss" => bootstrap_loss(&mut fed, w).await,
        "rolling-restart" => rolling_restart(&mut fed, w).await,
        other => Err(anyhow::anyhow!(
            "no scenario named {other}; the scenarios are {}",
            SCENARIOS.join(", ")
        )),
    };
    let logs = fed.logs.clone();
    fed.teardown().await;
    outcome
        .map_err(|e| e.context(format!("scenario {scenario} (member logs in {})", logs.display())))
}

/// The hex id of the workflow's benchmark, as the control API writes it.
fn benchmark_hex(w: &Workflow) -> String {
    w.benchmark.to_hex()
}

/// Submit the whole workflow and wait for agreement on release round 1.
async fn seed(fed: &mut Federation, w: &Workflow) -> Result<()> {
    let nodes: Vec<usize> = fed.nodes().collect();
    fed.submit_spread(&nodes, &w.records).await?;
    let a = fed.converge(&benchmark_hex(w), CONVERGE_TIMEOUT_MS).await?;
    ensure!(a.lost == 0, "{} seeded records lost", a.lost);
    ensure!(
        round(&a.leaderboard) == 1,
        "the seeded leaderboard shows round {}, not 1",
        round(&a.leaderboard)
    );
    Ok(())
}

fn round(leaderboard: &serde_json::Value) -> u64 {
    leaderboard["release_round"].as_u64().unwrap_or(0)
}

/// Release round `r` signed by committee member `member` alone (a second
/// signature, from another member, brings it to the threshold of two).
fn release_signature(w: Workflow, r: u64, member: usize) -> (Workflow, Vec<Record>) {
    let before = w.records.len();
    let w = w.release(r, &[member], |m, d| 810_000 + 40_000 * m as i64 + 2_000 * d as i64);
    let new = w.records[before..].to_vec();
    (w, new)
}

/// Wait for agreement; `ended` is when the fault ended (before the heal, restart or
/// thaw that ends it), from which the time to converge counts.
async fn finish(
    fed: &Federation,
    w: &Workflow,
    ended: Instant,
    scenario: &str,
    fault: String,
    written: usize,
    expect_round: u64,
) -> Result<Report> {
    let a = fed.converge(&benchmark_hex(w), CONVERGE_TIMEOUT_MS).await?;
    let report = Report {
        scenario: scenario.into(),
        fault,
        members: a.members,
        written,
        lost: a.lost,
        converge_ms: a.at.duration_since(ended).as_millis() as u64,
        records: a.records,
        state_hash: a.state_hash,
        release_round: round(&a.leaderboard),
    };
    if report.lost > 0 {
        bail!("{} acknowledged records lost: {report:?}", report.lost);
    }
    ensure!(
        report.release_round == expect_round,
        "the leaderboard shows round {}, not {expect_round}: {report:?}",
        report.release_round
    );
    Ok(report)
}

/// Nodes 4 and 5 lose the shared network but keep their private line; both sides
/// write (including one signature each of release round 2); then the cut heals.
async fn partition(fed: &mut Federation, w: Workflow) -> Result<Report> {
    seed(fed, &w).await?;
    let (island, main) = ([4, 5], [1, 2, 3]);
    for i in island {
        fed.disconnect(i, Net::Mesh).await?;
    }
    let (w, sig_main) = release_signature(w, 2, 0);
    let (w, sig_island) = release_signature(w, 2, 1);
    let main_records = bulk_records("partition-main", &w.root, RECORDS_PER_SIGNER);
    let island_records = bulk_records("partition-island", &w.root, RECORDS_PER_SIGNER);
    let mut written =
        fed.submit_spread(&main, &main_records).await? + fed.submit(2, &sig_main).await?;
    written +=
        fed.submit_spread(&island, &island_records).await? + fed.submit(5, &sig_island).await?;
    // The island's own line carries its records between its two nodes (once they
    // have noticed the cut and redialled each other there)...
    let (main_id, island_id) = (hex(&main_records[0]), hex(&island_records[0]));
    fed.wait_holds(5, &island_id, CONVERGE_TIMEOUT_MS)
        .await
        .context("node4's record over the island's private line")?;
    tokio::time::sleep(Duration::from_millis(PARTITION_HOLD_MS)).await;
    // ...while the cut is real: neither side holds what the other wrote.
    ensure!(
        !fed.holds(1, &island_id).await?,
        "node1 holds a record written on the island during the partition"
    );
    ensure!(
        !fed.holds(4, &main_id).await?,
        "node4 holds a record written on the main side during the partition"
    );
    let ended = Instant::now();
    for i in island {
        fed.connect(i, Net::Mesh).await?;
    }
    finish(
        fed,
        &w,
        ended,
        "partition",
        "nodes 4 and 5 cut from the shared network (kept their private line), then reconnected"
            .into(),
        written,
        2,
    )
    .await
}

/// Node 3 is killed (SIGKILL); the others write; it starts again on its data.
async fn node_loss(fed: &mut Federation, w: Workflow) -> Result<Report> {
    seed(fed, &w).await?;
    fed.kill(3).await?;
    let (w, sig_a) = release_signature(w, 2, 0);
    let (w, sig_b) = release_signature(w, 2, 2);
    let records = bulk_records("node-loss", &w.root, RECORDS_PER_SIGNER * 2);
    let mut written = fed.submit_spread(&[1, 2, 4, 5], &records).await?;
    written += fed.submit(1, &sig_a).await? + fed.submit(5, &sig_b).await?;
    let ended = Instant::now();
    fed.start(3).await?;
    finish(
        fed,
        &w,
        ended,
        "node-loss",
        "node3 killed with SIGKILL while the others wrote, then started again".into(),
        written,
        2,
    )
    .await
}

/// Node 2 is frozen (its sockets stay open but nothing answers); the others write,
/// and keep going until every one of them has dropped it for not answering pings;
/// then it thaws.
async fn paused_node(fed: &mut Federation, w: Workflow) -> Result<Report> {
    seed(fed, &w).await?;
    fed.pause(2).await?;
    let (w, sig_a) = release_signature(w, 2, 1);
    let (w, sig_b) = release_signature(w, 2, 2);
    let records = bulk_records("paused-node", &w.root, RECORDS_PER_SIGNER * 2);
    let mut written = fed.submit_spread(&[1, 3, 4, 5], &records).await?;
    written += fed.submit(3, &sig_a).await? + fed.submit(4, &sig_b).await?;
    fed.wait_dropped_by_all(2, CONVERGE_TIMEOUT_MS)
        .await
        .context("peers dropping the frozen node")?;
    let ended = Instant::now();
    fed.unpause(2).await?;
    finish(fed, &w, ended, "paused-node", "node2 frozen (docker pause) while the others wrote, until every peer dropped it, then thawed".into(), written, 2).await
}

/// Once the nodes know each other, the only bootstrap peer stops for good. The
/// nodes keep writing; node 3 even restarts and must find the others without it.
async fn bootstrap_loss(fed: &mut Federation, w: Workflow) -> Result<Report> {
    seed(fed, &w).await?;
    fed.wait_fully_connected(CONVERGE_TIMEOUT_MS).await?;
    fed.stop(0).await?;
    let (w, sig_a) = release_signature(w, 2, 0);
    let records = bulk_records("bootstrap-loss", &w.root, RECORDS_PER_SIGNER * 2);
    let mut written =
        fed.submit_spread(&[1, 2, 3, 4, 5], &records).await? + fed.submit(2, &sig_a).await?;
    fed.restart(3).await?;
    let (w, sig_b) = release_signature(w, 2, 1);
    let later = bulk_records("bootstrap-loss-later", &w.root, RECORDS_PER_SIGNER);
    written += fed.submit_spread(&[1, 3, 5], &later).await? + fed.submit(3, &sig_b).await?;
    let ended = Instant::now();
    finish(
        fed,
        &w,
        ended,
        "bootstrap-loss",
        "the only bootstrap peer stopped for good; node3 restarted meanwhile".into(),
        written,
        2,
    )
    .await
}

/// Every member in turn, the bootstrap peer first, stops cleanly while another
/// writes, and starts again.
async fn rolling_restart(fed: &mut Federation, w: Workflow) -> Result<Report> {
    seed(fed, &w).await?;
    let (w, sig_a) = release_signature(w, 2, 0);
    let (w, sig_b) = release_signature(w, 2, 2);
    let mut sigs = vec![sig_a, sig_b];
    let mut written = 0;
    let members = fed.members.len();
    let mut ended = Instant::now();
    for i in 0..members {
        fed.stop(i).await?;
        let writer = if i + 1 < members { i + 1 } else { 1 };
        let records = bulk_records(&format!("rolling-{i}"), &w.root, RECORDS_PER_SIGNER / 2);
        written += fed.submit(writer, &records).await?;
        if i % 3 == 1
            && let Some(sig) = sigs.pop()
        {
            written += fed.submit(writer, &sig).await?;
        }
        ended = Instant::now();
        fed.start(i).await?;
    }
    finish(fed, &w, ended, "rolling-restart", format!("each of the {members} members stopped (SIGTERM) and started in turn while another wrote"), written, 2).await
}

fn hex(r: &Record) -> String {
    r.id.to_hex()
}

/// The reports as a Markdown table.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| scenario | members at end | records written during the fault | records lost | time to converge | records in all | release round |\n",
    );
    out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    for r in reports {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} s | {} | {} |\n",
            r.scenario,
            r.members,
            r.written,
            r.lost,
            r.converge_ms as f64 / 1000.0,
            r.records,
            r.release_round
        ));
    }
    out
}
