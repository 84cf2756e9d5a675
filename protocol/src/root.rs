//! The network root: the trust anchor. It names the admin keys and their threshold;
//! the BLAKE3 of its canonical bytes is the network id, which every signature binds.
//! It is distributed out of band (a file given to `network join`), never gossiped.

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::error::RootError;
use crate::ids::{Hash32, NetworkId, PublicKey};
use crate::limits::{ADMINS_LEN_MAX, NAME_BYTES_MAX};

const NETWORK_ID_CONTEXT: &[u8] = b"medmesh/network-id/v1\0";

/// The network root document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRoot {
    pub v: u64,
    /// A human name for the network.
    pub name: String,
    /// Epoch-0 admin keys.
    pub admins: Vec<PublicKey>,
    /// Distinct admins needed for a benchmark decision, a revocation or a rotation.
    pub threshold: u16,
    /// Makes two networks with the same admins distinct.
    pub nonce: Hash32,
    /// How keys join. Absent in the bytes means [`AdmissionMode::Open`], so roots
    /// written before admission existed keep their meaning (and their id).
    #[serde(default, skip_serializing_if = "AdmissionMode::is_open")]
    pub admission: AdmissionMode,
}

/// How keys join a network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionMode {
    /// A key's records count, and honest nodes store and forward them, only once
    /// the admins at their threshold have signed its admission
    /// ([`crate::record::Admission`]). Until then nodes keep only its join
    /// request, in a bounded pool. The default of `medmesh network create`.
    Admitted,
    /// Any key takes part (public challenges); nodes bound what each key and the
    /// whole store may hold.
    #[default]
    Open,
}

impl AdmissionMode {
    pub fn is_open(&self) -> bool {
        *self == AdmissionMode::Open
    }

    /// The name used in files, flags and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            AdmissionMode::Admitted => "admitted",
            AdmissionMode::Open => "open",
        }
    }
}

impl NetworkRoot {
    /// A validated root.
    pub fn new(
        name: impl Into<String>,
        admins: Vec<PublicKey>,
        threshold: u16,
        nonce: Hash32,
    ) -> Result<Self, RootError> {
        let root = Self {
            v: 1,
            name: name.into(),
            admins,
            threshold,
            nonce,
            admission: AdmissionMode::Open,
        };
        root.validate()?;
        Ok(root)
    }

    /// The same root with another admission mode (a different network id).
    pub fn with_admission(mut self, admission: AdmissionMode) -> Self {
        self.admission = admission;
        self
    }

    fn validate(&self) -> Result<(), RootError> {
        if self.v != 1 {
            return Err(RootError::Invalid(format!("unsupported root version {}", self.v)));
        }
        if self.name.is_empty() || self.name.len() > NAME_BYTES_MAX {
            return Err(RootError::Invalid(format!("name must be 1 to {NAME_BYTES_MAX} bytes")));
        }
        if self.admins.is_empty() || self.admins.len() > ADMINS_LEN_MAX {
            return Err(RootError::Invalid(format!("must list 1 to {ADMINS_LEN_MAX} admin keys")));
        }
        let mut sorted = self.admins.clone();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(RootError::Invalid("lists the same admin key twice".into()));
        }
        if self.threshold == 0 || usize::from(self.threshold) > self.admins.len() {
            return Err(RootError::Invalid(format!(
                "threshold {} must be between 1 and the number of admins ({})",
                self.threshold,
                self.admins.len()
            )));
        }
        Ok(())
    }

    /// Canonical bytes, as written to a root file.
    pub fn to_bytes(&self) -> Vec<u8> {
        cbor::to_canonical(self).expect("a validated root always encodes")
    }

    /// Strictly decode and validate a root file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RootError> {
        if bytes.len() > 16 * 1024 {
            return Err(RootError::Invalid("root file is larger than 16 KiB".into()));
        }
        let root: Self = cbor::from_canonical(bytes).map_err(RootError::Cbor)?;
        root.validate()?;
        Ok(root)
    }

    /// The network id: BLAKE3 over a context string and the canonical bytes.
    pub fn network_id(&self) -> NetworkId {
        let mut h = blake3::Hasher::new();
        h.update(NETWORK_ID_CONTEXT);
        h.update(&self.to_bytes());
        NetworkId::from_bytes(*h.finalize().as_bytes())
    }
}
