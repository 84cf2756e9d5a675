//! `medmesh admin`: what the network's admins decide together, at their threshold.

use anyhow::bail;
use clap::Subcommand;
use protocol::record::{AdminRotation, Body, KeyRevocation};

use super::{Ctx, parse_key};
use crate::output::json;

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Revoke a key from a seq on: its records from that seq lose all authority once
    /// the admins' threshold signed the same revocation (after a key loss or an
    /// equivocation; see README, "Recovering a key").
    Revoke {
        /// The key to revoke (hex).
        #[arg(value_name = "KEY", required_unless_present = "key_flag")]
        key: Option<String>,
        /// The key to revoke (hex), as a flag.
        #[arg(long = "key", value_name = "KEY", conflicts_with = "key")]
        key_flag: Option<String>,
        /// The first seq of the key's chain that no longer counts (0: all of it).
        #[arg(long)]
        from_seq: u64,
        /// Why, for the record.
        #[arg(long)]
        reason: String,
    },
    /// Hand authority to a new set of admins: the next epoch starts once the
    /// current admins' threshold have signed the same rotation. Revocations carry
    /// over, and members stay admitted.
    Rotate {
        /// A new admin's public signing key (hex); repeat for each.
        #[arg(long = "admin", required = true)]
        admins: Vec<String>,
        /// Distinct new admins needed for a decision from then on.
        #[arg(long)]
        threshold: u16,
    },
}

/// Run `medmesh admin ...`.
pub fn run(ctx: &Ctx, a: AdminCmd) -> anyhow::Result<()> {
    match a {
        AdminCmd::Rotate { admins, threshold } => {
            let mut admins: Vec<_> =
                admins.iter().map(|a| parse_key(a)).collect::<anyhow::Result<_>>()?;
            admins.sort();
            admins.dedup();
            if threshold == 0 || usize::from(threshold) > admins.len() {
                bail!(
                    "--threshold {threshold} must be between 1 and the number of new admins ({})",
                    admins.len()
                );
            }
            let s = ctx.session()?;
            let st = crate::views::network(s.api())?;
            if !st.admins.contains(&s.me()) {
                bail!(
                    "only the current admins (epoch {}) can rotate, and {} is not one of them",
                    st.admin_epoch,
                    s.me().short()
                );
            }
            let epoch = st.admin_epoch + 1;
            let r = s.publish(Body::AdminRotation(AdminRotation { epoch, admins, threshold }))?;
            let st = crate::views::network(s.api())?;
            let effective = st.admin_epoch >= epoch;
            let status = if effective {
                format!(
                    "epoch {epoch} started: {} admins, threshold {}",
                    st.admins.len(),
                    threshold
                )
            } else {
                format!(
                    "rotation to epoch {epoch} signed; it takes effect once {} admins have signed the same one",
                    st.admin_threshold
                )
            };
            if ctx.json {
                return json(&serde_json::json!({
                    "id": r.id, "epoch": epoch, "effective": effective, "status": status,
                }));
            }
            crate::say!("{status}: {}", r.id.short())?;
            Ok(())
        }
        AdminCmd::Revoke { key, key_flag, from_seq, reason } => {
            let key = parse_key(&key.or(key_flag).unwrap_or_default())?;
            let s = ctx.session()?;
            let st = crate::views::network(s.api())?;
            if !st.admins.contains(&s.me()) {
                bail!(
                    "only the network's admins can revoke a key, and {} is not one of them",
                    s.me().short()
                );
            }
            let r = s.publish(Body::KeyRevocation(KeyRevocation { key, from_seq, reason }))?;
            let st = crate::views::network(s.api())?;
            let revoked = crate::views::key(s.api(), &key)?.revoked_from_seq;
            let effective = revoked.is_some_and(|from| from <= from_seq);
            let status = if let (true, Some(from)) = (effective, revoked) {
                format!("key {} revoked from seq {from}", key.short())
            } else {
                format!(
                    "revocation signed; it takes effect once {} admins have signed the same one",
                    st.admin_threshold
                )
            };
            if ctx.json {
                return json(&serde_json::json!({
                    "id": r.id, "status": status, "effective": effective,
                    "revoked_from_seq": revoked,
                }));
            }
            crate::say!("{status}: {}", r.id.short())?;
            Ok(())
        }
    }
}
