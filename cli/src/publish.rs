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
use protocol::{NetworkId, PublicKey, Record, RecordId};

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
    /// The exact bytes of one record.
    fn record(&self, id: &RecordId) -> anyhow::Result<Vec<u8>>;
    /// A JSON document of the node's read API (a page of a view, see
    /// [`crate::views`]); `None` when the node answers 404.
    fn get_view(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        anyhow::bail!("this node serves no paged views ({path}); update it")
    }
    /// Add a file to the node's blob store, pinned: the blob peers will fetch.
    fn blob_add(&self, path: &std::path::Path) -> anyhow::Result<protocol::record::BlobRef> {
        anyhow::bail!("this node cannot hold blobs ({}); update it", path.display())
    }
    /// Have the node fetch a blob from its peers (progress on the terminal), then
    /// copy it to `to`, checked against its hash.
    fn blob_get(
        &self,
        blob: &protocol::record::BlobRef,
        what: &str,
        to: &std::path::Path,
    ) -> anyhow::Result<()> {
        let _ = (blob, to);
        anyhow::bail!("this node cannot fetch blobs (needed for {what}); update it")
    }
}

/// How to confirm a publication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// Ask on the terminal.
    Ask,
    /// `-y`: publish without asking.
    Yes,
    /// Sign nothing: stop where the terminal would ask, with [`Unsigned`] (the
    /// record as it would be signed), so that a reviewer sees it first (`medmesh ui`).
    Preview,
    /// Sign only the record whose [`Unsigned::digest`] the reviewer saw; any other
    /// (the state moved on, so the workflow built another) is refused.
    Reviewed(protocol::Hash32),
}

/// The record a workflow step would sign, shown before signing ([`Confirm::Preview`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("not signed: the {kind} record awaits review")]
pub struct Unsigned {
    pub kind: &'static str,
    pub signer: PublicKey,
    pub seq: u64,
    /// The record's body as JSON, pretty-printed.
    pub body_json: String,
    /// BLAKE3 of `body_json`: what [`Confirm::Reviewed`] must name.
    pub digest: protocol::Hash32,
}

/// The record changed between review and signing.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the {kind} record is no longer the one you reviewed (the network moved on); review it again"
)]
pub struct ReviewOutdated {
    pub kind: &'static str,
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
    match confirm {
        Confirm::Yes | Confirm::Ask => {}
        Confirm::Preview | Confirm::Reviewed(_) => {
            let body_json =
                serde_json::to_string_pretty(&body).context("cannot show the record")?;
            let digest = protocol::Hash32::of(body_json.as_bytes());
            if confirm == Confirm::Preview {
                return Err(Unsigned {
                    kind: body.kind(),
                    signer: me,
                    seq: next.seq,
                    body_json,
                    digest,
                }
                .into());
            }
            if confirm != Confirm::Reviewed(digest) {
                return Err(ReviewOutdated { kind: body.kind() }.into());
            }
        }
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
    // A join request from a key not admitted waits in the pool, outside the fold.
    let pooled = matches!(record.body, Body::JoinRequest(_));
    if !pooled && let Some(reason) = api.ignored(&record.id)? {
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use protocol::record::Profile;

    use super::*;

    /// A node in memory: it stores what it is sent unless told to fail, and
    /// ignores records whose id is listed.
    #[derive(Default)]
    struct MemoryNode {
        stored: RefCell<Vec<Record>>,
        fail_submit: bool,
        ignore: Option<String>,
    }

    impl NodeApi for MemoryNode {
        fn head_record(&self, key: &PublicKey) -> anyhow::Result<Option<Vec<u8>>> {
            let stored = self.stored.borrow();
            let head = stored.iter().filter(|r| r.signer == *key).max_by_key(|r| r.seq);
            Ok(head.map(|r| r.bytes.to_vec()))
        }
        fn submit(&self, bytes: &[u8]) -> anyhow::Result<RecordId> {
            if self.fail_submit {
                bail!("the node is down");
            }
            let r = Record::verify(bytes, &net())?;
            let id = r.id;
            self.stored.borrow_mut().push(r);
            Ok(id)
        }
        fn ignored(&self, _: &RecordId) -> anyhow::Result<Option<String>> {
            Ok(self.ignore.clone())
        }
        fn record(&self, _: &RecordId) -> anyhow::Result<Vec<u8>> {
            bail!("not kept")
        }
    }

    fn net() -> NetworkId {
        NetworkId::from_bytes([7; 32])
    }

    fn profile(keys: &Keys, name: &str) -> Body {
        Body::Profile(Profile {
            name: name.into(),
            organisation: String::new(),
            x25519: keys.x25519(),
        })
    }

    #[test]
    fn a_seq_sent_to_a_node_that_failed_is_never_signed_again() {
        let home = tempfile::tempdir().unwrap();
        let keys = crate::keys::generate(&home.path().join("keys")).unwrap();
        let down = MemoryNode { fail_submit: true, ..MemoryNode::default() };
        assert!(
            publish(&down, home.path(), &keys, net(), profile(&keys, "a"), Confirm::Yes).is_err()
        );
        // The node may have kept seq 0 before failing: the home moved past it.
        let up = MemoryNode::default();
        let r = publish(&up, home.path(), &keys, net(), profile(&keys, "b"), Confirm::Yes).unwrap();
        assert_eq!(r.seq, 1);
        assert!(r.prev.is_some());
    }

    #[test]
    fn a_record_the_fold_ignores_is_an_error_naming_the_reason() {
        let home = tempfile::tempdir().unwrap();
        let keys = crate::keys::generate(&home.path().join("keys")).unwrap();
        let node =
            MemoryNode { ignore: Some("signer is not an admin".into()), ..MemoryNode::default() };
        let e = publish(&node, home.path(), &keys, net(), profile(&keys, "a"), Confirm::Yes)
            .unwrap_err();
        let ig = e.downcast_ref::<IgnoredByFold>().expect("an IgnoredByFold");
        assert_eq!(ig.reason, "signer is not an admin");
        assert_eq!(ig.id, node.stored.borrow()[0].id, "the record was published all the same");
        assert!(e.to_string().contains("ignores it: signer is not an admin"), "{e}");
    }

    #[test]
    fn a_preview_signs_nothing_and_only_the_reviewed_record_is_signed() {
        let home = tempfile::tempdir().unwrap();
        let keys = crate::keys::generate(&home.path().join("keys")).unwrap();
        let node = MemoryNode::default();
        let e = publish(&node, home.path(), &keys, net(), profile(&keys, "a"), Confirm::Preview)
            .unwrap_err();
        let preview = e.downcast_ref::<Unsigned>().expect("the record to review");
        assert!(preview.body_json.contains("\"a\""), "{}", preview.body_json);
        assert_eq!((preview.kind, preview.seq), ("profile", 0));
        assert!(node.stored.borrow().is_empty(), "nothing was sent");
        assert!(chain::load(home.path(), &net(), &keys.public()).unwrap().is_none(), "nor signed");
        // Another record than the one reviewed is refused; the reviewed one is signed.
        let other = Confirm::Reviewed(preview.digest);
        let e = publish(&node, home.path(), &keys, net(), profile(&keys, "b"), other).unwrap_err();
        assert!(e.downcast_ref::<ReviewOutdated>().is_some(), "{e:#}");
        let r = publish(&node, home.path(), &keys, net(), profile(&keys, "a"), other).unwrap();
        assert_eq!(node.stored.borrow()[0].id, r.id);
    }
}
