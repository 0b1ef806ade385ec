//! The index: which versions of which keys are in memory, in which state, plus the two
//! orders the store keeps — the persist FIFO (commit order of unpersisted objects) and
//! the LRU of persisted, evictable objects.
//!
//! Version rules: each key has a `newest` version; readers see only that one. A commit
//! of a version not newer than `newest` is stale and refused. Older versions are dropped
//! as soon as they are superseded, except while their upload is in flight; the upload's
//! end drops them. A tombstone is a version without data.
//!
//! Eviction drops an object's bytes but keeps its entry (its size and CRC), so the
//! key stays known: a `get` reads it back from the under-store and checks it against
//! that CRC, and a delete or newer version still supersedes it as before.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use fdw_net::wire::{Digest, Metadata};
use fdw_net::{BucketName, ObjectKey, Version, WriteType};
use lru::LruCache;
use tokio::time::Instant;

use super::accounting::Accounting;
use super::object::ObjectData;
use super::{ObjectId, ObjectMeta, ObjectState, QueuedObject, Role, StoreError, Unpersisted};

/// What a version holds.
enum Body {
    /// A delete.
    Tombstone,
    /// The bytes, in pool memory.
    Cached(Arc<ObjectData>),
    /// Persisted, then evicted: the under-store has the bytes, which must read back
    /// with this size and CRC.
    Evicted { len: u64, crc: u32 },
}

impl Body {
    fn data(&self) -> Option<&Arc<ObjectData>> {
        match self {
            Body::Cached(data) => Some(data),
            Body::Tombstone | Body::Evicted { .. } => None,
        }
    }

    fn into_data(self) -> Option<Arc<ObjectData>> {
        match self {
            Body::Cached(data) => Some(data),
            Body::Tombstone | Body::Evicted { .. } => None,
        }
    }
}

struct Entry {
    body: Body,
    state: ObjectState,
    write_type: WriteType,
    role: Role,
    replicas: u8,
    /// Commit order, the persist FIFO's key.
    seq: u64,
    /// Pool memory this entry accounts for.
    memory_bytes: u64,
    /// The headers it is served with; kept when its bytes are evicted.
    metadata: Arc<Metadata>,
    /// Its MD5 (its ETag); kept when its bytes are evicted.
    digest: Digest,
}

impl Entry {
    /// Nothing more will happen to it: persisted, or never to be persisted.
    fn settled(&self) -> bool {
        self.state == ObjectState::Persisted || !self.write_type.persists()
    }

    fn meta(&self, id: ObjectId) -> ObjectMeta {
        let (len, crc) = match &self.body {
            Body::Tombstone => (0, 0),
            Body::Cached(data) => (data.len(), data.crc()),
            Body::Evicted { len, crc } => (*len, *crc),
        };
        ObjectMeta {
            id,
            len,
            crc,
            state: self.state,
            write_type: self.write_type,
            replicas: self.replicas,
            metadata: Arc::clone(&self.metadata),
            digest: self.digest,
        }
    }

    /// Drops the (persisted, evictable) bytes from memory and from the accounting,
    /// keeping what they must read back as.
    fn evict(&mut self, accounting: &Accounting) -> Option<Arc<ObjectData>> {
        let Body::Cached(data) = &self.body else {
            return None;
        };
        let (len, crc) = (data.len(), data.crc());
        accounting.evicted(std::mem::take(&mut self.memory_bytes));
        std::mem::replace(&mut self.body, Body::Evicted { len, crc }).into_data()
    }
}

struct KeyState {
    newest: Version,
    versions: BTreeMap<Version, Entry>,
}

/// Waiting to be persisted: the persist FIFO's entry.
struct Queued {
    id: ObjectId,
    committed_at: Instant,
    len: u64,
}

/// The persist backlog, as [`StoreStats`](super::StoreStats) shows it.
pub(super) struct Backlog {
    pub(super) objects: usize,
    pub(super) bytes: u64,
    pub(super) oldest_age: Option<Duration>,
}

/// The orders kept beside the key map, so both can be borrowed at once.
struct Orders {
    lru: LruCache<ObjectId, ()>,
    fifo: BTreeMap<u64, Queued>,
    fifo_bytes: u64,
    evictions: u64,
}

impl Orders {
    fn enqueue(&mut self, seq: u64, queued: Queued) {
        self.fifo_bytes += queued.len;
        self.fifo.insert(seq, queued);
    }

    fn dequeue(&mut self, seq: u64) {
        if let Some(queued) = self.fifo.remove(&seq) {
            self.fifo_bytes -= queued.len;
        }
    }

    /// Takes `entry` out of every order and the accounting; returns its data to drop.
    fn release(
        &mut self,
        id: &ObjectId,
        entry: Entry,
        accounting: &Accounting,
    ) -> Option<Arc<ObjectData>> {
        self.dequeue(entry.seq);
        if let Body::Cached(_) = entry.body {
            if entry.state == ObjectState::Persisted {
                self.lru.pop(id);
                accounting.evicted(entry.memory_bytes);
            } else {
                accounting.unpin(entry.memory_bytes);
            }
        }
        entry.body.into_data()
    }
}

pub(super) struct Index {
    buckets: HashMap<BucketName, BTreeMap<ObjectKey, KeyState>>,
    orders: Orders,
    next_seq: u64,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            buckets: HashMap::new(),
            orders: Orders {
                lru: LruCache::unbounded(),
                fifo: BTreeMap::new(),
                fifo_bytes: 0,
                evictions: 0,
            },
            next_seq: 0,
        }
    }
}

fn id_of(bucket: &BucketName, key: &ObjectKey, version: Version) -> ObjectId {
    ObjectId {
        bucket: bucket.clone(),
        key: key.clone(),
        version,
    }
}

impl Index {
    fn key_state(&self, bucket: &BucketName, key: &ObjectKey) -> Option<&KeyState> {
        self.buckets.get(bucket)?.get(key)
    }

    fn entry_mut(&mut self, id: &ObjectId) -> Result<&mut Entry, StoreError> {
        self.buckets
            .get_mut(&id.bucket)
            .and_then(|keys| keys.get_mut(&id.key))
            .and_then(|ks| ks.versions.get_mut(&id.version))
            .ok_or_else(|| StoreError::VersionNotFound(id.clone()))
    }

    /// Moves `id` from state `from` to `to`, or says why it cannot.
    fn transition(
        &mut self,
        id: &ObjectId,
        action: &'static str,
        from: ObjectState,
        to: ObjectState,
    ) -> Result<&mut Entry, StoreError> {
        let entry = self.entry_mut(id)?;
        if !entry.write_type.persists() {
            return Err(StoreError::NotPersistable(id.clone()));
        }
        if entry.state != from {
            return Err(StoreError::InvalidState {
                id: id.clone(),
                action,
                state: entry.state,
            });
        }
        entry.state = to;
        Ok(entry)
    }

    pub(super) fn check_not_stale(&self, id: &ObjectId) -> Result<(), StoreError> {
        match self.key_state(&id.bucket, &id.key) {
            Some(ks) if ks.newest >= id.version => Err(StoreError::StaleVersion {
                id: id.clone(),
                newest: ks.newest,
            }),
            _ => Ok(()),
        }
    }

    /// Inserts `id` as the key's newest version (`committed`), then drops what it
    /// supersedes. Returns its metadata and the data released, to drop outside the lock.
    pub(super) fn commit(
        &mut self,
        id: ObjectId,
        (write_type, role, replicas): (WriteType, Role, u8),
        data: Option<Arc<ObjectData>>,
        (metadata, digest): (Arc<Metadata>, Digest),
        memory_bytes: u64,
        accounting: &Accounting,
    ) -> Result<(ObjectMeta, Vec<Arc<ObjectData>>), StoreError> {
        self.check_not_stale(&id)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let len = data.as_ref().map_or(0, |d| d.len());
        let entry = Entry {
            body: data.map_or(Body::Tombstone, Body::Cached),
            state: ObjectState::Committed,
            write_type,
            role,
            replicas,
            seq,
            memory_bytes,
            metadata,
            digest,
        };
        if write_type.persists() {
            self.orders.enqueue(
                seq,
                Queued {
                    id: id.clone(),
                    committed_at: Instant::now(),
                    len,
                },
            );
        }
        let meta = entry.meta(id.clone());
        let ks = self
            .buckets
            .entry(id.bucket.clone())
            .or_default()
            .entry(id.key.clone())
            .or_insert_with(|| KeyState {
                newest: id.version,
                versions: BTreeMap::new(),
            });
        ks.newest = id.version;
        ks.versions.insert(id.version, entry);
        let released = self.prune(&id.bucket, &id.key, accounting);
        Ok((meta, released))
    }

    /// Drops superseded versions that no upload needs, and the key itself once only a
    /// settled tombstone is left.
    fn prune(
        &mut self,
        bucket: &BucketName,
        key: &ObjectKey,
        accounting: &Accounting,
    ) -> Vec<Arc<ObjectData>> {
        let Some(keys) = self.buckets.get_mut(bucket) else {
            return Vec::new();
        };
        let Some(ks) = keys.get_mut(key) else {
            return Vec::new();
        };
        let newest = ks.newest;
        let droppable: Vec<Version> = ks
            .versions
            .iter()
            .filter(|(v, e)| **v < newest && e.state != ObjectState::Persisting)
            .map(|(v, _)| *v)
            .collect();
        let mut released = Vec::new();
        for version in droppable {
            let entry = ks.versions.remove(&version).expect("listed just above");
            released.extend(
                self.orders
                    .release(&id_of(bucket, key, version), entry, accounting),
            );
        }
        let only_settled_tombstone = ks.versions.len() == 1
            && ks
                .versions
                .get(&newest)
                .is_some_and(|e| matches!(e.body, Body::Tombstone) && e.settled());
        if only_settled_tombstone {
            let entry = ks.versions.remove(&newest).expect("checked just above");
            self.orders
                .release(&id_of(bucket, key, newest), entry, accounting);
        }
        if ks.versions.is_empty() {
            keys.remove(key);
            if keys.is_empty() {
                self.buckets.remove(bucket);
            }
        }
        released
    }

    pub(super) fn get(
        &mut self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<(ObjectMeta, Arc<ObjectData>), StoreError> {
        let not_found = |deleted| StoreError::NotFound {
            bucket: bucket.clone(),
            key: key.clone(),
            deleted,
        };
        let ks = self.key_state(bucket, key).ok_or_else(|| not_found(None))?;
        let version = ks.newest;
        let entry = ks.versions.get(&version).ok_or_else(|| not_found(None))?;
        let meta = entry.meta(id_of(bucket, key, version));
        let data = match &entry.body {
            Body::Cached(data) => data.clone(),
            Body::Evicted { .. } => return Err(StoreError::Evicted(meta)),
            Body::Tombstone => return Err(not_found(Some(version))),
        };
        if meta.state == ObjectState::Persisted {
            self.orders.lru.promote(&meta.id);
        }
        Ok((meta, data))
    }

    /// The newest version's metadata, whether its bytes are in memory or evicted.
    pub(super) fn head(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<ObjectMeta, StoreError> {
        let newest = self
            .key_state(bucket, key)
            .and_then(|ks| Some((ks.newest, ks.versions.get(&ks.newest)?)));
        match newest {
            Some((version, entry)) if !matches!(entry.body, Body::Tombstone) => {
                Ok(entry.meta(id_of(bucket, key, version)))
            }
            other => Err(StoreError::NotFound {
                bucket: bucket.clone(),
                key: key.clone(),
                deleted: other.map(|(version, _)| version),
            }),
        }
    }

    /// Puts bytes read back from the under-store into `id`'s evicted entry, as a cache
    /// entry again. Refused (returning `false`) unless `id` is still the key's newest
    /// version and evicted: a delete or newer version that came meanwhile wins.
    pub(super) fn refill(
        &mut self,
        id: &ObjectId,
        data: Arc<ObjectData>,
        memory_bytes: u64,
        accounting: &Accounting,
    ) -> bool {
        let newest = self.newest_version(&id.bucket, &id.key) == Some(id.version);
        let Ok(entry) = self.entry_mut(id) else {
            return false;
        };
        if !newest || !matches!(entry.body, Body::Evicted { .. }) {
            return false;
        }
        entry.body = Body::Cached(data);
        entry.memory_bytes = memory_bytes;
        accounting.cached(memory_bytes);
        self.orders.lru.put(id.clone(), ());
        true
    }

    /// Keys in order with their newest version, and whether it is a tombstone; with
    /// `tombstones` false, deleted keys are left out.
    pub(super) fn list(
        &self,
        bucket: &BucketName,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
        tombstones: bool,
    ) -> Vec<(ObjectMeta, bool)> {
        let Some(keys) = self.buckets.get(bucket) else {
            return Vec::new();
        };
        keys.range::<str, _>((
            start_after.map_or(std::ops::Bound::Included(prefix), std::ops::Bound::Excluded),
            std::ops::Bound::Unbounded,
        ))
        .skip_while(|(key, _)| !key.as_str().starts_with(prefix) && key.as_str() < prefix)
        .take_while(|(key, _)| key.as_str().starts_with(prefix))
        .filter_map(|(key, ks)| {
            let entry = ks.versions.get(&ks.newest)?;
            let deleted = matches!(entry.body, Body::Tombstone);
            (tombstones || !deleted).then(|| (entry.meta(id_of(bucket, key, ks.newest)), deleted))
        })
        .take(max)
        .collect()
    }

    pub(super) fn newest_version(&self, bucket: &BucketName, key: &ObjectKey) -> Option<Version> {
        self.key_state(bucket, key).map(|ks| ks.newest)
    }

    pub(super) fn get_version(
        &mut self,
        id: &ObjectId,
    ) -> Result<(ObjectMeta, Arc<ObjectData>), StoreError> {
        let entry = self.entry_mut(id)?;
        let data = entry
            .body
            .data()
            .cloned()
            .ok_or_else(|| StoreError::VersionNotFound(id.clone()))?;
        Ok((entry.meta(id.clone()), data))
    }

    pub(super) fn start_persist(
        &mut self,
        id: &ObjectId,
    ) -> Result<Option<(ObjectMeta, Arc<ObjectData>)>, StoreError> {
        let entry = self.transition(
            id,
            "start persisting",
            ObjectState::Committed,
            ObjectState::Persisting,
        )?;
        Ok(entry
            .body
            .data()
            .cloned()
            .map(|data| (entry.meta(id.clone()), data)))
    }

    pub(super) fn finish_persist(
        &mut self,
        id: &ObjectId,
        accounting: &Accounting,
    ) -> Result<Vec<Arc<ObjectData>>, StoreError> {
        self.transition(
            id,
            "finish persisting",
            ObjectState::Persisting,
            ObjectState::Persisted,
        )?;
        Ok(self.settle_persisted(id, accounting))
    }

    /// A replica's copy: the primary persisted it.
    pub(super) fn mark_persisted(
        &mut self,
        id: &ObjectId,
        accounting: &Accounting,
    ) -> Result<Vec<Arc<ObjectData>>, StoreError> {
        let superseded = self
            .key_state(&id.bucket, &id.key)
            .is_some_and(|ks| ks.newest > id.version);
        match self.entry_mut(id) {
            // Told twice, or about a version a newer one replaced here: nothing to do.
            Ok(entry) if entry.state == ObjectState::Persisted => return Ok(Vec::new()),
            Err(_) if superseded => return Ok(Vec::new()),
            other => other?,
        };
        self.transition(
            id,
            "mark persisted",
            ObjectState::Committed,
            ObjectState::Persisted,
        )?;
        Ok(self.settle_persisted(id, accounting))
    }

    /// `id` just became persisted: out of the FIFO, its memory evictable — or, for a
    /// `THROUGH` write, which is not to be cached, evicted at once.
    fn settle_persisted(&mut self, id: &ObjectId, accounting: &Accounting) -> Vec<Arc<ObjectData>> {
        let Ok(entry) = self.entry_mut(id) else {
            return Vec::new();
        };
        let (seq, memory_bytes) = (entry.seq, entry.memory_bytes);
        let mut released = Vec::new();
        let mut cached = false;
        if let Body::Cached(_) = entry.body {
            accounting.persisted(memory_bytes);
            if entry.write_type == WriteType::Through {
                released.extend(entry.evict(accounting));
            } else {
                cached = true;
            }
        }
        self.orders.dequeue(seq);
        if cached {
            self.orders.lru.put(id.clone(), ());
        }
        released.extend(self.prune(&id.bucket, &id.key, accounting));
        released
    }

    pub(super) fn fail_persist(&mut self, id: &ObjectId) -> Result<(), StoreError> {
        self.transition(
            id,
            "fail persisting",
            ObjectState::Persisting,
            ObjectState::Committed,
        )
        .map(drop)
    }

    pub(super) fn persist_queue(&self, limit: usize) -> Vec<QueuedObject> {
        self.orders
            .fifo
            .values()
            .filter(|q| {
                self.key_state(&q.id.bucket, &q.id.key)
                    .and_then(|ks| ks.versions.get(&q.id.version))
                    .is_some_and(|e| e.state == ObjectState::Committed && e.role == Role::Primary)
            })
            .take(limit)
            .map(|q| QueuedObject {
                id: q.id.clone(),
                len: q.len,
                committed_at: q.committed_at,
            })
            .collect()
    }

    pub(super) fn unpersisted(&self) -> Vec<Unpersisted> {
        self.orders
            .fifo
            .values()
            .filter_map(|q| {
                let entry = self
                    .key_state(&q.id.bucket, &q.id.key)?
                    .versions
                    .get(&q.id.version)?;
                Some(Unpersisted {
                    id: q.id.clone(),
                    role: entry.role,
                    replicas: entry.replicas,
                    write_type: entry.write_type,
                    tombstone: matches!(entry.body, Body::Tombstone),
                    len: q.len,
                    committed_at: q.committed_at,
                })
            })
            .collect()
    }

    pub(super) fn meta_of(&self, id: &ObjectId) -> Option<ObjectMeta> {
        let entry = self
            .key_state(&id.bucket, &id.key)?
            .versions
            .get(&id.version)?;
        Some(entry.meta(id.clone()))
    }

    /// Records a version found in the under-store for a key this index does not know,
    /// as persisted and evicted. `false` if the key is known (a write came meanwhile).
    pub(super) fn learn(&mut self, meta: &ObjectMeta) -> bool {
        let id = &meta.id;
        if self.key_state(&id.bucket, &id.key).is_some() {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            body: Body::Evicted {
                len: meta.len,
                crc: meta.crc,
            },
            state: ObjectState::Persisted,
            write_type: meta.write_type,
            role: Role::Primary,
            replicas: meta.replicas,
            seq,
            memory_bytes: 0,
            metadata: Arc::clone(&meta.metadata),
            digest: meta.digest,
        };
        let versions = BTreeMap::from([(id.version, entry)]);
        self.buckets.entry(id.bucket.clone()).or_default().insert(
            id.key.clone(),
            KeyState {
                newest: id.version,
                versions,
            },
        );
        true
    }

    pub(super) fn take_over(&mut self, id: &ObjectId) -> bool {
        match self.entry_mut(id) {
            Ok(entry)
                if entry.state == ObjectState::Committed
                    && matches!(entry.role, Role::Replica { .. }) =>
            {
                entry.role = Role::Primary;
                true
            }
            _ => false,
        }
    }

    /// Evicts the least recently used persisted object. Only persisted objects are ever
    /// in the LRU, so unpersisted data cannot be chosen (invariant 4).
    pub(super) fn evict_lru(&mut self, accounting: &Accounting) -> Option<Arc<ObjectData>> {
        let (id, ()) = self.orders.lru.pop_lru()?;
        let entry = self.entry_mut(&id).expect("LRU entries are indexed");
        assert_eq!(
            entry.state,
            ObjectState::Persisted,
            "evicting {id}, which is not persisted"
        );
        let memory_bytes = entry.memory_bytes;
        let data = entry.evict(accounting);
        self.orders.evictions += 1;
        tracing::debug!(%id, bytes = memory_bytes, "evicted");
        data
    }

    pub(super) fn backlog(&self, now: Instant) -> Backlog {
        Backlog {
            objects: self.orders.fifo.len(),
            bytes: self.orders.fifo_bytes,
            oldest_age: self
                .orders
                .fifo
                .values()
                .next()
                .map(|q| now.saturating_duration_since(q.committed_at)),
        }
    }

    pub(super) fn cached_objects(&self) -> usize {
        self.orders.lru.len()
    }

    pub(super) fn evictions(&self) -> u64 {
        self.orders.evictions
    }
}
