//! The S3 operations on buckets and whole objects, each mapped onto the SDK.

use std::sync::Arc;

use bytes::Bytes;
use fdw_client::{ObjectStream, PutReceipt};
use fdw_net::WriteType;
use fdw_net::wire::{ByteRange, ObjectInfo, Replication};
use fdw_persist::crc32_header;
use futures_util::StreamExt;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::Shared;
use super::checked_body::{CheckedBody, Declared, Refusal, declared};
use super::frames::{frames, response_body};
use super::names::{committed_at, etag, s3_error};

/// Headers that override a bucket's write settings for one request.
pub const WRITE_TYPE_HEADER: &str = "x-fdw-write-type";
/// Replicas R of this write.
pub const REPLICAS_HEADER: &str = "x-fdw-replicas";
/// Quorum W of this write.
pub const QUORUM_HEADER: &str = "x-fdw-quorum";

/// Deletes of one DeleteObjects request in flight at once.
const DELETE_CONCURRENCY: usize = 16;

/// The s3s service: the gateway's shared state.
#[derive(Clone)]
pub(super) struct FdwS3 {
    pub(super) shared: Arc<Shared>,
}

impl FdwS3 {
    /// Refuses a bucket that does not exist here.
    pub(super) fn check_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.shared.bucket_exists(bucket) {
            Ok(())
        } else {
            Err(S3Error::with_message(
                S3ErrorCode::NoSuchBucket,
                format!("bucket {bucket} is not configured on this fdw cluster"),
            ))
        }
    }

    /// How a write to `bucket` is replicated: the bucket's settings, or the defaults,
    /// with the request's `x-fdw-*` headers over them.
    pub(super) fn replication(
        &self,
        bucket: &str,
        headers: &http::HeaderMap,
    ) -> S3Result<Replication> {
        let config = &self.shared.config;
        let base = config
            .buckets
            .get(bucket)
            .copied()
            .unwrap_or(config.default);
        let header = |name: &str| -> S3Result<Option<&str>> {
            headers
                .get(name)
                .map(|v| {
                    v.to_str().map_err(|_| {
                        S3Error::with_message(
                            S3ErrorCode::InvalidArgument,
                            format!("{name} is not text"),
                        )
                    })
                })
                .transpose()
        };
        let invalid = |name: &str, value: &str, why: String| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("{name}: {value:?}: {why}"),
            )
        };
        let write_type = header(WRITE_TYPE_HEADER)?
            .map(|v| {
                v.parse::<WriteType>()
                    .map_err(|e| invalid(WRITE_TYPE_HEADER, v, e.to_string()))
            })
            .transpose()?;
        let count = |name: &str| -> S3Result<Option<u8>> {
            header(name)?
                .map(|v| v.parse::<u8>().map_err(|e| invalid(name, v, e.to_string())))
                .transpose()
        };
        let (replicas, quorum) = (count(REPLICAS_HEADER)?, count(QUORUM_HEADER)?);
        base.overridden(write_type, replicas, quorum).map_err(|e| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("{REPLICAS_HEADER}/{QUORUM_HEADER}: {e}"),
            )
        })
    }

    /// Stores a request body under `bucket/key`, streamed frame by frame: memory use is
    /// one frame, whatever its size.
    pub(super) async fn store_body(
        &self,
        bucket: &str,
        key: &str,
        body: Option<StreamingBlob>,
        declared: Declared,
        replication: Replication,
    ) -> S3Result<PutReceipt> {
        let client = &self.shared.client;
        let refusal = Refusal::default();
        let len = declared.len;
        let body = body.unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()));
        let mut checked = CheckedBody::new(body, declared, refusal.clone());
        let stored = match len {
            // As S3: a body of unknown length is refused, so none is held whole.
            None => {
                return Err(s3_error!(
                    MissingContentLength,
                    "You must provide the Content-Length HTTP header."
                ));
            }
            // An empty object has no frames to carry its check: read it out first.
            Some(0) => {
                while let Some(chunk) = checked.next().await {
                    if chunk.is_err() {
                        break;
                    }
                }
                if let Some(refused) = refusal.take() {
                    return Err(refused);
                }
                client
                    .put_bytes(bucket, key, Bytes::new(), replication)
                    .await
            }
            Some(len) => {
                let reader = tokio_util::io::StreamReader::new(checked);
                client
                    .put_stream(bucket, key, len, reader, replication)
                    .await
            }
        };
        stored.map_err(|err| refusal.take().unwrap_or_else(|| s3_error(&err)))
    }

    /// Refuses keys under the gateway's own multipart staging prefix.
    pub(super) fn check_key(key: &str) -> S3Result<()> {
        if super::multipart::is_staging(key) {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!(
                    "keys under {:?} are reserved for multipart uploads in progress",
                    fdw_net::placement::STAGED_PREFIX
                ),
            ));
        }
        Ok(())
    }

    /// The object, or a range of it, as it arrives. One request either way: the replica
    /// resolves the range against the version it serves, and its answer says which
    /// bytes it sent of how many.
    async fn read(&self, bucket: &str, key: &str, range: Option<Range>) -> S3Result<ObjectStream> {
        let wanted = range.map(|range| match range {
            Range::Int { first, last } => match last {
                Some(last) => ByteRange::Span(first..last.saturating_add(1)),
                None => ByteRange::From(first),
            },
            Range::Suffix { length } => ByteRange::Last(length),
        });
        self.shared
            .client
            .read_stream(bucket, key, wanted)
            .await
            .map_err(|e| s3_error(&e))
    }
}

/// Server-side encryption fdw does not do: an `x-amz-server-side-encryption*` header
/// (SSE-S3, SSE-KMS, SSE-C, on the request or its copy source) is refused, never
/// accepted and ignored, which would store plain bytes the client believes encrypted
/// and serve SSE-C objects to readers without the key.
pub(super) fn refuse_encryption(headers: &http::HeaderMap) -> S3Result<()> {
    const SSE: [&str; 2] = [
        "x-amz-server-side-encryption",
        "x-amz-copy-source-server-side-encryption",
    ];
    match headers
        .keys()
        .find(|name| SSE.iter().any(|sse| name.as_str().starts_with(sse)))
    {
        Some(name) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!("fdw does not encrypt objects: {name} is not supported"),
        )),
        None => Ok(()),
    }
}

/// `If-Match` / `If-None-Match` against the object's ETag, as S3 evaluates them.
fn check_conditions(
    info: &ObjectInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    let tag = etag(info.version);
    if let Some(condition) = if_match {
        let holds = match condition {
            ETagCondition::Any => true,
            ETagCondition::ETag(expected) => tag.strong_cmp(expected),
        };
        if !holds {
            return Err(s3_error!(PreconditionFailed, "If-Match did not match"));
        }
    }
    if let Some(condition) = if_none_match {
        let matched = match condition {
            ETagCondition::Any => true,
            ETagCondition::ETag(expected) => tag.weak_cmp(expected),
        };
        if matched {
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    }
    Ok(())
}

fn wants_checksum(mode: Option<&ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
}

#[async_trait::async_trait]
impl S3 for FdwS3 {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        refuse_encryption(&req.headers)?;
        let replication = self.replication(&req.input.bucket, &req.headers)?;
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        Self::check_key(&input.key)?;
        let declared = declared!(input, &req.headers, req.trailing_headers);
        let receipt = self
            .store_body(&input.bucket, &input.key, input.body, declared, replication)
            .await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(receipt.version)),
            checksum_crc32: Some(crc32_header(receipt.crc)),
            checksum_type: Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            ..PutObjectOutput::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        refuse_encryption(&req.headers)?;
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        Self::check_key(&input.key)?;
        if input.part_number.is_some() {
            return Err(s3_error!(NotImplemented, "GetObject by partNumber"));
        }
        let whole = input.range.is_none();
        let stream = self.read(&input.bucket, &input.key, input.range).await?;
        let info = stream.info().clone();
        check_conditions(&info, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        // Not below 0 even for an empty answer, which no range asked for but a peer
        // could send.
        let last = (info.offset + info.len).saturating_sub(1);
        let output = GetObjectOutput {
            content_length: Some(info.len as i64),
            content_range: (!whole)
                .then(|| format!("bytes {}-{last}/{}", info.offset, info.object_len)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(info.version)),
            last_modified: Some(committed_at(info.version)),
            // The CRC is of the whole object: S3 sends it only for whole reads, and
            // only when asked.
            checksum_crc32: (whole && wants_checksum(input.checksum_mode.as_ref()))
                .then(|| crc32_header(info.crc)),
            checksum_type: (whole && wants_checksum(input.checksum_mode.as_ref()))
                .then(|| ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            content_type: Some("binary/octet-stream".into()),
            body: Some(response_body(stream)),
            ..GetObjectOutput::default()
        };
        Ok(S3Response::new(output))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        refuse_encryption(&req.headers)?;
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        Self::check_key(&input.key)?;
        let info = self
            .shared
            .client
            .head(&input.bucket, &input.key)
            .await
            .map_err(|e| s3_error(&e))?;
        check_conditions(&info, input.if_match.as_ref(), input.if_none_match.as_ref())?;
        let checksum = wants_checksum(input.checksum_mode.as_ref());
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(info.len as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(info.version)),
            last_modified: Some(committed_at(info.version)),
            checksum_crc32: checksum.then(|| crc32_header(info.crc)),
            checksum_type: checksum.then(|| ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            content_type: Some("binary/octet-stream".into()),
            ..HeadObjectOutput::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let replication = self.replication(&req.input.bucket, &req.headers)?;
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        Self::check_key(&input.key)?;
        self.shared
            .client
            .delete_with(&input.bucket, &input.key, replication)
            .await
            .map_err(|e| s3_error(&e))?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let replication = self.replication(&req.input.bucket, &req.headers)?;
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "DeleteObjects takes at most 1000 keys per request"
            ));
        }
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket.as_str();
        let results: Vec<(String, Result<(), S3Error>)> =
            futures_util::stream::iter(input.delete.objects)
                .map(|object| async move {
                    let done = match Self::check_key(&object.key) {
                        Ok(()) => self
                            .shared
                            .client
                            .delete_with(bucket, &object.key, replication)
                            .await
                            .map(|_| ())
                            .map_err(|e| s3_error(&e)),
                        Err(err) => Err(err),
                    };
                    (object.key, done)
                })
                .buffered(DELETE_CONCURRENCY)
                .collect()
                .await;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for (key, done) in results {
            match done {
                Ok(()) if !quiet => deleted.push(DeletedObject {
                    key: Some(key),
                    ..DeletedObject::default()
                }),
                Ok(()) => {}
                Err(err) => errors.push(Error {
                    code: Some(err.code().as_str().to_owned()),
                    message: err.message().map(str::to_owned),
                    key: Some(key),
                    ..Error::default()
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        refuse_encryption(&req.headers)?;
        let replication = self.replication(&req.input.bucket, &req.headers)?;
        let input = req.input;
        let CopySource::Bucket {
            bucket: from_bucket,
            key: from_key,
            version_id,
        } = &input.copy_source
        else {
            return Err(s3_error!(NotImplemented, "copying from an access point"));
        };
        if version_id.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "fdw keeps only the newest version of a key"
            ));
        }
        self.check_bucket(from_bucket)?;
        self.check_bucket(&input.bucket)?;
        Self::check_key(from_key)?;
        Self::check_key(&input.key)?;
        let stream = self.read(from_bucket, from_key, None).await?;
        let info = stream.info().clone();
        let source_tag = etag(info.version);
        if let Some(expected) = &input.copy_source_if_match
            && !matches!(expected, ETagCondition::Any)
            && !matches!(expected, ETagCondition::ETag(tag) if source_tag.strong_cmp(tag))
        {
            return Err(s3_error!(PreconditionFailed, "x-amz-copy-source-if-match"));
        }
        let receipt = self
            .shared
            .client
            .put_stream(
                &input.bucket,
                &input.key,
                info.len,
                tokio_util::io::StreamReader::new(frames(stream)),
                replication,
            )
            .await
            .map_err(|e| s3_error(&e))?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(receipt.version)),
                last_modified: Some(committed_at(receipt.version)),
                checksum_crc32: Some(crc32_header(receipt.crc)),
                checksum_type: Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
                ..CopyObjectResult::default()
            }),
            ..CopyObjectOutput::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.check_bucket(&req.input.bucket)?;
        super::listing::list_v2(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.check_bucket(&req.input.bucket)?;
        super::listing::list_v1(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .shared
            .known_buckets()
            .into_iter()
            .map(|(name, created)| Bucket {
                name: Some(name),
                creation_date: Some(Timestamp::from(created)),
                ..Bucket::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..ListBucketsOutput::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let name = req.input.bucket;
        fdw_net::BucketName::new(name.as_str())
            .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidBucketName, e.to_string()))?;
        // As S3 in us-east-1: creating a bucket you own again succeeds.
        self.shared
            .created()
            .entry(name)
            .or_insert_with(super::names::now);
        Ok(S3Response::new(CreateBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.check_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.check_bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        super::multipart::create(self, req)
            .await
            .map(S3Response::new)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        super::multipart::upload_part(self, req)
            .await
            .map(S3Response::new)
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        super::multipart::list_parts(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        super::multipart::complete(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        super::multipart::abort(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        super::multipart::list_uploads(self, req.input)
            .await
            .map(S3Response::new)
    }
}
