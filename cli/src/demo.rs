//! `medmesh demo`: the whole MedPerf workflow on a local federation of real nodes.
//!
//! It starts a bootstrap peer and one node process per participant on loopback
//! (an admin; a committee of three with threshold two, whose first member owns the
//! benchmark; three hospitals; two model owners), builds the example images, and
//! walks every step of the seed workflow through the same [`workflow`] functions the
//! commands call, each participant signing with its own keys against its own node.
//! It ends by checking that every node shows the same leaderboard, prints it, and
//! leaves the data directories for the other commands to inspect.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::fold::Status;
use protocol::record::{
    Admission, AutoApproval, Body, Decision, Disclosure, JoinRequest, MemberRole, SharingPolicy,
    Subject,
};
use protocol::{AdmissionMode, Hash32, NetworkRoot, RecordId};

use crate::control::Control;
use crate::home::{Home, Profile};
use crate::publish::Confirm;
use crate::views;
use crate::workflow::{self, BenchmarkArgs, ContainerArgs, Session};

/// Longest wait for one condition to hold on a node (records travel by gossip,
/// or by sync within its interval).
pub const DEMO_WAIT_MS: u64 = 90_000;
/// Poll interval while waiting.
const POLL_MS: u64 = 200;

/// Where and how to run the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Folder for every participant's home and node (replaced if it exists).
    pub dir: PathBuf,
    /// The MedMesh source tree (holds `examples/`).
    pub workspace: PathBuf,
    /// Leave the nodes running when done.
    pub keep_running: bool,
}

/// What the demo leaves behind.
#[derive(Debug)]
pub struct DemoOutcome {
    pub benchmark: RecordId,
    pub leaderboard_json: String,
    pub state_hash: Hash32,
    pub homes: Vec<(String, PathBuf)>,
}

/// Node processes, killed when dropped.
struct Processes(Vec<(String, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Participant {
    name: String,
    home: Home,
    session: Option<Session>,
}

impl Participant {
    fn s(&self) -> &Session {
        self.session.as_ref().expect("sessions are opened once nodes run")
    }
}

fn exe_beside(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the medmesh executable")?;
    let p = me.with_file_name(name);
    if p.exists() {
        Ok(p)
    } else {
        bail!("{} is missing next to {}; build the workspace first", name, me.display())
    }
}

fn start_node(
    exe: &Path,
    extra: &[&str],
    data_dir: &Path,
    root: &Path,
    bootstrap: Option<&str>,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(data_dir)?;
    let log =
        std::fs::File::create(data_dir.join("node.log")).context("cannot create the node log")?;
    let mut cmd = Command::new(exe);
    cmd.args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--root")
        .arg(root)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))
}

fn wait_control(data_dir: &Path, child: &mut Child) -> anyhow::Result<Control> {
    let deadline = Instant::now() + Duration::from_millis(DEMO_WAIT_MS);
    loop {
        if let Ok(c) = Control::for_node_dir(data_dir)
            && c.status().is_ok()
        {
            return Ok(c);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the node in {} exited ({status}); see {}",
                data_dir.display(),
                data_dir.join("node.log").display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the node in {} did not start; see {}",
                data_dir.display(),
                data_dir.join("node.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// Wait until `cond` holds on `who`'s node (asked with the node's indexed
/// queries, as the commands ask, never the whole state).
fn wait_for(
    who: &Participant,
    what: &str,
    cond: impl Fn(&dyn crate::publish::NodeApi) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(DEMO_WAIT_MS);
    loop {
        if cond(who.s().api())? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{}'s node never saw {what} (see {})",
                who.name,
                who.home.dir.join("node/node.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

fn approved(api: &dyn crate::publish::NodeApi, b: &RecordId, s: Subject) -> anyhow::Result<bool> {
    Ok(views::association(api, b, &s)?.is_some_and(|a| a.status == Status::Approved))
}

/// How many records of a kind the node's state holds (`GET /v1/state`: counts only).
fn count(api: &dyn crate::publish::NodeApi, what: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = views::one(api, "/v1/state")?.unwrap_or_default();
    Ok(v["counts"][what].as_u64().unwrap_or(0))
}

/// Run the demo.
pub fn run(opts: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    const STEPS: u64 = 14;
    let bar = ProgressBar::new(STEPS);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg} {elapsed}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let step = |msg: &str| {
        bar.inc(1);
        bar.set_message(msg.to_string());
        tracing::info!(target: "medmesh::demo", "{msg}");
    };

    if opts.dir.exists() {
        std::fs::remove_dir_all(&opts.dir)
            .with_context(|| format!("cannot clear {}", opts.dir.display()))?;
    }
    std::fs::create_dir_all(&opts.dir)?;
    let dir = opts.dir.canonicalize()?;

    step("building the example container images (FROM scratch)");
    let engine = workflow::engine()?;
    let images =
        workflow::block_on(runner::examples::build_example_images(&engine, &opts.workspace))??;

    step("creating keys for the admin, committee, hospitals and model owners");
    let names = [
        "admin",
        "committee-1",
        "committee-2",
        "committee-3",
        "hospital-a",
        "hospital-b",
        "hospital-c",
        "model-owner-1",
        "model-owner-2",
    ];
    let mut people: Vec<Participant> = Vec::new();
    for n in names {
        let home = Home { dir: dir.join(n) };
        crate::keys::generate(&home.keys_dir())?;
        home.save_profile(&Profile {
            node_dir: Some(home.dir.join("node")),
            bootstrap: Vec::new(),
        })?;
        people.push(Participant { name: n.into(), home, session: None });
    }
    let admin_key = people[0].home.keys()?.public();
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| anyhow!("no randomness: {e}"))?;
    let root = NetworkRoot::new("medmesh-demo", vec![admin_key], 1, Hash32::from_bytes(nonce))?
        .with_admission(AdmissionMode::Admitted);
    let root_file = dir.join("root.cbor");
    std::fs::write(&root_file, root.to_bytes())?;
    for p in &people {
        p.home.install_root(&root)?;
    }

    step("starting a bootstrap peer and one node per participant on loopback");
    let mut procs = Processes(Vec::new());
    let boot_dir = dir.join("bootstrap");
    // The bootstrap peer is `medmesh-bootstrap` when it was built beside us, else a
    // plain node (a bootstrap peer has no authority either way).
    let mut boot = match exe_beside("medmesh-bootstrap") {
        Ok(exe) => start_node(&exe, &["--control", "127.0.0.1:0"], &boot_dir, &root_file, None)?,
        Err(_) => {
            start_node(&std::env::current_exe()?, &["node", "start"], &boot_dir, &root_file, None)?
        }
    };
    let boot_ctl = wait_control(&boot_dir, &mut boot)?;
    procs.0.push(("bootstrap".into(), boot));
    let st = boot_ctl.status()?;
    let boot_addr = st
        .listen
        .iter()
        .find(|a| a.contains("/tcp/"))
        .map(|a| if a.contains("/p2p/") { a.clone() } else { format!("{a}/p2p/{}", st.peer_id) })
        .ok_or_else(|| anyhow!("the bootstrap peer reports no TCP address"))?;
    let medmesh = std::env::current_exe()?;
    for p in &mut people {
        let node_dir = p.home.dir.join("node");
        let mut child = start_node(
            &medmesh,
            &["node", "start"],
            &node_dir,
            &p.home.root_path(),
            Some(&boot_addr),
        )?;
        let ctl = wait_control(&node_dir, &mut child)?;
        procs.0.push((p.name.clone(), child));
        p.session = Some(Session {
            home: p.home.clone(),
            keys: p.home.keys()?,
            network: root.network_id(),
            api: Box::new(ctl),
            confirm: Confirm::Yes,
            site: Default::default(),
        });
    }

    step("each participant asks to join; the admin admits it with the roles it needs");
    // The admitted network's gate: nothing but a join request from a key counts,
    // or is even stored, before the admin admits it.
    let role_of = |name: &str| -> Vec<MemberRole> {
        match name {
            // committee-1 also owns the benchmark.
            "committee-1" => vec![MemberRole::BenchmarkOwner],
            n if n.starts_with("hospital") => vec![MemberRole::DataOwner],
            n if n.starts_with("model-owner") => vec![MemberRole::ModelOwner],
            _ => Vec::new(),
        }
    };
    for p in &people[1..] {
        p.s().publish(Body::JoinRequest(JoinRequest {
            name: p.name.clone(),
            organisation: "MedMesh demo".into(),
            roles: role_of(&p.name),
            message: "demo participant".into(),
        }))?;
    }
    let admin_ctl = Control::for_node_dir(&people[0].home.dir.join("node"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let requests = loop {
        let pool: Vec<node::admission::PendingJoin> =
            admin_ctl.get_json("/v1/join-requests")?.unwrap_or_default();
        if pool.len() >= people.len() - 1 {
            break pool;
        }
        if Instant::now() > deadline {
            bail!(
                "the admin's node received {} of {} join requests within 60 s",
                pool.len(),
                people.len() - 1
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for r in requests {
        let epoch = views::network(people[0].s().api())?.admin_epoch;
        people[0].s().publish(Body::Admission(Admission { key: r.key, epoch, roles: r.roles }))?;
    }
    let members = people.len() - 1;
    for p in &people {
        wait_for(p, "every admission", |api| Ok(views::network(api)?.members >= members as u64))?;
    }

    step("every participant publishes its profile (with its encryption key)");
    for p in &people {
        workflow::submit_profile(p.s(), &p.name, "MedMesh demo")?;
    }
    let everyone = people.len();
    for p in &people {
        wait_for(p, "every profile", |api| Ok(count(api, "profiles")? >= everyone as u64))?;
    }

    step("the benchmark owner registers the preparator, reference model and metrics");
    let ex = |n: &str| opts.workspace.join("examples").join(n);
    let owner = &people[1];
    let submit = |who: &Participant,
                  name: &str,
                  dir: &str,
                  image: &protocol::record::ImageRef|
     -> anyhow::Result<RecordId> {
        let params = ex(dir).join("parameters.yaml");
        let af = ex(dir).join("additional_files");
        let args = ContainerArgs {
            name: name.into(),
            manifest: ex(dir).join("container_config.yaml"),
            image: Some(image.reference.clone()),
            digest: Some(image.digest.clone()),
            parameters: params.exists().then_some(params),
            additional_files: af.exists().then_some(af),
            archive: workflow::ImageArchive::Save,
            private: false,
        };
        Ok(workflow::submit_container(who.s(), &args)?.id)
    };
    let prep = submit(owner, "breast-cancer-preparator", "preparator", &images.preparator)?;
    let reference = submit(owner, "reference-logistic", "model_logistic", &images.model_logistic)?;
    let metrics = submit(owner, "classification-metrics", "metrics", &images.metrics)?;

    step("the benchmark owner runs the compatibility test and submits the benchmark");
    let committee: Vec<_> = people[1..4].iter().map(|p| p.s().me()).collect();
    let bench = workflow::submit_benchmark(
        owner.s(),
        &BenchmarkArgs {
            name: "breast-cancer-diagnosis".into(),
            description: "Malignant vs benign from the Wisconsin Diagnostic Breast Cancer features"
                .into(),
            docs_url: "https://archive.ics.uci.edu/dataset/17".into(),
            demo_dataset: ex("data/demo"),
            data_preparator: prep,
            reference_model: reference,
            metrics,
            committee,
            threshold: 2,
            dataset_auto_approval: AutoApproval::Never,
            model_auto_approval: AutoApproval::Never,
            sharing: SharingPolicy::PerDataset,
            // Three decimals, and no count: `cases` would tie a pseudonym to a
            // hospital whose size is known.
            disclosure: Disclosure {
                precision: 1_000,
                metrics: ["accuracy", "auc", "f1", "sensitivity", "specificity"]
                    .map(String::from)
                    .to_vec(),
                ..Disclosure::default()
            },
            rank_metric: "auc".into(),
            higher_is_better: true,
            skip_test: false,
        },
    )?
    .id;

    step("the admin approves the benchmark");
    wait_for(&people[0], "the benchmark", |api| {
        Ok(views::one::<serde_json::Value>(api, &format!("/v1/benchmarks/{}", bench.to_hex()))?
            .is_some()
            && count(api, "containers")? >= 3)
    })?;
    workflow::decide_benchmark(people[0].s(), bench, Decision::Approve)?;

    step("model owners register their models and request association (compatibility test)");
    let model_specs = [
        (7usize, "logistic-regression", "model_logistic", &images.model_logistic),
        (8, "concave-points-threshold", "model_threshold", &images.model_threshold),
    ];
    let mut models = Vec::new();
    for (i, name, dir, image) in model_specs {
        wait_for(&people[i], "the approved benchmark", |api| {
            Ok(views::benchmark(api, &bench).is_ok_and(|b| b.status == Status::Approved))
        })?;
        let m = submit(&people[i], name, dir, image)?;
        workflow::associate(people[i].s(), &bench, Subject::Model(m))?;
        models.push(m);
    }

    step("hospitals prepare their data locally, register it and request association");
    let mut datasets = Vec::new();
    for (i, site) in [(4usize, "hospital_a"), (5, "hospital_b"), (6, "hospital_c")] {
        let p = &people[i];
        wait_for(p, "the approved benchmark", |api| {
            Ok(views::benchmark(api, &bench).is_ok_and(|b| b.status == Status::Approved))
        })?;
        let raw = ex("data").join(site).join("raw");
        workflow::prepare_dataset(
            p.s(),
            &bench,
            site,
            &raw.join("data"),
            &raw.join("labels"),
            &|_| {},
        )?;
        let d = workflow::submit_dataset(
            p.s(),
            &bench,
            site,
            &format!("{site} breast cancer cases"),
            "on site",
            i == 4,
        )?
        .id;
        workflow::associate(p.s(), &bench, Subject::Dataset(d))?;
        datasets.push((i, d));
    }

    step("the committee (two of three) approves the models and datasets");
    let subjects: Vec<Subject> = models
        .iter()
        .map(|m| Subject::Model(*m))
        .chain(datasets.iter().map(|(_, d)| Subject::Dataset(*d)))
        .collect();
    for c in [2usize, 3] {
        let n = subjects.len();
        wait_for(&people[c], "every association request", |api| {
            Ok(views::associations(api, Some(&bench))?.len() >= n)
        })?;
        for (k, s) in subjects.iter().enumerate() {
            let priority = matches!(s, Subject::Model(_)).then_some(10 - k as i32);
            workflow::decide_association(people[c].s(), bench, *s, Decision::Approve, priority)?;
        }
    }

    step("hospitals mark their datasets operational and run the benchmark's models");
    for (i, d) in &datasets {
        let p = &people[*i];
        workflow::set_operational(p.s(), d)?;
        wait_for(p, "approved associations", |api| {
            if !approved(api, &bench, Subject::Dataset(*d))? {
                return Ok(false);
            }
            for m in &models {
                if !approved(api, &bench, Subject::Model(*m))? {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        let report = workflow::run_benchmark(p.s(), &bench, d, None, false, false)?;
        if let Some(f) = report.failed.first() {
            bail!("model {} failed on dataset {}: {}", f.model.short(), d.short(), f.reason);
        }
        // The reference model runs too; its results count only if it is approved.
        for (m, run) in &report.completed {
            if workflow::model_approved(p.s(), &bench, m)? {
                workflow::submit_result(p.s(), &bench, d, m, run)?;
            }
        }
    }

    step("two committee members open the results and sign the release");
    let expected = models.len() * datasets.len();
    for c in [1usize, 2] {
        wait_for(&people[c], "every result", |api| {
            let p = [("benchmark", bench.to_hex()), ("counts", "true".to_string())];
            Ok(views::results_where(api, &p)?.len() >= expected)
        })?;
        workflow::release(people[c].s(), &bench)?;
    }

    step("waiting for every node to show the same leaderboard");
    let mut first: Option<(String, Hash32)> = None;
    for p in &people {
        wait_for(p, "the leaderboard", |api| {
            Ok(views::leaderboard(api, &bench)?.is_some_and(|l| l.release_round == 1))
        })?;
        let ctl = Control::for_node_dir(&p.home.dir.join("node"))?;
        // As a map by benchmark, as `medmesh demo --json` has always shown it.
        let lb = format!("{{\"{}\":{}}}", bench.to_hex(), ctl.leaderboard_json(&bench)?);
        let hash = ctl.status()?.state_hash;
        match &first {
            None => first = Some((lb, hash)),
            Some((l0, _)) if *l0 != lb => bail!("{}'s leaderboard differs from the others", p.name),
            Some(_) => {}
        }
    }
    let (leaderboard_json, state_hash) = first.expect("nine participants");
    bar.finish_and_clear();
    if opts.keep_running {
        std::mem::forget(procs);
    }
    Ok(DemoOutcome {
        benchmark: bench,
        leaderboard_json,
        state_hash,
        homes: people.iter().map(|p| (p.name.clone(), p.home.dir.clone())).collect(),
    })
}
