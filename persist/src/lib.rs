//! Persistence to the under-store: where a bucket's objects go once they are durable in
//! memory.
//!
//! For now this crate knows how to name an under-store ([`UnderStoreLocation`]); the
//! under-store trait, its S3 (aws-sdk-s3) and local-directory (io_uring) implementations
//! and the upload pipeline join it with the persist work.

mod location;

pub use location::{LocationError, UnderStoreLocation};
