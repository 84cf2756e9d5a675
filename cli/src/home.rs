//! A user's MedMesh home: keys, the network root, and where the node is.
//!
//! ```text
//! <home>/keys/signing.key, x25519.key   owner-only key files
//! <home>/root.cbor                       the network root (trust anchor)
//! <home>/profile.json                    node data directory, bootstrap peers
//!                                        (`network join --bootstrap`, used by
//!                                        `node start` when it is given none)
//! <home>/chain.json, chain.lock          the last seq and id signed ([`crate::chain`])
//! <home>/node/                           the node's data directory (default)
//! <home>/work/                           prepared datasets, executions, logs
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use protocol::{NetworkId, NetworkRoot};
use serde::{Deserialize, Serialize};

use crate::keys::{self, Keys};

/// The profile: what `network join` and `profile set` record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The node's data directory (its control address and token live there).
    pub node_dir: Option<PathBuf>,
    /// Bootstrap peers' multiaddresses, for `medmesh node start`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
}

/// A resolved home directory.
#[derive(Clone, Debug)]
pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    /// `--home`, else `$MEDMESH_HOME`, else `~/.medmesh`, made absolute (containers
    /// mount folders under it, and Docker takes only absolute paths).
    pub fn resolve(flag: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = match flag {
            Some(d) => std::path::absolute(&d)
                .with_context(|| format!("cannot make the home {} absolute", d.display()))?,
            None => {
                let home = std::env::var_os("HOME").context("HOME is not set; pass --home DIR")?;
                PathBuf::from(home).join(".medmesh")
            }
        };
        Ok(Self { dir })
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    pub fn root_path(&self) -> PathBuf {
        self.dir.join("root.cbor")
    }

    pub fn profile_path(&self) -> PathBuf {
        self.dir.join("profile.json")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The user's keys.
    pub fn keys(&self) -> anyhow::Result<Keys> {
        Ok(keys::load(&self.keys_dir())?)
    }

    /// The profile, or the default when none was written.
    pub fn profile(&self) -> anyhow::Result<Profile> {
        let p = self.profile_path();
        if !p.exists() {
            return Ok(Profile::default());
        }
        let text =
            fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid profile; fix or delete it", p.display()))
    }

    pub fn save_profile(&self, profile: &Profile) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let p = self.profile_path();
        fs::write(&p, serde_json::to_string_pretty(profile)? + "\n")
            .with_context(|| format!("cannot write {}", p.display()))
    }

    /// The node's data directory: the profile's, else `<home>/node`.
    pub fn node_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(self.profile()?.node_dir.unwrap_or_else(|| self.dir.join("node")))
    }

    /// The network root this home belongs to.
    pub fn root(&self) -> anyhow::Result<NetworkRoot> {
        read_root(&self.root_path()).map_err(|e| {
            e.context("this home has no network root; run `medmesh network create` (admin) or `medmesh network join --root FILE`")
        })
    }

    pub fn network_id(&self) -> anyhow::Result<NetworkId> {
        Ok(self.root()?.network_id())
    }

    /// Install `root` as this home's network root (refusing to switch networks).
    pub fn install_root(&self, root: &NetworkRoot) -> anyhow::Result<()> {
        let p = self.root_path();
        if p.exists() {
            let existing = read_root(&p)?;
            if existing.network_id() != root.network_id() {
                bail!(
                    "{} already holds network {}; use another --home for network {}",
                    p.display(),
                    existing.network_id().short(),
                    root.network_id().short()
                );
            }
            return Ok(());
        }
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        fs::write(&p, root.to_bytes()).with_context(|| format!("cannot write {}", p.display()))
    }
}

/// Read and validate a root file.
pub fn read_root(path: &Path) -> anyhow::Result<NetworkRoot> {
    let bytes = fs::read(path)
        .with_context(|| format!("cannot read the network root {}", path.display()))?;
    NetworkRoot::from_bytes(&bytes)
        .with_context(|| format!("{} is not a MedMesh network root", path.display()))
}
