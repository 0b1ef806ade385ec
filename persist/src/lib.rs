//! Persistence to the under-store: where a bucket's objects go once they are durable in
//! memory.
//!
//! - [`UnderStore`]: the calls every under-store offers, each with an error that says
//!   whether a retry can help;
//! - [`S3Store`]: AWS S3 and S3-compatible servers, on aws-sdk-s3;
//! - [`LocalDir`]: a local directory, the embedded default, written through io_uring;
//! - [`upload()`]: one object, as a single checksummed PUT or a multipart upload streamed
//!   from its chunks, retried with backoff and jitter, aborted if it fails;
//! - [`persist_version()`]: one version of a key, fenced so that an older version never
//!   replaces a newer one, whoever writes it.

mod any;
#[cfg(feature = "s3-server")]
pub mod emulation;
mod local_dir;
mod location;
mod s3;
mod s3_headers;
#[cfg(feature = "s3-server")]
pub mod s3_server;
mod under_store;
mod upload;

pub use any::AnyUnderStore;
pub use local_dir::LocalDir;
pub use location::{LocationError, UnderStoreLocation};
pub use s3::{S3Config, S3Store};
pub use under_store::{
    CompletedPart, ETAG_METADATA, Expect, FailureKind, Fence, Payload, RECORD_HEADER_PREFIX,
    RECORD_METADATA_PREFIX, RESERVED_METADATA_PREFIX, StoredObject, UnderStore, UnderStoreError,
    VERSION_METADATA, crc32_header, parse_crc32_header,
};
pub use upload::{
    MAX_PARTS, MIN_PART_BYTES, ObjectBytes, Persisted, RetryPolicy, UploadReport, persist_version,
    upload, with_retry,
};
