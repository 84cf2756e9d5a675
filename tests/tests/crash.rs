//! Crash consistency: a real `medmesh node start` process ingests 10,000 records
//! through its control API from several concurrent clients and is SIGKILLed at
//! seeded random points while requests are in flight. After each restart the
//! store opens, every record the node acknowledged (HTTP 200) is there, and the
//! clients resubmit what was never acknowledged. A last SIGKILL right after the
//! final acknowledgement shows that an acknowledgement means durable.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::RecordId;
use protocol::testkit::Workflow;
use tests::{KillOnDrop, bulk_records, try_http_within, workspace_bin};

/// Records ingested in all.
const RECORDS: usize = 10_000;
/// SIGKILLs while records are in flight (then one more after the last ack).
const KILLS: usize = 4;
/// Concurrent control API clients.
const CLIENTS: usize = 4;
/// Deadline for a started node to answer on its control API.
const START_TIMEOUT_MS: u64 = 60_000;
/// Deadline for one round of submissions.
const ROUND_TIMEOUT_MS: u64 = 600_000;
/// Timeout on one control API request.
const REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Start `medmesh node start` on `dir` and wait for its control API.
async fn start(
    exe: &Path,
    dir: &Path,
    root: &Path,
    log: &Path,
) -> (KillOnDrop, SocketAddr, String) {
    let addr_file = dir.join("control.addr");
    // A SIGKILLed node leaves its control.addr behind; wait for the new one.
    let _ = std::fs::remove_file(&addr_file);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let child = Command::new(exe)
        .args(["node", "start", "--data-dir"])
        .arg(dir)
        .arg("--root")
        .arg(root)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("medmesh node start runs");
    let mut proc = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
    loop {
        if let Some(status) = proc.0.try_wait().expect("wait on the node") {
            panic!("the node exited at start with {status}; see its log");
        }
        if let Some(addr) = std::fs::read_to_string(&addr_file)
            .ok()
            .and_then(|s| s.trim().parse::<SocketAddr>().ok())
            && let Ok((200, _)) = request(addr, "GET", "/v1/status", None, &[]).await
        {
            let token = std::fs::read_to_string(dir.join("control.token")).expect("control.token");
            return (proc, addr, token.trim().to_string());
        }
        assert!(Instant::now() < deadline, "the node did not answer on its control API in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP/1.1 request; any transport failure is an error (the node may be dead).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    try_http_within(Duration::from_millis(REQUEST_TIMEOUT_MS), addr, method, path, token, body)
        .await
}

/// Every id the node holds, through the paged list endpoint.
async fn held_ids(addr: SocketAddr) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/records?limit=10000&after={a}"),
            None => "/v1/records?limit=10000".to_string(),
        };
        let (code, body) = request(addr, "GET", &path, None, &[]).await.expect("list records");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        for id in v["ids"].as_array().expect("ids") {
            out.insert(id.as_str().expect("hex id").to_string());
        }
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

/// Submit the queued records from `CLIENTS` concurrent clients until the queue is
/// empty or the node dies; marks each acknowledged index.
async fn submit_round(
    addr: SocketAddr,
    token: String,
    records: Arc<Vec<Vec<u8>>>,
    queue: Arc<Mutex<VecDeque<usize>>>,
    acked: Arc<Mutex<Vec<bool>>>,
    acks: Arc<AtomicU64>,
) {
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (records, queue, acked, acks, token) =
            (records.clone(), queue.clone(), acked.clone(), acks.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(i) = queue.lock().expect("queue").pop_front() else { return };
                match request(addr, "POST", "/v1/records", Some(&token), &records[i]).await {
                    Ok((200, _)) => {
                        acked.lock().expect("acked")[i] = true;
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((code, body)) => {
                        panic!("record {i} refused with {code}: {}", String::from_utf8_lossy(&body))
                    }
                    // The node died under us: this one was never acknowledged.
                    Err(_) => return,
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
}

/// Check that every acknowledged record is held; returns how many are held.
async fn check_acknowledged(addr: SocketAddr, ids: &[RecordId], acked: &[bool]) -> u64 {
    let held = held_ids(addr).await;
    let missing: Vec<usize> =
        (0..ids.len()).filter(|&i| acked[i] && !held.contains(&ids[i].to_hex())).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost after SIGKILL, e.g. index {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    held.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_ingesting_10000_records_loses_no_acknowledged_record() {
    let exe = workspace_bin("medmesh");
    let w = Workflow::people();
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("root.cbor");
    std::fs::write(&root, w.root.to_bytes()).expect("root file");
    let dir = tmp.path().join("node");
    let log = tmp.path().join("node.log");

    let signed = bulk_records("crash", &w.root, RECORDS);
    let ids: Vec<RecordId> = signed.iter().map(|r| r.id).collect();
    let records: Arc<Vec<Vec<u8>>> = Arc::new(signed.iter().map(|r| r.bytes.to_vec()).collect());
    let acked = Arc::new(Mutex::new(vec![false; RECORDS]));

    // Seeded kill points: after this many further acknowledgements in each round.
    let seed = std::env::var("MEDMESH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x0c4a_54ed);
    let mut x = seed | 1;
    let mut next_rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let started = Instant::now();
    for round in 0..=KILLS {
        let (mut proc, addr, token) = start(&exe, &dir, &root, &log).await;
        let acked_now: Vec<bool> = acked.lock().expect("acked").clone();
        let held = check_acknowledged(addr, &ids, &acked_now).await;
        let before = acked_now.iter().filter(|a| **a).count() as u64;
        eprintln!(
            "round {round}: store opened with {held} records; all {before} acknowledged records present"
        );

        let queue: VecDeque<usize> = (0..RECORDS).filter(|&i| !acked_now[i]).collect();
        let queue = Arc::new(Mutex::new(queue));
        let acks = Arc::new(AtomicU64::new(0));
        let round_task = tokio::spawn(submit_round(
            addr,
            token.clone(),
            records.clone(),
            queue.clone(),
            acked.clone(),
            acks.clone(),
        ));
        let remaining = RECORDS as u64 - before;
        let deadline = Instant::now() + Duration::from_millis(ROUND_TIMEOUT_MS);
        if round < KILLS {
            // Kill somewhere in the first 2/3 of what is left, mid-request.
            let kill_after = 1 + next_rand() % (remaining * 2 / 3 / (KILLS - round) as u64).max(1);
            while acks.load(Ordering::SeqCst) < kill_after {
                assert!(Instant::now() < deadline, "round {round} too slow");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            proc.0.kill().expect("SIGKILL");
            let _ = proc.0.wait();
            round_task.await.expect("round");
            eprintln!(
                "round {round}: SIGKILL after {} acknowledgements in this round",
                acks.load(Ordering::SeqCst)
            );
        } else {
            tokio::time::timeout_at(deadline.into(), round_task)
                .await
                .expect("the last round finishes in time")
                .expect("round");
            assert!(
                acked.lock().expect("acked").iter().all(|a| *a),
                "every record acknowledged in the last round"
            );
            // Killed right after the last acknowledgement: acknowledged means durable.
            proc.0.kill().expect("SIGKILL");
            let _ = proc.0.wait();
        }
    }
    let (_proc, addr, _) = start(&exe, &dir, &root, &log).await;
    let acked_now = acked.lock().expect("acked").clone();
    let held = check_acknowledged(addr, &ids, &acked_now).await;
    assert_eq!(held, RECORDS as u64, "exactly the submitted records are held");
    eprintln!(
        "{RECORDS} records, {} SIGKILLs, 0 acknowledged records lost, {:.1} s",
        KILLS + 1,
        started.elapsed().as_secs_f64()
    );
}
