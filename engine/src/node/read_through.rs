//! Read-through: a `get` of an object whose bytes were evicted reads them back from its
//! bucket's under-store into pool memory, checks them against the size and CRC recorded
//! when it was written, and caches them again.
//!
//! - **Once per object**: concurrent gets of the same evicted object wait for one
//!   fetch, then read the cached copy.
//! - **Bounded staging**: the object is fetched in ranged GETs of `part_bytes`, each
//!   copied into pool chunks before the next is asked for, so no more than one part is
//!   ever buffered outside the pool.
//! - **Never wrong bytes**: an under-store copy that does not match (a newer version
//!   written through another replica, or damage) is refused, and the client tries the
//!   next replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use fdw_net::wire::{ErrorKind, Metadata, Response};
use fdw_net::{BucketName, ObjectKey};
use fdw_persist::{FailureKind, UnderStore, UnderStoreError, with_retry};

use super::{NodeShared, store_error};
use crate::store::{ObjectId, ObjectMeta, ObjectReader, StoreError};

/// Fetches in progress, one per object.
#[derive(Default)]
pub(super) struct ReadThrough {
    fetches: Mutex<HashMap<ObjectId, Weak<tokio::sync::Mutex<()>>>>,
}

impl ReadThrough {
    /// The gate for fetching `id`: held by the one fetching, waited on by the others.
    fn gate(&self, id: &ObjectId) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetches = self.fetches.lock().expect("read-through fetches");
        fetches.retain(|_, gate| gate.strong_count() > 0);
        if let Some(gate) = fetches.get(id).and_then(Weak::upgrade) {
            return gate;
        }
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        fetches.insert(id.clone(), Arc::downgrade(&gate));
        gate
    }
}

/// Why a read-through failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    /// The store refused (not found, no room, a mismatch).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The under-store could not be read.
    #[error("reading {id} back from the under-store: {source}")]
    UnderStore {
        /// The object.
        id: ObjectId,
        /// Why.
        source: UnderStoreError,
    },
    /// The bucket has no under-store here, so its evicted bytes cannot be read back.
    #[error("{0} was evicted, but this node has no under-store for its bucket")]
    NoUnderStore(ObjectId),
    /// The under-store's copy carries no CRC32, so it could not be checked.
    #[error("{0}: the under-store's copy has no CRC32 to check it against")]
    NoChecksum(ObjectId),
}

impl ReadError {
    pub(super) fn into_response(self) -> Response {
        match self {
            ReadError::Store(err) => store_error(err),
            other => {
                // Gone from the under-store: deleted by a newer delete this node has not
                // seen. Otherwise another replica may still hold the bytes in memory.
                let gone = matches!(&other, ReadError::UnderStore { source, .. }
                    if source.kind == FailureKind::NotFound);
                let kind = if gone {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::Unavailable
                };
                Response::error(kind, other)
            }
        }
    }
}

/// A key this node does not know, looked up in the under-store: what is there is
/// learned as a persisted, evicted version (size, CRC and fdw version from the
/// under-store's metadata), which a `get` then reads back like any evicted object. The
/// client asks for this only once no member knew the key and none held its tombstone.
pub(super) async fn discover(
    node: &NodeShared,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<(), ReadError> {
    if node.store.newest_version(bucket, key).is_some() {
        return Ok(());
    }
    let id = super::object_id(bucket, key, fdw_net::Version(0));
    let Some((under_store, path)) = node.persister.location_of(bucket, key) else {
        return Ok(()); // not persisted, so nowhere else to look
    };
    let mut retries = 0;
    let stored = with_retry(&node.persister.config().retry, &mut retries, || {
        under_store.head(&path)
    })
    .await
    .map_err(|source| ReadError::UnderStore {
        id: id.clone(),
        source,
    })?;
    let Some(stored) = stored else {
        return Ok(()); // nowhere: not found
    };
    let Some(crc) = stored.crc else {
        return Err(ReadError::NoChecksum(id));
    };
    let meta = ObjectMeta {
        // Written outside fdw: older than anything fdw writes.
        id: super::object_id(bucket, key, fdw_net::Version(stored.version.unwrap_or(0))),
        len: stored.len,
        crc,
        state: crate::store::ObjectState::Persisted,
        write_type: fdw_net::WriteType::AsyncThrough,
        replicas: 1,
        digest: learned_digest(&stored),
        metadata: learned_headers(&id, stored.headers),
    };
    if node.store.learn(&meta) {
        tracing::info!(id = %meta.id, "learned from the under-store");
    }
    Ok(())
}

/// The headers of an object learned from the under-store. If fdw would not have taken
/// them (over its limit, say, for an object written outside fdw), the object is still
/// served, without them, and that is logged.
fn learned_headers(id: &ObjectId, headers: Vec<(String, String)>) -> Arc<Metadata> {
    let metadata = Metadata::new(headers).unwrap_or_else(|err| {
        tracing::warn!(%id, %err, "the under-store's headers for it are not kept");
        Metadata::empty()
    });
    Arc::new(metadata)
}

/// The digest of an object learned from the under-store: the ETag fdw recorded with it,
/// or, for an object written outside fdw (no fdw version), the under-store's own ETag,
/// which is S3's MD5 form when the store is S3. Else none is known, and its ETag is the
/// zero digest's.
fn learned_digest(stored: &fdw_persist::StoredObject) -> fdw_net::wire::Digest {
    let store_own = stored
        .version
        .is_none()
        .then_some(stored.tag.as_deref())
        .flatten();
    stored
        .etag
        .as_deref()
        .or(store_own)
        .and_then(|tag| fdw_net::wire::Digest::from_etag(tag.trim_matches('"')))
        .unwrap_or_default()
}

/// The newest version of a key, read back from the under-store first if it was evicted.
pub(super) async fn get(
    node: &NodeShared,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<ObjectReader, ReadError> {
    let evicted = match node.store.get(bucket, key) {
        Err(StoreError::Evicted(meta)) => meta,
        other => return Ok(other?),
    };
    let gate = node.read_through.gate(&evicted.id);
    let _fetching = gate.lock().await;
    // Whoever held the gate before may have read it back already, or a newer version
    // may have come.
    let evicted = match node.store.get(bucket, key) {
        Err(StoreError::Evicted(meta)) => meta,
        other => return Ok(other?),
    };
    fetch(node, evicted).await
}

async fn fetch(node: &NodeShared, evicted: ObjectMeta) -> Result<ObjectReader, ReadError> {
    let id = evicted.id.clone();
    let (under_store, path) = node
        .persister
        .location_of(&id.bucket, &id.key)
        .ok_or_else(|| ReadError::NoUnderStore(id.clone()))?;
    let config = node.persister.config();
    let mut refill = node.store.refill(evicted)?;
    let len = refill.meta().len;
    let mut start = 0;
    let mut retries = 0;
    while start < len {
        let range = start..len.min(start + config.part_bytes.max(1));
        let bytes = with_retry(&config.retry, &mut retries, || {
            under_store.get(&path, Some(range.clone()))
        })
        .await
        .map_err(|source| ReadError::UnderStore {
            id: id.clone(),
            source,
        })?;
        let short = (bytes.len() as u64) < range.end - range.start;
        refill.write(&bytes).await?;
        start += bytes.len() as u64;
        if short {
            break; // the under-store's object is shorter than written: `finish` says so
        }
    }
    let reader = refill.finish()?;
    tracing::debug!(%id, len, retries, "read back from the under-store");
    Ok(reader)
}
