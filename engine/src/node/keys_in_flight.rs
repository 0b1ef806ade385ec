//! The writes of each key in progress at its primary, from the version's assignment to
//! the answer: what makes a conditional write atomic there. A conditional write begins
//! only when no other write of the key is in progress, and its condition is checked
//! against the key's live version under the same lock; a write that begins after it gets
//! a later version, so it is ordered after it whichever finishes first.

use std::collections::HashMap;
use std::sync::Mutex;

use fdw_net::wire::{Digest, WriteCondition};
use fdw_net::{BucketName, ObjectKey};

/// Why a conditional write may not begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// Another write of the key is in progress (S3's `409 ConditionalRequestConflict`).
    Conflict,
    /// The condition does not hold: the digest of the key's live version, if any.
    Failed(Option<Digest>),
}

#[derive(Default)]
pub(super) struct KeysInFlight {
    keys: Mutex<HashMap<(BucketName, ObjectKey), usize>>,
}

/// One write in progress; dropping it ends it.
pub(super) struct Writing<'a> {
    keys: &'a KeysInFlight,
    key: (BucketName, ObjectKey),
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut keys = self.keys.lock();
        if let Some(count) = keys.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                keys.remove(&self.key);
            }
        }
    }
}

impl KeysInFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(BucketName, ObjectKey), usize>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Begins a write of `bucket/key`. With a `condition`, only if no other write of the
    /// key is in progress and the condition holds of `live` (the digest of the key's
    /// live version here, read under the lock).
    pub(super) fn start(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        condition: Option<WriteCondition>,
        live: impl FnOnce() -> Option<Digest>,
    ) -> Result<Writing<'_>, Refused> {
        let name = (bucket.clone(), key.clone());
        let mut keys = self.lock();
        if let Some(condition) = condition {
            if keys.contains_key(&name) {
                return Err(Refused::Conflict);
            }
            let live = live();
            if !condition.holds(live) {
                return Err(Refused::Failed(live));
            }
        }
        *keys.entry(name.clone()).or_default() += 1;
        Ok(Writing {
            keys: self,
            key: name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(key: &str) -> (BucketName, ObjectKey) {
        (
            BucketName::new("bkt").unwrap(),
            ObjectKey::new(key).unwrap(),
        )
    }

    #[test]
    fn a_conditional_write_begins_alone_and_checks_the_live_digest() {
        let keys = KeysInFlight::default();
        let (b, k) = name("k");
        let absent = Some(WriteCondition::Absent);
        let first = keys.start(&b, &k, absent, || None).unwrap();
        // Anything conditional while it runs conflicts; unconditional writes go on.
        assert_eq!(
            keys.start(&b, &k, absent, || None).err(),
            Some(Refused::Conflict)
        );
        let plain = keys.start(&b, &k, None, || unreachable!()).unwrap();
        drop(first);
        assert_eq!(
            keys.start(&b, &k, absent, || None).err(),
            Some(Refused::Conflict)
        );
        drop(plain);
        // Alone again: the condition decides.
        let v = Some(Digest::of_bytes(b"five"));
        assert_eq!(
            keys.start(&b, &k, absent, || v).err(),
            Some(Refused::Failed(v))
        );
        let wrong = Some(WriteCondition::Matches(Digest::of_bytes(b"four")));
        assert_eq!(
            keys.start(&b, &k, wrong, || v).err(),
            Some(Refused::Failed(v))
        );
        let right = Some(WriteCondition::Matches(Digest::of_bytes(b"five")));
        assert!(keys.start(&b, &k, right, || v).is_ok());
        // Other keys are not affected.
        let (b2, k2) = name("other");
        let _held = keys.start(&b, &k, None, || None).unwrap();
        assert!(keys.start(&b2, &k2, absent, || None).is_ok());
        assert!(keys.lock().len() == 1, "ended writes leave nothing behind");
    }
}
