//! An object's bytes: pool chunks, a CRC32 per chunk, and the whole-object CRC combined
//! from them. Every read verifies the CRC of every chunk it touches before a byte leaves.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::Notify;

use super::{ObjectId, StoreError};
use crate::pool::Chunk;

/// Committed object data. Immutable: readers share it through an `Arc`, so eviction can
/// drop the index entry while a read is still going; the chunks return to the pool when
/// the last reader is done.
pub(crate) struct ObjectData {
    chunks: Vec<Chunk>,
    chunk_crcs: Vec<u32>,
    len: u64,
    crc: u32,
    /// Woken when the chunks go back to the pool, for writers waiting for memory.
    space_freed: Arc<Notify>,
}

impl ObjectData {
    pub(crate) fn new(
        chunks: Vec<Chunk>,
        chunk_crcs: Vec<u32>,
        len: u64,
        space_freed: Arc<Notify>,
    ) -> Self {
        assert_eq!(chunks.len(), chunk_crcs.len(), "one CRC per chunk");
        let chunk_size = chunks.first().map_or(1, |c| c.capacity() as u64);
        assert_eq!(
            chunks.len() as u64,
            len.div_ceil(chunk_size),
            "chunks cover exactly len bytes"
        );
        let crc = combine_crcs(&chunk_crcs, len, chunk_size);
        Self {
            chunks,
            chunk_crcs,
            len,
            crc,
            space_freed,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn crc(&self) -> u32 {
        self.crc
    }

    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The written bytes of chunk `i`.
    pub(crate) fn chunk_bytes(&self, i: usize) -> &[u8] {
        let chunk = &self.chunks[i];
        let start = i as u64 * chunk.capacity() as u64;
        let used = (self.len - start).min(chunk.capacity() as u64) as usize;
        &chunk.as_slice()[..used]
    }

    /// The written bytes of chunk `i` and their CRC, after checking it.
    pub(crate) fn verified_chunk(
        &self,
        id: &ObjectId,
        i: usize,
    ) -> Result<(&[u8], u32), StoreError> {
        let bytes = self.chunk_bytes(i);
        let actual = crc32fast::hash(bytes);
        if actual != self.chunk_crcs[i] {
            return Err(StoreError::ChecksumMismatch {
                id: id.clone(),
                chunk: Some(i),
                expected: self.chunk_crcs[i],
                actual,
            });
        }
        Ok((bytes, actual))
    }

    /// Appends `range` of the object to `out`, verifying each chunk it touches first.
    /// On error nothing of the failing chunk is appended.
    pub(crate) fn read_into(
        &self,
        id: &ObjectId,
        range: Range<u64>,
        out: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        if range.start > range.end || range.end > self.len {
            return Err(StoreError::RangeOutOfBounds {
                id: id.clone(),
                start: range.start,
                end: range.end,
                len: self.len,
            });
        }
        if range.is_empty() {
            return Ok(());
        }
        let chunk_size = self.chunks[0].capacity() as u64;
        let first = (range.start / chunk_size) as usize;
        let last = ((range.end - 1) / chunk_size) as usize;
        out.reserve((range.end - range.start) as usize);
        for i in first..=last {
            let (bytes, _) = self.verified_chunk(id, i)?;
            let chunk_start = i as u64 * chunk_size;
            let from = range.start.saturating_sub(chunk_start) as usize;
            let to = (range.end - chunk_start).min(bytes.len() as u64) as usize;
            out.extend_from_slice(&bytes[from..to]);
        }
        Ok(())
    }

    /// Test hook: flips one bit in chunk `i`, as a memory fault would.
    #[cfg(test)]
    pub(crate) fn corrupt(&self, i: usize, offset: usize) {
        // SAFETY: test-only; no slice of this chunk is alive while the test calls this.
        unsafe { self.chunks[i].corrupt_byte(offset) };
    }
}

impl Drop for ObjectData {
    fn drop(&mut self) {
        self.chunks.clear();
        self.space_freed.notify_waiters();
    }
}

/// The CRC32 of the whole object from its chunks' CRCs: crc(a‖b) from crc(a), crc(b) and
/// len(b), so the bytes are hashed once, as they arrive, and never again.
pub(crate) fn combine_crcs(chunk_crcs: &[u32], len: u64, chunk_size: u64) -> u32 {
    fdw_net::wire::combined_crc(chunk_crcs.iter().enumerate().map(|(i, &crc)| {
        let chunk_len = (len - i as u64 * chunk_size).min(chunk_size);
        (crc, chunk_len)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_crc_equals_crc_of_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for chunk in [1usize, 7, 4096, 9_999, 10_000, 20_000] {
            let crcs: Vec<u32> = data.chunks(chunk).map(crc32fast::hash).collect();
            assert_eq!(
                combine_crcs(&crcs, data.len() as u64, chunk as u64),
                crc32fast::hash(&data),
                "chunk {chunk}"
            );
        }
        assert_eq!(combine_crcs(&[], 0, 4096), crc32fast::hash(b""));
    }
}
