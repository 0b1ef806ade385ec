//! Bytes landing in pool chunks, each chunk's CRC computed while its bytes are hot in
//! cache: what a client write and a read-through from the under-store have in common.

use std::sync::Arc;

use tokio::sync::Notify;

use super::object::{ObjectData, combine_crcs};
use crate::pool::Chunk;

#[derive(Default)]
pub(super) struct Filling {
    chunks: Vec<Chunk>,
    /// One per sealed chunk; the last chunk is sealed when the next is pushed, or at the end.
    chunk_crcs: Vec<u32>,
    /// CRC of the bytes of the last chunk so far.
    open_crc: crc32fast::Hasher,
    /// Bytes written into the last chunk.
    filled: usize,
    len: u64,
}

impl Filling {
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the next byte needs a new chunk.
    pub(super) fn is_full(&self) -> bool {
        self.chunks
            .last()
            .is_none_or(|chunk| self.filled == chunk.capacity())
    }

    /// Seals the last chunk and opens `chunk`.
    pub(super) fn push(&mut self, chunk: Chunk) {
        self.seal();
        self.chunks.push(chunk);
        self.filled = 0;
    }

    /// The writable rest of the last chunk.
    pub(super) fn spare(&mut self) -> &mut [u8] {
        let filled = self.filled;
        match self.chunks.last_mut() {
            Some(last) => &mut last.as_mut_slice()[filled..],
            None => &mut [],
        }
    }

    /// Marks `n` bytes of [`spare`](Self::spare) as written, and hashes them.
    pub(super) fn advance(&mut self, n: usize) {
        let chunk = self.chunks.last().expect("advance follows push");
        assert!(
            self.filled + n <= chunk.capacity(),
            "advance past the end of the chunk"
        );
        self.open_crc
            .update(&chunk.as_slice()[self.filled..self.filled + n]);
        self.filled += n;
        self.len += n as u64;
    }

    /// Copies as much of `data` as fits in the last chunk; returns how much.
    pub(super) fn copy_in(&mut self, data: &[u8]) -> usize {
        let spare = self.spare();
        let n = spare.len().min(data.len());
        spare[..n].copy_from_slice(&data[..n]);
        self.advance(n);
        n
    }

    /// Seals the last chunk (its CRC is final); returns that CRC.
    pub(super) fn seal(&mut self) -> Option<u32> {
        if self.chunk_crcs.len() < self.chunks.len() {
            let crc = std::mem::take(&mut self.open_crc).finalize();
            self.chunk_crcs.push(crc);
        }
        self.chunk_crcs.last().copied()
    }

    /// How many chunks are sealed.
    pub(super) fn sealed(&self) -> usize {
        self.chunk_crcs.len()
    }

    /// How many chunks are held.
    pub(super) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The bytes written into the last chunk.
    pub(super) fn last_chunk(&self) -> &[u8] {
        self.chunks
            .last()
            .map_or(&[], |chunk| &chunk.as_slice()[..self.filled])
    }

    /// The CRC32 of everything written, every chunk sealed first.
    pub(super) fn crc(&mut self, chunk_size: usize) -> u32 {
        self.seal();
        combine_crcs(&self.chunk_crcs, self.len, chunk_size as u64)
    }

    /// The finished object; `space_freed` is woken when its chunks go back to the pool.
    pub(super) fn into_data(mut self, space_freed: Arc<Notify>) -> ObjectData {
        self.seal();
        ObjectData::new(
            std::mem::take(&mut self.chunks),
            std::mem::take(&mut self.chunk_crcs),
            self.len,
            space_freed,
        )
    }
}
