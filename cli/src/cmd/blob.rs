//! `medmesh blob`: the node's content-addressed blob store (image archives,
//! additional files, demo datasets): add a file, fetch one from peers, see what
//! is held and being fetched, collect what no record needs.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use protocol::Hash32;
use protocol::record::BlobRef;

use super::Ctx;
use crate::control::Control;
use crate::output::{json, table};
use crate::publish::NodeApi;

#[derive(Debug, Subcommand)]
pub enum BlobCmd {
    /// Add a file to your node's blob store (pinned); prints its hash and size.
    Add { file: PathBuf },
    /// Fetch a blob from peers, with progress, and optionally copy it out.
    Fetch {
        /// The blob's BLAKE3 (64 hex digits).
        hash: String,
        /// Its size in bytes, as the record naming it declares.
        #[arg(long)]
        size: u64,
        /// Copy the blob here once fetched.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Blobs held and being fetched, the quota, and the peers' blob scores.
    Status,
    /// Remove blobs neither pinned nor named by a counting record.
    Gc,
}

fn parse_hash(s: &str) -> anyhow::Result<Hash32> {
    let bytes = hex::decode(s.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| anyhow!("`{s}` is not a blob hash: give its 64 hex digits"))?;
    Ok(Hash32::from_bytes(bytes))
}

pub fn run(ctx: &Ctx, c: BlobCmd) -> anyhow::Result<()> {
    let api = Control::for_node_dir(&ctx.home.node_dir()?)?;
    match c {
        BlobCmd::Add { file } => {
            let b = api.blob_add(&file)?;
            if ctx.json {
                return json(&serde_json::json!({"hash": b.hash, "size": b.size}));
            }
            crate::say!("{} {}", b.hash.to_hex(), b.size)?;
            Ok(())
        }
        BlobCmd::Fetch { hash, size, out } => {
            let blob = BlobRef { hash: parse_hash(&hash)?, size };
            match out {
                Some(out) => api.blob_get(&blob, &format!("blob {}", blob.hash.short()), &out)?,
                None => api.blob_fetch(&blob, &format!("blob {}", blob.hash.short()))?,
            }
            if ctx.json {
                return json(
                    &serde_json::json!({"hash": blob.hash, "size": size, "status": "complete"}),
                );
            }
            crate::say!("fetched {} ({size} bytes)", blob.hash.to_hex())?;
            Ok(())
        }
        BlobCmd::Status => {
            let v = api.blobs()?;
            if ctx.json {
                return json(&v);
            }
            let rows = v["blobs"]
                .as_array()
                .context("the node's blob overview has no list")?
                .iter()
                .map(|b| {
                    vec![
                        b["hash"].as_str().unwrap_or("?").chars().take(16).collect(),
                        b["size"].to_string(),
                        b["have"].to_string(),
                        if b["complete"].as_bool() == Some(true) { "complete" } else { "partial" }
                            .into(),
                        if b["pinned"].as_bool() == Some(true) { "pinned" } else { "" }.into(),
                    ]
                })
                .collect();
            table(&["hash", "size", "have", "state", "pin"], rows)?;
            crate::say!("{} of {} bytes used", v["used"], v["quota"])?;
            Ok(())
        }
        BlobCmd::Gc => {
            let v = api.blob_gc()?;
            if ctx.json {
                return json(&v);
            }
            crate::say!(
                "removed {} blobs, {} bytes freed",
                v["removed"].as_array().map(Vec::len).unwrap_or(0),
                v["freed"]
            )?;
            Ok(())
        }
    }
}
