//! Signing and publishing: every write command builds a record body, shows what
//! will be published, asks first (unless `-y`), signs it as the next record of
//! the user's chain and submits it to the local node.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use protocol::record::Body;
use protocol::{NetworkId, PublicKey, Record, RecordId, State};

use crate::keys::Keys;

/// What the CLI needs from its node (implemented over the control API; tests may
/// implement it in memory).
pub trait NodeApi {
    /// The highest seq the node holds for `key`, and that record's id.
    fn head(&self, key: &PublicKey) -> anyhow::Result<Option<(u64, RecordId)>>;
    /// Submit signed bytes; the node answers the id or why it refused.
    fn submit(&self, bytes: &[u8]) -> anyhow::Result<RecordId>;
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

/// Sign `body` as the next record of `keys`' chain and submit it.
pub fn publish(
    api: &dyn NodeApi,
    keys: &Keys,
    network: NetworkId,
    body: Body,
    confirm: Confirm,
) -> anyhow::Result<Record> {
    let me = keys.public();
    let (seq, prev) = match api.head(&me)? {
        Some((seq, id)) => (seq + 1, Some(id)),
        None => (0, None),
    };
    if confirm == Confirm::Ask {
        let summary = serde_json::to_string_pretty(&body).context("cannot show the record")?;
        eprintln!(
            "About to publish a {} record, signed by {}:\n{summary}",
            body.kind(),
            me.short()
        );
        if !ask("Publish it to the network?")? {
            bail!("not published");
        }
    }
    let record =
        Record::sign(&keys.signing, network, seq, prev, body).context("cannot sign the record")?;
    let id = api.submit(&record.bytes)?;
    if id != record.id {
        bail!(
            "the node stored the record under id {}, not {}; is it on another network?",
            id.short(),
            record.id.short()
        );
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
