//! Authority: authors' chains (equivocations, gaps), admin epochs and rotations,
//! key revocations.

use std::collections::BTreeMap;

use super::{ChainGap, Cosigned, Deriver, Equivocation};
use crate::ids::Hash32;
use crate::record::AdminRotation;

impl Deriver<'_> {
    /// Equivocations and gaps of every author's chain; marks the equivocators.
    pub(super) fn chains(&mut self) -> (Vec<Equivocation>, Vec<ChainGap>) {
        let l = self.l;
        let mut equivocations = Vec::new();
        let mut gaps = Vec::new();
        for (author, seqs) in &l.chains {
            for (seq, slot) in seqs {
                if !slot.more().is_empty() {
                    let mut ids = slot.more().to_vec();
                    ids.push(slot.first);
                    ids.sort();
                    equivocations.push(Equivocation { author: *author, seq: *seq, ids });
                    self.equivocators.insert(*author);
                }
            }
            if let Some((&highest, _)) = seqs.iter().next_back() {
                let missing = highest + 1 - seqs.len() as u64;
                if missing > 0 {
                    gaps.push(ChainGap { author: *author, highest_seq: highest, missing });
                }
            }
        }
        equivocations.sort_by_key(|e| (e.author, e.seq));
        gaps.sort_by_key(|g| g.author);
        (equivocations, gaps)
    }

    /// The admin epoch, admins and threshold, and the revoked keys.
    ///
    /// Authority is evaluated one epoch at a time, starting at the root. Within an
    /// epoch its revocations apply first, in content-hash order, each one counting
    /// only the signatures of that epoch's admins that still have authority after
    /// the revocations applied before it; then its rotation is counted the same
    /// way. Revocations carry into every later epoch: a rotation never un-revokes
    /// a key, and a later epoch's revocation never undoes an earlier rotation.
    pub(super) fn authority(&mut self) {
        let l = self.l;
        self.admins.sort();
        self.epochs = vec![(self.admins.clone(), self.admin_threshold)];
        let mut revocations: Vec<_> = l.revocations.iter().collect();
        revocations.sort_by_key(|(hash, _)| **hash);
        let mut applied = vec![false; revocations.len()];
        let mut winners: BTreeMap<u64, Hash32> = BTreeMap::new();
        loop {
            // Revocations before the rotation. A revocation that does not reach the
            // threshold now cannot later in this epoch: revocations only remove
            // signatures. It may in a later epoch, under other admins.
            for (done, (_, c)) in applied.iter_mut().zip(&revocations) {
                if *done
                    || self.cosigners(c, &self.admins).len() < usize::from(self.admin_threshold)
                {
                    continue;
                }
                *done = true;
                let from = self.revoked.entry(c.body.key).or_insert(u64::MAX);
                *from = (*from).min(c.body.from_seq);
            }
            // Then the rotation to the next epoch, by the admins still in authority.
            let Some(candidates) = l.rotations.get(&(self.admin_epoch + 1)) else { break };
            let mut by_hash: Vec<(&Hash32, &Cosigned<AdminRotation>)> = candidates.iter().collect();
            by_hash.sort_by_key(|(hash, _)| **hash);
            let winner = by_hash.into_iter().find(|(_, c)| {
                self.cosigners(c, &self.admins).len() >= usize::from(self.admin_threshold)
            });
            let Some((hash, rotation)) = winner else { break };
            winners.insert(rotation.body.epoch, *hash);
            self.admins = rotation.body.admins.clone();
            self.admins.sort();
            self.admin_threshold = rotation.body.threshold;
            self.admin_epoch += 1;
            self.epochs.push((self.admins.clone(), self.admin_threshold));
        }
        // Report the void signatures of revocations and rotations without effect.
        let rotations = l.rotations.iter().flat_map(|(epoch, m)| {
            let winner = winners.get(epoch);
            m.iter().filter(move |(hash, _)| winner != Some(*hash)).map(|(_, c)| &c.signers)
        });
        let revocations = applied.iter().zip(&revocations).filter(|(done, _)| !**done);
        let mut void = Vec::new();
        for (k, sigs) in revocations.map(|(_, (_, c))| &c.signers).chain(rotations).flatten() {
            void.extend(
                sigs.iter().filter(|(seq, _)| !self.may_decide(k, *seq)).map(|(_, id)| *id),
            );
        }
        for id in void {
            self.ignore(id, "signer has no authority (revoked key or equivocation)");
        }
    }
}
