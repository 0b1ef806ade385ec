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
//! - [`node`]: a worker serving QUIC requests from its store; as an object's primary it
//!   assigns versions, forwards frames to the replicas as they arrive and acknowledges at
//!   W copies.
//! - [`local`]: a cluster of nodes in one process on loopback.
//!
//! Persist scheduling and failure handling build on these with the persist and
//! fault-tolerance work.

pub mod config;
pub mod gateway;
pub mod local;
pub mod node;
pub mod pool;
pub mod store;
mod sync;

pub use config::{Config, ConfigError};
pub use local::LocalCluster;
pub use node::{Node, NodeConfig, NodeError, ShutdownReport};
pub use pool::{
    Backing, Chunk, HugePagePolicy, KernelView, Pool, PoolConfig, PoolError, PoolStats,
};
pub use store::{
    ObjectId, ObjectMeta, ObjectReader, ObjectState, ObjectStore, ObjectWriter, StoreConfig,
    StoreError, StoreStats,
};
