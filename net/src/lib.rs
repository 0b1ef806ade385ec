//! fdw's shared vocabulary: what the client SDK, the worker and the tools all speak.
//!
//! Names are validated once, when they enter the system ([`BucketName::new`],
//! [`ObjectKey::new`]); everything past that point can rely on them. The wire protocol
//! ([`wire`]: archived, validated headers and checksummed data frames) lives here too, so
//! that the SDK never depends on the daemon.

mod names;
mod write_type;

pub use names::{BucketName, MAX_BUCKET_NAME_BYTES, MAX_KEY_BYTES, NameError, ObjectKey, Version};
pub use write_type::{UnknownWriteType, WriteType};

pub mod placement;
pub mod transport;
pub mod wire;
