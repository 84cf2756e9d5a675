//! `medmesh ui` lets in only the holder of its one-time link, and only through
//! forms it served: no cookie sends you to sign in, a used link is refused, a
//! POST without the session's CSRF token is refused, a request for another Host
//! (DNS rebinding) is refused, and what others publish renders as text.

mod common;

use common::*;
use medmesh_cli::publish::Confirm;
use protocol::RecordId;
use protocol::record::*;

/// An HTTP client that shows redirects instead of following them.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into()
}

struct Answer {
    status: u16,
    location: String,
    cookie: String,
    body: String,
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut r = r.expect("the UI answers");
    let h = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (location, cookie) = (h("location"), h("set-cookie"));
    Answer {
        status: r.status().as_u16(),
        location,
        cookie,
        body: r.body_mut().read_to_string().unwrap_or_default(),
    }
}

fn get(url: &str, cookie: Option<&str>) -> Answer {
    let mut req = agent().get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    answer(req.call())
}

fn post(url: &str, cookie: &str, form: &str) -> Answer {
    answer(
        agent()
            .post(url)
            .header("Cookie", cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form),
    )
}

/// The value of the first hidden `csrf` field in a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token");
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[test]
fn only_the_link_holder_signs_in_and_only_through_served_forms() {
    let t = TempDir::new("ui-security");
    let node_dir = t.0.join("node");
    let admin = t.0.join("admin");
    home(&admin, None, &node_dir);
    let node = start_node(&node_dir, &admin.join("root.cbor"), &[]);
    ok(&admin, &["-y", "profile", "publish", "--name", "Admin", "--organisation", "Test"]);
    let ui = start_ui(&admin);

    // No cookie: to the sign-in page, which explains.
    let a = get(&format!("{}/", ui.base), None);
    assert_eq!(a.status, 303);
    assert_eq!(a.location, "/signin");
    let port = ui.base.rsplit(':').next().unwrap();
    let a = get(&format!("{}/benchmarks", ui.base), Some(&format!("medmesh_ui_{port}=made-up")));
    assert_eq!((a.status, a.location.as_str()), (303, "/signin"), "an unknown session is none");
    assert_eq!(get(&format!("{}/signin", ui.base), None).status, 401);
    assert_eq!(get(&format!("{}/signin?token=00", ui.base), None).status, 403);

    // The link signs in once: an HttpOnly, SameSite=Strict cookie.
    let a = get(&ui.link, None);
    assert_eq!((a.status, a.location.as_str()), (303, "/"));
    assert!(a.cookie.contains("HttpOnly") && a.cookie.contains("SameSite=Strict"), "{}", a.cookie);
    let cookie = a.cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with(&format!("medmesh_ui_{port}=")), "named by its port: {cookie}");
    let again = get(&ui.link, None);
    assert_eq!(again.status, 403, "a used link is refused");
    assert!(again.cookie.is_empty());
    let home_page = get(&format!("{}/", ui.base), Some(&cookie));
    assert_eq!(home_page.status, 200, "{}", home_page.body);
    assert!(home_page.body.contains("Signed in as"));

    // Another Host is refused, even with the cookie.
    let evil = answer(
        agent()
            .get(&format!("{}/", ui.base))
            .header("Host", "evil.example:80")
            .header("Cookie", &cookie)
            .call(),
    );
    assert_eq!(evil.status, 421);

    // Forms need the session's CSRF token.
    let form = "action=release&benchmark=".to_string() + &"ab".repeat(32);
    assert_eq!(post(&format!("{}/decisions/review", ui.base), &cookie, &form).status, 403);
    let wrong = format!("csrf={}&{form}", "0".repeat(64));
    assert_eq!(post(&format!("{}/decisions/review", ui.base), &cookie, &wrong).status, 403);
    let token = csrf_of(&home_page.body);
    let right =
        post(&format!("{}/decisions/review", ui.base), &cookie, &format!("csrf={token}&{form}"));
    assert_ne!(right.status, 403, "with the token the action runs (and fails on its merits)");
    assert!(right.body.contains("is unknown"), "{}", right.body);
    // And the session's token only works with its own cookie.
    assert_eq!(
        post(
            &format!("{}/decisions/review", ui.base),
            &format!("medmesh_ui_{port}=other"),
            &format!("csrf={token}&{form}")
        )
        .status,
        303
    );

    // What others publish is text: a benchmark named like a script.
    let h = medmesh_cli::home::Home { dir: admin.clone() };
    let control = medmesh_cli::control::Control::for_node_dir(&node_dir).unwrap();
    let keys = h.keys().unwrap();
    let evil_name = "<script>alert('x')</script>";
    let body = Body::Benchmark(Benchmark {
        name: evil_name.into(),
        description: "<img src=x onerror=alert(1)>".into(),
        docs_url: String::new(),
        demo_dataset: DemoDataset { hash: protocol::Hash32::of(b"demo"), size: 1 },
        data_preparator: RecordId::from_bytes([1; 32]),
        reference_model: RecordId::from_bytes([2; 32]),
        metrics: RecordId::from_bytes([3; 32]),
        committee: vec![keys.public()],
        threshold: 1,
        dataset_auto_approval: AutoApproval::Never,
        model_auto_approval: AutoApproval::Never,
        sharing: SharingPolicy::PerDataset,
        disclosure: Disclosure::default(),
        rank_metric: "auc".into(),
        higher_is_better: true,
    });
    let r = medmesh_cli::publish::publish(
        &control,
        &admin,
        &keys,
        h.network_id().unwrap(),
        body,
        Confirm::Yes,
    )
    .unwrap();
    for path in ["/benchmarks".to_string(), format!("/benchmarks/{}", r.id), "/admin".into()] {
        let page = get(&format!("{}{path}", ui.base), Some(&cookie));
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(
            page.body.contains("&lt;script&gt;alert('x')&lt;/script&gt;")
                || page.body.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains(evil_name) && !page.body.contains("<img src=x"), "{path}");
    }

    // A decision the network ignores is an error in the UI too, as on the command
    // line: a key that is not an admin approves the benchmark.
    let outsider = t.0.join("outsider");
    home(&outsider, Some(&admin.join("root.cbor")), &node_dir);
    let ui2 = start_ui(&outsider);
    let cookie2 = get(&ui2.link, None).cookie.split(';').next().unwrap().to_string();
    let token2 = csrf_of(&get(&format!("{}/", ui2.base), Some(&cookie2)).body);
    let decide = format!("csrf={token2}&action=benchmark&benchmark={}&decision=approve", r.id);
    let review = post(&format!("{}/decisions/review", ui2.base), &cookie2, &decide);
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(review.body.contains("benchmark_decision"), "the record is shown: {}", review.body);
    let digest = field(&review.body, "digest");
    // Signing something other than what was reviewed is refused.
    let other = post(
        &format!("{}/decisions/sign", ui2.base),
        &cookie2,
        &format!(
            "csrf={token2}&action=benchmark&benchmark={}&decision=reject&digest={digest}",
            r.id
        ),
    );
    assert_eq!(other.status, 409, "{}", other.body);
    assert!(other.body.contains("no longer the one you reviewed"), "{}", other.body);
    let signed = post(
        &format!("{}/decisions/sign", ui2.base),
        &cookie2,
        &format!("{decide}&digest={digest}"),
    );
    assert_eq!(signed.status, 409, "{}", signed.body);
    assert!(signed.body.contains("ignores it: signer is not an admin"), "{}", signed.body);
    // The admin's own approval counts.
    let decide = format!("csrf={token}&action=benchmark&benchmark={}&decision=approve", r.id);
    let review = post(&format!("{}/decisions/review", ui.base), &cookie, &decide);
    let digest = field(&review.body, "digest");
    let signed =
        post(&format!("{}/decisions/sign", ui.base), &cookie, &format!("{decide}&digest={digest}"));
    assert_eq!(signed.status, 200, "{}", signed.body);
    assert!(signed.body.contains("Signed and published"), "{}", signed.body);
    assert_eq!(node.state_downloads(), 0, "a page downloaded the whole state");
}

/// The value of a hidden field in a page.
fn field(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = page.find(&key).unwrap_or_else(|| panic!("no field {name} in {page}"));
    let rest = &page[at + key.len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[test]
fn an_admin_admits_a_join_request_after_reading_it() {
    let t = TempDir::new("ui-admit");
    let node_dir = t.0.join("node");
    let (admin, applicant) = (t.0.join("admin"), t.0.join("applicant"));
    ok(&admin, &["keys", "generate"]);
    ok(&admin, &["network", "create", "--name", "admitted-net"]);
    ok(&admin, &["profile", "set", "--node-dir", node_dir.to_str().unwrap()]);
    let root = admin.join("root.cbor");
    let key = home(&applicant, Some(&root), &node_dir);
    let node = start_node(&node_dir, &root, &[]);
    // The applicant asks to join in its own UI (the home page offers the form
    // while its key is not admitted).
    let ui_applicant = start_ui(&applicant);
    let c = get(&ui_applicant.link, None).cookie.split(';').next().unwrap().to_string();
    let page = get(&format!("{}/", ui_applicant.base), Some(&c));
    assert!(page.body.contains("Ask to join"), "{}", page.body);
    let form = format!(
        "csrf={}&role=data_owner&name=St+Luke%27s&organisation=&message=ask+%3Cb%3EDr+Smith%3C%2Fb%3E",
        csrf_of(&page.body)
    );
    let sent = post(&format!("{}/apply", ui_applicant.base), &c, &form);
    assert_eq!((sent.status, sent.location.as_str()), (303, "/"), "{}", sent.body);

    let ui = start_ui(&admin);
    let cookie = get(&ui.link, None).cookie.split(';').next().unwrap().to_string();
    let page = get(&format!("{}/admin", ui.base), Some(&cookie));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("St Luke&#39;s") || page.body.contains("St Luke's"),
        "{}",
        page.body
    );
    assert!(page.body.contains("ask &lt;b&gt;Dr Smith&lt;/b&gt;"), "the message is text");
    assert_eq!(field(&page.body, "key"), key);
    let token = csrf_of(&page.body);
    let admit = format!("csrf={token}&action=admit&key={key}&roles=asked");
    let review = post(&format!("{}/decisions/review", ui.base), &cookie, &admit);
    assert_eq!(review.status, 200, "{}", review.body);
    assert!(
        review.body.contains("admission") && review.body.contains("data_owner"),
        "{}",
        review.body
    );
    let digest = field(&review.body, "digest");
    let signed =
        post(&format!("{}/decisions/sign", ui.base), &cookie, &format!("{admit}&digest={digest}"));
    assert_eq!(signed.status, 200, "{}", signed.body);
    let members = json(&ok(&admin, &["--json", "network", "members"]));
    let m = &members["members"][0];
    assert_eq!(m["key"], key.as_str(), "{members}");
    assert_eq!(m["roles"], serde_json::json!(["data_owner"]), "{members}");
    // Admitted, the applicant's home page no longer offers the request.
    let page = get(&format!("{}/", ui_applicant.base), Some(&c));
    assert!(
        !page.body.contains("Ask to join") && page.body.contains("data owner"),
        "{}",
        page.body
    );
    assert_eq!(node.state_downloads(), 0, "a page downloaded the whole state");
}
