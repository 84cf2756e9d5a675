//! `medmesh network`: create a network root (admin), join one, show it.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use node::admission::PendingJoin;
use protocol::record::MemberRole;
use protocol::{AdmissionMode, Hash32, NetworkRoot, PublicKey};

use super::{Ctx, parse_key};
use crate::home::read_root;
use crate::output::{json, table};

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network root naming the admin keys (admin).
    Create {
        /// A human name for the network.
        #[arg(long)]
        name: String,
        /// An admin's public signing key (hex); repeat for several. Default: yours.
        #[arg(long = "admin")]
        admins: Vec<String>,
        /// Distinct admins needed for a decision.
        #[arg(long, default_value_t = 1)]
        threshold: u16,
        /// Also write the root file here, to hand to participants.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Let any key take part (a public challenge). Default: keys take part
        /// once the admins admit them (`medmesh network admit`).
        #[arg(long)]
        open: bool,
    },
    /// Join a network from its root file (the bootstrap peers are remembered in the
    /// home, for `medmesh node start`).
    Join {
        /// The network root file the admin gave you.
        #[arg(long)]
        root: PathBuf,
        /// A bootstrap peer's multiaddress; repeat for several.
        #[arg(long = "bootstrap")]
        bootstrap: Vec<String>,
    },
    /// Show the network this home belongs to.
    Show,
    /// Ask the admins of an admitted network to admit your key (a join request,
    /// kept by every node in a bounded pool until they do).
    Apply {
        /// A role you need; repeat for several: data_owner (register datasets, run
        /// benchmarks), model_owner (register models), benchmark_owner (create
        /// benchmarks). None: you only take part (a committee member).
        #[arg(long = "role")]
        roles: Vec<MemberRole>,
        /// Your name, as the admins will see it.
        #[arg(long)]
        name: String,
        /// Your organisation.
        #[arg(long, default_value = "")]
        organisation: String,
        /// How the admins can check it is you (free text).
        #[arg(long, default_value = "")]
        message: String,
    },
    /// The join requests waiting for the admins (admin).
    Requests,
    /// Admit a key to this admitted network with its roles (admin). It is a member
    /// once the admins' threshold have admitted it.
    Admit {
        /// The key to admit (hex), or the name its join request gives, as `network
        /// requests` lists them.
        key: String,
        /// A role to grant; repeat for several. Default: the roles its join request
        /// asks for.
        #[arg(long = "role")]
        roles: Vec<MemberRole>,
        /// Admit it with no role beyond taking part (a committee member).
        #[arg(long, conflicts_with = "roles")]
        no_roles: bool,
    },
    /// The admitted keys and their roles.
    Members,
}

pub fn run(ctx: &Ctx, n: NetworkCmd) -> anyhow::Result<()> {
    let root = match n {
        NetworkCmd::Apply { roles, name, organisation, message } => {
            return apply(ctx, roles, name, organisation, message);
        }
        NetworkCmd::Requests => return requests(ctx),
        NetworkCmd::Admit { key, roles, no_roles } => return admit(ctx, &key, roles, no_roles),
        NetworkCmd::Members => return members(ctx),
        NetworkCmd::Create { name, admins, threshold, out, open } => {
            let admins = if admins.is_empty() {
                vec![ctx.home.keys()?.public()]
            } else {
                admins.iter().map(|a| parse_key(a)).collect::<anyhow::Result<_>>()?
            };
            let mut nonce = [0u8; 32];
            getrandom::fill(&mut nonce).map_err(|e| anyhow!("no randomness: {e}"))?;
            let mode = if open { AdmissionMode::Open } else { AdmissionMode::Admitted };
            let root = NetworkRoot::new(name, admins, threshold, Hash32::from_bytes(nonce))?
                .with_admission(mode);
            ctx.home.install_root(&root)?;
            if let Some(out) = out {
                std::fs::write(&out, root.to_bytes())
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            root
        }
        NetworkCmd::Join { root, bootstrap } => {
            for b in &bootstrap {
                b.parse::<node::Multiaddr>().map_err(|e| {
                    anyhow!("--bootstrap `{b}` is not a multiaddress ({e}); give one like /ip4/1.2.3.4/tcp/4002/p2p/<peer id>")
                })?;
            }
            let root = read_root(&root)?;
            ctx.home.install_root(&root)?;
            let mut p = ctx.home.profile()?;
            for b in bootstrap {
                if !p.bootstrap.contains(&b) {
                    p.bootstrap.push(b);
                }
            }
            ctx.home.save_profile(&p)?;
            root
        }
        NetworkCmd::Show => ctx.home.root()?,
    };
    let v = serde_json::json!({
        "network_id": root.network_id(), "name": root.name, "admins": root.admins,
        "threshold": root.threshold, "admission": root.admission.as_str(),
        "root_file": ctx.home.root_path(),
    });
    if ctx.json {
        return json(&v);
    }
    let admission = match root.admission {
        AdmissionMode::Admitted => "admitted (keys take part once the admins admit them)",
        AdmissionMode::Open => "open (any key takes part)",
    };
    crate::say!(
        "network {} ({})\nadmins: {} of {}\nadmission: {admission}\nroot file: {}",
        root.name,
        root.network_id(),
        root.threshold,
        root.admins.len(),
        ctx.home.root_path().display()
    )?;
    Ok(())
}

fn sorted(mut roles: Vec<MemberRole>) -> Vec<MemberRole> {
    roles.sort();
    roles.dedup();
    roles
}

fn role_list(roles: &[MemberRole]) -> String {
    if roles.is_empty() {
        return "-".into();
    }
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

fn apply(
    ctx: &Ctx,
    roles: Vec<MemberRole>,
    name: String,
    organisation: String,
    message: String,
) -> anyhow::Result<()> {
    let s = ctx.session()?;
    let roles = sorted(roles);
    let r = crate::workflow::apply(&s, roles.clone(), name, organisation, message)?;
    if ctx.json {
        return json(&serde_json::json!({ "id": r.id, "key": s.me(), "roles": roles }));
    }
    crate::say!(
        "join request {} sent for key {} (roles: {}).\nAn admin admits you with: medmesh network admit {}",
        r.id.short(),
        s.me().short(),
        role_list(&roles),
        s.me()
    )?;
    Ok(())
}

fn pending(ctx: &Ctx) -> anyhow::Result<Vec<PendingJoin>> {
    crate::workflow::join_requests(&ctx.home)
}

fn requests(ctx: &Ctx) -> anyhow::Result<()> {
    let list = pending(ctx)?;
    if ctx.json {
        return json(&list);
    }
    if list.is_empty() {
        crate::say!("no join requests waiting")?;
        return Ok(());
    }
    let rows = list
        .iter()
        .map(|p| {
            vec![
                p.key.to_hex(),
                p.name.clone(),
                p.organisation.clone(),
                role_list(&p.roles),
                p.message.clone(),
            ]
        })
        .collect();
    table(&["KEY", "NAME", "ORGANISATION", "ROLES", "MESSAGE"], rows)
}

/// A key as typed: hex, or the name of exactly one pending join request.
fn key_or_request_name(ctx: &Ctx, typed: &str) -> anyhow::Result<PublicKey> {
    if let Ok(k) = parse_key(typed) {
        return Ok(k);
    }
    let named: Vec<PendingJoin> = pending(ctx)?.into_iter().filter(|p| p.name == typed).collect();
    match named.as_slice() {
        [one] => Ok(one.key),
        [] => bail!(
            "`{typed}` is neither a key (64 hex digits) nor the name of a join request this node holds; `medmesh network requests` lists them"
        ),
        many => bail!(
            "{} join requests are named `{typed}`; give the key: {}",
            many.len(),
            many.iter().map(|p| p.key.to_hex()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn admit(ctx: &Ctx, key: &str, roles: Vec<MemberRole>, no_roles: bool) -> anyhow::Result<()> {
    let key = key_or_request_name(ctx, key)?;
    let s = ctx.session()?;
    let asked = (no_roles || !roles.is_empty()).then(|| sorted(roles));
    let (r, roles) = crate::workflow::admit(&s, key, asked)?;
    let st = crate::views::network(s.api())?;
    let member = crate::views::key(s.api(), &key)?.member;
    let status = match &member {
        Some(m) => format!("key {} is a member (roles: {})", key.short(), role_list(&m.roles)),
        None => format!(
            "admission signed; key {} is a member once {} admins have admitted it",
            key.short(),
            st.admin_threshold
        ),
    };
    if ctx.json {
        return json(&serde_json::json!({
            "id": r.id, "key": key, "roles": roles, "member": member.is_some(),
            "granted": member.as_ref().map(|m| m.roles.clone()), "status": status,
        }));
    }
    crate::say!("{status}: {}", r.id.short())?;
    Ok(())
}

fn members(ctx: &Ctx) -> anyhow::Result<()> {
    let s = ctx.session()?;
    let st = crate::views::network(s.api())?;
    let members = crate::views::members(s.api())?;
    if ctx.json {
        return json(&serde_json::json!({
            "admission": st.admission.as_str(), "admins": st.admins,
            "admin_threshold": st.admin_threshold, "members": members,
        }));
    }
    let keys: Vec<PublicKey> =
        st.admins.iter().copied().chain(members.iter().map(|m| m.key)).collect();
    let names = crate::views::names(s.api(), &[], &keys)?;
    let name = |k: &PublicKey| names.keys.get(k).cloned();
    if st.admission.is_open() {
        crate::say!("this network is open: every key takes part")?;
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = st
        .admins
        .iter()
        .map(|k| vec![k.to_hex(), name(k).unwrap_or_default(), "admin".into(), "all".into()])
        .collect();
    rows.extend(members.iter().map(|m| {
        vec![
            m.key.to_hex(),
            name(&m.key).unwrap_or_default(),
            format!("member since epoch {}", m.epoch),
            role_list(&m.roles),
        ]
    }));
    table(&["KEY", "NAME", "STATUS", "ROLES"], rows)
}
