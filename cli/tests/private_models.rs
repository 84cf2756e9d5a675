//! Private models end to end (MedPerf's encrypted models), with real node
//! processes, real libp2p and real Docker: a model owner publishes an encrypted
//! image archive; the committee approves one hospital's dataset and the owner
//! grants that hospital the key. Another hospital (its association pending, and
//! approved only after the owner revoked further grants), the committee and an
//! outsider hold the ciphertext and every record, and can neither run the model
//! nor decrypt it; the granted hospital runs it and publishes a result. No
//! store, home or log of anyone holds a byte of the image in the clear.
//!
//! The model's image is built for this test with a random marker file inside, so
//! that any plaintext copy of the archive is found by the marker, and it is
//! removed from the engine once published: every site must decrypt to run it.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use medmesh_cli::publish::NodeApi;
use medmesh_cli::workflow::block_on;
use protocol::private::ModelKey;
use protocol::record::Body;
use protocol::seal::{self, GrantBinding, SeededRng};
use protocol::{Record, RecordId};

fn ex(rel: &str) -> String {
    workspace().join("examples").join(rel).to_string_lossy().into_owned()
}

/// Removes the test's private image from the engine, whatever happens.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        if let Ok(engine) = medmesh_cli::workflow::engine() {
            let _ = medmesh_cli::workflow::block_on(engine.remove_image(&self.0));
        }
    }
}

/// Every file under `dir` whose bytes contain `marker`.
fn files_holding(dir: &Path, marker: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            out.extend(files_holding(&p, marker));
        } else if meta.is_file()
            && std::fs::read(&p).is_ok_and(|b| b.windows(marker.len()).any(|w| w == marker))
        {
            out.push(p);
        }
    }
    out
}

/// Wait until every node holds the same records and derives the same state.
fn converged(nodes: &[&NodeProcess]) {
    eventually("the nodes to converge", CONVERGE_TIMEOUT_MS, || {
        let states: Vec<_> = nodes
            .iter()
            .filter_map(|n| n.control().get_json::<protocol::State>("/v1/state/all").ok().flatten())
            .collect();
        states.len() == nodes.len() && states.windows(2).all(|w| w[0].hash == w[1].hash)
    });
}

fn id_of(o: &std::process::Output) -> RecordId {
    serde_json::from_value(json(o)["id"].clone()).expect("a record id")
}

/// `container submit --private` of the threshold model's image under `name`, with
/// its parameters and `extra` arguments: the new container's id.
fn submit_private(home: &Path, name: &str, manifest: &Path, extra: &[&str]) -> RecordId {
    let params = ex("model_threshold/parameters.yaml");
    let mut args = vec!["--json", "-y", "container", "submit", "--name", name, "--private"];
    args.extend(["--manifest", manifest.to_str().unwrap(), "--parameters", &params]);
    args.extend(extra);
    id_of(&ok(home, &args))
}

fn all_output(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o))
}

#[test]
fn only_a_granted_hospital_can_decrypt_and_run_a_private_model() {
    let t = TempDir::new("private-models");
    let dir = |n: &str| t.0.join(n);
    let (n1, n2, n3) = (dir("node-1"), dir("node-2"), dir("node-3"));
    let (bench, modeler, hosp_a, hosp_c, outsider) =
        (dir("committee"), dir("modeler"), dir("hospital-a"), dir("hospital-c"), dir("outsider"));
    home(&bench, None, &n1);
    let root = bench.join("root.cbor");
    home(&modeler, Some(&root), &n1);
    home(&hosp_a, Some(&root), &n2);
    home(&hosp_c, Some(&root), &n3);
    home(&outsider, Some(&root), &n3);
    let node1 = start_node(&n1, &root, &[]);
    let node2 = start_node(&n2, &root, &[node1.address()]);
    let node3 = start_node(&n3, &root, &[node1.address()]);
    let nodes = [&node1, &node2, &node3];
    for (h, name) in [
        (&bench, "Committee"),
        (&modeler, "Model Co"),
        (&hosp_a, "Hospital A"),
        (&hosp_c, "Hospital C"),
        (&outsider, "Outsider"),
    ] {
        ok(h, &["-y", "profile", "publish", "--name", name, "--organisation", name]);
    }

    // The example images, and the private model's own image: the threshold model
    // with a random marker file, so that its archive is unlike any other.
    let engine = medmesh_cli::workflow::engine().expect("a Docker engine");
    block_on(runner::examples::build_example_images(&engine, &workspace()))
        .unwrap()
        .expect("the example images build");
    let bins = block_on(runner::examples::build_example_binaries(&workspace())).unwrap().unwrap();
    let marker = format!("medmesh-private-marker-{}", hex::encode(rand_bytes()));
    let build = dir("build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("marker"), &marker).unwrap();
    let tag = format!("medmesh/test-private-model:{}", std::process::id());
    let digest = block_on(engine.build_scratch_image_of(
        &[("app", &bins.join("model_threshold")), ("marker", &build.join("marker"))],
        Some("/app"),
        &tag,
    ))
    .unwrap()
    .expect("the private image builds");
    let _guard = ImageGuard(digest.clone());
    let config = std::fs::read_to_string(ex("model_threshold/container_config.yaml")).unwrap();
    let config: String = config
        .lines()
        .map(|l| if l.starts_with("image:") { format!("image: {tag}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(build.join("container_config.yaml"), config).unwrap();

    // The committee's benchmark: datasets wait for its approval, models are
    // approved once their test passes.
    let c = |name: &str, dir: &str, af: bool| {
        let mut args = vec![
            "-y".to_string(),
            "container".into(),
            "submit".into(),
            "--name".into(),
            name.into(),
            "--manifest".into(),
            ex(&format!("{dir}/container_config.yaml")),
            "--parameters".into(),
            ex(&format!("{dir}/parameters.yaml")),
        ];
        if af {
            args.extend(["--additional-files".into(), ex(&format!("{dir}/additional_files"))]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&bench, &args);
    };
    c("prep", "preparator", false);
    c("reference", "model_logistic", true);
    c("metrics", "metrics", false);
    let demo = ex("data/demo");
    ok(
        &bench,
        &[
            "-y",
            "benchmark",
            "submit",
            "--name",
            "bc",
            "--demo-dataset",
            &demo,
            "--data-preparator",
            "prep",
            "--reference-model",
            "reference",
            "--metrics",
            "metrics",
            "--committee",
            "me",
            "--threshold",
            "1",
            "--dataset-approval",
            "never",
            "--model-approval",
            "always",
            "--policy",
            "per-dataset",
        ],
    );
    ok(&bench, &["-y", "benchmark", "approve", "bc"]);

    // The model owner publishes the private model and associates it (its own
    // engine holds the image), then the image leaves the engine.
    let manifest = build.join("container_config.yaml");
    let files = ex("model_threshold/additional_files");
    let model = submit_private(&modeler, "secret", &manifest, &["--additional-files", &files]);
    ok(&modeler, &["-y", "model", "associate", "-b", "bc", "-m", "secret"]);
    let listed = String::from_utf8(ok(&modeler, &["container", "ls"]).stdout).unwrap();
    assert!(listed.contains("secret (private)"), "{listed}");
    // A benchmark cannot name it as its reference model: data owners run that
    // one before any grant.
    let o = medmesh(
        &modeler,
        &[
            "-y",
            "benchmark",
            "submit",
            "--name",
            "bc2",
            "--demo-dataset",
            &demo,
            "--data-preparator",
            "prep",
            "--reference-model",
            "secret",
            "--metrics",
            "metrics",
            "--committee",
            "me",
            "--threshold",
            "1",
        ],
    );
    assert!(!o.status.success() && stderr(&o).contains("is a private model"), "{}", stderr(&o));
    block_on(engine.remove_image(&digest)).unwrap().expect("the image leaves the engine");
    converged(&nodes);
    let st = node1.whole_state();
    let container = st.containers[&model].container.clone();
    let enc = container.encryption.clone().expect("the record says it is encrypted");
    let archive = container.image_archive.expect("the ciphertext is a blob");
    assert_eq!(archive.size, protocol::private::ciphertext_len(enc.plaintext_size));

    // Two hospitals register datasets; the committee approves hospital A's only.
    let dataset = |h: &Path, name: &str, raw: &str| {
        let (data, labels) =
            (ex(&format!("data/{raw}/raw/data")), ex(&format!("data/{raw}/raw/labels")));
        converged(&nodes);
        ok(
            h,
            &[
                "dataset",
                "prepare",
                "-b",
                "bc",
                "--name",
                name,
                "--data-path",
                &data,
                "--labels-path",
                &labels,
            ],
        );
        let id = id_of(&ok(h, &["--json", "-y", "dataset", "submit", "-b", "bc", "--name", name]));
        ok(h, &["-y", "dataset", "associate", "-b", "bc", "-d", name]);
        ok(h, &["-y", "dataset", "set_operational", name]);
        id
    };
    let da = dataset(&hosp_a, "a-site", "hospital_a");
    let dc = dataset(&hosp_c, "c-site", "hospital_c");
    converged(&nodes);

    // Only the owner grants, and only a private model.
    let o = medmesh(&bench, &["-y", "model", "grant", "secret"]);
    assert!(!o.status.success() && stderr(&o).contains("only a model's owner"), "{}", stderr(&o));
    let o = medmesh(&bench, &["-y", "model", "grant", "reference"]);
    assert!(!o.status.success() && stderr(&o).contains("is not private"), "{}", stderr(&o));

    // The owner leaves `model grant --follow` running; the committee approves
    // hospital A's dataset, and the grant follows.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .arg("--home")
        .arg(&modeler)
        .args(["--json", "-y", "model", "grant", "secret", "--follow", "--interval-ms", "200"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("model grant --follow starts");
    ok(&bench, &["-y", "association", "approve", "-b", "bc", "-d", "a-site"]);
    eventually("the grant to hospital A", CONVERGE_TIMEOUT_MS, || {
        node1
            .control()
            .get_json::<protocol::State>("/v1/state/all")
            .ok()
            .flatten()
            .is_some_and(|st| st.grant(&model, &da).is_some())
    });
    let _ = follow.kill();
    let out = follow.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(&da.to_hex()) && printed.contains("granted"), "{printed}");
    assert!(!printed.contains(&dc.to_hex()), "hospital C is not approved: {printed}");
    converged(&nodes);

    // Hospital C (association pending), the committee and an outsider: the
    // ciphertext reaches them all, and none can run the model.
    let hash = archive.hash.to_hex();
    let size = archive.size.to_string();
    ok(&hosp_c, &["blob", "fetch", &hash, "--size", &size]);
    ok(&bench, &["blob", "fetch", &hash, "--size", &size]);
    let o =
        medmesh(&hosp_c, &["-y", "benchmark", "run", "-b", "bc", "-d", "c-site", "-m", "secret"]);
    assert!(!o.status.success());
    assert!(all_output(&o).contains("has no key grant for dataset"), "{}", all_output(&o));
    for who in [&bench, &outsider] {
        let o = medmesh(who, &["test", "run", "-b", "bc", "-m", "secret"]);
        assert!(!o.status.success());
        let out = all_output(&o);
        assert!(out.contains("has no key grant") && out.contains("model grant"), "{out}");
    }

    // Nor can they decrypt it: the grant opens for hospital A's key alone, and
    // the ciphertext does not open under any key they can make.
    let grant_id = st_grant(&node3, &model, &da);
    let bytes = node3.control().record(&grant_id).unwrap();
    let network = medmesh_cli::home::Home { dir: bench.clone() }.network_id().unwrap();
    let Body::ModelGrant(g) = Record::verify(&bytes, &network).unwrap().body else {
        panic!("a grant record")
    };
    let binding = GrantBinding { model, benchmark: g.benchmark, dataset: g.dataset };
    for who in [&bench, &hosp_c, &outsider, &modeler] {
        let keys = medmesh_cli::keys::load(&who.join("keys")).unwrap();
        assert!(seal::open_model_key(&g.key, &keys.opening, binding).is_err());
    }
    let a_keys = medmesh_cli::keys::load(&hosp_a.join("keys")).unwrap();
    let key = seal::open_model_key(&g.key, &a_keys.opening, binding).unwrap();
    assert_eq!(key.check(), enc.key_check);
    let ciphertext = dir("ciphertext.enc");
    ok(
        &outsider,
        &["blob", "fetch", &hash, "--size", &size, "--out", ciphertext.to_str().unwrap()],
    );
    let guess = ModelKey::generate(&mut SeededRng::new(b"a guess"));
    let out = dir("guess.tar");
    let forced = protocol::record::ArchiveEncryption { key_check: guess.check(), ..enc.clone() };
    assert!(runner::private::decrypt_file(&guess, &enc, &ciphertext, &out).is_err());
    assert!(runner::private::decrypt_file(&guess, &forced, &ciphertext, &out).is_err());
    std::fs::remove_file(&ciphertext).unwrap();
    let _ = std::fs::remove_file(&out);

    // The owner revokes; hospital C's dataset, approved afterwards, gets no grant.
    ok(&modeler, &["-y", "model", "revoke", "secret"]);
    converged(&nodes);
    ok(&bench, &["-y", "association", "approve", "-b", "bc", "-d", "c-site"]);
    converged(&nodes);
    let again = json(&ok(&modeler, &["--json", "-y", "model", "grant", "secret"]));
    let status = |d: &RecordId| {
        again.as_array().unwrap().iter().find(|o| o["dataset"] == d.to_hex()).unwrap()["status"]
            .clone()
    };
    assert_eq!(status(&dc), "revoked", "{again}");
    assert_eq!(status(&da), "already_granted", "{again}");
    let o =
        ok_or_fail(&modeler, &["-y", "model", "grant", "secret", "--dataset", &dc.to_hex()[..12]]);
    assert!(o.contains("revoked"), "{o}");
    converged(&nodes);
    let o =
        medmesh(&hosp_c, &["-y", "benchmark", "run", "-b", "bc", "-d", "c-site", "-m", "secret"]);
    assert!(!o.status.success());
    assert!(all_output(&o).contains("has no key grant"), "{}", all_output(&o));

    // The granted hospital runs it: decrypted, loaded, checked, run, published.
    let present = || block_on(engine.image_digest(&tag)).unwrap().ok();
    assert_eq!(present(), None, "no failed attempt loaded the image");
    let o = ok(
        &hosp_a,
        &["--json", "-y", "benchmark", "run", "-b", "bc", "-d", "a-site", "-m", "secret"],
    );
    let rows = json(&o);
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["status"], "completed", "{rows}");
    assert!(row["result_record"].is_string(), "{rows}");
    converged(&nodes);
    let st = node1.whole_state();
    assert!(st.results.iter().any(|r| r.model == model && r.dataset == da && r.counts));

    assert_eq!(present().as_deref(), Some(digest.as_str()), "hospital A's engine holds it");

    // No plaintext anywhere but in hospital A's engine: not in any node's store,
    // any home (the model owner's included) or any log. (The scan finds the
    // marker in a plaintext archive: the control saved under build/.)
    let control = build.join("control.tar");
    block_on(engine.save_image(&tag, &control)).unwrap().expect("docker save");
    assert_eq!(files_holding(&build, marker.as_bytes()).len(), 2, "marker file and archive");
    // A new version re-keys: the same image submitted again has another key.
    let v2 = submit_private(&modeler, "secret-v2", &manifest, &[]);
    converged(&nodes);
    let st = node1.whole_state();
    let enc2 = st.containers[&v2].container.encryption.clone().unwrap();
    assert_ne!(enc2.key_check, enc.key_check, "a new version has a new key");
    assert!(key.check() != enc2.key_check, "the old grant's key does not open it");

    let leaks = files_holding(&t.0, marker.as_bytes());
    let leaks: Vec<_> = leaks.into_iter().filter(|p| !p.starts_with(&build)).collect();
    assert!(leaks.is_empty(), "the image's plaintext is in {leaks:?}");
}

/// The id of the grant that counts for `model` on `dataset`, from a node.
fn st_grant(node: &NodeProcess, model: &RecordId, dataset: &RecordId) -> RecordId {
    node.whole_state().grant(model, dataset).expect("the grant counts").id
}

/// Run a command that may fail, and give its whole output.
fn ok_or_fail(home: &Path, args: &[&str]) -> String {
    all_output(&medmesh(home, args))
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
    b.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
    b
}
