//! The S3 operations on buckets and whole objects, each mapped onto the SDK.

use std::sync::Arc;

use bytes::Bytes;
use fdw_client::{ObjectStream, PutOptions, PutReceipt};
use fdw_net::WriteType;
use fdw_net::wire::{ByteRange, ObjectInfo, Replication, WriteCondition};
use fdw_persist::crc32_header;
use futures_util::StreamExt;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::Shared;
use super::checked_body::{CheckedBody, Declared, Refusal, declared};
use super::checksums::{self, serve_checksums};
use super::frames::{frames, response_body};
use super::listing::check_version_id;
use super::metadata::{self, Served, serve_metadata};
use super::names::{committed_at, committed_at_second, digest_of, etag, s3_error};

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
        options: PutOptions,
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
                client.put_bytes(bucket, key, Bytes::new(), options).await
            }
            Some(len) => {
                let reader = tokio_util::io::StreamReader::new(checked);
                client.put_stream(bucket, key, len, reader, options).await
            }
        };
        stored.map_err(|err| refusal.take().unwrap_or_else(|| s3_error(&err)))
    }

    /// Refuses keys fdw cannot store, with the error S3 gives for each (a control
    /// character is a URI S3 "couldn't parse", in those words, which clients compare),
    /// and keys under the gateway's own multipart staging prefix.
    pub(super) fn check_key(key: &str) -> S3Result<()> {
        use fdw_net::NameError;
        match fdw_net::ObjectKey::new(key) {
            Ok(_) => {}
            Err(err @ NameError::KeyControlCharacter(..)) => {
                tracing::debug!(%err, "S3 gateway: key refused");
                return Err(s3_error!(InvalidURI, "Couldn't parse the specified URI."));
            }
            Err(err @ NameError::KeyTooLong { .. }) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::KeyTooLongError,
                    err.to_string(),
                ));
            }
            Err(err) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    err.to_string(),
                ));
            }
        }
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

    /// What HEAD finds under `bucket/key`; a missing key's error says, as S3 says for
    /// an unversioned bucket, that no delete marker is there.
    async fn head_or_marker(&self, bucket: &str, key: &str) -> S3Result<ObjectInfo> {
        match self.shared.client.head(bucket, key).await {
            Ok(info) => Ok(info),
            Err(err) => {
                let mut refused = self.read_error(bucket, &err).await;
                if refused.code() == &S3ErrorCode::NoSuchKey {
                    let mut headers = http::HeaderMap::new();
                    let no = http::HeaderValue::from_static("false");
                    headers.insert("x-amz-delete-marker", no);
                    refused.set_headers(headers);
                }
                Err(refused)
            }
        }
    }

    /// The object under `bucket/key`, the bytes of its part `number`, and its number of
    /// parts ([`parts::part_range`]).
    async fn part_of(
        &self,
        bucket: &str,
        key: &str,
        number: i32,
    ) -> S3Result<(ObjectInfo, std::ops::Range<u64>, usize)> {
        let info = self.head_or_marker(bucket, key).await?;
        let (bytes, count) =
            super::parts::part_range(&info.metadata, info.digest, info.len, number)?;
        Ok((info, bytes, count))
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
        match self.shared.client.read_stream(bucket, key, wanted).await {
            Ok(stream) => Ok(stream),
            Err(err) => Err(self.read_error(bucket, &err).await),
        }
    }
}

impl FdwS3 {
    /// A copy's source (CopyObject, UploadPartCopy), whole or bytes `range` of it, once
    /// its conditions held: one that fails is 412, never 304, for a copy.
    pub(super) async fn read_copy_source(
        &self,
        source: &CopySource,
        range: Option<std::ops::RangeInclusive<u64>>,
        conditions: &Conditions<'_>,
    ) -> S3Result<ObjectStream> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(s3_error!(NotImplemented, "copying from an access point"));
        };
        version_id.as_deref().map_or(Ok(()), check_version_id)?;
        Self::check_key(key)?;
        let wanted = range.as_ref().map(|r| Range::Int {
            first: *r.start(),
            last: Some(*r.end()),
        });
        let stream = self.read(bucket, key, wanted).await?;
        let info = stream.info();
        // A read cuts a range at the object's end; a copy's range must lie within it.
        if let Some(range) = range
            && *range.end() >= info.object_len
        {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRange,
                format!(
                    "bytes {}-{} are not within {bucket}/{key}, of {} bytes",
                    range.start(),
                    range.end(),
                    info.object_len
                ),
            ));
        }
        conditions.check(info).map_err(|err| match err.code() {
            S3ErrorCode::NotModified => {
                s3_error!(PreconditionFailed, "a copy-source condition did not hold")
            }
            _ => err,
        })?;
        Ok(stream)
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

/// A read's preconditions: `If-Match` and `If-None-Match` against the ETag,
/// `If-Unmodified-Since` and `If-Modified-Since` against the commit time.
pub(super) struct Conditions<'a> {
    pub(super) if_match: Option<&'a ETagCondition>,
    pub(super) if_none_match: Option<&'a ETagCondition>,
    pub(super) if_unmodified_since: Option<&'a Timestamp>,
    pub(super) if_modified_since: Option<&'a Timestamp>,
}

impl Conditions<'_> {
    /// As S3 (RFC 7232) evaluates them: a date is looked at only when its ETag
    /// counterpart is absent. `304 Not Modified` carries the ETag it matched.
    fn check(&self, info: &ObjectInfo) -> S3Result<()> {
        let tag = etag(info.digest);
        // HTTP dates have whole seconds.
        let modified = committed_at_second(info.version);
        let precondition_failed = match self.if_match {
            Some(ETagCondition::Any) => false,
            Some(ETagCondition::ETag(expected)) => !tag.strong_cmp(expected),
            None => self.if_unmodified_since.is_some_and(|at| modified > *at),
        };
        if precondition_failed {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
        let not_modified = match self.if_none_match {
            Some(ETagCondition::Any) => true,
            Some(ETagCondition::ETag(expected)) => tag.weak_cmp(expected),
            None => self.if_modified_since.is_some_and(|at| modified <= *at),
        };
        if not_modified {
            let mut err = S3Error::with_message(S3ErrorCode::NotModified, "Not Modified");
            let mut headers = http::HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_str(&format!("\"{}\"", tag.value())) {
                headers.insert(http::header::ETAG, value);
            }
            err.set_headers(headers);
            return Err(err);
        }
        Ok(())
    }
}

/// A write's `If-Match` / `If-None-Match` as the condition the key's primary checks
/// atomically with the write. An `If-Match` ETag that is no digest can match nothing:
/// answered here, as S3 would (`NoSuchKey` for a missing key, else 412).
pub(super) async fn write_condition(
    s3: &FdwS3,
    bucket: &str,
    key: &str,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Option<WriteCondition>> {
    Ok(match (if_match, if_none_match) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(s3_error!(
                NotImplemented,
                "If-Match and If-None-Match on one write"
            ));
        }
        (Some(ETagCondition::Any), None) => Some(WriteCondition::Present),
        (None, Some(ETagCondition::Any)) => Some(WriteCondition::Absent),
        (Some(ETagCondition::ETag(tag)), None) => match digest_of(tag) {
            Some(digest) => Some(WriteCondition::Matches(digest)),
            None => {
                return Err(match s3.shared.client.head(bucket, key).await {
                    Ok(_) => s3_error!(PreconditionFailed, "If-Match names no ETag of the key"),
                    Err(err) => s3_error(&err),
                });
            }
        },
        // An ETag that is no digest is never the key's.
        (None, Some(ETagCondition::ETag(tag))) => digest_of(tag).map(WriteCondition::NotMatches),
    })
}

/// `x-amz-mp-parts-count`, which S3 sends for objects of multipart uploads only.
fn parts_count(digest: fdw_net::wire::Digest, count: usize) -> Option<i32> {
    (digest.parts() > 0).then_some(count as i32)
}

/// The checksums a read answers, asked for by checksum mode: the whole object's for a
/// whole read, a part's for a read by part number (if kept), none for a range (S3 has
/// none of a range).
fn read_checksums(
    info: &ObjectInfo,
    mode: Option<&ChecksumMode>,
    ranged: bool,
    part: Option<i32>,
) -> Option<s3s::dto::Checksum> {
    let asked = mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    if !asked || ranged {
        return None;
    }
    match part {
        None => Some(checksums::of_object(&info.metadata, info.crc)),
        Some(number) => super::parts::part_checksum(info, number),
    }
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
        self.check_bucket(&input.bucket).await?;
        Self::check_key(&input.key)?;
        let declared = declared!(input, &req.headers, req.trailing_headers);
        let sent = declared.checksums.clone();
        let condition = write_condition(
            self,
            &input.bucket,
            &input.key,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )
        .await?;
        let headers = metadata::from_headers(&req.headers)?;
        let options = PutOptions {
            replication,
            metadata: checksums::with_records(headers, checksums::records(&sent)),
            condition,
            digest: None,
        };
        let receipt = self
            .store_body(&input.bucket, &input.key, input.body, declared, options)
            .await?;
        let mut output = PutObjectOutput {
            e_tag: receipt.digest.map(etag),
            ..PutObjectOutput::default()
        };
        // Every checksum sent (each checked), and fdw's CRC32.
        let answered = s3s::dto::Checksum {
            checksum_crc32: Some(crc32_header(receipt.crc)),
            checksum_type: Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
            ..sent
        };
        serve_checksums!(output, answered);
        Ok(S3Response::new(output))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        refuse_encryption(&req.headers)?;
        let input = req.input;
        Self::check_key(&input.key)?;
        input
            .version_id
            .as_deref()
            .map_or(Ok(()), check_version_id)?;
        let ranged = input.range.is_some();
        let (mut range, mut part) = (input.range, None);
        if let Some(number) = input.part_number {
            if range.is_some() {
                return Err(s3_error!(
                    InvalidRequest,
                    "Cannot specify both Range header and partNumber query parameter"
                ));
            }
            let (found, bytes, count) = self.part_of(&input.bucket, &input.key, number).await?;
            let Some(last) = bytes.end.checked_sub(1).filter(|last| *last >= bytes.start) else {
                return Err(s3_error!(InvalidRange, "part {number} is empty"));
            };
            range = Some(Range::Int {
                first: bytes.start,
                last: Some(last),
            });
            part = Some((found.digest, count));
        }
        let whole = range.is_none();
        let stream = self.read(&input.bucket, &input.key, range).await?;
        let info = stream.info().clone();
        if let Some((digest, _)) = part
            && digest != info.digest
        {
            return Err(s3_error!(
                SlowDown,
                "the object changed while its part was looked up; try again"
            ));
        }
        Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
        }
        .check(&info)?;
        // Not below 0 even for an empty answer, which no range asked for but a peer
        // could send.
        let last = (info.offset + info.len).saturating_sub(1);
        let mut output = GetObjectOutput {
            content_length: Some(info.len as i64),
            content_range: (!whole)
                .then(|| format!("bytes {}-{last}/{}", info.offset, info.object_len)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(info.digest)),
            last_modified: Some(committed_at(info.version)),
            body: Some(response_body(stream)),
            parts_count: part.and_then(|(digest, count)| parts_count(digest, count)),
            ..GetObjectOutput::default()
        };
        if let Some(checksums) = read_checksums(
            &info,
            input.checksum_mode.as_ref(),
            ranged,
            input.part_number,
        ) {
            serve_checksums!(output, checksums);
        }
        serve_metadata!(output, Served::new(&info.metadata));
        // A GET may ask for other headers than those stored (`response-*`).
        let overridden = [
            (&mut output.content_type, input.response_content_type),
            (&mut output.cache_control, input.response_cache_control),
            (
                &mut output.content_disposition,
                input.response_content_disposition,
            ),
            (
                &mut output.content_encoding,
                input.response_content_encoding,
            ),
            (
                &mut output.content_language,
                input.response_content_language,
            ),
        ];
        for (field, asked) in overridden {
            if asked.is_some() {
                *field = asked;
            }
        }
        if input.response_expires.is_some() {
            output.expires = input.response_expires;
        }
        Ok(S3Response::new(output))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        refuse_encryption(&req.headers)?;
        let input = req.input;
        Self::check_key(&input.key)?;
        input
            .version_id
            .as_deref()
            .map_or(Ok(()), check_version_id)?;
        let (info, part) = match input.part_number {
            Some(number) => {
                let (info, bytes, count) = self.part_of(&input.bucket, &input.key, number).await?;
                (info, Some((bytes.end - bytes.start, count)))
            }
            None => (self.head_or_marker(&input.bucket, &input.key).await?, None),
        };
        Conditions {
            if_match: input.if_match.as_ref(),
            if_none_match: input.if_none_match.as_ref(),
            if_unmodified_since: input.if_unmodified_since.as_ref(),
            if_modified_since: input.if_modified_since.as_ref(),
        }
        .check(&info)?;
        let mut output = HeadObjectOutput {
            content_length: Some(part.map_or(info.len, |(len, _)| len) as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(info.digest)),
            last_modified: Some(committed_at(info.version)),
            parts_count: part.and_then(|(_, count)| parts_count(info.digest, count)),
            ..HeadObjectOutput::default()
        };
        if let Some(checksums) = read_checksums(
            &info,
            input.checksum_mode.as_ref(),
            false,
            input.part_number,
        ) {
            serve_checksums!(output, checksums);
        }
        serve_metadata!(output, Served::new(&info.metadata));
        Ok(S3Response::new(output))
    }

    /// GetObjectAttributes: what HEAD knows, and a composed object's parts.
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        refuse_encryption(&req.headers)?;
        let input = req.input;
        Self::check_key(&input.key)?;
        input
            .version_id
            .as_deref()
            .map_or(Ok(()), check_version_id)?;
        let info = self.head_or_marker(&input.bucket, &input.key).await?;
        let wants = |name: &str| input.object_attributes.iter().any(|a| a.as_str() == name);
        Ok(S3Response::new(GetObjectAttributesOutput {
            last_modified: Some(committed_at(info.version)),
            e_tag: wants(ObjectAttributes::ETAG).then(|| etag(info.digest)),
            object_size: wants(ObjectAttributes::OBJECT_SIZE).then_some(info.len as i64),
            storage_class: wants(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            checksum: wants(ObjectAttributes::CHECKSUM)
                .then(|| checksums::of_object(&info.metadata, info.crc)),
            object_parts: match wants(ObjectAttributes::OBJECT_PARTS) && info.digest.parts() > 0 {
                true => Some(super::parts::listed(
                    &info,
                    input.max_parts,
                    input.part_number_marker,
                )?),
                false => None,
            },
            ..GetObjectAttributesOutput::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let replication = self.replication(&req.input.bucket, &req.headers)?;
        let input = req.input;
        self.check_bucket(&input.bucket).await?;
        Self::check_key(&input.key)?;
        input
            .version_id
            .as_deref()
            .map_or(Ok(()), check_version_id)?;
        if input.if_match.is_some()
            || input.if_match_last_modified_time.is_some()
            || input.if_match_size.is_some()
        {
            // Refused rather than ignored: a delete that should not have happened
            // cannot be undone.
            return Err(s3_error!(NotImplemented, "conditional DeleteObject"));
        }
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
        self.check_bucket(&input.bucket).await?;
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
                    let named = Self::check_key(&object.key).and_then(|()| {
                        object
                            .version_id
                            .as_deref()
                            .map_or(Ok(()), check_version_id)
                    });
                    let done = match named {
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
            ..
        } = &input.copy_source
        else {
            return Err(s3_error!(NotImplemented, "copying from an access point"));
        };
        self.check_bucket(&input.bucket).await?;
        Self::check_key(&input.key)?;
        // As S3: the source's headers, unless the request replaces them.
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && **from_bucket == *input.bucket && **from_key == *input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to \
                 itself without changing the object's metadata."
            ));
        }
        let source_conditions = Conditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
        };
        let stream = self
            .read_copy_source(&input.copy_source, None, &source_conditions)
            .await?;
        let info = stream.info().clone();
        let metadata = if replace {
            metadata::from_headers(&req.headers)?
        } else {
            info.metadata.clone()
        };
        let receipt = self
            .shared
            .client
            .put_stream(
                &input.bucket,
                &input.key,
                info.len,
                tokio_util::io::StreamReader::new(frames(stream)),
                PutOptions {
                    replication,
                    metadata,
                    condition: None,
                    // The same bytes: the source's ETag, without hashing them again.
                    digest: Some(info.digest),
                },
            )
            .await
            .map_err(|e| s3_error(&e))?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: receipt.digest.map(etag),
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
        self.check_bucket(&req.input.bucket).await?;
        super::listing::list_v2(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        // The bucket's owner, which V1 shows, is looked up first: that is the check.
        super::listing::list_v1(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let owner = super::buckets::requester(&req);
        let input = req.input;
        let (buckets, continuation_token) = super::buckets::list(
            self,
            &owner,
            input.prefix.as_deref(),
            input.continuation_token.as_deref(),
            input.max_buckets,
        )
        .await?;
        Ok(S3Response::new(ListBucketsOutput {
            owner: Some(Owner {
                display_name: Some(owner.clone()),
                id: Some(owner),
            }),
            buckets: Some(buckets),
            continuation_token,
            prefix: input.prefix,
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        super::buckets::create(self, req).await.map(S3Response::new)
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        super::buckets::delete(self, req.input).await?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        // As for V1: the owner's lookup checks the bucket.
        super::listing::list_versions(self, req.input)
            .await
            .map(S3Response::new)
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.check_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let record = self.bucket_record(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: record.location.map(BucketLocationConstraint::from),
        }))
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

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        super::multipart::upload_part_copy(self, req)
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
