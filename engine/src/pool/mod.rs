//! The worker's memory: one mapping made at start-up, cut into fixed-size chunks.
//!
//! Allocation and release are a lock-free pop and push of a chunk index
//! ([`free_list`]); a [`Chunk`] is an owning handle (not `Clone`) that gives its index back
//! when dropped, so the type system rules out handing a chunk out twice or using it after
//! release. No heap allocation happens per chunk: the handle is an `Arc` clone and an
//! index.

mod free_list;
mod mapping;
mod smaps;

use std::fmt;
use std::io;
use std::sync::Arc;

use nix::errno::Errno;

pub use mapping::{Backing, HugePagePolicy};
pub use smaps::KernelView;

use free_list::{FreeList, MAX_CHUNKS};
use mapping::{BASE_PAGE_BYTES, Mapping};

/// How the pool is sized and backed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Total bytes; a whole number of chunks.
    pub size_bytes: usize,
    /// Bytes per chunk; a multiple of the 4 KiB page size.
    pub chunk_size_bytes: usize,
    /// Which page backings may be used.
    pub huge_pages: HugePagePolicy,
    /// Fault every page in at start-up so the data path never takes a page fault.
    pub populate: bool,
    /// `mlock` the pool so it is never swapped (needs `CAP_IPC_LOCK` or a large enough
    /// `ulimit -l`; hugetlb pages are never swapped anyway).
    pub lock: bool,
}

/// Default chunk size: small enough that a 4 KiB object wastes little more than a 64 KiB
/// frame, large enough that a 64 MiB object is 1024 chunks and CRC cost per chunk is noise.
pub const DEFAULT_CHUNK_SIZE_BYTES: usize = 64 * 1024;
const _: () = assert!(DEFAULT_CHUNK_SIZE_BYTES.is_multiple_of(BASE_PAGE_BYTES));

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            size_bytes: 1024 * 1024 * 1024,
            chunk_size_bytes: DEFAULT_CHUNK_SIZE_BYTES,
            huge_pages: HugePagePolicy::Auto,
            populate: true,
            lock: false,
        }
    }
}

/// Why the pool could not be made, or could not hand out a chunk.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The configuration is inconsistent; the message says which setting.
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(String),
    /// `HugePagePolicy::Require` and the kernel had too few reserved huge pages.
    #[error(
        "reserved huge pages unavailable: the pool needs {pages_needed} pages of 2 MiB, the kernel has {} free \
         (raise vm.nr_hugepages): {source}",
        pages_free.map_or("an unknown number".to_owned(), |n| n.to_string())
    )]
    HugePagesUnavailable {
        /// 2 MiB pages the pool needs.
        pages_needed: usize,
        /// `HugePages_Free` at the time, if readable.
        pages_free: Option<usize>,
        /// What `mmap` said.
        source: Errno,
    },
    /// `mmap`, `munmap` or `madvise` failed.
    #[error("mapping {bytes} bytes of pool memory failed: {source}")]
    Map {
        /// Size of the mapping.
        bytes: usize,
        /// What the kernel said.
        source: Errno,
    },
    /// `mlock` failed.
    #[error(
        "locking {bytes} bytes of pool memory failed (needs CAP_IPC_LOCK or ulimit -l): {source}"
    )]
    Lock {
        /// Size of the mapping.
        bytes: usize,
        /// What the kernel said.
        source: Errno,
    },
    /// Every chunk is in use.
    #[error("memory pool exhausted: all {chunks} chunks of {chunk_size_bytes} bytes are in use")]
    Exhausted {
        /// Chunks in the pool.
        chunks: u32,
        /// Their size.
        chunk_size_bytes: usize,
    },
}

struct PoolInner {
    mapping: Mapping,
    chunk_size: usize,
    chunks: u32,
    free: FreeList,
}

/// The chunk pool. Cheap to clone; every clone hands out chunks of the same memory.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

/// A point-in-time view of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Which pages back the pool.
    pub backing: Backing,
    /// Bytes per chunk.
    pub chunk_size_bytes: usize,
    /// Chunks in the pool.
    pub chunks_total: u32,
    /// Chunks not handed out.
    pub chunks_free: usize,
}

impl PoolStats {
    /// The pool's size: every chunk, handed out or not.
    pub fn total_bytes(&self) -> u64 {
        u64::from(self.chunks_total) * self.chunk_size_bytes as u64
    }
}

impl Pool {
    /// Maps and carves the pool. Logs which backing it got.
    pub fn new(config: &PoolConfig) -> Result<Self, PoolError> {
        let chunk = config.chunk_size_bytes;
        if chunk == 0 || !chunk.is_multiple_of(BASE_PAGE_BYTES) {
            return Err(PoolError::InvalidConfig(format!(
                "chunk size {chunk} bytes is not a positive multiple of the {BASE_PAGE_BYTES}-byte page"
            )));
        }
        if config.size_bytes < chunk || !config.size_bytes.is_multiple_of(chunk) {
            return Err(PoolError::InvalidConfig(format!(
                "pool size {} bytes is not a positive whole number of {chunk}-byte chunks",
                config.size_bytes
            )));
        }
        let chunks = u32::try_from(config.size_bytes / chunk)
            .ok()
            .filter(|&n| n <= MAX_CHUNKS)
            .ok_or_else(|| {
                PoolError::InvalidConfig(format!(
                    "pool of {} bytes has more than {MAX_CHUNKS} chunks; use larger chunks",
                    config.size_bytes
                ))
            })?;
        let mapping = Mapping::new(
            config.size_bytes,
            config.huge_pages,
            config.populate,
            config.lock,
        )?;
        assert!(
            mapping.len() >= chunks as usize * chunk,
            "mapping smaller than its chunks"
        );
        tracing::info!(
            backing = %mapping.backing(),
            bytes = config.size_bytes,
            chunks,
            chunk_size_bytes = chunk,
            locked = config.lock,
            "memory pool mapped"
        );
        Ok(Self {
            inner: Arc::new(PoolInner {
                mapping,
                chunk_size: chunk,
                chunks,
                free: FreeList::new(chunks),
            }),
        })
    }

    /// Takes a free chunk. Never blocks: when every chunk is in use it says so at once,
    /// and the caller (the store) decides whether to evict or wait.
    pub fn try_alloc(&self) -> Result<Chunk, PoolError> {
        match self.inner.free.pop() {
            Some(index) => Ok(Chunk {
                pool: self.inner.clone(),
                index,
            }),
            None => Err(PoolError::Exhausted {
                chunks: self.inner.chunks,
                chunk_size_bytes: self.inner.chunk_size,
            }),
        }
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.inner.chunk_size
    }

    /// Which pages back the pool.
    pub fn backing(&self) -> Backing {
        self.inner.mapping.backing()
    }

    /// A snapshot of the pool's use.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            backing: self.backing(),
            chunk_size_bytes: self.inner.chunk_size,
            chunks_total: self.inner.chunks,
            chunks_free: self.inner.free.free(),
        }
    }

    /// What `/proc/self/smaps` says backs the pool: the independent check of
    /// [`backing`](Self::backing).
    pub fn kernel_view(&self) -> io::Result<KernelView> {
        smaps::kernel_view(self.inner.mapping.as_ptr() as usize)
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// One chunk of pool memory, owned. Dropping it returns it to the pool.
///
/// A fresh chunk holds whatever its previous owner left; writers overwrite what they use
/// and readers only read what was written.
pub struct Chunk {
    pool: Arc<PoolInner>,
    index: u32,
}

impl Chunk {
    /// Bytes in the chunk (the pool's chunk size).
    pub fn capacity(&self) -> usize {
        self.pool.chunk_size
    }

    /// The chunk's position in the pool, for registered-buffer I/O and debugging.
    pub fn index(&self) -> u32 {
        self.index
    }

    fn start(&self) -> *mut u8 {
        // SAFETY: index < chunks and chunks * chunk_size <= mapping length (asserted at
        // construction), so the offset stays inside the mapping.
        unsafe {
            self.pool
                .mapping
                .as_ptr()
                .add(self.index as usize * self.pool.chunk_size)
        }
    }

    /// The chunk's bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the range is inside the live mapping (self.pool keeps it alive), and no
        // other Chunk has this index, so nothing writes it while `&self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.start(), self.pool.chunk_size) }
    }

    /// The chunk's bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.start(), self.pool.chunk_size) }
    }

    /// Test hook: flips the low bit of byte `offset`, as a memory fault would.
    ///
    /// # Safety
    /// No slice of this chunk may be alive during the call.
    #[cfg(test)]
    pub(crate) unsafe fn corrupt_byte(&self, offset: usize) {
        assert!(offset < self.pool.chunk_size);
        // SAFETY: in bounds (asserted); the caller guarantees no live slice aliases it.
        unsafe { *self.start().add(offset) ^= 1 };
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.pool.free.push(self.index);
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chunk#{}", self.index)
    }
}
