//! Multipart uploads, their parts held in the cluster's memory until completed.
//!
//! Each part is an fdw object of its own under a reserved key,
//! `.fdw-multipart/<upload id>/<part number>`, written `MUST_CACHE` with the upload's
//! replicas and quorum: acknowledged once a quorum holds it, like any write, so any
//! node's gateway can take the next part or the completion, and a gateway that dies
//! loses no part. The upload itself is a small record at `.fdw-multipart/<upload id>`:
//! the target key and how to write it.
//!
//! Upload ids carry the target key's placement hash, so the parts are placed with the
//! object they will become (`fdw_net::placement`'s staged keys). Completion asks the
//! cluster to compose the object from them: each replica concatenates its own copies,
//! and no part crosses the network again. Where a replica lacks a part (it was down when
//! the part was written, and another member took it), completion streams the parts
//! through the gateway instead, in order and frame by frame. Either way the parts are
//! deleted after.
//! Listings never show the reserved keys, and clients cannot write them;
//! ListMultipartUploads shows the uploads in progress.
//!
//! An upload neither completed nor aborted within the gateway's `multipart_expiry` is
//! removed by [`sweep`], as an S3 lifecycle rule would: its parts pin memory that is never
//! evicted. Upload ids start with their creation time, so the oldest list first and a
//! sweep stops at the first upload still young.

use std::hash::BuildHasher;

use fdw_client::{ErrorKind, PutOptions};
use fdw_net::WriteType;
use fdw_net::placement::{STAGED_PREFIX, staged_name};
use fdw_net::wire::{Digest, NumberedParts, Replication, WriteCondition};
use fdw_persist::crc32_header;
use futures_util::{StreamExt, TryStreamExt};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result, s3_error};

use super::checked_body::declared;
use super::checksums::{self, checksums_of, serve_checksums};
use super::frames::frames;
use super::listing::{Encoding, common_prefixes, fold, page_size};
use super::names::{committed_at, etag, s3_error};
use super::objects::FdwS3;

/// Part numbers S3 allows.
const PART_NUMBERS: std::ops::RangeInclusive<i32> = 1..=10_000;
/// Every part but the last must be at least this big, as in S3.
const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

pub(super) fn is_staging(key: &str) -> bool {
    key.starts_with(STAGED_PREFIX)
}

fn record_key(upload_id: &str) -> String {
    format!("{STAGED_PREFIX}{upload_id}")
}

/// Where an upload's parts are: `parts_prefix(id)` and the part number.
fn parts_prefix(upload_id: &str) -> String {
    format!("{STAGED_PREFIX}{upload_id}/")
}

fn part_key(upload_id: &str, part: i32) -> String {
    // Zero-padded, so parts list in number order. Part numbers are checked to be 1 to
    // 10000 before any key is made.
    NumberedParts::key(&parts_prefix(upload_id), part as u16)
}

/// An upload in progress: what it completes into.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Upload {
    key: String,
    write_type: String,
    replicas: u8,
    quorum: u8,
    /// The headers the completed object is served with, from CreateMultipartUpload.
    #[serde(default)]
    metadata: Vec<(String, String)>,
    /// How the parts' checksums combine into the object's, if the upload was started
    /// with an algorithm other than CRC32.
    #[serde(default)]
    checksum: Option<checksums::UploadChecksum>,
}

impl Upload {
    fn replication(&self) -> S3Result<Replication> {
        let write_type: WriteType = self
            .write_type
            .parse()
            .map_err(|_| s3_error!(InternalError, "upload record names an unknown write type"))?;
        Replication::new(write_type, self.replicas, self.quorum)
            .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))
    }

    /// How the completed object is written: its replication and headers, and the records
    /// of its parts' sizes and composite checksum (left out if the headers leave no room
    /// for them: the object then cannot be read by part number, and says so, and has no
    /// checksum to return but its CRC32).
    fn options(
        &self,
        condition: Option<WriteCondition>,
        records: Vec<(String, String)>,
    ) -> S3Result<PutOptions> {
        let headers = fdw_net::wire::Metadata::new(self.metadata.clone())
            .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
        let metadata = checksums::with_records(headers, records);
        Ok(PutOptions {
            condition,
            replication: self.replication()?,
            metadata,
            digest: None,
        })
    }

    /// How its parts are held.
    fn staging(&self) -> S3Result<Replication> {
        Ok(staging(self.replication()?))
    }
}

/// How the parts of an upload into `target` are held: in memory only, as many copies as
/// the object will have.
fn staging(target: Replication) -> Replication {
    Replication {
        write_type: WriteType::MustCache,
        ..target
    }
}

/// Microseconds since the epoch.
fn micros(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// A fresh upload id for `key`: the time (fixed-width hex, so ids sort by age), the
/// key's placement hash (so the parts are placed with it), and a random part so that
/// uploads never collide.
fn new_upload_id(bucket: &str, key: &str) -> S3Result<String> {
    let bucket = fdw_net::BucketName::new(bucket)
        .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidBucketName, e.to_string()))?;
    let key = fdw_net::ObjectKey::new(key)
        .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string()))?;
    let now = micros(super::names::now());
    let random = std::hash::RandomState::new().hash_one(now);
    let staged = staged_name(now, &bucket, &key);
    Ok(format!("{}{random:016x}", &staged[STAGED_PREFIX.len()..]))
}

/// When the upload with this id was created, in microseconds since the epoch.
fn created_micros(upload_id: &str) -> Option<u64> {
    u64::from_str_radix(upload_id.get(..16)?, 16).ok()
}

/// The upload's record, or `NoSuchUpload` if it is not in progress for `key`.
async fn find(s3: &FdwS3, bucket: &str, key: &str, upload_id: &str) -> S3Result<Upload> {
    let no_such = || {
        S3Error::with_message(
            S3ErrorCode::NoSuchUpload,
            format!("upload {upload_id} of {bucket}/{key} is not in progress"),
        )
    };
    if upload_id.is_empty() || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(no_such());
    }
    let record = match s3.shared.client.get(bucket, &record_key(upload_id)).await {
        Ok(record) => record,
        Err(err) if err.kind() == fdw_client::ErrorKind::NotFound => return Err(no_such()),
        Err(err) => return Err(s3_error(&err)),
    };
    let upload: Upload = serde_json::from_slice(&record)
        .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
    if upload.key != key {
        return Err(no_such());
    }
    Ok(upload)
}

pub(super) async fn create(
    s3: &FdwS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<CreateMultipartUploadOutput> {
    super::objects::refuse_encryption(&req.headers)?;
    let replication = s3.replication(&req.input.bucket, &req.headers)?;
    let metadata = super::metadata::from_headers(&req.headers)?;
    let input = req.input;
    s3.check_bucket(&input.bucket).await?;
    FdwS3::check_key(&input.key)?;
    let upload_id = new_upload_id(&input.bucket, &input.key)?;
    let upload = Upload {
        key: input.key.clone(),
        write_type: replication.write_type.as_str().to_owned(),
        replicas: replication.replicas,
        quorum: replication.quorum,
        metadata: metadata
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect(),
        checksum: checksums::UploadChecksum::asked(
            input.checksum_algorithm.as_ref(),
            input.checksum_type.as_ref(),
        )?,
    };
    let record = serde_json::to_vec(&upload)
        .map_err(|e| S3Error::with_message(S3ErrorCode::InternalError, e.to_string()))?;
    s3.shared.note_uploads_in(&input.bucket);
    s3.shared
        .client
        .put_with(
            &input.bucket,
            &record_key(&upload_id),
            &record,
            upload.staging()?,
        )
        .await
        .map_err(|e| s3_error(&e))?;
    Ok(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_type: upload
            .checksum
            .as_ref()
            .map(checksums::UploadChecksum::kind),
        checksum_algorithm: input.checksum_algorithm,
        ..CreateMultipartUploadOutput::default()
    })
}

pub(super) async fn upload_part(
    s3: &FdwS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<UploadPartOutput> {
    super::objects::refuse_encryption(&req.headers)?;
    let input = req.input;
    check_part_number(input.part_number)?;
    s3.check_bucket(&input.bucket).await?;
    let upload = find(s3, &input.bucket, &input.key, &input.upload_id).await?;
    s3.shared.note_uploads_in(&input.bucket);
    let declared = declared!(input, &req.headers, req.trailing_headers);
    let sent = declared.checksums.clone();
    let key = part_key(&input.upload_id, input.part_number);
    let options = PutOptions {
        metadata: checksums::with_records(
            fdw_net::wire::Metadata::empty(),
            checksums::records(&sent),
        ),
        ..upload.staging()?.into()
    };
    let receipt = s3
        .store_body(&input.bucket, &key, input.body, declared, options)
        .await?;
    Ok(UploadPartOutput {
        e_tag: receipt.digest.map(etag),
        checksum_crc32: Some(crc32_header(receipt.crc)),
        checksum_sha256: sent.checksum_sha256,
        checksum_sha1: sent.checksum_sha1,
        checksum_crc32c: sent.checksum_crc32c,
        checksum_crc64nvme: sent.checksum_crc64nvme,
        ..UploadPartOutput::default()
    })
}

fn check_part_number(part: i32) -> S3Result<()> {
    if !PART_NUMBERS.contains(&part) {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("part number {part} is outside 1 to 10000"),
        ));
    }
    Ok(())
}

/// UploadPartCopy: a part made of another object's bytes, or a range of them, read
/// from the cluster and written as the part frame by frame (memory use is a few frames).
/// Its ETag is the MD5 of the bytes copied, hashed as they pass.
pub(super) async fn upload_part_copy(
    s3: &FdwS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<UploadPartCopyOutput> {
    super::objects::refuse_encryption(&req.headers)?;
    let input = req.input;
    check_part_number(input.part_number)?;
    let range = input
        .copy_source_range
        .as_deref()
        .map(copy_source_range)
        .transpose()?;
    s3.check_bucket(&input.bucket).await?;
    let upload = find(s3, &input.bucket, &input.key, &input.upload_id).await?;
    s3.shared.note_uploads_in(&input.bucket);
    let conditions = super::objects::Conditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
    };
    let stream = s3
        .read_copy_source(&input.copy_source, range, &conditions)
        .await?;
    let len = stream.info().len;
    let receipt = s3
        .shared
        .client
        .put_stream(
            &input.bucket,
            &part_key(&input.upload_id, input.part_number),
            len,
            tokio_util::io::StreamReader::new(frames(stream)),
            PutOptions::from(upload.staging()?),
        )
        .await
        .map_err(|e| s3_error(&e))?;
    Ok(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: receipt.digest.map(etag),
            last_modified: Some(committed_at(receipt.version)),
            checksum_crc32: Some(crc32_header(receipt.crc)),
            ..CopyPartResult::default()
        }),
        ..UploadPartCopyOutput::default()
    })
}

/// `x-amz-copy-source-range`: as S3, only `bytes=FIRST-LAST`, both given, in order.
fn copy_source_range(text: &str) -> S3Result<std::ops::RangeInclusive<u64>> {
    let parsed = text
        .strip_prefix("bytes=")
        .and_then(|span| span.split_once('-'))
        .and_then(|(first, last)| {
            let number = |n: &str| {
                (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse::<u64>().ok())
                    .flatten()
            };
            Some((number(first)?, number(last)?))
        });
    match parsed {
        Some((first, last)) if first <= last => Ok(first..=last),
        _ => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("x-amz-copy-source-range {text:?} is not bytes=FIRST-LAST"),
        )),
    }
}

pub(super) async fn list_parts(s3: &FdwS3, input: ListPartsInput) -> S3Result<ListPartsOutput> {
    s3.check_bucket(&input.bucket).await?;
    find(s3, &input.bucket, &input.key, &input.upload_id).await?;
    let max_parts = page_size(input.max_parts, "max-parts")?;
    let marker = match input.part_number_marker {
        Some(n) if n < 0 => {
            let message = "part-number-marker must not be negative";
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, message));
        }
        marker => marker.unwrap_or(0),
    };
    let prefix = parts_prefix(&input.upload_id);
    let after = (marker > 0).then(|| part_key(&input.upload_id, marker));
    // max-parts=0 still looks at one part: whether there is a page to come.
    let page = s3
        .shared
        .client
        .list(
            &input.bucket,
            &prefix,
            after.as_deref(),
            max_parts.max(1) as u32,
        )
        .await
        .map_err(|e| s3_error(&e))?;
    let parts: Vec<Part> = page
        .entries
        .iter()
        .take(max_parts)
        .filter_map(|entry| {
            let number = entry
                .key
                .as_str()
                .strip_prefix(&prefix)?
                .parse::<i32>()
                .ok()?;
            Some(Part {
                part_number: Some(number),
                size: Some(entry.len as i64),
                e_tag: Some(etag(entry.digest)),
                last_modified: Some(committed_at(entry.version)),
                ..Part::default()
            })
        })
        .collect();
    let next = (page.entries.len() > max_parts || page.next_start_after.is_some())
        .then(|| parts.last().and_then(|p| p.part_number).unwrap_or(marker));
    Ok(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(max_parts as i32),
        part_number_marker: input.part_number_marker,
        is_truncated: Some(next.is_some()),
        next_part_number_marker: next,
        parts: Some(parts),
        ..ListPartsOutput::default()
    })
}

pub(super) async fn complete(
    s3: &FdwS3,
    input: CompleteMultipartUploadInput,
) -> S3Result<CompleteMultipartUploadOutput> {
    s3.check_bucket(&input.bucket).await?;
    let (bucket, key, upload_id) = (&input.bucket, &input.key, &input.upload_id);
    let upload = match find(s3, bucket, key, upload_id).await {
        Ok(upload) => upload,
        Err(err) => return completed_before(s3, &input).await.ok_or(err),
    };
    let condition = super::objects::write_condition(
        s3,
        bucket,
        key,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
    )
    .await?;
    let named = input
        .multipart_upload
        .and_then(|m| m.parts)
        .filter(|parts| !parts.is_empty())
        .ok_or_else(|| s3_error!(MalformedXML, "the upload names no parts"))?;
    // Check every part named before writing anything: its order, that it is the part
    // that was uploaded (ETag and checksum) and, for all but the last, its size.
    let client = &s3.shared.client;
    let mut parts = Vec::with_capacity(named.len());
    let mut part_checksums = Vec::new();
    let mut previous = 0;
    for (index, asked) in named.iter().enumerate() {
        let number = asked.part_number.unwrap_or(0);
        if number <= previous {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order"
            ));
        }
        previous = number;
        let invalid = |why: &str| {
            S3Error::with_message(
                S3ErrorCode::InvalidPart,
                format!("part {number} of upload {upload_id}: {why}"),
            )
        };
        let info = match client.head(bucket, &part_key(upload_id, number)).await {
            Ok(info) => info,
            Err(err) if err.kind() == fdw_client::ErrorKind::NotFound => {
                return Err(invalid("it was never uploaded"));
            }
            Err(err) => return Err(s3_error(&err)),
        };
        if let Some(tag) = &asked.e_tag
            && !etag(info.digest).strong_cmp(tag)
        {
            return Err(invalid("its ETag is not the uploaded part's"));
        }
        if let Some(crc) = &asked.checksum_crc32
            && *crc != crc32_header(info.crc)
        {
            return Err(invalid("its CRC32 is not the uploaded part's"));
        }
        if let Some(combined) = &upload.checksum {
            let checksum = part_checksum(&combined.algorithm, asked, &info, number)?;
            part_checksums.push((checksum, info.len));
        }
        if index + 1 < named.len() && info.len < MIN_PART_BYTES {
            return Err(S3Error::with_message(
                S3ErrorCode::EntityTooSmall,
                format!(
                    "part {number} is {} bytes; every part but the last must be at least {MIN_PART_BYTES}",
                    info.len
                ),
            ));
        }
        parts.push((number, info));
    }
    let checksum = match &upload.checksum {
        Some(combined) => {
            let sent = checksums_of!(input);
            Some(combined_checksum(combined, &part_checksums, &sent)?)
        }
        None => None,
    };
    // What the object keeps of its parts: their sizes and checksums (the upload's
    // algorithm's, else fdw's CRC32s), and the checksum they combine into.
    let part_values: Vec<String> = match &upload.checksum {
        Some(_) => part_checksums
            .iter()
            .map(|(value, _)| value.clone())
            .collect(),
        None => parts
            .iter()
            .map(|(_, info)| crc32_header(info.crc))
            .collect(),
    };
    let algorithm = upload
        .checksum
        .as_ref()
        .map_or("CRC32", |c| c.algorithm.as_str());
    let mut records = super::parts::records(&parts, algorithm, part_values);
    records.extend(checksum.clone());
    let completion = Completion {
        s3,
        bucket,
        key,
        upload_id,
        parts,
        options: upload.options(condition, records)?,
    };
    let receipt = match completion.in_place().await {
        Ok(receipt) => receipt,
        // The key's state refused it: so would a copy. The upload stays, to retry.
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::PreconditionFailed | ErrorKind::Conflict | ErrorKind::NotFound
            ) && condition.is_some() =>
        {
            return Err(s3_error(&err));
        }
        Err(err) => {
            tracing::info!(%bucket, %key, %upload_id, %err, "parts not composed in place; streaming them instead");
            completion.streamed().await?
        }
    };
    remove(s3, bucket, upload_id, upload.staging()?).await;
    // The checksum the object keeps: its combined one, unless the headers left no room.
    let answered = checksums::of_object(&completion.options.metadata, receipt.crc);
    Ok(completed(bucket, key, receipt.digest, answered))
}

/// The `algorithm` checksum of a part named in a completion: the one it was uploaded
/// with, which the completion must name too.
fn part_checksum(
    algorithm: &str,
    asked: &CompletedPart,
    info: &fdw_net::wire::ObjectInfo,
    number: i32,
) -> S3Result<String> {
    let bad = |why: String| S3Error::with_message(S3ErrorCode::BadDigest, why);
    let kept = checksums::record_of(algorithm)
        .and_then(|record| info.metadata.get(record))
        .map(str::to_owned)
        .ok_or_else(|| {
            bad(format!(
                "part {number} was uploaded without a {algorithm} checksum"
            ))
        })?;
    match checksums::value_of(&checksums_of!(asked), algorithm) {
        None => Err(bad(format!(
            "the completion names no {algorithm} checksum for part {number}"
        ))),
        Some(named) if named != kept => Err(S3Error::with_message(
            S3ErrorCode::InvalidPart,
            format!("part {number}: its {algorithm} checksum is not the uploaded part's"),
        )),
        Some(_) => Ok(kept),
    }
}

/// The object's checksum combined from its parts', as its record, checked against the
/// one the completion sent, if any.
fn combined_checksum(
    combined: &checksums::UploadChecksum,
    parts: &[(String, u64)],
    sent: &Checksum,
) -> S3Result<(String, String)> {
    let algorithm = &combined.algorithm;
    let whole = combined.combine(parts)?;
    if let Some(sent) = checksums::value_of(sent, algorithm)
        && sent != whole
    {
        return Err(S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!("the {algorithm} checksum you specified ({sent}) is not the parts' ({whole})"),
        ));
    }
    let record = checksums::record_of(algorithm)
        .unwrap_or_default()
        .to_owned();
    Ok((record, whole))
}

/// A CompleteMultipartUpload repeated after it succeeded, answered as S3 answers it,
/// with the object it made: the key's live object is what these parts compose (its
/// digest is theirs, and they are as many).
async fn completed_before(
    s3: &FdwS3,
    input: &CompleteMultipartUploadInput,
) -> Option<CompleteMultipartUploadOutput> {
    let named = input.multipart_upload.as_ref()?.parts.as_ref()?;
    let digests: Option<Vec<Digest>> = named
        .iter()
        .map(|part| part.e_tag.as_ref().and_then(super::names::digest_of))
        .collect();
    let composed = Digest::of_parts(digests?);
    let info = s3
        .shared
        .client
        .head(&input.bucket, &input.key)
        .await
        .ok()?;
    let answered = checksums::of_object(&info.metadata, info.crc);
    (info.digest == composed)
        .then(|| completed(&input.bucket, &input.key, Some(info.digest), answered))
}

/// The answer to a completion that made an object with this digest and checksums.
fn completed(
    bucket: &str,
    key: &str,
    digest: Option<Digest>,
    checksums: Checksum,
) -> CompleteMultipartUploadOutput {
    let mut output = CompleteMultipartUploadOutput {
        bucket: Some(bucket.to_owned()),
        key: Some(key.to_owned()),
        e_tag: digest.map(etag),
        ..CompleteMultipartUploadOutput::default()
    };
    serve_checksums!(output, checksums);
    output
}

/// An upload whose parts were checked, being completed into `key`.
struct Completion<'a> {
    s3: &'a FdwS3,
    bucket: &'a str,
    key: &'a str,
    upload_id: &'a str,
    /// The parts named, with what was found under each.
    parts: Vec<(i32, fdw_net::wire::ObjectInfo)>,
    options: PutOptions,
}

impl Completion<'_> {
    /// With no copy: each replica of the key composes it from its own copies of the
    /// parts, checked against the lengths and CRCs found.
    async fn in_place(&self) -> Result<fdw_client::PutReceipt, fdw_client::Error> {
        let described: Vec<(u16, u64, u32)> = self
            .parts
            .iter()
            .map(|(number, info)| (*number as u16, info.len, info.crc))
            .collect();
        let prefix = parts_prefix(self.upload_id);
        let client = &self.s3.shared.client;
        client
            .compose(
                self.bucket,
                self.key,
                &prefix,
                &described,
                self.options.clone(),
            )
            .await
    }

    /// By copy: the parts streamed through the gateway in order, frame by frame, each
    /// checked to be the version found.
    async fn streamed(&self) -> S3Result<fdw_client::PutReceipt> {
        let (bucket, parts) = (self.bucket, &self.parts);
        let client = &self.s3.shared.client;
        let total: u64 = parts.iter().map(|(_, info)| info.len).sum();
        let named: Vec<(String, i32, fdw_net::Version)> = parts
            .iter()
            .map(|(number, info)| (part_key(self.upload_id, *number), *number, info.version))
            .collect();
        // Owned captures: the stream lives inside the handler's boxed future.
        let (reader, from) = (client.clone(), bucket.to_string());
        let staged = futures_util::stream::iter(named)
            .then(move |(part, number, version)| {
                let (client, bucket) = (reader.clone(), from.clone());
                async move {
                    let stream = client
                        .read_stream(&bucket, &part, None)
                        .await
                        .map_err(std::io::Error::other)?;
                    if stream.info().version != version {
                        return Err(std::io::Error::other(format!(
                            "part {number} was replaced during completion"
                        )));
                    }
                    Ok(frames(stream))
                }
            })
            .try_flatten()
            .boxed();
        let reader = tokio_util::io::StreamReader::new(staged);
        // S3's multipart ETag, as a compose in place gives it.
        let options = PutOptions {
            digest: Some(Digest::of_parts(parts.iter().map(|(_, info)| info.digest))),
            ..self.options.clone()
        };
        client
            .put_stream(bucket, self.key, total, reader, options)
            .await
            .map_err(|e| s3_error(&e))
    }
}

pub(super) async fn abort(
    s3: &FdwS3,
    input: AbortMultipartUploadInput,
) -> S3Result<AbortMultipartUploadOutput> {
    s3.check_bucket(&input.bucket).await?;
    let upload = find(s3, &input.bucket, &input.key, &input.upload_id).await?;
    remove(s3, &input.bucket, &input.upload_id, upload.staging()?).await;
    Ok(AbortMultipartUploadOutput::default())
}

/// Deletes an upload's parts and then its record. A delete that fails leaves memory
/// pinned until the upload expires, not data wrong: the part keys are never shown or
/// read again.
async fn remove(s3: &FdwS3, bucket: &str, upload_id: &str, staging: Replication) {
    let client = &s3.shared.client;
    let prefix = parts_prefix(upload_id);
    let mut after: Option<String> = None;
    loop {
        let page = match client.list(bucket, &prefix, after.as_deref(), 1000).await {
            Ok(page) => page,
            Err(err) => {
                tracing::warn!(%bucket, %upload_id, %err, "listing the parts of a finished upload");
                break;
            }
        };
        for entry in &page.entries {
            if let Err(err) = client
                .delete_with(bucket, entry.key.as_str(), staging)
                .await
            {
                tracing::warn!(%bucket, key = %entry.key, %err, "deleting a finished upload's part");
            }
        }
        match page.next_start_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if let Err(err) = client
        .delete_with(bucket, &record_key(upload_id), staging)
        .await
    {
        tracing::warn!(%bucket, %upload_id, %err, "deleting a finished upload's record");
    }
}

/// Removes the uploads of `bucket` created before `cutoff`, completed or not, with their
/// parts; returns how many. An upload whose record is gone (a remove that failed half
/// way) is removed with the gateway's default replicas.
pub(super) async fn sweep(s3: &FdwS3, bucket: &str, cutoff: std::time::SystemTime) -> usize {
    let (client, cutoff) = (&s3.shared.client, micros(cutoff));
    let mut after: Option<String> = None;
    let mut removed = 0;
    loop {
        let upload_id = match next_upload(s3, bucket, after.as_deref()).await {
            Ok(Some(upload_id)) => upload_id,
            Ok(None) => return removed,
            Err(err) => {
                tracing::warn!(%bucket, %err, "listing multipart uploads to expire");
                return removed;
            }
        };
        let upload_id = upload_id.as_str();
        match created_micros(upload_id) {
            // Ids sort by age: every later one is younger.
            Some(created) if created >= cutoff => return removed,
            Some(_) => {
                let recorded = match client.get(bucket, &record_key(upload_id)).await {
                    Ok(record) => serde_json::from_slice::<Upload>(&record)
                        .ok()
                        .and_then(|upload| upload.staging().ok()),
                    Err(_) => None,
                };
                let staging = recorded.unwrap_or(staging(s3.shared.config.default));
                remove(s3, bucket, upload_id, staging).await;
                removed += 1;
                tracing::info!(%bucket, %upload_id, "expired multipart upload removed");
            }
            None => {} // not an upload's id: step past it
        }
        // Past this upload's record and parts, whatever the deletes did.
        after = Some(past(upload_id));
    }
}

/// The first upload id (of a record or a part) in `bucket` after `after`.
async fn next_upload(
    s3: &FdwS3,
    bucket: &str,
    after: Option<&str>,
) -> Result<Option<String>, fdw_client::Error> {
    let page = s3
        .shared
        .client
        .list(bucket, STAGED_PREFIX, after, 1)
        .await?;
    Ok(page.entries.first().map(|entry| {
        let rest = &entry.key.as_str()[STAGED_PREFIX.len()..];
        rest.split('/').next().unwrap_or(rest).to_owned()
    }))
}

/// Where a listing resumes past an upload's record and all its parts.
fn past(upload_id: &str) -> String {
    format!("{}\u{10FFFF}", parts_prefix(upload_id))
}

/// ListMultipartUploads: the uploads in progress, by key and then by age, as S3 lists
/// them. Each costs a listing call and a read of its record: this is for seeing what
/// memory is pinned, not for a hot path.
pub(super) async fn list_uploads(
    s3: &FdwS3,
    input: ListMultipartUploadsInput,
) -> S3Result<ListMultipartUploadsOutput> {
    s3.check_bucket(&input.bucket).await?;
    let max_uploads = page_size(input.max_uploads, "max-uploads")?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let marker = input.key_marker.clone().unwrap_or_default();
    // As S3: with an upload-id marker, the marker key's later uploads come too.
    let id_marker = input
        .upload_id_marker
        .clone()
        .filter(|_| !marker.is_empty());
    let client = &s3.shared.client;
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    while let Some(upload_id) = next_upload(s3, &input.bucket, after.as_deref())
        .await
        .map_err(|e| s3_error(&e))?
    {
        after = Some(past(&upload_id));
        let (info, record) = match client
            .read(&input.bucket, &record_key(&upload_id), None)
            .await
        {
            Ok(read) => read,
            // Completed or aborted meanwhile, or parts whose record is already gone.
            Err(err) if err.kind() == fdw_client::ErrorKind::NotFound => continue,
            Err(err) => return Err(s3_error(&err)),
        };
        let Ok(upload) = serde_json::from_slice::<Upload>(&record) else {
            continue;
        };
        let listed = match &id_marker {
            Some(id) => upload.key > marker || (upload.key == marker && upload_id > *id),
            None => upload.key > marker,
        };
        if listed && upload.key.starts_with(&prefix) {
            found.push((upload.key, upload_id, info.version));
        }
    }
    found.sort();
    let encoding = Encoding::new(input.encoding_type.as_ref());
    let (mut uploads, mut prefixes) = (Vec::new(), Vec::<String>::new());
    // Where the next page resumes: after the last upload or prefix shown.
    let mut resume: Option<(String, Option<String>)> = None;
    let mut truncated = false;
    for (key, upload_id, version) in found {
        let folded = fold(&key, &prefix, input.delimiter.as_deref());
        if folded.is_some() && folded.as_ref() == prefixes.last() {
            continue;
        }
        if uploads.len() + prefixes.len() == max_uploads {
            truncated = true;
            break;
        }
        match folded {
            Some(common) => {
                resume = Some((format!("{common}\u{10FFFF}"), None));
                prefixes.push(common);
            }
            None => {
                resume = Some((key.clone(), Some(upload_id.clone())));
                uploads.push(MultipartUpload {
                    key: Some(encoding.apply(&key)),
                    upload_id: Some(upload_id),
                    initiated: Some(committed_at(version)),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    ..MultipartUpload::default()
                });
            }
        }
    }
    let (next_key, next_id) = match resume.filter(|_| truncated) {
        Some((key, id)) => (Some(key), id),
        None => (None, None),
    };
    Ok(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix.map(|p| encoding.apply(&p)),
        delimiter: input.delimiter.map(|d| encoding.apply(&d)),
        key_marker: input.key_marker.map(|k| encoding.apply(&k)),
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(max_uploads as i32),
        is_truncated: Some(truncated),
        next_key_marker: next_key.map(|k| encoding.apply(&k)),
        next_upload_id_marker: next_id,
        encoding_type: encoding.echo(),
        common_prefixes: (!prefixes.is_empty()).then(|| common_prefixes(prefixes, &encoding)),
        uploads: Some(uploads),
        ..ListMultipartUploadsOutput::default()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    use super::super::{GatewayConfig, Shared};
    use super::*;
    use crate::pool::{HugePagePolicy, PoolConfig};

    /// A three-worker cluster and a gateway on it (not serving HTTP: the tests call its
    /// operations).
    async fn gateway(pool_bytes: usize) -> (crate::LocalCluster, FdwS3) {
        let pool = PoolConfig {
            size_bytes: pool_bytes,
            chunk_size_bytes: 64 << 10,
            huge_pages: HugePagePolicy::Off,
            populate: false,
            lock: false,
        };
        let cluster = crate::LocalCluster::start(3, pool, |_| {}).await.unwrap();
        let client = cluster.client("gateway").await.unwrap();
        let default = Replication::new(WriteType::AsyncThrough, 2, 2).unwrap();
        let s3 = FdwS3 {
            shared: Arc::new(Shared {
                client,
                config: {
                    let mut config =
                        GatewayConfig::new("127.0.0.1:0".parse().unwrap(), Vec::new(), default);
                    config.buckets.insert("bucket".into(), default);
                    config
                },
                uploads_in: Mutex::default(),
                started: UNIX_EPOCH,
            }),
        };
        (cluster, s3)
    }

    /// A sweep removes the uploads begun before its cutoff, records and parts, and
    /// leaves every later one whole, whatever their order of creation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_removes_old_uploads_and_keeps_young_ones() {
        let (_cluster, s3) = gateway(32 << 20).await;
        let client = s3.shared.client.clone();
        let staging = Replication::new(WriteType::MustCache, 2, 2).unwrap();
        let cutoff = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let at = |seconds: u64| {
            let micros = seconds * 1_000_000;
            format!("{micros:016x}{:016x}", seconds)
        };
        // Two begun before the cutoff, two after; one old one lost its record already.
        let (old, young, older, orphan) = (
            at(1_999_999_999),
            at(2_000_000_001),
            at(1_000_000_000),
            at(1_500_000_000),
        );
        let later = at(2_100_000_000);
        let record = serde_json::to_vec(&Upload {
            key: "target".into(),
            write_type: "MUST_CACHE".into(),
            replicas: 2,
            quorum: 2,
            metadata: Vec::new(),
            checksum: None,
        })
        .unwrap();
        for id in [&young, &old, &later, &older] {
            client
                .put_with("bucket", &record_key(id), &record, staging)
                .await
                .unwrap();
        }
        for id in [&young, &old, &later, &older, &orphan] {
            for part in [1, 2] {
                client
                    .put_with("bucket", &part_key(id, part), b"part", staging)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(sweep(&s3, "bucket", cutoff).await, 3);
        let left: Vec<String> = client
            .list("bucket", STAGED_PREFIX, None, 100)
            .await
            .unwrap()
            .entries
            .iter()
            .map(|e| e.key.as_str().to_owned())
            .collect();
        let mut kept = Vec::new();
        for id in [&young, &later] {
            kept.extend([record_key(id), part_key(id, 1), part_key(id, 2)]);
        }
        kept.sort();
        assert_eq!(left, kept);
    }

    #[test]
    fn copy_source_ranges_are_bytes_first_last_only() {
        assert_eq!(copy_source_range("bytes=0-0").unwrap(), 0..=0);
        assert_eq!(copy_source_range("bytes=5-99").unwrap(), 5..=99);
        for bad in [
            "",
            "0-2",
            "bytes=",
            "bytes=0",
            "bytes=0-",
            "bytes=-3",
            "bytes=3-2",
        ] {
            assert!(copy_source_range(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "bytes=+1-2",
            "bytes=0-99999999999999999999",
            "bytes=0-2,3-5",
        ] {
            assert!(copy_source_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a pause, so the second id is later
    fn upload_ids_sort_by_age_and_carry_it() {
        let first = new_upload_id("bucket", "z").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_upload_id("bucket", "a").unwrap();
        assert!(first < second, "{first} then {second}");
        let (a, b) = (
            created_micros(&first).unwrap(),
            created_micros(&second).unwrap(),
        );
        assert!(a < b);
        let now = micros(super::super::names::now());
        assert!(now >= b && now - b < 60_000_000, "the id's time is now");
        for junk in ["", "abc", "zzzzzzzzzzzzzzzz0000", "é"] {
            assert_eq!(created_micros(junk), None, "{junk:?}");
        }
    }

    /// Every key of an upload (record and parts) is placed with the key it completes
    /// into, on any cluster.
    #[test]
    fn an_upload_is_placed_with_its_key() {
        let members = (0..7u16)
            .map(|id| fdw_net::placement::Member {
                id,
                name: format!("node-{id}"),
                addr: ([127, 0, 0, 1], 7000 + id).into(),
            })
            .collect();
        let placement = fdw_net::placement::Placement::new(members);
        let bucket = fdw_net::BucketName::new("bucket").unwrap();
        let ids = |key: &str| -> Vec<u16> {
            let key = fdw_net::ObjectKey::new(key).unwrap();
            let list = placement.preference_list(&bucket, &key);
            list.iter().map(|m| m.id).collect()
        };
        for i in 0..50 {
            let key = format!("out/part-{i}.parquet");
            let upload_id = new_upload_id("bucket", &key).unwrap();
            for staged in [record_key(&upload_id), part_key(&upload_id, 10_000)] {
                assert_eq!(ids(&staged), ids(&key), "{staged}");
            }
        }
    }

    fn complete_input(key: &str, upload_id: &str, parts: &[i32]) -> CompleteMultipartUploadInput {
        let parts = parts
            .iter()
            .map(|&n| CompletedPart {
                part_number: Some(n),
                ..CompletedPart::default()
            })
            .collect();
        CompleteMultipartUploadInput {
            bucket: "bucket".into(),
            key: key.into(),
            upload_id: upload_id.into(),
            multipart_upload: Some(CompletedMultipartUpload { parts: Some(parts) }),
            ..CompleteMultipartUploadInput::default()
        }
    }

    /// An upload begun by the gateway completes in place: every replica composes the
    /// object from its own parts. An upload whose parts are not all on the key's
    /// replicas completes too, by streaming them, and both objects are the parts' bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn completion_composes_in_place_and_streams_parts_placed_elsewhere() {
        let (_cluster, s3) = gateway(96 << 20).await;
        let client = s3.shared.client.clone();
        let replication = Replication::new(WriteType::AsyncThrough, 2, 2).unwrap();
        let upload = Upload {
            key: String::new(),
            write_type: "ASYNC_THROUGH".into(),
            replicas: 2,
            quorum: 2,
            metadata: Vec::new(),
            checksum: None,
        };
        let mut bytes: Vec<u8> = (0..MIN_PART_BYTES + 3 * 65_536 + 17)
            .map(|i| (i * 7 + i / 65_536) as u8)
            .collect();
        bytes.extend_from_slice(b"the last part is small");
        let (first, last) = bytes.split_at(MIN_PART_BYTES as usize + 3 * 65_536 + 17);
        let placement = fdw_net::placement::Placement::new(client.members().to_vec());
        let bucket = fdw_net::BucketName::new("bucket").unwrap();
        let replicas = |key: &str| -> Vec<u16> {
            let key = fdw_net::ObjectKey::new(key).unwrap();
            let mut ids: Vec<u16> = placement.preference_list(&bucket, &key)[..2]
                .iter()
                .map(|m| m.id)
                .collect();
            ids.sort();
            ids
        };
        // One upload as the gateway names it, one with an id of the old form (time and
        // random only) whose first part lies on another pair of members.
        let placed = new_upload_id("bucket", "placed").unwrap();
        let elsewhere = (1u64..)
            .map(|n| format!("{:016x}{n:016x}", 1u64 << 50))
            .find(|id| replicas(&part_key(id, 1)) != replicas("elsewhere"))
            .unwrap();
        for (key, id) in [("placed", &placed), ("elsewhere", &elsewhere)] {
            let record = serde_json::to_vec(&Upload {
                key: key.into(),
                ..upload.clone()
            })
            .unwrap();
            let staging = upload.staging().unwrap();
            client
                .put_with("bucket", &record_key(id), &record, staging)
                .await
                .unwrap();
            for (number, part) in [(1, first), (3, last)] {
                client
                    .put_with("bucket", &part_key(id, number), part, staging)
                    .await
                    .unwrap();
            }
        }
        // In place: the cluster composes it, or says why not.
        let completion = |key, upload_id, parts| Completion {
            s3: &s3,
            bucket: "bucket",
            key,
            upload_id,
            parts,
            options: replication.into(),
        };
        let receipt = completion("placed", &placed, parts(&s3, &placed).await)
            .in_place()
            .await
            .unwrap();
        assert_eq!(receipt.crc, crc32fast::hash(&bytes));
        assert_eq!(client.get("bucket", "placed").await.unwrap(), bytes);
        // Elsewhere: composing fails for want of a quorum of copies. As with a put
        // that fails, a member holding every part may have kept its (whole) copy.
        let refused = completion("elsewhere", &elsewhere, parts(&s3, &elsewhere).await)
            .in_place()
            .await;
        assert!(refused.is_err(), "composed from parts the replicas lack");
        if let Ok(left) = client.get("bucket", "elsewhere").await {
            assert_eq!(left, bytes, "a failed compose left other bytes visible");
        }
        let done = complete(&s3, complete_input("elsewhere", &elsewhere, &[1, 3]))
            .await
            .unwrap();
        assert_eq!(
            done.checksum_crc32,
            Some(crc32_header(crc32fast::hash(&bytes)))
        );
        assert_eq!(client.get("bucket", "elsewhere").await.unwrap(), bytes);
        // Either way, S3's multipart ETag: the MD5 of the parts' MD5s, and their count.
        let multipart = Digest::of_parts([Digest::of_bytes(first), Digest::of_bytes(last)]);
        assert_eq!(receipt.digest, Some(multipart), "composed in place");
        assert_eq!(done.e_tag, Some(etag(multipart)), "streamed");
        // Repeated with the parts' ETags, the completion answers as it did, as in S3;
        // naming no ETags, it cannot be told from another upload's.
        let mut again = complete_input("elsewhere", &elsewhere, &[1, 3]);
        let named = again.multipart_upload.as_mut().unwrap().parts.as_mut();
        for (part, data) in named.unwrap().iter_mut().zip([first, last]) {
            part.e_tag = Some(etag(Digest::of_bytes(data)));
        }
        let repeated = complete(&s3, again).await.unwrap();
        assert_eq!(repeated.e_tag, done.e_tag);
        let err = complete(&s3, complete_input("elsewhere", &elsewhere, &[1, 3]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), &S3ErrorCode::NoSuchUpload);
        // Completion removes the staging keys.
        let left = client
            .list("bucket", STAGED_PREFIX, None, 100)
            .await
            .unwrap();
        let left: Vec<&str> = left.entries.iter().map(|e| e.key.as_str()).collect();
        assert!(left.iter().all(|k| k.contains(&placed)), "{left:?}");
    }

    /// Parts 1 and 3 of an upload, as completion finds them.
    async fn parts(s3: &FdwS3, upload_id: &str) -> Vec<(i32, fdw_net::wire::ObjectInfo)> {
        let mut found = Vec::new();
        for number in [1, 3] {
            let key = part_key(upload_id, number);
            found.push((number, s3.shared.client.head("bucket", &key).await.unwrap()));
        }
        found
    }
}
