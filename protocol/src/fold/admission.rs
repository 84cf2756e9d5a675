//! Admission: in an admitted network, which keys take part and with which roles.

use super::{Deriver, Map, Member, Set, Vote};
use crate::ids::PublicKey;
use crate::record::MemberRoles;

/// Why a record of a key that is not admitted has no effect.
pub(super) const NOT_ADMITTED: &str =
    "signer is not admitted to this network (the admins admit keys with `medmesh network admit`)";

impl Deriver<'_> {
    /// Who is admitted, once authority is known ([`Deriver::authority`]).
    ///
    /// An open network admits every key with every role. In an admitted network
    /// the admins of every epoch up to the current one take part with every role;
    /// any other key is a member once `threshold(e)` admins of some epoch `e` hold
    /// an admission of it for epoch `e` as their latest admission of that key (with
    /// authority: not revoked, not equivocating), and has a role once that many of
    /// them grant it. Every record of a key that is not admitted is ignored.
    pub(super) fn admission(&mut self) {
        self.admission_only();
        // Every record of a key that is not admitted has no effect.
        let Some(members) = &self.members else { return };
        let mut outsiders = Vec::new();
        for (author, seqs) in &self.l.chains {
            if !members.contains_key(author) {
                outsiders.extend(
                    seqs.values()
                        .flat_map(|s| std::iter::once(s.first).chain(s.more().iter().copied())),
                );
            }
        }
        for id in outsiders {
            self.ignore(id, NOT_ADMITTED);
        }
    }

    /// [`Deriver::admission`] without reporting the records of outsiders.
    pub(super) fn admission_only(&mut self) {
        let l = self.l;
        if l.root.admission.is_open() {
            self.members = None;
            return;
        }
        let mut members: Map<PublicKey, MemberRoles> = Map::default();
        for (admins, _) in &self.epochs {
            for a in admins {
                members.insert(*a, MemberRoles::ALL);
            }
        }
        let mut void = Vec::new();
        for (key, votes) in &l.admissions {
            // Per epoch: how many of its admins admit, and grant each role.
            let mut by_epoch: std::collections::BTreeMap<u64, (usize, [usize; 3])> =
                Default::default();
            for (admin, by_seq) in votes.by_signer() {
                let admin = &admin;
                let latest = votes.latest(admin, |s| self.may_decide(admin, s));
                for v in &by_seq {
                    let (epoch, _) = v.value;
                    let is_latest = latest.as_ref().is_some_and(|l| l.seq == v.seq);
                    let eligible = self
                        .epochs
                        .get(epoch as usize)
                        .is_some_and(|(admins, _)| admins.binary_search(admin).is_ok());
                    if !is_latest || !eligible {
                        void.push((v.id, eligible));
                    }
                }
                let Some(Vote { value: (epoch, roles), .. }) = latest else { continue };
                let Some((admins, _)) = self.epochs.get(epoch as usize) else { continue };
                if admins.binary_search(admin).is_err() {
                    continue;
                }
                let e = by_epoch.entry(epoch).or_default();
                e.0 += 1;
                for (i, r) in crate::record::MemberRole::ALL.into_iter().enumerate() {
                    if roles.contains(r) {
                        e.1[i] += 1;
                    }
                }
            }
            for (epoch, (count, grants)) in by_epoch {
                let threshold = usize::from(self.epochs[epoch as usize].1);
                if count < threshold {
                    continue;
                }
                let roles = members.entry(*key).or_default();
                for (i, r) in crate::record::MemberRole::ALL.into_iter().enumerate() {
                    if grants[i] >= threshold {
                        roles.insert(r);
                    }
                }
            }
        }
        for (id, eligible) in void {
            if eligible {
                self.ignore(id, "superseded by the signer's later admission of this key");
            } else {
                self.ignore(id, "signer is not an admin of the epoch this admission names");
            }
        }
        self.members = Some(members);
    }

    /// May `author` take part at all?
    pub(super) fn admitted(&self, author: &PublicKey) -> bool {
        self.members.as_ref().is_none_or(|m| m.contains_key(author))
    }

    /// Does `author` hold `role` (always, in an open network)?
    pub(super) fn permitted(&self, author: &PublicKey, role: crate::record::MemberRole) -> bool {
        self.members.as_ref().is_none_or(|m| m.get(author).is_some_and(|r| r.contains(role)))
    }

    /// The members for [`super::State::members`]: every admitted key that is not
    /// an admin of the current epoch, by key.
    pub(super) fn member_list(&self) -> Vec<Member> {
        let Some(members) = &self.members else { return Vec::new() };
        let current: Set<PublicKey> = self.admins.iter().copied().collect();
        let mut out: Vec<Member> = members
            .iter()
            .filter(|(k, _)| !current.contains(*k))
            .map(|(k, roles)| {
                let (epoch, admitted_by) = self.admitted_by(k);
                Member { key: *k, roles: roles.to_vec(), epoch, admitted_by }
            })
            .collect();
        out.sort_by_key(|m| m.key);
        out
    }

    /// The earliest epoch that admitted `key` and its admins that did.
    fn admitted_by(&self, key: &PublicKey) -> (u64, Vec<PublicKey>) {
        for (e, (admins, threshold)) in self.epochs.iter().enumerate() {
            if admins.binary_search(key).is_ok() {
                return (e as u64, Vec::new());
            }
            let Some(votes) = self.l.admissions.get(key) else { continue };
            let mut by: Vec<PublicKey> = votes
                .by_signer()
                .into_iter()
                .map(|(admin, _)| admin)
                .filter(|admin| {
                    admins.binary_search(admin).is_ok()
                        && votes
                            .latest(admin, |s| self.may_decide(admin, s))
                            .is_some_and(|v| v.value.0 == e as u64)
                })
                .collect();
            if by.len() >= usize::from(*threshold) {
                by.sort();
                return (e as u64, by);
            }
        }
        (0, Vec::new())
    }
}
