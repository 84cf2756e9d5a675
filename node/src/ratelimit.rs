//! A per-signer token bucket for records arriving on gossip.
//!
//! A valid key can still flood: every record it signs verifies. Gossip takes at
//! most [`GOSSIP_SIGNER_BURST_RECORDS`] records at once from one signer, then
//! [`GOSSIP_SIGNER_RATE_PER_SEC`] a second; the rest are Ignored (not forwarded,
//! no penalty to the relaying peer, since it may be honest). Nothing valid is lost:
//! catch-up sync, which the receiving node paces itself, fetches what gossip
//! declined. Other signers are not touched by one signer's flood.

use std::collections::HashMap;
use std::time::Instant;

use protocol::PublicKey;

/// Records one signer may deliver on gossip at once.
pub const GOSSIP_SIGNER_BURST_RECORDS: u64 = 256;
/// Records per second one signer's bucket refills with.
pub const GOSSIP_SIGNER_RATE_PER_SEC: u64 = 32;
/// Signers tracked at once; beyond it, buckets that have refilled are forgotten.
pub const RATE_LIMITED_SIGNERS_MAX: usize = 16 * 1024;

/// Fixed-point tokens: one record costs this many.
const MILLI_PER_RECORD: u64 = 1000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli: u64,
    last: Instant,
}

/// Per-signer token buckets.
#[derive(Debug)]
pub(crate) struct SignerLimiter {
    burst_records: u64,
    rate_per_sec: u64,
    buckets: HashMap<PublicKey, Bucket>,
}

impl Default for SignerLimiter {
    fn default() -> Self {
        Self::new(GOSSIP_SIGNER_BURST_RECORDS, GOSSIP_SIGNER_RATE_PER_SEC)
    }
}

impl SignerLimiter {
    pub(crate) fn new(burst_records: u64, rate_per_sec: u64) -> Self {
        SignerLimiter { burst_records, rate_per_sec, buckets: HashMap::new() }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> u64 {
        let elapsed_ms =
            now.saturating_duration_since(b.last).as_millis().min(u128::from(u64::MAX)) as u64;
        // rate_per_sec records per 1000 ms = rate_per_sec milli-records per ms.
        b.milli
            .saturating_add(elapsed_ms.saturating_mul(self.rate_per_sec))
            .min(self.burst_records.saturating_mul(MILLI_PER_RECORD))
    }

    /// Take one record's token for `signer` at `now`; false when its bucket is empty.
    pub(crate) fn allow(&mut self, signer: &PublicKey, now: Instant) -> bool {
        if !self.buckets.contains_key(signer) && self.buckets.len() >= RATE_LIMITED_SIGNERS_MAX {
            let full = self.burst_records.saturating_mul(MILLI_PER_RECORD);
            let buckets = std::mem::take(&mut self.buckets);
            self.buckets =
                buckets.into_iter().filter(|(_, b)| self.refilled(*b, now) < full).collect();
            if self.buckets.len() >= RATE_LIMITED_SIGNERS_MAX {
                // Every tracked signer is mid-flood: refuse newcomers on gossip until
                // some refill (sync still brings their records).
                return false;
            }
        }
        let full = Bucket { milli: self.burst_records.saturating_mul(MILLI_PER_RECORD), last: now };
        let current = self.buckets.get(signer).copied().unwrap_or(full);
        let milli = self.refilled(current, now);
        let (milli, ok) = if milli >= MILLI_PER_RECORD {
            (milli - MILLI_PER_RECORD, true)
        } else {
            (milli, false)
        };
        self.buckets.insert(*signer, Bucket { milli, last: now });
        ok
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use protocol::testkit::Author;

    fn signer(label: &str) -> PublicKey {
        Author::new(label, protocol::NetworkId::from_bytes([1; 32])).public()
    }

    #[test]
    fn a_signer_gets_its_burst_then_is_held() {
        let mut l = SignerLimiter::new(10, 5);
        let t = Instant::now();
        let a = signer("a");
        assert!((0..10).all(|_| l.allow(&a, t)));
        assert!(!l.allow(&a, t));
    }

    #[test]
    fn the_bucket_refills_at_the_rate_and_no_further_than_the_burst() {
        let mut l = SignerLimiter::new(10, 5);
        let t = Instant::now();
        let a = signer("a");
        assert!((0..10).all(|_| l.allow(&a, t)));
        let later = t + Duration::from_millis(1000);
        assert_eq!((0..20).filter(|_| l.allow(&a, later)).count(), 5);
        let much_later = later + Duration::from_secs(3600);
        assert_eq!((0..20).filter(|_| l.allow(&a, much_later)).count(), 10);
    }

    #[test]
    fn one_signers_flood_leaves_others_untouched() {
        let mut l = SignerLimiter::new(10, 5);
        let t = Instant::now();
        let (a, b) = (signer("a"), signer("b"));
        assert_eq!((0..1000).filter(|_| l.allow(&a, t)).count(), 10);
        assert!((0..10).all(|_| l.allow(&b, t)));
    }

    #[test]
    fn tracked_signers_are_bounded() {
        let mut l = SignerLimiter::new(2, 1);
        let t = Instant::now();
        for i in 0..RATE_LIMITED_SIGNERS_MAX {
            assert!(l.allow(&signer(&format!("s{i}")), t));
        }
        // Every tracked signer is mid-burst: a newcomer waits.
        assert!(!l.allow(&signer("newcomer"), t));
        // Once the others have refilled, they are forgotten and the newcomer is served.
        assert!(l.allow(&signer("newcomer"), t + Duration::from_secs(10)));
        assert!(l.buckets.len() <= RATE_LIMITED_SIGNERS_MAX);
    }
}
