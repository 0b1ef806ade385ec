//! The fdw client SDK.
//!
//! The SDK depends only on `fdw-net`, the shared vocabulary, never on the daemon. Its
//! connection handling, streaming writer and `put`/`get`/`head`/`list`/`delete` arrive
//! with the write-path work; until then it exposes the names every call will take.

pub use fdw_net::{BucketName, NameError, ObjectKey, Version, WriteType};
