//! An ignored decision is a failure, not a success: when the fold keeps a published
//! record without effect, the command says why on stderr and exits non-zero (and
//! `--json` carries the verdict), while honest participants' commands go on working.
//! Through the real binary against a real node, with the example containers in the
//! local Docker engine (the compatibility test runs before an association request).

mod common;

use common::*;
use medmesh_cli::publish::EXIT_IGNORED;
use protocol::RecordId;
use protocol::fold::Status;
use protocol::record::Subject;

/// The record id a `--json` command reports.
fn id(o: &std::process::Output) -> String {
    json(o)["id"].as_str().expect("an id").to_string()
}

/// The command was published, ignored by the fold with `reason`, and failed.
fn assert_ignored(o: &std::process::Output, reason: &str) {
    assert_eq!(o.status.code(), Some(i32::from(EXIT_IGNORED)), "{}", stderr(o));
    assert!(stderr(o).contains("ignores it"), "{}", stderr(o));
    assert!(stderr(o).contains(reason), "{}", stderr(o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("published"));
    let v = json(o);
    assert_eq!(v["status"], "ignored", "{v}");
    assert_eq!(v["verdict"]["ignored"], true, "{v}");
    assert_eq!(v["verdict"]["reason"], reason, "{v}");
}

#[test]
fn ignored_decisions_and_requests_fail_with_the_folds_reason() {
    let images = Images::build("verdicts");
    let t = TempDir::new("verdicts");
    let node_dir = t.0.join("node");
    let (admin, owner, member, outsider) =
        (t.0.join("admin"), t.0.join("owner"), t.0.join("member"), t.0.join("outsider"));
    home(&admin, None, &node_dir);
    let root = admin.join("root.cbor");
    let owner_key = home(&owner, Some(&root), &node_dir);
    let member_key = home(&member, Some(&root), &node_dir);
    home(&outsider, Some(&root), &node_dir);
    let node = start_node(&node_dir, &root, &[]);

    // The benchmark owner (also on the committee) registers the containers and the
    // benchmark; committee: the owner and one member, one approval needed.
    let ex = workspace().join("examples");
    let container = |name: &str, dir: &str, image: usize| {
        let (tag, digest) = &images.0[image];
        let d = ex.join(dir);
        let mut args = vec![
            "--json".to_string(),
            "-y".into(),
            "container".into(),
            "submit".into(),
            "--name".into(),
            name.into(),
            "--manifest".into(),
            d.join("container_config.yaml").display().to_string(),
            "--digest".into(),
            digest.clone(),
        ];
        // `--image` is optional: the config's `image` is used; given, it must agree.
        if image != 2 {
            args.extend(["--image".into(), tag.clone()]);
        }
        if d.join("parameters.yaml").exists() {
            args.extend(["--parameters".into(), d.join("parameters.yaml").display().to_string()]);
        }
        if d.join("additional_files").exists() {
            args.extend([
                "--additional-files".into(),
                d.join("additional_files").display().to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        id(&ok(&owner, &args))
    };
    let wrong = medmesh(
        &owner,
        &[
            "-y",
            "container",
            "submit",
            "--name",
            "mislabelled",
            "--manifest",
            ex.join("metrics/container_config.yaml").to_str().unwrap(),
            "--image",
            "medmesh/example-metrics:2",
        ],
    );
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains(
            "--image medmesh/example-metrics:2 does not agree with the image \
             medmesh/example-metrics:1"
        ),
        "{}",
        stderr(&wrong)
    );
    let prep = container("preparator", "preparator", 0);
    let reference = container("reference", "model_logistic", 1);
    let model = container("threshold", "model_threshold", 2);
    let metrics = container("metrics", "metrics", 3);
    let bench = id(&ok(
        &owner,
        &[
            "--json",
            "-y",
            "benchmark",
            "submit",
            "--name",
            "verdicts",
            "--demo-dataset",
            ex.join("data/demo").to_str().unwrap(),
            "--data-preparator",
            &prep,
            "--reference-model",
            &reference,
            "--metrics",
            &metrics,
            "--committee",
            &owner_key,
            "--committee",
            &member_key,
            "--threshold",
            "1",
            "--skip-test",
        ],
    ));

    // A non-admin decides the benchmark: ignored, and told so.
    let o = medmesh(&outsider, &["--json", "-y", "benchmark", "approve", &bench]);
    assert_ignored(&o, "signer is not an admin");
    // The admin's decision works.
    let o = ok(&admin, &["-y", "benchmark", "approve", &bench]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("approval published"));

    // The model's owner requests its association (the compatibility test runs).
    ok(&owner, &["--json", "-y", "model", "associate", "-b", &bench, "-m", &model]);
    // The initiator approves its own request.
    let o =
        medmesh(&owner, &["--json", "-y", "association", "approve", "-b", &bench, "-m", &model]);
    assert_ignored(&o, "the initiator cannot decide on its own request");
    // A key outside the committee approves.
    let o =
        medmesh(&outsider, &["--json", "-y", "association", "approve", "-b", &bench, "-m", &model]);
    assert_ignored(&o, "signer is not on the benchmark's committee");
    // A key that does not own the model requests its association.
    let o = medmesh(&outsider, &["--json", "-y", "model", "associate", "-b", &bench, "-m", &model]);
    assert_ignored(&o, "only the owner of a dataset or model can request its association");

    // The committee member's approval counts, and none of the ignored records did.
    ok(&member, &["-y", "association", "approve", "-b", &bench, "-m", &model]);
    let st = node.whole_state();
    let b: RecordId = bench.parse().unwrap();
    let a = st.association(&b, &Subject::Model(model.parse().unwrap())).expect("the association");
    assert_eq!(a.status, Status::Approved);
    assert_eq!(a.initiator.to_hex(), owner_key);
    assert_eq!(a.approvals.iter().map(|k| k.to_hex()).collect::<Vec<_>>(), [member_key]);
    assert_eq!(st.benchmarks[&b].status, Status::Approved);
    assert_eq!(st.ignored.len(), 4, "{:?}", st.ignored);
}
