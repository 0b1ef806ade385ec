//! Uploading one object: a single checksummed PUT up to the part size, a multipart
//! upload above it, with parts cut along chunk boundaries and sent straight from the
//! chunks (no staging file, no second buffer). Each part's CRC32 is combined from its
//! chunks' CRCs, so nothing is hashed twice. Retryable failures are retried with
//! exponential backoff and full jitter; a multipart upload that fails is aborted.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use bytes::Bytes;

use crate::under_store::{Expect, FailureKind, Fence, Payload, UnderStore, UnderStoreError};

/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// S3's smallest part (all but the last).
pub const MIN_PART_BYTES: u64 = 5 << 20;

/// How often and how patiently to retry one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per call, the first included.
    pub attempts: u32,
    /// Backoff before the second try; it doubles per try, up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// "Full jitter": uniform in `[0, min(max, base × 2^retry)]`, which spreads out the
    /// retries of many uploads throttled at once.
    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_backoff
            .saturating_mul(1 << retry.min(20))
            .min(self.max_backoff);
        let random = RandomState::new().hash_one(retry);
        ceiling.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Runs `call` until it succeeds, fails for good, or runs out of tries. `retries`
/// counts the retries made.
pub async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    retries: &mut u32,
    mut call: F,
) -> Result<T, UnderStoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, UnderStoreError>>,
{
    let mut retry = 0;
    loop {
        match call().await {
            Err(err) if err.is_retryable() && retry + 1 < policy.attempts => {
                let wait = policy.backoff(retry);
                tracing::debug!(%err, ?wait, retry, "retrying");
                tokio::time::sleep(wait).await;
                retry += 1;
                *retries += 1;
            }
            result => return result,
        }
    }
}

/// An object's bytes as its chunks hold them.
#[derive(Debug, Clone)]
pub struct ObjectBytes {
    /// The chunks, each full but the last.
    pub chunks: Vec<Bytes>,
    /// CRC32 of each chunk.
    pub chunk_crcs: Vec<u32>,
    /// Size of a full chunk.
    pub chunk_bytes: u64,
    /// CRC32 of the whole object.
    pub crc: u32,
    /// fdw's ETag of it, recorded with it so that a node that learns it back serves it
    /// under the same ETag.
    pub etag: Option<String>,
    /// The headers it is served with, recorded with it likewise ([`Fence::headers`]).
    pub headers: Vec<(String, String)>,
}

impl ObjectBytes {
    /// `data` cut into chunks of `chunk_bytes` (by reference, no copy), each hashed: an
    /// object held in one buffer rather than in pool chunks.
    pub fn from_bytes(data: Bytes, chunk_bytes: usize) -> Self {
        let chunk_bytes = chunk_bytes.max(1);
        let chunks: Vec<Bytes> = (0..data.len())
            .step_by(chunk_bytes)
            .map(|at| data.slice(at..(at + chunk_bytes).min(data.len())))
            .collect();
        let chunk_crcs: Vec<u32> = chunks.iter().map(|c| crc32fast::hash(c)).collect();
        Self {
            etag: None,
            headers: Vec::new(),
            crc: combine(&chunks, &chunk_crcs),
            chunk_crcs,
            chunks,
            chunk_bytes: chunk_bytes as u64,
        }
    }

    /// Total length.
    pub fn len(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }

    /// Whether the object is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chunks `range` as one payload, its CRC combined from theirs.
    fn payload(&self, range: std::ops::Range<usize>) -> Payload {
        let crc = combine(&self.chunks[range.clone()], &self.chunk_crcs[range.clone()]);
        Payload::new(self.chunks[range].to_vec(), crc)
    }
}

/// The CRC32 of `chunks` in a row, from their own CRCs: no byte is hashed again.
fn combine(chunks: &[Bytes], crcs: &[u32]) -> u32 {
    let mut whole = crc32fast::Hasher::new();
    for (chunk, crc) in chunks.iter().zip(crcs) {
        whole.combine(&crc32fast::Hasher::new_with_initial_len(
            *crc,
            chunk.len() as u64,
        ));
    }
    whole.finalize()
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadReport {
    /// Parts sent (0 for a single PUT).
    pub parts: u32,
    /// Retries across all calls.
    pub retries: u32,
}

/// Uploads `object` to `key` under `fence`: one PUT if it fits in `part_bytes` (or the
/// store takes any size in one), else multipart. `part_bytes` is raised to
/// [`MIN_PART_BYTES`] and to whole chunks, and further as needed to stay within
/// [`MAX_PARTS`].
pub async fn upload(
    store: &impl UnderStore,
    key: &str,
    object: &ObjectBytes,
    fence: &Fence,
    part_bytes: u64,
    policy: &RetryPolicy,
) -> Result<UploadReport, UnderStoreError> {
    let mut report = UploadReport::default();
    let len = object.len();
    let part_bytes = part_bytes.max(MIN_PART_BYTES);
    if len <= part_bytes || store.puts_any_size() {
        let payload = object.payload(0..object.chunks.len());
        with_retry(policy, &mut report.retries, || {
            store.put_object(key, payload.clone(), fence)
        })
        .await?;
        return Ok(report);
    }
    let chunk = object.chunk_bytes.max(1);
    let per_part = (part_bytes.div_ceil(chunk))
        .max(1)
        .max(len.div_ceil(chunk).div_ceil(MAX_PARTS)) as usize;
    let upload_id = with_retry(policy, &mut report.retries, || {
        store.create_multipart(key, fence)
    })
    .await?;
    let result = async {
        let mut parts = Vec::new();
        for (i, start) in (0..object.chunks.len()).step_by(per_part).enumerate() {
            let payload = object.payload(start..(start + per_part).min(object.chunks.len()));
            let number = i as u32 + 1;
            let part = with_retry(policy, &mut report.retries, || {
                store.upload_part(key, &upload_id, number, payload.clone())
            })
            .await?;
            parts.push(part);
        }
        report.parts = parts.len() as u32;
        with_retry(policy, &mut report.retries, || {
            store.complete_multipart(key, &upload_id, &parts, object.crc, len, fence)
        })
        .await
    }
    .await;
    if let Err(err) = result {
        // Leave no upload open: its parts would be billed and never used.
        let mut ignored = 0;
        if let Err(abort) = with_retry(policy, &mut ignored, || {
            store.abort_multipart(key, &upload_id)
        })
        .await
        {
            tracing::warn!(%abort, "could not abort multipart upload {upload_id} of {key}");
        }
        return Err(err);
    }
    Ok(report)
}

/// How a fenced write of one version ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// The version is in the store now (for a delete: the key is absent).
    Written(UploadReport),
    /// The store already holds version `stored`, not older than this one: nothing was
    /// written, and nothing needs to be.
    Preempted {
        /// The version the store holds.
        stored: u64,
    },
}

/// Writes that lose to another writer in a row before giving up (the next pass of the
/// pipeline tries again).
const MAX_CONFLICTS: u32 = 8;

/// Persists `version` of `key`: uploads `object`, or for a tombstone (`None`) deletes the
/// key, unless the store already holds this version or a newer one. Each write is
/// conditional on what was read just before it, so an older version never replaces a
/// newer one and a delete never removes a newer version, whichever node writes and
/// however late (a primary that was paused mid-upload, and the member that took its
/// place). A write that loses such a race reads again and decides again.
///
/// An object that goes in one PUT is first written on the guess that the key is new
/// (`If-None-Match: *`), the common case in pipelines: one request instead of a read and
/// a write. If the key exists, that write changes nothing, and the key is read as above.
/// A multipart upload reads first: a wrong guess would cost the whole upload.
pub async fn persist_version(
    store: &impl UnderStore,
    key: &str,
    object: Option<&ObjectBytes>,
    version: u64,
    part_bytes: u64,
    policy: &RetryPolicy,
) -> Result<Persisted, UnderStoreError> {
    let mut conflicts = 0;
    if let Some(object) = object
        && (object.len() <= part_bytes.max(MIN_PART_BYTES) || store.puts_any_size())
    {
        let fence = Fence {
            version: Some(version),
            etag: object.etag.clone(),
            headers: object.headers.clone(),
            expect: Some(Expect::Absent),
        };
        match upload(store, key, object, &fence, part_bytes, policy).await {
            Err(err) if err.kind == FailureKind::Conflict => conflicts += 1,
            other => return other.map(Persisted::Written),
        }
    }
    loop {
        let mut retries = 0;
        let current = with_retry(policy, &mut retries, || store.head(key)).await?;
        if let Some(stored) = current.as_ref().and_then(|c| c.version)
            && stored >= version
        {
            return Ok(Persisted::Preempted { stored });
        }
        let expect = Expect::replacing(current.as_ref());
        let written = match object {
            Some(object) => {
                let fence = Fence {
                    version: Some(version),
                    etag: object.etag.clone(),
                    headers: object.headers.clone(),
                    expect: Some(expect),
                };
                upload(store, key, object, &fence, part_bytes, policy).await
            }
            None if current.is_none() => Ok(UploadReport::default()),
            None => with_retry(policy, &mut retries, || store.delete(key, Some(&expect)))
                .await
                .map(|()| UploadReport::default()),
        };
        match written {
            Err(err) if err.kind == FailureKind::Conflict && conflicts + 1 < MAX_CONFLICTS => {
                tracing::debug!(%err, key, version, "another writer got there first; reading again");
                conflicts += 1;
            }
            other => {
                return other.map(|mut report| {
                    report.retries += retries;
                    Persisted::Written(report)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_jittered_and_capped() {
        let policy = RetryPolicy {
            attempts: 10,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        };
        for retry in 0..10 {
            let ceiling = Duration::from_millis((10u64 << retry).min(100));
            for _ in 0..50 {
                assert!(policy.backoff(retry) <= ceiling);
            }
        }
        // Jittered: fifty draws are not all the same.
        let draws: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(3)).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn part_payloads_combine_the_chunk_crcs() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let object = ObjectBytes::from_bytes(Bytes::from(data.clone()), 4096);
        assert_eq!(object.chunks.len(), 3);
        assert_eq!(object.payload(0..3).crc(), object.crc);
        assert_eq!(object.payload(1..3).crc(), crc32fast::hash(&data[4096..]));
    }
}
