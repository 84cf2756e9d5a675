//! The tutorial's flow in a real browser: Debian's chromium driven through
//! WebDriver, one browser session per role, each signed in to its own
//! `medmesh ui` with its own home. The admin approves the benchmark; a hospital
//! prepares, registers and associates its data; a committee member reviews and
//! approves the association; the hospital runs the benchmark with live logs; the
//! committee member releases; the leaderboard page, empty before, shows the model.
//! Screenshots of every step are kept in target/tmp/ui-screens/.

mod common;
mod webdriver;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;
use webdriver::{Browser, Driver};

fn screens() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screens")
}

/// Every visible form control has a label (or an aria-label).
fn assert_labelled(b: &Browser, page: &str) {
    let unlabelled = b.execute(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]\
           .filter(e => !e.getAttribute('aria-label') && !(e.id && document.querySelector(`label[for='${e.id}']`)))\
           .map(e => e.outerHTML);",
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "controls without a label on {page}");
}

/// Sign a browser in with the UI's one-time link.
fn sign_in(b: &Browser, ui: &UiProcess) {
    b.go(&ui.link);
    b.wait_text("main", "Signed in as", None);
}

/// The job page the browser is on: wait for its outcome (the script reloads the
/// page when the event stream says the job ended); returns the outcome's text.
fn job_outcome(b: &Browser) -> String {
    b.wait_url("/jobs/");
    b.wait_text("#status", "", None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        if let Some(t) = b.text("#outcome") {
            return t;
        }
        assert!(std::time::Instant::now() < deadline, "the job did not end: {}", b.source());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_committee_member_approves_in_the_browser_a_data_owner_runs_and_the_leaderboard_updates() {
    let Some((chromium, chromedriver)) = webdriver::tools() else { return };
    let images = Images::build("ui");
    // The screenshots are this run's.
    let _ = std::fs::remove_dir_all(screens());
    let t = TempDir::new("ui-browser");
    let node_dir = t.0.join("node");
    let (admin, member, hospital, modeller) =
        (t.0.join("admin"), t.0.join("member"), t.0.join("hospital"), t.0.join("modeller"));
    home(&admin, None, &node_dir);
    let root = admin.join("root.cbor");
    let member_key = home(&member, Some(&root), &node_dir);
    home(&hospital, Some(&root), &node_dir);
    home(&modeller, Some(&root), &node_dir);
    let node = start_node(&node_dir, &root, &[]);
    // The model owner publishes its profile in the browser, below.
    let people = [(&admin, "Admin"), (&member, "Dr Member"), (&hospital, "St Luke's")];
    for (h, name) in people {
        ok(h, &["-y", "profile", "publish", "--name", name, "--organisation", "Test"]);
    }

    // The benchmark owner (the admin here) registers the containers on the command
    // line (the model owner does it in the browser below).
    let ex = workspace().join("examples");
    let container = |name: &str, dir: &str, image: usize| {
        let (tag, digest) = &images.0[image];
        let d = ex.join(dir);
        let mut args: Vec<String> =
            ["--json", "-y", "container", "submit", "--name", name].map(String::from).to_vec();
        args.extend(["--manifest".into(), d.join("container_config.yaml").display().to_string()]);
        args.extend(["--digest".into(), digest.clone(), "--image".into(), tag.clone()]);
        if d.join("parameters.yaml").exists() {
            args.extend(["--parameters".into(), d.join("parameters.yaml").display().to_string()]);
        }
        if d.join("additional_files").exists() {
            let af = d.join("additional_files").display().to_string();
            args.extend(["--additional-files".into(), af]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        json(&ok(&admin, &args))["id"].as_str().unwrap().to_string()
    };
    container("preparator", "preparator", 0);
    let reference = container("reference-logistic", "model_logistic", 1);
    container("metrics", "metrics", 3);
    let (ui_admin, ui_member, ui_hospital) =
        (start_ui(&admin), start_ui(&member), start_ui(&hospital));
    let driver = Driver::start(&chromium, &chromedriver, &t.0.join("chromedriver.log"));
    let b_admin = driver.browser(&t.0.join("browser-admin"));
    let b_member = driver.browser(&t.0.join("browser-member"));
    let b_hospital = driver.browser(&t.0.join("browser-hospital"));
    let ui_modeller = start_ui(&modeller);
    let b_modeller = driver.browser(&t.0.join("browser-modeller"));
    let shot = |b: &Browser, name: &str| b.screenshot(&screens().join(format!("{name}.png")));

    // The benchmark owner submits the benchmark in the browser (the compatibility
    // test runs first); the committee is one member.
    sign_in(&b_admin, &ui_admin);
    b_admin.go(&format!("{}/owner", ui_admin.base));
    assert_labelled(&b_admin, "/owner");
    b_admin.type_into("#bench-name", "breast-cancer");
    b_admin.type_into("#bench-description", "Malignant or benign");
    b_admin.type_into("#bench-demo", &ex.join("data/demo").display().to_string());
    b_admin.select("#bench-prep", "preparator");
    b_admin.select("#bench-reference", "reference-logistic");
    b_admin.select("#bench-metrics", "metrics");
    b_admin.type_into("#bench-committee", &member_key);
    b_admin.select("#bench-model-approval", "approve when the test passes");
    b_admin.select("#bench-policy", "aggregate");
    b_admin.type_into("#bench-min-datasets", "1");
    b_admin.click("#submit-benchmark button[type='submit']");
    let outcome = job_outcome(&b_admin);
    assert!(outcome.contains("Submitted benchmark breast-cancer"), "{outcome}");
    let control = node.control();
    let view = medmesh_cli::views::benchmarks(&control).unwrap().pop().expect("the benchmark");
    let bench = view.id.to_hex();
    assert_eq!(
        view.benchmark.committee.iter().map(|k| k.to_hex()).collect::<Vec<_>>(),
        [member_key]
    );
    assert_eq!(
        view.benchmark.sharing,
        protocol::record::SharingPolicy::Aggregate { min_datasets: 1 }
    );

    // The admin approves the benchmark, after reading the record it signs.
    b_admin.go(&format!("{}/admin", ui_admin.base));
    assert_labelled(&b_admin, "/admin");
    b_admin.click("form[action='/decisions/review'] button[value='approve']");
    let record = b_admin.wait_text("#record", "benchmark", None);
    assert!(record.contains(&bench) && record.contains("approve"), "{record}");
    shot(&b_admin, "01-admin-reviews-the-benchmark-approval");
    b_admin.click("#sign");
    b_admin.wait_text("#signed", "Approve benchmark breast-cancer", None);
    // The reference model's association (approved at once: --model-approval always).
    ok(&admin, &["-y", "model", "associate", "-b", &bench, "-m", &reference]);

    // A model owner registers a model and requests its association (approved at
    // once after its compatibility test), in the browser.
    sign_in(&b_modeller, &ui_modeller);
    b_modeller.type_into("#profile-name", "Modeller");
    b_modeller.type_into("#profile-organisation", "Test");
    b_modeller.click("#profile button[type='submit']");
    b_modeller.wait_text("header .who", "Modeller", None);
    let models_page = format!("{}/models", ui_modeller.base);
    b_modeller.go(&models_page);
    assert_labelled(&b_modeller, "/models");
    let d = ex.join("model_threshold");
    b_modeller.type_into("#model-name", "threshold");
    b_modeller.type_into("#model-manifest", &d.join("container_config.yaml").display().to_string());
    b_modeller.type_into("#model-image", &images.0[2].0);
    b_modeller.type_into("#model-parameters", &d.join("parameters.yaml").display().to_string());
    b_modeller.type_into("#model-files", &d.join("additional_files").display().to_string());
    b_modeller.click("#register-model button[type='submit']");
    let outcome = job_outcome(&b_modeller);
    assert!(outcome.contains("Registered threshold"), "{outcome}");
    b_modeller.go(&models_page);
    b_modeller.select("#assoc-benchmark", "breast-cancer");
    b_modeller.select("#assoc-model", "threshold");
    b_modeller.click("#associate-model button[type='submit']");
    let outcome = job_outcome(&b_modeller);
    assert!(outcome.contains("status: approved"), "{outcome}");
    b_modeller.go(&models_page);
    b_modeller.wait_text("#where-models-run", "approved", None);
    shot(&b_modeller, "02-model-owner-sees-where-its-model-runs");

    // Before any release the leaderboard page says so.
    let board = format!("{}/benchmarks/{bench}/leaderboard", ui_admin.base);
    b_admin.go(&board);
    b_admin.wait_text("#no-leaderboard", "No release yet", None);

    // The hospital prepares its data (a job with progress), registers it and
    // requests association (the compatibility test, another job).
    sign_in(&b_hospital, &ui_hospital);
    let data_page = format!("{}/data", ui_hospital.base);
    b_hospital.go(&data_page);
    assert_labelled(&b_hospital, "/data");
    let raw = ex.join("data/hospital_a/raw");
    b_hospital.select("#prepare-benchmark", "breast-cancer");
    b_hospital.type_into("#prepare-name", "site-a");
    b_hospital.type_into("#prepare-data", &raw.join("data").display().to_string());
    b_hospital.type_into("#prepare-labels", &raw.join("labels").display().to_string());
    b_hospital.click("#prepare button[type='submit']");
    let outcome = job_outcome(&b_hospital);
    assert!(outcome.contains("Prepared site-a"), "{outcome}");
    shot(&b_hospital, "03-hospital-prepared-its-data");
    // "Register it" opens the form filled in with what was prepared.
    b_hospital.click("#next");
    b_hospital.wait_url("prepared=site-a");
    let filled = b_hospital.execute(
        "return [document.querySelector('#register-name').value, document.querySelector('#register-benchmark').selectedOptions[0].text];",
        json!([]),
    );
    assert_eq!(filled, json!(["site-a", "breast-cancer"]));
    b_hospital.type_into("#register-description", "St Luke's cases");
    b_hospital.click("#register button[type='submit']");
    b_hospital.wait_text("#my-datasets", "site-a", None);
    b_hospital.click("form[action='/data/associate'] button");
    let outcome = job_outcome(&b_hospital);
    assert!(outcome.contains("waits for the committee"), "{outcome}");
    shot(&b_hospital, "04-hospital-requested-association");

    // The committee member sees the request waiting, reviews the record and signs.
    sign_in(&b_member, &ui_member);
    let decisions = format!("{}/decisions", ui_member.base);
    b_member.go(&decisions);
    b_member.wait_text("#waiting", "site-a", Some(&decisions));
    assert_labelled(&b_member, "/decisions");
    shot(&b_member, "05-member-sees-the-waiting-request");
    b_member.click("#waiting button[value='approve']");
    let record = b_member.wait_text("#record", "association", None);
    assert!(record.contains("approve") && record.contains(&bench), "{record}");
    shot(&b_member, "06-member-reviews-the-record");
    b_member.click("#sign");
    b_member.wait_text("#signed", "Approve the association of dataset site-a", None);
    b_member.go(&decisions);
    b_member.wait_text("#nothing-waiting", "Nothing waits", None);

    // The hospital sets the dataset operational and runs the benchmark: the job's
    // log streams over server-sent events.
    b_hospital.go(&data_page);
    b_hospital.wait_text("#my-datasets", "approved", Some(&data_page));
    b_hospital.click("form[action='/data/operational'] button");
    b_hospital.wait_text("#my-datasets", "operational", None);
    b_hospital.click("form[action='/data/run'] button");
    let job_url = b_hospital.wait_url("/jobs/");
    let outcome = job_outcome(&b_hospital);
    assert!(outcome.contains("2 sealed results published"), "{outcome}");
    let log = b_hospital.text("#log").unwrap();
    assert!(log.contains("reference-logistic") && log.contains("threshold"), "{log}");
    assert!(log.contains("task starting") && log.contains("published"), "{log}");
    shot(&b_hospital, "07-hospital-ran-the-benchmark");
    // The same log, as the event stream sends it.
    let stream = b_hospital.execute(
        "const x = new XMLHttpRequest(); x.open('GET', arguments[0], false); x.send(); return x.responseText;",
        json!([format!("{job_url}/events")]),
    );
    let stream = stream.as_str().unwrap();
    assert!(
        stream.contains("event: log") && stream.contains("event: done\ndata: done"),
        "{stream}"
    );
    assert!(stream.contains("event: progress"), "{stream}");
    // Its own sealed result opens for it.
    b_hospital.go(&format!("{}/results", ui_hospital.base));
    b_hospital.click("#results a[href^='/data/results/']");
    b_hospital.wait_text("#metrics", "auc", None);

    // The benchmark owner's dashboard shows the site done; the model's owner (the
    // admin here) sees where its model runs.
    let dashboard = format!("{}/owner/{bench}", ui_admin.base);
    b_admin.go(&dashboard);
    b_admin.wait_text("#summary", "1 done", Some(&dashboard));
    // The benchmark's owner is not on its committee: the dataset's name is sealed
    // to it; the site shows by its owner's profile.
    let sites = b_admin.text("#sites").unwrap();
    assert!(sites.contains("St Luke's") && sites.contains("(sealed)"), "{sites}");
    assert!(!sites.contains("site-a"), "{sites}");
    shot(&b_admin, "08-owner-preparation-dashboard");
    b_admin.go(&format!("{}/models", ui_admin.base));
    assert_labelled(&b_admin, "/models");
    let runs = b_admin.text("#where-models-run").unwrap();
    assert!(runs.contains("reference-logistic") && runs.contains("approved"), "{runs}");

    // The committee member releases, after review.
    b_member.go(&decisions);
    b_member.click("form.release button");
    let record = b_member.wait_text("#record", "entries", None);
    assert!(record.contains(&bench), "{record}");
    // Signed from the keyboard.
    b_member.press_enter("#sign");
    b_member.wait_text("#signed", "Release the results of benchmark breast-cancer", None);

    // The leaderboard page now shows the model, a point and interval chart on an
    // axis that says where it starts.
    b_admin.go(&board);
    let table = b_admin.wait_text("#leaderboard", "reference-logistic", Some(&board));
    assert!(table.contains("threshold") && table.contains("auc"), "{table}");
    let chart = b_admin.execute("return document.querySelector('#chart').outerHTML;", json!([]));
    let chart = chart.as_str().unwrap();
    assert!(chart.contains("axis starts at"), "{chart}");
    assert_eq!(chart.matches("class=\"point\"").count(), 2, "a point per model: {chart}");
    shot(&b_admin, "09-the-leaderboard-updated");
    // Every page and action above read the node's paged, indexed queries: none
    // downloaded the whole state.
    assert_eq!(node.state_downloads(), 0, "a page or a command downloaded the whole state");
}
