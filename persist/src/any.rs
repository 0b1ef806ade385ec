//! An under-store chosen at run time from its location.

use std::ops::Range;

use bytes::Bytes;

use crate::{
    CompletedPart, Expect, FailureKind, Fence, LocalDir, Payload, S3Config, S3Store, StoredObject,
    UnderStore, UnderStoreError, UnderStoreLocation,
};

/// The under-store a location names.
#[derive(Debug, Clone)]
pub enum AnyUnderStore {
    /// `s3://bucket/prefix`.
    S3(S3Store),
    /// `file:///dir`.
    Local(LocalDir),
}

impl AnyUnderStore {
    /// Opens `location`; an S3 location needs `s3`.
    pub fn open(
        location: &UnderStoreLocation,
        s3: Option<&S3Config>,
    ) -> Result<Self, UnderStoreError> {
        match location {
            UnderStoreLocation::S3 { bucket, prefix } => {
                let config = s3.ok_or_else(|| {
                    UnderStoreError::new(
                        FailureKind::Permanent,
                        "open",
                        &location.to_string(),
                        "no S3 credentials: set them in the [s3] section or the AWS_* \
                         environment variables",
                    )
                })?;
                Ok(Self::S3(S3Store::new(config, bucket, prefix)))
            }
            UnderStoreLocation::LocalDir(dir) => LocalDir::new(dir).map(Self::Local).map_err(|e| {
                UnderStoreError::new(
                    FailureKind::Permanent,
                    "open",
                    &location.to_string(),
                    e.to_string(),
                )
            }),
        }
    }
}

/// Forwards a call to whichever store this is.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyUnderStore::S3($store) => $call,
            AnyUnderStore::Local($store) => $call,
        }
    };
}

impl UnderStore for AnyUnderStore {
    fn refuses_key(&self, key: &str) -> Option<String> {
        each!(self, s => s.refuses_key(key))
    }

    fn puts_any_size(&self) -> bool {
        each!(self, s => s.puts_any_size())
    }

    async fn put_object(
        &self,
        key: &str,
        payload: Payload,
        fence: &Fence,
    ) -> Result<(), UnderStoreError> {
        each!(self, s => s.put_object(key, payload, fence).await)
    }

    async fn create_multipart(&self, key: &str, fence: &Fence) -> Result<String, UnderStoreError> {
        each!(self, s => s.create_multipart(key, fence).await)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        payload: Payload,
    ) -> Result<CompletedPart, UnderStoreError> {
        each!(self, s => s.upload_part(key, upload_id, number, payload).await)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        crc: u32,
        len: u64,
        fence: &Fence,
    ) -> Result<(), UnderStoreError> {
        each!(self, s => s.complete_multipart(key, upload_id, parts, crc, len, fence).await)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UnderStoreError> {
        each!(self, s => s.abort_multipart(key, upload_id).await)
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, UnderStoreError> {
        each!(self, s => s.get(key, range).await)
    }

    async fn head(&self, key: &str) -> Result<Option<StoredObject>, UnderStoreError> {
        each!(self, s => s.head(key).await)
    }

    async fn delete(&self, key: &str, expect: Option<&Expect>) -> Result<(), UnderStoreError> {
        each!(self, s => s.delete(key, expect).await)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, UnderStoreError> {
        each!(self, s => s.list(prefix).await)
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, UnderStoreError> {
        each!(self, s => s.open_uploads(prefix).await)
    }
}
