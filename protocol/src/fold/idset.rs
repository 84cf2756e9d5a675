//! The set of record ids a ledger holds, kept as one sorted list that readers
//! share: 32 bytes an id, where a hash set took 69 and a node's separate sorted
//! index for sync another 40.

use std::sync::Arc;

use super::Set;
use crate::ids::RecordId;

/// Ids inserted since the last merge are merged into the sorted list once there
/// are more than this many and more than the list holds (so merges cost O(1)
/// an id; a node merges sooner, whenever sync takes a snapshot).
const RECENT_MERGE_MIN: usize = 4096;

/// Ids per bucket of the prefix table, on average.
const BUCKET_IDS: usize = 16;

/// A set of record ids: a sorted list (shared as an `Arc` with snapshots), the
/// ids inserted since it was last merged, and a table of where each leading-bits
/// prefix starts in the list, so a lookup reads one small bucket instead of
/// binary-searching the whole list. Ids are BLAKE3 hashes, so buckets stay even.
#[derive(Clone, Debug, Default)]
pub(super) struct IdSet {
    sorted: Arc<Vec<RecordId>>,
    recent: Set<RecordId>,
    /// `starts[p]`: the first position in `sorted` whose id's leading `bits`
    /// bits are at least `p`; `starts.len() == 2^bits + 1`. Covers `sorted` up
    /// to `indexed` (ids appended in order after it are found by binary search).
    starts: Vec<u32>,
    bits: u32,
    indexed: usize,
}

fn prefix(id: &RecordId, bits: u32) -> usize {
    if bits == 0 {
        return 0;
    }
    let lead = u32::from_be_bytes(id.as_bytes()[..4].try_into().expect("4 of 32 bytes"));
    (lead >> (32 - bits)) as usize
}

impl IdSet {
    pub(super) fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        Arc::make_mut(&mut self.sorted).reserve_exact(additional);
    }

    pub(super) fn contains(&self, id: &RecordId) -> bool {
        self.recent.contains(id) || self.in_sorted(id)
    }

    fn in_sorted(&self, id: &RecordId) -> bool {
        let s = &self.sorted;
        if s.last().is_none_or(|last| id > last) {
            return false;
        }
        match self.indexed.checked_sub(1).map(|i| &s[i]) {
            // Appended in order since the table was built.
            Some(last) if id > last => s[self.indexed..].binary_search(id).is_ok(),
            Some(_) => {
                let p = prefix(id, self.bits);
                let (lo, hi) = (self.starts[p] as usize, self.starts[p + 1] as usize);
                s[lo..hi].binary_search(id).is_ok()
            }
            None => s.binary_search(id).is_ok(),
        }
    }

    /// Insert; false if it was present.
    pub(super) fn insert(&mut self, id: RecordId) -> bool {
        // In order (a store read back by id): append, unless a snapshot holds the list.
        if self.recent.is_empty()
            && self.sorted.last().is_none_or(|last| id > *last)
            && let Some(s) = Arc::get_mut(&mut self.sorted)
        {
            s.push(id);
            if s.len() >= 2 * self.indexed.max(RECENT_MERGE_MIN) {
                self.index();
            }
            return true;
        }
        if self.in_sorted(&id) || !self.recent.insert(id) {
            return false;
        }
        if self.recent.len() > RECENT_MERGE_MIN.max(self.sorted.len()) {
            self.merge();
        }
        true
    }

    /// Merge the recent ids into the sorted list.
    fn merge(&mut self) {
        if self.recent.is_empty() {
            return;
        }
        let mut recent: Vec<RecordId> = self.recent.drain().collect();
        self.recent = Set::default();
        recent.sort_unstable();
        let old = &self.sorted;
        let mut merged = Vec::with_capacity(old.len() + recent.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() && j < recent.len() {
            if old[i] < recent[j] {
                merged.push(old[i]);
                i += 1;
            } else {
                merged.push(recent[j]);
                j += 1;
            }
        }
        merged.extend_from_slice(&old[i..]);
        merged.extend_from_slice(&recent[j..]);
        self.sorted = Arc::new(merged);
        self.index();
    }

    /// Rebuild the prefix table over the whole sorted list.
    fn index(&mut self) {
        let s = &self.sorted;
        let buckets = (s.len() / BUCKET_IDS).max(1);
        let bits = usize::BITS - 1 - buckets.leading_zeros();
        let bits = bits.min(24);
        let mut starts = vec![0u32; (1usize << bits) + 1];
        let mut p = 0usize;
        for (i, id) in s.iter().enumerate() {
            let q = prefix(id, bits);
            while p <= q {
                starts[p] = i as u32;
                p += 1;
            }
        }
        for x in &mut starts[p..] {
            *x = s.len() as u32;
        }
        self.starts = starts;
        self.bits = bits;
        self.indexed = s.len();
    }

    /// Every id, sorted: shared until the next insert that is not an append.
    pub(super) fn snapshot(&mut self) -> Arc<Vec<RecordId>> {
        self.merge();
        self.sorted.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RecordId {
        RecordId::from_bytes(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn in_order_appends_random_inserts_and_merges_hold_every_id_once() {
        let mut set = IdSet::default();
        let mut ordered: Vec<RecordId> = (0..20_000).map(id).collect();
        ordered.sort();
        // A store read back in id order, then gossip in any order, then repeats.
        for x in &ordered[..10_000] {
            assert!(set.insert(*x));
        }
        let snap = set.snapshot();
        for n in (0..20_000).rev() {
            let fresh = ordered[10_000..].contains(&id(n));
            assert_eq!(set.insert(id(n)), fresh, "{n}");
        }
        for n in 0..20_000 {
            assert!(set.contains(&id(n)), "{n}");
            assert!(!set.insert(id(n)), "{n} twice");
        }
        assert!(!set.contains(&id(20_000)));
        assert_eq!(set.len(), 20_000);
        assert_eq!(snap.len(), 10_000, "a snapshot does not change");
        assert_eq!(*set.snapshot(), ordered);
    }

    #[test]
    fn ids_below_and_above_every_bucket_are_found_or_not() {
        let mut set = IdSet::default();
        let lo = RecordId::from_bytes([0; 32]);
        let hi = RecordId::from_bytes([0xff; 32]);
        for n in 0..5_000 {
            set.insert(id(n));
        }
        assert!(!set.contains(&lo) && !set.contains(&hi));
        set.insert(hi);
        set.insert(lo);
        set.snapshot();
        assert!(set.contains(&lo) && set.contains(&hi));
        for n in 0..5_000 {
            assert!(set.contains(&id(n)));
        }
    }
}
