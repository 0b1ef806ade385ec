//! What every under-store offers: whole-object and multipart writes, ranged reads, head,
//! delete and list, each with an error that says whether trying again can help.
//!
//! Every call is cancel-safe: dropping its future abandons the request (an HTTP request
//! is dropped mid-flight; a local file being written is left as a temporary file that is
//! never renamed into place). The upload pipeline relies on that to stop an upload when
//! a newer version or a delete makes it moot.

use std::convert::Infallible;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A transient failure: 5xx, throttling (503 SlowDown, 429), a timeout, a reset
    /// connection. Retry with backoff.
    Retryable,
    /// Retrying the same request cannot succeed: bad credentials, a missing bucket, a
    /// checksum the store refused.
    Permanent,
    /// The object (or upload) does not exist.
    NotFound,
    /// The key is not what the write expected ([`Fence::expect`]): another writer got
    /// there first. Read it again and decide again.
    Conflict,
}

/// A failed under-store call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {key}: {message} ({kind:?})")]
pub struct UnderStoreError {
    /// Whether trying again can help.
    pub kind: FailureKind,
    /// The call that failed.
    pub operation: &'static str,
    /// The under-store key (or prefix) it was about.
    pub key: String,
    /// What the store or the network said.
    pub message: String,
}

impl UnderStoreError {
    /// An error of `kind` from `operation` on `key`.
    pub fn new(
        kind: FailureKind,
        operation: &'static str,
        key: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Whether trying again can help.
    pub fn is_retryable(&self) -> bool {
        self.kind == FailureKind::Retryable
    }
}

/// Bytes to write, as the buffers that already hold them (pool chunks, shared by
/// reference), with their CRC32 known in advance: nothing is copied or re-hashed to
/// send them.
#[derive(Debug, Clone)]
pub struct Payload {
    pieces: Arc<[Bytes]>,
    len: u64,
    crc: u32,
}

impl Payload {
    /// `pieces` in order, whose bytes together have CRC32 `crc`.
    pub fn new(pieces: Vec<Bytes>, crc: u32) -> Self {
        let len = pieces.iter().map(|p| p.len() as u64).sum();
        Self {
            pieces: pieces.into(),
            len,
            crc,
        }
    }

    /// One buffer, hashed here.
    pub fn from_bytes(bytes: Bytes) -> Self {
        let crc = crc32fast::hash(&bytes);
        Self::new(vec![bytes], crc)
    }

    /// Total length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// CRC32 of all the bytes.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// The buffers, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// An HTTP body that yields the buffers one by one, by reference.
    pub(crate) fn body(&self) -> PayloadBody {
        PayloadBody {
            pieces: self.pieces.clone(),
            next: 0,
            remaining: self.len,
        }
    }
}

/// [`Payload`] as an `http_body` body.
pub(crate) struct PayloadBody {
    pieces: Arc<[Bytes]>,
    next: usize,
    remaining: u64,
}

impl http_body::Body for PayloadBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let Some(piece) = self.pieces.get(self.next).cloned() else {
            return Poll::Ready(None);
        };
        self.next += 1;
        self.remaining -= piece.len() as u64;
        Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// One uploaded part of a multipart upload, as completing it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: u32,
    /// The store's tag for the part.
    pub etag: String,
    /// CRC32 of the part's bytes.
    pub crc: u32,
}

/// What `head` and `list` say about a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredObject {
    /// The key, relative to the store's location.
    pub key: String,
    /// Size in bytes.
    pub len: u64,
    /// CRC32 of the whole object, if the store recorded one.
    pub crc: Option<u32>,
    /// The fdw version it was written as, if fdw wrote it (`head` only).
    pub version: Option<u64>,
    /// fdw's ETag of it, if fdw recorded one (`head` only).
    pub etag: Option<String>,
    /// The HTTP headers it is served with (`head` only): see [`Fence::headers`].
    pub headers: Vec<(String, String)>,
    /// A tag that changes whenever the object is replaced: what [`Expect::Tag`] names
    /// (`head` only).
    pub tag: Option<String>,
}

/// What a write expects to find under its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Nothing (S3 `If-None-Match: *`).
    Absent,
    /// The object with this tag (S3 `If-Match: <ETag>`).
    Tag(String),
}

impl Expect {
    /// What a write must find to replace `current` (as `head` gave it).
    pub fn replacing(current: Option<&StoredObject>) -> Self {
        match current {
            None => Self::Absent,
            Some(object) => Self::Tag(object.tag.clone().unwrap_or_default()),
        }
    }
}

/// The fence on a write, which keeps an older version from replacing a newer one
/// whoever writes it (invariant 5 across primaries): the version it records, and what
/// it must replace. A write whose expectation no longer holds fails with
/// [`FailureKind::Conflict`] and changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fence {
    /// fdw's version of the object, recorded with it: S3 metadata `fdw-version`, or an
    /// extended attribute of a local file.
    pub version: Option<u64>,
    /// fdw's ETag of the object, recorded beside the version (`fdw-etag`).
    pub etag: Option<String>,
    /// The object's HTTP headers, lowercase names (`content-type`, `cache-control`,
    /// `content-disposition`, `content-encoding`, `content-language`, `expires`,
    /// `x-amz-meta-*`): an S3 store keeps them as the object's own, so that any S3
    /// client reading the store sees them too; a local file keeps them in an extended
    /// attribute.
    pub headers: Vec<(String, String)>,
    /// What must be under the key for the write to happen; `None`: anything.
    pub expect: Option<Expect>,
}

/// The S3 metadata name (`x-amz-meta-fdw-version`) of the recorded version.
pub const VERSION_METADATA: &str = "fdw-version";
/// The S3 metadata name (`x-amz-meta-fdw-etag`) of the recorded fdw ETag.
pub const ETAG_METADATA: &str = "fdw-etag";
/// User metadata names starting so (`x-amz-meta-fdw-*`) are fdw's own records, which
/// an object's headers may not carry.
pub const RESERVED_METADATA_PREFIX: &str = "fdw-";
/// Headers starting so (`x-fdw-parts`, ...) are records the gateway keeps with an
/// object and never serves as headers. In S3 they are user metadata under
/// [`RECORD_METADATA_PREFIX`].
pub const RECORD_HEADER_PREFIX: &str = "x-fdw-";
/// The S3 metadata names of [`RECORD_HEADER_PREFIX`] records: `x-fdw-parts` is kept as
/// `x-amz-meta-fdw-h-parts`.
pub const RECORD_METADATA_PREFIX: &str = "fdw-h-";

/// An under-store: where persisted objects live. Keys are relative to the store's
/// location (its S3 prefix or directory).
pub trait UnderStore: Send + Sync {
    /// Why the store cannot hold an object under `key`, if it cannot. Pure: checked
    /// before a write is accepted, so nothing is acknowledged that could never be
    /// persisted.
    fn refuses_key(&self, key: &str) -> Option<String> {
        let _ = key;
        None
    }

    /// Whether a single [`put_object`](Self::put_object) suits objects of any size (a
    /// local file has no request-size limit); if not, large objects go as multipart
    /// uploads.
    fn puts_any_size(&self) -> bool {
        false
    }

    /// Writes a whole object in one request, checked against `payload`'s CRC32, if
    /// `fence` allows.
    fn put_object(
        &self,
        key: &str,
        payload: Payload,
        fence: &Fence,
    ) -> impl Future<Output = Result<(), UnderStoreError>> + Send;

    /// Starts a multipart upload whose parts and whole carry CRC32 checksums, recording
    /// `fence`'s version. Returns the upload id.
    fn create_multipart(
        &self,
        key: &str,
        fence: &Fence,
    ) -> impl Future<Output = Result<String, UnderStoreError>> + Send;

    /// Uploads part `number` (1-based), checked against `payload`'s CRC32.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        payload: Payload,
    ) -> impl Future<Output = Result<CompletedPart, UnderStoreError>> + Send;

    /// Completes the upload from `parts`, checked against the whole object's CRC32 and
    /// size, if `fence`'s expectation holds.
    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        crc: u32,
        len: u64,
        fence: &Fence,
    ) -> impl Future<Output = Result<(), UnderStoreError>> + Send;

    /// Abandons an upload and frees its parts.
    fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), UnderStoreError>> + Send;

    /// The object's bytes, or `range` of them.
    fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> impl Future<Output = Result<Bytes, UnderStoreError>> + Send;

    /// What the store holds under `key`, `None` if nothing.
    fn head(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<StoredObject>, UnderStoreError>> + Send;

    /// Deletes `key`, if it is what `expect` says; deleting a missing key succeeds.
    fn delete(
        &self,
        key: &str,
        expect: Option<&Expect>,
    ) -> impl Future<Output = Result<(), UnderStoreError>> + Send;

    /// Every object whose key starts with `prefix`, in key order.
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<StoredObject>, UnderStoreError>> + Send;

    /// Multipart uploads still open under `prefix`, as `(key, upload id)`: none should
    /// outlive the upload that started it.
    fn open_uploads(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, UnderStoreError>> + Send;
}

/// CRC32 as S3 writes it in `x-amz-checksum-crc32`: base64 of the big-endian bytes.
pub fn crc32_header(crc: u32) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
}

/// The inverse of [`crc32_header`]; `None` if it is not a base64 CRC32.
pub fn parse_crc32_header(value: &str) -> Option<u32> {
    let bytes = aws_smithy_types::base64::decode(value).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_headers_round_trip_as_s3_writes_them() {
        // S3 documents the CRC32 of "hello world" (0x0D4A1185) as "DUoRhQ==".
        assert_eq!(crc32_header(crc32fast::hash(b"hello world")), "DUoRhQ==");
        assert_eq!(parse_crc32_header("DUoRhQ=="), Some(0x0D4A_1185));
        assert_eq!(parse_crc32_header("not base64!"), None);
        assert_eq!(parse_crc32_header("AAAAAAA="), None, "5 bytes is no CRC32");
    }

    #[test]
    fn payload_keeps_its_pieces_and_their_crc() {
        let payload = Payload::new(
            vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")],
            crc32fast::hash(b"hello world"),
        );
        assert_eq!(payload.len(), 11);
        assert_eq!(payload.pieces().len(), 2);
        assert_eq!(
            Payload::from_bytes(Bytes::from_static(b"hello world")).crc(),
            payload.crc()
        );
    }
}
