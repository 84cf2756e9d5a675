//! `medmesh keys`: generate, show and export your signing and encryption keys.

use clap::Subcommand;

use super::Ctx;
use crate::output::json;

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Generate a signing key and an encryption key (owner-only files).
    Generate,
    /// Show your public keys.
    Show,
    /// Print your public keys as JSON, to give to an admin or a benchmark owner.
    Export,
}

pub fn run(ctx: &Ctx, k: KeysCmd) -> anyhow::Result<()> {
    let dir = ctx.home.keys_dir();
    let keys = match k {
        KeysCmd::Generate => crate::keys::generate(&dir)?,
        KeysCmd::Show | KeysCmd::Export => crate::keys::load(&dir)?,
    };
    let v = serde_json::json!({ "signing_key": keys.public(), "encryption_key": keys.x25519(), "keys_dir": dir });
    if ctx.json || matches!(k, KeysCmd::Export) {
        return json(&v);
    }
    crate::say!(
        "signing key:    {}\nencryption key: {}\nkept in:        {}",
        keys.public(),
        keys.x25519(),
        dir.display()
    )?;
    Ok(())
}
