//! Private models: which data owners the model's owner gave its content key to,
//! and which grants it revoked.

use std::collections::{BTreeMap, HashSet};

use super::{ContainerView, DatasetView, Deriver, GrantView, ModelRevocationView, ProfileView};
use crate::ids::{PublicKey, RecordId};
use crate::record::*;

impl Deriver<'_> {
    /// Revocations by each private model's owner (others ignored), by model.
    pub(super) fn model_revocations(
        &mut self,
        containers: &BTreeMap<RecordId, ContainerView>,
    ) -> Vec<ModelRevocationView> {
        let l = self.l;
        let mut out = Vec::new();
        for (model, revs) in &l.model_revocations {
            let Some(c) = containers.get(model) else { continue };
            for r in revs {
                if !self.valid(&r.author, r.seq) {
                    self.ignore(r.id, "signer's key is revoked");
                } else if r.author != c.owner {
                    self.ignore(r.id, "only the model's owner can revoke grants of its key");
                } else if c.container.encryption.is_none() {
                    self.ignore(r.id, "the model is not private: there is no key to revoke");
                } else {
                    out.push(ModelRevocationView {
                        id: r.id,
                        model: *model,
                        dataset: r.body.dataset,
                        seq: r.seq,
                    });
                }
            }
        }
        out.sort_by_key(|r| (r.model, r.seq, r.id));
        out
    }

    /// The grant that counts per (model, dataset): the owner's latest one that
    /// meets every rule; every other grant is ignored with its reason.
    pub(super) fn grants(
        &mut self,
        containers: &BTreeMap<RecordId, ContainerView>,
        datasets: &BTreeMap<RecordId, DatasetView>,
        profiles: &BTreeMap<PublicKey, ProfileView>,
        approved: &HashSet<(RecordId, Subject), impl std::hash::BuildHasher>,
        revocations: &[ModelRevocationView],
    ) -> Vec<GrantView> {
        let l = self.l;
        let mut best: BTreeMap<(RecordId, RecordId), (u64, GrantView)> = BTreeMap::new();
        for (model, grants) in &l.grants {
            let Some(c) = containers.get(model) else { continue };
            for g in grants {
                let body = &g.body;
                let reason = if !self.valid(&g.author, g.seq) {
                    Some("signer's key is revoked")
                } else if g.author != c.owner {
                    Some("only the model's owner can grant its key")
                } else if c.container.encryption.is_none() {
                    Some("the model is not private: there is no key to grant")
                } else if !approved.contains(&(body.benchmark, Subject::Model(*model))) {
                    Some("the model's association with the benchmark is not approved")
                } else if !approved.contains(&(body.benchmark, Subject::Dataset(body.dataset))) {
                    Some("the dataset's association with the benchmark is not approved")
                } else if revocations.iter().any(|r| {
                    r.model == *model
                        && r.seq < g.seq
                        && r.dataset.is_none_or(|d| d == body.dataset)
                }) {
                    Some("the model's owner revoked grants to this dataset before this grant")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    self.ignore(g.id, reason);
                    continue;
                }
                let Some(d) = datasets.get(&body.dataset) else { continue };
                let key = profiles.get(&d.owner).map(|p| p.profile.x25519);
                let sealed_to_owner = body.key.scheme == crate::seal::SCHEME
                    && body.key.recipients.len() == 1
                    && Some(body.key.recipients[0].recipient) == key;
                if !sealed_to_owner {
                    self.ignore(
                        g.id,
                        "the key is not sealed to the dataset owner's profile key alone",
                    );
                    continue;
                }
                let view = GrantView {
                    id: g.id,
                    model: *model,
                    benchmark: body.benchmark,
                    dataset: body.dataset,
                    grantee: d.owner,
                };
                let slot = best.entry((*model, body.dataset));
                match slot {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert((g.seq, view));
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        if (g.seq, g.id) > (o.get().0, o.get().1.id) {
                            o.insert((g.seq, view));
                        }
                    }
                }
            }
        }
        best.into_values().map(|(_, v)| v).collect()
    }
}
