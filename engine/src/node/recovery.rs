//! Recovery after members fail: every unpersisted object gets an owner and its R copies
//! back (invariant 2). Persisted objects need neither: the under-store has them.
//!
//! - **Take-over.** A replica's copy whose primary is lost (declared dead, or restarted
//!   since the copy was committed, its memory gone) is adopted by the first live member
//!   of the object's preference list that holds it: that member becomes its primary and
//!   persists it, at its place in commit order. Members do not know which others hold a
//!   copy, so each holder waits its rank (the live members ahead of it in the list) times
//!   the failure timeout: the first adopts at once, a later one only if the copy is still
//!   waiting for a primary by then (the adopter's upload marks it persisted everywhere).
//!   Two adopters, or a paused primary that resumes, upload the same version twice;
//!   fenced uploads make that harmless and keep the per-key order.
//! - **Leftovers.** Once an adopted version is persisted, the multipart uploads of its key
//!   that the lost primary left open are aborted.
//! - **Re-replication.** After every loss, this node checks the objects it is primary
//!   for (adopted ones included) against the live members of their preference lists, and
//!   sends a copy to the first members that lack the version until R live members hold
//!   it. Copies go one at a time, paced to `copy_bytes_per_sec`, so that foreground
//!   writes keep their latency. An object left short (too few live members) is counted
//!   as under-replicated in the status and checked again later.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fdw_net::placement::Member;
use fdw_net::transport;
use fdw_net::wire::{
    ErrorKind, Forwarded, ObjectRef, PutHeader, RecoveryStatus, Replication, Request, Response,
};
use fdw_persist::{AnyUnderStore, UnderStore};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::NodeShared;
use crate::store::{ObjectId, ObjectState, Role, Unpersisted};

/// How fast recovery may copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Bytes a second that re-replication sends, at most.
    pub copy_bytes_per_sec: u64,
}

impl Default for RecoveryConfig {
    /// 256 MiB/s: a fraction of a node's network, so foreground writes keep theirs.
    fn default() -> Self {
        Self {
            copy_bytes_per_sec: 256 << 20,
        }
    }
}

#[derive(Default)]
pub(super) struct Recovery {
    config: RecoveryConfig,
    taken_over: AtomicU64,
    copies_made: AtomicU64,
    copy_bytes: AtomicU64,
    under_replicated: AtomicU64,
    /// The member losses the last complete pass covered: every object then had its
    /// owner and R live copies.
    losses_restored: AtomicU64,
    /// Adopted versions whose lost primary may have left multipart uploads open.
    adopted: Mutex<HashSet<ObjectId>>,
    /// Objects were adopted: their copies are to be checked.
    adoptions: Notify,
}

impl Recovery {
    pub(super) fn new(config: RecoveryConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The counters, with the member losses this node has seen and the objects it
    /// witnessed lost.
    pub(super) fn status(&self, losses_seen: u64, lost_objects: u64) -> RecoveryStatus {
        RecoveryStatus {
            losses_seen,
            lost_objects,
            taken_over: self.taken_over.load(Ordering::Relaxed),
            copies_made: self.copies_made.load(Ordering::Relaxed),
            copy_bytes: self.copy_bytes.load(Ordering::Relaxed),
            under_replicated: self.under_replicated.load(Ordering::Relaxed),
            losses_restored: self.losses_restored.load(Ordering::Relaxed),
        }
    }

    /// Whether `id` was adopted (asked once, when its upload finished).
    fn was_adopted(&self, id: &ObjectId) -> bool {
        self.adopted.lock().expect("adopted").remove(id)
    }
}

/// Starts the take-over and re-replication loops; they end when the node shuts down.
pub(super) fn start(node: &Arc<NodeShared>) {
    tokio::spawn(adopt_loop(node.clone()));
    tokio::spawn(copy_loop(node.clone()));
}

async fn adopt_loop(node: Arc<NodeShared>) {
    let interval = node.membership.config().interval;
    while !node.draining.load(Ordering::Acquire) {
        let lost = node.membership.next_loss();
        tokio::pin!(lost);
        lost.as_mut().enable();
        adopt_orphans(&node);
        tokio::select! {
            _ = lost => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Takes over the copies this node holds whose primary is lost, when it is their turn.
/// Returns how many wait for their turn.
fn adopt_orphans(node: &NodeShared) -> u64 {
    if node.membership.losses() == 0 {
        return 0; // nobody was ever lost: no copy can be an orphan (spares the scan)
    }
    let timeout = node.membership.config().failure_timeout;
    let now = Instant::now();
    let mut adopted = 0;
    let mut waiting = 0;
    for object in node.store.unpersisted() {
        let Role::Replica { primary } = object.role else {
            continue;
        };
        let Some(lost_at) = node.membership.lost_since(primary, object.committed_at) else {
            continue;
        };
        let id = &object.id;
        let rank = node
            .placement
            .preference_list(&id.bucket, &id.key)
            .iter()
            .filter(|m| m.id != primary)
            .take_while(|m| m.id != node.me.id)
            .filter(|m| node.membership.dead_for(m.id).is_none())
            .count();
        if now < lost_at + timeout * rank as u32 {
            waiting += 1;
            continue;
        }
        if node.store.take_over(id) {
            tracing::info!(%id, lost_primary = primary, "primary lost: taking over its upload");
            node.recovery
                .adopted
                .lock()
                .expect("adopted")
                .insert(id.clone());
            adopted += 1;
        }
    }
    if adopted > 0 {
        node.recovery
            .taken_over
            .fetch_add(adopted, Ordering::Relaxed);
        node.persister.wake();
        node.recovery.adoptions.notify_one();
    }
    waiting
}

/// After `id` was persisted: if it was adopted, aborts the multipart uploads of `key`
/// that the lost primary left open. A newer version's upload by a live primary could be
/// among them; it fails, and its pipeline tries it again.
pub(super) async fn clear_leftovers(
    node: &NodeShared,
    under_store: &AnyUnderStore,
    key: &str,
    id: &ObjectId,
) {
    if !node.recovery.was_adopted(id) {
        return;
    }
    let open = match under_store.open_uploads(key).await {
        Ok(open) => open,
        Err(err) => {
            tracing::warn!(%id, "could not list the uploads a lost primary left: {err}");
            return;
        }
    };
    for (_, upload_id) in open.into_iter().filter(|(k, _)| k == key) {
        match under_store.abort_multipart(key, &upload_id).await {
            Ok(()) => {
                tracing::info!(%id, upload_id, "aborted an upload the lost primary left open")
            }
            Err(err) => tracing::warn!(%id, upload_id, "could not abort a leftover upload: {err}"),
        }
    }
}

async fn copy_loop(node: Arc<NodeShared>) {
    let recheck = node.membership.config().failure_timeout * 2;
    let mut handled = 0;
    let mut due = false;
    while !node.draining.load(Ordering::Acquire) {
        let lost = node.membership.next_loss();
        tokio::pin!(lost);
        lost.as_mut().enable();
        let losses = node.membership.losses();
        if losses != handled || due {
            handled = losses;
            // Owners first, so that the pass sees every object this node now persists.
            let waiting = adopt_orphans(&node);
            let short = restore_copies(&node).await;
            let recovery = &node.recovery;
            recovery.under_replicated.store(short, Ordering::Relaxed);
            if short == 0 && waiting == 0 {
                recovery.losses_restored.store(handled, Ordering::Relaxed);
            }
            // Lost objects are checked again until a holder comes back.
            let lost = super::witness::check(&node).await;
            due = short > 0 || waiting > 0 || lost > 0;
        }
        tokio::select! {
            _ = lost => {}
            // `notify_one` keeps the wake-up if this loop was busy copying.
            _ = node.recovery.adoptions.notified() => due = true,
            _ = tokio::time::sleep(recheck) => {}
        }
    }
}

/// One pass over the objects this node is primary for: each gets copies until R live
/// members hold it. Returns how many are still short.
async fn restore_copies(node: &NodeShared) -> u64 {
    let mut short = 0;
    let mut pace = Pace::new(node.recovery.config.copy_bytes_per_sec);
    for object in node.store.unpersisted() {
        if object.role != Role::Primary || object.replicas <= 1 {
            continue;
        }
        if node.draining.load(Ordering::Acquire) {
            break;
        }
        let id = &object.id;
        let members: Vec<Member> = node
            .placement
            .preference_list(&id.bucket, &id.key)
            .into_iter()
            .filter(|m| m.id != node.me.id && node.membership.dead_for(m.id).is_none())
            .cloned()
            .collect();
        let mut holders = 1;
        let mut lacking = Vec::new();
        for member in members {
            match holds(node, &member, id).await {
                Ok(true) => holders += 1,
                Ok(false) => lacking.push(member),
                Err(err) => tracing::debug!(%id, peer = member.id, "cannot ask: {err}"),
            }
        }
        for member in lacking {
            if holders >= object.replicas || !still_unpersisted(node, id) {
                break;
            }
            match copy_to(node, &member, &object).await {
                Ok(()) => {
                    // Persisted while the copy was on its way: the replicas were told
                    // before this one had it, so it is told now.
                    if !still_unpersisted(node, id) {
                        let told = Request::Persisted {
                            object: ObjectRef {
                                bucket: id.bucket.clone(),
                                key: id.key.clone(),
                            },
                            version: id.version,
                        };
                        if let Err(err) = node.ask(&member, &told.encode()).await {
                            tracing::warn!(%id, peer = member.id, "not told it is persisted: {err}");
                        }
                    }
                    holders += 1;
                    node.recovery.copies_made.fetch_add(1, Ordering::Relaxed);
                    node.recovery
                        .copy_bytes
                        .fetch_add(object.len, Ordering::Relaxed);
                    tracing::info!(%id, peer = member.id, "copied to restore R={}", object.replicas);
                    pace.sent(object.len).await;
                }
                Err(err) => tracing::warn!(%id, peer = member.id, "copy failed: {err}"),
            }
        }
        if holders < object.replicas && still_unpersisted(node, id) {
            short += 1;
        }
    }
    short
}

fn still_unpersisted(node: &NodeShared, id: &ObjectId) -> bool {
    node.store
        .meta_of(id)
        .is_some_and(|meta| meta.state != ObjectState::Persisted)
}

/// Whether `member` holds `id`'s version of its key, or a newer one.
pub(super) async fn holds(
    node: &NodeShared,
    member: &Member,
    id: &ObjectId,
) -> Result<bool, String> {
    let object = ObjectRef {
        bucket: id.bucket.clone(),
        key: id.key.clone(),
    };
    let request = Request::Head {
        object,
        under_store: false,
    };
    match node.ask(member, &request.encode()).await? {
        Response::Object(info) => Ok(info.version >= id.version),
        Response::Error {
            kind: ErrorKind::NotFound | ErrorKind::Deleted,
            ..
        } => Ok(false),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// Sends `member` this node's copy of `object` as a primary forwards a write.
async fn copy_to(node: &NodeShared, member: &Member, object: &Unpersisted) -> Result<(), String> {
    let id = &object.id;
    let target = ObjectRef {
        bucket: id.bucket.clone(),
        key: id.key.clone(),
    };
    let forwarded = Some(Forwarded {
        version: id.version,
        primary: node.me.id,
    });
    let reader = if object.tombstone {
        None
    } else {
        Some(node.store.get_version(id).map_err(|e| e.to_string())?)
    };
    let replication =
        Replication::new(object.write_type, object.replicas, 1).map_err(|e| e.to_string())?;
    let request = match &reader {
        None => Request::Delete {
            object: target,
            replication,
            forwarded,
        },
        Some(reader) => Request::Put(PutHeader {
            object: target,
            len: reader.meta().len,
            crc: Some(reader.meta().crc),
            frame_bytes: node.store.pool().chunk_size() as u32,
            replication,
            forwarded,
            metadata: (*reader.meta().metadata).clone(),
            condition: None,
        }),
    };
    let connection = node.peers.connection(member).await?;
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    transport::write_message(&mut send, &request.encode())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(reader) = &reader {
        // Verified chunk by chunk: a copy never spreads a damaged byte.
        for (chunk, crc) in reader.shared_chunks().map_err(|e| e.to_string())? {
            transport::write_frame_bytes(&mut send, crc, &[chunk])
                .await
                .map_err(|e| e.to_string())?;
        }
        transport::write_trailer(&mut send, &reader.meta().digest)
            .await
            .map_err(|e| e.to_string())?;
    }
    let _ = send.finish();
    match transport::within(node.request_timeout, transport::read_response(&mut recv)).await {
        Ok(Response::Stored { .. }) => Ok(()),
        Ok(other) => Err(format!("{other:?}")),
        Err(err) => Err(err.to_string()),
    }
}

/// Paces copies to a rate: after each, waits until the bytes sent so far would have
/// taken that long at the rate.
struct Pace {
    bytes_per_sec: u64,
    started: Instant,
    sent: u64,
}

impl Pace {
    fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1),
            started: Instant::now(),
            sent: 0,
        }
    }

    async fn sent(&mut self, bytes: u64) {
        self.sent += bytes;
        let due = Duration::from_secs_f64(self.sent as f64 / self.bytes_per_sec as f64);
        tokio::time::sleep_until(self.started + due).await;
    }
}
