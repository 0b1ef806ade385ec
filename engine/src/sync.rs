//! The atomics the lock-free structures use, swapped for loom's under `cfg(fdw_loom)` so that
//! loom can explore their interleavings (tokio's `src/loom` pattern).
//!
//! The cfg is ours, not the conventional `loom`: `--cfg loom` is seen by every crate in the
//! build, and tokio answers it by compiling out `tokio::net`, which quinn needs.

#[cfg(fdw_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(fdw_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
