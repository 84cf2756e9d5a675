//! The `medmesh` command's building blocks, one module per concern; `main.rs`
//! parses flags and dispatches.
//!
//! - [`app`]: the top-level parser and dispatch; [`cmd`]: one module per command
//!   group (`keys`, `network`, `benchmark`, `dataset`, ...).
//! - [`keys`]: the user's signing and X25519 keys in owner-only files.
//! - [`ids`]: short ids and unique-prefix resolution.
//! - [`publish`]: show, confirm, sign and submit a record, and read the fold's
//!   verdict on it.
//! - [`chain`]: the last seq and id this home signed, so that it never signs one twice.
//! - [`output`]: tables and `--json`.
//! - [`home`]: the user's home: keys, network root, profile, work folders.
//! - [`demo`]: the whole workflow on a local federation of real nodes.
//! - [`views`]: the node's paged, indexed views (benchmarks, containers,
//!   datasets, associations, results, a leaderboard), read page by page.
//! - [`workflow`]: MedPerf's workflow steps, shared by the commands, the demo and
//!   the UI.
//! - [`ui`]: `medmesh ui`, the web application for every role.

pub mod app;
pub mod chain;
pub mod cmd;
pub mod control;
pub mod demo;
pub mod home;
pub mod ids;
pub mod keys;
pub mod output;
pub mod publish;
pub mod ui;
pub mod views;
pub mod workflow;
