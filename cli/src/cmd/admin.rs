//! `medmesh admin`: what the network's admins decide together, at their threshold.

use anyhow::bail;
use clap::Subcommand;
use protocol::record::{Body, KeyRevocation};

use super::{Ctx, parse_key};
use crate::output::json;

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Revoke a key from a seq on: its records from that seq lose all authority once
    /// the admins' threshold signed the same revocation (after a key loss or an
    /// equivocation; see README, "Recovering a key").
    Revoke {
        /// The key to revoke (hex).
        #[arg(long)]
        key: String,
        /// The first seq of the key's chain that no longer counts (0: all of it).
        #[arg(long)]
        from_seq: u64,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
    },
}

/// Run `medmesh admin ...`.
pub fn run(ctx: &Ctx, a: AdminCmd) -> anyhow::Result<()> {
    match a {
        AdminCmd::Revoke { key, from_seq, reason } => {
            let key = parse_key(&key)?;
            let s = ctx.session()?;
            let st = s.state()?;
            if !st.admins.contains(&s.me()) {
                bail!(
                    "only the network's admins can revoke a key, and {} is not one of them",
                    s.me().short()
                );
            }
            let r = s.publish(Body::KeyRevocation(KeyRevocation { key, from_seq, reason }))?;
            let st = s.state()?;
            let effective = st.revoked.get(&key).is_some_and(|from| *from <= from_seq);
            let status = if effective {
                format!("key {} revoked from seq {}", key.short(), st.revoked[&key])
            } else {
                format!(
                    "revocation signed; it takes effect once {} admins have signed the same one",
                    st.admin_threshold
                )
            };
            if ctx.json {
                return json(&serde_json::json!({
                    "id": r.id, "status": status, "effective": effective,
                    "revoked_from_seq": st.revoked.get(&key),
                }));
            }
            crate::say!("{status}: {}", r.id.short())?;
            Ok(())
        }
    }
}
