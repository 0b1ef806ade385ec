//! Helpers shared by the in-process cluster tests.

use fdw_engine::{HugePagePolicy, PoolConfig};

/// Chunk (and frame) size of the test clusters.
pub const CHUNK: usize = 64 * 1024;

/// A pool of `size_bytes` in plain pages, not populated: cheap to start many times.
pub fn pool(size_bytes: usize) -> PoolConfig {
    PoolConfig {
        size_bytes,
        chunk_size_bytes: CHUNK,
        huge_pages: HugePagePolicy::Off,
        populate: false,
        lock: false,
    }
}
