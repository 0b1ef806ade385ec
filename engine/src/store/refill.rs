//! Reading an evicted object back in: bytes fetched from the under-store land in pool
//! chunks as a client write's do, are checked against the size and CRC recorded when
//! the object was written, and become a cache entry again.

use std::sync::Arc;

use tokio::time::Instant;

use super::filling::Filling;
use super::{ObjectMeta, ObjectReader, ObjectStore, StoreError};

/// An evicted object being read back. Dropping it abandons the read and returns its
/// memory. Its chunks are not pinned: the object is persisted, so they count as
/// evictable once [`finish`](Self::finish) installs them.
pub struct Refill {
    store: ObjectStore,
    meta: ObjectMeta,
    fill: Filling,
    deadline: Instant,
}

impl Refill {
    pub(super) fn new(store: ObjectStore, meta: ObjectMeta) -> Result<Self, StoreError> {
        let deadline = Instant::now() + store.config().backpressure_timeout;
        // Refuse at once what could never fit beside the unpersisted data.
        let needed = meta.len.next_multiple_of(store.chunk_size() as u64);
        let room = store
            .pool()
            .stats()
            .total_bytes()
            .saturating_sub(store.shared.accounting.pinned());
        if needed > room {
            return Err(store.no_room_to_cache(&meta, std::time::Duration::ZERO));
        }
        Ok(Self {
            store,
            meta,
            fill: Filling::default(),
            deadline,
        })
    }

    /// What is being read back.
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// Copies the next `data` of the object into memory. Fails if the under-store holds
    /// more bytes than were written, or if no memory frees up in time.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        if self.fill.len() + data.len() as u64 > self.meta.len {
            return Err(self.mismatch(self.fill.len() + data.len() as u64, None));
        }
        while !data.is_empty() {
            if self.fill.is_full() {
                let chunk = self.store.cache_chunk(&self.meta, self.deadline).await?;
                self.fill.push(chunk);
            }
            let n = self.fill.copy_in(data);
            data = &data[n..];
        }
        Ok(())
    }

    /// Checks the bytes against the recorded size and CRC and makes them the object's
    /// cache entry again. If a delete or newer version came meanwhile, the bytes are
    /// still returned to this reader (the read began before it) but not cached.
    pub fn finish(mut self) -> Result<ObjectReader, StoreError> {
        let crc = self.fill.crc(self.store.chunk_size());
        if self.fill.len() != self.meta.len || crc != self.meta.crc {
            return Err(self.mismatch(self.fill.len(), Some(crc)));
        }
        let memory_bytes = (self.fill.chunk_count() * self.store.chunk_size()) as u64;
        let data = Arc::new(std::mem::take(&mut self.fill).into_data(self.store.space_freed()));
        self.store
            .install_refill(&self.meta.id, data.clone(), memory_bytes);
        Ok(ObjectReader {
            meta: self.meta,
            data,
        })
    }

    fn mismatch(&self, len: u64, crc: Option<u32>) -> StoreError {
        StoreError::UnderStoreMismatch {
            id: self.meta.id.clone(),
            expected_len: self.meta.len,
            expected_crc: self.meta.crc,
            len,
            crc,
        }
    }
}
