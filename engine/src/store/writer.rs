//! Writing one object: bytes land directly in pool chunks, each chunk's CRC is computed
//! as its bytes arrive, and nothing is visible to readers until [`ObjectWriter::commit`].

use std::sync::Arc;

use fdw_net::WriteType;

use super::object::{ObjectData, combine_crcs};
use super::{ObjectId, ObjectMeta, ObjectStore, Role, StoreError};
use crate::pool::Chunk;

/// An object being written (state `writing`). Dropping it without committing aborts the
/// write and returns its memory.
pub struct ObjectWriter {
    store: ObjectStore,
    id: ObjectId,
    write_type: WriteType,
    role: Role,
    chunks: Vec<Chunk>,
    chunk_crcs: Vec<u32>,
    /// CRC of the bytes of the last chunk so far.
    open_crc: crc32fast::Hasher,
    /// Bytes written into the last chunk.
    filled: usize,
    len: u64,
    /// Bytes of memory pinned for this writer; handed to the index on commit.
    pinned_bytes: u64,
}

impl ObjectWriter {
    pub(super) fn new(store: ObjectStore, id: ObjectId, write_type: WriteType) -> Self {
        Self {
            store,
            id,
            write_type,
            role: Role::Primary,
            chunks: Vec::new(),
            chunk_crcs: Vec::new(),
            open_crc: crc32fast::Hasher::new(),
            filled: 0,
            len: 0,
            pinned_bytes: 0,
        }
    }

    /// Whether this node or another persists the object (this node by default).
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
    }

    /// The object being written.
    pub fn id(&self) -> &ObjectId {
        &self.id
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `data` into the object. May wait (bounded) for memory; see
    /// [`StoreError::Backpressure`].
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        while !data.is_empty() {
            let buf = self.buffer(data.len()).await?;
            let n = buf.len().min(data.len());
            buf[..n].copy_from_slice(&data[..n]);
            self.advance(n);
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
        if self.chunks.is_empty() || self.filled == self.store.chunk_size() {
            self.seal_open_chunk();
            let chunk = self.store.reserve_chunk(&self.id).await?;
            self.pinned_bytes += chunk.capacity() as u64;
            self.chunks.push(chunk);
            self.filled = 0;
        }
        let filled = self.filled;
        let last = self.chunks.last_mut().expect("a chunk was just ensured");
        Ok(&mut last.as_mut_slice()[filled..])
    }

    /// Marks `n` bytes of the last [`buffer`](Self::buffer) as written, and hashes them
    /// while they are hot in cache.
    pub fn advance(&mut self, n: usize) {
        let chunk = self.chunks.last().expect("advance follows buffer");
        assert!(
            self.filled + n <= chunk.capacity(),
            "advance past the end of the chunk"
        );
        self.open_crc
            .update(&chunk.as_slice()[self.filled..self.filled + n]);
        self.filled += n;
        self.len += n as u64;
    }

    fn check_limits(&self, incoming: u64) -> Result<(), StoreError> {
        let config = self.store.config();
        let total = self.len + incoming;
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
            self.chunk_crcs.len() + 1,
            self.chunks.len(),
            "a frame fills one open chunk"
        );
        self.seal_open_chunk();
        let index = self.chunk_crcs.len() - 1;
        let actual = self.chunk_crcs[index];
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
        self.chunks
            .last()
            .map_or(&[], |chunk| &chunk.as_slice()[..self.filled])
    }

    fn seal_open_chunk(&mut self) {
        if self.chunk_crcs.len() < self.chunks.len() {
            let crc = std::mem::take(&mut self.open_crc).finalize();
            self.chunk_crcs.push(crc);
        }
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
        self.seal_open_chunk();
        if let Some(expected) = expected_crc {
            let actual = combine_crcs(&self.chunk_crcs, self.len, self.store.chunk_size() as u64);
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
        let data = ObjectData::new(
            std::mem::take(&mut self.chunks),
            std::mem::take(&mut self.chunk_crcs),
            self.len,
            self.store.space_freed(),
        );
        let pinned = std::mem::take(&mut self.pinned_bytes);
        self.store.commit(
            self.id.clone(),
            self.write_type,
            self.role,
            Some(Arc::new(data)),
            pinned,
        )
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if self.pinned_bytes > 0 {
            self.chunks.clear();
            self.store.release_pinned(self.pinned_bytes);
        }
    }
}
