//! Witnesses: naming what was lost (invariant 7).
//!
//! Once a write is acknowledged, its primary tells up to [`WITNESSES`] members of the
//! object's preference list that do not hold it (`Witness`): the version, and which
//! members hold it. A witness forgets the record when it learns the version is
//! persisted (the primary tells every member of the list) or holds it or a newer one
//! itself. If every holder is lost (declared dead, or restarted since) and no live member
//! of the list holds the version either (recovery may have copied it), the witness
//! declares it lost: it logs it by name, counts it in its status, and answers `Lost`
//! for it. A holder that comes back (it was only stopped) makes it not lost again, and
//! persists it.
//!
//! Records live in this node's memory only: a witness that restarts forgets them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use fdw_net::placement::Member;
use fdw_net::{BucketName, ObjectKey, Version};
use tokio::time::Instant;

use super::NodeShared;

/// Members past the holders that a primary tells about each acknowledged write.
pub(super) const WITNESSES: usize = 2;

/// Records kept at most; a witness that is full ignores new ones (and counts them).
const MAX_RECORDS: usize = 1 << 20;

#[derive(Debug, Clone)]
struct Record {
    version: Version,
    holders: Vec<u16>,
    /// When this node learned of it: a holder restarted after this lost its copy.
    since: Instant,
    lost: bool,
}

#[derive(Default)]
pub(super) struct Witnesses {
    records: Mutex<HashMap<(BucketName, ObjectKey), Record>>,
    /// Records refused because the map was full.
    refused: AtomicU64,
}

impl Witnesses {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<(BucketName, ObjectKey), Record>> {
        self.records.lock().expect("witness records")
    }

    /// Records that `version` of the key was acknowledged on `holders`.
    pub(super) fn witness(
        &self,
        bucket: BucketName,
        key: ObjectKey,
        version: Version,
        holders: Vec<u16>,
    ) {
        let mut records = self.records();
        if records.len() >= MAX_RECORDS && !records.contains_key(&(bucket.clone(), key.clone())) {
            if self.refused.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!("witness records full ({MAX_RECORDS}): new ones are ignored");
            }
            return;
        }
        let record = Record {
            version,
            holders,
            since: Instant::now(),
            lost: false,
        };
        records
            .entry((bucket, key))
            .and_modify(|old| {
                if old.version < version {
                    *old = record.clone();
                }
            })
            .or_insert(record);
    }

    /// `version` of the key is persisted: what it supersedes needs no witness. Whether
    /// this node witnessed it.
    pub(super) fn persisted(&self, bucket: &BucketName, key: &ObjectKey, version: Version) -> bool {
        let mut records = self.records();
        let id = (bucket.clone(), key.clone());
        let witnessed = records.get(&id).is_some_and(|r| r.version <= version);
        if witnessed {
            records.remove(&id);
        }
        witnessed
    }

    /// The version of the key declared lost, and who held it.
    pub(super) fn lost(&self, bucket: &BucketName, key: &ObjectKey) -> Option<(Version, Vec<u16>)> {
        let records = self.records();
        let record = records
            .get(&(bucket.clone(), key.clone()))
            .filter(|r| r.lost)?;
        Some((record.version, record.holders.clone()))
    }

    pub(super) fn lost_count(&self) -> u64 {
        self.records().values().filter(|r| r.lost).count() as u64
    }
}

/// Re-judges every record whose holders are all lost: still held somewhere (this node,
/// or a live member of the list), lost, or back. Returns how many are lost.
pub(super) async fn check(node: &NodeShared) -> u64 {
    let suspects: Vec<((BucketName, ObjectKey), Record)> = node
        .witnesses
        .records()
        .iter()
        .filter(|(_, r)| {
            r.lost
                || r.holders
                    .iter()
                    .all(|&h| node.membership.lost_since(h, r.since).is_some())
        })
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect();
    for ((bucket, key), record) in suspects {
        let id = super::object_id(&bucket, &key, record.version);
        let verdict = if node
            .store
            .newest_version(&bucket, &key)
            .is_some_and(|v| v >= record.version)
        {
            Verdict::Forget
        } else if !record
            .holders
            .iter()
            .all(|&h| node.membership.lost_since(h, record.since).is_some())
        {
            Verdict::Held(record.holders.clone())
        } else {
            let live: Vec<Member> = node
                .placement
                .preference_list(&bucket, &key)
                .into_iter()
                .filter(|m| m.id != node.me.id && node.membership.dead_for(m.id).is_none())
                .cloned()
                .collect();
            let mut holders = Vec::new();
            for member in live {
                if super::recovery::holds(node, &member, &id).await == Ok(true) {
                    holders.push(member.id);
                }
            }
            if holders.is_empty() {
                Verdict::Lost
            } else {
                Verdict::Held(holders)
            }
        };
        let mut records = node.witnesses.records();
        let Some(current) = records.get_mut(&(bucket.clone(), key.clone())) else {
            continue;
        };
        if current.version != record.version {
            continue; // a newer version came meanwhile
        }
        match verdict {
            Verdict::Forget => {
                records.remove(&(bucket, key));
            }
            Verdict::Held(holders) => {
                if current.lost {
                    tracing::info!(%id, ?holders, "a holder is back: no longer lost");
                }
                current.lost = false;
                current.holders = holders;
                current.since = Instant::now();
            }
            Verdict::Lost => {
                if !current.lost {
                    tracing::error!(
                        %id,
                        holders = ?current.holders,
                        "LOST: acknowledged, and every member that held it failed before \
                         it was persisted"
                    );
                }
                current.lost = true;
            }
        }
    }
    node.witnesses.lost_count()
}

enum Verdict {
    /// This node has it, or a newer version: nothing to witness.
    Forget,
    /// These members hold it.
    Held(Vec<u16>),
    /// Nobody does.
    Lost,
}
