//! Authority: authors' chains (equivocations, gaps), admin epochs and rotations,
//! key revocations.

use std::collections::BTreeMap;

use super::{ChainGap, Deriver, Equivocation};
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
                if !slot.more.is_empty() {
                    let mut ids = slot.more.clone();
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
        equivocations.sort_by(|a, b| (a.author, a.seq).cmp(&(b.author, b.seq)));
        gaps.sort_by(|a, b| a.author.cmp(&b.author));
        (equivocations, gaps)
    }

    /// The admin epoch, admins and threshold, and the revoked keys.
    pub(super) fn authority(&mut self) {
        let l = self.l;
        // Admin epochs.
        loop {
            let Some(candidates) = l.rotations.get(&(self.admin_epoch + 1)) else { break };
            let mut winner: Option<(&Hash32, &AdminRotation)> = None;
            let mut by_hash: Vec<_> = candidates.iter().collect();
            by_hash.sort_by(|a, b| a.0.cmp(b.0));
            for (hash, c) in by_hash {
                let signers = self.cosigners(c, &self.admins);
                if signers.len() >= usize::from(self.admin_threshold) {
                    winner = Some((hash, &c.body));
                    break;
                }
            }
            let Some((_, rotation)) = winner else { break };
            self.admins = rotation.admins.clone();
            self.admins.sort();
            self.admin_threshold = rotation.threshold;
            self.admin_epoch += 1;
        }
        let mut admins_sorted = self.admins.clone();
        admins_sorted.sort();
        self.admins = admins_sorted;

        // Revocations: effective at the admin threshold of the current epoch.
        let mut revs: Vec<_> = l.revocations.iter().collect();
        revs.sort_by(|a, b| a.0.cmp(b.0));
        let mut revoked = BTreeMap::new();
        for (_, c) in &revs {
            if self.cosigners(c, &self.admins).len() >= usize::from(self.admin_threshold) {
                let from: &mut u64 = revoked.entry(c.body.key).or_insert(u64::MAX);
                *from = (*from).min(c.body.from_seq);
            }
        }
        self.revoked = revoked;
    }
}
