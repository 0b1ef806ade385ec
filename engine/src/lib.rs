//! The fdw worker.
//!
//! - [`pool`]: the memory every object lives in — one mapping made at start-up (reserved
//!   huge pages, else transparent huge pages, else plain pages), cut into fixed-size
//!   chunks handed out lock-free.
//! - [`store`]: objects as lists of pool chunks with a CRC32 per chunk, their states
//!   (`writing → committed → persisting → persisted`, tombstones), capacity accounting
//!   that keeps unpersisted bytes pinned, LRU eviction of persisted objects, and
//!   backpressure when memory is full of unpersisted data.
//!
//! Replication, membership and persist scheduling build on these with the write-path
//! and persist work.

pub mod pool;
pub mod store;
mod sync;

pub use pool::{
    Backing, Chunk, HugePagePolicy, KernelView, Pool, PoolConfig, PoolError, PoolStats,
};
pub use store::{
    ObjectId, ObjectMeta, ObjectReader, ObjectState, ObjectStore, ObjectWriter, StoreConfig,
    StoreError, StoreStats,
};
