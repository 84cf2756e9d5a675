//! MedPerf's workflow as functions: each command calls one, and `medmesh demo`
//! calls the same ones for every participant, so the demo exercises exactly the
//! code paths users run.
//!
//! Writes sign with the session's keys and submit to its node; reads query the
//! node's derived state; container work runs through the local Docker engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use protocol::fold::{DatasetView, ResultView, Status};
use protocol::leaderboard::{self, OpenedResult};
use protocol::metric::MetricValue;
use protocol::private::ModelKey;
use protocol::record::*;
use protocol::seal::{self, Binding, DetailsBinding};
use protocol::{Hash32, NetworkId, PublicKey, Record, RecordId, State, X25519Key};
use runner::engine::{Engine, RunLimits, Runnable};
use runner::manifest::ContainerSpec;
use runner::site::{Overrides, SitePolicy};

use crate::home::Home;
use crate::keys::Keys;
use crate::publish::{Confirm, NodeApi, publish};

/// One user acting through one node.
pub struct Session {
    pub home: Home,
    pub keys: Keys,
    pub network: NetworkId,
    pub api: Box<dyn NodeApi + Send + Sync>,
    pub confirm: Confirm,
    /// What this command's `--gpus` and `--shm-size` override in the site policy.
    pub site: Overrides,
}

impl Session {
    /// Sign and publish `body`.
    pub fn publish(&self, body: Body) -> anyhow::Result<Record> {
        publish(self.api.as_ref(), &self.home.dir, &self.keys, self.network, body, self.confirm)
    }

    pub fn state(&self) -> anyhow::Result<State> {
        self.api.state()
    }

    pub fn me(&self) -> PublicKey {
        self.keys.public()
    }

    fn work(&self, parts: &[&str]) -> PathBuf {
        parts.iter().fold(self.home.work_dir(), |p, s| p.join(s))
    }
}

/// A Tokio runtime for the engine's async API (the CLI is otherwise blocking).
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start an async runtime")?;
    Ok(rt.block_on(f))
}

/// Connect to the local Docker engine.
pub fn engine() -> anyhow::Result<Engine> {
    Ok(block_on(Engine::connect(runner::engine::CONCURRENT_RUNS_DEFAULT))??)
}

/// The engine this site's policy (`site.yaml` in the home) allows, and the limits
/// every task gets on it, with this command's `--gpus` and `--shm-size`.
pub fn site_engine(s: &Session) -> anyhow::Result<(Engine, RunLimits)> {
    home_engine(&s.home, &s.site)
}

/// The engine and the task limits the site policy in `home` sets (no node needed).
pub fn home_engine(home: &Home, site: &Overrides) -> anyhow::Result<(Engine, RunLimits)> {
    let policy = SitePolicy::load(&home.dir)?;
    block_on(async {
        let engine = Engine::connect(runner::engine::CONCURRENT_RUNS_DEFAULT).await?;
        policy.check_engine(engine.kind().await?)?;
        let limits = policy.limits(engine.host().await?, site);
        tracing::info!(?limits, "task limits from the site policy");
        anyhow::Ok((engine, limits))
    })?
}

// ---------------------------------------------------------------------------
// Profiles and containers.

/// Publish the participant profile (name, organisation, X25519 key for results).
pub fn submit_profile(s: &Session, name: &str, organisation: &str) -> anyhow::Result<Record> {
    s.publish(Body::Profile(Profile {
        name: name.into(),
        organisation: organisation.into(),
        x25519: s.keys.x25519(),
    }))
}

/// What `container submit` takes.
#[derive(Clone, Debug)]
pub struct ContainerArgs {
    pub name: String,
    pub manifest: PathBuf,
    /// Image reference; the config's own when `None`, else it must agree with it.
    /// The digest is read from the local engine unless given.
    pub image: Option<String>,
    pub digest: Option<String>,
    pub parameters: Option<PathBuf>,
    pub additional_files: Option<PathBuf>,
    /// How the image travels.
    pub archive: ImageArchive,
    /// Publish the archive encrypted (MedPerf's `EncryptedDockerArchive`): only
    /// data owners the model's owner grants the key to can load it.
    pub private: bool,
}

/// How a container's image reaches the sites that run it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageArchive {
    /// `docker save` the image from the local engine into the blob store
    /// (MedPerf's `DockerArchive`): peers fetch it by hash.
    Save,
    /// This `docker save` archive, as it is.
    File(PathBuf),
    /// None: every site's engine must already hold the image (`DockerImage`).
    None,
}

/// Register a container: manifest, image pinned by digest, its `docker save`
/// archive, its additional files (a tar) and parameters; the archive and the
/// files go into the node's blob store, and the record names them by hash and
/// size, never by a path.
pub fn submit_container(s: &Session, a: &ContainerArgs) -> anyhow::Result<Record> {
    let spec = runner::load_manifest(&a.manifest)?;
    let image = submitted_image(&spec.image, a.image.as_deref(), &a.manifest)?;
    let digest = match &a.digest {
        Some(d) => d.clone(),
        // One runtime: `engine()` starts its own and may not run inside this one.
        None => block_on(async {
            let engine = Engine::connect(runner::engine::CONCURRENT_RUNS_DEFAULT).await?;
            anyhow::Ok(engine.image_digest(&image).await?)
        })??,
    };
    let parameters = match &a.parameters {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the parameters file {}", p.display()))?,
        ),
        None => None,
    };
    let additional_files = match &a.additional_files {
        Some(dir) => {
            let dir =
                dir.canonicalize().with_context(|| format!("cannot find {}", dir.display()))?;
            let hash = runner::treehash::tree_hash(&[("additional_files", &dir)])?;
            let tar = s.work(&["outgoing", &format!("{}-additional-files.tar", hash.to_hex())]);
            pack_folder(&dir, &tar)?;
            let blob = s.api.blob_add(&tar);
            let _ = std::fs::remove_file(&tar);
            Some(AdditionalFiles { blob: blob?, hash })
        }
        None => None,
    };
    if a.private && a.archive == ImageArchive::None {
        bail!(
            "a private model travels as its encrypted archive; leave out --no-archive (the image is saved from the local engine, or give --archive)"
        );
    }
    let mut saved_here = None;
    let plain_archive = match &a.archive {
        ImageArchive::None => None,
        ImageArchive::File(path) => Some(path.clone()),
        ImageArchive::Save => {
            let out = s.work(&["outgoing", &format!("{}.tar", digest.replace(':', "-"))]);
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let spinner = crate::output::spinner(&format!("saving image {image}"));
            let saved = block_on(async {
                let engine = Engine::connect(runner::engine::CONCURRENT_RUNS_DEFAULT).await?;
                anyhow::Ok(engine.save_image(&image, &out).await?)
            });
            spinner.finish_and_clear();
            saved_here = Some(out.clone());
            if let Err(e) = saved.and_then(|r| r) {
                let _ = std::fs::remove_file(&out);
                return Err(e);
            }
            Some(out)
        }
    };
    let published = match (&plain_archive, a.private) {
        (None, _) => Ok((None, None)),
        (Some(path), false) => s.api.blob_add(path).map(|b| (Some(b), None)),
        (Some(path), true) => encrypt_and_add(s, path, &digest),
    };
    if let Some(out) = saved_here {
        let _ = std::fs::remove_file(&out);
    }
    let (image_archive, encryption) = published?;
    s.publish(Body::Container(Container {
        name: a.name.clone(),
        manifest: spec.manifest,
        image: ImageRef { reference: image, digest },
        image_archive,
        parameters,
        additional_files,
        encryption,
    }))
}

/// Encrypt a private model's archive under a fresh content key (kept in the home
/// before anything is published), and add the ciphertext to the blob store.
fn encrypt_and_add(
    s: &Session,
    archive: &Path,
    digest: &str,
) -> anyhow::Result<(Option<BlobRef>, Option<ArchiveEncryption>)> {
    let mut rng = seal::rand_core::UnwrapErr(getrandom::SysRng);
    let key = ModelKey::generate(&mut rng);
    let enc_path = s.work(&["outgoing", &format!("{}.enc", digest.replace(':', "-"))]);
    if let Some(parent) = enc_path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let spinner = crate::output::spinner("encrypting the image archive");
    let enc = runner::private::encrypt_file(&key, archive, &enc_path);
    spinner.finish_and_clear();
    let enc = match enc {
        Ok(e) => e,
        Err(e) => {
            let _ = std::fs::remove_file(&enc_path);
            return Err(e.into());
        }
    };
    save_model_key(s, &key)?;
    let blob = s.api.blob_add(&enc_path);
    let _ = std::fs::remove_file(&enc_path);
    Ok((Some(blob?), Some(enc)))
}

/// Where a private model's owner keeps its content key: `model-keys/` in the
/// home (0700), one owner-only file per key, named by the key check the record
/// publishes.
fn model_key_path(s: &Session, check: &Hash32) -> PathBuf {
    s.home.dir.join("model-keys").join(format!("{}.key", check.to_hex()))
}

fn save_model_key(s: &Session, key: &ModelKey) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = model_key_path(s, &key.check());
    let dir = path.parent().expect("a key file has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} owner-only", dir.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(hex::encode(key.as_bytes()).as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The content key of a private model this user published.
fn load_model_key(s: &Session, name: &str, enc: &ArchiveEncryption) -> anyhow::Result<ModelKey> {
    let path = model_key_path(s, &enc.key_check);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no content key of private model {name} in this home ({}); only the home that submitted it can grant it",
            path.display()
        )
    })?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("{} does not hold a 32-byte key in hex", path.display()))?;
    let key = ModelKey::from_bytes(bytes);
    if key.check() != enc.key_check {
        bail!("{} holds another key than model {name}'s record names", path.display());
    }
    Ok(key)
}

/// The image a container is submitted with: the one its config names, or `--image`
/// when it names the same image: the same reference (a missing tag is `latest`), or
/// another tag of the same image in the local engine.
fn submitted_image(config: &str, flag: Option<&str>, manifest: &Path) -> anyhow::Result<String> {
    let Some(flag) = flag else { return Ok(config.to_string()) };
    if runner::manifest::same_image(config, flag) {
        return Ok(flag.to_string());
    }
    let same_id = block_on(async {
        let engine = Engine::connect(runner::engine::CONCURRENT_RUNS_DEFAULT).await.ok()?;
        let a = engine.image_digest(config).await.ok()?;
        let b = engine.image_digest(flag).await.ok()?;
        Some(a == b)
    })?;
    if same_id == Some(true) {
        return Ok(flag.to_string());
    }
    bail!(
        "--image {flag} does not agree with the image {config} that {} names (nor is it \
         another tag of that image in the local engine); leave --image out to use the \
         config's, or correct one of them",
        manifest.display()
    )
}

/// A tar of `dir` (regular files and folders only, in name order, with fixed
/// modes and times), so that the same folder always gives the same blob.
pub fn pack_folder(dir: &Path, out: &Path) -> anyhow::Result<()> {
    fn walk(
        b: &mut tar::Builder<std::io::BufWriter<std::fs::File>>,
        root: &Path,
        dir: &Path,
    ) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).expect("under the root");
            let kind = e.file_type()?;
            if kind.is_dir() {
                b.append_dir(rel, &path)
                    .with_context(|| format!("cannot pack {}", path.display()))?;
                walk(b, root, &path)?;
            } else if kind.is_file() {
                b.append_path_with_name(&path, rel)
                    .with_context(|| format!("cannot pack {}", path.display()))?;
            } else {
                bail!(
                    "{} is a link or a special file; additional files must be regular files and folders",
                    path.display()
                );
            }
        }
        Ok(())
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let f =
        std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    walk(&mut b, dir, dir)?;
    b.into_inner()
        .and_then(|mut w| std::io::Write::flush(&mut w))
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Make the image of a container present in the local engine: when the engine
/// does not hold `image.digest`, fetch the container's archive from peers, load
/// it, and check the loaded image against the signed id before anything runs.
pub fn ensure_image(
    s: &Session,
    state: &State,
    id: &RecordId,
    c: &Container,
    dataset: Option<&RecordId>,
) -> anyhow::Result<()> {
    let present = block_on(async {
        let engine = Engine::connect(runner::engine::CONCURRENT_RUNS_DEFAULT).await?;
        anyhow::Ok(engine.image_digest(&c.image.reference).await.ok())
    })??;
    if present.as_deref() == Some(c.image.digest.as_str()) {
        return Ok(());
    }
    let Some(archive) = &c.image_archive else {
        bail!(
            "the local engine does not hold image {} ({}) and container {} has no archive on the network; pull or load it first",
            c.image.reference,
            c.image.digest,
            c.name
        );
    };
    if let Some(enc) = &c.encryption {
        return load_private(s, state, id, c, archive, enc, dataset);
    }
    let tar = s.work(&["incoming", &format!("{}.tar", archive.hash.to_hex())]);
    s.api.blob_get(archive, &format!("the image of {}", c.name), &tar)?;
    let spinner = crate::output::spinner(&format!("loading image {}", c.image.reference));
    let loaded = block_on(async {
        let engine = Engine::connect(runner::engine::CONCURRENT_RUNS_DEFAULT).await?;
        anyhow::Ok(engine.load_verified_image(&tar, &c.image).await?)
    });
    spinner.finish_and_clear();
    let _ = std::fs::remove_file(&tar);
    loaded?.with_context(|| {
        format!("the archive of {} did not hold the image its record signs; not running it", c.name)
    })
}

/// The content key of private model `id`, opened from the grant that counts for
/// `dataset` (or, without one, from any grant to this user). Without a grant, an
/// error that names the missing grant and what to do.
pub fn granted_key(
    s: &Session,
    state: &State,
    id: &RecordId,
    c: &Container,
    dataset: Option<&RecordId>,
) -> anyhow::Result<ModelKey> {
    let enc =
        c.encryption.as_ref().ok_or_else(|| anyhow!("container {} is not private", c.name))?;
    let mine = |g: &&protocol::fold::GrantView| g.grantee == s.me();
    let grant = match dataset {
        Some(d) => state.grant(id, d).filter(mine),
        None => state.grants.iter().filter(|g| g.model == *id).find(mine),
    };
    let Some(grant) = grant else {
        let site = match dataset {
            Some(d) => format!("dataset {}", d.short()),
            None => format!("any dataset of yours ({})", s.me().short()),
        };
        let approved = dataset.is_none_or(|d| {
            state.associations.iter().any(|a| {
                a.subject == Subject::Dataset(*d)
                    && a.status == Status::Approved
                    && model_approved(state, &a.benchmark, id)
            })
        });
        let what_to_do = if approved {
            format!(
                "ask the model's owner ({}) to run `medmesh model grant {} --dataset <your dataset>`",
                state.containers.get(id).map(|v| v.owner.short()).unwrap_or_default(),
                id.short()
            )
        } else {
            "its association with a benchmark this model is approved in must be approved first (`medmesh association ls`), then the model's owner grants the key".into()
        };
        bail!(
            "private model {} ({}) has no key grant for {site}: this site cannot decrypt or run it; {what_to_do}",
            c.name,
            id.short()
        );
    };
    let bytes = s.api.record(&grant.id)?;
    let r = Record::verify(&bytes, &s.network)?;
    let Body::ModelGrant(g) = r.body else {
        bail!("record {} is a {}, not a model grant", grant.id.short(), r.body.kind())
    };
    let binding = seal::GrantBinding { model: g.model, benchmark: g.benchmark, dataset: g.dataset };
    let key = seal::open_model_key(&g.key, &s.keys.opening, binding).with_context(|| {
        format!(
            "the grant {} of private model {} does not open with your key; check that your profile's encryption key is the one in your keys folder",
            grant.id.short(),
            c.name
        )
    })?;
    if key.check() != enc.key_check {
        bail!(
            "the grant {} holds another key than private model {}'s record names; ask its owner to grant again",
            grant.id.short(),
            c.name
        );
    }
    Ok(key)
}

/// Fetch a private model's encrypted archive, decrypt it with the granted key to
/// a temporary file in the work folder, load it and check the signed image id.
fn load_private(
    s: &Session,
    state: &State,
    id: &RecordId,
    c: &Container,
    archive: &BlobRef,
    enc: &ArchiveEncryption,
    dataset: Option<&RecordId>,
) -> anyhow::Result<()> {
    // The key first: a site without a grant fetches nothing.
    let key = granted_key(s, state, id, c, dataset)?;
    let ciphertext = s.work(&["incoming", &format!("{}.enc", archive.hash.to_hex())]);
    s.api.blob_get(archive, &format!("the encrypted image of {}", c.name), &ciphertext)?;
    let spinner =
        crate::output::spinner(&format!("decrypting and loading image {}", c.image.reference));
    let scratch = s.work(&["private"]);
    let loaded = block_on(async {
        let engine = Engine::connect(runner::engine::CONCURRENT_RUNS_DEFAULT).await?;
        anyhow::Ok(
            runner::private::load_private_image(
                &engine,
                &ciphertext,
                &key,
                enc,
                &c.image,
                &scratch,
            )
            .await?,
        )
    });
    spinner.finish_and_clear();
    let _ = std::fs::remove_file(&ciphertext);
    loaded?.with_context(|| {
        format!(
            "the encrypted archive of {} did not decrypt to the image its record signs; not running it",
            c.name
        )
    })
}

/// A container record made runnable here: its parameters written out and its
/// additional files copied in from their location and checked against the hash.
pub fn runnable(s: &Session, state: &State, id: &RecordId) -> anyhow::Result<Runnable> {
    runnable_for(s, state, id, None)
}

/// As [`runnable`], for a run on `dataset`: a private model's key comes from the
/// grant for that dataset.
pub fn runnable_for(
    s: &Session,
    state: &State,
    id: &RecordId,
    dataset: Option<&RecordId>,
) -> anyhow::Result<Runnable> {
    let view = state
        .containers
        .get(id)
        .ok_or_else(|| anyhow!("container {} is unknown to the node; is it synced?", id.short()))?;
    let c = &view.container;
    let dir = s.work(&["containers", &id.to_hex()]);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let parameters_file = match &c.parameters {
        Some(text) => {
            let p = dir.join("parameters.yaml");
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
            Some(p)
        }
        None => None,
    };
    ensure_image(s, state, id, c, dataset)?;
    let additional_files = match &c.additional_files {
        Some(af) => {
            let local = dir.join("additional_files");
            if !local.exists()
                || runner::treehash::tree_hash(&[("additional_files", &local)])? != af.hash
            {
                let _ = std::fs::remove_dir_all(&local);
                let tar = dir.join("additional_files.tar");
                s.api.blob_get(&af.blob, &format!("the additional files of {}", c.name), &tar)?;
                let unpacked =
                    runner::dataset::unpack_plain(&tar, &local, protocol::limits::BLOB_BYTES_MAX);
                let _ = std::fs::remove_file(&tar);
                unpacked.with_context(|| {
                    format!("the additional files of {} cannot be unpacked", c.name)
                })?;
            }
            let actual = runner::treehash::tree_hash(&[("additional_files", &local)])?;
            if actual != af.hash {
                bail!(
                    "the additional files of {} hash to {}, not {} as registered; refusing to run them",
                    c.name,
                    actual.short(),
                    af.hash.short()
                );
            }
            Some(local)
        }
        None => None,
    };
    Ok(Runnable {
        spec: ContainerSpec::from_manifest(c.image.reference.clone(), c.manifest.clone())
            .with_context(|| format!("container {} cannot run here", c.name))?,
        image: c.image.clone(),
        parameters_file,
        additional_files,
    })
}

// ---------------------------------------------------------------------------
// Benchmarks.

/// What `benchmark submit` takes.
#[derive(Clone, Debug)]
pub struct BenchmarkArgs {
    pub name: String,
    pub description: String,
    pub docs_url: String,
    /// A demo dataset folder (with paths.yaml) or a tarball of one.
    pub demo_dataset: PathBuf,
    pub data_preparator: RecordId,
    pub reference_model: RecordId,
    pub metrics: RecordId,
    pub committee: Vec<PublicKey>,
    pub threshold: u16,
    pub dataset_auto_approval: AutoApproval,
    pub model_auto_approval: AutoApproval,
    pub sharing: SharingPolicy,
    /// What releases may show, and who reads datasets' details.
    pub disclosure: Disclosure,
    pub rank_metric: String,
    pub higher_is_better: bool,
    /// Skip the compatibility test (not recommended).
    pub skip_test: bool,
}

/// Pack a demo dataset folder into a tarball (or take a tarball as is) and hash it.
pub fn pack_demo(s: &Session, demo: &Path) -> anyhow::Result<(PathBuf, Hash32)> {
    let tarball = if demo.is_dir() {
        runner::compat::demo_paths(demo)?;
        let out = s.work(&[
            "demo",
            &format!("{}.tar", demo.file_name().and_then(|n| n.to_str()).unwrap_or("demo")),
        ]);
        let parent = out.parent().expect("has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let f = std::fs::File::create(&out)
            .with_context(|| format!("cannot write {}", out.display()))?;
        let mut b = tar::Builder::new(f);
        b.mode(tar::HeaderMode::Deterministic);
        b.append_dir_all(".", demo).with_context(|| format!("cannot pack {}", demo.display()))?;
        b.finish().with_context(|| format!("cannot write {}", out.display()))?;
        out
    } else {
        demo.to_path_buf()
    };
    let tarball = tarball.canonicalize().with_context(|| {
        format!(
            "cannot find the demo dataset {}; give a folder with paths.yaml or a tarball of one on this machine (URLs are not fetched)",
            demo.display()
        )
    })?;
    let bytes =
        std::fs::read(&tarball).with_context(|| format!("cannot read {}", tarball.display()))?;
    Ok((tarball, Hash32::of(&bytes)))
}

/// The benchmark's demo dataset, fetched and checked, unpacked under the work dir.
pub fn demo_dir(s: &Session, b: &Benchmark) -> anyhow::Result<PathBuf> {
    let dest = s.work(&["demo", &b.demo_dataset.hash.to_hex()]);
    if dest.join("paths.yaml").exists() {
        return Ok(dest);
    }
    let _ = std::fs::remove_dir_all(&dest);
    let tar = s.work(&["incoming", &format!("{}.tar", b.demo_dataset.hash.to_hex())]);
    s.api.blob_get(&b.demo_dataset.blob(), &format!("the demo dataset of {}", b.name), &tar)?;
    let unpacked = runner::compat::unpack_demo_dataset(&tar, &b.demo_dataset.hash, &dest);
    let _ = std::fs::remove_file(&tar);
    Ok(unpacked?)
}

/// The compatibility test of `model` against a benchmark's demo dataset, or
/// against an already prepared dataset.
pub fn compatibility_test(
    s: &Session,
    state: &State,
    b: &Benchmark,
    model: &RecordId,
    prepared: Option<&runner::dataset::PreparedDataset>,
) -> anyhow::Result<runner::compat::CompatibilityOutcome> {
    let model_r = runnable(s, state, model)?;
    let metrics = runnable(s, state, &b.metrics)?;
    let tag = format!(
        "{}-{}",
        model.short(),
        prepared.map(|p| p.prepared_hash.short()).unwrap_or_else(|| "demo".into())
    );
    let work = s.work(&["tests", &tag]);
    let _ = std::fs::remove_dir_all(&work);
    let (engine, limits) = site_engine(s)?;
    let outcome = match prepared {
        Some(p) => block_on(runner::compat::compatibility_test_prepared(
            &engine, p, &model_r, &metrics, &work, &limits,
        ))?,
        None => {
            let prep = runnable(s, state, &b.data_preparator)?;
            let demo = demo_dir(s, b)?;
            block_on(runner::compat::compatibility_test(
                &engine, &demo, &prep, &model_r, &metrics, &work, &limits,
            ))?
        }
    };
    Ok(outcome?)
}

/// Submit a benchmark after its compatibility test passes.
pub fn submit_benchmark(s: &Session, a: &BenchmarkArgs) -> anyhow::Result<Record> {
    // Every data owner runs these three before any approval (the compatibility
    // test of its dataset), so none of them can wait for a grant.
    let state = s.state()?;
    for (role, id) in [
        ("data preparator", a.data_preparator),
        ("reference model", a.reference_model),
        ("metrics container", a.metrics),
    ] {
        if state.containers.get(&id).is_some_and(|c| c.container.encryption.is_some()) {
            bail!(
                "the {role} {} is a private model; every data owner runs it before any grant, so a benchmark's preparator, reference model and metrics must be submitted without --private",
                id.short()
            );
        }
    }
    let (tarball, hash) = pack_demo(s, &a.demo_dataset)?;
    let blob = s.api.blob_add(&tarball)?;
    if blob.hash != hash {
        bail!("the node stored the demo dataset under {}, not {}", blob.hash.short(), hash.short());
    }
    let benchmark = Benchmark {
        name: a.name.clone(),
        description: a.description.clone(),
        docs_url: a.docs_url.clone(),
        demo_dataset: DemoDataset { hash, size: blob.size },
        data_preparator: a.data_preparator,
        reference_model: a.reference_model,
        metrics: a.metrics,
        committee: a.committee.clone(),
        threshold: a.threshold,
        dataset_auto_approval: a.dataset_auto_approval.clone(),
        model_auto_approval: a.model_auto_approval.clone(),
        sharing: a.sharing.clone(),
        disclosure: a.disclosure.clone(),
        rank_metric: a.rank_metric.clone(),
        higher_is_better: a.higher_is_better,
    };
    if !a.skip_test {
        let state = s.state()?;
        let outcome = compatibility_test(s, &state, &benchmark, &a.reference_model, None)?;
        if !outcome.results.contains_key(&a.rank_metric) {
            bail!(
                "the metrics container does not report `{}` (it reports {}); choose --rank-metric among those",
                a.rank_metric,
                outcome.results.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    s.publish(Body::Benchmark(benchmark))
}

/// The admin approves or rejects a benchmark.
pub fn decide_benchmark(
    s: &Session,
    benchmark: RecordId,
    decision: Decision,
) -> anyhow::Result<Record> {
    s.publish(Body::BenchmarkDecision(BenchmarkDecision { benchmark, decision }))
}

fn benchmark_of(state: &State, id: &RecordId) -> anyhow::Result<Benchmark> {
    Ok(state
        .benchmarks
        .get(id)
        .ok_or_else(|| {
            anyhow!(
                "benchmark {} is unknown to the node; list them with `medmesh benchmark ls`",
                id.short()
            )
        })?
        .benchmark
        .clone())
}

// ---------------------------------------------------------------------------
// Admission.

/// The join requests waiting in the pool of this home's node.
pub fn join_requests(home: &Home) -> anyhow::Result<Vec<node::admission::PendingJoin>> {
    let control = crate::control::Control::for_node_dir(&home.node_dir()?)?;
    Ok(control.get_json("/v1/join-requests")?.unwrap_or_default())
}

/// Ask the admins to admit this key with `roles` (a join request, which waits in
/// the nodes' pools until an admin admits the key).
pub fn apply(
    s: &Session,
    roles: Vec<MemberRole>,
    name: String,
    organisation: String,
    message: String,
) -> anyhow::Result<Record> {
    let root = s.home.root()?;
    if root.admission.is_open() {
        bail!("network {} is open: every key takes part, there is nothing to apply for", root.name);
    }
    let st = s.state()?;
    if st.admits(&s.me()) {
        bail!("your key {} is already admitted; see `medmesh network members`", s.me().short());
    }
    s.publish(Body::JoinRequest(JoinRequest { name, organisation, roles, message }))
}

/// An admin admits `key` with `roles`, or with the roles its join request asks
/// for when `None`. Returns the admission and the roles it grants.
pub fn admit(
    s: &Session,
    key: PublicKey,
    roles: Option<Vec<MemberRole>>,
) -> anyhow::Result<(Record, Vec<MemberRole>)> {
    let st = s.state()?;
    if st.admission.is_open() {
        bail!("this network is open: every key takes part without admission");
    }
    if !st.admins.contains(&s.me()) {
        bail!(
            "only the network's admins can admit a key, and {} is not one of them",
            s.me().short()
        );
    }
    let roles = match roles {
        Some(r) => r,
        None => match join_requests(&s.home)?.into_iter().find(|p| p.key == key) {
            Some(p) => p.roles,
            None => bail!(
                "no join request from {} reached this node, so its roles are not known: name them with --role (data_owner, model_owner, benchmark_owner), or --no-roles",
                key.short()
            ),
        },
    };
    let r =
        s.publish(Body::Admission(Admission { key, epoch: st.admin_epoch, roles: roles.clone() }))?;
    Ok((r, roles))
}

// ---------------------------------------------------------------------------
// Datasets.

/// Longest local dataset name, in characters.
pub const DATASET_NAME_CHARS_MAX: usize = 64;

/// A local dataset name names a folder in the home: letters, digits, `.`, `_`
/// and `-`, not starting with a dot, so that it cannot leave the datasets folder.
pub fn check_dataset_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.chars().count() <= DATASET_NAME_CHARS_MAX
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!(
            "`{name}` cannot name a dataset: use up to {DATASET_NAME_CHARS_MAX} letters, digits, `.`, `_` or `-`, not starting with a dot"
        );
    }
    Ok(())
}

/// Where a prepared dataset lives locally, by name.
pub fn dataset_root(s: &Session, name: &str) -> PathBuf {
    s.work(&["datasets", name])
}

/// The local root of a registered dataset (written by [`submit_dataset`]).
pub fn local_dataset(s: &Session, id: &RecordId) -> anyhow::Result<PathBuf> {
    let index = s.work(&["datasets", "index.json"]);
    let map: BTreeMap<String, PathBuf> = std::fs::read_to_string(&index)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    map.get(&id.to_hex()).cloned().ok_or_else(|| {
        anyhow!("dataset {} was not prepared in this home ({}); prepare it here or import it with `medmesh dataset import`", id.short(), s.home.dir.display())
    })
}

fn remember_dataset(s: &Session, id: &RecordId, root: &Path) -> anyhow::Result<()> {
    let index = s.work(&["datasets", "index.json"]);
    let mut map: BTreeMap<String, PathBuf> = std::fs::read_to_string(&index)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    map.insert(id.to_hex(), root.to_path_buf());
    let parent = index.parent().expect("has a parent");
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    std::fs::write(&index, serde_json::to_string_pretty(&map)?)
        .with_context(|| format!("cannot write {}", index.display()))?;
    Ok(())
}

/// Prepare raw data with the benchmark's preparator into `<work>/datasets/<name>`.
pub fn prepare_dataset(
    s: &Session,
    benchmark: &RecordId,
    name: &str,
    data: &Path,
    labels: &Path,
    on: &(dyn Fn(runner::dataset::PrepareEvent) + Sync),
) -> anyhow::Result<runner::dataset::PreparedDataset> {
    check_dataset_name(name)?;
    let state = s.state()?;
    let b = benchmark_of(&state, benchmark)?;
    let prep = runnable(s, &state, &b.data_preparator)?;
    let root = dataset_root(s, name);
    let (engine, limits) = site_engine(s)?;
    Ok(block_on(runner::dataset::prepare_dataset_watched(
        &engine, &prep, data, labels, &root, &limits, on,
    ))??)
}

/// 32 random bytes from the operating system.
fn random32() -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow!("the operating system gave no randomness: {e}"))?;
    Ok(b)
}

/// Register a prepared dataset: in the clear only what the fold needs; its
/// details and a fresh pseudonym key sealed to the benchmark's committee and to
/// this owner (the details also in the clear when the benchmark's disclosure
/// policy makes them public).
pub fn submit_dataset(
    s: &Session,
    benchmark: &RecordId,
    name: &str,
    description: &str,
    location: &str,
    name_public: bool,
) -> anyhow::Result<Record> {
    check_dataset_name(name)?;
    let state = s.state()?;
    let b = benchmark_of(&state, benchmark)?;
    let root = dataset_root(s, name);
    let prepared = runner::dataset::open_dataset(&root)?;
    let details =
        runner::dataset::dataset_details(&prepared, name, description, location, name_public);
    details.validate()?;
    let sealed_details =
        SealedDetails { details: details.clone(), pseudonym_key: Bytes(random32()?.to_vec()) };
    let to = recipients(&state, &b, &s.me())?;
    let binding = DetailsBinding { benchmark: *benchmark, owner: s.me() };
    let mut rng = seal::rand_core::UnwrapErr(getrandom::SysRng);
    let sealed = seal::seal_details(&sealed_details, &to, binding, &mut rng)?;
    let public_details =
        (b.disclosure.dataset_details == DetailsAudience::Public).then_some(details);
    let r = s.publish(Body::Dataset(Dataset {
        benchmark: *benchmark,
        data_preparator: b.data_preparator,
        prepared_hash: prepared.prepared_hash,
        state: DatasetState::Development,
        public_details,
        sealed,
    }))?;
    remember_dataset(s, &r.id, &root)?;
    Ok(r)
}

/// A dataset's details as this user reads them: in the clear, or opened with
/// this user's key (the committee's and the owner's). `None` when sealed to
/// others.
pub fn dataset_details(s: &Session, view: &DatasetView) -> Option<SealedDetails> {
    let binding = DetailsBinding { benchmark: view.dataset.benchmark, owner: view.owner };
    match seal::open_details(&view.dataset.sealed, &s.keys.opening, binding) {
        Ok(d) => Some(d),
        Err(_) => view
            .dataset
            .public_details
            .clone()
            .map(|details| SealedDetails { details, pseudonym_key: Bytes(Vec::new()) }),
    }
}

/// Every dataset with the name this user can read (public, or opened).
pub fn dataset_names(s: &Session, state: &State) -> Vec<(RecordId, String)> {
    state
        .datasets
        .values()
        .filter_map(|v| dataset_details(s, v).map(|d| (v.id, d.details.name)))
        .collect()
}

/// Mark a dataset operational, with its hash recomputed now.
pub fn set_operational(s: &Session, dataset: &RecordId) -> anyhow::Result<Record> {
    let root = local_dataset(s, dataset)?;
    let op = runner::dataset::set_operational(&root, *dataset)?;
    s.publish(Body::DatasetOperational(op))
}

/// Request association of a dataset (compatibility test on the prepared data) or a
/// model (on the demo dataset).
pub fn associate(
    s: &Session,
    benchmark: &RecordId,
    subject: Subject,
) -> anyhow::Result<(Record, runner::compat::CompatibilityOutcome)> {
    let state = s.state()?;
    let b = benchmark_of(&state, benchmark)?;
    let outcome = match subject {
        Subject::Dataset(d) => {
            let prepared = runner::dataset::open_dataset(&local_dataset(s, &d)?)?;
            compatibility_test(s, &state, &b, &b.reference_model, Some(&prepared))?
        }
        Subject::Model(m) => compatibility_test(s, &state, &b, &m, None)?,
    };
    let r = s.publish(Body::AssociationRequest(AssociationRequest {
        benchmark: *benchmark,
        subject,
        compatibility: outcome.record(&random32()?),
    }))?;
    Ok((r, outcome))
}

/// A committee member approves or rejects an association.
pub fn decide_association(
    s: &Session,
    benchmark: RecordId,
    subject: Subject,
    decision: Decision,
    priority: Option<i32>,
) -> anyhow::Result<Record> {
    s.publish(Body::AssociationDecision(AssociationDecision {
        benchmark,
        subject,
        decision,
        priority,
    }))
}

// ---------------------------------------------------------------------------
// Private models: grants and revocations.

/// What `model grant` did for one approved dataset.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GrantOutcome {
    pub benchmark: RecordId,
    pub dataset: RecordId,
    /// The dataset's owner.
    pub grantee: PublicKey,
    /// `granted`, `already_granted`, `revoked` (the owner stopped granting to it)
    /// or `no_profile` (its owner published no encryption key yet).
    pub status: &'static str,
    /// The grant record published now.
    pub record: Option<RecordId>,
}

/// The private container `model`, which this user must own.
fn own_private(state: &State, me: &PublicKey, model: &RecordId) -> anyhow::Result<Container> {
    let view = state.containers.get(model).ok_or_else(|| {
        anyhow!("container {} is unknown to the node; is it synced?", model.short())
    })?;
    if view.owner != *me {
        bail!(
            "container {} belongs to {}; only a model's owner grants or revokes its key",
            view.container.name,
            view.owner.short()
        );
    }
    if view.container.encryption.is_none() {
        bail!(
            "container {} is not private: its archive is readable by everyone; submit it again with --private",
            view.container.name
        );
    }
    Ok(view.container.clone())
}

/// Grant a private model's content key to the owner of every dataset approved
/// in a benchmark the model is approved in (or only `only`), sealed to the
/// owner's profile key, one grant record per dataset. Datasets already granted,
/// revoked, or whose owner has no profile are reported and skipped.
pub fn grant_model(
    s: &Session,
    model: &RecordId,
    only: Option<RecordId>,
) -> anyhow::Result<Vec<GrantOutcome>> {
    let state = s.state()?;
    let c = own_private(&state, &s.me(), model)?;
    let enc = c.encryption.as_ref().expect("own_private checks it is private");
    let key = load_model_key(s, &c.name, enc)?;
    let approved: Vec<(RecordId, RecordId)> = state
        .associations
        .iter()
        .filter(|a| a.status == Status::Approved && model_approved(&state, &a.benchmark, model))
        .filter_map(|a| match a.subject {
            Subject::Dataset(d) if only.is_none_or(|o| o == d) => Some((a.benchmark, d)),
            _ => None,
        })
        .collect();
    if let Some(d) = only
        && approved.is_empty()
    {
        bail!(
            "dataset {} is not approved in any benchmark model {} is approved in; nothing to grant (see `medmesh association ls`)",
            d.short(),
            c.name
        );
    }
    let mut out = Vec::new();
    let mut rng = seal::rand_core::UnwrapErr(getrandom::SysRng);
    for (benchmark, dataset) in approved {
        let Some(view) = state.datasets.get(&dataset) else { continue };
        let grantee = view.owner;
        let mut o = GrantOutcome { benchmark, dataset, grantee, status: "granted", record: None };
        if state.grant(model, &dataset).is_some() {
            o.status = "already_granted";
        } else if state.grant_revoked(model, &dataset) {
            o.status = "revoked";
        } else if let Some(p) = state.profiles.get(&grantee) {
            let binding = seal::GrantBinding { model: *model, benchmark, dataset };
            let sealed = seal::seal_model_key(&key, p.profile.x25519, binding, &mut rng)?;
            let r = s.publish(Body::ModelGrant(ModelGrant {
                model: *model,
                benchmark,
                dataset,
                key: sealed,
            }))?;
            o.record = Some(r.id);
        } else {
            o.status = "no_profile";
        }
        out.push(o);
    }
    Ok(out)
}

/// Stop granting a private model's key: to `dataset`, or to every dataset. Grants
/// already made stay (their recipients hold the key); submit a new version of the
/// container to re-key.
pub fn revoke_model(
    s: &Session,
    model: &RecordId,
    dataset: Option<RecordId>,
) -> anyhow::Result<Record> {
    let state = s.state()?;
    own_private(&state, &s.me(), model)?;
    s.publish(Body::ModelRevocation(ModelRevocation { model: *model, dataset }))
}

// ---------------------------------------------------------------------------
// Execution and results.

/// The model's association with the benchmark is approved (so its results count).
pub fn model_approved(state: &State, benchmark: &RecordId, model: &RecordId) -> bool {
    state.approved_models(benchmark).iter().any(|a| a.subject == Subject::Model(*model))
}

/// A model that did not finish, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelFailure {
    pub model: RecordId,
    /// The error with its causes, as printed.
    pub reason: String,
    /// The container log to read, when a container ran.
    pub log: Option<PathBuf>,
}

/// What `benchmark run` did, model by model.
#[derive(Debug, Default)]
pub struct BenchmarkRun {
    /// The benchmark's reference model (run alongside the approved models).
    pub reference: Option<RecordId>,
    pub completed: Vec<(RecordId, runner::execution::ModelRun)>,
    /// Models that could not be made runnable here, or whose run failed.
    pub failed: Vec<ModelFailure>,
    /// Models not run because an earlier one failed (without --ignore-model-errors).
    pub not_run: Vec<RecordId>,
}

/// The models `benchmark run` runs: the reference model, then every approved
/// model, or only `only` (which must be one of them).
pub fn models_to_run(
    state: &State,
    benchmark: &RecordId,
    only: Option<RecordId>,
) -> anyhow::Result<Vec<(RecordId, i32)>> {
    let b = benchmark_of(state, benchmark)?;
    // The reference model runs first: when it fails, the benchmark itself is at fault.
    let mut models = vec![(b.reference_model, i32::MAX)];
    for a in state.approved_models(benchmark) {
        let id = a.subject.id();
        if id != b.reference_model {
            models.push((id, a.priority));
        }
    }
    match only {
        None => Ok(models),
        Some(m) => match models.iter().find(|(id, _)| *id == m) {
            Some(one) => Ok(vec![*one]),
            None => bail!(
                "model {} is neither the reference model nor approved in benchmark {}; the models it runs are {}",
                m.short(),
                benchmark.short(),
                models.iter().map(|(id, _)| id.short()).collect::<Vec<_>>().join(", ")
            ),
        },
    }
}

/// Run the reference model and every approved model of a benchmark (or only
/// `only`) on a local operational dataset. A model that cannot be made runnable
/// here (its additional files changed, say) fails alone when
/// `ignore_model_errors`; otherwise the first failure stops the run. Either way
/// the failures are in the report, with what finished before them.
pub fn run_benchmark(
    s: &Session,
    benchmark: &RecordId,
    dataset: &RecordId,
    only: Option<RecordId>,
    ignore_model_errors: bool,
    force: bool,
) -> anyhow::Result<BenchmarkRun> {
    let state = s.state()?;
    let b = benchmark_of(&state, benchmark)?;
    let root = local_dataset(s, dataset)?;
    let view = state
        .datasets
        .get(dataset)
        .ok_or_else(|| anyhow!("dataset {} is unknown to the node", dataset.short()))?;
    let wanted = models_to_run(&state, benchmark, only)?;
    let metrics = runnable(s, &state, &b.metrics)
        .with_context(|| format!("the metrics container {} cannot run here", b.metrics.short()))?;
    let mut out = BenchmarkRun { reference: Some(b.reference_model), ..Default::default() };
    let mut models = Vec::new();
    for (i, (id, priority)) in wanted.iter().enumerate() {
        match runnable_for(s, &state, id, Some(dataset)) {
            Ok(container) => models.push(runner::execution::ModelEntry {
                id: *id,
                priority: *priority,
                container,
            }),
            Err(e) => {
                tracing::warn!(model = %id.short(), error = %format!("{e:#}"), "model cannot run here");
                out.failed.push(ModelFailure { model: *id, reason: format!("{e:#}"), log: None });
                if !ignore_model_errors {
                    // The models before it (by priority) still run.
                    out.not_run = wanted[i + 1..].iter().map(|(id, _)| *id).collect();
                    break;
                }
            }
        }
    }
    if models.is_empty() {
        return Ok(out);
    }
    let (engine, limits) = site_engine(s)?;
    let options = runner::execution::ExecutionOptions { ignore_model_errors, force, limits };
    let dir = s.work(&["executions", &benchmark.to_hex(), &dataset.to_hex()]);
    let report = block_on(runner::execution::run_benchmark(
        &engine,
        &root,
        view.prepared_hash,
        &models,
        &metrics,
        &dir,
        &options,
    ))??;
    out.completed = report.completed;
    out.failed.extend(report.failed.into_iter().map(|(model, e)| ModelFailure {
        model,
        reason: runner::error::describe(&e),
        log: e.log_path().map(Path::to_path_buf),
    }));
    out.not_run.extend(report.not_run);
    Ok(out)
}

/// One model's line in `benchmark run`'s report (its `--json` is a list of these).
#[derive(Debug, serde::Serialize)]
pub struct RunRow {
    pub model: RecordId,
    pub name: String,
    /// The benchmark's reference model.
    pub reference: bool,
    /// `completed`, `failed` or `not_run` (an earlier model failed).
    pub status: &'static str,
    pub results: Option<BTreeMap<String, protocol::metric::MetricValue>>,
    /// Where the execution's results, receipt and logs are.
    pub execution_dir: Option<PathBuf>,
    /// The finished execution on disk was reused instead of running again.
    pub reused: bool,
    pub error: Option<String>,
    pub log: Option<PathBuf>,
    /// The result record published for it.
    pub result_record: Option<RecordId>,
    /// This site had published a result for this model and dataset before.
    pub published_again: bool,
    /// What happened to its result, in words.
    pub publication: String,
}

/// Publish the results of what finished (unless `no_submit`; only approved models'
/// results count) and describe every model: `benchmark run` prints these, and
/// `medmesh ui` shows them.
pub fn publish_run(
    s: &Session,
    st: &State,
    b: &RecordId,
    d: &RecordId,
    rep: &BenchmarkRun,
    no_submit: bool,
) -> Vec<RunRow> {
    let name =
        |m: &RecordId| st.containers.get(m).map(|c| c.container.name.clone()).unwrap_or_default();
    let row = |m: &RecordId, status| RunRow {
        model: *m,
        name: name(m),
        reference: rep.reference == Some(*m),
        status,
        results: None,
        execution_dir: None,
        reused: false,
        error: None,
        log: None,
        result_record: None,
        published_again: false,
        publication: String::new(),
    };
    let mut rows = Vec::new();
    for (m, run) in &rep.completed {
        let mut r = row(m, "completed");
        r.results = Some(run.results.clone());
        r.execution_dir = Some(run.dir.clone());
        r.reused = run.reused;
        r.published_again = st.results.iter().any(|x| {
            x.benchmark == *b && x.model == *m && x.dataset == *d && x.submitter == s.me()
        });
        if no_submit {
            r.publication = "not submitted (--no-submit)".into();
        } else if !model_approved(st, b, m) {
            // The fold counts results of approved models only: a result of a
            // reference model that was never associated would be ignored.
            r.publication =
                "not published: the model's association with the benchmark is not approved".into();
        } else {
            match submit_result(s, b, d, m, run) {
                Ok(rec) => {
                    r.result_record = Some(rec.id);
                    r.publication = format!(
                        "{} {}",
                        if r.published_again { "published again" } else { "published" },
                        rec.id.short()
                    );
                }
                Err(e) => {
                    r.status = "failed";
                    r.error = Some(format!("its result could not be published: {e:#}"));
                    r.publication = "not published".into();
                }
            }
        }
        rows.push(r);
    }
    for f in &rep.failed {
        let mut r = row(&f.model, "failed");
        r.error = Some(f.reason.clone());
        r.log = f.log.clone();
        r.publication = "nothing to publish".into();
        rows.push(r);
    }
    for m in &rep.not_run {
        let mut r = row(m, "not_run");
        r.error = Some("not run: an earlier model failed".into());
        r.publication = "nothing to publish".into();
        rows.push(r);
    }
    rows
}

/// Who may read a result: the committee members with a profile, and the data owner.
fn recipients(state: &State, b: &Benchmark, owner: &PublicKey) -> anyhow::Result<Vec<X25519Key>> {
    let mut out = Vec::new();
    for k in b.committee.iter().chain(std::iter::once(owner)) {
        match state.profiles.get(k) {
            Some(p) => out.push(p.profile.x25519),
            None => {
                tracing::warn!(key = %k.short(), "no profile with an encryption key; this member cannot read the result")
            }
        }
    }
    if out.is_empty() {
        bail!(
            "nobody on the committee has published a profile with an encryption key; results cannot be shared yet"
        );
    }
    Ok(out)
}

/// Seal and publish the results of a finished execution.
pub fn submit_result(
    s: &Session,
    benchmark: &RecordId,
    dataset: &RecordId,
    model: &RecordId,
    run: &runner::execution::ModelRun,
) -> anyhow::Result<Record> {
    let state = s.state()?;
    let b = benchmark_of(&state, benchmark)?;
    let to = recipients(&state, &b, &s.me())?;
    let binding = Binding { benchmark: *benchmark, model: *model, dataset: *dataset };
    let mut rng = seal::rand_core::UnwrapErr(getrandom::SysRng);
    // Sealed as the metrics container wrote them; releases take their numbers.
    let (metrics, receipt_key) = seal::seal_result(&run.results, &to, binding, &mut rng)?;
    s.publish(Body::Result(ResultRecord {
        benchmark: *benchmark,
        model: *model,
        dataset: *dataset,
        metrics,
        receipt: run.receipt.public(&receipt_key),
    }))
}

/// Open a result this user may read.
pub fn open_result(
    s: &Session,
    id: &RecordId,
) -> anyhow::Result<(ResultRecord, BTreeMap<String, MetricValue>)> {
    let bytes = s.api.record(id)?;
    let r = Record::verify(&bytes, &s.network)?;
    let Body::Result(x) = r.body else {
        bail!("record {} is a {}, not a result", id.short(), r.body.kind())
    };
    let binding = Binding { benchmark: x.benchmark, model: x.model, dataset: x.dataset };
    let metrics = seal::open(&x.metrics, &s.keys.opening, binding)?;
    Ok((x, metrics))
}

/// The policy lets no figure out yet: too few datasets have results.
#[derive(Debug, thiserror::Error)]
#[error(
    "nothing to release yet: the policy shows no figure until enough datasets have results (per dataset: two new ones at a time; aggregate: min_datasets)"
)]
pub struct NothingToRelease;

/// A result this member could not open, and why.
type Skipped<'a> = (&'a ResultView, anyhow::Error);

/// Open each result with `open`. A result at fault (not sealed to this key,
/// tampered, not a valid record) is skipped and returned with why; any other
/// failure (the node, the network) stops the whole.
fn open_counting<'a>(
    results: impl IntoIterator<Item = &'a ResultView>,
    open: impl Fn(&RecordId) -> anyhow::Result<BTreeMap<String, MetricValue>>,
) -> anyhow::Result<(Vec<OpenedResult>, Vec<Skipped<'a>>)> {
    let mut opened = Vec::new();
    let mut skipped = Vec::new();
    for r in results {
        match open(&r.id) {
            Ok(metrics) => {
                opened.push(OpenedResult { model: r.model, dataset: r.dataset, metrics })
            }
            Err(e)
                if e.downcast_ref::<seal::SealError>().is_some()
                    || e.downcast_ref::<protocol::RecordError>().is_some() =>
            {
                skipped.push((r, e))
            }
            Err(e) => return Err(e),
        }
    }
    Ok((opened, skipped))
}

/// A committee member opens every counting result of a benchmark and publishes
/// the release the sharing policy allows, as the round after the one shown.
/// Members holding the same results sign identical content; the threshold of
/// them makes it shown. A result this member cannot open (not sealed to its key,
/// tampered) is skipped and reported on stderr, so one bad result cannot stop a
/// release.
pub fn release(s: &Session, benchmark: &RecordId) -> anyhow::Result<Record> {
    let state = s.state()?;
    let view = state
        .benchmarks
        .get(benchmark)
        .ok_or_else(|| anyhow!("benchmark {} is unknown", benchmark.short()))?;
    if !view.benchmark.committee.contains(&s.me()) {
        bail!("only members of the benchmark's committee can release its results");
    }
    if view.status != Status::Approved {
        bail!("benchmark {} is not approved", benchmark.short());
    }
    let counting: Vec<ResultView> =
        state.results.iter().filter(|r| r.benchmark == *benchmark && r.counts).collect();
    let (opened, skipped) = open_counting(&counting, |id| Ok(open_result(s, id)?.1))?;
    for (r, e) in &skipped {
        eprintln!(
            "warning: skipped result {} (model {}, dataset {}): {e:#}",
            r.id.short(),
            r.model.short(),
            r.dataset.short()
        );
    }
    let skipped = skipped.len();
    if opened.is_empty() {
        if skipped > 0 {
            bail!(
                "could open none of the {skipped} results of benchmark {} that count; check that your profile's encryption key is the one in your keys folder",
                benchmark.short()
            );
        }
        bail!("benchmark {} has no results to release yet", benchmark.short());
    }
    let shown = state.releases.get(benchmark).map(|r| &r.release);
    let round = leaderboard::next_round(shown.map(|r| r.round)).ok_or_else(|| {
        anyhow!("the shown release of benchmark {} is at the last round", benchmark.short())
    })?;
    let mut datasets: BTreeMap<RecordId, SealedDetails> = BTreeMap::new();
    for r in state.results.iter().filter(|r| r.benchmark == *benchmark && r.counts) {
        if datasets.contains_key(&r.dataset) {
            continue;
        }
        let binding = DetailsBinding { benchmark: *benchmark, owner: r.submitter };
        let view = state.datasets.get(&r.dataset);
        match view.map(|v| seal::open_details(&v.dataset.sealed, &s.keys.opening, binding)) {
            Some(Ok(d)) => {
                datasets.insert(r.dataset, d);
            }
            Some(Err(e)) => eprintln!(
                "warning: left out dataset {}: its details do not open with your key: {e}",
                r.dataset.short()
            ),
            None => {}
        }
    }
    let rel = leaderboard::build_release_after(
        *benchmark,
        &view.benchmark,
        &datasets,
        &opened,
        round,
        shown,
    );
    if rel.entries.is_empty() {
        return Err(NothingToRelease.into());
    }
    if shown.is_some_and(|r| r.entries == rel.entries) {
        bail!(
            "nothing new to release: the shown release already holds every figure the policy allows now"
        );
    }
    s.publish(Body::Release(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(n: u8) -> ResultView {
        ResultView {
            id: RecordId::from_bytes([n; 32]),
            benchmark: RecordId::from_bytes([100; 32]),
            model: RecordId::from_bytes([101; 32]),
            dataset: RecordId::from_bytes([n + 10; 32]),
            submitter: PublicKey::from(&protocol::testkit::key("owner")),
            counts: true,
            reason: None,
        }
    }

    #[test]
    fn a_dataset_name_cannot_leave_the_datasets_folder() {
        for ok in ["site-a", "hospital_b.2024", "A"] {
            assert!(check_dataset_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "ü", &"x".repeat(65)] {
            assert!(check_dataset_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_result_this_member_cannot_open_is_skipped_and_the_rest_released() {
        let results = [view(1), view(2), view(3)];
        let (opened, skipped) = open_counting(&results, |id| match id.as_bytes()[0] {
            2 => Err(seal::SealError::NotARecipient.into()),
            3 => Err(seal::SealError::Tampered.into()),
            _ => Ok([("auc".to_string(), MetricValue::float(0.9))].into_iter().collect()),
        })
        .expect("results at fault are skipped, not fatal");
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].dataset, results[0].dataset);
        let ids: Vec<_> = skipped.iter().map(|(r, _)| r.id).collect();
        assert_eq!(ids, vec![results[1].id, results[2].id]);
        assert!(format!("{:#}", skipped[0].1).contains("not among the recipients"));
    }

    #[test]
    fn a_failure_of_the_node_is_not_mistaken_for_a_bad_result() {
        let results = [view(1)];
        let err = open_counting(&results, |_| Err(anyhow!("connection refused")))
            .expect_err("the node's failure stops the release");
        assert!(format!("{err:#}").contains("connection refused"));
    }
}
