//! Writing one object: bytes land directly in pool chunks, each chunk's CRC is computed
//! as its bytes arrive, and nothing is visible to readers until [`ObjectWriter::commit`].

use std::sync::Arc;

use fdw_net::WriteType;
use fdw_net::wire::{Digest, Metadata};

use super::filling::Filling;
use super::{ObjectId, ObjectMeta, ObjectStore, Role, StoreError};

/// An object being written (state `writing`). Dropping it without committing aborts the
/// write and returns its memory.
pub struct ObjectWriter {
    store: ObjectStore,
    id: ObjectId,
    write_type: WriteType,
    role: Role,
    replicas: u8,
    fill: Filling,
    /// Bytes of memory pinned for this writer; handed to the index on commit.
    pinned_bytes: u64,
    metadata: Arc<Metadata>,
    digest: Digest,
}

impl ObjectWriter {
    pub(super) fn new(store: ObjectStore, id: ObjectId, write_type: WriteType) -> Self {
        Self {
            store,
            id,
            write_type,
            role: Role::Primary,
            replicas: 1,
            fill: Filling::default(),
            pinned_bytes: 0,
            metadata: Arc::default(),
            digest: Digest::default(),
        }
    }

    /// The headers the object is served with (none by default).
    pub fn set_metadata(&mut self, metadata: Metadata) {
        self.metadata = Arc::new(metadata);
    }

    /// The object's MD5, which the writer sends after the last byte (zero by default).
    pub fn set_digest(&mut self, digest: Digest) {
        self.digest = digest;
    }

    /// The digest [`set_digest`](Self::set_digest) gave.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Whether this node or another persists the object (this node by default).
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
    }

    /// How many members the cluster keeps it on (R), which recovery restores when one
    /// fails before it is persisted (1 by default).
    pub fn set_replicas(&mut self, replicas: u8) {
        self.replicas = replicas;
    }

    /// The object being written.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.fill.len()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.fill.len() == 0
    }

    /// Copies `data` into the object. May wait (bounded) for memory; see
    /// [`StoreError::Backpressure`].
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        while !data.is_empty() {
            self.buffer(data.len()).await?;
            let n = self.fill.copy_in(data);
            data = &data[n..];
        }
        Ok(())
    }

    /// The writable rest of the current chunk, taking a new chunk if it is full, for a
    /// receiver that reads from the network straight into pool memory. Follow with
    /// [`advance`](Self::advance). `incoming` is how many bytes the caller is about to
    /// write, checked against the size limits before any memory is taken.
    pub async fn buffer(&mut self, incoming: usize) -> Result<&mut [u8], StoreError> {
        self.check_limits(incoming as u64)?;
        if self.fill.is_full() {
            let chunk = self.store.reserve_chunk(&self.id).await?;
            self.pinned_bytes += chunk.capacity() as u64;
            self.fill.push(chunk);
        }
        Ok(self.fill.spare())
    }

    /// Marks `n` bytes of the last [`buffer`](Self::buffer) as written, and hashes them
    /// while they are hot in cache.
    pub fn advance(&mut self, n: usize) {
        self.fill.advance(n);
    }

    fn check_limits(&self, incoming: u64) -> Result<(), StoreError> {
        let config = self.store.config();
        let total = self.fill.len() + incoming;
        if total > config.max_object_bytes {
            return Err(StoreError::ObjectTooLarge {
                id: self.id.clone(),
                len: total,
                limit_name: "max_object_bytes",
                limit: config.max_object_bytes,
            });
        }
        let memory = total.next_multiple_of(self.store.chunk_size() as u64);
        if memory > config.unpersisted_limit_bytes {
            return Err(StoreError::ObjectTooLarge {
                id: self.id.clone(),
                len: total,
                limit_name: "unpersisted_limit_bytes",
                limit: config.unpersisted_limit_bytes,
            });
        }
        Ok(())
    }

    /// Seals the chunk just filled by one data frame and checks its CRC against the one
    /// the client computed (invariant 3: verified on every hop). The frame must have
    /// filled the chunk, or be the object's last.
    pub fn seal_frame(&mut self, expected_crc: u32) -> Result<(), StoreError> {
        assert_eq!(
            self.fill.sealed() + 1,
            self.fill.chunk_count(),
            "a frame fills one open chunk"
        );
        let actual = self.fill.seal().expect("a chunk was just sealed");
        let index = self.fill.sealed() - 1;
        if actual != expected_crc {
            return Err(StoreError::ChecksumMismatch {
                id: self.id.clone(),
                chunk: Some(index),
                expected: expected_crc,
                actual,
            });
        }
        Ok(())
    }

    /// The bytes written into the last chunk: after [`seal_frame`](Self::seal_frame),
    /// exactly the frame just received, ready to forward to the next replica.
    pub fn last_chunk(&self) -> &[u8] {
        self.fill.last_chunk()
    }

    /// The CRC of the bytes written so far: the object's, once every frame is sealed.
    pub fn crc(&mut self) -> u32 {
        self.fill.crc(self.store.chunk_size())
    }

    /// Makes the object visible as `committed`.
    pub fn commit(self) -> Result<ObjectMeta, StoreError> {
        self.commit_checked(None)
    }

    /// Commits only if the whole-object CRC equals `expected_crc` (computed by the
    /// client); on a mismatch the object is discarded and never visible.
    pub fn commit_expecting(self, expected_crc: u32) -> Result<ObjectMeta, StoreError> {
        self.commit_checked(Some(expected_crc))
    }

    fn commit_checked(mut self, expected_crc: Option<u32>) -> Result<ObjectMeta, StoreError> {
        if let Some(expected) = expected_crc {
            let actual = self.fill.crc(self.store.chunk_size());
            if actual != expected {
                // Dropping `self` returns the memory.
                return Err(StoreError::ChecksumMismatch {
                    id: self.id.clone(),
                    chunk: None,
                    expected,
                    actual,
                });
            }
        }
        let data = std::mem::take(&mut self.fill).into_data(self.store.space_freed());
        let pinned = std::mem::take(&mut self.pinned_bytes);
        self.store.commit(
            self.id.clone(),
            self.write_type,
            self.role,
            self.replicas,
            Some((
                Arc::new(data),
                std::mem::take(&mut self.metadata),
                self.digest,
            )),
            pinned,
        )
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if self.pinned_bytes > 0 {
            // The chunks go back before the accounting says they did.
            self.fill = Filling::default();
            self.store.release_pinned(self.pinned_bytes);
        }
    }
}
