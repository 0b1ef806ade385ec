//! The atomics the lock-free structures use, swapped for loom's under `cfg(loom)` so that
//! loom can explore their interleavings (tokio's `src/loom` pattern).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
