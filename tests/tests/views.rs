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

/// The complete workflow in a network that admits keys (so that it has members).
fn admitted() -> Workflow {
    Workflow::people_in(protocol::root::AdmissionMode::Admitted)
        .with_benchmark(|_| {})
        .approve_benchmark()
        .register_datasets()
        .request_models()
        .approve_all()
        .submit_results()
        .release(1, &[0, 1], |m, d| 800_000 + 50_000 * m as i64 + 1_000 * d as i64)
}

#[tokio::test]
async fn single_record_queries_answer_what_the_whole_state_says() {
    let w = admitted();
    let (n, _dir, addr) = node_with(&w).await;
    let (status, whole) = get(addr, "/v1/state/all").await;
    assert_eq!(status, 200);
    // /metrics counts the whole-state views served (what the CLI's tests assert
    // stays 0).
    let (_, metrics) = http(addr, "GET", "/metrics", None, &[]).await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("\nmedmesh_control_state_downloads_total 1\n"), "{metrics}");
    // Every record by id, as the whole state holds it.
    for (route, view) in [
        ("benchmarks", "benchmarks"),
        ("containers", "containers"),
        ("datasets", "datasets"),
        ("profiles", "profiles"),
        ("releases", "releases"),
    ] {
        let map = whole[view].as_object().unwrap();
        assert!(!map.is_empty(), "{view}");
        for (id, item) in map {
            let (status, one) = get(addr, &format!("/v1/{route}/{id}")).await;
            assert_eq!((status, &one), (200, item), "{route}/{id}");
        }
    }
    let results = whole["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        let id = r["id"].as_str().unwrap();
        assert_eq!(get(addr, &format!("/v1/results/{id}")).await, (200, r.clone()), "{id}");
    }
    // The network, each key's standing, the members page by page.
    let (_, net) = get(addr, "/v1/network").await;
    for k in ["network", "records", "hash", "admin_epoch", "admins", "admin_threshold", "admission"]
    {
        assert_eq!(net[k], whole[k], "{k}");
    }
    let members = whole["members"].as_array().unwrap();
    assert!(!members.is_empty(), "an admitted network has members");
    assert_eq!(net["members"], members.len());
    assert_eq!(&every(addr, "/v1/members", 1).await, members);
    for m in members {
        let key = m["key"].as_str().unwrap();
        let (_, k) = get(addr, &format!("/v1/keys/{key}")).await;
        assert_eq!((&k["member"], &k["admitted"], &k["admin"]), (m, &true.into(), &false.into()));
        assert_eq!(k["profile"], whole["profiles"][key], "{key}");
    }
    let admin = w.admin.public().to_string();
    let (_, k) = get(addr, &format!("/v1/keys/{admin}")).await;
    assert_eq!((&k["admin"], &k["member"]), (&true.into(), &Value::Null));
    let stranger = protocol::PublicKey::from(&protocol::testkit::key("stranger"));
    let (_, k) = get(addr, &format!("/v1/keys/{stranger}")).await;
    assert_eq!(k["admitted"], false, "a stranger is not admitted");
    // A committee member's committees, grants (none: the models are public).
    let b = w.benchmark.to_hex();
    let member = w.committee[0].public().to_string();
    let mine = every(addr, &format!("/v1/committees/{member}"), 1).await;
    assert_eq!(mine, vec![whole["benchmarks"][&b].clone()]);
    assert!(every(addr, &format!("/v1/committees/{admin}"), 10).await.is_empty());
    let (m, d) = (w.models[0].to_hex(), w.datasets[0].to_hex());
    let (status, g) = get(addr, &format!("/v1/grants/{m}/{d}")).await;
    assert_eq!((status, &g["grant"], &g["revoked"]), (200, &Value::Null, &false.into()));
    assert!(every(addr, &format!("/v1/grants?model={m}"), 10).await.is_empty());
    // Lookups: by exact public name, by id prefix.
    let name = whole["benchmarks"][&b]["benchmark"]["name"].as_str().unwrap().to_string();
    let (_, l) = get(addr, &format!("/v1/lookup/benchmark?q={name}")).await;
    assert_eq!(l["named"][0]["id"], b, "{l}");
    let (_, l) = get(addr, &format!("/v1/lookup/dataset?q={}", &d[..6])).await;
    assert_eq!((&l["prefixed"][0]["id"], &l["more"]), (&Value::from(d.clone()), &false.into()));
    let r0 = results[0]["id"].as_str().unwrap();
    let (_, l) = get(addr, &format!("/v1/lookup/result?q={}", &r0[..8])).await;
    assert_eq!(l["prefixed"][0]["id"], r0);
    let (_, l) = get(addr, "/v1/lookup/container?q=no-such-name").await;
    assert_eq!(
        (l["named"].as_array().unwrap().len(), l["prefixed"].as_array().unwrap().len()),
        (0, 0)
    );
    // Search over public names, any case, and names of records and keys.
    let found = every(addr, &format!("/v1/benchmarks?q={}", name[1..].to_uppercase()), 1).await;
    assert_eq!(found, vec![whole["benchmarks"][&b].clone()]);
    let containers = whole["containers"].as_object().unwrap();
    let (cid, c) = containers.iter().next().unwrap();
    let cname = c["container"]["name"].as_str().unwrap();
    let found = every(addr, &format!("/v1/containers?q={cname}"), 100).await;
    assert!(found.iter().any(|x| x["id"] == cid.as_str()), "{cname}");
    let (_, names) = get(addr, &format!("/v1/names?ids={b},{cid}&keys={member}")).await;
    assert_eq!(names["ids"][&b], name);
    assert_eq!(names["ids"][cid], cname);
    assert_eq!(names["keys"][&member], whole["profiles"][&member]["profile"]["name"]);
    // The leaderboard's cells, page by page.
    let cells = whole["leaderboards"][&b]["cells"].as_array().unwrap().clone();
    assert!(!cells.is_empty(), "a per-dataset release has cells");
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/leaderboards/{b}/cells?limit=1&after={a}"),
            None => format!("/v1/leaderboards/{b}/cells?limit=1"),
        };
        let (status, p) = get(addr, &path).await;
        assert_eq!(status, 200, "{path}: {p}");
        assert_eq!(p["total_cells"], cells.len());
        got.extend(p["cells"].as_array().unwrap().iter().cloned());
        match p["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(got, cells);
    n.shutdown().await;
}

#[tokio::test]
async fn single_record_queries_bound_what_they_take_and_name_what_is_unknown() {
    let w = Workflow::complete();
    let (n, _dir, addr) = node_with(&w).await;
    let unknown = "00000000000000000000000000000000000000000000000000000000000000aa";
    let stranger = protocol::PublicKey::from(&protocol::testkit::key("stranger"));
    for (path, code, error) in [
        (format!("/v1/benchmarks/{unknown}"), 404, "unknown_benchmark"),
        (format!("/v1/containers/{unknown}"), 404, "unknown_container"),
        (format!("/v1/datasets/{unknown}"), 404, "unknown_dataset"),
        (format!("/v1/results/{unknown}"), 404, "unknown_result"),
        (format!("/v1/profiles/{stranger}"), 404, "unknown_profile"),
        (format!("/v1/profiles/{}", "ab".repeat(32)), 400, "bad_key"),
        (format!("/v1/releases/{unknown}"), 404, "unknown_release"),
        (format!("/v1/leaderboards/{unknown}/cells"), 404, "unknown_benchmark"),
        ("/v1/benchmarks/abcd".to_string(), 400, "bad_id"),
        ("/v1/keys/xyz".to_string(), 400, "bad_key"),
        ("/v1/grants".to_string(), 400, "bad_query"),
        ("/v1/members?after=zz".to_string(), 400, "bad_cursor"),
        (format!("/v1/leaderboards/{}/cells?after=7.0", w.benchmark.to_hex()), 400, "bad_cursor"),
        (format!("/v1/leaderboards/{}/cells?after=1.999", w.benchmark.to_hex()), 400, "bad_cursor"),
        ("/v1/lookup/benchmark".to_string(), 400, "bad_query"),
        ("/v1/lookup/planet?q=x".to_string(), 404, "unknown_kind"),
        (format!("/v1/benchmarks?q={}", "x".repeat(201)), 400, "bad_query"),
        (format!("/v1/datasets?q=a&owner={}", w.hospitals[0].public()), 400, "bad_query"),
        (format!("/v1/names?ids={}", vec![unknown; 201].join(",")), 400, "bad_query"),
    ] {
        let (status, v) = get(addr, &path).await;
        assert_eq!((status, v["error"].as_str()), (code, Some(error)), "{path}: {v}");
        assert!(!v["message"].as_str().unwrap().is_empty(), "{path}");
    }
    let (_, v) = get(addr, &format!("/v1/datasets/{unknown}")).await;
    assert!(v["message"].as_str().unwrap().contains(unknown), "the message names the id: {v}");
    // A limit past the bound is clamped.
    let (status, v) = get(addr, "/v1/members?limit=4000000000").await;
    assert_eq!(status, 200);
    assert!(v["items"].as_array().unwrap().len() <= node::views::VIEW_PAGE_MAX as usize);
    let (status, v) =
        get(addr, &format!("/v1/leaderboards/{}/cells?limit=0", w.benchmark.to_hex())).await;
    assert_eq!((status, v["cells"].as_array().unwrap().len()), (200, 1), "a zero limit is one");
    n.shutdown().await;
}
