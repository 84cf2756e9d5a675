//! The control API's paged views on a real node: pages follow `next` to exactly
//! the state's lists, filters select, cursors survive new records, and a hostile
//! query gets a bounded page or a 400, never the whole state.

use protocol::record::DatasetState;
use protocol::testkit::Workflow;
use serde_json::Value;
use tests::{config, http};

async fn node_with(w: &Workflow) -> (node::Node, tempfile::TempDir, std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &w.root, &[]);
    cfg.control = Some("127.0.0.1:0".parse().unwrap());
    let n = node::Node::start(cfg).await.unwrap();
    tests::submit_all(&n.client(), &w.records).await;
    let addr = n.control_addr().unwrap();
    (n, dir, addr)
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http(addr, "GET", path, None, &[]).await;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, v)
}

/// Every item of a view, `limit` per page, following `next`.
async fn every(addr: std::net::SocketAddr, route: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let sep = if route.contains('?') { '&' } else { '?' };
        let mut path = format!("{route}{sep}limit={limit}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let (status, v) = get(addr, &path).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert!(v["items"].as_array().unwrap().len() <= limit as usize);
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn every_paged_view_returns_the_state_list_page_by_page() {
    let w = Workflow::complete();
    let (n, _dir, addr) = node_with(&w).await;
    for view in ["benchmarks", "containers", "datasets", "associations", "results"] {
        let (status, whole) = get(addr, &format!("/v1/state/{view}")).await;
        assert_eq!(status, 200);
        // Maps by id list their values in id order; vectors in their own order.
        let whole: Vec<Value> = match whole {
            Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
            Value::Array(a) => a,
            other => panic!("{view}: {other}"),
        };
        assert!(!whole.is_empty(), "{view}");
        for limit in [1, 2, 1000] {
            assert_eq!(
                every(addr, &format!("/v1/{view}"), limit).await,
                whole,
                "{view} by {limit}"
            );
        }
    }
    n.shutdown().await;
}

#[tokio::test]
async fn filters_select_by_benchmark_owner_subject_kind_status_and_model() {
    let w = Workflow::complete();
    let (n, _dir, addr) = node_with(&w).await;
    let b = w.benchmark.to_hex();
    let models = every(addr, &format!("/v1/associations?benchmark={b}&kind=model"), 1).await;
    assert_eq!(models.len(), w.models.len());
    assert!(models.iter().all(|a| a["subject"]["model"].is_string()));
    let pending = every(addr, "/v1/associations?status=pending", 10).await;
    assert!(pending.is_empty(), "every association is approved");
    let one =
        every(addr, &format!("/v1/associations?subject={}", w.datasets[0].to_hex()), 10).await;
    assert_eq!(one.len(), 1);
    let mine = every(addr, &format!("/v1/datasets?owner={}", w.hospitals[1].public()), 10).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], w.datasets[1].to_hex());
    let of_model =
        every(addr, &format!("/v1/results?benchmark={b}&model={}", w.models[0].to_hex()), 1).await;
    assert!(!of_model.is_empty());
    assert!(of_model.iter().all(|r| r["model"] == w.models[0].to_hex()));
    let (status, lb) = get(addr, &format!("/v1/leaderboards/{b}?limit=1")).await;
    assert_eq!(status, 200);
    let (_, whole) = get(addr, &format!("/v1/benchmarks/{b}/leaderboard")).await;
    assert_eq!(lb["rows"][0], whole["rows"][0]);
    assert_eq!(lb["total_rows"], whole["rows"].as_array().unwrap().len());
    assert!(lb["next"].is_string(), "two models: a second page");
    n.shutdown().await;
}

#[tokio::test]
async fn a_cursor_continues_after_new_records_arrive() {
    let w = Workflow::complete();
    let (n, _dir, addr) = node_with(&w).await;
    let (_, first) = get(addr, "/v1/datasets?limit=1").await;
    let cursor = first["next"].as_str().unwrap().to_string();
    let first_id = first["items"][0]["id"].as_str().unwrap().to_string();
    let mut w2 = w.clone();
    let body = w2.dataset(2, "late", DatasetState::Development);
    let late = w2.push(|w| &mut w.hospitals[2], body);
    n.client().submit(&late.bytes).await.unwrap();
    let (status, rest) = get(addr, &format!("/v1/datasets?limit=100&after={cursor}")).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        rest["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| *id > first_id.as_str()), "the page continues after the cursor");
    let (_, all) = get(addr, "/v1/datasets?limit=100").await;
    assert_eq!(all["items"].as_array().unwrap().len(), w.datasets.len() + 1);
    n.shutdown().await;
}

#[tokio::test]
async fn a_hostile_query_gets_a_400_or_a_bounded_page() {
    let w = Workflow::complete();
    let (n, _dir, addr) = node_with(&w).await;
    for (path, error) in [
        ("/v1/datasets?after=zz", "bad_cursor"),
        ("/v1/associations?after=00.q.00", "bad_cursor"),
        ("/v1/results?after=1.2.3", "bad_cursor"),
        ("/v1/associations?status=maybe", "bad_status"),
        ("/v1/associations?kind=both", "bad_kind"),
        ("/v1/datasets?benchmark=abc", "bad_id"),
        ("/v1/datasets?owner=abc", "bad_key"),
    ] {
        let (status, v) = get(addr, path).await;
        assert_eq!((status, v["error"].as_str()), (400, Some(error)), "{path}");
    }
    let (status, v) = get(
        addr,
        "/v1/leaderboards/00000000000000000000000000000000000000000000000000000000000000aa",
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (404, Some("unknown_benchmark")));
    // A limit past the bound is clamped, not refused.
    let (status, v) = get(addr, "/v1/results?limit=4000000000").await;
    assert_eq!(status, 200);
    assert!(v["items"].as_array().unwrap().len() <= node::views::VIEW_PAGE_MAX as usize);
    n.shutdown().await;
}
