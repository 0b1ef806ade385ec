//! The S3 under-store, on aws-sdk-s3: AWS S3 and S3-compatible servers alike.
//!
//! The SDK's own retries are off: the upload pipeline retries with its own backoff and
//! jitter, so one policy governs every attempt and every failure is seen and counted.
//! Bodies are the pool's buffers by reference ([`Payload`]), with their CRC32 sent as
//! `x-amz-checksum-crc32` so the store verifies what it received.

use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, timeout::TimeoutConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload};
use aws_smithy_http_client::tls;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use bytes::Bytes;

use crate::s3_headers::{WriteHeaders, read_headers};
use crate::under_store::{
    CompletedPart, ETAG_METADATA, Expect, FailureKind, Fence, Payload, StoredObject, UnderStore,
    UnderStoreError, VERSION_METADATA, crc32_header, parse_crc32_header,
};

/// How to reach an S3 service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server; `None` for AWS S3 itself.
    pub endpoint: Option<String>,
    /// Region to sign for.
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers
    /// need.
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Longest one request may take before it counts as failed (and retryable).
    pub attempt_timeout: Duration,
}

impl S3Config {
    /// From the standard AWS environment variables: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`, else `us-east-1`), `AWS_ENDPOINT_URL_S3` (or
    /// `AWS_ENDPOINT_URL`); path-style when an endpoint is set. `None` without keys.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
        Some(Self {
            path_style: endpoint.is_some(),
            endpoint,
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
            attempt_timeout: Duration::from_secs(60),
        })
    }
}

/// One S3 bucket and key prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Empty, or ends with `/`.
    prefix: String,
}

impl S3Store {
    /// The store at `s3://bucket/prefix`.
    pub fn new(config: &S3Config, bucket: &str, prefix: &str) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
                config.session_token.clone(),
                None,
                "fdw-config",
            ))
            .force_path_style(config.path_style)
            .http_client(http)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(config.attempt_timeout)
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let prefix = prefix.trim_matches('/');
        Self {
            client: Client::from_conf(builder.build()),
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    /// The SDK client, for tests and benchmarks that compare against it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn body(payload: &Payload) -> ByteStream {
        let payload = payload.clone();
        // Retryable so the SDK may replay it (it clones buffer handles, never bytes).
        ByteStream::new(SdkBody::retryable(move || {
            SdkBody::from_body_1_x(payload.body())
        }))
    }
}

/// Sorts an SDK failure into retryable, permanent or not found.
fn failure<E: ProvideErrorMetadata + std::error::Error + 'static>(
    operation: &'static str,
    key: &str,
    err: SdkError<E, HttpResponse>,
) -> UnderStoreError {
    let kind = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FailureKind::Retryable
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service_status(&err);
            match (status, code) {
                (_, "NoSuchKey" | "NoSuchUpload" | "NotFound") | (Some(404), _) => {
                    FailureKind::NotFound
                }
                // A conditional write lost to another writer.
                (_, "PreconditionFailed" | "ConditionalRequestConflict") | (Some(412), _) => {
                    FailureKind::Conflict
                }
                // IncompleteBody: our bodies are whole in memory, so the network cut it.
                (
                    _,
                    "SlowDown" | "Throttling" | "RequestTimeout" | "InternalError"
                    | "IncompleteBody",
                ) => FailureKind::Retryable,
                (Some(s), _) if s >= 500 || s == 429 => FailureKind::Retryable,
                _ => FailureKind::Permanent,
            }
        }
        _ => FailureKind::Permanent,
    };
    let message = match &err {
        SdkError::ServiceError(service) => format!(
            "{} (HTTP {}): {}",
            service.err().code().unwrap_or("error"),
            service_status(&err).map_or("?".to_owned(), |s| s.to_string()),
            service.err().message().unwrap_or("no message")
        ),
        other => {
            // The source chain says what actually went wrong (refused, reset, timed out).
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    };
    UnderStoreError::new(kind, operation, key, message)
}

/// S3's conditional headers for `expect`: (`If-Match`, `If-None-Match`).
fn conditions(expect: Option<&Expect>) -> (Option<String>, Option<String>) {
    match expect {
        None => (None, None),
        Some(Expect::Absent) => (None, Some("*".to_owned())),
        Some(Expect::Tag(tag)) => (Some(tag.clone()), None),
    }
}

/// `builder` (a PutObject or CreateMultipartUpload) with the object's headers and fdw's
/// records, as [`WriteHeaders::of`] sets them out.
macro_rules! with_headers {
    ($builder:expr, $fence:expr) => {{
        let headers = WriteHeaders::of($fence);
        $builder
            .set_content_type(headers.content_type)
            .set_cache_control(headers.cache_control)
            .set_content_disposition(headers.content_disposition)
            .set_content_encoding(headers.content_encoding)
            .set_content_language(headers.content_language)
            .set_expires(headers.expires)
            .set_metadata(headers.metadata)
    }};
}

fn service_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
        _ => None,
    }
}

/// S3's limit on a key, in bytes of UTF-8, the store's prefix included.
pub const S3_MAX_KEY_BYTES: usize = 1024;

impl UnderStore for S3Store {
    fn refuses_key(&self, key: &str) -> Option<String> {
        let len = self.prefix.len() + key.len();
        (len > S3_MAX_KEY_BYTES).then(|| {
            format!(
                "with the store's prefix {:?} the key is {len} bytes, over S3's limit of \
                 {S3_MAX_KEY_BYTES} (S3_MAX_KEY_BYTES)",
                self.prefix
            )
        })
    }

    async fn put_object(
        &self,
        key: &str,
        payload: Payload,
        fence: &Fence,
    ) -> Result<(), UnderStoreError> {
        let full = self.full_key(key);
        let (if_match, if_none_match) = conditions(fence.expect.as_ref());
        let put = self.client.put_object().bucket(&self.bucket).key(&full);
        with_headers!(put, fence)
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .content_length(payload.len() as i64)
            .checksum_crc32(crc32_header(payload.crc()))
            .body(Self::body(&payload))
            .send()
            .await
            .map_err(|e| failure("PutObject", &full, e))?;
        Ok(())
    }

    async fn create_multipart(&self, key: &str, fence: &Fence) -> Result<String, UnderStoreError> {
        let full = self.full_key(key);
        let create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full);
        let created = with_headers!(create, fence)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .checksum_type(ChecksumType::FullObject)
            .send()
            .await
            .map_err(|e| failure("CreateMultipartUpload", &full, e))?;
        created.upload_id().map(str::to_owned).ok_or_else(|| {
            UnderStoreError::new(
                FailureKind::Retryable,
                "CreateMultipartUpload",
                &full,
                "the response had no upload id",
            )
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        payload: Payload,
    ) -> Result<CompletedPart, UnderStoreError> {
        let full = self.full_key(key);
        let uploaded = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(upload_id)
            .part_number(number as i32)
            .content_length(payload.len() as i64)
            .checksum_crc32(crc32_header(payload.crc()))
            .body(Self::body(&payload))
            .send()
            .await
            .map_err(|e| failure("UploadPart", &full, e))?;
        Ok(CompletedPart {
            number,
            etag: uploaded.e_tag().unwrap_or_default().to_owned(),
            crc: payload.crc(),
        })
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
        let full = self.full_key(key);
        let (if_match, if_none_match) = conditions(fence.expect.as_ref());
        let parts = parts
            .iter()
            .map(|p| {
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(&p.etag)
                    .checksum_crc32(crc32_header(p.crc))
                    .build()
            })
            .collect();
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(upload_id)
            .set_if_match(if_match)
            .set_if_none_match(if_none_match)
            .checksum_type(ChecksumType::FullObject)
            .checksum_crc32(crc32_header(crc))
            .mpu_object_size(len as i64)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failure("CompleteMultipartUpload", &full, e))?;
        // A store that reports the object's checksum must report ours.
        if let Some(stored) = completed.checksum_crc32().and_then(parse_crc32_header)
            && stored != crc
        {
            return Err(UnderStoreError::new(
                FailureKind::Permanent,
                "CompleteMultipartUpload",
                &full,
                format!("the store computed CRC32 {stored:08x}, the object has {crc:08x}"),
            ));
        }
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), UnderStoreError> {
        let full = self.full_key(key);
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| failure("AbortMultipartUpload", &full, e))?;
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, UnderStoreError> {
        if let Some(reason) = self.refuses_key(key) {
            let message = format!("no such object: {reason}");
            return Err(UnderStoreError::new(
                FailureKind::NotFound,
                "GetObject",
                key,
                message,
            ));
        }
        let full = self.full_key(key);
        let mut request = self.client.get_object().bucket(&self.bucket).key(&full);
        if let Some(range) = &range {
            if range.is_empty() {
                return Ok(Bytes::new());
            }
            request = request.range(format!("bytes={}-{}", range.start, range.end - 1));
        }
        let object = request
            .send()
            .await
            .map_err(|e| failure("GetObject", &full, e))?;
        let bytes = object.body.collect().await.map_err(|e| {
            UnderStoreError::new(FailureKind::Retryable, "GetObject", &full, e.to_string())
        })?;
        Ok(bytes.into_bytes())
    }

    async fn head(&self, key: &str) -> Result<Option<StoredObject>, UnderStoreError> {
        // A key the store cannot hold is a key it does not hold.
        if self.refuses_key(key).is_some() {
            return Ok(None);
        }
        let full = self.full_key(key);
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await;
        match head {
            Ok(head) => Ok(Some(StoredObject {
                key: key.to_owned(),
                len: head.content_length().unwrap_or(0).max(0) as u64,
                crc: head.checksum_crc32().and_then(parse_crc32_header),
                version: head
                    .metadata()
                    .and_then(|m| m.get(VERSION_METADATA))
                    .and_then(|v| v.parse().ok()),
                etag: head.metadata().and_then(|m| m.get(ETAG_METADATA)).cloned(),
                headers: read_headers(&head),
                tag: head.e_tag().map(str::to_owned),
            })),
            Err(err) => match failure("HeadObject", &full, err) {
                e if e.kind == FailureKind::NotFound => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn delete(&self, key: &str, expect: Option<&Expect>) -> Result<(), UnderStoreError> {
        if self.refuses_key(key).is_some() {
            return Ok(());
        }
        let full = self.full_key(key);
        let (if_match, _) = conditions(expect);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_if_match(if_match)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match failure("DeleteObject", &full, err) {
                e if e.kind == FailureKind::NotFound => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, UnderStoreError> {
        let full = self.full_key(prefix);
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| failure("ListObjectsV2", &full, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(StoredObject {
                    key: key.strip_prefix(&self.prefix).unwrap_or(key).to_owned(),
                    len: object.size().unwrap_or(0).max(0) as u64,
                    ..StoredObject::default()
                });
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn open_uploads(&self, prefix: &str) -> Result<Vec<(String, String)>, UnderStoreError> {
        let full = self.full_key(prefix);
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&full)
            .send()
            .await
            .map_err(|e| failure("ListMultipartUploads", &full, e))?;
        Ok(listed
            .uploads()
            .iter()
            .filter_map(|u| {
                let key = u.key()?;
                Some((
                    key.strip_prefix(&self.prefix).unwrap_or(key).to_owned(),
                    u.upload_id()?.to_owned(),
                ))
            })
            .collect())
    }
}
