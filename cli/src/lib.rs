//! The `medmesh` command's building blocks, one module per concern; `main.rs`
//! parses flags and dispatches.
//!
//! - [`keys`]: the user's signing and X25519 keys in owner-only files.

pub mod keys;
