//! Signing and publishing: every write command builds a record body, shows what
//! will be published, asks first (unless `-y`), signs it as the next record of
//! the user's chain, records that head in the home ([`crate::chain`]), submits it
//! to the local node, and reads the fold's verdict on it: a record the fold keeps
//! without effect (a decision by a key without authority, ...) is an error,
//! [`IgnoredByFold`], not a success.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use protocol::record::Body;
use protocol::{NetworkId, PublicKey, Record, RecordId, State};

use crate::chain;
use crate::keys::Keys;

/// What the CLI needs from its node (implemented over the control API; tests may
/// implement it in memory).
pub trait NodeApi {
    /// The exact bytes of the highest-seq record the node holds from `key`, which
    /// the caller verifies before trusting it.
    fn head_record(&self, key: &PublicKey) -> anyhow::Result<Option<Vec<u8>>>;
    /// Submit signed bytes; the node answers the id or why it refused.
    fn submit(&self, bytes: &[u8]) -> anyhow::Result<RecordId>;
    /// The fold's verdict on a record the node holds: `Some(reason)` when it is
    /// kept without effect.
    fn ignored(&self, id: &RecordId) -> anyhow::Result<Option<String>>;
    /// The node's derived state.
    fn state(&self) -> anyhow::Result<State>;
    /// The exact bytes of one record.
    fn record(&self, id: &RecordId) -> anyhow::Result<Vec<u8>>;
}

/// How to confirm a publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// Ask on the terminal.
    Ask,
    /// `-y`: publish without asking.
    Yes,
}

/// The exit code of a command whose record the fold ignores (any other failure
/// exits 1).
pub const EXIT_IGNORED: u8 = 3;

/// A published record that the fold keeps without effect: the command failed,
/// although the network holds the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the network keeps your {kind} record {} but ignores it: {reason}",
    id.short()
)]
pub struct IgnoredByFold {
    pub id: RecordId,
    pub kind: &'static str,
    pub reason: String,
}

/// Sign `body` as the next record of `keys`' chain and submit it.
///
/// The next seq follows the higher of the head recorded in `home` and the head
/// the node proves with the record itself (verified: signature, signer,
/// network); the new head is recorded durably before the record leaves, and the
/// home's lock is held throughout, so this home never signs a seq twice.
pub fn publish(
    api: &dyn NodeApi,
    home: &Path,
    keys: &Keys,
    network: NetworkId,
    body: Body,
    confirm: Confirm,
) -> anyhow::Result<Record> {
    let me = keys.public();
    let _lock = chain::lock(home)?;
    let local = chain::load(home, &network, &me)?;
    let node = match api.head_record(&me)? {
        Some(bytes) => Some(chain::verify_node_head(&bytes, &network, &me)?),
        None => None,
    };
    let next = chain::next(local, node)?;
    if let Some(note) = &next.note {
        eprintln!("note: {note}");
    }
    if confirm == Confirm::Ask {
        let summary = serde_json::to_string_pretty(&body).context("cannot show the record")?;
        eprintln!(
            "About to publish a {} record, signed by {} as seq {} of its chain{}:\n{summary}",
            body.kind(),
            me.short(),
            next.seq,
            next.prev.map(|p| format!(" (after {})", p.short())).unwrap_or_default()
        );
        if !ask("Publish it to the network?")? {
            bail!("not published");
        }
    }
    let record = Record::sign(&keys.signing, network, next.seq, next.prev, body)
        .context("cannot sign the record")?;
    chain::save(home, &network, &me, chain::Head { seq: record.seq, id: record.id })?;
    let id = api.submit(&record.bytes)?;
    if id != record.id {
        bail!(
            "the node stored the record under id {}, not {}; is it on another network?",
            id.short(),
            record.id.short()
        );
    }
    if let Some(reason) = api.ignored(&record.id)? {
        return Err(IgnoredByFold { id: record.id, kind: record.kind(), reason }.into());
    }
    Ok(record)
}

fn ask(question: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "refusing to publish without confirmation on a non-interactive input; pass -y to confirm"
        );
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("cannot read the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}
