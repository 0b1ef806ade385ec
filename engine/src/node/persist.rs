//! The persist pipeline of one node: uploads the objects it is primary for, in commit
//! order, to their buckets' under-stores, then tells the replicas.
//!
//! - **FIFO**: the store's persist queue, oldest commit first, after `initial_delay`.
//! - **Bounds**: at most `concurrency` uploads and `max_bytes_in_flight` bytes in
//!   flight (one upload always may run, whatever its size).
//! - **Order per key** (invariant 5): one upload or delete per key at a time, in commit
//!   order, so an older version never lands after a newer one and a delete is never
//!   undone by an upload that was in flight before it.
//! - **Failures**: each call is retried with backoff and jitter ([`RetryPolicy`]); an
//!   upload that still fails goes back to the queue, is retried after
//!   `failure_backoff`, and its reason shows in `head` and the node's status.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fdw_net::placement::Member;
use fdw_net::wire::{ObjectRef, Request, Response};
use fdw_net::{BucketName, ObjectKey};
use fdw_persist::{
    AnyUnderStore, ObjectBytes, Persisted, RetryPolicy, S3Config, UnderStoreError,
    UnderStoreLocation, persist_version,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::NodeShared;
use crate::store::{ObjectId, ObjectReader, ObjectState};

/// Where and how a node persists.
#[derive(Debug, Clone)]
pub struct PersistConfig {
    /// Bucket → its under-store.
    pub buckets: BTreeMap<BucketName, UnderStoreLocation>,
    /// Where buckets not listed go; `None`: they are not persisted (their objects stay
    /// pinned in memory, and writes wait once memory is full of them).
    pub default_location: Option<UnderStoreLocation>,
    /// How to reach S3, for `s3://` locations.
    pub s3: Option<S3Config>,
    /// How long a committed object waits before its upload starts.
    pub initial_delay: Duration,
    /// Uploads in flight at most.
    pub concurrency: usize,
    /// Bytes in flight at most.
    pub max_bytes_in_flight: u64,
    /// Objects above this size go as multipart uploads of parts this size.
    pub part_bytes: u64,
    /// Retries of each call.
    pub retry: RetryPolicy,
    /// After an upload fails for good, how long before the object is tried again.
    pub failure_backoff: Duration,
    /// How long a `CACHE_THROUGH` or `THROUGH` put waits for its upload before it is
    /// answered `Unavailable` (the object stays, and its upload goes on).
    pub ack_timeout: Duration,
}

impl Default for PersistConfig {
    fn default() -> Self {
        Self {
            buckets: BTreeMap::new(),
            default_location: None,
            s3: None,
            initial_delay: Duration::ZERO,
            concurrency: 8,
            max_bytes_in_flight: 512 << 20,
            part_bytes: 16 << 20,
            retry: RetryPolicy::default(),
            failure_backoff: Duration::from_secs(1),
            ack_timeout: Duration::from_secs(60),
        }
    }
}

/// What the pipeline has done, for the node's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PersistStats {
    pub uploads_in_flight: u32,
    pub uploads_done: u64,
    pub upload_failures: u64,
    pub last_failure: Option<String>,
}

#[derive(Default)]
struct InFlight {
    keys: HashSet<(BucketName, ObjectKey)>,
    bytes: u64,
}

pub(super) struct Persister {
    config: PersistConfig,
    /// Opened under-stores, by location.
    stores: BTreeMap<String, std::sync::Arc<AnyUnderStore>>,
    in_flight: Mutex<InFlight>,
    /// Objects whose last upload failed: why, and not before when to try again.
    failures: Mutex<HashMap<ObjectId, (String, Instant)>>,
    last_failure: Mutex<Option<String>>,
    uploads_done: AtomicU64,
    upload_failures: AtomicU64,
    wake: Notify,
    /// An upload finished.
    persisted: Notify,
}

impl Persister {
    /// Opens every configured under-store; a bad one stops the node from starting.
    pub(super) fn new(config: PersistConfig) -> Result<Self, UnderStoreError> {
        let mut stores = BTreeMap::new();
        for location in config.buckets.values().chain(&config.default_location) {
            if let std::collections::btree_map::Entry::Vacant(slot) =
                stores.entry(location.to_string())
            {
                let store = AnyUnderStore::open(location, config.s3.as_ref())?;
                slot.insert(std::sync::Arc::new(store));
            }
        }
        Ok(Self {
            config,
            stores,
            in_flight: Mutex::default(),
            failures: Mutex::default(),
            last_failure: Mutex::default(),
            uploads_done: AtomicU64::new(0),
            upload_failures: AtomicU64::new(0),
            wake: Notify::new(),
            persisted: Notify::new(),
        })
    }

    /// Where `id` lives once persisted: its bucket's under-store, if it has one, and its
    /// key there — the object's key for a bucket with a location of its own, prefixed
    /// by the bucket's name under the shared default location.
    pub(super) fn location_of(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Option<(std::sync::Arc<AnyUnderStore>, String)> {
        let (location, key) = match self.config.buckets.get(bucket) {
            Some(location) => (location, key.to_string()),
            None => (
                self.config.default_location.as_ref()?,
                format!("{bucket}/{key}"),
            ),
        };
        let store = self.stores.get(&location.to_string())?.clone();
        Some((store, key))
    }

    pub(super) fn config(&self) -> &PersistConfig {
        &self.config
    }

    /// A commit happened: look at the queue now rather than at the next tick.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until the under-store has `id` (or a newer version replaced it before it was
    /// uploaded), up to `ack_timeout`; the error says why not.
    pub(super) async fn wait_persisted(
        &self,
        store: &crate::store::ObjectStore,
        id: &ObjectId,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.config.ack_timeout;
        loop {
            let finished = self.persisted.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            match store.get_version(id) {
                Ok(reader) if reader.meta().state != ObjectState::Persisted => {}
                _ => return Ok(()),
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return Err(self.failure(id).unwrap_or_else(|| {
                    format!(
                        "its upload did not finish within {:?}",
                        self.config.ack_timeout
                    )
                }));
            }
        }
    }

    /// Why `id`'s last upload failed, while it waits to be tried again.
    pub(super) fn failure(&self, id: &ObjectId) -> Option<String> {
        let failures = self.failures.lock().expect("persist failures");
        failures.get(id).map(|(why, _)| why.clone())
    }

    pub(super) fn stats(&self) -> PersistStats {
        PersistStats {
            uploads_in_flight: self.in_flight.lock().expect("persist in flight").keys.len() as u32,
            uploads_done: self.uploads_done.load(Ordering::Relaxed),
            upload_failures: self.upload_failures.load(Ordering::Relaxed),
            last_failure: self.last_failure.lock().expect("last failure").clone(),
        }
    }
}

/// How often the queue is looked at without a commit to wake it: the granularity of
/// `initial_delay` and of retries after a failure.
const TICK: Duration = Duration::from_millis(50);
/// Queue entries looked at per pass.
const SCAN: usize = 4096;

/// The pipeline's loop; ends when the node shuts down.
pub(super) async fn run(node: std::sync::Arc<NodeShared>) {
    let mut last_log = Instant::now();
    while !node.draining.load(Ordering::Acquire) {
        schedule(&node);
        // A backlog that is not draining is worth a line in the log, at a sensible rate.
        if last_log.elapsed() >= Duration::from_secs(10) {
            let stats = node.store.stats();
            if stats.backlog_objects > 0 {
                tracing::info!(
                    node = node.me.id,
                    objects = stats.backlog_objects,
                    bytes = stats.backlog_bytes,
                    oldest = ?stats.oldest_unpersisted_age,
                    "persist backlog"
                );
            }
            last_log = Instant::now();
        }
        tokio::select! {
            _ = node.persister.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Starts every upload the bounds allow, oldest first.
fn schedule(node: &std::sync::Arc<NodeShared>) {
    let persister = &node.persister;
    let now = Instant::now();
    for queued in node.store.persist_queue(SCAN) {
        if queued.committed_at + persister.config.initial_delay > now {
            break; // the rest of the FIFO is younger still
        }
        let retry_after = persister
            .failures
            .lock()
            .expect("persist failures")
            .get(&queued.id)
            .map(|(_, after)| *after);
        if retry_after.is_some_and(|after| after > now) {
            continue;
        }
        let Some((under_store, path)) = persister.location_of(&queued.id.bucket, &queued.id.key)
        else {
            continue;
        };
        {
            let mut in_flight = persister.in_flight.lock().expect("persist in flight");
            let key = (queued.id.bucket.clone(), queued.id.key.clone());
            if in_flight.keys.len() >= persister.config.concurrency {
                break;
            }
            if !in_flight.keys.is_empty()
                && in_flight.bytes + queued.len > persister.config.max_bytes_in_flight
            {
                break;
            }
            if in_flight.keys.contains(&key) {
                continue; // an older version or delete of this key is on its way
            }
            let reader = match node.store.start_persist(&queued.id) {
                Ok(reader) => reader,
                Err(err) => {
                    tracing::debug!(id = %queued.id, "not persisting: {err}");
                    continue;
                }
            };
            in_flight.keys.insert(key);
            in_flight.bytes += queued.len;
            tokio::spawn(persist_one(
                node.clone(),
                under_store,
                path,
                queued.id,
                queued.len,
                reader,
            ));
        }
    }
}

/// Uploads (or, for a tombstone, deletes) one version, then records the outcome.
async fn persist_one(
    node: std::sync::Arc<NodeShared>,
    under_store: std::sync::Arc<AnyUnderStore>,
    key: String,
    id: ObjectId,
    len: u64,
    reader: Option<ObjectReader>,
) {
    let persister = &node.persister;
    let config = &persister.config;
    let key = key.as_str();
    let result = async {
        // A chunk that no longer matches its CRC must not reach the under-store.
        let chunk_bytes = node.store.pool().chunk_size() as u64;
        let object = reader
            .as_ref()
            .map(|reader| object_bytes(reader, chunk_bytes))
            .transpose()?;
        persist_version(
            under_store.as_ref(),
            key,
            object.as_ref(),
            id.version.0,
            config.part_bytes,
            &config.retry,
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    let result = result.map(|persisted| {
        if let Persisted::Preempted { stored } = persisted {
            // Another primary (one that took over, or this key's earlier primary)
            // already wrote this version or a newer one: nothing to write.
            tracing::debug!(%id, stored, "the under-store already has this version or a newer one");
        }
    });
    match result {
        Ok(()) => {
            if let Err(err) = node.store.finish_persist(&id) {
                tracing::warn!(%id, "persisted, but the store refused the state: {err}");
            }
            persister
                .failures
                .lock()
                .expect("persist failures")
                .remove(&id);
            persister.uploads_done.fetch_add(1, Ordering::Relaxed);
            persister.persisted.notify_waiters();
            tracing::debug!(%id, len, "persisted");
            super::recovery::clear_leftovers(&node, &under_store, key, &id).await;
            tell_replicas(&node, &id).await;
        }
        Err(reason) => {
            let _ = node.store.fail_persist(&id);
            tracing::warn!(%id, "upload failed, will retry: {reason}");
            persister.upload_failures.fetch_add(1, Ordering::Relaxed);
            *persister.last_failure.lock().expect("last failure") = Some(format!("{id}: {reason}"));
            persister.failures.lock().expect("persist failures").insert(
                id.clone(),
                (reason, Instant::now() + config.failure_backoff),
            );
        }
    }
    {
        let mut in_flight = persister.in_flight.lock().expect("persist in flight");
        in_flight.keys.remove(&(id.bucket.clone(), id.key.clone()));
        in_flight.bytes -= len;
    }
    persister.wake();
}

/// The object's chunks, by reference, every one verified.
fn object_bytes(reader: &ObjectReader, chunk_bytes: u64) -> Result<ObjectBytes, String> {
    let chunks = reader.shared_chunks().map_err(|e| e.to_string())?;
    let (chunks, chunk_crcs) = chunks.into_iter().unzip();
    Ok(ObjectBytes {
        chunks,
        chunk_crcs,
        chunk_bytes,
        crc: reader.meta().crc,
        etag: Some(reader.meta().digest.etag()),
        headers: reader
            .meta()
            .metadata
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
    })
}

/// Tells the other members that hold `id` that it is persisted, so their copies become
/// evictable. Every other member of the preference list is told: the primary does not
/// remember which replicas acknowledged. A member that cannot be reached, or has not
/// committed the version yet (an upload can finish before a slow replica commits), is
/// tried again with backoff for about a minute, in the background; one that never
/// answers keeps its copy pinned until it learns otherwise (the rejoin work of the
/// fault-tolerance issue).
async fn tell_replicas(node: &std::sync::Arc<NodeShared>, id: &ObjectId) {
    let request = Request::Persisted {
        object: ObjectRef {
            bucket: id.bucket.clone(),
            key: id.key.clone(),
        },
        version: id.version,
    }
    .encode();
    for member in node.placement.preference_list(&id.bucket, &id.key) {
        if member.id == node.me.id {
            continue;
        }
        let (node, member, request, id) =
            (node.clone(), member.clone(), request.clone(), id.clone());
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(50);
            for attempt in 1..=TELL_ATTEMPTS {
                match tell(&node, &member, &request).await {
                    Ok(()) => return,
                    // Members past the replica set never had the version: expected.
                    Err(err) if attempt == TELL_ATTEMPTS => {
                        tracing::debug!(%id, peer = member.id, "replica not told it is persisted: {err}");
                    }
                    Err(_) => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
    }
}

/// Tries to tell a replica, with backoff doubling from 50 ms: about a minute in all.
const TELL_ATTEMPTS: u32 = 16;

async fn tell(node: &NodeShared, member: &Member, request: &[u8]) -> Result<(), String> {
    match node.ask(member, request).await? {
        Response::Stored { .. } => Ok(()),
        other => Err(format!("{other:?}")),
    }
}
