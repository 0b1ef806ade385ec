//! The object store core: objects addressed by (bucket, key, version), held as lists of
//! pool chunks, moving through `writing → committed → persisting → persisted`.
//!
//! The contract it keeps (DESIGN.md invariants 1, 3, 4, 6):
//! - bytes read equal bytes written: a CRC32 per chunk is computed as the bytes arrive
//!   and checked on every read; the whole-object CRC is combined from the chunk CRCs;
//! - unpersisted data is never evicted: its memory is *pinned*, and only *evictable*
//!   (persisted) objects leave memory, least recently used first;
//! - when pinned memory would pass `unpersisted_limit_bytes`, a writer waits up to
//!   `backpressure_timeout` and then fails with an error naming the limit and the
//!   persist backlog;
//! - the backlog (objects, bytes, age of the oldest) is always visible in [`StoreStats`].
//!
//! Writers and readers never hold the index lock while copying bytes: the hot path is a
//! lock-free chunk allocation plus an atomic admission check.

mod accounting;
mod filling;
mod index;
mod object;
mod refill;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use bytesize::ByteSize;
use fdw_net::wire::{Digest, Metadata};
use fdw_net::{BucketName, ObjectKey, Version, WriteType};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::pool::{Chunk, Pool, PoolStats};
use accounting::Accounting;
use index::Index;
use object::ObjectData;

pub use refill::Refill;
pub use writer::ObjectWriter;

/// One version of one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// The bucket.
    pub bucket: BucketName,
    /// The key within the bucket.
    pub key: ObjectKey,
    /// The version under the key.
    pub version: Version,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.bucket, self.key, self.version)
    }
}

/// Where an object is on its way to the under-store. Objects being written are not in
/// the index, so readers never see `writing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectState {
    /// Complete and checksummed in memory; not persisted (pinned).
    Committed,
    /// An upload is in flight (pinned).
    Persisting,
    /// The under-store has it; the memory copy is a cache entry (evictable).
    Persisted,
}

impl fmt::Display for ObjectState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectState::Committed => "committed",
            ObjectState::Persisting => "persisting",
            ObjectState::Persisted => "persisted",
        })
    }
}

/// Which node uploads an object: the primary that ordered it. A replica keeps its copy
/// pinned until the primary says the under-store has it ([`ObjectStore::mark_persisted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// This node persists the object.
    #[default]
    Primary,
    /// Another node does: `primary`, which ordered it (or a member that takes over
    /// if it fails).
    Replica {
        /// The member that ordered the version and persists it.
        primary: u16,
    },
}

/// An object waiting in the persist FIFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedObject {
    /// Which version.
    pub id: ObjectId,
    /// Its size (0 for a tombstone).
    pub len: u64,
    /// When it was committed.
    pub committed_at: Instant,
}

/// What `head` tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Which object.
    pub id: ObjectId,
    /// Size in bytes.
    pub len: u64,
    /// CRC32 of the whole object.
    pub crc: u32,
    /// Persist state.
    pub state: ObjectState,
    /// How it was written.
    pub write_type: WriteType,
    /// How many members hold it (R).
    pub replicas: u8,
    /// The headers it is served with.
    pub metadata: Arc<Metadata>,
    /// Its MD5, which is its ETag (zero for a tombstone).
    pub digest: Digest,
}

/// A version not yet persisted, as recovery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpersisted {
    /// Which version.
    pub id: ObjectId,
    /// Who persists it.
    pub role: Role,
    /// How many members hold it (R).
    pub replicas: u8,
    /// How it was written.
    pub write_type: WriteType,
    /// A delete.
    pub tombstone: bool,
    /// Its size (0 for a tombstone).
    pub len: u64,
    /// When it was committed here.
    pub committed_at: Instant,
}

/// Limits of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Most pool memory unpersisted objects (and writes in progress) may pin. Below the
    /// pool size, so that read-through caching always has room.
    pub unpersisted_limit_bytes: u64,
    /// Largest object accepted.
    pub max_object_bytes: u64,
    /// How long a write waits for memory before it fails with the backlog error.
    pub backpressure_timeout: Duration,
}

impl StoreConfig {
    /// Defaults for a pool of `pool_bytes`: 90 % of it may be unpersisted, an object may
    /// use all of that, and writers wait up to 10 s.
    pub fn for_pool(pool_bytes: u64) -> Self {
        let unpersisted_limit_bytes = pool_bytes / 10 * 9;
        Self {
            unpersisted_limit_bytes,
            max_object_bytes: unpersisted_limit_bytes,
            backpressure_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a store operation failed. Each variant is one cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The configuration is inconsistent.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// Memory stayed full of unpersisted data for the whole backpressure timeout.
    #[error(
        "write of {id} refused after waiting {waited:?} for memory: {} pinned by unpersisted data \
         against the {} limit (unpersisted_limit_bytes), {chunks_free} pool chunks free; \
         persist backlog: {backlog_objects} objects, oldest {}",
        ByteSize(*pinned_bytes), ByteSize(*limit_bytes),
        oldest_unpersisted_age.map_or("none".to_owned(), |age| format!("{age:?} old"))
    )]
    Backpressure {
        /// The write that gave up.
        id: ObjectId,
        /// How long it waited.
        waited: Duration,
        /// `unpersisted_limit_bytes`.
        limit_bytes: u64,
        /// Memory pinned by unpersisted objects and writes in progress.
        pinned_bytes: u64,
        /// Free chunks in the pool at the time.
        chunks_free: usize,
        /// Objects waiting to be persisted.
        backlog_objects: usize,
        /// How long the oldest of them has waited.
        oldest_unpersisted_age: Option<Duration>,
    },
    /// The object is larger than a limit allows.
    #[error("object {id} is {len} bytes, over the {limit}-byte limit ({limit_name})")]
    ObjectTooLarge {
        /// The object.
        id: ObjectId,
        /// Its size (so far).
        len: u64,
        /// Which limit.
        limit_name: &'static str,
        /// The limit's value.
        limit: u64,
    },
    /// Stored bytes do not match their checksum: corruption, never returned as data.
    #[error(
        "checksum mismatch in {}of {id}: expected crc32 {expected:#010x}, computed {actual:#010x}",
        chunk.map_or(String::new(), |c| format!("chunk {c} "))
    )]
    ChecksumMismatch {
        /// The object.
        id: ObjectId,
        /// The chunk, or `None` for the whole object.
        chunk: Option<usize>,
        /// The CRC recorded (or sent by the client).
        expected: u32,
        /// The CRC of the bytes held.
        actual: u32,
    },
    /// No live version of the key is known (never written, or deleted).
    #[error("{bucket}/{key} not found{}", deleted.map_or(String::new(), |v| format!(" (deleted as version {v})")))]
    NotFound {
        /// The bucket.
        bucket: BucketName,
        /// The key.
        key: ObjectKey,
        /// The tombstone's version, if the key is known to be deleted.
        deleted: Option<Version>,
    },
    /// That exact version is not in memory.
    #[error("{0} not found in memory")]
    VersionNotFound(ObjectId),
    /// The newest version is persisted but its bytes were evicted: read it back from the
    /// under-store ([`ObjectStore::refill`]).
    #[error("{} was evicted from memory; its bytes are in the under-store", .0.id)]
    Evicted(ObjectMeta),
    /// What the under-store returned for an evicted object is not what was written.
    #[error(
        "the under-store's copy of {id} is {len} bytes{}, but {expected_len} bytes with crc32 \
         {expected_crc:#010x} were written: it was overwritten by a newer version, or damaged",
        crc.map_or(String::new(), |c| format!(" with crc32 {c:#010x}"))
    )]
    UnderStoreMismatch {
        /// The object.
        id: ObjectId,
        /// Its size as written.
        expected_len: u64,
        /// Its CRC as written.
        expected_crc: u32,
        /// The size read back (so far).
        len: u64,
        /// The CRC read back, once all of it was.
        crc: Option<u32>,
    },
    /// Memory is too full of unpersisted data to read an evicted object back in.
    #[error(
        "no room to read {id} ({}) back into memory after waiting {waited:?}: {} pinned by \
         unpersisted data in a {} pool, {chunks_free} chunks free",
        ByteSize(*len), ByteSize(*pinned_bytes), ByteSize(*pool_bytes)
    )]
    NoRoomToCache {
        /// The object.
        id: ObjectId,
        /// Its size.
        len: u64,
        /// How long it waited.
        waited: Duration,
        /// Memory pinned by unpersisted objects and writes in progress.
        pinned_bytes: u64,
        /// The pool's size.
        pool_bytes: u64,
        /// Free chunks in the pool at the time.
        chunks_free: usize,
    },
    /// A newer or equal version of the key is already known: the write is stale.
    #[error("{id} is stale: the key already has version {newest}")]
    StaleVersion {
        /// The refused version.
        id: ObjectId,
        /// The newest version known.
        newest: Version,
    },
    /// The object is not in the state the operation needs.
    #[error("cannot {action} {id}: it is {state}")]
    InvalidState {
        /// The object.
        id: ObjectId,
        /// What was attempted.
        action: &'static str,
        /// Its state.
        state: ObjectState,
    },
    /// A `MUST_CACHE` object or tombstone was handed to the persist path.
    #[error("{0} is memory-only (MUST_CACHE) and is never persisted")]
    NotPersistable(ObjectId),
    /// A read past the end of the object.
    #[error("range {start}..{end} is outside {id}, which is {len} bytes")]
    RangeOutOfBounds {
        /// The object.
        id: ObjectId,
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// The object's size.
        len: u64,
    },
}

/// A snapshot of the store's memory and backlog (invariant 6: every backlog is visible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    /// The pool under the store.
    pub pool: PoolStats,
    /// `unpersisted_limit_bytes`.
    pub unpersisted_limit_bytes: u64,
    /// Memory pinned by unpersisted objects and writes in progress.
    pub pinned_bytes: u64,
    /// Memory held by persisted objects, free to evict.
    pub evictable_bytes: u64,
    /// Objects (and tombstones) waiting to be persisted, in flight included.
    pub backlog_objects: usize,
    /// Logical bytes of those objects.
    pub backlog_bytes: u64,
    /// Age of the oldest of them.
    pub oldest_unpersisted_age: Option<Duration>,
    /// Persisted objects cached in memory.
    pub cached_objects: usize,
    /// Objects evicted since start.
    pub evictions: u64,
}

struct Shared {
    pool: Pool,
    config: StoreConfig,
    accounting: Accounting,
    index: Mutex<Index>,
    space_freed: Arc<Notify>,
}

/// The store. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ObjectStore {
    shared: Arc<Shared>,
}

/// A committed object, ready to read. Holds its memory until dropped, even if the object
/// is evicted meanwhile.
pub struct ObjectReader {
    meta: ObjectMeta,
    data: Arc<ObjectData>,
}

impl ObjectReader {
    /// What the object is.
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// The whole object, every chunk verified.
    pub fn read_all(&self) -> Result<Vec<u8>, StoreError> {
        self.read_range(0..self.meta.len)
    }

    /// Bytes `range` of the object; each chunk touched is verified whole.
    pub fn read_range(&self, range: std::ops::Range<u64>) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        self.data.read_into(&self.meta.id, range, &mut out)?;
        Ok(out)
    }

    /// The object's chunks in order with their CRCs, each verified just before it is
    /// yielded: the zero-copy way to send or upload an object.
    pub fn verified_chunks(&self) -> impl Iterator<Item = Result<(&[u8], u32), StoreError>> {
        (0..self.data.chunk_count()).map(|i| self.data.verified_chunk(&self.meta.id, i))
    }

    /// The object's chunks as shared buffers with their CRCs, every chunk verified
    /// first. The buffers are the pool memory itself (no copy) and keep it alive as
    /// long as any of them lives, even if the object is evicted meanwhile.
    pub fn shared_chunks(&self) -> Result<Vec<(Bytes, u32)>, StoreError> {
        (0..self.data.chunk_count())
            .map(|index| {
                let (_, crc) = self.data.verified_chunk(&self.meta.id, index)?;
                let view = ChunkView {
                    data: self.data.clone(),
                    index,
                };
                Ok((Bytes::from_owner(view), crc))
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn corrupt(&self, chunk: usize, offset: usize) {
        self.data.corrupt(chunk, offset);
    }
}

/// One chunk of a committed object, owned by a `Bytes`.
struct ChunkView {
    data: Arc<ObjectData>,
    index: usize,
}

impl AsRef<[u8]> for ChunkView {
    fn as_ref(&self) -> &[u8] {
        self.data.chunk_bytes(self.index)
    }
}

impl ObjectStore {
    /// A store over `pool` with `config`'s limits.
    pub fn new(pool: Pool, config: StoreConfig) -> Result<Self, StoreError> {
        let pool_bytes = pool.stats().total_bytes();
        if config.unpersisted_limit_bytes > pool_bytes {
            return Err(StoreError::InvalidConfig(format!(
                "unpersisted_limit_bytes {} is larger than the {}-byte pool",
                config.unpersisted_limit_bytes, pool_bytes
            )));
        }
        if config.unpersisted_limit_bytes < pool.chunk_size() as u64 {
            return Err(StoreError::InvalidConfig(format!(
                "unpersisted_limit_bytes {} is smaller than one {}-byte chunk",
                config.unpersisted_limit_bytes,
                pool.chunk_size()
            )));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                accounting: Accounting::new(config.unpersisted_limit_bytes),
                pool,
                config,
                index: Mutex::new(Index::default()),
                space_freed: Arc::new(Notify::new()),
            }),
        })
    }

    /// Starts writing `id`. Refuses at once if a newer version is already known.
    pub fn writer(&self, id: ObjectId, write_type: WriteType) -> Result<ObjectWriter, StoreError> {
        self.index().check_not_stale(&id)?;
        Ok(ObjectWriter::new(self.clone(), id, write_type))
    }

    /// Writes and commits a whole buffer.
    pub async fn put(
        &self,
        id: ObjectId,
        write_type: WriteType,
        data: &[u8],
    ) -> Result<ObjectMeta, StoreError> {
        let mut writer = self.writer(id, write_type)?;
        writer.write(data).await?;
        writer.commit()
    }

    /// Deletes the key as of `id.version`: a tombstone that hides older versions and,
    /// unless `write_type` is `MUST_CACHE`, is itself persisted (as a delete).
    pub fn delete(
        &self,
        id: ObjectId,
        write_type: WriteType,
        role: Role,
        replicas: u8,
    ) -> Result<(), StoreError> {
        self.commit(id, write_type, role, replicas, None, 0)
            .map(drop)
    }

    /// The newest live version of a key; [`StoreError::Evicted`] if its bytes must be
    /// read back from the under-store first.
    pub fn get(&self, bucket: &BucketName, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        let (meta, data) = self.index().get(bucket, key)?;
        Ok(ObjectReader { meta, data })
    }

    /// One exact version, live or superseded-but-still-uploading.
    pub fn get_version(&self, id: &ObjectId) -> Result<ObjectReader, StoreError> {
        let (meta, data) = self.index().get_version(id)?;
        Ok(ObjectReader { meta, data })
    }

    /// Up to `max` keys of `bucket` starting with `prefix`, after `start_after`, in key
    /// order, each with its newest live version's metadata.
    pub fn list(
        &self,
        bucket: &BucketName,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Vec<ObjectMeta> {
        let listed = self.index().list(bucket, prefix, start_after, max, false);
        listed.into_iter().map(|(meta, _)| meta).collect()
    }

    /// As [`list`](Self::list), deleted keys included, each with whether its newest
    /// version is a tombstone: what a node answers, so that a merge across members
    /// never shows a key another member has deleted.
    pub fn list_with_tombstones(
        &self,
        bucket: &BucketName,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> Vec<(ObjectMeta, bool)> {
        self.index().list(bucket, prefix, start_after, max, true)
    }

    /// The newest version known for a key, live, deleted or evicted-while-uploading.
    pub fn newest_version(&self, bucket: &BucketName, key: &ObjectKey) -> Option<Version> {
        self.index().newest_version(bucket, key)
    }

    /// The metadata of the newest live version of a key, in memory or evicted.
    pub fn head(&self, bucket: &BucketName, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.index().head(bucket, key)
    }

    /// Starts reading an evicted object (as [`StoreError::Evicted`] described it) back
    /// into memory. Fails at once if it could not fit beside the unpersisted data.
    pub fn refill(&self, evicted: ObjectMeta) -> Result<Refill, StoreError> {
        Refill::new(self.clone(), evicted)
    }

    /// `committed → persisting`: an upload of `id` starts. Returns the reader to upload
    /// from, or `None` for a tombstone (the upload is a delete).
    pub fn start_persist(&self, id: &ObjectId) -> Result<Option<ObjectReader>, StoreError> {
        let started = self.index().start_persist(id)?;
        Ok(started.map(|(meta, data)| ObjectReader { meta, data }))
    }

    /// `persisting → persisted`: the under-store has `id`. Its memory becomes evictable.
    pub fn finish_persist(&self, id: &ObjectId) -> Result<(), StoreError> {
        let released = self.index().finish_persist(id, &self.shared.accounting)?;
        drop(released);
        self.shared.space_freed.notify_waiters();
        Ok(())
    }

    /// `persisting → committed`: the upload failed; the object waits for another try.
    pub fn fail_persist(&self, id: &ObjectId) -> Result<(), StoreError> {
        self.index().fail_persist(id)
    }

    /// The oldest objects this node is to persist ([`Role::Primary`]) that are waiting
    /// and not being uploaded, oldest first: the persist FIFO.
    pub fn persist_queue(&self, limit: usize) -> Vec<QueuedObject> {
        self.index().persist_queue(limit)
    }

    /// The metadata of one exact version, tombstones and evicted versions included.
    pub fn meta_of(&self, id: &ObjectId) -> Option<ObjectMeta> {
        self.index().meta_of(id)
    }

    /// Records what the under-store holds for a key this node does not know (after a
    /// restart, memory knows nothing): a persisted version whose bytes are evicted, so
    /// that a `get` reads them back and checks them against `meta`'s size and CRC.
    /// `false` if the key is known after all.
    pub fn learn(&self, meta: &ObjectMeta) -> bool {
        self.index().learn(meta)
    }

    /// Every version waiting to be persisted (by this node or another), in commit order.
    pub fn unpersisted(&self) -> Vec<Unpersisted> {
        self.index().unpersisted()
    }

    /// Makes this node the primary of a replica's copy whose primary failed: it enters
    /// this node's persist queue at its place in commit order. `false` if it is no
    /// longer waiting for a primary (persisted, superseded, or already this node's).
    pub fn take_over(&self, id: &ObjectId) -> bool {
        self.index().take_over(id)
    }

    /// `committed → persisted` on a replica: the primary has persisted `id`. Its memory
    /// becomes evictable. A version superseded here meanwhile is no error; one that has
    /// not arrived yet (the primary can finish its upload before a replica commits) is
    /// [`StoreError::VersionNotFound`], for the primary to try again.
    pub fn mark_persisted(&self, id: &ObjectId) -> Result<(), StoreError> {
        let released = self.index().mark_persisted(id, &self.shared.accounting)?;
        drop(released);
        self.shared.space_freed.notify_waiters();
        Ok(())
    }

    /// A snapshot of memory and backlog.
    pub fn stats(&self) -> StoreStats {
        let index = self.index();
        let backlog = index.backlog(Instant::now());
        StoreStats {
            pool: self.shared.pool.stats(),
            unpersisted_limit_bytes: self.shared.accounting.limit(),
            pinned_bytes: self.shared.accounting.pinned(),
            evictable_bytes: self.shared.accounting.evictable(),
            backlog_objects: backlog.objects,
            backlog_bytes: backlog.bytes,
            oldest_unpersisted_age: backlog.oldest_age,
            cached_objects: index.cached_objects(),
            evictions: index.evictions(),
        }
    }

    /// The pool under the store.
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    fn chunk_size(&self) -> usize {
        self.shared.pool.chunk_size()
    }

    fn space_freed(&self) -> Arc<Notify> {
        self.shared.space_freed.clone()
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.shared
            .index
            .lock()
            .expect("store index lock poisoned: a panic while holding it")
    }

    fn commit(
        &self,
        id: ObjectId,
        write_type: WriteType,
        role: Role,
        replicas: u8,
        written: Option<(Arc<ObjectData>, Arc<Metadata>, Digest)>,
        pinned_bytes: u64,
    ) -> Result<ObjectMeta, StoreError> {
        let (data, described) = match written {
            Some((data, metadata, digest)) => (Some(data), (metadata, digest)),
            None => (None, Default::default()),
        };
        let result = self.index().commit(
            id,
            (write_type, role, replicas),
            data,
            described,
            pinned_bytes,
            &self.shared.accounting,
        );
        match result {
            Ok((meta, released)) => {
                if !released.is_empty() {
                    drop(released);
                    self.shared.space_freed.notify_waiters();
                }
                Ok(meta)
            }
            Err(err) => {
                self.release_pinned(pinned_bytes);
                Err(err)
            }
        }
    }

    fn release_pinned(&self, bytes: u64) {
        if bytes > 0 {
            self.shared.accounting.unpin(bytes);
            self.shared.space_freed.notify_waiters();
        }
    }

    /// One chunk for `id`'s writer: admitted against the unpersisted limit, taken from
    /// the pool, evicting persisted objects if the pool is empty. Waits for memory up to
    /// `backpressure_timeout`, then fails with the backlog error.
    async fn reserve_chunk(&self, id: &ObjectId) -> Result<Chunk, StoreError> {
        let started = Instant::now();
        let deadline = started + self.shared.config.backpressure_timeout;
        self.wait_for_chunk(deadline, || self.try_reserve_chunk())
            .await
            .ok_or_else(|| self.backpressure_error(id, started.elapsed()))
    }

    /// Tries `take` until it yields a chunk, waiting for freed memory between tries;
    /// `None` once `deadline` passes.
    async fn wait_for_chunk(
        &self,
        deadline: Instant,
        take: impl Fn() -> Option<Chunk>,
    ) -> Option<Chunk> {
        loop {
            // Register before trying, so a release between the try and the wait still
            // wakes us.
            let freed = self.shared.space_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(chunk) = take() {
                return Some(chunk);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    fn try_reserve_chunk(&self) -> Option<Chunk> {
        let chunk_bytes = self.chunk_size() as u64;
        if !self.shared.accounting.try_pin(chunk_bytes) {
            return None;
        }
        let chunk = self.try_alloc_evicting();
        if chunk.is_none() {
            self.shared.accounting.unpin(chunk_bytes);
        }
        chunk
    }

    /// A chunk from the pool; if it is empty, persisted objects hold the rest, so evict
    /// the least recently used (its chunks return when its last reader lets go, usually
    /// at once) until one frees up or none is left.
    fn try_alloc_evicting(&self) -> Option<Chunk> {
        loop {
            if let Ok(chunk) = self.shared.pool.try_alloc() {
                return Some(chunk);
            }
            let evicted = self.index().evict_lru(&self.shared.accounting);
            drop(evicted?);
        }
    }

    /// One chunk for reading `meta` back in: not pinned (the object is persisted), taken
    /// from the pool or by evicting, waiting for memory until `deadline`.
    async fn cache_chunk(&self, meta: &ObjectMeta, deadline: Instant) -> Result<Chunk, StoreError> {
        let started = Instant::now();
        self.wait_for_chunk(deadline, || self.try_alloc_evicting())
            .await
            .ok_or_else(|| self.no_room_to_cache(meta, started.elapsed()))
    }

    fn no_room_to_cache(&self, meta: &ObjectMeta, waited: Duration) -> StoreError {
        StoreError::NoRoomToCache {
            id: meta.id.clone(),
            len: meta.len,
            waited,
            pinned_bytes: self.shared.accounting.pinned(),
            pool_bytes: self.shared.pool.stats().total_bytes(),
            chunks_free: self.shared.pool.stats().chunks_free,
        }
    }

    /// Makes read-back bytes `id`'s cache entry, unless something newer came meanwhile.
    fn install_refill(&self, id: &ObjectId, data: Arc<ObjectData>, memory_bytes: u64) {
        let installed = self
            .index()
            .refill(id, data, memory_bytes, &self.shared.accounting);
        if installed {
            // Writers waiting for memory may now evict it.
            self.shared.space_freed.notify_waiters();
        }
    }

    fn backpressure_error(&self, id: &ObjectId, waited: Duration) -> StoreError {
        let backlog = self.index().backlog(Instant::now());
        StoreError::Backpressure {
            id: id.clone(),
            waited,
            limit_bytes: self.shared.accounting.limit(),
            pinned_bytes: self.shared.accounting.pinned(),
            chunks_free: self.shared.pool.stats().chunks_free,
            backlog_objects: backlog.objects,
            oldest_unpersisted_age: backlog.oldest_age,
        }
    }
}
