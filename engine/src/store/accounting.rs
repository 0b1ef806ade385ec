//! Memory accounting: every chunk an object holds is either pinned (its object is not
//! persisted yet) or evictable (persisted, and only a cache entry now).
//!
//! Pinning is admission control: [`Accounting::try_pin`] refuses to go past the
//! unpersisted limit, which is what makes writers wait for the persist backlog instead
//! of ever evicting unpersisted data (invariant 4).

use std::sync::atomic::{AtomicU64, Ordering};

pub(super) struct Accounting {
    limit: u64,
    pinned: AtomicU64,
    evictable: AtomicU64,
}

impl Accounting {
    pub(super) fn new(limit: u64) -> Self {
        Self {
            limit,
            pinned: AtomicU64::new(0),
            evictable: AtomicU64::new(0),
        }
    }

    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    /// Pins `bytes` more unless that would pass the unpersisted limit.
    pub(super) fn try_pin(&self, bytes: u64) -> bool {
        self.pinned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pinned| {
                pinned
                    .checked_add(bytes)
                    .filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    pub(super) fn unpin(&self, bytes: u64) {
        let before = self.pinned.fetch_sub(bytes, Ordering::AcqRel);
        assert!(
            before >= bytes,
            "unpinning {bytes} bytes but only {before} are pinned"
        );
    }

    /// A pinned object was persisted: its bytes become evictable.
    pub(super) fn persisted(&self, bytes: u64) {
        self.unpin(bytes);
        self.evictable.fetch_add(bytes, Ordering::AcqRel);
    }

    /// A persisted object was read back into memory, as a cache entry.
    pub(super) fn cached(&self, bytes: u64) {
        self.evictable.fetch_add(bytes, Ordering::AcqRel);
    }

    /// An evictable object left memory.
    pub(super) fn evicted(&self, bytes: u64) {
        let before = self.evictable.fetch_sub(bytes, Ordering::AcqRel);
        assert!(
            before >= bytes,
            "releasing {bytes} evictable bytes but only {before} are evictable"
        );
    }

    pub(super) fn pinned(&self) -> u64 {
        self.pinned.load(Ordering::Acquire)
    }

    pub(super) fn evictable(&self) -> u64 {
        self.evictable.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_stops_at_the_limit() {
        let acct = Accounting::new(100);
        assert!(acct.try_pin(60));
        assert!(!acct.try_pin(41));
        assert!(acct.try_pin(40));
        acct.persisted(60);
        assert_eq!((acct.pinned(), acct.evictable()), (40, 60));
        assert!(
            acct.try_pin(60),
            "persisted bytes no longer count against the limit"
        );
        acct.evicted(60);
        assert_eq!(acct.evictable(), 0);
    }

    #[test]
    #[should_panic(expected = "only 0 are pinned")]
    fn unpinning_more_than_pinned_panics() {
        Accounting::new(10).unpin(1);
    }
}
