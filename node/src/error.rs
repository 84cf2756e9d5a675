//! Typed errors: one enum per operation whose callers act on the difference.

use std::path::PathBuf;

use protocol::RecordError;
use thiserror::Error;

/// The store could not be opened, read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "data directory is in use by another node (store {0} is locked); stop that node or choose another --data-dir"
    )]
    Locked(PathBuf),
    #[error("cannot open store {path}")]
    Open { path: PathBuf, source: Box<redb::Error> },
    #[error("store has unknown format {0:?}; upgrade medmesh")]
    Format(Vec<u8>),
    #[error("store holds an invalid network root: {0}")]
    Root(protocol::RootError),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    #[error("store error: {0}")]
    Redb(Box<redb::Error>),
    #[error("node is stopped")]
    Closed,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// Starting a node failed.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot create data directory {path}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("network root file {path}: {reason}")]
    RootFile { path: PathBuf, reason: String },
    #[error(
        "control API address {0} is not a loopback address; use 127.0.0.1:<port>, or pass --control-public to serve it on this address (writes still need the token)"
    )]
    ControlNotLoopback(std::net::SocketAddr),
    #[error(
        "--control-host names the hosts of a public control API; add --control-public, or drop --control-host (a loopback control API answers to localhost and 127.0.0.1)"
    )]
    ControlHostsNotPublic,
    #[error("no network root: pass the root file (--root) on first start")]
    NoRoot,
    #[error(
        "the root file names network {given}, but this data directory serves network {stored}; use the matching root or another --data-dir"
    )]
    RootMismatch { given: String, stored: String },
    #[error("peer key {path}: {reason}")]
    PeerKey { path: PathBuf, reason: String },
    #[error("control token {path}")]
    Token { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {reason} (is the port taken by another process?)")]
    Listen { addr: String, reason: String },
    #[error("cannot serve the control API on {addr} (is the port taken by another process?)")]
    Control { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot build the libp2p swarm: {0}")]
    Swarm(String),
}

/// A record handed to the node was refused.
#[derive(Debug, Error)]
pub enum SubmitError {
    /// The record itself is invalid (bad signature, wrong network, too large, ...).
    #[error("record refused: {0}")]
    Invalid(#[from] RecordError),
    /// The record is valid but could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("node is stopped")]
    Closed,
    /// The record is valid, but this node does not store it (its signer is not
    /// admitted, or it would break a quota); `reason` names why.
    #[error("record not stored ({reason}): {message}")]
    NotStored { reason: &'static str, message: String },
}

impl SubmitError {
    /// A short stable reason name for the control API.
    pub fn kind(&self) -> &'static str {
        match self {
            SubmitError::Invalid(e) => e.kind(),
            SubmitError::Store(_) => "store_failed",
            SubmitError::Closed => "node_stopped",
            SubmitError::NotStored { reason, .. } => reason,
        }
    }
}

/// A request to the swarm task failed because the node stopped.
#[derive(Debug, Error)]
#[error("node is stopped")]
pub struct Stopped;
